// The app's state, fed by the session's event stream and by command answers. Screens read
// it and call its actions; nothing here re-fetches on render.
import { tick } from "svelte";
import { SvelteMap } from "svelte/reactivity";
import {
  commands,
  describeError,
  errorOf,
  subscribe,
  type AppEvent,
  type Event,
  type Friend,
  type FriendRequests,
  type GroupDetail,
  type GroupListItem,
  type GroupPosition,
  type Message,
  type NotificationLevel,
  type Presence,
  type PublicUser,
  type User,
} from "./backend";
import { Calls } from "./call.svelte";
import { notify, openExternal } from "./desktop";
import { mentions } from "./text";
import { appendPage, prependPage, upsertMessage, WINDOW } from "./timeline";

/** History page size: the server's largest (100), so a long history pages in few round trips;
 * the list is virtualized, so only what is on screen is drawn. */
const PAGE = 100;
/** Typing is announced at most this often while keys are pressed. */
const TYPING_EVERY_MS = 3000;
/** Conversations whose messages stay in memory after they are left: switching back to a
 * recent one is instant, and a long session of switching does not pile up windows. */
const KEEP_TIMELINES = 8;
/** A draft is saved once typing pauses this long: a keystroke costs no file write, and a
 * crash loses at most this much typing. */
const DRAFT_SAVE_MS = 400;

export type View = "chat" | "friends" | "settings";

export class Timeline {
  /** A window of the conversation, at most about `WINDOW` messages, in seq order. Raw: the
   * list is replaced, never changed in place, so Svelte does not wrap each message in a
   * proxy. */
  messages = $state.raw<Message[]>([]);
  hasOlder = $state(true);
  /** The window ends before the latest message (newer ones were dropped, or not loaded
   * after a jump back): live messages wait for the reader to page down to them. */
  hasNewer = $state(false);
  loading = $state(false);
  loaded = $state(false);
  error = $state<string | null>(null);
  /** Messages of others after this seq sit under the "new messages" marker. */
  newAfterSeq = $state<number | null>(null);
  /** Sent but not yet confirmed, or failed (kept with their nonce for a safe retry). */
  pending = $state<{ nonce: string; content: string; failed: string | null }[]>([]);
}

export class App {
  phase = $state<"loading" | "no_server" | "logged_out" | "app">("loading");
  server = $state<string | null>(null);
  me = $state<User | null>(null);
  /** The gateway connection: `offline` shows the banner; catch-up happens on `ready`. */
  connection = $state<"connecting" | "online" | "offline">("connecting");
  notice = $state<string | null>(null);

  conversations = new SvelteMap<number, GroupListItem>();
  details = new SvelteMap<number, GroupDetail>();
  timelines = new SvelteMap<number, Timeline>();
  users = new SvelteMap<number, PublicUser>();
  presence = new SvelteMap<number, { presence: Presence; last_seen: string | null }>();
  /** group → user → when their typing indicator lapses (ms since epoch). */
  typing = new SvelteMap<number, SvelteMap<number, number>>();
  voice = new SvelteMap<number, number[]>();
  drafts = new SvelteMap<number, string>();
  /** Conversations that do not notify on every message (kept by the Rust side). */
  notificationLevels = new SvelteMap<number, NotificationLevel>();
  calls = new Calls(() => this.me?.user_id ?? null);

  friends = $state<Friend[]>([]);
  requests = $state<FriendRequests>({ incoming: [], outgoing: [] });
  blocked = $state<Friend[]>([]);
  /** False until the friends lists first arrive (an empty list is not "no friends" yet). */
  friendsLoaded = $state(false);

  view = $state<View>("friends");
  selected = $state<number | null>(null);
  focused = $state(true);

  sorted = $derived(
    [...this.conversations.values()].sort((a, b) => activity(b) - activity(a) || b.group.group_id - a.group.group_id),
  );
  totalUnread = $derived([...this.conversations.values()].reduce((n, c) => n + Math.max(0, c.unread_count), 0));

