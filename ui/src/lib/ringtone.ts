// The ring tone of an incoming call, generated in the web view (no sound file to ship): two
// tones mixed, two seconds on and four off, the cadence people know as a phone ringing.

const TONES_HZ = [440, 480];
const ON_S = 2;
const PERIOD_S = 6;
/** Quiet enough not to startle; the system volume does the rest. */
const GAIN = 0.08;

/** Starts ringing; the returned function stops it. Silent where the web view has no audio. */
export function startRingtone(): () => void {
  const Ctx = globalThis.AudioContext;
  if (!Ctx) return () => {};
  let ctx: AudioContext;
  try {
    ctx = new Ctx();
  } catch {
    return () => {};
  }
  const gain = ctx.createGain();
  gain.gain.value = 0;
  gain.connect(ctx.destination);
  for (const hz of TONES_HZ) {
    const osc = ctx.createOscillator();
    osc.frequency.value = hz;
    osc.connect(gain);
    osc.start();
  }
  // Schedule the cadence a minute ahead; a ring lasts less than that.
  const t0 = ctx.currentTime + 0.05;
  for (let t = t0; t < t0 + 60; t += PERIOD_S) {
    gain.gain.setValueAtTime(GAIN, t);
    gain.gain.setValueAtTime(0, t + ON_S);
  }
  return () => void ctx.close().catch(() => {});
}
