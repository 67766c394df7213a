//! Calls with independent WebRTC implementations in their own processes — aiortc (Python)
//! and Chromium (libwebrtc) — with audio verified both ways. Needs what
//! voice/scripts/setup-test-env.sh installs (pip aiortc; npm playwright-core) and the
//! chromium package; without them these tests fail and say so.

mod common;

use common::external::{ExternalCall, Stack};
use common::*;
use voice::analysis::synth_speech;

/// Our speech and theirs (`secs` long, from two seeds), each after a long lead-in: the other
/// stack starts in its own process (Chromium takes seconds on a busy machine) while our
/// source already runs, and the speech must come after the connection.
fn speech_both_ways(seeds: (u32, u32), secs: f32) -> (Vec<f32>, Vec<f32>) {
    let lead_in = |seed| {
        let mut v = vec![0.0; RATE as usize * 3];
        v.extend(with_lead_in(&synth_speech(seed, RATE, secs)));
        v
    };
    (lead_in(seeds.0), lead_in(seeds.1))
}

/// Sends generated speech each way for five seconds and scores what each side heard.
async fn call_carries_audio_both_ways(stack: Stack, dtx: bool) {
    stack.require();
    init_tracing();
    let (ours, theirs) = speech_both_ways((5, 6), 5.0);
    let dir = std::env::temp_dir().join(format!("voice-{}-{}", stack.name(), std::process::id()));
    let config = voice::CallConfig {
        dtx,
        ..loopback_config()
    };
    let peer = ExternalCall::start(stack, config, ours.clone(), &theirs, &dir, None, &[]).await;
    run_for(ours.len() as f32 / RATE as f32 + 0.5).await;
    let we_heard = peer.heard.samples();
    let stats = peer.call.stats();
    let result = peer.finish().await;
    let they_heard = result.heard;
    eprintln!(
        "their receive stats: {:?}; they recorded {} samples",
        result.stats,
        they_heard.len()
    );
    let we_hear_them = similarity(&theirs, &we_heard);
    let they_hear_us = similarity(&ours, &they_heard);
    let name = stack.name();
    eprintln!(
        "{name} interop: us<-{name} {we_hear_them:.3} {name}<-us {they_hear_us:.3}; {stats:?}"
    );
    assert!(
        we_hear_them > 0.7,
        "we hear {name} with similarity {we_hear_them}"
    );
    assert!(
        they_hear_us > 0.7,
        "{name} hears us with similarity {they_hear_us}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_with_aiortc_carries_audio_both_ways() {
    // aiortc plays only the frames it receives, so DTX gaps would vanish from its recording.
    call_carries_audio_both_ways(Stack::Aiortc, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_with_chromium_carries_audio_both_ways() {
    call_carries_audio_both_ways(Stack::Chromium, true).await;
}

/// What a call with Chromium through a 10 % loss relay gave: how similar what each side
/// heard is to what the other sent, our link stats at the end, and whether we sent RED at
/// any moment of the call (it stops 5 s after the last report asking for it, and reports
/// of our DTX pauses ask for nothing).
struct LossyCall {
    we_hear_them: f32,
    they_hear_us: f32,
    stats: voice::PeerStats,
    sent_red: bool,
    /// Whether we sent RED in 10 ms packets at some point.
    sent_10_ms: bool,
}

/// A call with Chromium through 10 % loss each way, Chromium answering with RED preferred
/// (`prefer`: then libwebrtc sends RED) or left out (`off`).
async fn chromium_call_under_loss(red: &str) -> LossyCall {
    Stack::Chromium.require();
    init_tracing();
    let (ours, theirs) = speech_both_ways((7, 8), 6.0);
    let dir = std::env::temp_dir().join(format!("voice-chromium-red-{red}-{}", std::process::id()));
    let netem = common::relay::Netem {
        loss: 0.10,
        jitter: std::time::Duration::from_millis(20),
        seed: 11,
    };
    let peer = ExternalCall::start(
        Stack::Chromium,
        loopback_config(),
        ours.clone(),
        &theirs,
        &dir,
        Some(netem),
        &["--red", red],
    )
    .await;
    // Watched while it runs, not only at the end.
    let end = tokio::time::Instant::now()
        + std::time::Duration::from_secs_f32(ours.len() as f32 / RATE as f32 + 0.5);
    let (mut sent_red, mut sent_10_ms) = (false, false);
    while tokio::time::Instant::now() < end {
        let now = peer.call.stats();
        sent_red |= now.iter().any(|s| s.sending_red);
        sent_10_ms |= now
            .iter()
            .any(|s| s.sending_red && s.sending_packet_ms == 10.0);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let we_heard = peer.heard.samples();
    let stats = peer.call.stats().into_iter().next().expect("one peer");
    let result = peer.finish().await;
    eprintln!("chromium's stats: {:?}", result.stats);
    let they_heard = result.heard;
    let _ = std::fs::remove_dir_all(&dir);
    let (we_hear_them, they_hear_us) = (
        similarity(&theirs, &we_heard),
        similarity(&ours, &they_heard),
    );
    eprintln!("chromium, RED {red}, 10 % loss: us<-chromium {we_hear_them:.3} chromium<-us {they_hear_us:.3}; {stats:?}");
    // The loss we count (and report back to Chromium) is the relay's 10 %, not inflated by
    // the padding-only packets Chromium probes the bandwidth with on the same stream.
    assert!(
        stats.loss > 0.03 && stats.loss < 0.2,
        "we count {:.1} % loss through a 10 % relay: {stats:?}",
        stats.loss * 100.0
    );
    LossyCall {
        we_hear_them,
        they_hear_us,
        stats,
        sent_red,
        sent_10_ms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_we_exchange_red_under_loss() {
    let LossyCall {
        we_hear_them,
        they_hear_us,
        stats,
        sent_red,
        sent_10_ms,
    } = chromium_call_under_loss("prefer").await;
    // Chromium sent RED, and we read it: lost packets came back from its copies.
    assert!(stats.red_received > 0, "no RED from Chromium: {stats:?}");
    assert!(
        stats.red_frames > 0,
        "no frame rebuilt from Chromium's RED: {stats:?}"
    );
    // Chromium reported the loss, so we sent RED, in 10 ms packets, and Chromium played it.
    assert!(sent_red, "we did not switch RED on: {stats:?}");
    assert!(sent_10_ms, "RED went out in 20 ms packets: {stats:?}");
    assert!(
        we_hear_them > 0.6,
        "we hear Chromium with similarity {we_hear_them}"
    );
    assert!(
        they_hear_us > 0.6,
        "Chromium hears our RED with similarity {they_hear_us}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_without_red_gets_plain_opus_under_loss() {
    let LossyCall {
        we_hear_them,
        they_hear_us,
        stats,
        sent_red,
        ..
    } = chromium_call_under_loss("off").await;
    assert_eq!(
        stats.red_received, 0,
        "RED though Chromium left it out: {stats:?}"
    );
    assert!(!sent_red, "we sent RED that was not negotiated: {stats:?}");
    assert!(
        stats.fec_frames > 0,
        "no frame rebuilt from Chromium's FEC: {stats:?}"
    );
    assert!(
        we_hear_them > 0.6,
        "we hear Chromium with similarity {we_hear_them}"
    );
    assert!(
        they_hear_us > 0.6,
        "Chromium hears us with similarity {they_hear_us}"
    );
}
