//! Acoustic echo cancellation on the send path: removes from the microphone what the engine
//! itself played (the far end's voices coming back through the speaker and the room).
//!
//! The canceller is SpeexDSP's (MDF, a partitioned frequency-domain adaptive filter, with its
//! residual-echo suppressor), through the `sohbet-speexdsp` wrapper, at the engine's 48 kHz
//! in 10 ms frames. It learns the echo path from pairs (microphone frame, far-end frame
//! played around the same time); what it cannot do is find the far end's audio in time on
//! its own: SpeexDSP has no delay estimator, so the pairing must put each echo *after* its
//! far-end frame, and within the filter's length.
//!
//! The pairing is by count: the far-end signal the engine hands to the playout device is
//! queued here ([`EchoCanceller::played`]), and every microphone sample takes the oldest
//! queued far-end sample. Since the device plays and the microphone records on the same
//! timeline, the n-th sample played and the n-th sample recorded are a constant time apart
//! (the output latency, the air, minus nothing: the microphone lags), and the filter learns
//! that constant delay along with the room. What breaks counting — an underrun (the device
//! played silence nobody queued), a capture overflow, a capture that started late or
//! stalled — shows as a change in what the speaker has played minus what the microphone has
//! recorded, which [`EchoCanceller::align`] watches every engine tick and undoes.
//!
//! Between SpeexDSP's linear filter and its residual-echo suppressor, the filter's echo
//! estimate is subtracted only as far as it is really in the microphone
//! ([`EchoCanceller::process`]): with no echo path at all (headphones, or a speaker the
//! microphone does not hear) the filter never converges and would otherwise add far-end
//! speech to what the near end sends. How far that estimate explains the microphone also
//! says whether there is an echo at all ([`EchoCanceller::echo_presence`]): with none, the
//! canceller steps aside, neither subtracting nor suppressing anything.

use std::collections::VecDeque;

use sohbet_speexdsp::{EchoCanceller as Speex, EchoConfig};

use crate::{Result, SAMPLE_RATE};

