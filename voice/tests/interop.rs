//! Calls with independent WebRTC implementations in their own processes — aiortc (Python)
//! and Chromium (libwebrtc) — with audio verified both ways. Needs what
//! voice/scripts/setup-test-env.sh installs (pip aiortc; npm playwright-core) and the
//! chromium package; without them these tests fail and say so.

mod common;

use common::external::{ExternalCall, Stack};
use common::*;
use voice::analysis::synth_speech;

/// Sends generated speech each way for five seconds and scores what each side heard.
async fn call_carries_audio_both_ways(stack: Stack, dtx: bool) {
    stack.require();
    init_tracing();
    let secs = 5.0;
    // The other stack starts in its own process (Chromium takes seconds on a busy machine)
    // while our source already runs: a longer lead-in keeps the speech after the connection.
    let lead_in = |s: Vec<f32>| {
        let mut v = vec![0.0; RATE as usize * 3];
        v.extend(with_lead_in(&s));
        v
    };
    let ours = lead_in(synth_speech(5, RATE, secs));
    let theirs = lead_in(synth_speech(6, RATE, secs));
    let dir = std::env::temp_dir().join(format!("voice-{}-{}", stack.name(), std::process::id()));
    let config = voice::CallConfig {
        dtx,
        ..loopback_config()
    };
    let peer = ExternalCall::start(stack, config, ours.clone(), &theirs, &dir, None).await;
    run_for(ours.len() as f32 / RATE as f32 + 0.5).await;
    let we_heard = peer.heard.samples();
    let stats = peer.call.stats();
    let they_heard = peer.finish().await.heard;
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
