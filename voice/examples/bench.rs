//! The voice benchmark: what a listener gets, in figures. Prints a table.
//!
//! `cargo run --release -p voice --example bench` (needs espeak-ng and sox for the speech,
//! PyPI `pesq` for scores and `aiortc` for the independent peer:
//! voice/scripts/setup-test-env.sh). Everything runs over loopback in this process; loss
//! and jitter come from an in-process UDP relay that every datagram crosses.
//!
//! - one-way latency: sender's capture of a sample to the receiver handing it to the
//!   playout device (device buffers excluded), median and 95th percentile over 100 ms
//!   windows of speech matched by cross-correlation;
//! - PESQ wide-band (P.862.2) of what arrived against what was sent;
//! - time from the offer to the first decoded audio;
//! - CPU per peer in a 6-person mesh (one process, 5 connections per peer);
//! - the same quality figures between us and independent stacks: Chromium (libwebrtc) and
//!   aiortc, with Chromium's own receive statistics for what we send it.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "bench/playout.rs"]
mod playout;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::external::{chromium_pair, ExternalCall, Stack};
use common::relay::Netem;
use common::*;
use voice::analysis::{match_segments, sine, to_analysis_rate, ANALYSIS_RATE};
use voice::audio::wav::Recording;
use voice::audio::StreamFormat;
use voice::dsp::SendSettings;
use voice::CallConfig;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const SPEECH_TEXT: &str = "The birch canoe slid on the smooth planks. Glue the sheet to the \
    dark blue background. It is easy to tell the depth of a well. These days a chicken leg \
    is a rare dish. Rice is often served in round bowls.";

/// Speech from espeak-ng at 48 kHz mono, or synthetic speech when espeak-ng is missing.
fn speech(dir: &Path) -> BenchResult<(Vec<f32>, &'static str)> {
    let raw = dir.join("espeak.wav");
    let resampled = dir.join("speech.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&raw)
        .arg(SPEECH_TEXT)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("sox")
            .arg(&raw)
            .args(["-r", "48000", "-c", "1", "-b", "16"])
            .arg(&resampled)
            .args(["rate", "-v"])
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        let (samples, format) = voice::audio::wav::read_wav(&resampled)?;
        if format.sample_rate == RATE && format.channels == 1 {
            return Ok((samples, "espeak-ng speech"));
        }
    }
    Ok((
        voice::analysis::synth_speech(1, RATE, 13.0),
        "synthetic speech (espeak-ng/sox missing)",
    ))
}

/// What b says in the network rows while a says `speech`: other sentences in another voice
/// (the double-talk measurement's near end) at the same level, or other synthetic speech.
fn other_speech(speech: &[f32]) -> Vec<f32> {
    use common::echo::{espeak, speech_level, DoubleTalk};
    let level = speech_level(speech);
    match espeak(common::echo::NEAR_LONG_TEXT, DoubleTalk::NEAR_VOICE, level) {
        Ok(other) => other,
        Err(e) => {
            eprintln!("b's speech: {e}; synthetic speech instead");
            voice::analysis::synth_speech(2, RATE, 12.0)
        }
    }
}

/// PESQ-WB of `received` (48 kHz mono, containing the speech somewhere) against `speech`
/// (48 kHz mono), after aligning them by cross-correlation.
fn pesq(speech: &[f32], received: &[f32], dir: &Path, tag: &str) -> Option<f64> {
    common::pesq::pesq_wb(speech, received, dir, tag)
        .map_err(|e| eprintln!("pesq: {e}"))
        .ok()
}

/// The device format speech reaches the send chain in.
#[derive(Clone, Copy)]
enum Input {
    /// 48 kHz mono: no resampling.
    Mono48k,
    /// 44.1 kHz stereo, as many headsets and onboard cards deliver: downmix and resampling.
    Stereo44k1,
}

impl Input {
    /// `speech` (48 kHz mono) as this device would deliver it.
    fn prepare(self, speech: &[f32]) -> Option<(Vec<f32>, StreamFormat)> {
        match self {
            Input::Mono48k => Some((speech.to_vec(), MONO)),
            Input::Stereo44k1 => {
                let mut r = voice::dsp::MonoResampler::new(RATE, 44_100).ok()?;
                let mut mono = Vec::new();
                r.process(speech, &mut mono);
                let mut stereo = Vec::new();
                voice::dsp::upmix(&mono, 2, &mut stereo);
                let format = StreamFormat {
                    sample_rate: 44_100,
                    channels: 2,
                };
                Some((stereo, format))
            }
        }
    }
}

/// How a lost packet's frame is rebuilt in [`codec_only`].
#[derive(Clone, Copy)]
enum Recovery {
    /// From the next packet's in-band FEC, told to plan for the loss.
    Fec,
    /// From an exact copy (RED) in one of the next `copies` packets, with the encoder's FEC
    /// hint at `hint`.
    Red { hint: f64, copies: usize },
}