/// Samples per canceller frame: 10 ms at 48 kHz (SpeexDSP recommends 10–20 ms; 10 ms adapts
/// twice as often and matches RNNoise's frame, which comes next).
pub const AEC_FRAME: usize = 480;
/// Filter length: 250 ms. It must cover the whole delay between a sample being handed to the
/// output device and its echo being recorded (device buffers on both sides, typically
/// 20–100 ms with PipeWire or PulseAudio, plus the room's tail of 50–100 ms in an office).
/// Longer converges more slowly and costs more per frame.
const FILTER_MS: usize = 250;
/// Residual-echo suppression while only the far end talks (SpeexDSP's default).
const SUPPRESS_DB: i32 = -40;
/// ... and while the near end talks: -10 dB. SpeexDSP's default (-15 dB) cost the near voice
/// 0.20 PESQ-WB in double talk with no echo at all (4.17 against 4.37 with the canceller off),
/// -10 dB 0.15, -5 dB 0.04; but at -5 dB the end-to-end test's echo came back 9 dB down
/// instead of 23–27 in 2 of 6 runs (at -10 dB 6 of 6 passed, 23–27 dB; the likely cause: a
/// residual the filter had not removed yet, taken for near speech and barely suppressed).
/// Since 2026-12-02 both are scaled by the echo's presence (see [`PRESENCE_FROM`]), so with
/// no echo they cost nothing (4.41 against 4.37) and -10 dB stays for when there is one.
const SUPPRESS_ACTIVE_DB: i32 = -10;
/// Share of the microphone's power the filter's estimate explains (`E[mic·y] / E[mic²]`,
/// smoothed like the estimate's share) at and below which there is no echo: the canceller
/// then neither subtracts nor suppresses. Measured offline (`DoubleTalk`, 2026-12-02): with
/// no echo path, in double talk, 0.00–0.01 per second and at most 0.02 in any frame (the
/// near voice drives SpeexDSP's filter to an estimate 17–40 dB below the microphone); with
/// an echo 10 dB below the far end under the near talker, 0.16–0.69 per second, ~1 while
/// the far end talks alone.
const PRESENCE_FROM: f32 = 0.02;
/// ... and from which the echo counts as fully there: subtraction and suppression as
/// before. In between they are scaled linearly.
const PRESENCE_FULL: f32 = 0.06;
/// Weight of each frame when the presence falls: ~1 s, so syllables of near speech with
/// no echo under them are not enough to drop the suppression. It rises at once: an echo
/// that appears must not wait.
const PRESENCE_RELEASE: f32 = 0.01;
/// Judged frames in a row (10 ms each, while the far end talks) in which the estimate
/// explained nothing of the microphone, after which the presence falls fast
/// ([`PRESENCE_RELEASE_FAST`]) — as long as the canceller has not found an echo since it
/// started: half a second, about what the filter needs to find a real echo from scratch
/// (0.4–0.6 s, see `an_echo_appearing_mid_call_is_suppressed_again_within_a_second`), so an
/// echo still being learnt keeps the suppression. Once an echo has been found, an estimate
/// that explains nothing more likely means a filter re-learning (after a realignment) than
/// an echo gone, and the slow release stays. Without it, a call that starts with
/// no echo (headphones) kept suppressing the near voice under the far end's for 2.5–3.5 s,
/// which cost the benchmark's calls ~0.1 PESQ-WB at 0 % loss (2026-12-03, interleaved, 3
/// calls each: 4.10 / 4.01 before, 4.13 / 4.14 with it, 4.23 / 4.23 canceller off).
const NO_ECHO_PROOF_FRAMES: u32 = 50;
/// Weight of each frame when the presence falls after that proof: ~100 ms.
const PRESENCE_RELEASE_FAST: f32 = 0.1;
/// Share of the microphone the estimate must explain for an echo to count as found
/// (`echo_found`), and judged frames (10 ms each) before it can: only then is the filter's
/// estimate subtracted at all. A filter still learning with no echo to learn fits itself
/// to the near voice (SpeexDSP starts with a large step) and its estimate explains part of
/// the microphone: measured offline in double talk from the start with no echo path
/// (2026-12-03), up to 0.28 in the first 5 judged frames and at most 0.075 after 8, for
/// seconds at a time; a real echo (-6 to -20 dB, 40–120 ms) explains 0.13–0.38 within 2–8
/// frames while the far end talks alone, and 0.16–0.69 under a near talker. Subtracting
/// that fitted estimate took the near voice with it: PESQ-WB of a near end talking from the
/// first moment, no echo, 4.32 / 4.37 / 4.43 against 4.40 / 4.40 / 4.54 with the
/// subtraction waiting for an echo to be found (canceller off: 4.37 / 4.37 / 4.50); the
/// residual-echo suppressor, scaled by the presence meanwhile, cost next to nothing.
/// The price is the subtraction's first 100 ms with an echo from the start (ERLE 0–0.5 s
/// 5.1 → 4.2 dB at 40 ms, -6 dB; from 0.5 s identical) and, for an echo appearing in a call
/// that had none, ~1 dB over its first second (suppression back as fast as before).
const ECHO_FOUND_FROM: f32 = 0.15;
const ECHO_FOUND_AFTER: u32 = 10;
/// Weight of each 10 ms frame in the smoothed correlation that judges the filter's echo
/// estimate: about 300 ms, long enough to average over syllables, short enough to follow a
/// filter that converges in a second or two.
const WORTH_SMOOTHING: f64 = 0.03;
/// Smoothed estimate power (16-bit units², per frame) below which it is not judged: an
/// estimate at about -70 dBFS, nothing to subtract either way.
const ESTIMATE_FLOOR: f64 = AEC_FRAME as f64 * 10.0 * 10.0;
/// More far-end audio queued than the device holds plus this (300 ms) means the microphone
/// stopped delivering: the pairing restarts from the present.
const MAX_AHEAD: usize = SAMPLE_RATE as usize * 3 / 10;
/// Engine ticks (5 ms each) over which the pairing's offset is watched: long enough to span
/// a few device periods, short enough to undo an underrun before the filter unlearns.
const DRIFT_WINDOW: u32 = 40;
/// Offset drift (samples, 2 ms) tolerated before realigning: device periods jitter by
/// less; an underrun or lost capture is at least a period.
const DRIFT_TOLERANCE: i64 = 96;