  private lastTyping = new Map<number, number>();
  private draftTimers = new Map<number, ReturnType<typeof setTimeout>>();

  // --- start, server, login ------------------------------------------------------------

  async start() {
    // Subscribing and restoring the session go together: events of a session that starts
    // before the channel is in wait on the Rust side until it is.
    const subscribed = subscribe((e) => this.onEvent(e)).then(() => void performance.mark("sohbet:subscribed"));
    try {
      const [s] = await Promise.all([commands.startup(), subscribed]);
      performance.mark("sohbet:session");
      switch (s.state) {
        case "no_server":
          this.phase = "no_server";
          break;
        case "logged_out":
          this.server = s.server;
          this.phase = "logged_out";
          break;
        case "logged_in":
          this.server = s.server;
          await this.enter(s.user);
          break;
        case "offline":
          this.server = s.server;
          this.connection = "offline";
          this.phase = "app";
          break;
      }
    } catch (e) {
      this.notice = describeError(e);
      this.phase = "logged_out";
    }
  }

  async setServer(address: string) {
    this.server = await commands.setServer(address);
    this.phase = "logged_out";
  }

  async forgetServer() {
    await commands.forgetServer();
    this.server = null;
    this.phase = "no_server";
  }

  async logIn(login: string, password: string) {
    const user = await commands.logIn(login, password);
    await this.enter(user);
  }

  async register(username: string, email: string, password: string, displayName: string) {
    const user = await commands.register({
      username,
      email,
      password,
      display_name: displayName.trim() ? displayName.trim() : undefined,
    });
    await this.enter(user);
  }

  async logOut() {
    await commands.logOut();
    this.reset();
    this.phase = "logged_out";
  }

  private reset() {
    this.me = null;
    this.conversations.clear();
    this.details.clear();
    this.timelines.clear();
    this.users.clear();
    this.presence.clear();
    this.typing.clear();
    this.voice.clear();
    this.calls.reset();
    this.drafts.clear();
    this.friends = [];
    this.requests = { incoming: [], outgoing: [] };
    this.blocked = [];
    this.friendsLoaded = false;
    this.selected = null;
    this.view = "friends";
  }

  private async enter(user: User) {
    this.me = user;
    this.phase = "app";
    // Each marked as it arrives (`sohbet:loaded:*`), for the launch benchmark's breakdown.
    const loaded = (what: string) => () => void performance.mark(`sohbet:loaded:${what}`);
    await Promise.all([
      this.refreshConversations().then(loaded("conversations")),
      this.refreshFriends().then(loaded("friends")),
      this.loadNotificationLevels().then(loaded("notification-levels")),
      this.loadDrafts().then(loaded("drafts")),
      this.calls.loadAudio().then(loaded("audio")),
    ]);
    if (this.selected == null && this.sorted.length > 0) this.view = "chat";
    await tick();
    // The conversation list is on screen and usable: what the launch benchmark measures.
    performance.mark("sohbet:interactive");
  }

  // --- events ----------------------------------------------------------------------------

  onEvent(e: AppEvent) {
    switch (e.kind) {
      case "ready":
        this.me = e.user;
        this.connection = "online";
        for (const p of e.presences) this.presence.set(p.user_id, { presence: p.presence, last_seen: p.last_seen });
        this.voice.clear();
        for (const c of e.voice_calls) this.voice.set(c.group_id, c.participants.map((p) => p.user_id));
        this.calls.onReady(e.rings);
        // Catch up on what changed while away: the list (unless it already matches the
        // snapshot, as at start-up, when it was just fetched), the friends, and any open
        // conversation whose gap the replay does not cover.
        if (this.phase === "app") {
          void this.catchUpConversations(e.groups);
          void this.refreshFriends();
        }
        break;
      case "resumed":
        for (const id of e.resync_groups) if (this.timelines.has(id)) void this.reloadTimeline(id);
        break;
      case "disconnected":
        this.connection = "offline";
        break;
      case "session_ended":
        this.reset();
        this.notice = "Your session ended. Log in again.";
        this.phase = "logged_out";
        break;
      case "event":
        this.onServerEvent(e.event);
        break;
      case "call":
        this.calls.onCallEvent(e.group_id, e.event);
        break;
    }
  }

