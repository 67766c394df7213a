import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { App, Timeline } from "./app.svelte";
import type { GroupListItem, HistoryQuery, Message, User } from "./bindings";
import { WINDOW } from "./timeline";

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

  it("refetches the list on ready only when it differs from the gateway's snapshot", async () => {
    let listed = 0;
    mockIPC((cmd) => {
      if (cmd === "groups") {
        listed += 1;
        return [{ ...item(7), group: { ...item(7).group, last_seq: 3 } }];
      }
      return null;
    });
    await a.catchUpConversations([{ group_id: 7, last_seq: 0, unread: 0 }]);
    expect(listed).toBe(0);
    await a.catchUpConversations([{ group_id: 7, last_seq: 3, unread: 0 }]);
    expect(listed).toBe(1);
    expect(a.conversations.get(7)?.group.last_seq).toBe(3);
    // A group I joined meanwhile, and one whose unread count moved.
    await a.catchUpConversations([{ group_id: 7, last_seq: 3, unread: 0 }, { group_id: 8, last_seq: 1, unread: 1 }]);
    await a.catchUpConversations([{ group_id: 7, last_seq: 3, unread: 2 }]);
    expect(listed).toBe(3);
  });

  it("waits for a list fetch in flight before deciding it is current", async () => {
    let listed = 0;
    let release: () => void = () => {};
    mockIPC(async (cmd) => {
      if (cmd !== "groups") return null;
      listed += 1;
      await new Promise<void>((r) => (release = r));
      return [{ ...item(7), group: { ...item(7).group, last_seq: 5 } }];
    });
    const first = a.refreshConversations();
    const ready = a.catchUpConversations([{ group_id: 7, last_seq: 5, unread: 0 }]);
    await Promise.resolve();
    release();
    await Promise.all([first, ready]);
    expect(listed).toBe(1);
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

describe("a long conversation's window", () => {
  const LATEST = 5000;
  let a: App;
  const asked: HistoryQuery[] = [];
  beforeEach(() => {
    a = new App();
    a.me = me;
    a.conversations.set(7, { ...item(7), last_message: message(LATEST, 2) });
    asked.length = 0;
    // A server holding messages 1..LATEST (message_id = 100 + seq), paging as the real one.
    mockIPC((cmd, args) => {
      if (cmd !== "history") return null;
      const q = (args as { query: HistoryQuery }).query;
      asked.push(q);
      const limit = q.limit ?? 50;
      let from: number;
      let to: number;
      if (q.before != null) [from, to] = [Math.max(1, q.before - 100 - limit), q.before - 100 - 1];
      else if (q.after != null) [from, to] = [q.after - 100 + 1, Math.min(LATEST, q.after - 100 + limit)];
      else [from, to] = [LATEST - limit + 1, LATEST];
      const messages = [];
      for (let seq = from; seq <= to; seq++) messages.push(message(seq, 2));
      const has_more = q.after != null ? to < LATEST : from > 1;
      return { messages, has_more };
    });
  });
  afterEach(() => clearMocks());
  const seqs = () => a.timelines.get(7)!.messages.map((m) => m.seq);

  it("pages up without doubles and drops the newest past the window, then pages back down", async () => {
    await a.open(7);
    expect(seqs()).toEqual(Array.from({ length: 100 }, (_, i) => LATEST - 99 + i));
    for (let i = 0; i < 12; i++) {
      await a.loadOlder(7);
      a.trim(7, "newer");
    }
    const t = a.timelines.get(7)!;
    expect(t.messages).toHaveLength(WINDOW);
    expect(t.hasNewer).toBe(true);
    expect(seqs()[0]).toBe(LATEST - 1299);
    expect(seqs().every((s, i) => i === 0 || s === seqs()[i - 1] + 1)).toBe(true);

    // A live message past the window waits for the reader to page down to it.
    a.onEvent({ kind: "event", event: { type: "message_created", message: message(LATEST + 1, 2) } });
    expect(seqs()[seqs().length - 1]).toBe(LATEST - 300);

    // Reading on down brings the newer pages back and drops the oldest.
    while (t.hasNewer) {
      await a.loadNewer(7);
      a.trim(7, "older");
    }
    expect(t.messages).toHaveLength(WINDOW);
    expect(seqs()[seqs().length - 1]).toBe(LATEST);
    expect(t.hasOlder).toBe(true);
    expect(asked.some((q) => q.after === 100 + LATEST - 300)).toBe(true);
  });

  it("jumps back to the first unread of more than a window, keeping the window's size", async () => {
    a.conversations.set(7, { ...item(7), last_message: message(LATEST, 2), unread_count: 2000, last_read_seq: LATEST - 2000 });
    await a.open(7);
    await a.loadToFirstUnread(7);
    const t = a.timelines.get(7)!;
    expect(t.messages.length).toBeLessThanOrEqual(WINDOW);
    expect(seqs()[0]).toBeLessThanOrEqual(LATEST - 1999);
    expect(t.hasNewer).toBe(true);
  });
});

describe("switching conversations", () => {
  afterEach(() => clearMocks());

  it("keeps the messages of the few most recent, and loads a dropped one again", async () => {
    const loads: number[] = [];
    mockIPC((cmd, args) => {
      if (cmd !== "history") return null;
      const { groupId } = args as { groupId: number };
      loads.push(groupId);
      return { messages: [{ ...message(1, 2), group_id: groupId }], has_more: false };
    });
    const a = new App();
    a.me = me;
    for (let id = 1; id <= 10; id++) await a.open(id);
    expect([...a.timelines.keys()]).toEqual([3, 4, 5, 6, 7, 8, 9, 10]);
    await a.open(4);
    await a.open(1);
    expect([...a.timelines.keys()]).toEqual([5, 6, 7, 8, 9, 10, 4, 1]);
    expect(loads.filter((id) => id === 1)).toHaveLength(2);
    expect(loads.filter((id) => id === 4)).toHaveLength(1);
  });
});

describe("drafts", () => {
  afterEach(() => {
    clearMocks();
    vi.useRealTimers();
  });

  it("are restored at start and saved once typing pauses, and a sent one at once", async () => {
    vi.useFakeTimers();
    const saved: [number, string][] = [];
    mockIPC((cmd, args) => {
      if (cmd === "drafts") return [{ group_id: 7, text: "from last time" }];
      if (cmd === "set_draft") {
        const { groupId, text } = args as { groupId: number; text: string };
        saved.push([groupId, text]);
      }
      return null;
    });
    const a = new App();
    await a.loadDrafts();
    expect(a.drafts.get(7)).toBe("from last time");
    a.setDraft(8, "h");
    a.setDraft(8, "he");
    a.setDraft(8, "hello");
    expect(saved).toEqual([]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(saved).toEqual([[8, "hello"]]);
    a.setDraft(7, "from last time, edited");
    a.clearDraft(7);
    await vi.advanceTimersByTimeAsync(1000);
    expect(saved).toEqual([[8, "hello"], [7, ""]]);
    expect(a.drafts.has(7)).toBe(false);
  });
});