/// 16-bit scale SpeexDSP works in.
const I16_SCALE: f32 = 32768.0;

/// The echo canceller with its far-end queue.
pub struct EchoCanceller {
    speex: Speex,
    /// Far-end samples played or queued for playing, not yet paired with the microphone.
    far: VecDeque<f32>,
    mic: [i16; AEC_FRAME],
    reference: [i16; AEC_FRAME],
    out: [i16; AEC_FRAME],
    /// Smoothed correlation of the microphone with the filter's echo estimate, and the
    /// estimate's power: their ratio is how much of the estimate is really in the microphone.
    mic_by_estimate: f64,
    estimate_power: f64,
    /// The microphone's smoothed power: how much of it the estimate explains says whether
    /// there is an echo at all.
    mic_power: f64,
    /// The microphone frame through SpeexDSP's DC notch (see [`DcNotch`]).
    notched: [f32; AEC_FRAME],
    notch: DcNotch,
    /// Share of the filter's echo estimate really in the microphone (0..=1), see
    /// [`EchoCanceller::subtract_what_is_there`].
    worth: f32,
    /// Share of the estimate subtracted from the last frame (`worth` × presence), where the
    /// next frame's ramp starts.
    subtracted: f32,
    /// Whether there is an echo in the microphone (0..=1), see
    /// [`EchoCanceller::echo_presence`].
    presence: f32,
    /// Judged frames in a row in which the estimate explained none of the microphone.
    no_echo_frames: u32,
    /// Whether an echo has been found (see [`ECHO_FOUND_FROM`]) since the canceller
    /// started: until then nothing is subtracted, and a proven absence releases fast.
    echo_found: bool,
    /// Frames judged since the canceller started (see [`ECHO_FOUND_AFTER`]).
    judged: u32,
    /// Suppression (far end alone, double talk) last handed to SpeexDSP, in dB.
    suppression: (i32, i32),
    /// Whether the last frame was cancelled: the filter is reset when cancellation resumes,
    /// since the echo path may have changed meanwhile.
    running: bool,
    realigned: u64,
    /// Offset (see [`EchoCanceller::align`]) the pairing started at, once measured.
    anchor: Option<i64>,
    window_min: i64,
    window_ticks: u32,
    windows_seen: u32,
}

impl EchoCanceller {
    pub fn new() -> Result<Self> {
        let speex = Speex::new(EchoConfig {
            frame_size: AEC_FRAME,
            filter_length: SAMPLE_RATE as usize * FILTER_MS / 1000,
            sample_rate: SAMPLE_RATE,
            residual_suppression_db: Some(SUPPRESS_DB),
            residual_suppression_active_db: SUPPRESS_ACTIVE_DB,
        })?;
        Ok(Self {
            speex,
            far: VecDeque::with_capacity(MAX_AHEAD * 2),
            mic: [0; AEC_FRAME],
            reference: [0; AEC_FRAME],
            out: [0; AEC_FRAME],
            mic_by_estimate: 0.0,
            estimate_power: 0.0,
            mic_power: 0.0,
            worth: 1.0,
            subtracted: 1.0,
            presence: 1.0,
            no_echo_frames: 0,
            echo_found: false,
            judged: 0,
            suppression: (SUPPRESS_DB, SUPPRESS_ACTIVE_DB),
            notched: [0.0; AEC_FRAME],
            notch: DcNotch::new(),
            running: false,
            realigned: 0,
            anchor: None,
            window_min: i64::MAX,
            window_ticks: 0,
            windows_seen: 0,
        })
    }

    /// Queues far-end audio (48 kHz mono) handed to the playout device.
    pub fn played(&mut self, samples: &[f32]) {
        self.far.extend(samples);
        // Bounded whatever the caller does: never more than a second.
        let cap = SAMPLE_RATE as usize;
        if self.far.len() > cap {
            self.far.drain(..self.far.len() - cap);
        }
    }

