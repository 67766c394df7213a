//! Runs voice/scripts/aiortc_peer.py as an independent WebRTC peer wired to a [`Call`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use voice::audio::wav::{read_wav, write_wav, Recording, WavSink, WavSource};
use voice::dsp::downmix;
use voice::{Call, CallConfig, CallEvent, SignalMessage};

use super::MONO;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/aiortc_peer.py");

/// The Python that has aiortc (`SOHBET_PYTHON`, default `python3`).
pub fn python() -> String {
    std::env::var("SOHBET_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Fails with what to do when aiortc is not installed.
pub fn require_aiortc() {
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

/// A call of ours connected to an aiortc process.
pub struct AiortcCall {
    pub call: Call,
    pub heard: Recording,
    child: Child,
    record: PathBuf,
}

impl AiortcCall {
    /// Starts aiortc playing `theirs` and our call sending `ours`, both 48 kHz mono, in
    /// `dir`; returns once connected.
    pub async fn start(config: CallConfig, ours: Vec<f32>, theirs: &[f32], dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("temp dir");
        let play = dir.join("aiortc-sends.wav");
        let record = dir.join("aiortc-heard.wav");
        write_wav(&play, theirs, MONO).expect("write wav");
        let mut child = Command::new(python())
            .arg(SCRIPT)
            .arg("--play")
            .arg(&play)
            .arg("--record")
            .arg(&record)
            .arg("--timeout")
            .arg("120")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start aiortc peer");
        let mut stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (in_tx, in_rx) = mpsc::channel(64);
        let (out_tx, mut out_rx) = mpsc::channel::<SignalMessage>(64);
        let sink = WavSink::new(MONO);
        let heard = sink.recording();
        let (call, mut events) = Call::start(
            config,
            Box::new(WavSource::from_samples(ours, MONO)),
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
        Self {
            call,
            heard,
            child,
            record,
        }
    }

    /// Says bye, waits for aiortc to finish, and returns what it heard (48 kHz mono).
    pub async fn finish(mut self) -> Vec<f32> {
        self.call.leave().await;
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        assert!(
            matches!(status, Ok(Ok(s)) if s.success()),
            "aiortc peer ended badly: {status:?}"
        );
        let (samples, format) = read_wav(&self.record).expect("aiortc recording");
        let mut mono = Vec::new();
        downmix(&samples, format.channels, &mut mono);
        mono
    }
}
