//! A call with an independent WebRTC implementation: aiortc (Python) in its own process.
//! Audio is verified both ways. Needs `pip install aiortc` (voice/scripts/setup-test-env.sh);
//! without it this test fails and says so.

mod common;

use common::aiortc::{require_aiortc, AiortcCall};
use common::*;
use voice::analysis::synth_speech;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_with_aiortc_carries_audio_both_ways() {
    require_aiortc();
    init_tracing();
    let secs = 5.0;
    let ours = with_lead_in(&synth_speech(5, RATE, secs));
    let theirs = with_lead_in(&synth_speech(6, RATE, secs));
    let dir = std::env::temp_dir().join(format!("voice-interop-{}", std::process::id()));
    // aiortc plays only the frames it receives, so DTX gaps would vanish from its recording.
    let config = voice::CallConfig {
        dtx: false,
        ..loopback_config()
    };
    let peer = AiortcCall::start(config, ours.clone(), &theirs, &dir).await;
    run_for(LEAD_IN_SECS + secs + 0.5).await;
    let we_heard = peer.heard.samples();
    let stats = peer.call.stats();
    let they_heard = peer.finish().await;
    let we_hear_them = similarity(&theirs, &we_heard);
    let they_hear_us = similarity(&ours, &they_heard);
    eprintln!(
        "aiortc interop: rust<-aiortc {we_hear_them:.3} aiortc<-rust {they_hear_us:.3}; {stats:?}"
    );
    assert!(
        we_hear_them > 0.7,
        "we hear aiortc with similarity {we_hear_them}"
    );
    assert!(
        they_hear_us > 0.7,
        "aiortc hears us with similarity {they_hear_us}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