    /// Keeps the pairing where it started: `unplayed` is how many 48 kHz samples the playout
    /// device still holds, `pending` how many the send chain has captured but not yet
    /// passed through the canceller. Call once per engine tick. Returns whether it realigned.
    ///
    /// `queued - unplayed - pending` is what the speaker has played minus what the
    /// microphone has recorded since the pairing began: constant while both run (the
    /// offset the filter has learnt), it drops by the length of every gap the speaker
    /// played that nobody queued (an underrun) and grows by every stretch the microphone
    /// lost. Its minimum over a short window (device periods make it saw-toothed) is
    /// compared with the one it started at, and a drift past [`DRIFT_TOLERANCE`] is undone
    /// by inserting silence in front of the far end (or dropping some), so the echo stays
    /// where the filter learnt it instead of moving and costing a re-convergence.
    pub fn align(&mut self, unplayed: usize, pending: usize) -> bool {
        let queued = self.far.len();
        if queued > unplayed + pending + MAX_AHEAD {
            // The microphone stalled (or started late): what played meanwhile has no pair.
            self.far.drain(..queued - unplayed - pending);
            self.measure_afresh();
            return self.realign(queued, unplayed, "microphone stalled");
        }
        let offset = queued as i64 - unplayed as i64 - pending as i64;
        self.window_min = self.window_min.min(offset);
        self.window_ticks += 1;
        if self.window_ticks < DRIFT_WINDOW {
            return false;
        }
        let seen = std::mem::replace(&mut self.window_min, i64::MAX);
        self.window_ticks = 0;
        // The first window holds the start-up (far end not flowing yet, first frames
        // buffered): the offset is taken from the second.
        self.windows_seen += 1;
        let Some(anchor) = self.anchor else {
            if self.windows_seen >= 2 {
                self.anchor = Some(seen);
            }
            return false;
        };
        let drift = seen - anchor;
        if drift.abs() <= DRIFT_TOLERANCE {
            return false;
        }
        if drift < 0 {
            // The speaker played silence of its own (underrun): so must the far end here.
            for _ in 0..(-drift).min(MAX_AHEAD as i64) {
                self.far.push_front(0.0);
            }
        } else {
            // The microphone lost samples: skip the far end they would have been paired with.
            self.far.drain(..(drift as usize).min(self.far.len()));
        }
        self.realign(queued, unplayed, "drift")
    }

    fn realign(&mut self, queued: usize, unplayed: usize, why: &'static str) -> bool {
        self.realigned += 1;
        tracing::debug!(queued, unplayed, why, "echo canceller realigned");
        true
    }

    /// Times the pairing had to be realigned (for statistics and tests).
    pub fn realigned(&self) -> u64 {
        self.realigned
    }

    /// Cancels the echo in one 10 ms microphone frame (48 kHz), in place, pairing it with the
    /// oldest queued far-end audio. With `enabled` false the frame is left alone but the
    /// far end is still consumed, so the pairing stays right for when it is switched on.
    pub fn process(&mut self, frame: &mut [f32], enabled: bool) {
        let n = frame.len().min(AEC_FRAME);
        for r in self.reference.iter_mut().take(n) {
            *r = to_i16(self.far.pop_front().unwrap_or(0.0));
        }
        if !enabled || n != AEC_FRAME {
            self.running = false;
            return;
        }
        if !self.running {
            self.speex.reset();
            self.mic_by_estimate = 0.0;
            self.estimate_power = 0.0;
            self.mic_power = 0.0;
            self.notch = DcNotch::new();
            self.worth = 1.0;
            self.subtracted = 1.0;
            // Until shown otherwise there is an echo: suppressing from the first frame.
            self.presence = 1.0;
            self.no_echo_frames = 0;
            self.echo_found = false;
            self.judged = 0;
            self.running = true;
        }
        for (m, &s) in self.mic.iter_mut().zip(frame.iter()) {
            *m = to_i16(s);
        }
        if let Err(e) = self.speex.cancel(&self.mic, &self.reference, &mut self.out) {
            // Cannot happen (the buffers are one frame by construction); leave the frame as
            // it was rather than lose it.
            tracing::warn!(error = %e, "echo canceller refused a frame");
            return;
        }
        self.subtract_what_is_there();
        self.scale_suppression();
        if let Err(e) = self.speex.suppress_residual(&mut self.out) {
            tracing::warn!(error = %e, "echo suppressor refused a frame");
            return;
        }
        for (s, &o) in frame.iter_mut().zip(self.out.iter()) {
            *s = f32::from(o) / I16_SCALE;
        }
    }

