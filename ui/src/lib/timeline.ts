// A conversation's messages as the chat view shows them: merged without doubles, in seq
// order, with day separators and the "new messages" marker.
import type { Message } from "./bindings";
import { dayKey, dayLabel } from "./time";

/** Merges `incoming` into `list` (both in seq order), dropping messages already present
 * and replacing those that changed (edits, read flags). */
export function mergeMessages(list: Message[], incoming: Message[]): Message[] {
  if (incoming.length === 0) return list;
  const byId = new Map<number, Message>();
  for (const m of list) byId.set(m.message_id, m);
  for (const m of incoming) byId.set(m.message_id, m);
  return [...byId.values()].sort((a, b) => a.seq - b.seq);
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
