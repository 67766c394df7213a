// A conversation's messages as the chat view shows them: merged without doubles, in seq
// order, with day separators and the "new messages" marker.
import type { Message } from "./bindings";
import { dayKey, dayLabel } from "./time";

/** How many messages a conversation keeps in memory: ten of the largest pages. Reading on
 * past them pages more in and drops the far end, so a 10,000-message history costs the web
 * view what a short one does. */
export const WINDOW = 1000;

function bySeq(page: Message[]): Message[] {
  return page.length > 1 ? [...page].sort((a, b) => a.seq - b.seq) : page;
}

/** `list` with an older page in front: only messages older than its first (a page that
 * overlaps what is loaded adds no doubles). The list's own messages are not touched. */
export function prependPage(list: Message[], page: Message[]): Message[] {
  const first = list[0]?.seq ?? Infinity;
  const older = bySeq(page).filter((m) => m.seq < first);
  return older.length === 0 ? list : older.concat(list);
}

/** `list` with a newer page after it: only messages newer than its last. */
export function appendPage(list: Message[], page: Message[]): Message[] {
  const last = list[list.length - 1]?.seq ?? -Infinity;
  const newer = bySeq(page).filter((m) => m.seq > last);
  return newer.length === 0 ? list : list.concat(newer);
}

/** `list` with `m` in place: a new message goes at the end (the usual case, no search), a
 * known one replaces its copy (an edit, a read flag, a replay), a late one is inserted. */
export function upsertMessage(list: Message[], m: Message): Message[] {
  const last = list[list.length - 1];
  if (!last || m.seq > last.seq) return [...list, m];
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].seq < m.seq) lo = mid + 1;
    else hi = mid;
  }
  const out = [...list];
  if (list[lo]?.seq === m.seq) out[lo] = m;
  else out.splice(lo, 0, m);
  return out;
}

export type Row =
  | { kind: "day"; key: string; label: string }
  | { kind: "new"; key: string }
  | { kind: "message"; key: string; message: Message; continued: boolean };

/** Rows for the virtual list. `newAfterSeq`: the reader's watermark when the
 * conversation was opened; messages of others after it sit under the marker. */
export function buildRows(messages: Message[], newAfterSeq: number | null, myId: number | null, now = new Date()): Row[] {
  const rows: Row[] = [];
  let lastDay = "";
  let prev: Message | null = null;
  let markerPlaced = false;
  for (const m of messages) {
    const day = dayKey(m.sent_at);
    if (day !== lastDay) {
      rows.push({ kind: "day", key: `day-${day}`, label: dayLabel(m.sent_at, now) });
      lastDay = day;
      prev = null;
    }
    if (!markerPlaced && newAfterSeq != null && m.seq > newAfterSeq && m.sender_id !== myId) {
      rows.push({ kind: "new", key: "new-marker" });
      markerPlaced = true;
      prev = null;
    }
    const continued =
      prev != null &&
      prev.sender_id === m.sender_id &&
      new Date(m.sent_at).getTime() - new Date(prev.sent_at).getTime() < 5 * 60_000;
    rows.push({ kind: "message", key: `m-${m.message_id}`, message: m, continued });
    prev = m;
  }
  return rows;
}