    /// Whether there is an echo in the microphone, 0 (none) to 1, for tests and statistics.
    ///
    /// Judged by how much of the microphone's power the filter's estimate `y` explains,
    /// `E[mic·y] / E[mic²]` (smoothed over ~300 ms), mapped from [`PRESENCE_FROM`] (0) to
    /// [`PRESENCE_FULL`] (1); it rises at once and falls over ~1 s. With no echo path the
    /// filter, driven by the near voice, still makes an estimate, and a part of it even
    /// correlates with the microphone (its share `E[mic·y] / E[y²]` goes up to 1 for
    /// seconds), but it is 17–40 dB weaker than the microphone and explains next to none of
    /// it; a real echo, even 10 dB under the near voice, explains a tenth or more.
    /// Both the subtraction and SpeexDSP's residual-echo suppression are scaled by it (and
    /// the subtraction waits for an echo to be found, see [`ECHO_FOUND_FROM`]).
    pub fn echo_presence(&self) -> f32 {
        self.presence
    }

    /// Scales the residual-echo suppression by [`EchoCanceller::echo_presence`]: SpeexDSP's
    /// suppressor takes (a share of) the filter's whole estimate for echo left in the
    /// microphone, which with no echo path is far-end speech that is not there, and
    /// attenuated the near voice under it (0.15 PESQ-WB in double talk at -10 dB).
    fn scale_suppression(&mut self) {
        let scaled = |db: i32| (db as f32 * self.presence).round() as i32;
        let wanted = (scaled(SUPPRESS_DB), scaled(SUPPRESS_ACTIVE_DB));
        if wanted == self.suppression {
            return;
        }
        match self.speex.set_residual_suppression(wanted.0, wanted.1) {
            Ok(()) => self.suppression = wanted,
            Err(e) => tracing::warn!(error = %e, "echo suppressor refused a setting"),
        }
    }

