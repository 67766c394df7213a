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
        let Spawned {
            child,
            mut stdin,
            stdout,
            record,
            stats,
            ..
        } = Spawned::start(stack, stack.name(), theirs, dir, args);
        let name = stack.name();
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
        result(&self.record, &self.stats)
    }
}

/// An independent peer's process with its ends of the signaling pipes.
struct Spawned {
    child: Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
    record: PathBuf,
    stats: Arc<std::sync::Mutex<Option<String>>>,
    /// Becomes true when the peer logs that its connection is up.
    connected: tokio::sync::watch::Receiver<bool>,
}

impl Spawned {
    /// Starts `stack` as `name`, playing `plays` (48 kHz mono) and recording into `dir`;
    /// its stderr goes to ours, except the stats line it ends with, which is kept.
    fn start(stack: Stack, name: &str, plays: &[f32], dir: &Path, args: &[&str]) -> Self {
        std::fs::create_dir_all(dir).expect("temp dir");
        let play = dir.join(format!("{name}-sends.wav"));
        let record = dir.join(format!("{name}-heard.wav"));
        write_wav(&play, plays, MONO).expect("write wav");
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
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let stats: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let stats_slot = Arc::clone(&stats);
        let (up, connected) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match line.strip_prefix("chromium-stats ") {
                    Some(json) => {
                        if let Ok(mut slot) = stats_slot.lock() {
                            *slot = Some(json.to_owned());
                        }
                    }
                    None => {
                        if line.ends_with("connection connected") {
                            up.send_replace(true);
                        }
                        eprintln!("{line}");
                    }
                }
            }
        });
        Self {
            child,
            stdin,
            stdout,
            record,
            stats,
            connected,
        }
    }
}

/// What a finished peer recorded (downmixed to mono) and its stats line, parsed.
fn result(record: &Path, stats: &std::sync::Mutex<Option<String>>) -> ExternalResult {
    let (samples, format) = read_wav(record).expect("independent peer's recording");
    let mut mono = Vec::new();
    downmix(&samples, format.channels, &mut mono);
    let stats = stats
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .and_then(|json| serde_json::from_str(&json).ok());
    ExternalResult { heard: mono, stats }
}

/// Two Chromium peers calling each other through the relay (libwebrtc on both ends, its
/// defaults: the baseline people know): `a` offers; each plays its file from start-up,
/// looping; `secs` after both are connected both are told bye. Returns what `a` and `b`
/// heard.
pub async fn chromium_pair(
    a_plays: &[f32],
    b_plays: &[f32],
    secs: f32,
    dir: &Path,
    netem: Option<super::relay::Netem>,
) -> (ExternalResult, ExternalResult) {
    let book = Arc::new(super::relay::RelayBook::new(netem));
    let a = Spawned::start(
        Stack::Chromium,
        "chromium-a",
        a_plays,
        dir,
        &["--offer", "b"],
    );
    let b = Spawned::start(Stack::Chromium, "chromium-b", b_plays, dir, &[]);
    let (a_tx, a_rx) = mpsc::channel::<String>(64);
    let (b_tx, b_rx) = mpsc::channel::<String>(64);
    let mut ends = Vec::new();
    for (me, other, peer, inbox, to_other) in [
        ("a", "b", a, a_rx, b_tx.clone()),
        ("b", "a", b, b_rx, a_tx.clone()),
    ] {
        tokio::spawn(write_lines(peer.stdin, inbox));
        let book = Arc::clone(&book);
        // Its signals go to the other, candidates rewritten to point at the relay.
        tokio::spawn(async move {
            let mut lines = BufReader::new(peer.stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(mut msg) = serde_json::from_str::<SignalMessage>(&line) else {
                    continue;
                };
                if let voice::Signal::Candidate { candidate, .. } = &mut msg.signal {
                    match book.rewrite(me, other, candidate).await {
                        Some(rewritten) => *candidate = rewritten,
                        None => continue,
                    }
                }
                msg.peer = me.into();
                let Ok(json) = serde_json::to_string(&msg) else {
                    continue;
                };
                if to_other.send(json).await.is_err() {
                    break;
                }
            }
        });
        ends.push((peer.child, peer.record, peer.stats, peer.connected));
    }
    for (_, _, _, connected) in &mut ends {
        let up = tokio::time::timeout(Duration::from_secs(30), connected.wait_for(|c| *c)).await;
        assert!(
            matches!(up, Ok(Ok(_))),
            "the Chromium peers did not connect"
        );
    }
    tokio::time::sleep(Duration::from_secs_f32(secs)).await;
    for tx in [&a_tx, &b_tx] {
        let _ = tx.send(r#"{"peer":"x","type":"bye"}"#.to_owned()).await;
    }
    let mut heard = Vec::new();
    for (mut child, record, stats, _) in ends {
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        assert!(
            matches!(status, Ok(Ok(s)) if s.success()),
            "Chromium peer ended badly: {status:?}"
        );
        heard.push(result(&record, &stats));
    }
    let b = heard.pop().expect("two results");
    let a = heard.pop().expect("two results");
    (a, b)
}

async fn write_lines(mut stdin: tokio::process::ChildStdin, mut lines: mpsc::Receiver<String>) {
    while let Some(line) = lines.recv().await {
        if stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
}
