//! WebRTC's audio processing module (APM 2.1, AEC3: Chromium's echo canceller) on the very
//! signals `echo.rs` feeds our SpeexDSP canceller, so the two are compared by measurement
//! (benchmark section `apm`). Only with the voice crate's `webrtc-apm` feature, whose library
//! `scripts/build-webrtc-apm.sh` builds; nothing in the engine uses it.

use std::path::Path;
use std::time::{Duration, Instant};

use voice::dsp::SendSettings;
use webrtc_audio_processing::config::{
    AdaptiveDigital, Config, EchoCanceller, GainController, GainController2,
};
use webrtc_audio_processing::Processor;

use super::echo::{run_without_echo, DoubleTalk, EchoPath, EchoRun, FarEnd};
use super::RATE;

/// APM's frame: 10 ms, fixed by WebRTC.
const FRAME: usize = RATE as usize / 100;
/// How far ahead of playing the far end is handed over: the harness's playout queue (20 ms).
const QUEUED: usize = RATE as usize / 50;

/// What APM is asked to do.
#[derive(Debug, Clone, Copy)]
pub enum Apm {
    /// AEC3 with its own delay estimator (WebRTC's default; AEC3 force-enables its high-pass
    /// filter). Nothing else: the engine's own chain does noise, gain and gate.
    Aec3,
    /// AEC3 and AGC2's adaptive digital gain (its defaults), as Chromium runs it.
    Aec3Agc2,
    /// AGC2's adaptive digital gain alone, for the gain comparison.
    Agc2,
}

impl Apm {
    fn config(self) -> Config {
        let agc2 = Some(GainController::GainController2(GainController2 {
            adaptive_digital: Some(AdaptiveDigital::default()),
            ..GainController2::default()
        }));
        let aec3 = Some(EchoCanceller::Full {
            stream_delay_ms: None,
        });
        match self {
            Apm::Aec3 => Config {
                echo_canceller: aec3,
                ..Config::default()
            },
            Apm::Aec3Agc2 => Config {
                echo_canceller: aec3,
                gain_controller: agc2,
                ..Config::default()
            },
            Apm::Agc2 => Config {
                gain_controller: agc2,
                ..Config::default()
            },
        }
    }
}

/// `mic` through APM, with `far` (which plays from sample 0) handed over the way the harness
/// hands it to our chain: each 10 ms tick the microphone's frame is processed, then the far
/// end is topped up to [`QUEUED`] ahead of what has played. Returns the output (same timeline
/// as `mic`, zero-padded to whole frames) and the time spent inside APM.
pub fn process(apm: Apm, far: &[f32], mic: &[f32]) -> Result<(Vec<f32>, Duration), String> {
    let processor = Processor::new(RATE).map_err(|e| format!("APM: {e}"))?;
    processor.set_config(apm.config());
    let mut out = Vec::with_capacity(mic.len() + FRAME);
    let mut frame = vec![0.0f32; FRAME];
    let mut render = vec![0.0f32; FRAME];
    let mut handed = 0;
    let mut played = 0;
    let mut time = Duration::ZERO;
    while played < mic.len() {
        let end = (played + FRAME).min(mic.len());
        frame.fill(0.0);
        frame[..end - played].copy_from_slice(&mic[played..end]);
        let start = Instant::now();
        processor
            .process_capture_frame([&mut frame[..]])
            .map_err(|e| format!("APM capture: {e}"))?;
        time += start.elapsed();
        out.extend_from_slice(&frame);
        played += FRAME;
        while handed < played + QUEUED {
            for (i, r) in render.iter_mut().enumerate() {
                *r = far.get(handed + i).copied().unwrap_or(0.0);
            }
            let start = Instant::now();
            processor
                .analyze_render_frame([&render[..]])
                .map_err(|e| format!("APM render: {e}"))?;
            time += start.elapsed();
            handed += FRAME;
        }
    }
    Ok((out, time))
}

/// `near + path(far)` through APM alone: the counterpart of `echo::run` with
/// `canceller_only(true)`, for ERLE.
pub fn run(apm: Apm, far: &[f32], near: &[f32], path: EchoPath) -> Result<EchoRun, String> {
    let echo = path.apply(far);
    let mic: Vec<f32> = (0..far.len().max(near.len()))
        .map(|i| near.get(i).copied().unwrap_or(0.0) + echo.get(i).copied().unwrap_or(0.0))
        .collect();
    let (out, chain_time) = process(apm, far, &mic)?;
    Ok(EchoRun {
        echo,
        out,
        realigned: 0,
        chain_time,
    })
}

/// [`DoubleTalk::score`] with APM in place of our canceller: the microphone through APM, then
/// through our default send chain with its own canceller off (noise suppression, gain, gate).
pub fn double_talk_score(
    talk: &DoubleTalk,
    apm: Apm,
    far_end: FarEnd,
    dir: &Path,
    tag: &str,
) -> Result<f64, String> {
    let mut near = vec![0.0; DoubleTalk::NEAR_AT];
    near.extend_from_slice(&talk.near);
    let (far, path) = match far_end {
        FarEnd::Other { echo } => (talk.other.clone(), echo),
        FarEnd::Same { lag_ms } => {
            let mut far = vec![0.0; DoubleTalk::NEAR_AT + (lag_ms * RATE as f32 / 1000.0) as usize];
            far.extend_from_slice(&talk.near);
            (far, None)
        }
    };
    let echo = path.map_or_else(|| vec![0.0; far.len()], |p| p.apply(&far));
    let mic: Vec<f32> = (0..far.len().max(near.len()))
        .map(|i| near.get(i).copied().unwrap_or(0.0) + echo.get(i).copied().unwrap_or(0.0))
        .collect();
    let (cancelled, _) = process(apm, &far, &mic)?;
    let settings = SendSettings {
        echo_cancellation: false,
        ..SendSettings::default()
    };
    let result = run_without_echo(&far, &cancelled, settings);
    super::pesq::pesq_wb(&talk.near, &result.out[DoubleTalk::NEAR_AT..], dir, tag)
}
