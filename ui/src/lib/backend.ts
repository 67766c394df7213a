// The UI's one way to the Rust side: the generated commands, the event channel and error
// helpers. Screens import from here, never from @tauri-apps directly, so they do not know
// whether they run in Tauri, under Vitest (IPC mocked) or elsewhere.
import { Channel } from "@tauri-apps/api/core";
import { commands, type AppEvent, type CommandError } from "./bindings";

export { commands };
export type * from "./bindings";

/** Sends the session's events to `handler` (again after a reload of the web view). */
export async function subscribe(handler: (event: AppEvent) => void): Promise<void> {
  const channel = new Channel<AppEvent>();
  channel.onmessage = handler;
  await commands.subscribe(channel);
}

/** A command's rejection as a CommandError, whatever was thrown. */
export function errorOf(e: unknown): CommandError {
  if (e && typeof e === "object" && "code" in e && "message" in e) return e as CommandError;
  return { code: "internal", message: String(e), field: null, retry_after_secs: null };
}

/** What to tell a person about a failed command. */
export function describeError(e: unknown): string {
  const err = errorOf(e);
  switch (err.code) {
    case "invalid_credentials":
      return "Wrong username or password.";
    case "rate_limited":
      return err.retry_after_secs != null
        ? `Too many attempts. Try again in ${formatWait(err.retry_after_secs)}.`
        : "Too many attempts. Try again later.";
    case "unreachable":
      return err.message || "Cannot reach the server.";
    case "username_taken":
      return "That username is taken.";
    case "email_taken":
      return "An account with that email exists.";
    default:
      return err.message;
  }
}

export function formatWait(secs: number): string {
  if (secs < 60) return `${secs} s`;
  const m = Math.floor(secs / 60);
  const s = secs % 60;
  return s === 0 ? `${m} min` : `${m} min ${s} s`;
}