  private onServerEvent(ev: Event) {
    switch (ev.type) {
      case "presence_updated":
        this.presence.set(ev.user_id, { presence: ev.presence, last_seen: ev.last_seen });
        break;
      case "typing_started": {
        let m = this.typing.get(ev.group_id);
        if (!m) {
          m = new SvelteMap();
          this.typing.set(ev.group_id, m);
        }
        m.set(ev.user_id, Date.now() + Number(ev.expires_in_ms));
        break;
      }
      case "voice_state_updated": {
        const now = (this.voice.get(ev.group_id) ?? []).filter((u) => u !== ev.user_id);
        if (ev.in_call) now.push(ev.user_id);
        if (now.length) this.voice.set(ev.group_id, now);
        else this.voice.delete(ev.group_id);
        break;
      }
      case "call_ringing":
      case "call_ring_ended":
        this.calls.onServerEvent(ev);
        if (ev.type === "call_ringing" && ev.caller_id !== this.me?.user_id) {
          this.alert(ev.group_id, `${this.userName(ev.caller_id)} is calling`, "Open Sohbet to answer.", true);
        }
        break;
      case "message_created":
        this.onMessage(ev.message);
        break;
      case "message_updated": {
        const t = this.timelines.get(ev.message.group_id);
        if (t) t.messages = t.messages.map((m) => (m.message_id === ev.message.message_id ? ev.message : m));
        const c = this.conversations.get(ev.message.group_id);
        if (c?.last_message?.message_id === ev.message.message_id) this.conversations.set(c.group.group_id, { ...c, last_message: ev.message });
        break;
      }
      case "message_deleted": {
        const t = this.timelines.get(ev.group_id);
        if (t) t.messages = t.messages.filter((m) => m.message_id !== ev.message_id);
        const c = this.conversations.get(ev.group_id);
        if (c?.last_message?.message_id === ev.message_id) void this.refreshConversations();
        break;
      }
      case "messages_read": {
        const t = this.timelines.get(ev.group_id);
        if (t) t.messages = t.messages.map((m) => (m.seq <= ev.up_to_seq && !m.is_read ? { ...m, is_read: true } : m));
        break;
      }
      case "read_updated": {
        const d = this.details.get(ev.group_id);
        if (d) {
          this.details.set(ev.group_id, {
            ...d,
            members: d.members.map((m) => (m.user.user_id === ev.user_id ? { ...m, last_read_seq: Math.max(m.last_read_seq, ev.last_read_seq) } : m)),
          });
        }
        if (ev.user_id === this.me?.user_id) {
          const c = this.conversations.get(ev.group_id);
          if (c) this.conversations.set(ev.group_id, { ...c, last_read_seq: Math.max(c.last_read_seq, ev.last_read_seq) });
        }
        break;
      }
      case "unread_updated": {
        const c = this.conversations.get(ev.group_id);
        if (c) this.conversations.set(ev.group_id, { ...c, unread_count: ev.unread_count, last_read_seq: ev.last_read_seq });
        break;
      }
      case "friend_request_received":
      case "friend_request_accepted":
      case "friend_request_declined":
      case "friend_request_cancelled":
      case "friend_removed":
        void this.refreshFriends();
        if (ev.type === "friend_request_received") {
          this.remember(ev.request.user);
          this.alert(null, "Friend request", `${displayName(ev.request.user)} wants to be your friend.`);
        }
        break;
      case "group_created":
      case "group_updated":
      case "group_deleted":
      case "member_added":
      case "member_removed":
      case "member_role_changed": {
        const id = "group_id" in ev ? ev.group_id : ev.type === "group_created" ? ev.group.group.group_id : ev.group.group_id;
        if (ev.type === "group_deleted" || (ev.type === "member_removed" && ev.user_id === this.me?.user_id)) {
          this.conversations.delete(id);
          this.details.delete(id);
          this.timelines.delete(id);
          if (this.selected === id) {
            this.selected = null;
            this.view = "friends";
          }
        } else if (this.details.has(id)) {
          void this.loadDetails(id);
        }
        void this.refreshConversations();
        break;
      }
      default:
        break;
    }
  }

