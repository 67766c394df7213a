// Message text is data: it is split into plain text and links and rendered as text nodes,
// never parsed as HTML.

export type Segment = { kind: "text"; text: string } | { kind: "link"; text: string; href: string };

const URL_RE = /\b(?:https?:\/\/|www\.)[^\s<>"'`]+/gi;
// Punctuation that usually ends the sentence around a link rather than the link itself.
const TRAILING = /[.,;:!?'")\]}>]+$/;

export function linkify(text: string): Segment[] {
  const out: Segment[] = [];
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    const start = match.index ?? 0;
    let url = match[0];
    const trail = url.match(TRAILING);
    if (trail) {
      // Keep a closing parenthesis that has its opening one inside the link.
      let cut = trail[0].length;
      if (trail[0].startsWith(")") && (url.match(/\(/g)?.length ?? 0) > 0) cut -= 1;
      url = url.slice(0, url.length - cut);
    }
    if (!url || url === "www." || /^https?:\/\/$/i.test(url)) continue;
    if (start > last) out.push({ kind: "text", text: text.slice(last, start) });
    const href = /^www\./i.test(url) ? `https://${url}` : url;
    out.push({ kind: "link", text: url, href });
    last = start + url.length;
  }
  if (last < text.length) out.push({ kind: "text", text: text.slice(last) });
  return out;
}

/** Only http(s) links are ever opened. */
export function isSafeLink(href: string): boolean {
  try {
    const u = new URL(href);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}

/** Whether `text` mentions `@username` (as a whole word, any case). */
export function mentions(text: string, username: string): boolean {
  const name = username.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|[^\\w@])@${name}(?![\\w])`, "i").test(text);
}
