//! Independent WebRTC peers in their own processes, wired to a [`Call`]: aiortc (Python,
//! voice/scripts/aiortc_peer.py) or Chromium's libwebrtc (Node + playwright-core,
//! voice/scripts/chromium_peer.mjs). Both speak our signaling as JSON lines on stdio, play a
//! WAV file and record what they hear to another.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use voice::audio::wav::{read_wav, write_wav, Recording, WavSink, WavSource};
use voice::dsp::downmix;
use voice::{Call, CallConfig, CallEvent, SignalMessage};

use super::MONO;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");

/// Which independent implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// PyPI aiortc.
    Aiortc,
    /// Debian's Chromium through npm playwright-core.
    Chromium,
}

impl Stack {
    pub fn name(self) -> &'static str {
        match self {
            Stack::Aiortc => "aiortc",
            Stack::Chromium => "chromium",
        }
    }

    fn command(self) -> Command {
        match self {
            Stack::Aiortc => {
                let mut c = Command::new(python());
                c.arg(format!("{SCRIPTS}/aiortc_peer.py"));
                c
            }
            Stack::Chromium => {
                let mut c = Command::new("node");
                c.arg(format!("{SCRIPTS}/chromium_peer.mjs"));
                c
            }
        }
    }

    /// Fails with what to do when the stack is not installed.
    pub fn require(self) {
        match self {
            Stack::Aiortc => require_aiortc(),
            Stack::Chromium => {
                let node_ok = std::process::Command::new("node")
                    .args(["-e", "require.resolve('playwright-core')"])
                    .current_dir(SCRIPTS)
                    .status()
                    .is_ok_and(|s| s.success());
                let chromium =
                    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
                assert!(
                    node_ok && Path::new(&chromium).exists(),
                    "Chromium interop needs node, `npm install` in voice/scripts                      (voice/scripts/setup-test-env.sh) and {chromium} (apt-get install chromium)"
                );
            }
        }
    }

    /// Whether it is installed, for the benchmark to skip what it cannot run.
    pub fn available(self) -> bool {
        std::panic::catch_unwind(|| self.require()).is_ok()
    }
}

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

/// A call of ours connected to an independent peer process.
pub struct ExternalCall {
    pub call: Call,
    pub heard: Recording,
    child: Child,
    record: PathBuf,
    stats: Arc<std::sync::Mutex<Option<String>>>,
}

/// What the independent peer heard, and its own receive stats when it reports them.
pub struct ExternalResult {
    pub heard: Vec<f32>,
    /// Chromium's inbound-rtp getStats as JSON.
    pub stats: Option<serde_json::Value>,
}

impl ExternalCall {
    /// Starts the peer playing `theirs` and our call sending `ours` from the moment they are
    /// connected, both 48 kHz mono, files
    /// in `dir`, through a lossy relay when `netem` is set, with `args` added to the peer's
    /// command line; returns once connected.
    pub async fn start(
        stack: Stack,
        config: CallConfig,
        ours: Vec<f32>,
        theirs: &[f32],
        dir: &Path,
        netem: Option<super::relay::Netem>,
        args: &[&str],
    ) -> Self {
        std::fs::create_dir_all(dir).expect("temp dir");
        let name = stack.name();
        let play = dir.join(format!("{name}-sends.wav"));
        let record = dir.join(format!("{name}-heard.wav"));
        write_wav(&play, theirs, MONO).expect("write wav");
        let mut child = stack
            .command()
            .arg("--play")
            .arg(&play)
            .arg("--record")
            .arg(&record)
            .arg("--timeout")
            .arg("120")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the independent peer");
        let mut stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let stats: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let stats_slot = Arc::clone(&stats);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match line.strip_prefix("chromium-stats ") {
                    Some(json) => {
                        if let Ok(mut slot) = stats_slot.lock() {
                            *slot = Some(json.to_owned());
                        }
                    }
                    None => eprintln!("{line}"),
                }
            }
        });
        let book = Arc::new(super::relay::RelayBook::new(netem));
        let (in_tx, in_rx) = mpsc::channel(64);
        let (out_tx, mut out_rx) = mpsc::channel::<SignalMessage>(64);
        let sink = WavSink::new(MONO);
        let heard = sink.recording();
        let (call, mut events) = Call::start(
            config,
            // Silence until connected: the other process may take seconds to start on a busy
            // machine, and what we send before the connection is up is lost.
            Box::new(WavSource::from_samples(Vec::new(), MONO)),
            Box::new(sink),
            in_rx,
            out_tx,
        )
        .await
        .expect("call starts");
        let out_book = Arc::clone(&book);
        tokio::spawn(async move {
            while let Some(mut msg) = out_rx.recv().await {
                if let voice::Signal::Candidate { candidate, .. } = &mut msg.signal {
                    match out_book.rewrite("us", name, candidate).await {
                        Some(rewritten) => *candidate = rewritten,
                        None => continue,
                    }
                }
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
                    msg.peer = name.into();
                    match &mut msg.signal {
                        voice::Signal::Candidate { candidate, .. } => {
                            match book.rewrite(name, "us", candidate).await {
                                Some(rewritten) => *candidate = rewritten,
                                None => continue,
                            }
                        }
                        // aiortc does not trickle: its candidates are inside the answer.
                        voice::Signal::Answer { sdp } => {
                            let mut lines = Vec::new();
                            for line in sdp.split("\r\n") {
                                match line.strip_prefix("a=") {
                                    Some(c) if c.starts_with("candidate:") => {
                                        if let Some(c) = book.rewrite(name, "us", c).await {
                                            lines.push(format!("a={c}"));
                                        }
                                    }
                                    _ => lines.push(line.to_owned()),
                                }
                            }
                            *sdp = lines.join("\r\n");
                        }
                        _ => {}
                    }
                    let _ = in_tx.send(msg).await;
                }
            }
        });
        call.connect(name).await.expect("offer");
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
            "{name} did not connect: {connected:?}"
        );
        call.set_input(Box::new(WavSource::from_samples(ours, MONO)))
            .expect("our source");
        Self {
            call,
            heard,
            child,
            record,
            stats,
        }
    }

    /// Says bye, waits for the peer to finish, and returns what it heard (48 kHz mono).
    pub async fn finish(mut self) -> ExternalResult {
        self.call.leave().await;
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        assert!(
            matches!(status, Ok(Ok(s)) if s.success()),
            "independent peer ended badly: {status:?}"
        );
        let (samples, format) = read_wav(&self.record).expect("independent peer's recording");
        let mut mono = Vec::new();
        downmix(&samples, format.channels, &mut mono);
        let stats = self
            .stats
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .and_then(|json| serde_json::from_str(&json).ok());
        ExternalResult { heard: mono, stats }
    }
}
