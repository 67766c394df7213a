// Push-to-talk keys: a global shortcut when the desktop lets the app register one (the
// plugin reports press and release on X11), else the same key held in this window.
import { register, unregister } from "@tauri-apps/plugin-global-shortcut";

export type PttBinding = { fallback: boolean; unbind: () => void };

/** Calls `onchange(true)` when `key` goes down and `onchange(false)` when it comes up. */
export async function bindPushToTalk(key: string, onchange: (pressed: boolean) => void): Promise<PttBinding> {
  try {
    await register(key, (e) => onchange(e.state === "Pressed"));
    return { fallback: false, unbind: () => void unregister(key).catch(() => {}) };
  } catch {
    const down = (e: KeyboardEvent) => {
      if (!e.repeat && matchesShortcut(e, key)) onchange(true);
    };
    // Releasing only the key (modifiers may go first) ends talking.
    const up = (e: KeyboardEvent) => {
      if (keyName(e) === mainKey(key)) onchange(false);
    };
    const blur = () => onchange(false);
    window.addEventListener("keydown", down);
    window.addEventListener("keyup", up);
    window.addEventListener("blur", blur);
    return {
      fallback: true,
      unbind: () => {
        window.removeEventListener("keydown", down);
        window.removeEventListener("keyup", up);
        window.removeEventListener("blur", blur);
      },
    };
  }
}

const MODIFIERS = new Set(["ctrl", "control", "commandorcontrol", "cmdorctrl", "alt", "option", "shift", "super", "meta", "cmd", "command"]);

/** The non-modifier key of a shortcut such as `Ctrl+Shift+F8`, lower-cased. */
export function mainKey(shortcut: string): string {
  const parts = shortcut.split("+").map((p) => p.trim().toLowerCase());
  return parts.filter((p) => !MODIFIERS.has(p)).pop() ?? "";
}

/** A key event's key as shortcuts name it: `f8`, `space`, `a`, `1`. */
function keyName(e: KeyboardEvent): string {
  if (e.code.startsWith("Key")) return e.code.slice(3).toLowerCase();
  if (e.code.startsWith("Digit")) return e.code.slice(5);
  if (e.code === "Space") return "space";
  return e.key.toLowerCase();
}

/** Whether a key event is the shortcut, modifiers included. */
export function matchesShortcut(e: KeyboardEvent, shortcut: string): boolean {
  const parts = new Set(shortcut.split("+").map((p) => p.trim().toLowerCase()));
  const want = (...names: string[]) => names.some((n) => parts.has(n));
  return (
    keyName(e) === mainKey(shortcut) &&
    e.ctrlKey === want("ctrl", "control", "commandorcontrol", "cmdorctrl") &&
    e.altKey === want("alt", "option") &&
    e.shiftKey === want("shift") &&
    e.metaKey === want("super", "meta", "cmd", "command")
  );
}
