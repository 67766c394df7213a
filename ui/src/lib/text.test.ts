import { describe, expect, it } from "vitest";
import { isSafeLink, linkify, mentions } from "./text";

describe("linkify", () => {
  it("leaves HTML-looking text as plain text", () => {
    const s = linkify("<img src=x onerror=alert(1)>");
    expect(s).toEqual([{ kind: "text", text: "<img src=x onerror=alert(1)>" }]);
  });

  it("finds http(s) and www links and keeps sentence punctuation outside", () => {
    const s = linkify("see https://example.org/a?b=1, and www.sohbet.dev.");
    expect(s).toEqual([
      { kind: "text", text: "see " },
      { kind: "link", text: "https://example.org/a?b=1", href: "https://example.org/a?b=1" },
      { kind: "text", text: ", and " },
      { kind: "link", text: "www.sohbet.dev", href: "https://www.sohbet.dev" },
      { kind: "text", text: "." },
    ]);
  });

  it("keeps a parenthesis that belongs to the link", () => {
    const s = linkify("(https://en.wikipedia.org/wiki/Tea_(drink))");
    expect(s[1]).toMatchObject({ kind: "link", text: "https://en.wikipedia.org/wiki/Tea_(drink)" });
  });

  it("never links other schemes", () => {
    expect(linkify("javascript:alert(1) data:text/html,x").every((s) => s.kind === "text")).toBe(true);
    expect(isSafeLink("javascript:alert(1)")).toBe(false);
    expect(isSafeLink("https://ok.example")).toBe(true);
  });
});

describe("mentions", () => {
  it("finds @username as a whole word, in any case, and nothing else", () => {
    expect(mentions("hi @ana!", "ana")).toBe(true);
    expect(mentions("@ANA look", "ana")).toBe(true);
    expect(mentions("hi @anna", "ana")).toBe(false);
    expect(mentions("mail ana@example.org", "ana")).toBe(false);
    expect(mentions("hi @a.b", "a.b")).toBe(true);
    expect(mentions("hi @axb", "a.b")).toBe(false);
  });
});
