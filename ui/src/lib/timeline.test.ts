import { describe, expect, it } from "vitest";
import type { Message } from "./bindings";
import { buildRows, mergeMessages } from "./timeline";

function msg(seq: number, sender: number, sentAt: string, content = `m${seq}`): Message {
  return {
    message_id: 1000 + seq,
    group_id: 1,
    sender_id: sender,
    content,
    seq,
    is_read: false,
    sent_at: sentAt,
    updated_at: sentAt,
    edited_at: null,
    nonce: null,
  };
}

describe("mergeMessages", () => {
  it("drops doubles, keeps seq order and takes the newer copy", () => {
    const a = [msg(1, 1, "2026-12-01T10:00:00Z"), msg(2, 2, "2026-12-01T10:01:00Z")];
    const b = [msg(3, 1, "2026-12-01T10:02:00Z"), { ...msg(2, 2, "2026-12-01T10:01:00Z"), content: "edited" }, msg(1, 1, "2026-12-01T10:00:00Z")];
    const out = mergeMessages(a, b);
    expect(out.map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(out[1].content).toBe("edited");
  });
});

describe("buildRows", () => {
  const now = new Date("2026-12-01T12:00:00");
  it("separates days and puts the new-messages marker before the first unread from others", () => {
    const list = [
      msg(1, 2, new Date("2026-11-30T09:00:00").toISOString()),
      msg(2, 1, new Date("2026-12-01T09:00:00").toISOString()),
      msg(3, 2, new Date("2026-12-01T09:01:00").toISOString()),
      msg(4, 2, new Date("2026-12-01T09:02:00").toISOString()),
    ];
    const rows = buildRows(list, 1, 1, now);
    expect(rows.map((r) => r.kind)).toEqual(["day", "message", "day", "message", "new", "message", "message"]);
    expect(rows[0]).toMatchObject({ label: "Yesterday" });
    expect(rows[2]).toMatchObject({ label: "Today" });
    // Consecutive messages of one sender are grouped, but not across the marker.
    expect(rows[5]).toMatchObject({ continued: false });
    expect(rows[6]).toMatchObject({ continued: true });
  });

  it("puts no marker when only my own messages are newer", () => {
    const list = [msg(1, 2, "2026-12-01T09:00:00Z"), msg(2, 1, "2026-12-01T09:01:00Z")];
    expect(buildRows(list, 1, 1, now).some((r) => r.kind === "new")).toBe(false);
  });
});
