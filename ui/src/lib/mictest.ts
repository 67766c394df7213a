// What the audio settings' microphone test found, put as a person needs it: one line each
// for the level, the background, clipping and echo, each good ("ok") or worth acting on
// ("warn", with what to do).
import type { MicTestResult } from "./backend";

export type Verdict = { what: string; text: string; tone: "ok" | "warn" };

/** Below this (dBFS) the microphone gave nothing a call partner could hear. */
const SILENT_DB = -50;
/** Speech below this is hard to hear; above `LOUD_DB` it risks clipping. */
const QUIET_DB = -35;
const LOUD_DB = -10;
/** A background above this is heard between words. */
const NOISY_DB = -45;
/** Clipped samples above this share (percent) are audible distortion. */
const CLIPPED_PERCENT = 0.1;

const db = (v: number) => `${Math.round(v)} dB`;

export function micTestVerdicts(r: MicTestResult): Verdict[] {
  const level = r.level_db ?? -100;
  const noise = r.noise_floor_db ?? -100;
  const clipped = r.clipped_percent ?? 0;
  const out: Verdict[] = [];
  if (level < SILENT_DB)
    out.push({ what: "Level", text: "No sound from the microphone: check that it is on and not muted, or pick another.", tone: "warn" });
  else if (level < QUIET_DB)
    out.push({ what: "Level", text: `Quiet (${db(level)}): raise the microphone's gain or move closer.`, tone: "warn" });
  else if (level > LOUD_DB)
    out.push({ what: "Level", text: `Loud (${db(level)}): lower the microphone's gain.`, tone: "warn" });
  else out.push({ what: "Level", text: `Good (${db(level)}).`, tone: "ok" });
  if (level >= SILENT_DB) {
    out.push(
      noise > NOISY_DB
        ? { what: "Background", text: `Noisy (${db(noise)}): noise suppression helps.`, tone: "warn" }
        : { what: "Background", text: `Quiet (${db(noise)}).`, tone: "ok" },
    );
  }
  if (clipped > CLIPPED_PERCENT)
    out.push({ what: "Clipping", text: `${clipped.toFixed(1)} % of the recording was clipped: lower the gain.`, tone: "warn" });
  switch (r.echo.kind) {
    case "present": {
      const loss = Math.round(r.echo.return_loss_db ?? 0);
      const how = loss >= 1 ? `${loss} dB quieter than played` : "as loud as played";
      out.push({
        what: "Echo",
        text: `Your speakers reach the microphone: it hears them ${how}, ${Math.round(r.echo.delay_ms ?? 0)} ms later. Keep echo cancellation on, or use headphones.`,
        tone: "warn",
      });
      break;
    }
    case "absent":
      out.push({ what: "Echo", text: "None: the microphone does not hear your speakers.", tone: "ok" });
      break;
    default:
      out.push({ what: "Echo", text: "Could not tell: nothing audible was recorded to play back.", tone: "warn" });
  }
  return out;
}
