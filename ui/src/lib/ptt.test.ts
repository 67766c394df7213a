import { describe, expect, it } from "vitest";
import { mainKey, matchesShortcut } from "./ptt";

function key(init: KeyboardEventInit): KeyboardEvent {
  return new KeyboardEvent("keydown", init);
}

describe("push-to-talk keys", () => {
  it("matches the shortcut's key with exactly its modifiers", () => {
    expect(mainKey("Ctrl+Shift+F8")).toBe("f8");
    expect(matchesShortcut(key({ key: "F8", code: "F8" }), "F8")).toBe(true);
    expect(matchesShortcut(key({ key: "F8", code: "F8", ctrlKey: true }), "F8")).toBe(false);
    expect(matchesShortcut(key({ key: " ", code: "Space", ctrlKey: true }), "Ctrl+Space")).toBe(true);
    expect(matchesShortcut(key({ key: "V", code: "KeyV", shiftKey: true }), "Shift+V")).toBe(true);
    expect(matchesShortcut(key({ key: "b", code: "KeyB" }), "V")).toBe(false);
  });
});