  private onMessage(m: Message) {
    const t = this.timelines.get(m.group_id);
    // A window short of the latest message gets it when the reader pages down to it.
    if (t?.loaded && !t.hasNewer) t.messages = upsertMessage(t.messages, m);
    const mine = m.sender_id === this.me?.user_id;
    // Someone who sent something has stopped typing.
    if (m.sender_id != null) this.typing.get(m.group_id)?.delete(m.sender_id);
    const c = this.conversations.get(m.group_id);
    if (!c) {
      void this.refreshConversations();
    } else if (m.seq > c.group.last_seq || c.last_message?.message_id !== m.message_id) {
      const unread = mine ? 0 : m.seq > c.last_read_seq && m.seq > c.group.last_seq ? c.unread_count + 1 : c.unread_count;
      this.conversations.set(m.group_id, {
        ...c,
        group: { ...c.group, last_seq: Math.max(c.group.last_seq, m.seq), last_message_at: m.sent_at },
        last_message: m,
        unread_count: unread,
        last_read_seq: mine ? Math.max(c.last_read_seq, m.seq) : c.last_read_seq,
      });
    }
    if (!mine && !(this.focused && this.view === "chat" && this.selected === m.group_id)) {
      const from = m.sender_id != null ? this.userName(m.sender_id) : "Someone";
      const where = c && !c.group.is_direct_msg ? ` in ${this.title(c)}` : "";
      const mentioned = this.me != null && mentions(m.content, this.me.username);
      this.alert(m.group_id, `${from}${where}`, m.content.slice(0, 200), mentioned);
    }
  }

  /** A desktop notification while the window is unfocused, unless I am on Do Not Disturb
   * or the conversation's level holds it back (`important`: a mention, a call). */
  private alert(groupId: number | null, title: string, body: string, important = false) {
    if (!shouldNotify(this.focused, this.me?.status, groupId == null ? "all" : this.notificationLevel(groupId), important)) return;
    void notify(title, body);
  }

  notificationLevel(groupId: number): NotificationLevel {
    return this.notificationLevels.get(groupId) ?? "all";
  }

  async loadNotificationLevels() {
    try {
      const levels = await commands.notificationLevels();
      this.notificationLevels.clear();
      for (const l of levels) this.notificationLevels.set(l.group_id, l.level);
    } catch {
      // Unreadable settings notify for everything, as new ones do.
    }
  }

  async setNotificationLevel(groupId: number, level: NotificationLevel) {
    try {
      await commands.setNotificationLevel(groupId, level);
      if (level === "all") this.notificationLevels.delete(groupId);
      else this.notificationLevels.set(groupId, level);
    } catch (e) {
      this.notice = describeError(e);
    }
  }

  // --- conversations -----------------------------------------------------------------------

  /** The list fetch in flight, if any. */
  private listing: Promise<void> | null = null;

  refreshConversations(): Promise<void> {
    const p = this.fetchConversations().finally(() => {
      if (this.listing === p) this.listing = null;
    });
    this.listing = p;
    return p;
  }

