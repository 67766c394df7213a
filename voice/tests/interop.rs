//! A call with an independent WebRTC implementation: aiortc (Python) in its own process.
//! Audio is verified both ways. Needs `pip install aiortc` (voice/scripts/setup-test-env.sh);
//! without it this test fails and says so.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use voice::analysis::synth_speech;
use voice::audio::wav::{read_wav, write_wav};
use voice::dsp::downmix;
use voice::{Call, CallEvent, SignalMessage};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/aiortc_peer.py");

fn python() -> String {
    std::env::var("SOHBET_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn require_aiortc() {
    let ok = std::process::Command::new(python())
        .args(["-c", "import aiortc"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "aiortc is not importable by `{}`: run voice/scripts/setup-test-env.sh \
         (pip install aiortc) or set SOHBET_PYTHON",
        python()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_with_aiortc_carries_audio_both_ways() {
    require_aiortc();
    init_tracing();
    let secs = 5.0;
    let ours = with_lead_in(&synth_speech(5, RATE, secs));
    let theirs = with_lead_in(&synth_speech(6, RATE, secs));
    let dir = std::env::temp_dir().join(format!("voice-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let play = dir.join("aiortc-sends.wav");
    let record = dir.join("aiortc-heard.wav");
    write_wav(&play, &theirs, MONO).expect("write wav");

    let mut child = Command::new(python())
        .arg(SCRIPT)
        .arg("--play")
        .arg(&play)
        .arg("--record")
        .arg(&record)
        .arg("--timeout")
        .arg("60")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start aiortc peer");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");

    let (in_tx, in_rx) = tokio::sync::mpsc::channel(64);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<SignalMessage>(64);
    let sink = voice::audio::wav::WavSink::new(MONO);
    let heard = sink.recording();
    // aiortc plays only the frames it receives, so DTX gaps would vanish from its recording.
    let config = voice::CallConfig {
        dtx: false,
        ..loopback_config()
    };
    let (call, mut events) = Call::start(
        config,
        Box::new(voice::audio::wav::WavSource::from_samples(
            ours.clone(),
            MONO,
        )),
        Box::new(sink),
        in_rx,
        out_tx,
    )
    .await
    .expect("call starts");
    tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let Ok(line) = serde_json::to_string(&msg) else {
                continue;
            };
            if stdin
                .write_all(format!("{line}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut msg) = serde_json::from_str::<SignalMessage>(&line) {
                msg.peer = "aiortc".into();
                let _ = in_tx.send(msg).await;
            }
        }
    });
    call.connect("aiortc").await.expect("offer");
    let connected = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = events.recv().await {
            match e {
                CallEvent::PeerConnected(_) => return Ok(()),
                CallEvent::SignalingError { message, .. } => return Err(message),
                _ => {}
            }
        }
        Err("events ended".to_owned())
    })
    .await;
    assert!(
        matches!(connected, Ok(Ok(()))),
        "aiortc did not connect: {connected:?}"
    );
    run_for(LEAD_IN_SECS + secs + 0.5).await;
    let stats = call.stats();
    call.leave().await;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    assert!(
        matches!(status, Ok(Ok(s)) if s.success()),
        "aiortc peer ended badly: {status:?}"
    );

    let (aiortc_heard, format) = read_wav(&record).expect("aiortc recording");
    let mut mono = Vec::new();
    downmix(&aiortc_heard, format.channels, &mut mono);
    let we_hear_them = similarity(&theirs, &heard.samples());
    let they_hear_us = similarity(&ours, &mono);
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
