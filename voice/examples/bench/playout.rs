//! The `jitter` section: the receive path in simulated time. Deterministic (no clock, no
//! sockets), so two versions of the receiver can be compared seed by seed where calls
//! through the relay scatter by several tenths of PESQ.
//!
//! Speech is encoded as our sender encodes it (Opus at the default bitrate, FEC planned for
//! the loss RED leaves, DTX) and packetized as it sends it (20 ms packets on a clean network; 10 ms
//! ones with RED, one copy from 3 % loss, two from 10 %, as the peers' reports would ask). Each packet is lost at random or delayed by a
//! uniform 0–20 ms (so packets overtake each other); in the "stalls" rows, moreover, the
//! path stops now and then (every 2 s on average, for 40–120 ms) and what was sent
//! meanwhile arrives in one burst when it resumes, as a busy sender or receiver, or a
//! Wi-Fi link, delivers it. The packets feed a receiver ticked every 10 ms, as the playout
//! loop does. What it played is scored with PESQ-WB against the speech; the receive delay
//! is how long after the sender finished a frame it was played, less the fastest possible
//! network (0 ms): jitter buffer and playout together; "from arrival" is how long after its
//! packet arrived a frame started playing (the receiver's own share, as WebRTC's
//! `jitterBufferDelay` counts it).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use voice::analysis::{match_segments, to_analysis_rate, ANALYSIS_RATE};
use voice::codec::OpusEncoder;
use voice::jitter::JitterStats;
use voice::receive::PeerReceiver;
use voice::FRAME_SAMPLES;

use crate::common::{with_lead_in, RATE};

/// The payload type of Opus inside RED here (any will do: both ends are ours).
const OPUS_PT: u8 = 111;
/// Phase of the playout tick against the sender's frame clock (ms) in call `seed`: any
/// offset in a frame, as between two machines, spread evenly over the seeds (golden ratio).
/// The buffer can only play a frame on a tick, so its delay comes in steps of a frame from
/// this phase; one fixed phase would hide how the target delay moves it.
fn tick_phase_ms(seed: u64) -> f64 {
    (seed as f64 * 0.618_034).fract() * voice::FRAME_MS
}
/// Mean time between stalls in the "stalls" rows (ms), and their shortest and longest.
const STALL_EVERY_MS: f64 = 2000.0;
const STALL_MS: (f64, f64) = (40.0, 120.0);

/// One sent packet: when it left (ms), its sequence number, timestamp and RTP payload.
struct Sent {
    at_ms: f64,
    seq: u16,
    ts: u32,
    payload: Bytes,
    red: bool,
}

/// Redundant copies our sender puts in each packet at `loss` (reported by the peer).
fn red_depth(loss: f64) -> usize {
    if loss >= 0.10 {
        2
    } else if loss >= 0.03 {
        1
    } else {
        0
    }
}

/// Audio per packet (ms) our sender sends at `loss`: shorter while RED is on.
fn packet_ms(loss: f64) -> f64 {
    if red_depth(loss) > 0 {
        voice::PACKET_MS_LOSSY
    } else {
        voice::PACKET_MS_CLEAN
    }
}

/// `signal` encoded and packetized as our sender would at `loss` (reported by the peer).
fn send(signal: &[f32], loss: f64) -> Vec<Sent> {
    let Ok(mut enc) = OpusEncoder::new(voice::codec::DEFAULT_BITRATE, true) else {
        return Vec::new();
    };
    let depth = red_depth(loss);
    // FEC planned for what RED's copies leave, as the engine plans it.
    let _ = enc.set_expected_loss(loss.powi(depth as i32 + 1) as f32);
    let packet_ms = packet_ms(loss);
    let packet = FRAME_SAMPLES * (packet_ms / voice::FRAME_MS) as usize;
    let mut history: Vec<(usize, Bytes)> = Vec::new();
    let mut sent = Vec::new();
    let mut seq = 0u16;
    for (index, frame) in signal.chunks_exact(packet).enumerate() {
        let Ok(Some(payload)) = enc.encode(frame) else {
            continue; // DTX
        };
        let copies: Vec<(u32, &[u8])> = history
            .iter()
            .filter(|(i, _)| index - i <= depth)
            .map(|(i, p)| (((index - i) * packet) as u32, &p[..]))
            .collect();
        let red = depth > 0;
        let wire = if red {
            voice::red::build(OPUS_PT, &copies, &payload)
        } else {
            payload.clone()
        };
        sent.push(Sent {
            // A frame leaves once all of it has been captured.
            at_ms: (index + 1) as f64 * packet_ms,
            seq,
            ts: (index * packet) as u32,
            payload: wire,
            red,
        });
        seq = seq.wrapping_add(1);
        history.push((index, payload));
    }
    sent
}

/// What one simulated call gave.
struct Played {
    audio: Vec<f32>,
    stats: JitterStats,
    /// Mean jitter-buffer target over the call once playout started (ms).
    target_ms: f64,
}

/// When each packet of `sent` arrives (seeded), `None` if lost: a uniform 0–20 ms delay,
/// and with `stalls`, what falls in a stall held until its end.
fn arrivals(sent: &[Sent], loss: f64, stalls: bool, seed: u64) -> Vec<Option<f64>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let end = sent.last().map_or(0.0, |p| p.at_ms) + 1000.0;
    let mut windows = Vec::new();
    let mut t = 0.0;
    while stalls && t < end {
        // Exponential gaps: stalls come at random, not on a beat.
        t += -STALL_EVERY_MS * (1.0 - rng.random::<f64>()).ln();
        let length = rng.random_range(STALL_MS.0..STALL_MS.1);
        windows.push((t, t + length));
        t += length;
    }
    sent.iter()
        .map(|p| {
            let lost = rng.random_bool(loss);
            let mut at = p.at_ms + rng.random_range(0.0..20.0);
            if let Some(&(_, resume)) = windows.iter().find(|(s, e)| (*s..*e).contains(&at)) {
                at = resume;
            }
            (!lost).then_some(at)
        })
        .collect()
}