  /** Refetches the list unless, once a fetch in flight is in, it matches `positions` (the
   * gateway's snapshot of my groups): a redundant fetch at start-up would compete with the
   * rest of it for the server and the CPU, and redraw the whole list. */
  async catchUpConversations(positions: GroupPosition[]) {
    await this.listing;
    const same =
      positions.length === this.conversations.size &&
      positions.every((p) => {
        const c = this.conversations.get(p.group_id);
        return c != null && c.group.last_seq === p.last_seq && c.unread_count === p.unread;
      });
    if (!same) await this.refreshConversations();
  }

  private async fetchConversations() {
    try {
      const list = await commands.groups();
      const seen = new Set<number>();
      for (const item of list) {
        seen.add(item.group.group_id);
        this.conversations.set(item.group.group_id, item);
        if (item.dm_user) this.remember(item.dm_user);
      }
      for (const id of [...this.conversations.keys()]) if (!seen.has(id)) this.conversations.delete(id);
    } catch (e) {
      if (errorOf(e).code !== "unreachable") this.notice = describeError(e);
    }
  }

  title(c: GroupListItem): string {
    if (c.group.is_direct_msg) return c.dm_user ? displayName(c.dm_user) : "Direct message";
    return c.group.name ?? "Group";
  }

  remember(u: PublicUser) {
    this.users.set(u.user_id, u);
    if (!this.presence.has(u.user_id)) this.presence.set(u.user_id, { presence: u.status, last_seen: u.last_seen });
  }

  userName(id: number): string {
    if (id === this.me?.user_id) return "You";
    const u = this.users.get(id);
    return u ? displayName(u) : `User ${id}`;
  }

  presenceOf(id: number): Presence {
    return this.presence.get(id)?.presence ?? this.users.get(id)?.status ?? "offline";
  }

  async open(groupId: number) {
    this.view = "chat";
    this.selected = groupId;
    this.calls.markMissedSeen(groupId);
    // Most recently opened last; the least recent beyond the few kept are dropped (they
    // load again when opened).
    const t = this.timelines.get(groupId) ?? new Timeline();
    this.timelines.delete(groupId);
    this.timelines.set(groupId, t);
    for (const id of this.timelines.keys()) {
      if (this.timelines.size <= KEEP_TIMELINES) break;
      this.timelines.delete(id);
    }
    const c = this.conversations.get(groupId);
    t.newAfterSeq = c && c.unread_count > 0 ? c.last_read_seq : null;
    if (!t.loaded) await this.reloadTimeline(groupId);
    if (!this.details.has(groupId)) void this.loadDetails(groupId);
  }

  async loadDetails(groupId: number) {
    try {
      const d = await commands.group(groupId);
      for (const m of d.members) this.remember(m.user);
      this.details.set(groupId, d);
    } catch (e) {
      this.notice = describeError(e);
    }
  }

  /** Loads the latest page (again), keeping nothing stale. */
  async reloadTimeline(groupId: number) {
    const t = this.timelines.get(groupId);
    if (!t) return;
    t.loading = true;
    try {
      const page = await commands.history(groupId, { limit: PAGE });
      t.messages = prependPage([], page.messages);
      t.hasOlder = page.has_more;
      t.hasNewer = false;
      t.loaded = true;
      t.error = null;
    } catch (e) {
      t.error = describeError(e);
    } finally {
      t.loading = false;
    }
  }

  /** Puts the page before the window in front of it (nothing is dropped: see `trim`). */
  async loadOlder(groupId: number): Promise<boolean> {
    const t = this.timelines.get(groupId);
    if (!t || t.loading || !t.hasOlder || t.messages.length === 0) return false;
    return this.loadPage(t, groupId, "older");
  }

  /** Puts the page after the window behind it (nothing is dropped: see `trim`). */
  async loadNewer(groupId: number): Promise<boolean> {
    const t = this.timelines.get(groupId);
    if (!t || t.loading || !t.hasNewer || t.messages.length === 0) return false;
    return this.loadPage(t, groupId, "newer");
  }

