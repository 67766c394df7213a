import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { App, Timeline } from "./app.svelte";
import type { GroupListItem, Message, User } from "./bindings";

const me: User = {
  user_id: 1, username: "ana", email: "ana@example.org", display_name: null, profile_pic: null,
  friend_code: "ABCDEFGH", status: "online", last_seen: null,
  created_at: "2026-12-01T00:00:00Z", updated_at: "2026-12-01T00:00:00Z",
};

function item(id: number): GroupListItem {
  return {
    group: { group_id: id, name: "g", description: null, is_direct_msg: false, created_at: "2026-12-01T00:00:00Z",
      updated_at: "2026-12-01T00:00:00Z", last_seq: 0, last_message_at: null },
    my_role: "member", last_message: null, unread_count: 0, last_read_seq: 0, dm_user: null,
  };
}

function message(seq: number, sender: number): Message {
  return { message_id: 100 + seq, group_id: 7, sender_id: sender, content: `hi ${seq}`, seq, is_read: false,
    sent_at: "2026-12-01T10:00:00Z", updated_at: "2026-12-01T10:00:00Z", edited_at: null, nonce: null };
}

describe("App events", () => {
  let a: App;
  beforeEach(() => {
    a = new App();
    a.me = me;
    a.conversations.set(7, item(7));
    const t = new Timeline();
    t.loaded = true;
    a.timelines.set(7, t);
  });
  afterEach(() => clearMocks());

  it("counts a message from someone else once, even when replayed after a reconnect", () => {
    const ev = { kind: "event" as const, event: { type: "message_created" as const, message: message(1, 2) } };
    a.onEvent(ev);
    a.onEvent({ kind: "disconnected", code: null });
    expect(a.connection).toBe("offline");
    a.onEvent(ev);
    expect(a.conversations.get(7)?.unread_count).toBe(1);
    expect(a.timelines.get(7)?.messages.map((m) => m.seq)).toEqual([1]);
  });

  it("keeps a failed send with its nonce and retries with the same one", async () => {
    const nonces: string[] = [];
    let fail = true;
    mockIPC((cmd, args) => {
      if (cmd === "send_message") {
        const req = (args as { request: { content: string; nonce: string } }).request;
        nonces.push(req.nonce);
        if (fail) throw { code: "unreachable", message: "Cannot reach the server.", field: null, retry_after_secs: null };
        return { ...message(2, 1), content: req.content, nonce: req.nonce };
      }
      return null;
    });
    await a.send(7, "hello");
    const t = a.timelines.get(7)!;
    expect(t.pending).toHaveLength(1);
    expect(t.pending[0].failed).toContain("reach");
    fail = false;
    await a.send(7, "hello", t.pending[0].nonce);
    expect(t.pending).toHaveLength(0);
    expect(nonces[0]).toBe(nonces[1]);
    expect(t.messages.map((m) => m.content)).toEqual(["hello"]);
  });
});