/// PESQ of the send chain and Opus alone (no network, an ideal jitter buffer that always
/// has the next packet for FEC or RED), with `loss` of the packets dropped at random: the
/// ceiling the network figures are measured against.
fn codec_only(
    speech: &[f32],
    input: Input,
    settings: SendSettings,
    (bitrate, loss, recovery): (u32, f64, Recovery),
    dir: &Path,
    tag: &str,
) -> Option<f64> {
    use rand::{Rng, SeedableRng};
    let (signal, format) = input.prepare(&with_lead_in(speech))?;
    let mut chain = voice::dsp::SendChain::new(format).ok()?;
    let mut enc = voice::codec::OpusEncoder::new(bitrate, true).ok()?;
    enc.set_expected_loss(match recovery {
        Recovery::Fec => loss,
        Recovery::Red { hint, .. } => hint,
    } as f32)
        .ok()?;
    let mut dec = voice::codec::OpusDecoder::new().ok()?;
    let mut packets: Vec<Option<bytes::Bytes>> = Vec::new();
    // Fed in 10 ms blocks, as a device delivers them.
    let block = format.sample_rate as usize / 100 * usize::from(format.channels);
    // Packets as the engine sends them: 10 ms while RED is on, 20 ms otherwise.
    let packet_ms = match recovery {
        Recovery::Red { .. } if loss > 0.0 => voice::PACKET_MS_LOSSY,
        _ => voice::PACKET_MS_CLEAN,
    };
    let packet = voice::FRAME_SAMPLES * (packet_ms / voice::FRAME_MS) as usize;
    let mut pending = Vec::with_capacity(packet);
    for chunk in signal.chunks(block) {
        chain.push(chunk, settings, |f, _| {
            pending.extend_from_slice(f);
            if pending.len() >= packet {
                packets.push(enc.encode(&pending).ok().flatten());
                pending.clear();
            }
        });
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let lost: Vec<bool> = packets
        .iter()
        .map(|p| p.is_some() && rng.random_bool(loss))
        .collect();
    let mut out = Vec::with_capacity(signal.len());
    let mut frame = vec![0.0f32; packet];
    for i in 0..packets.len() {
        match (&packets[i], lost[i]) {
            (Some(p), false) => {
                dec.decode(p, &mut frame);
            }
            (Some(p), true) => match (packets.get(i + 1), lost.get(i + 1), recovery) {
                (_, _, Recovery::Red { copies, .. })
                    if (i + 1..=i + copies).any(|j| {
                        matches!((packets.get(j), lost.get(j)), (Some(Some(_)), Some(false)))
                    }) =>
                {
                    dec.decode(p, &mut frame);
                }
                (Some(Some(next)), Some(false), Recovery::Fec) => {
                    dec.decode_fec(next, &mut frame);
                }
                _ => {
                    dec.conceal(&mut frame);
                }
            },
            (None, _) => frame.fill(0.0),
        }
        out.extend_from_slice(&frame);
    }
    pesq(speech, &out, dir, tag)
}

/// One-way latency (ms) of each matched 100 ms window: from its capture at the sender to
/// its hand-off to the receiver's playout device.
fn latencies(sent: &[f32], start: Instant, heard: &Recording) -> Vec<f64> {
    let (Ok(s16), Ok(r16)) = (
        to_analysis_rate(sent, RATE),
        to_analysis_rate(&heard.samples(), RATE),
    ) else {
        return Vec::new();
    };
    let per = f64::from(RATE / ANALYSIS_RATE);
    let mut v: Vec<f64> = match_segments(&s16, &r16, ANALYSIS_RATE)
        .into_iter()
        .filter(|m| m.score > 0.5)
        .filter_map(|m| {
            let played = heard.handoff_time((m.received? as f64 * per) as usize)?;
            let captured =
                start + Duration::from_secs_f64(m.sent as f64 / f64::from(ANALYSIS_RATE));
            Some(played.checked_duration_since(captured)?.as_secs_f64() * 1000.0)
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied()
}

struct PairResult {
    latency_p50: Option<f64>,
    latency_p95: Option<f64>,
    pesq: Vec<f64>,
    concealed: f64,
    fec: u64,
    red: u64,
    jitter_buffer_ms: f64,
    jitter_buffer_delay_ms: f64,
    receive_delay_ms: f64,
}

/// Two peers talk at once through a relay with `loss` and `jitter`, sending RED under loss if
/// `red`: a says `speech.0`, b says `speech.1`, each scored against its own. Different speech
/// each way, as in a real call: with the same speech both ways each peer played what it was
/// sending a network delay later, and the echo canceller took it for an echo.
async fn run_pair(
    speech: (&[f32], &[f32]),
    (bitrate, red): (u32, bool),
    netem: Option<Netem>,
    dir: &Path,
    tag: &str,
) -> PairResult {
    let speech = [speech.0, speech.1];
    let signals = speech.map(with_lead_in);
    let secs = signals.iter().map(Vec::len).max().unwrap_or(0) as f32 / RATE as f32;
    let mesh = start_mesh(
        vec![("a", signals[0].clone()), ("b", signals[1].clone())],
        CallConfig {
            bind_addrs: vec!["127.0.0.1:0".to_owned()],
            bitrate,
            red,
            ..CallConfig::default()
        },
        netem,
    )
    .await;
    run_for(secs + 0.5).await;
    let mut lat = Vec::new();
    let mut scores = Vec::new();
    for (from, to) in [(0, 1), (1, 0)] {
        let heard = &mesh.peers[to].recording;
        if let Some(start) = mesh.peers[from].source_start.get() {
            lat.extend(latencies(&signals[from], *start, heard));
        }
        let tag = format!("{tag}-{from}{to}");
        if let Some(p) = pesq(speech[from], &heard.samples(), dir, &tag) {
            scores.push(p);
        }
    }
    lat.sort_by(f64::total_cmp);
    let stats: Vec<_> = mesh.peers.iter().flat_map(|p| p.call.stats()).collect();
    if std::env::var_os("VOICE_BENCH_VERBOSE").is_some() {
        eprintln!("{tag}: PESQ {scores:?} link: {stats:#?}");
    }
    let n = stats.len().max(1) as f64;
    PairResult {
        latency_p50: percentile(&lat, 0.5),
        latency_p95: percentile(&lat, 0.95),
        pesq: scores,
        concealed: stats.iter().map(|s| s.concealed_fraction).sum::<f64>() / n,
        fec: stats.iter().map(|s| s.fec_frames).sum(),
        red: stats.iter().map(|s| s.red_frames).sum(),
        jitter_buffer_ms: stats.iter().map(|s| s.jitter_buffer_ms).sum::<f64>() / n,
        jitter_buffer_delay_ms: stats.iter().map(|s| s.jitter_buffer_delay_ms).sum::<f64>() / n,
        receive_delay_ms: stats.iter().map(|s| s.receive_delay_ms).sum::<f64>() / n,
    }
}

/// Median time from the offer to the first decoded audio, over `runs` fresh calls.
async fn offer_to_audio(runs: usize) -> Vec<f64> {
    let mut v = Vec::new();
    for _ in 0..runs {
        let tone = sine(440.0, RATE, 6.0, 0.3);
        let mesh = start_mesh(
            vec![("a", tone.clone()), ("b", tone)],
            loopback_config(),
            None,
        )
        .await;
        run_for(1.0).await;
        // b offered to a: its link to a was created just before the offer.
        if let Some(ms) = mesh.peers[1]
            .call
            .stats()
            .first()
            .and_then(|s| s.first_audio_ms)
        {
            v.push(ms);
        }
    }
    v.sort_by(f64::total_cmp);
    v
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (USER_HZ = 100 on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// The machine's CPU time so far, from `/proc/stat`: (stolen, total) in clock ticks. Steal is
/// time the hypervisor gave this virtual machine's CPUs to someone else: the engine's clock
/// wakes late by as much, the playout device runs dry and the engine keeps more queued
/// (`receive delay` grows with it), so the figures of a run are read beside it.
fn cpu_steal_ticks() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    Some((*fields.get(7)?, fields.iter().take(8).sum()))
}

/// Share of the CPU time since `before` (from [`cpu_steal_ticks`]) that was stolen.
fn steal_since(before: Option<(f64, f64)>) -> Option<f64> {
    let ((s0, t0), (s1, t1)) = (before?, cpu_steal_ticks()?);
    (t1 > t0).then(|| (s1 - s0) / (t1 - t0))
}

/// CPU per peer (% of one core) with six peers in a full mesh, all talking.
async fn mesh_cpu(speech: &[f32]) -> f64 {
    let names = ["p1", "p2", "p3", "p4", "p5", "p6"];
    let signal = with_lead_in(speech);
    let members = names.iter().map(|n| (*n, signal.clone())).collect();
    let config = CallConfig {
        bind_addrs: vec!["127.0.0.1:0".to_owned()],
        ..CallConfig::default()
    };
    let _mesh = start_mesh(members, config, None).await;
    run_for(LEAD_IN_SECS).await;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    run_for(8.0).await;
    let cpu = cpu_seconds() - cpu0;
    100.0 * cpu / t0.elapsed().as_secs_f64() / names.len() as f64
}

/// One call with an independent stack: PESQ both ways and each side's receive figures.
struct ExternalRow {
    to_us: Option<f64>,
    to_them: Option<f64>,
    our_concealed: f64,
    our_jitter_buffer_ms: f64,
    our_jitter_buffer_delay_ms: f64,
    /// Chromium's own view of our stream: average jitter-buffer delay (ms), concealed share,
    /// FEC packets used.
    their_jitter_buffer_ms: Option<f64>,
    their_concealed: Option<f64>,
    their_fec: Option<f64>,
}

/// What an independent peer plays: speech after 4 s of silence and before 1 s. Chromium's
/// fake microphone starts playing its file while the browser starts, before the call
/// connects, and loops it: the silence covers that start-up.
fn their_signal(speech: &[f32]) -> Vec<f32> {
    let mut theirs = vec![0.0; RATE as usize * 4];
    theirs.extend_from_slice(speech);
    theirs.extend(std::iter::repeat_n(0.0, RATE as usize));
    theirs
}

/// The relay's impairments for a row; `seed` varies between the runs of a row.
fn netem(loss: f64, jitter_ms: u64, seed: u64) -> Option<Netem> {
    (loss > 0.0 || jitter_ms > 0).then_some(Netem {
        loss,
        jitter: Duration::from_millis(jitter_ms),
        seed,
    })
}

async fn external_call(
    stack: Stack,
    speech: &[f32],
    netem: Option<Netem>,
    dir: &Path,
) -> ExternalRow {
    let signal = with_lead_in(speech);
    let theirs = their_signal(speech);
    let config = CallConfig {
        // aiortc plays only the frames it receives, so DTX gaps would shorten its recording.
        dtx: stack != Stack::Aiortc,
        send: SendSettings {
            noise_suppression: false,
            ..SendSettings::default()
        },
        ..loopback_config()
    };
    let peer = ExternalCall::start(stack, config, signal.clone(), &theirs, dir, netem, &[]).await;
    run_for(theirs.len() as f32 / RATE as f32).await;
    let we_heard = peer.heard.samples();
    let stats = peer.call.stats();
    let result = peer.finish().await;
    if std::env::var_os("VOICE_BENCH_VERBOSE").is_some() {
        eprintln!("{} link: {stats:#?}", stack.name());
        if let Some(theirs) = &result.stats {
            eprintln!("{} stats: {theirs:#}", stack.name());
        }
    }
    // The seed tells the runs of a row apart, so `VOICE_BENCH_KEEP=1` keeps every call.
    let tag = format!(
        "{}-{}-{}",
        stack.name(),
        netem.map_or(0, |n| (n.loss * 100.0) as u32),
        netem.map_or(0, |n| n.seed)
    );
    let theirs = result.stats.as_ref();
    let num = |k: &str| {
        theirs
            .and_then(|s| s.get(k))
            .and_then(serde_json::Value::as_f64)
    };
    let to_us = pesq(speech, &we_heard, dir, &format!("{tag}-to-us"));
    let to_them = pesq(speech, &result.heard, dir, &format!("{tag}-to-them"));
    if std::env::var_os("VOICE_BENCH_VERBOSE").is_some() {
        eprintln!("{tag}: PESQ-WB them → us {to_us:?}, us → them {to_them:?}");
    }
    ExternalRow {
        to_us,
        to_them,
        our_concealed: stats.first().map_or(0.0, |s| s.concealed_fraction),
        our_jitter_buffer_ms: stats.first().map_or(0.0, |s| s.jitter_buffer_ms),
        our_jitter_buffer_delay_ms: stats.first().map_or(0.0, |s| s.jitter_buffer_delay_ms),
        their_jitter_buffer_ms: num("jitterBufferDelay")
            .zip(num("jitterBufferEmittedCount"))
            .map(|(d, n)| 1000.0 * d / n.max(1.0)),
        their_concealed: num("concealedSamples")
            .zip(num("totalSamplesReceived"))
            .map(|(c, t)| c / t.max(1.0)),
        their_fec: num("fecPacketsReceived"),
    }
}

fn fmt(v: Option<f64>, unit: &str) -> String {
    v.map(|v| format!("{v:.1}{unit}"))
        .unwrap_or_else(|| "n/a".to_owned())
}

/// A PESQ score to two decimals: the codec table's steps are a few hundredths.
fn pesq_fmt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}"))
        .unwrap_or_else(|| "n/a".to_owned())
}

/// Whether a section runs: all by default, or those named in `VOICE_BENCH_ONLY`
/// (comma-separated: echo, apm, codec, jitter, network, offer, cpu, external).
fn section(name: &str) -> bool {
    std::env::var("VOICE_BENCH_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim() == name))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> BenchResult<()> {
    let dir: PathBuf = std::env::temp_dir().join(format!("voice-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (speech, source) = speech(&dir)?;
    println!(
        "voice benchmark: {source}, {:.1} s, engine frames of {} ms, Opus VoIP packets of {} ms \
         ({} ms while RED is on), FEC+DTX, RED (one copy from 3% reported loss, two from 10%), \
         bitrate doubled while receivers without RED report >= 3% \
         loss, the default send chain (echo cancellation, noise suppression, gain, gate) \
         in calls between our peers, loopback",
        speech.len() as f32 / RATE as f32,
        voice::FRAME_MS,
        voice::PACKET_MS_CLEAN,
        voice::PACKET_MS_LOSSY
    );
    if section("echo") {
        echo_rows(&dir);
    }
    if section("apm") {
        apm_rows(&dir);
    }
    if section("codec") {
        codec_rows(&speech, &dir);
    }
    if section("jitter") {
        playout::rows(&speech, &dir);
    }
    if section("network") {
        network_rows(&speech, &other_speech(&speech), &dir).await;
    }
    if section("offer") {
        let times = offer_to_audio(5).await;
        println!(
            "offer → first decoded audio: median {}, min {}, max {} ({} runs)",
            fmt(percentile(&times, 0.5), " ms"),
            fmt(times.first().copied(), " ms"),
            fmt(times.last().copied(), " ms"),
            times.len()
        );
    }
    if section("cpu") {
        let cpu = mesh_cpu(&speech).await;
        println!(
            "CPU per peer, 6-person mesh (5 connections each, all talking): {cpu:.1}% of one core"
        );
    }
    if section("external") {
        external_rows(&speech, &dir).await;
    }
    if std::env::var_os("VOICE_BENCH_KEEP").is_some() {
        println!("files kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Echo cancellation on the simulated echo path of `tests/echo.rs` (espeak-ng speech, far end
/// at -20 dBFS, near end at -26 dBFS from 8 s): ERLE per delay, the near end's survival in
/// double talk, and what the canceller costs per 10 ms. Offline: no network, no clock.
fn echo_rows(dir: &Path) {
    use common::echo::{canceller_only, erle_db, near_end_score, run, EchoPath, Scenario};
    let s = match Scenario::speech() {
        Ok(s) => s,
        Err(e) => {
            println!("echo: skipped, no test speech ({e})");
            return;
        }
    };
    let (from, to) = s.single_talk();
    let settled = (RATE as usize * 5).min(to);
    let (dt_from, dt_to) = s.double_talk();
    println!();
    println!(
        "echo cancellation (SpeexDSP, 48 kHz, 10 ms frames, 250 ms filter, residual echo \
         suppression), simulated echo path, send chain with noise suppression, gain and gate off:"
    );
    println!("| echo delay | echo level | ERLE 2–8 s | ERLE 5–8 s | near end in double talk (correlation, on / off) | realigned |");
    println!("|---|---|---|---|---|---|");
    let mut on_time = Duration::ZERO;
    let mut off_time = Duration::ZERO;
    let mut samples = 0;
    for (delay_ms, attenuation_db) in [
        (30.0, -6.0),
        (40.0, -6.0),
        (80.0, -6.0),
        (120.0, -10.0),
        (150.0, -10.0),
    ] {
        let path = EchoPath {
            delay_ms,
            attenuation_db,
        };
        let on = run(&s.far, &s.near, path, canceller_only(true));
        let off = run(&s.far, &s.near, path, canceller_only(false));
        on_time += on.chain_time;
        off_time += off.chain_time;
        samples += on.out.len();
        println!(
            "| {delay_ms} ms | {attenuation_db} dB | {:.1} dB | {:.1} dB | {:.3} / {:.3} | {} |",
            erle_db(&on, from, to),
            erle_db(&on, settled, to),
            near_end_score(&s.near, &on.out, dt_from, dt_to),
            near_end_score(&s.near, &off.out, dt_from, dt_to),
            on.realigned,
        );
    }
    let frames = (samples / (RATE as usize / 100)).max(1) as f64;
    let per_frame = |t: Duration| t.as_secs_f64() * 1e6 / frames;
    println!(
        "echo canceller cost: {:.0} µs per 10 ms frame ({:.0} µs per 20 ms; send chain {:.0} µs \
         per 10 ms with it, {:.0} µs without)",
        per_frame(on_time) - per_frame(off_time),
        2.0 * (per_frame(on_time) - per_frame(off_time)),
        per_frame(on_time),
        per_frame(off_time),
    );
    onset_rows();
    double_talk_rows(dir);
}

/// An echo appearing mid-call after a stretch of double talk with none (`EchoOnset` in
/// tests/common/echo.rs): how low the canceller's presence had gone, how soon it is back to
/// full suppression, and the ERLE in the seconds after the echo appeared.
fn onset_rows() {
    use common::echo::{canceller_only, EchoOnset, EchoPath};
    let onset = match EchoOnset::speech() {
        Ok(o) => o,
        Err(e) => {
            println!("echo onset: skipped, no test speech ({e})");
            return;
        }
    };
    println!();
    println!(
        "echo appearing at {} s, after ~6 s of double talk with no echo (canceller only):",
        EchoOnset::AT / RATE as usize
    );
    println!("| echo delay | echo level | presence before | full suppression after | ERLE 0–0.5 s | 0.5–1 s | 1–2 s | 2–4 s | 4–6 s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (delay_ms, attenuation_db) in [(60.0, -6.0), (120.0, -10.0)] {
        let path = EchoPath {
            delay_ms,
            attenuation_db,
        };
        let run = onset.run(path, canceller_only(true));
        let before = run.presence[EchoOnset::AT / (RATE as usize / 100) - 1];
        let back = EchoOnset::presence_back_after(&run)
            .map_or("never".to_owned(), |d| format!("{} ms", d.as_millis()));
        let erle = |from, to| format!("{:.1} dB", EchoOnset::erle_after(&run, from, to));
        println!(
            "| {delay_ms} ms | {attenuation_db} dB | {before:.3} | {back} | {} | {} | {} | {} | {} |",
            erle(0.0, 0.5),
            erle(0.5, 1.0),
            erle(1.0, 2.0),
            erle(2.0, 4.0),
            erle(4.0, 6.0),
        );
    }
}

/// Double talk scored with PESQ-WB (`DoubleTalk` in tests/common/echo.rs): the near end talks
/// over a different far-end talker for ~11 s, through the default send chain with the
/// canceller on and off; and the same-speech case of the network rows (each peer plays the
/// very speech it sends, a network delay later).
fn double_talk_rows(dir: &Path) {
    use common::echo::{DoubleTalk, EchoPath, FarEnd};
    let talk = match DoubleTalk::speech() {
        Ok(t) => t,
        Err(e) => {
            println!("double talk: skipped, no test speech ({e})");
            return;
        }
    };
    println!();
    println!(
        "double talk (near end -26 dBFS talking all through a far end at -20 dBFS), default send \
         chain, PESQ-WB of the output against the clean near-end speech:"
    );
    println!("| far end | echo path | canceller on | canceller off |");
    println!("|---|---|---|---|");
    let echo = |delay_ms, attenuation_db| {
        Some(EchoPath {
            delay_ms,
            attenuation_db,
        })
    };
    for (row, (far_end, label, path)) in [
        (
            FarEnd::Other { echo: None },
            "another talker",
            "none".to_owned(),
        ),
        (
            FarEnd::Other {
                echo: echo(60.0, -10.0),
            },
            "another talker",
            "60 ms, -10 dB".to_owned(),
        ),
        (
            FarEnd::Other {
                echo: echo(120.0, -10.0),
            },
            "another talker",
            "120 ms, -10 dB".to_owned(),
        ),
        (
            FarEnd::Same { lag_ms: 50.0 },
            "the near speech 50 ms later",
            "none".to_owned(),
        ),
        (
            FarEnd::Same { lag_ms: 90.0 },
            "the near speech 90 ms later",
            "none".to_owned(),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        double_talk_row(label, &path, |settings, on| {
            talk.score(far_end, settings, dir, &format!("double-talk-{row}-{on}"))
        });
    }
    // Both talking from the call's first moment: the canceller has heard nothing before.
    for (swapped, near_at_ms, label) in [
        (false, 0, "another talker, both from the first moment"),
        (true, 100, "the same two swapped, near end 100 ms after"),
    ] {
        double_talk_row(label, "none", |settings, on| {
            let tag = format!("double-talk-start-{swapped}-{on}");
            talk.score_from_the_start(swapped, near_at_ms, settings, dir, &tag)
        });
    }
}

/// One row of the double-talk table: `score` through the default send chain with the
/// canceller on, then off.
fn double_talk_row(
    label: &str,
    path: &str,
    score: impl Fn(SendSettings, bool) -> Result<f64, String>,
) {
    let run = |on: bool| {
        let settings = SendSettings {
            echo_cancellation: on,
            ..SendSettings::default()
        };
        score(settings, on)
            .map_err(|e| eprintln!("double talk: {e}"))
            .ok()
    };
    println!(
        "| {label} | {path} | {} | {} |",
        pesq_fmt(run(true)),
        pesq_fmt(run(false))
    );
}

/// Our SpeexDSP canceller against WebRTC's APM (AEC3) on the same simulated echo path and the
/// same double talk (`tests/common/webrtc_apm.rs`); needs `--features webrtc-apm`.
#[cfg(not(feature = "webrtc-apm"))]
fn apm_rows(_dir: &Path) {
    println!();
    println!(
        "apm: skipped (WebRTC APM comparison: voice/scripts/build-webrtc-apm.sh, then \
         --features webrtc-apm)"
    );
}

#[cfg(feature = "webrtc-apm")]
fn apm_rows(dir: &Path) {
    use common::echo::{
        canceller_only, erle_db, espeak, near_end_score, run, speech_level, DoubleTalk, EchoPath,
        FarEnd, Scenario, FAR_TEXT,
    };
    use common::webrtc_apm::{self, Apm};
    let s = match Scenario::speech() {
        Ok(s) => s,
        Err(e) => {
            println!("apm: skipped, no test speech ({e})");
            return;
        }
    };
    let (from, to) = s.single_talk();
    let early = RATE as usize / 2;
    let settled = (RATE as usize * 5).min(to);
    let (dt_from, dt_to) = s.double_talk();
    println!();
    println!(
        "SpeexDSP (ours, send chain with noise suppression, gain and gate off) against WebRTC \
         APM 2.1 AEC3 alone (its delay estimator, its forced high-pass filter), same simulated \
         echo path; figures SpeexDSP / AEC3:"
    );
    println!("| echo delay | echo level | ERLE 0.5–2 s | ERLE 2–8 s | ERLE 5–8 s | near end in double talk (correlation) |");
    println!("|---|---|---|---|---|---|");
    let (mut speex_on, mut speex_off, mut aec3_time) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut samples = 0;
    for (delay_ms, attenuation_db) in [
        (30.0, -6.0),
        (60.0, -6.0),
        (80.0, -6.0),
        (120.0, -10.0),
        (150.0, -10.0),
    ] {
        let path = EchoPath {
            delay_ms,
            attenuation_db,
        };
        let on = run(&s.far, &s.near, path, canceller_only(true));
        let off = run(&s.far, &s.near, path, canceller_only(false));
        let aec3 = match webrtc_apm::run(Apm::Aec3, &s.far, &s.near, path) {
            Ok(r) => r,
            Err(e) => {
                println!("apm: {e}");
                return;
            }
        };
        speex_on += on.chain_time;
        speex_off += off.chain_time;
        aec3_time += aec3.chain_time;
        samples += on.out.len();
        println!(
            "| {delay_ms} ms | {attenuation_db} dB | {:.1} / {:.1} dB | {:.1} / {:.1} dB | {:.1} / {:.1} dB | {:.3} / {:.3} |",
            erle_db(&on, early, from),
            erle_db(&aec3, early, from),
            erle_db(&on, from, to),
            erle_db(&aec3, from, to),
            erle_db(&on, settled, to),
            erle_db(&aec3, settled, to),
            near_end_score(&s.near, &on.out, dt_from, dt_to),
            near_end_score(&s.near, &aec3.out, dt_from, dt_to),
        );
    }
    let frames = (samples / (RATE as usize / 100)).max(1) as f64;
    let per_frame = |t: Duration| t.as_secs_f64() * 1e6 / frames;
    println!(
        "cost per 10 ms frame at 48 kHz: SpeexDSP {:.0} µs (canceller, share and suppressor), \
         AEC3 {:.0} µs (capture and render sides)",
        per_frame(speex_on) - per_frame(speex_off),
        per_frame(aec3_time),
    );

    let talk = match DoubleTalk::speech() {
        Ok(t) => t,
        Err(e) => {
            println!("apm double talk: skipped, no test speech ({e})");
            return;
        }
    };
    println!();
    println!(
        "double talk (as in the echo section), PESQ-WB of the near end: default send chain with \
         SpeexDSP on, AEC3 in front of the default chain with SpeexDSP off, no canceller:"
    );
    println!("| far end | echo path | SpeexDSP | AEC3 | none |");
    println!("|---|---|---|---|---|");
    let echo = |delay_ms, attenuation_db| {
        Some(EchoPath {
            delay_ms,
            attenuation_db,
        })
    };
    for (row, (far_end, label, path)) in [
        (FarEnd::Other { echo: None }, "another talker", "none"),
        (
            FarEnd::Other {
                echo: echo(60.0, -10.0),
            },
            "another talker",
            "60 ms, -10 dB",
        ),
        (
            FarEnd::Other {
                echo: echo(120.0, -10.0),
            },
            "another talker",
            "120 ms, -10 dB",
        ),
        (
            FarEnd::Same { lag_ms: 50.0 },
            "the near speech 50 ms later",
            "none",
        ),
        (
            FarEnd::Same { lag_ms: 90.0 },
            "the near speech 90 ms later",
            "none",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let ours = |on: bool| {
            let settings = SendSettings {
                echo_cancellation: on,
                ..SendSettings::default()
            };
            talk.score(far_end, settings, dir, &format!("apm-dt-{row}-{on}"))
                .map_err(|e| eprintln!("double talk: {e}"))
                .ok()
        };
        let aec3 = webrtc_apm::double_talk_score(
            &talk,
            Apm::Aec3,
            far_end,
            dir,
            &format!("apm-dt-{row}-aec3"),
        )
        .map_err(|e| eprintln!("double talk: {e}"))
        .ok();
        println!(
            "| {label} | {path} | {} | {} | {} |",
            pesq_fmt(ours(true)),
            pesq_fmt(aec3),
            pesq_fmt(ours(false))
        );
    }

    println!();
    println!(
        "automatic gain, espeak-ng speech alone (13 s), level of the second half and peak: our \
         chain (SpeexDSP, noise suppression, gain; gate off) / APM AGC2 adaptive digital (its \
         defaults, alone):"
    );
    println!("| talker | ours | AGC2 |");
    println!("|---|---|---|");
    for level_db in [-35.0, -20.0, -10.0] {
        let speech = match espeak(FAR_TEXT, "en-us", level_db) {
            Ok(s) => s.iter().map(|x| x.clamp(-1.0, 1.0)).collect::<Vec<f32>>(),
            Err(e) => {
                println!("agc: {e}");
                return;
            }
        };
        let settings = SendSettings {
            noise_gate: false,
            ..SendSettings::default()
        };
        let ours = run(
            &[],
            &speech,
            EchoPath {
                delay_ms: 40.0,
                attenuation_db: -6.0,
            },
            settings,
        )
        .out;
        let agc2 = match webrtc_apm::process(Apm::Agc2, &[], &speech) {
            Ok((out, _)) => out,
            Err(e) => {
                println!("agc: {e}");
                return;
            }
        };
        let half = speech.len() / 2;
        let describe = |out: &[f32]| {
            let peak = out.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            format!("{:.1} dBFS, peak {peak:.2}", speech_level(&out[half..]))
        };
        println!(
            "| {level_db} dBFS (second half {:.1}) | {} | {} |",
            speech_level(&speech[half..]),
            describe(&ours),
            describe(&agc2)
        );
    }
}

fn codec_rows(speech: &[f32], dir: &Path) {
    let plain = SendSettings {
        echo_cancellation: false,
        noise_suppression: false,
        auto_gain: false,
        noise_gate: false,
        input_gain: 1.0,
    };
    let gate = SendSettings {
        echo_cancellation: false,
        noise_suppression: false,
        ..SendSettings::default()
    };
    let denoised = SendSettings {
        echo_cancellation: false,
        ..SendSettings::default()
    };
    let full = SendSettings::default();
    let default_kbps = voice::codec::DEFAULT_BITRATE / 1000;
    println!();
    println!("codec only, no network (PESQ-WB at 0% loss; default {default_kbps} kbps):");
    println!("| bitrate | Opus alone | + gain and gate | + noise suppression | + echo cancellation, no echo (default chain) | default chain, 44.1 kHz stereo input |");
    println!("|---|---|---|---|---|---|");
    for kbps in [24, 32, 40, 48, 64, 96] {
        let at = |input, settings, name: &str| {
            let tag = format!("codec-{kbps}-{name}");
            pesq_fmt(codec_only(
                speech,
                input,
                settings,
                (kbps * 1000, 0.0, Recovery::Fec),
                dir,
                &tag,
            ))
        };
        println!(
            "| {kbps} kbps | {} | {} | {} | {} | {} |",
            at(Input::Mono48k, plain, "plain"),
            at(Input::Mono48k, gate, "gate"),
            at(Input::Mono48k, denoised, "denoised"),
            at(Input::Mono48k, full, "full"),
            at(Input::Stereo44k1, full, "full44"),
        );
    }
    let lossy = |loss: f64, recovery: Recovery, name: &str| {
        let tag = format!("codec-loss{}-{name}", (loss * 100.0) as u32);
        let bitrate = voice::codec::DEFAULT_BITRATE;
        pesq_fmt(codec_only(
            speech,
            Input::Mono48k,
            gate,
            (bitrate, loss, recovery),
            dir,
            &tag,
        ))
    };
    println!(
        "codec only at {default_kbps} kbps with random loss, ideal FEC/PLC (PESQ-WB): 5% {}, 10% {}, 20% {}",
        lossy(0.05, Recovery::Fec, "fec"),
        lossy(0.10, Recovery::Fec, "fec"),
        lossy(0.20, Recovery::Fec, "fec"),
    );
    // RED's copy makes the next packet's in-band FEC redundant; these rows show what the FEC
    // bits cost the primary encoding when the encoder is told to plan for the loss anyway.
    for (loss, copies) in [(0.0, 1), (0.10, 1), (0.20, 1), (0.10, 2), (0.20, 2)] {
        let residual = f64::powi(loss, copies as i32 + 1);
        println!(
            "codec only at {default_kbps} kbps, {:.0}% loss, ideal RED ({copies} cop{}): encoder planning FEC for the loss {}, for what RED leaves ({:.1}%) {}, for none {}",
            loss * 100.0,
            if copies == 1 { "y" } else { "ies" },
            lossy(loss, Recovery::Red { hint: loss, copies }, "red-hint"),
            residual * 100.0,
            lossy(loss, Recovery::Red { hint: residual, copies }, "red-residual"),
            lossy(loss, Recovery::Red { hint: 0.0, copies }, "red-nohint"),
        );
    }
}

async fn network_rows(speech: &[f32], other: &[f32], dir: &Path) {
    let runs = runs();
    println!();
    println!("our engine ↔ our engine, {runs} calls per row; PESQ-WB both directions pooled (median, range), the other columns averaged:");
    println!("| bitrate | RED | network (jitter: each packet delayed 0–20 ms) | latency p50 | latency p95 | PESQ-WB | concealed | FEC frames | RED frames | jitter buffer target / delay | receive delay |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let default = voice::codec::DEFAULT_BITRATE / 1000;
    let steal_before = cpu_steal_ticks();
    for (bitrate, red, label, loss, jitter) in [
        (default, true, "0% loss", 0.0, 0),
        (default, true, "0% loss + jitter", 0.0, 20),
        (default, true, "5% loss + jitter", 0.05, 20),
        (default, true, "10% loss + jitter", 0.10, 20),
        (default, true, "20% loss + jitter", 0.20, 20),
        (default, false, "10% loss + jitter", 0.10, 20),
        (default, false, "20% loss + jitter", 0.20, 20),
        (32, true, "0% loss", 0.0, 0),
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| {
        std::env::var("VOICE_BENCH_ROWS").map_or(true, |rows| {
            rows.split(',').any(|r| r.trim().parse() == Ok(*i))
        })
    })
    .map(|(_, row)| row)
    {
        let tag = format!("{bitrate}k-{red}-{}", label.replace([' ', '%', '+'], ""));
        let mut results = Vec::new();
        for run in 0..runs {
            results.push(
                run_pair(
                    (speech, other),
                    (bitrate * 1000, red),
                    netem(loss, jitter, 42 + run as u64),
                    dir,
                    &format!("{tag}-{run}"),
                )
                .await,
            );
        }
        let n = results.len() as f64;
        let mean = |f: fn(&PairResult) -> f64| results.iter().map(f).sum::<f64>() / n;
        let mean_of = |f: fn(&PairResult) -> Option<f64>| {
            let v: Vec<f64> = results.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        println!(
            "| {bitrate} kbps | {} | {label} | {} | {} | {} | {:.1}% | {:.0} | {:.0} | {:.0} / {:.0} ms | {:.0} ms |",
            if red { "on" } else { "off" },
            fmt(mean_of(|r| r.latency_p50), " ms"),
            fmt(mean_of(|r| r.latency_p95), " ms"),
            spread(
                results
                    .iter()
                    .flat_map(|r| r.pesq.iter().copied())
                    .collect()
            ),
            mean(|r| r.concealed) * 100.0,
            mean(|r| r.fec as f64),
            mean(|r| r.red as f64),
            mean(|r| r.jitter_buffer_ms),
            mean(|r| r.jitter_buffer_delay_ms),
            mean(|r| r.receive_delay_ms),
        );
    }
    if let Some(steal) = steal_since(steal_before) {
        println!(
            "CPU time stolen by the hypervisor during these calls: {:.0}% (delays the engine's \
             clock; the playout queue, part of the receive delay, grows after each time the \
             device runs dry)",
            steal * 100.0
        );
    }
    println!();
}

/// Two Chromium peers calling each other through the same relay: what libwebrtc gets from
/// itself, the baseline for the rows with us. PESQ-WB a → b and b → a.
async fn chromium_to_chromium(speech: &[f32], netem: Option<Netem>, dir: &Path) -> Vec<f64> {
    let theirs = their_signal(speech);
    let secs = theirs.len() as f32 / RATE as f32;
    let (a, b) = chromium_pair(&theirs, &theirs, secs, dir, netem).await;
    let tag = format!(
        "chromium-pair-{}",
        netem.map_or(0, |n| (n.loss * 100.0) as u32)
    );
    [(&b, "ab"), (&a, "ba")]
        .into_iter()
        .filter_map(|(heard, dir_tag)| pesq(speech, &heard.heard, dir, &format!("{tag}-{dir_tag}")))
        .collect()
}

/// Median and range of a row's runs, e.g. `3.4 (3.1–3.6)`.
fn spread(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => return "n/a".to_owned(),
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    match (v.first(), v.last()) {
        (Some(lo), Some(hi)) if v.len() > 1 => format!("{median:.2} ({lo:.2}–{hi:.2})"),
        _ => format!("{median:.2}"),
    }
}

/// Calls per row of the network tables (`VOICE_BENCH_RUNS`, default 3): single
/// calls through a lossy relay scatter by several tenths.
fn runs() -> usize {
    count_from_env("VOICE_BENCH_RUNS", 3)
}

/// A positive count from the environment variable `name`, or `default`.
fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(default)
}

/// The network conditions of the independent peers' rows (the issue's: 0/5/10/20 % loss,
/// every packet delayed 0–20 ms, as in our own network rows).
const EXTERNAL_NETWORKS: [(&str, f64, u64); 4] = [
    ("0% loss + jitter", 0.0, 20),
    ("5% loss + jitter", 0.05, 20),
    ("10% loss + jitter", 0.10, 20),
    ("20% loss + jitter", 0.20, 20),
];

async fn external_rows(speech: &[f32], dir: &Path) {
    let only = std::env::var("VOICE_BENCH_STACKS").unwrap_or_default();
    let runs = runs();
    println!();
    println!(
        "independent peers, {runs} calls per row (median, and range when more than one), PESQ-WB:"
    );
    println!("| peer | network | them → us | us → them | our concealed / jitter buffer target / delay | their concealed / jitter buffer delay / FEC packets |");
    println!("|---|---|---|---|---|---|");
    for stack in [Stack::Chromium, Stack::Aiortc] {
        if !only.is_empty() && !only.contains(stack.name()) {
            continue;
        }
        if !stack.available() {
            println!("| {} | not installed | | | | |", stack.name());
            continue;
        }
        for (label, loss, jitter) in EXTERNAL_NETWORKS {
            let mut rows = Vec::new();
            for run in 0..runs {
                rows.push(
                    external_call(stack, speech, netem(loss, jitter, 42 + run as u64), dir).await,
                );
            }
            let n = rows.len() as f64;
            let mean = |f: &dyn Fn(&ExternalRow) -> Option<f64>| {
                let v: Vec<f64> = rows.iter().filter_map(f).collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{:.1}%", v * 100.0));
            println!(
                "| {} | {label} | {} | {} | {:.1}% / {:.0} / {:.0} ms | {} / {} / {} |",
                stack.name(),
                spread(rows.iter().filter_map(|r| r.to_us).collect()),
                spread(rows.iter().filter_map(|r| r.to_them).collect()),
                rows.iter().map(|r| r.our_concealed).sum::<f64>() * 100.0 / n,
                rows.iter().map(|r| r.our_jitter_buffer_ms).sum::<f64>() / n,
                rows.iter()
                    .map(|r| r.our_jitter_buffer_delay_ms)
                    .sum::<f64>()
                    / n,
                pct(mean(&|r| r.their_concealed)),
                fmt(mean(&|r| r.their_jitter_buffer_ms), " ms"),
                mean(&|r| r.their_fec).map_or("n/a".to_owned(), |v| format!("{v:.0}")),
            );
        }
    }
    if (only.is_empty() || only.contains("chromium")) && Stack::Chromium.available() {
        println!();
        println!("Chromium → Chromium through the same relay (libwebrtc's defaults on both ends: no RED), {runs} calls per row, both directions pooled, PESQ-WB:");
        println!("| network | Chromium → Chromium |");
        println!("|---|---|");
        for (label, loss, jitter) in EXTERNAL_NETWORKS {
            let mut scores = Vec::new();
            for run in 0..runs {
                scores.extend(
                    chromium_to_chromium(speech, netem(loss, jitter, 42 + run as u64), dir).await,
                );
            }
            println!("| {label} | {} |", spread(scores));
        }
    }
}
