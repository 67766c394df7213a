import { describe, expect, it } from "vitest";
import type { Message } from "./bindings";
import { appendPage, buildRows, prependPage, upsertMessage } from "./timeline";

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

describe("pages and live messages", () => {
  const at = "2026-12-01T10:00:00Z";
  const seqs = (l: Message[]) => l.map((m) => m.seq);

  it("puts an older page in front without doubles, whatever order it comes in", () => {
    const list = [msg(5, 1, at), msg(6, 1, at)];
    const out = prependPage(list, [msg(5, 1, at), msg(3, 1, at), msg(4, 2, at)]);
    expect(seqs(out)).toEqual([3, 4, 5, 6]);
    expect(out[2]).toBe(list[0]);
    expect(prependPage(list, [msg(6, 1, at)])).toBe(list);
  });

  it("puts a newer page after without doubles", () => {
    const list = [msg(1, 1, at), msg(2, 1, at)];
    expect(seqs(appendPage(list, [msg(2, 1, at), msg(4, 1, at), msg(3, 1, at)]))).toEqual([1, 2, 3, 4]);
    expect(appendPage([], [msg(2, 1, at), msg(1, 1, at)]).map((m) => m.seq)).toEqual([1, 2]);
  });

  it("appends a new message, replaces a known one and inserts a late one in order", () => {
    const list = [msg(1, 1, at), msg(3, 1, at), msg(4, 1, at)];
    expect(seqs(upsertMessage(list, msg(5, 2, at)))).toEqual([1, 3, 4, 5]);
    const edited = upsertMessage(list, { ...msg(3, 1, at), content: "edited" });
    expect(seqs(edited)).toEqual([1, 3, 4]);
    expect(edited[1].content).toBe("edited");
    expect(list[1].content).toBe("m3");
    expect(seqs(upsertMessage(list, msg(2, 2, at)))).toEqual([1, 2, 3, 4]);
    expect(seqs(upsertMessage([], msg(9, 2, at)))).toEqual([9]);
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
