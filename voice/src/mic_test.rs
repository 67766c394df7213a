//! The microphone test of the audio settings: records a few seconds from the chosen input,
//! plays them back on the chosen output, and reports what it found — the input's level, its
//! noise floor, clipping, and whether what the output plays comes back into the input
//! (echo: speakers the microphone hears, which the other side of a call would hear too).
//!
//! It works on any [`Capture`] and [`Playout`], so the desktop app runs it on the devices
//! the user picked and tests run it on files and simulated rooms.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::analysis::{find_offset, to_analysis_rate, ANALYSIS_RATE};
use crate::audio::{Capture, Playout};
use crate::dsp::{downmix, level_dbfs, upmix, MonoResampler};
use crate::{Result, VoiceError, SAMPLE_RATE};

/// Levels are read over 20 ms windows (long enough to span a pitch period or two).
const LEVEL_WINDOW: usize = SAMPLE_RATE as usize / 50;

/// How long the test records and listens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MicTestConfig {
    /// Recording length (the playback is as long).
    pub record: Duration,
    /// How long to keep listening after the playback ends: the longest echo delay found
    /// (device buffers on both sides plus the acoustic path).
    pub echo_tail: Duration,
}

impl Default for MicTestConfig {
    fn default() -> Self {
        Self {
            // Long enough for a sentence, short enough that users do not give up.
            record: Duration::from_secs(3),
            echo_tail: Duration::from_millis(500),
        }
    }
}

/// Whether the input hears the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Echo {
    /// The playback came back into the input.
    Present {
        /// From writing the playback to capturing it, device buffers included (ms).
        delay_ms: f32,
        /// How much quieter the echo is than what was played (dB): below ~20 dB a call
        /// partner hears themselves unless echo cancellation removes it.
        return_loss_db: f32,
        /// Normalised correlation of the echo with the playback (0–1).
        correlation: f32,
    },
    /// The playback did not come back (headphones, or speakers the microphone cannot hear).
    Absent {
        /// Best correlation found (0–1): how close it came.
        correlation: f32,
    },
    /// The recording was too quiet to tell: nothing audible was played back.
    Unknown,
}

/// What the microphone test found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MicTestReport {
    /// Level while the user talks: the 90th percentile of 20 ms frame levels (dBFS). Speech
    /// sits well between −35 and −10 dBFS; lower is hard to hear, higher risks clipping.
    pub level_db: f32,
    /// Loudest sample (dBFS).
    pub peak_db: f32,
    /// Background level: the 10th percentile of 20 ms frame levels (dBFS).
    pub noise_floor_db: f32,
    /// Share of samples at full scale: above ~0.1 % the input gain is too high.
    pub clipped_fraction: f32,
    /// Whether the playback came back into the input.
    pub echo: Echo,
}

/// Samples this close to full scale were clipped by the converter or a gain before it.
const CLIP_LEVEL: f32 = 0.999;
/// The devices are serviced every 5 ms, like the call engine's clock.
const POLL: Duration = Duration::from_millis(5);
/// Playback is kept 40 ms ahead of the device so it never runs dry between polls.
const PLAYOUT_AHEAD_MS: usize = 40;
/// A device that delivers or drains nothing for this long beyond the test's length is
/// broken, and the test says so instead of waiting forever.
const DEVICE_GRACE: Duration = Duration::from_secs(3);
/// Correlation with the playback above which the input is taken to hear it. Room noise or
/// the user talking over the playback stay well below (speech probes of 3 s against
/// unrelated audio correlate under 0.2).
const ECHO_CORRELATION: f32 = 0.5;
/// A recording whose loudest sample is under this (−50 dBFS) has nothing to detect an echo of.
const AUDIBLE_PEAK: f32 = 0.003;

