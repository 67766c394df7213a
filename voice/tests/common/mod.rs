//! Shared helpers for the voice integration tests: in-process signaling, a lossy relay, and
//! calls fed from generated audio into recordings.

#![allow(dead_code)]

pub mod echo;
pub mod external;
pub mod loopback;
pub mod pesq;
pub mod relay;
pub mod room;
#[cfg(feature = "webrtc-apm")]
pub mod webrtc_apm;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use voice::audio::wav::{Recording, WavSink, WavSource};
use voice::audio::StreamFormat;
use voice::dsp::SendSettings;
use voice::{Call, CallConfig, CallEvent, Signal, SignalMessage};

use relay::{Netem, RelayBook};

pub const RATE: u32 = 48_000;
pub const MONO: StreamFormat = StreamFormat {
    sample_rate: RATE,
    channels: 1,
};
/// Leading silence in every test signal: the call connects during it, so nothing the test
/// scores is sent before media can flow.
pub const LEAD_IN_SECS: f32 = 1.5;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Loopback config; DSP that would alter test tones is off unless a test turns it on. That
/// includes echo cancellation: SpeexDSP's residual-echo suppressor takes a few dB off a
/// steady tone (the three-peer tone test failed with it on; see voice/README.md).
pub fn loopback_config() -> CallConfig {
    CallConfig {
        bind_addrs: vec!["127.0.0.1:0".to_owned()],
        send: SendSettings {
            echo_cancellation: false,
            noise_suppression: false,
            auto_gain: false,
            noise_gate: false,
            input_gain: 1.0,
        },
        ..CallConfig::default()
    }
}

/// `signal` preceded by [`LEAD_IN_SECS`] of silence.
pub fn with_lead_in(signal: &[f32]) -> Vec<f32> {
    let mut v = vec![0.0; (RATE as f32 * LEAD_IN_SECS) as usize];
    v.extend_from_slice(signal);
    v
}

pub struct TestPeer {
    pub name: String,
    pub call: Call,
    pub events: mpsc::Receiver<CallEvent>,
    pub recording: Recording,
    pub sent: Vec<f32>,
    pub source_start: Arc<std::sync::OnceLock<std::time::Instant>>,
}

impl TestPeer {
    /// Waits until `n` PeerConnected events arrived, failing after `timeout`.
    pub async fn wait_connected(&mut self, n: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = 0;
        while seen < n {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(CallEvent::PeerConnected(_))) => seen += 1,
                Ok(Some(other)) => tracing::info!(peer = %self.name, ?other, "event"),
                Ok(None) => panic!("{}: event stream closed", self.name),
                Err(_) => panic!(
                    "{}: only {seen} of {n} peers connected in {timeout:?}",
                    self.name
                ),
            }
        }
    }

    /// Waits for an event matching `pred`, returning it, or None after `timeout`.
    pub async fn wait_event(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&CallEvent) -> bool,
    ) -> Option<CallEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if pred(&e) => return Some(e),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }
}

/// Moves signaling between calls in this process, rewriting candidates through a relay
/// when one is configured.
pub struct Mesh {
    pub peers: Vec<TestPeer>,
    inboxes: Arc<tokio::sync::Mutex<HashMap<String, mpsc::Sender<SignalMessage>>>>,
}

/// Starts one call per (name, signal); each later peer connects to all earlier ones, as a
/// joiner does. All calls share `config`; `netem` puts a lossy relay between every pair.
pub async fn start_mesh(
    members: Vec<(&str, Vec<f32>)>,
    config: CallConfig,
    netem: Option<Netem>,
) -> Mesh {
    init_tracing();
    let inboxes: Arc<tokio::sync::Mutex<HashMap<String, mpsc::Sender<SignalMessage>>>> =
        Arc::default();
    let book = Arc::new(RelayBook::new(netem));
    let mut peers = Vec::new();
    for (name, signal) in members {
        let (in_tx, in_rx) = mpsc::channel(256);
        let (out_tx, mut out_rx) = mpsc::channel::<SignalMessage>(256);
        inboxes.lock().await.insert(name.to_owned(), in_tx);
        let source = WavSource::from_samples(signal.clone(), MONO);
        let source_start = source.start_handle();
        let sink = WavSink::new(MONO);
        let recording = sink.recording();
        let (call, events) = Call::start(
            config.clone(),
            Box::new(source),
            Box::new(sink),
            in_rx,
            out_tx,
        )
        .await
        .expect("call starts");
        let from = name.to_owned();
        let routes = Arc::clone(&inboxes);
        let book = Arc::clone(&book);
        tokio::spawn(async move {
            while let Some(mut msg) = out_rx.recv().await {
                let to = std::mem::replace(&mut msg.peer, from.clone());
                if let Signal::Candidate { candidate, .. } = &mut msg.signal {
                    match book.rewrite(&from, &to, candidate).await {
                        Some(rewritten) => *candidate = rewritten,
                        None => continue,
                    }
                }
                let target = routes.lock().await.get(&to).cloned();
                if let Some(target) = target {
                    let _ = target.send(msg).await;
                }
            }
        });
        peers.push(TestPeer {
            name: name.to_owned(),
            call,
            events,
            recording,
            sent: signal,
            source_start,
        });
    }
    for i in 1..peers.len() {
        for j in 0..i {
            let target = peers[j].name.clone();
            peers[i].call.connect(&target).await.expect("offer sent");
        }
    }
    let n = peers.len() - 1;
    for p in &mut peers {
        p.wait_connected(n, Duration::from_secs(30)).await;
    }
    Mesh { peers, inboxes }
}

/// Lets the calls run for `secs` of audio.
pub async fn run_for(secs: f32) {
    tokio::time::sleep(Duration::from_secs_f32(secs)).await;
}

/// Mono 48 kHz recording → 16 kHz analysis signal.
pub fn analysis(samples: &[f32]) -> Vec<f32> {
    voice::analysis::to_analysis_rate(samples, RATE).expect("resample")
}

/// How well `received` reproduces `sent` (segmental correlation at 16 kHz).
pub fn similarity(sent: &[f32], received: &[f32]) -> f32 {
    voice::analysis::segmental_correlation(
        &analysis(sent),
        &analysis(received),
        voice::analysis::ANALYSIS_RATE,
    )
    .unwrap_or(0.0)
}
