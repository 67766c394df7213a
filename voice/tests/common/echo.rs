//! A simulated echo path for the echo canceller: the far end's speech, delayed, attenuated
//! and lightly filtered like a speaker and a room, added to the near end's microphone, run
//! through the real send chain fed the way the engine feeds it (the far end handed over as it
//! is queued for playing, ahead of the microphone). Shared by the tests and the benchmark.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use voice::analysis::{segmental_correlation, to_analysis_rate, ANALYSIS_RATE};
use voice::audio::wav::read_wav;
use voice::audio::{Capture, Playout, StreamFormat};
use voice::dsp::{level_dbfs, MonoResampler, SendChain, SendSettings};

use super::{MONO, RATE};

/// Far-end talker: five Harvard sentences (~13 s).
pub const FAR_TEXT: &str = "The birch canoe slid on the smooth planks. Glue the sheet to the \
    dark blue background. It is easy to tell the depth of a well. These days a chicken leg \
    is a rare dish. Rice is often served in round bowls.";
/// Near-end talker: two other sentences, in another voice (~5 s).
pub const NEAR_TEXT: &str = "The juice of lemons makes fine punch. The box was thrown beside \
    the parked truck.";
/// Near-end talker for the double-talk measurement: five more sentences, talked over the far
/// end's [`FAR_TEXT`] from start to end (~12 s).
pub const NEAR_LONG_TEXT: &str = "The juice of lemons makes fine punch. The box was thrown \
    beside the parked truck. The hogs were fed chopped corn and garbage. Four hours of steady \
    work faced us. A large size in stockings is hard to sell.";

/// Speech from espeak-ng (`voice` e.g. `en-us`, `en-us+f3`), 48 kHz mono, scaled so its
/// active speech is at `level_db` dBFS. Fails with what to install when espeak-ng is missing.
pub fn espeak(text: &str, voice: &str, level_db: f32) -> Result<Vec<f32>, String> {
    let dir = std::env::var("SOHBET_AUDIO_DIR").unwrap_or_else(|_| "/tmp/sohbet-audio".into());
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {dir}: {e}"))?;
    let path = PathBuf::from(dir).join(format!(
        "echo-{}-{}.wav",
        std::process::id(),
        voice.replace('+', "-")
    ));
    let status = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .map_err(|e| format!("espeak-ng not runnable ({e}): apt-get install espeak-ng"))?;
    if !status.success() {
        return Err(format!("espeak-ng failed: {status}"));
    }
    let (samples, format) = read_wav(&path).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&path);
    let mut mono = Vec::new();
    voice::dsp::downmix(&samples, format.channels, &mut mono);
    let mut resampler = MonoResampler::new(format.sample_rate, RATE).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    resampler.process(&mono, &mut out);
    resampler.process(&vec![0.0; format.sample_rate as usize / 50], &mut out);
    Ok(scale_to(&out, level_db))
}

/// Level of the active speech in `signal`: the power of the 20 ms frames within 30 dB of the
/// loudest, in dBFS.
pub fn speech_level(signal: &[f32]) -> f32 {
    let frames: Vec<f32> = signal.chunks(RATE as usize / 50).map(level_dbfs).collect();
    let loudest = frames.iter().copied().fold(-100.0f32, f32::max);
    let active: Vec<f32> = frames.into_iter().filter(|l| *l > loudest - 30.0).collect();
    if active.is_empty() {
        return -100.0;
    }
    let power = active.iter().map(|l| 10f32.powf(l / 10.0)).sum::<f32>() / active.len() as f32;
    10.0 * power.max(1e-10).log10()
}

/// `signal` scaled so its active speech is at `level_db` dBFS.
pub fn scale_to(signal: &[f32], level_db: f32) -> Vec<f32> {
    let gain = 10f32.powf((level_db - speech_level(signal)) / 20.0);
    signal.iter().map(|s| s * gain).collect()
}

/// The acoustic path from the speaker to the microphone.
#[derive(Debug, Clone, Copy)]
pub struct EchoPath {
    /// Delay from the sample leaving the engine to its echo being recorded.
    pub delay_ms: f32,
    /// Level of the echo relative to what was played.
    pub attenuation_db: f32,
}