/// Plays `sent`, arriving at `arrivals`, into a fresh receiver ticked every 20 ms.
fn play(sent: &[Sent], arrivals: &[Option<f64>], phase_ms: f64) -> Option<Played> {
    let mut order: Vec<(f64, &Sent)> = sent
        .iter()
        .zip(arrivals)
        .filter_map(|(p, at)| at.map(|at| (at, p)))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let start = Instant::now();
    let at = |ms: f64| start + Duration::from_secs_f64(ms / 1000.0);
    let mut rx = PeerReceiver::new().ok()?;
    let end_ms = sent.last()?.at_ms + 1000.0;
    let mut audio = Vec::new();
    let (mut targets, mut i, mut tick) = (Vec::new(), 0, phase_ms);
    while tick < end_ms {
        while let Some(&(arrival, p)) = order.get(i).filter(|(t, _)| *t <= tick) {
            if p.red {
                rx.push_red(at(arrival), p.seq, p.ts, &p.payload, OPUS_PT);
            } else {
                rx.push_rtp(at(arrival), p.seq, p.ts, p.payload.clone());
            }
            i += 1;
        }
        audio.extend_from_slice(rx.next_frame(at(tick)));
        let stats = rx.stats();
        if stats.played > 0 {
            targets.push(stats.target_ms);
        }
        tick += voice::FRAME_MS;
    }
    Some(Played {
        audio,
        stats: rx.stats(),
        target_ms: targets.iter().sum::<f64>() / targets.len().max(1) as f64,
    })
}

/// Median receive delay (ms) over the speech's 100 ms windows found in `audio`: when each
/// was played, less when its frame was sent, for the signal `signal` that was sent.
fn receive_delay_ms(signal: &[f32], audio: &[f32], phase_ms: f64, packet_ms: f64) -> Option<f64> {
    let sent = to_analysis_rate(signal, RATE).ok()?;
    let heard = to_analysis_rate(audio, RATE).ok()?;
    let per_ms = f64::from(ANALYSIS_RATE) / 1000.0;
    let mut delays: Vec<f64> = match_segments(&sent, &heard, ANALYSIS_RATE)
        .into_iter()
        .filter(|m| m.score > 0.5)
        .filter_map(|m| {
            // Played at the tick phase plus its place in the output; captured at its place
            // in the input; its packet left `packet_ms` after the packet's first sample,
            // which plays as far into the packet as this one.
            let played = phase_ms + m.received? as f64 / per_ms;
            let captured = m.sent as f64 / per_ms;
            Some(played - captured - packet_ms)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    delays.get(delays.len() / 2).copied()
}

/// Seeds per row (`VOICE_BENCH_SEEDS`, default 8).
fn seeds() -> u64 {
    crate::count_from_env("VOICE_BENCH_SEEDS", 8) as u64
}

pub fn rows(speech: &[f32], dir: &Path) {
    let seeds = seeds();
    let signal = with_lead_in(speech);
    println!();
    println!(
        "receive path in simulated time ({seeds} seeds per row; each packet lost at random \
         and delayed 0–20 ms, with or without stalls; RED as our sender sends it; PESQ-WB \
         median (range), mean; the other columns averaged per call):"
    );
    println!(
        "| loss | stalls | PESQ-WB | mean | receive delay | from arrival | target | concealed | late | skipped |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for loss in [0.0, 0.05, 0.10, 0.20] {
        let sent = send(&signal, loss);
        for stalls in [false, true] {
            let mut scores = Vec::new();
            let (mut delay, mut target, mut concealed, mut late, mut skipped) =
                (Vec::new(), 0.0, 0.0, 0.0, 0.0);
            let mut from_arrival = 0.0;
            for seed in 1..=seeds {
                let phase = tick_phase_ms(seed);
                let Some(played) = play(&sent, &arrivals(&sent, loss, stalls, seed), phase) else {
                    continue;
                };
                let tag = format!("jitter-{}-{stalls}-{seed}", (loss * 100.0) as u32);
                let score = crate::pesq(speech, &played.audio, dir, &tag);
                let d = receive_delay_ms(&signal, &played.audio, phase, packet_ms(loss));
                let s = played.stats;
                if std::env::var_os("VOICE_BENCH_VERBOSE").is_some() {
                    println!(
                        "  {tag}: PESQ {} delay {} target {:.1} ms {s:?}",
                        crate::pesq_fmt(score),
                        crate::fmt(d, " ms"),
                        played.target_ms
                    );
                }
                scores.extend(score);
                delay.extend(d);
                target += played.target_ms;
                concealed += s.concealed as f64 / s.played.max(1) as f64;
                late += s.late as f64;
                skipped += s.skipped as f64;
                from_arrival += s.delay_ms;
            }
            let n = seeds as f64;
            let mean = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
            let mean_delay = delay.iter().sum::<f64>() / delay.len().max(1) as f64;
            println!(
                "| {:.0}% | {} | {} | {mean:.2} | {mean_delay:.1} ms | {:.1} ms | {:.1} ms | {:.1}% | {:.1} | {:.1} |",
                loss * 100.0,
                if stalls { "yes" } else { "no" },
                crate::spread(scores),
                from_arrival / n,
                target / n,
                concealed / n * 100.0,
                late / n,
                skipped / n,
            );
        }
    }
}
