//! Call participants for tests and benchmarks: a user with a gateway connection and a call
//! made with the SDK's calls API, whose microphone plays a tone of its own and whose speaker
//! records what it plays, so a test can tell by content whom it hears.

use std::time::Duration;

use sohbet_client::calls::{CallEvent, CallHandle, CallOptions};
use tokio::sync::mpsc;
use voice::{
    audio::{
        wav::{Recording, WavSink, WavSource},
        StreamFormat,
    },
    dsp::SendSettings,
    CallConfig,
};

/// The engine's rate; one channel keeps the analysis simple.
pub const RATE: u32 = 48_000;
pub const MONO: StreamFormat = StreamFormat {
    sample_rate: RATE,
    channels: 1,
};
/// How long each microphone's tone lasts: longer than any test's call.
const TONE_SECS: f32 = 120.0;

/// Loopback-only engine settings; the DSP that would reshape a test tone (echo
/// cancellation, noise suppression, gain, gate) is off.
pub fn loopback_config() -> CallConfig {
    CallConfig {
        bind_addrs: vec!["127.0.0.1:0".to_owned()],
        send: SendSettings {
            // Off like the rest: it takes a few dB off a steady tone (see voice/README.md).
            echo_cancellation: false,
            noise_suppression: false,
            auto_gain: false,
            noise_gate: false,
            input_gain: 1.0,
        },
        ..CallConfig::default()
    }
}

/// Options whose microphone plays a steady `freq` Hz tone; returns the recording of what the
/// speaker plays.
pub fn tone_options(freq: f32) -> (CallOptions, Recording) {
    let tone = voice::analysis::sine(freq, RATE, TONE_SECS, 0.3);
    let source = WavSource::from_samples(tone, MONO);
    let sink = WavSink::new(MONO);
    let recording = sink.recording();
    let mut options = CallOptions::new(Box::new(source), Box::new(sink));
    options.config = loopback_config();
    (options, recording)
}

/// Power of `freq` in the last `window` of what a recording played (a full-scale sine gives
/// 0.5; the 0.3-amplitude test tones about 0.045 when heard whole).
pub fn heard(recording: &Recording, freq: f32, window: Duration) -> f32 {
    let samples = recording.samples();
    let n = (RATE as f64 * window.as_secs_f64()) as usize;
    let tail = &samples[samples.len().saturating_sub(n)..];
    voice::analysis::tone_power(tail, RATE, freq)
}

/// A tone is heard above this power (a thirtieth of a clean one, 3× [`SILENT`]), and absent
/// below [`SILENT`]. It was a tenth (0.0045), but the default send chain brings a steady tone
/// in a three-way call to about that (0.0043 measured in 2 of 2 CI runs on 2026-12-02, once
/// for carol hearing bob, once for bob hearing carol): the threshold sat on the level itself.
pub const AUDIBLE: f32 = 0.0015;
pub const SILENT: f32 = 0.0005;

/// A call of the SDK with the test's view of it.
pub struct InCall {
    pub handle: CallHandle,
    pub events: mpsc::Receiver<CallEvent>,
    pub recording: Recording,
    /// Every event taken from `events` so far, so a test can ask about one that went by
    /// while it waited for another.
    pub history: Vec<CallEvent>,
}

impl InCall {
    /// The next event matching `pred`, or None after `timeout`.
    pub async fn wait(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&CallEvent) -> bool,
    ) -> Option<CallEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => {
                    self.history.push(e.clone());
                    if pred(&e) {
                        return Some(e);
                    }
                }
                _ => return None,
            }
        }
    }

    /// Whether an event matching `pred` came already, or comes within `timeout`.
    pub async fn saw(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&CallEvent) -> bool,
    ) -> bool {
        self.history.iter().any(&mut pred) || self.wait(timeout, pred).await.is_some()
    }

    /// Waits until media flows with each of `users`.
    pub async fn connected_to(&mut self, users: &[i64], timeout: Duration) {
        let mut missing: Vec<i64> = users.to_vec();
        let deadline = tokio::time::Instant::now() + timeout;
        while !missing.is_empty() {
            let event = tokio::time::timeout_at(deadline, self.events.recv()).await;
            if let Ok(Some(e)) = &event {
                self.history.push(e.clone());
            }
            match event {
                Ok(Some(CallEvent::PeerConnected { user_id })) => missing.retain(|u| *u != user_id),
                Ok(Some(CallEvent::Ended { reason })) => panic!("call ended: {reason:?}"),
                Ok(Some(_)) => {}
                Ok(None) => panic!("call events ended"),
                Err(_) => panic!("not connected to {missing:?} within {timeout:?}"),
            }
        }
    }

    /// Power of `freq` in the last `window` of what this participant played.
    pub fn hears(&self, freq: f32, window: Duration) -> f32 {
        heard(&self.recording, freq, window)
    }
}