impl EchoPath {
    /// The echo of `far` the microphone records: the direct sound low-passed (a small
    /// speaker), three reflections, the whole `attenuation_db` below `far`.
    pub fn apply(&self, far: &[f32]) -> Vec<f32> {
        let ms = |m: f32| (m * RATE as f32 / 1000.0) as usize;
        let d = ms(self.delay_ms);
        let taps = [
            (0, 1.0f32),
            (ms(2.5), 0.35),
            (ms(6.0), -0.2),
            (ms(13.0), 0.1),
        ];
        let mut lp = 0.0f32;
        let low_passed: Vec<f32> = far
            .iter()
            .map(|&x| {
                lp = 0.6 * x + 0.4 * lp;
                lp
            })
            .collect();
        let mut echo = vec![0.0f32; far.len()];
        for (offset, gain) in taps {
            for (i, e) in echo.iter_mut().enumerate().skip(d + offset) {
                *e += gain * low_passed[i - d - offset];
            }
        }
        let want = level_dbfs(far) + self.attenuation_db;
        let gain = 10f32.powf((want - level_dbfs(&echo)) / 20.0);
        echo.iter_mut().for_each(|e| *e *= gain);
        echo
    }
}

/// What went through the send chain.
pub struct EchoRun {
    /// The echo alone, as recorded.
    pub echo: Vec<f32>,
    /// What the chain sent (same timeline as the microphone).
    pub out: Vec<f32>,
    /// Times the chain had to realign far end and microphone (0 in a clean simulation).
    pub realigned: u64,
    /// Time spent in the send chain (for the benchmark's cost per frame).
    pub chain_time: std::time::Duration,
    /// The canceller's echo presence (0..=1) after each 10 ms tick.
    pub presence: Vec<f32>,
}

/// How far ahead of playing the engine hands a frame to the device (its playout queue).
const QUEUED: usize = RATE as usize / 50;
/// The engine's tick in this simulation: 10 ms.
const TICK: usize = RATE as usize / 100;

/// Runs `near + path(far)` through a send chain with `settings`, ticking like the engine:
/// each tick the microphone's new samples are pushed, then the far end is topped up to
/// [`QUEUED`] ahead of what has played. `far` plays from sample 0.
pub fn run(far: &[f32], near: &[f32], path: EchoPath, settings: SendSettings) -> EchoRun {
    run_mixed(far, near, path.apply(far), settings)
}

/// [`run`] with no echo path: the microphone hears only `near`, the far end still plays.
pub fn run_without_echo(far: &[f32], near: &[f32], settings: SendSettings) -> EchoRun {
    run_mixed(far, near, vec![0.0; far.len()], settings)
}

fn run_mixed(far: &[f32], near: &[f32], echo: Vec<f32>, settings: SendSettings) -> EchoRun {
    let len = far.len().max(near.len());
    let mic: Vec<f32> = (0..len)
        .map(|i| near.get(i).copied().unwrap_or(0.0) + echo.get(i).copied().unwrap_or(0.0))
        .collect();
    let mut chain = match SendChain::new(MONO) {
        Ok(chain) => chain,
        Err(e) => panic!("send chain: {e}"),
    };
    let mut out = Vec::with_capacity(len);
    let mut handed = 0;
    let mut played = 0;
    let mut block = Vec::with_capacity(TICK);
    let mut chain_time = std::time::Duration::ZERO;
    let mut presence = Vec::with_capacity(len / TICK + 1);
    while played < len {
        let end = (played + TICK).min(len);
        let start = std::time::Instant::now();
        chain.push(&mic[played..end], settings, |frame, _| {
            out.extend_from_slice(frame)
        });
        played = end;
        chain.align_far_end(handed - played.min(handed));
        chain_time += start.elapsed();
        presence.push(chain.echo_presence());
        while handed < played + QUEUED {
            let to = handed + TICK;
            block.clear();
            block.extend((handed..to).map(|i| far.get(i).copied().unwrap_or(0.0)));
            let start = std::time::Instant::now();
            chain.far_end(&block);
            chain_time += start.elapsed();
            handed = to;
        }
    }
    EchoRun {
        echo,
        out,
        realigned: chain.echo_realigned(),
        chain_time,
        presence,
    }
}

