import { describe, expect, it } from "vitest";
import { render } from "@testing-library/svelte";
import MessageText from "./MessageText.svelte";

describe("MessageText", () => {
  it("shows markup as text and creates no element from it", () => {
    const { container } = render(MessageText, { text: '<img src=x onerror=alert(1)> <b>bold</b>' });
    expect(container.querySelector("img")).toBeNull();
    expect(container.querySelector("b")).toBeNull();
    expect(container.textContent).toContain("<img src=x onerror=alert(1)>");
  });

  it("makes links clickable anchors", () => {
    const { container } = render(MessageText, { text: "docs at https://sohbet.example/docs." });
    const a = container.querySelector("a");
    expect(a?.getAttribute("href")).toBe("https://sohbet.example/docs");
    expect(a?.getAttribute("rel")).toContain("noopener");
  });
});