/// Runs the test: records `config.record` from `capture`, plays it back on `playout` while
/// still capturing, and analyses both.
pub async fn run(
    capture: &mut dyn Capture,
    playout: &mut dyn Playout,
    config: MicTestConfig,
) -> Result<MicTestReport> {
    let input = capture.format();
    if input.sample_rate == 0 || input.channels == 0 {
        return Err(VoiceError::Device(format!("input format {input:?}")));
    }
    let per_sec = input.sample_rate as usize * usize::from(input.channels);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    // Record. What the device buffered before the test began is not part of it.
    let mut stale = Vec::new();
    capture.read(&mut stale);
    let wanted = (config.record.as_secs_f64() * per_sec as f64) as usize;
    let mut raw = Vec::with_capacity(wanted + per_sec / 10);
    let deadline = tokio::time::Instant::now() + config.record + DEVICE_GRACE;
    while raw.len() < wanted {
        tick.tick().await;
        capture.read(&mut raw);
        if tokio::time::Instant::now() > deadline {
            return Err(VoiceError::Device(format!(
                "the input delivered {:.1} s of audio in {:.1} s",
                raw.len() as f64 / per_sec as f64,
                (config.record + DEVICE_GRACE).as_secs_f64()
            )));
        }
    }
    raw.truncate(wanted);
    let recorded = to_engine_rate(&raw, input)?;

    // Play it back, capturing meanwhile.
    let output = playout.format();
    let mut mono_out = Vec::with_capacity(recorded.len());
    let mut resampler = MonoResampler::new(SAMPLE_RATE, output.sample_rate)?;
    resampler.process(&recorded, &mut mono_out);
    let mut played = Vec::with_capacity(mono_out.len() * usize::from(output.channels));
    upmix(&mono_out, output.channels, &mut played);
    let block = (output.sample_rate as usize / 100).max(1) * usize::from(output.channels);
    let ahead = output.sample_rate as usize * PLAYOUT_AHEAD_MS / 1000;
    let listen = config.record + config.echo_tail;
    let wanted = (listen.as_secs_f64() * per_sec as f64) as usize;
    let mut heard = Vec::with_capacity(wanted + per_sec / 10);
    let mut at = 0;
    let deadline = tokio::time::Instant::now() + listen + DEVICE_GRACE;
    // Captured since the recording ended, before the playback begins: not an echo of it,
    // and keeping it would add the time in between to the echo's delay.
    stale.clear();
    capture.read(&mut stale);
    loop {
        while at < played.len() && playout.queued() < ahead {
            let end = (at + block).min(played.len());
            playout.write(&played[at..end]);
            at = end;
        }
        capture.read(&mut heard);
        if at >= played.len() && heard.len() >= wanted {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(VoiceError::Device(
                "the devices stopped moving audio during playback".to_owned(),
            ));
        }
        tick.tick().await;
    }
    heard.truncate(wanted);
    let heard = to_engine_rate(&heard, input)?;

    let mut levels: Vec<f32> = recorded
        .chunks_exact(LEVEL_WINDOW)
        .map(level_dbfs)
        .collect();
    levels.sort_by(f32::total_cmp);
    let percentile = |p: f32| {
        levels
            .get(((levels.len().saturating_sub(1)) as f32 * p).round() as usize)
            .copied()
            .unwrap_or(-100.0)
    };
    let peak = raw.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    let clipped = raw.iter().filter(|s| s.abs() >= CLIP_LEVEL).count();
    Ok(MicTestReport {
        level_db: percentile(0.9),
        peak_db: (20.0 * peak.max(1e-5).log10()).max(-100.0),
        noise_floor_db: percentile(0.1),
        clipped_fraction: clipped as f32 / raw.len().max(1) as f32,
        echo: find_echo(&recorded, &heard, listen)?,
    })
}

/// Interleaved device samples to 48 kHz mono.
fn to_engine_rate(raw: &[f32], format: crate::audio::StreamFormat) -> Result<Vec<f32>> {
    let mut mono = Vec::with_capacity(raw.len() / usize::from(format.channels));
    downmix(raw, format.channels, &mut mono);
    let mut out =
        Vec::with_capacity(mono.len() * SAMPLE_RATE as usize / format.sample_rate as usize);
    let mut resampler = MonoResampler::new(format.sample_rate, SAMPLE_RATE)?;
    resampler.process(&mono, &mut out);
    Ok(out)
}

/// Looks for `played` (48 kHz mono) inside `heard` (captured from when playback began).
fn find_echo(played: &[f32], heard: &[f32], listen: Duration) -> Result<Echo> {
    let peak = played.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak < AUDIBLE_PEAK {
        return Ok(Echo::Unknown);
    }
    // The search keys on loud samples of the probe: judge the shape, not the level.
    let scale = 0.5 / peak;
    let probe: Vec<f32> = to_analysis_rate(played, SAMPLE_RATE)?
        .into_iter()
        .map(|s| s * scale)
        .collect();
    let heard = to_analysis_rate(heard, SAMPLE_RATE)?;
    let Some((offset, correlation)) = find_offset(&probe, &heard, ANALYSIS_RATE) else {
        return Ok(Echo::Absent { correlation: 0.0 });
    };
    let correlation = correlation.max(0.0);
    let delay_ms = offset as f32 * 1000.0 / ANALYSIS_RATE as f32;
    let causal = offset >= 0 && delay_ms < listen.as_secs_f32() * 1000.0;
    if correlation < ECHO_CORRELATION || !causal {
        return Ok(Echo::Absent { correlation });
    }
    let start = offset.unsigned_abs();
    let end = (start + probe.len()).min(heard.len());
    let echo_level = level_dbfs(&heard[start..end]);
    let played_level = level_dbfs(&probe[..end - start]) - 20.0 * scale.log10();
    Ok(Echo::Present {
        delay_ms,
        return_loss_db: played_level - echo_level,
        correlation,
    })
}