/// Echo return loss enhancement over samples `from..to`: how much quieter the chain's output
/// is than the echo that went in, in dB.
pub fn erle_db(run: &EchoRun, from: usize, to: usize) -> f32 {
    let to = to.min(run.out.len()).min(run.echo.len());
    let power = |x: &[f32]| x.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
    let echo = power(&run.echo[from..to]);
    let residual = power(&run.out[from..to]).max(1e-12);
    (10.0 * (echo / residual).log10()) as f32
}

/// How well the near-end talker survives in `out` over `from..to`: segmental correlation
/// (0..1) of the output against the clean near-end speech, at the analysis rate.
pub fn near_end_score(near: &[f32], out: &[f32], from: usize, to: usize) -> f32 {
    let to = to.min(out.len()).min(near.len());
    let (Ok(clean), Ok(sent)) = (
        to_analysis_rate(&near[from..to], RATE),
        to_analysis_rate(&out[from..to], RATE),
    ) else {
        return 0.0;
    };
    segmental_correlation(&clean, &sent, ANALYSIS_RATE).unwrap_or(0.0)
}

/// Settings that isolate the echo canceller: everything after it that would change levels
/// (noise suppression, gain, gate) off.
pub fn canceller_only(on: bool) -> SendSettings {
    SendSettings {
        echo_cancellation: on,
        noise_suppression: false,
        auto_gain: false,
        noise_gate: false,
        input_gain: 1.0,
    }
}

/// The scenario both the tests and the benchmark use: far-end speech from 0 s; the near end
/// silent until `near_at` s, then talking over it.
pub struct Scenario {
    pub far: Vec<f32>,
    pub near: Vec<f32>,
    /// Where near-end speech starts (samples).
    pub near_at: usize,
}

impl Scenario {
    /// Far end at -20 dBFS, near end at -26 dBFS starting at 8 s.
    pub fn speech() -> Result<Self, String> {
        let far = espeak(FAR_TEXT, "en-us", -20.0)?;
        let near_speech = espeak(NEAR_TEXT, "en-us+f3", -26.0)?;
        let near_at = RATE as usize * 8;
        let mut near = vec![0.0; near_at];
        near.extend_from_slice(&near_speech);
        Ok(Self { far, near, near_at })
    }

    /// The near end's speech alone, as it enters the microphone.
    pub fn near_speech(&self) -> &[f32] {
        &self.near[self.near_at..]
    }

    /// Far-end-only stretch after convergence: 2 s to where the near end starts.
    pub fn single_talk(&self) -> (usize, usize) {
        (RATE as usize * 2, self.near_at)
    }

    /// Where both talk: from the near end's start to the end of the shorter of the two.
    pub fn double_talk(&self) -> (usize, usize) {
        (self.near_at, self.far.len().min(self.near.len()))
    }
}

/// An echo path appearing mid-call (headphones unplugged, a speaker switched on): the near
/// end talks over the far end with no echo for ~6 s, falls silent, and from
/// [`EchoOnset::AT`] the far end's voice comes back into the microphone while it goes on
/// talking alone. What the canceller leaves of the echo right after it appears shows how
/// fast it takes up suppressing again after a stretch with nothing to suppress.
pub struct EchoOnset {
    /// Far-end speech ([`FAR_TEXT`], -20 dBFS) from 0 s.
    pub far: Vec<f32>,
    /// Near-end speech ([`NEAR_TEXT`], -26 dBFS) from 0.5 s to about 6.2 s.
    pub near: Vec<f32>,
}

impl EchoOnset {
    /// Where the echo appears: 7 s, after the near end's last word (6.2 s).
    pub const AT: usize = RATE as usize * 7;

    pub fn speech() -> Result<Self, String> {
        let far = espeak(FAR_TEXT, "en-us", -20.0)?;
        let mut near = vec![0.0; RATE as usize / 2];
        near.extend(espeak(NEAR_TEXT, "en-us+f3", -26.0)?);
        if near.len() > Self::AT {
            return Err(format!(
                "near-end speech runs to {:.1} s, past the echo's onset",
                near.len() as f32 / RATE as f32
            ));
        }
        Ok(Self { far, near })
    }

