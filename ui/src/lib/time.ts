// Dates as people read them in a chat.

export function dayKey(iso: string): string {
  const d = new Date(iso);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

export function dayLabel(iso: string, now = new Date()): string {
  const d = new Date(iso);
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const day = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  const diff = Math.round((today.getTime() - day.getTime()) / 86_400_000);
  if (diff === 0) return "Today";
  if (diff === 1) return "Yesterday";
  return d.toLocaleDateString(undefined, {
    weekday: "long",
    day: "numeric",
    month: "long",
    year: d.getFullYear() === now.getFullYear() ? undefined : "numeric",
  });
}

export function timeLabel(iso: string): string {
  return new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

/** "last seen 5 min ago" and the like. */
export function lastSeenLabel(iso: string | null, now = Date.now()): string {
  if (!iso) return "offline";
  const secs = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (secs < 60) return "last seen just now";
  const mins = Math.round(secs / 60);
  if (mins < 60) return `last seen ${mins} min ago`;
  const hours = Math.round(mins / 60);
  if (hours < 24) return `last seen ${hours} h ago`;
  return `last seen ${new Date(iso).toLocaleDateString()}`;
}

/** Short time for the conversation list: the time today, else the date. */
export function shortWhen(iso: string | null, now = new Date()): string {
  if (!iso) return "";
  return dayKey(iso) === dayKey(now.toISOString())
    ? timeLabel(iso)
    : new Date(iso).toLocaleDateString(undefined, { day: "numeric", month: "short" });
}