  private async loadPage(t: Timeline, groupId: number, way: "older" | "newer"): Promise<boolean> {
    t.loading = true;
    try {
      if (way === "older") {
        const page = await commands.history(groupId, { before: t.messages[0].message_id, limit: PAGE });
        t.messages = prependPage(t.messages, page.messages);
        t.hasOlder = page.has_more;
        return page.messages.length > 0;
      }
      const page = await commands.history(groupId, { after: t.messages[t.messages.length - 1].message_id, limit: PAGE });
      t.messages = appendPage(t.messages, page.messages);
      t.hasNewer = page.has_more;
      return page.messages.length > 0;
    } catch (e) {
      t.error = describeError(e);
      return false;
    } finally {
      t.loading = false;
    }
  }

  /** Drops the messages of the window past `WINDOW` at the end far from the reader: the
   * `newer` end after paging up, the `older` end after paging down. A separate step from
   * loading, so the list can keep the reader's place through each change. */
  trim(groupId: number, end: "older" | "newer") {
    const t = this.timelines.get(groupId);
    if (!t || t.messages.length <= WINDOW) return;
    if (end === "newer") {
      t.messages = t.messages.slice(0, WINDOW);
      t.hasNewer = true;
    } else {
      t.messages = t.messages.slice(t.messages.length - WINDOW);
      t.hasOlder = true;
    }
  }

  /** Loads older pages until the first unread message is in memory, keeping the window's
   * size: with more unread than it holds, the newest ones wait below. */
  async loadToFirstUnread(groupId: number) {
    const t = this.timelines.get(groupId);
    if (!t || t.newAfterSeq == null) return;
    while (t.hasOlder && (t.messages[0]?.seq ?? 0) > t.newAfterSeq + 1) {
      if (!(await this.loadOlder(groupId))) break;
      this.trim(groupId, "newer");
    }
  }

  /** Marks the conversation read up to its latest message. */
  async markRead(groupId: number) {
    const c = this.conversations.get(groupId);
    const t = this.timelines.get(groupId);
    // The latest message: the window's last unless newer ones are not loaded.
    const inWindow = t && !t.hasNewer ? t.messages[t.messages.length - 1] : undefined;
    const last = inWindow && (!c?.last_message || inWindow.seq >= c.last_message.seq) ? inWindow : c?.last_message;
    if (!c || !last || (c.unread_count === 0 && c.last_read_seq >= last.seq)) return;
    try {
      const s = await commands.markRead(groupId, last.message_id);
      const now = this.conversations.get(groupId);
      if (now) this.conversations.set(groupId, { ...now, unread_count: s.unread_count, last_read_seq: s.last_read_seq });
    } catch (e) {
      if (errorOf(e).code !== "unreachable") this.notice = describeError(e);
    }
  }

  async markAllRead() {
    await Promise.all(this.sorted.filter((c) => c.unread_count > 0).map((c) => this.markRead(c.group.group_id)));
  }

  // --- sending -----------------------------------------------------------------------------

  async send(groupId: number, content: string, nonce: string = crypto.randomUUID()) {
    const t = this.timelines.get(groupId);
    if (!t) return;
    const existing = t.pending.find((p) => p.nonce === nonce);
    if (existing) existing.failed = null;
    else t.pending.push({ nonce, content, failed: null });
    try {
      const m = await commands.sendMessage(groupId, { content, nonce });
      t.pending = t.pending.filter((p) => p.nonce !== nonce);
      this.onMessage(m);
      // Sent while reading far back: show it where it went, at the end.
      if (t.hasNewer) await this.reloadTimeline(groupId);
    } catch (e) {
      const p = t.pending.find((x) => x.nonce === nonce);
      if (p) p.failed = describeError(e);
    }
  }

  discardPending(groupId: number, nonce: string) {
    const t = this.timelines.get(groupId);
    if (t) t.pending = t.pending.filter((p) => p.nonce !== nonce);
  }

