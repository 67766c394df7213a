import { describe, expect, it } from "vitest";
import { micTestVerdicts } from "./mictest";
import type { MicTestResult } from "./backend";

const GOOD: MicTestResult = {
  level_db: -22,
  peak_db: -4,
  noise_floor_db: -65,
  clipped_percent: 0,
  echo: { kind: "absent" },
};

const verdict = (r: MicTestResult, what: string) => micTestVerdicts(r).find((v) => v.what === what);

describe("micTestVerdicts", () => {
  it("finds nothing to fix in a well-set microphone on headphones", () => {
    const all = micTestVerdicts(GOOD);
    expect(all.map((v) => v.what)).toEqual(["Level", "Background", "Echo"]);
    expect(all.every((v) => v.tone === "ok")).toBe(true);
  });

  it("tells a silent microphone apart from a quiet one, and judges no background in silence", () => {
    const silent = micTestVerdicts({ ...GOOD, level_db: -80, noise_floor_db: -90, echo: { kind: "unknown" } });
    expect(silent[0]).toMatchObject({ what: "Level", tone: "warn" });
    expect(silent[0].text).toContain("No sound");
    expect(silent.find((v) => v.what === "Background")).toBeUndefined();
    expect(verdict({ ...GOOD, echo: { kind: "unknown" } }, "Echo")?.tone).toBe("warn");
    expect(verdict({ ...GOOD, level_db: -41 }, "Level")?.text).toContain("Quiet (-41 dB)");
    // Floats the Rust side could not send (NaN) arrive as null: as silence, not a crash.
    expect(verdict({ ...GOOD, level_db: null }, "Level")?.text).toContain("No sound");
  });

  it("asks for less gain when the level is too high or the recording clipped", () => {
    expect(verdict({ ...GOOD, level_db: -6 }, "Level")?.text).toContain("Loud (-6 dB)");
    const clipped = verdict({ ...GOOD, clipped_percent: 1.26 }, "Clipping");
    expect(clipped).toMatchObject({ tone: "warn" });
    expect(clipped?.text).toContain("1.3 %");
    expect(verdict({ ...GOOD, clipped_percent: 0.05 }, "Clipping")).toBeUndefined();
  });

  it("points a noisy room to noise suppression and speakers the microphone hears to echo cancellation", () => {
    expect(verdict({ ...GOOD, noise_floor_db: -38 }, "Background")).toMatchObject({ tone: "warn" });
    const echo = verdict({ ...GOOD, echo: { kind: "present", delay_ms: 61.7, return_loss_db: 12.2 } }, "Echo");
    expect(echo?.tone).toBe("warn");
    expect(echo?.text).toContain("12 dB quieter than played, 62 ms later");
    const loud = verdict({ ...GOOD, echo: { kind: "present", delay_ms: 43, return_loss_db: -2 } }, "Echo");
    expect(loud?.text).toContain("as loud as played, 43 ms later");
    expect(echo?.text).toContain("echo cancellation");
  });
});