    /// Runs the scenario with the echo arriving through `path` from [`EchoOnset::AT`].
    pub fn run(&self, path: EchoPath, settings: SendSettings) -> EchoRun {
        let mut echo = path.apply(&self.far);
        echo[..Self::AT.min(self.far.len())].fill(0.0);
        run_mixed(&self.far, &self.near, echo, settings)
    }

    /// How long after the echo appeared the canceller's presence first reached 1 (full
    /// suppression), if it did.
    pub fn presence_back_after(run: &EchoRun) -> Option<std::time::Duration> {
        let tick = Self::AT.div_ceil(TICK);
        let ticks = run.presence.iter().skip(tick).position(|&p| p >= 1.0)?;
        Some(std::time::Duration::from_millis(ticks as u64 * 10))
    }

    /// ERLE over `from_s..to_s` seconds after the echo appeared.
    pub fn erle_after(run: &EchoRun, from_s: f32, to_s: f32) -> f32 {
        let at = |s: f32| Self::AT + (s * RATE as f32) as usize;
        erle_db(run, at(from_s), at(to_s))
    }
}

/// What the far end plays while the near end talks, in [`DoubleTalk::score`].
#[derive(Debug, Clone, Copy)]
pub enum FarEnd {
    /// Another talker ([`FAR_TEXT`], another voice), coming back into the microphone through
    /// `echo` if any.
    Other { echo: Option<EchoPath> },
    /// The near end's own speech `lag_ms` later, and no echo path: what each peer of the
    /// benchmark's network rows played while sending the very speech it received.
    Same { lag_ms: f32 },
}

/// Double talk scored with PESQ: a near-end talker talks all the way through while the far
/// end talks too; the send chain's output is scored against the clean near-end speech.
pub struct DoubleTalk {
    /// Near-end speech, -26 dBFS, from [`DoubleTalk::NEAR_AT`].
    pub near: Vec<f32>,
    /// The other talker, -20 dBFS, from 0 s.
    pub other: Vec<f32>,
}

impl DoubleTalk {
    /// Where the near end starts talking: the far end has talked for 2 s, as in a
    /// conversation (the canceller has heard some of it), and both then talk for ~11 s.
    pub const NEAR_AT: usize = RATE as usize * 2;
    /// The near end's espeak-ng voice.
    pub const NEAR_VOICE: &'static str = "en-us+f3";

    pub fn speech() -> Result<Self, String> {
        Ok(Self {
            near: espeak(NEAR_LONG_TEXT, Self::NEAR_VOICE, -26.0)?,
            other: espeak(FAR_TEXT, "en-us", -20.0)?,
        })
    }

    /// PESQ-WB of what a send chain with `settings` makes of the near end's speech while the
    /// far end plays `far_end`. WAV files go to `dir`, named after `tag`.
    pub fn score(
        &self,
        far_end: FarEnd,
        settings: SendSettings,
        dir: &std::path::Path,
        tag: &str,
    ) -> Result<f64, String> {
        let mut near = vec![0.0; Self::NEAR_AT];
        near.extend_from_slice(&self.near);
        let (far, path) = match far_end {
            FarEnd::Other { echo } => (self.other.clone(), echo),
            FarEnd::Same { lag_ms } => {
                let mut far = vec![0.0; Self::NEAR_AT + (lag_ms * RATE as f32 / 1000.0) as usize];
                far.extend_from_slice(&self.near);
                (far, None)
            }
        };
        let result = match path {
            Some(path) => run(&far, &near, path, settings),
            None => run_without_echo(&far, &near, settings),
        };
        super::pesq::pesq_wb(&self.near, &result.out[Self::NEAR_AT..], dir, tag)
    }
}