    /// Subtracts from the microphone only the share of the filter's echo estimate `y` that
    /// is really in it: the least-squares scale `E[mic·y] / E[y²]` (smoothed over ~300 ms,
    /// within 0..=1, and at most the current frame's own), times the echo's presence, once an
    /// echo has been found since the canceller started ([`ECHO_FOUND_FROM`]).
    /// Converged on a real echo, `y` is the echo and the scale is 1, double talk or not (the
    /// near voice is uncorrelated with it). With no echo to learn, SpeexDSP's filter never
    /// counts as adapted and keeps its fast start-up step, so the near voice drives it to
    /// an estimate made of far-end speech that is nowhere in the microphone: subtracting it
    /// would add the far end to what we send. Its scale is then near 0.
    fn subtract_what_is_there(&mut self) {
        // SpeexDSP high-passes the microphone (its DC notch) before subtracting its estimate:
        // the same notch here, so that `notched - out` is the estimate alone.
        let (mut mic_by_estimate, mut estimate_power, mut mic_power) = (0.0f64, 0.0, 0.0);
        for (n, &m) in self.notched.iter_mut().zip(self.mic.iter()) {
            *n = self.notch.filter(f32::from(m));
        }
        for (&m, &o) in self.notched.iter().zip(self.out.iter()) {
            let y = f64::from(m) - f64::from(o);
            mic_by_estimate += f64::from(m) * y;
            estimate_power += y * y;
            mic_power += f64::from(m) * f64::from(m);
        }
        self.mic_by_estimate += (mic_by_estimate - self.mic_by_estimate) * WORTH_SMOOTHING;
        self.estimate_power += (estimate_power - self.estimate_power) * WORTH_SMOOTHING;
        self.mic_power += (mic_power - self.mic_power) * WORTH_SMOOTHING;
        let smoothed = if self.estimate_power > ESTIMATE_FLOOR {
            self.judged = self.judged.saturating_add(1);
            // mic_power >= the estimate's floor here (else nothing to explain: no echo).
            let explained = (self.mic_by_estimate / self.mic_power.max(ESTIMATE_FLOOR)) as f32;
            let target =
                ((explained - PRESENCE_FROM) / (PRESENCE_FULL - PRESENCE_FROM)).clamp(0.0, 1.0);
            self.no_echo_frames = if target > 0.0 {
                0
            } else {
                self.no_echo_frames.saturating_add(1)
            };
            self.echo_found |= self.judged > ECHO_FOUND_AFTER && explained >= ECHO_FOUND_FROM;
            let release = if self.no_echo_frames >= NO_ECHO_PROOF_FRAMES && !self.echo_found {
                PRESENCE_RELEASE_FAST
            } else {
                PRESENCE_RELEASE
            };
            self.presence = if target > self.presence {
                target
            } else {
                self.presence + (target - self.presence) * release
            };
            (self.mic_by_estimate / self.estimate_power).clamp(0.0, 1.0) as f32
        } else {
            // No estimate to judge (the far end is silent): keep the last judgement.
            self.worth
        };
        // ... and never more than this frame's own least-squares share, so the output is
        // never louder than the microphone: in the near end's pauses a wrong estimate is all
        // there is, and the smoothed share follows it too slowly.
        let worth = if estimate_power > 1.0 {
            smoothed.min((mic_by_estimate / estimate_power).clamp(0.0, 1.0) as f32)
        } else {
            smoothed
        };
        // Nothing before an echo has been found: what the filter estimates meanwhile may be
        // the near voice (see ECHO_FOUND_FROM).
        let subtracted = if self.echo_found {
            worth * self.presence
        } else {
            0.0
        };
        // Ramped across the frame so a change never clicks.
        let step = (subtracted - self.subtracted) / AEC_FRAME as f32;
        for (i, (o, &m)) in self.out.iter_mut().zip(self.notched.iter()).enumerate() {
            let g = self.subtracted + step * (i + 1) as f32;
            let y = m - f32::from(*o);
            *o = (m - g * y).round().clamp(-32768.0, 32767.0) as i16;
        }
        self.worth = worth;
        self.subtracted = subtracted;
    }

    /// Forgets the echo path and the far-end queue (the output device changed).
    pub fn reset(&mut self) {
        self.far.clear();
        self.running = false;
        self.measure_afresh();
    }

    /// Forgets the pairing's offset: the next window measures it anew.
    fn measure_afresh(&mut self) {
        self.anchor = None;
        self.window_min = i64::MAX;
        self.window_ticks = 0;
        self.windows_seen = 0;
    }
}

/// SpeexDSP's DC notch on the microphone (`filter_dc_notch16` in mdf.c, float build, with the
/// radius it takes at the canceller's 48 kHz): a second-order high-pass at a few tens of Hz it applies before
/// subtracting its echo estimate. Reproduced so the estimate can be told from the notch.
struct DcNotch {
    mem: [f32; 2],
}

impl DcNotch {
    /// mdf.c: 0.992 from 24 kHz up.
    const RADIUS: f32 = 0.992;
    /// mdf.c: `radius² + 0.7·(1 − radius)²`.
    const DEN2: f32 =
        Self::RADIUS * Self::RADIUS + 0.7 * (1.0 - Self::RADIUS) * (1.0 - Self::RADIUS);

    fn new() -> Self {
        Self { mem: [0.0; 2] }
    }

    fn filter(&mut self, x: f32) -> f32 {
        let v = self.mem[0] + x;
        self.mem[0] = self.mem[1] + 2.0 * (-x + Self::RADIUS * v);
        self.mem[1] = x - Self::DEN2 * v;
        Self::RADIUS * v
    }
}

fn to_i16(s: f32) -> i16 {
    (s * I16_SCALE).round().clamp(-32768.0, 32767.0) as i16
}