  async edit(groupId: number, messageId: number, content: string) {
    const m = await commands.editMessage(groupId, messageId, content);
    const t = this.timelines.get(groupId);
    if (t) t.messages = t.messages.map((x) => (x.message_id === m.message_id ? m : x));
  }

  async remove(groupId: number, messageId: number) {
    await commands.deleteMessage(groupId, messageId);
    const t = this.timelines.get(groupId);
    if (t) t.messages = t.messages.filter((x) => x.message_id !== messageId);
  }

  // --- drafts ------------------------------------------------------------------------------

  async loadDrafts() {
    try {
      const drafts = await commands.drafts();
      this.drafts.clear();
      for (const d of drafts) this.drafts.set(d.group_id, d.text);
    } catch {
      // No drafts readable: the composers start empty.
    }
  }

  /** Keeps `text` as the conversation's draft; the Rust side saves it once typing pauses. */
  setDraft(groupId: number, text: string) {
    if (text) this.drafts.set(groupId, text);
    else this.drafts.delete(groupId);
    clearTimeout(this.draftTimers.get(groupId));
    this.draftTimers.set(
      groupId,
      setTimeout(() => {
        this.draftTimers.delete(groupId);
        void this.saveDraft(groupId);
      }, DRAFT_SAVE_MS),
    );
  }

  /** Drops the draft now, not after a pause (it is being sent). */
  clearDraft(groupId: number) {
    clearTimeout(this.draftTimers.get(groupId));
    this.draftTimers.delete(groupId);
    this.drafts.delete(groupId);
    void this.saveDraft(groupId);
  }

  private async saveDraft(groupId: number) {
    try {
      await commands.setDraft(groupId, this.drafts.get(groupId) ?? "");
    } catch (e) {
      this.notice = describeError(e);
    }
  }

  typingIn(groupId: number) {
    const now = Date.now();
    if (now - (this.lastTyping.get(groupId) ?? 0) < TYPING_EVERY_MS) return;
    this.lastTyping.set(groupId, now);
    void commands.typing(groupId).catch(() => {});
  }

  /** Who is typing in a group now (their expiry not passed). */
  typers(groupId: number, now: number): number[] {
    const m = this.typing.get(groupId);
    if (!m) return [];
    return [...m.entries()].filter(([, until]) => until > now).map(([u]) => u);
  }

  // --- friends -----------------------------------------------------------------------------

  async refreshFriends() {
    try {
      const [friends, requests, blocked] = await Promise.all([commands.friends(), commands.friendRequests(), commands.blocked()]);
      for (const f of [...friends, ...requests.incoming, ...requests.outgoing, ...blocked]) this.remember(f.user);
      // A friend's presence as the server sees it now (it may have become visible to me
      // only with this friendship).
      for (const f of friends) this.presence.set(f.user.user_id, { presence: f.user.status, last_seen: f.user.last_seen });
      this.friends = friends;
      this.friendsLoaded = true;
      this.requests = requests;
      this.blocked = blocked;
    } catch (e) {
      if (errorOf(e).code !== "unreachable") this.notice = describeError(e);
    }
  }

  async messageFriend(userId: number) {
    const d = await commands.openDm(userId);
    this.details.set(d.group.group_id, d);
    await this.refreshConversations();
    await this.open(d.group.group_id);
  }

  openLink(href: string) {
    void openExternal(href);
  }
}

/** Whether a notification goes out: never while the window is in use or on Do Not Disturb;
 * in a muted conversation never; in a mentions-only one for mentions and calls. */
export function shouldNotify(focused: boolean, status: string | undefined, level: NotificationLevel, important: boolean): boolean {
  if (focused || status === "dnd") return false;
  if (level === "muted") return false;
  return level === "all" || important;
}

function activity(c: GroupListItem): number {
  return new Date(c.group.last_message_at ?? c.group.created_at).getTime();
}

export function displayName(u: { display_name: string | null; username: string }): string {
  return u.display_name?.trim() ? u.display_name : u.username;
}

export const app = new App();