impl DoubleTalk {
    /// PESQ-WB of the near end when both start talking with the call and nothing of the far
    /// end reaches the microphone: the canceller has heard nothing before the near voice.
    /// `swapped` makes the other talker the near end (at -26 dBFS, the far end at -20);
    /// the near end starts `near_at_ms` after the far end.
    pub fn score_from_the_start(
        &self,
        swapped: bool,
        near_at_ms: usize,
        settings: SendSettings,
        dir: &std::path::Path,
        tag: &str,
    ) -> Result<f64, String> {
        let (near, far) = if swapped {
            (scale_to(&self.other, -26.0), scale_to(&self.near, -20.0))
        } else {
            (self.near.clone(), self.other.clone())
        };
        let near_at = near_at_ms * RATE as usize / 1000;
        let mut mic = vec![0.0; near_at];
        mic.extend_from_slice(&near);
        let out = run_without_echo(&far, &mic, settings).out;
        super::pesq::pesq_wb(&near, &out[near_at..], dir, tag)
    }
}

/// A room for a real engine: a speaker whose sound comes back into a microphone `delay`
/// later, `gain` weaker, with one reflection. Both run on the wall clock like the WAV devices
/// (48 kHz mono); the microphone hears nothing else.
pub struct Room {
    inner: Arc<Mutex<RoomInner>>,
}

struct RoomInner {
    epoch: Instant,
    /// What the speaker played, by sample index since `epoch`.
    played: Vec<f32>,
    /// Index the next written sample will play at (`None` before the first write).
    next: Option<usize>,
    delay: usize,
    gain: f32,
    /// Times the speaker ran dry (and then played from a later point than queued).
    underruns: u64,
}

fn now_index(epoch: Instant) -> usize {
    (epoch.elapsed().as_secs_f64() * f64::from(RATE)) as usize
}

impl Room {
    pub fn new(path: EchoPath) -> Self {
        Self {
            inner: Arc::new(Mutex::new(RoomInner {
                epoch: Instant::now(),
                played: Vec::new(),
                next: None,
                delay: (path.delay_ms * RATE as f32 / 1000.0) as usize,
                gain: 10f32.powf(path.attenuation_db / 20.0),
                underruns: 0,
            })),
        }
    }

    pub fn speaker(&self) -> RoomSpeaker {
        RoomSpeaker(Arc::clone(&self.inner))
    }

    /// Times the speaker ran dry so far.
    pub fn underruns(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .underruns
    }

    pub fn microphone(&self) -> RoomMicrophone {
        RoomMicrophone {
            inner: Arc::clone(&self.inner),
            position: None,
        }
    }
}

pub struct RoomSpeaker(Arc<Mutex<RoomInner>>);

impl Playout for RoomSpeaker {
    fn format(&self) -> StreamFormat {
        MONO
    }

    fn queued(&self) -> usize {
        let room = self.0.lock().unwrap_or_else(|e| e.into_inner());
        room.next
            .map_or(0, |n| n.saturating_sub(now_index(room.epoch)))
    }

    fn write(&mut self, samples: &[f32]) {
        let mut room = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_index(room.epoch);
        // After running dry the device plays from now, as a real one does.
        let start = room.next.filter(|&n| n >= now).unwrap_or(now);
        if room.next.is_some_and(|n| n < now) {
            room.underruns += 1;
        }
        let end = start + samples.len();
        if room.played.len() < end {
            room.played.resize(end, 0.0);
        }
        room.played[start..end].copy_from_slice(samples);
        room.next = Some(end);
    }

    fn underruns(&self) -> u64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).underruns
    }
}

pub struct RoomMicrophone {
    inner: Arc<Mutex<RoomInner>>,
    position: Option<usize>,
}

impl Capture for RoomMicrophone {
    fn format(&self) -> StreamFormat {
        MONO
    }

    fn read(&mut self, out: &mut Vec<f32>) -> usize {
        let room = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_index(room.epoch);
        let from = *self.position.get_or_insert(now);
        let reflection = RATE as usize * 5 / 1000;
        let at = |i: usize| room.played.get(i).copied().unwrap_or(0.0);
        for i in from..now {
            let direct = i.checked_sub(room.delay).map_or(0.0, at);
            let reflected = i.checked_sub(room.delay + reflection).map_or(0.0, at);
            out.push(room.gain * (direct + 0.3 * reflected));
        }
        self.position = Some(now);
        now - from
    }
}
