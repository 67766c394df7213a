//! A per-peer adaptive jitter buffer for Opus packets: 20 ms ones as we and libwebrtc send
//! them, and any other duration a sender chooses (2.5–120 ms, read from each packet's
//! table-of-contents byte), so a stream of 10 ms or 60 ms packets plays whole.
//!
//! Packets are keyed by RTP timestamp and played on a schedule: a packet stamped `ts` is due
//! at `ts + fastest transit seen + target delay`. The target follows the 98th percentile of
//! how much later than the fastest packet the others arrive (over the last few seconds): it
//! grows at once when the network gets jittery (and when a packet
//! arrives too late, by that packet's lateness) and creeps back when it calms. The buffer
//! reaches a new target one frame at a time, by playing a concealment frame without advancing
//! (to grow) or skipping a frame (to shrink). When the buffer runs dry in the middle of speech
//! (the path stalled: a busy sender or receiver, a Wi-Fi link), the playhead is held too, for
//! up to a frame beyond the target, so what arrives late in a burst still plays. Packets that
//! come after their slot are dropped and counted as late. A slot with no packet is filled, in this order, by a redundant (RED,
//! RFC 2198) copy of its frame carried by a later packet; by DTX silence when the sequence
//! numbers show nothing was lost; by the next packet's in-band FEC when that has arrived; or
//! by concealment.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

/// RTP clock ticks per millisecond for Opus.
const TICKS_PER_MS: f64 = 48.0;
/// One frame in RTP ticks: what a packet holds until the stream says otherwise (20 ms, what
/// libwebrtc and our engine send on a clean network). The buffer follows the stream's packet
/// length, not the engine's frame: a pop plays one packet, however long.
const FRAME_TICKS: u64 = 960;
/// [`FRAME_TICKS`] in ms.
const FRAME_MS: f64 = 20.0;
/// The shortest and longest audio an Opus packet can hold (2.5 and 120 ms), in RTP ticks.
const PACKET_TICKS: (u64, u64) = (120, 5760);
/// Transit samples kept for the percentile: 5 s of the stream's packets (250 of 20 ms, 500
/// of 10 ms) ...
const TRANSIT_WINDOW_MS: f64 = 5_000.0;
/// ... and never more than this many (5 s of 5 ms packets).
const MAX_TRANSITS: usize = 1_000;
/// Packets the recent loss fraction is taken over: 5 s of 20 ms packets.
const WINDOW: usize = 250;
/// Most packets held: 10 s of audio, far beyond any useful delay.
const MAX_PACKETS: usize = 500;
/// The share of packets the target delay is sized to catch; rarer spikes are handled by the
/// peak response to late packets.
const PERCENTILE: f64 = 0.98;
/// Never aim below this: covers scheduling noise of the playout clock on a busy machine.
const MIN_TARGET_MS: f64 = 10.0;
/// Never aim above this: beyond it a conversation breaks down anyway.
const MAX_TARGET_MS: f64 = 400.0;
/// When the network loses packets, keep one more frame so the next packet's FEC is there in
/// time to rebuild the lost one.
const FEC_HEADROOM_MS: f64 = 20.0;
/// The target shrinks by at most this much per 20 ms played (0.5 ms per 20 ms: ~1 s to
/// give back 25 ms), so it does not flap with every quiet second.
const SHRINK_PER_FRAME_MS: f64 = 0.5;
/// How far (in ms) beyond a frame's length less this the playhead may fall behind its ideal
/// position (more delay than the target) before we skip a frame. A skip moves it a frame
/// forward (20 ms: skips from 17 ms behind), so the threshold must stay above a frame less
/// `HOLD_THRESHOLD_MS` or skips and holds would alternate; 2 ms above that keeps the average
/// excess delay near 5 ms without flapping on scheduling noise.
const SKIP_MARGIN_MS: f64 = 3.0;
/// Past this much excess delay a frame is skipped even in the middle of speech; below it we
/// wait for a quiet frame, since dropping 20 ms of a word is what listeners hear as a click.
const FORCE_SKIP_MS: f64 = 60.0;
/// Opus packets up to this size per 20 ms carry silence or background noise (speech runs
/// 60–120 bytes a frame at 32 kbps, twice that at 64), so skipping one is inaudible.
const QUIET_PACKET_BYTES: u64 = 30;
/// How far the playhead may run ahead of its ideal position (less delay than the target)
/// before we hold it for a frame. Small: running ahead means packets arrive after their
/// slot; a hold moves the playhead back 20 ms, well inside the skip threshold.
const HOLD_THRESHOLD_MS: f64 = 5.0;
/// Past this much missing delay the playhead is held even in the middle of speech; below
/// it the hold waits for a quiet frame, like a skip: a hold in a word plays 20 ms of
/// concealment inside it and shifts the rest of the word, which costs more than the few
/// packets that may meanwhile come after their slot.
const FORCE_HOLD_MS: f64 = 25.0;
/// If the playhead is this far off (a long stall, a sender restart), jump instead of
/// stretching frame by frame.
const RESYNC_MS: f64 = 500.0;
/// When the buffer runs dry during speech, the playhead is held (a concealment frame without
/// moving on) while it is less than this far behind its ideal position: one frame of waiting
/// beyond the target for packets that are late rather than lost. Waiting longer saves more
/// of a long stall but leaves more delay to give back (simulated time, `VOICE_BENCH_ONLY=
/// jitter`: unbounded waiting, up to 200 ms, gave +0.2 PESQ at 20 % loss for 8 ms more delay).
const UNDERRUN_HOLD_MS: f64 = 20.0;
/// After this long (ms) without any packet, stop concealing and play silence.
const CONCEAL_LIMIT_MS: f64 = 200.0;

/// What the decoder should do for the next 20 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this packet.
    Frame(Bytes),
    /// The packet is lost but the next one has arrived: decode its FEC data.
    Fec(Bytes),
    /// Lost, no FEC: let the decoder conceal.
    Conceal,
    /// Nothing to play (not started, DTX, or the sender went quiet): silence.
    Silence,
}

/// Counters and current figures for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets accepted.
    pub received: u64,
    /// Packets never received, judged by sequence-number gaps.
    pub lost: u64,
    /// Packets that arrived after their slot had been played.
    pub late: u64,
    /// Packets with no payload (a sender's bandwidth probes, RFC 3550 padding): they take
    /// sequence numbers, so they count as received for the loss, but carry no audio.
    pub padding: u64,
    /// Frames played (all kinds).
    pub played: u64,
    /// Frames rebuilt from FEC.
    pub fec: u64,
    /// Lost packets whose frame was played from a redundant (RED) copy in a later packet.
    pub red: u64,
    /// Frames concealed (including stretch frames).
    pub concealed: u64,
    /// Frames skipped to shrink the delay.
    pub skipped: u64,
    /// Frames concealed with the playhead held because the buffer ran dry during speech:
    /// waiting for late packets rather than dropping them (included in `concealed`).
    pub held: u64,
    /// Current target delay (ms).
    pub target_ms: f64,
    /// Mean time from a packet's arrival to the start of its frame's playout (ms), over the
    /// frames played from a packet or a RED copy (a copy counts from its carrier's arrival):
    /// what WebRTC's `jitterBufferDelay / jitterBufferEmittedCount` reports.
    pub delay_ms: f64,
    /// Interarrival jitter (RFC 3550 estimator, ms).
    pub jitter_ms: f64,
    /// Audio in the last packet played (ms): the sender's packet length.
    pub packet_ms: f64,
    /// Loss fraction over the recent window (lost / expected).
    pub recent_loss: f64,
}

/// Extends a wrapping counter to 64 bits, tolerating reordering within half its range.
#[derive(Debug, Default)]
pub(crate) struct Unwrapper {
    last: Option<u64>,
}

impl Unwrapper {
    pub(crate) fn unwrap(&mut self, value: u64, bits: u32) -> u64 {
        let range = 1u64 << bits;
        let Some(last) = self.last else {
            // Start well above zero so reordered packets before the first stay positive.
            let v = value + range;
            self.last = Some(v);
            return v;
        };
        let base = last & !(range - 1);
        let candidates = [base.wrapping_sub(range), base, base + range].map(|b| b + value);
        let v = candidates
            .into_iter()
            .filter(|&c| c >= range)
            .min_by_key(|&c| c.abs_diff(last))
            .unwrap_or(value + range);
        if v > last {
            self.last = Some(v);
        }
        v
    }
}

struct Entry {
    seq: u64,
    payload: Bytes,
    /// How much audio it holds (RTP ticks).
    duration: u64,
    /// When it arrived (ms since the epoch); for a RED copy, when its carrier did.
    arrived_ms: f64,
    /// A copy carried as redundancy by a later packet (RED), not the packet itself: the
    /// packet, if it turns up, replaces it.
    redundant: bool,
}

impl Entry {
    /// Whether it carries silence or background noise (see [`QUIET_PACKET_BYTES`]).
    fn is_quiet(&self) -> bool {
        self.payload.len() as u64 * FRAME_TICKS <= QUIET_PACKET_BYTES * self.duration
    }
}

/// The jitter buffer of one remote stream.
pub struct JitterBuffer {
    epoch: Instant,
    packets: BTreeMap<u64, Entry>,
    ts: Unwrapper,
    seq: Unwrapper,
    /// Timestamp of the frame to play next; `None` until playout starts.
    next_ts: Option<u64>,
    last_seq: Option<u64>,
    /// Recent (transit ms) samples: arrival time minus media time.
    transits: VecDeque<f64>,
    /// Recent (received, expected) pairs per packet for the loss fraction.
    seq_window: VecDeque<u64>,
    highest_seq: Option<u64>,
    first_seq: Option<u64>,
    target_ms: f64,
    last_transit: Option<f64>,
    frames_without_packet: u32,
    /// Whether the last packet played carried speech (more than [`QUIET_PACKET_BYTES`], and
    /// not alone after a pause): a buffer that runs dry after one is waiting for late
    /// packets, not for the end of a pause.
    speech_playing: bool,
    /// Timestamp of the last packet played.
    last_played_ts: Option<u64>,
    /// How far the playhead was behind its ideal position at the last pop (ms).
    drift_ms: f64,
    /// How much audio the stream's packets hold (RTP ticks): the last one played's, and so
    /// how long a frame concealed or rebuilt from FEC in its place lasts.
    frame_ticks: u64,
    /// How long what the last pop gave plays (RTP ticks).
    popped_ticks: u64,
    /// Sum of arrival-to-playout times (ms) and the frames they cover, for `delay_ms`.
    delay_sum_ms: f64,
    delay_frames: u64,
    /// Frames concealed since the last packet played: if the next packet continues the
    /// sequence, they covered a DTX pause, not a loss, and are not counted as concealed.
    pending_conceal: u64,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            packets: BTreeMap::new(),
            ts: Unwrapper::default(),
            seq: Unwrapper::default(),
            next_ts: None,
            last_seq: None,
            transits: VecDeque::with_capacity(MAX_TRANSITS + 1),
            seq_window: VecDeque::with_capacity(WINDOW + 1),
            highest_seq: None,
            first_seq: None,
            target_ms: MIN_TARGET_MS,
            last_transit: None,
            frames_without_packet: 0,
            speech_playing: false,
            last_played_ts: None,
            drift_ms: 0.0,
            frame_ticks: FRAME_TICKS,
            popped_ticks: FRAME_TICKS,
            delay_sum_ms: 0.0,
            delay_frames: 0,
            pending_conceal: 0,
            stats: JitterStats {
                target_ms: MIN_TARGET_MS,
                ..JitterStats::default()
            },
        }
    }

    fn ms_since_epoch(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.epoch).as_secs_f64() * 1000.0
    }

    /// How much audio `payload` holds (RTP ticks), from its Opus table of contents; one that
    /// does not parse (it will be concealed) counts as a frame of the stream.
    fn duration_of(&self, payload: &[u8]) -> u64 {
        opus::packet::get_nb_samples(payload, crate::SAMPLE_RATE)
            .ok()
            .map(|n| n as u64)
            .filter(|n| (PACKET_TICKS.0..=PACKET_TICKS.1).contains(n))
            .unwrap_or(self.frame_ticks)
    }

    /// Takes a packet that arrived at `now`.
    pub fn insert(&mut self, now: Instant, seq: u16, timestamp: u32, payload: Bytes) {
        let ts = self.ts.unwrap(u64::from(timestamp), 32);
        let seq = self.seq.unwrap(u64::from(seq), 16);
        if self.packets.values().any(|e| e.seq == seq && !e.redundant) {
            return; // duplicate (e.g. a retransmission that raced the original)
        }
        let transit = self.ms_since_epoch(now) - ts as f64 / TICKS_PER_MS;
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).abs();
            self.stats.jitter_ms += (d - self.stats.jitter_ms) / 16.0;
        }
        self.last_transit = Some(transit);
        self.transits.push_back(transit);
        let window = ((TRANSIT_WINDOW_MS / self.frame_ms()) as usize).clamp(1, MAX_TRANSITS);
        while self.transits.len() > window {
            self.transits.pop_front();
        }
        self.track_loss(seq);
        self.update_target();
        if self.next_ts.is_some_and(|next| ts < next) {
            // A spike rarer than the percentile: move towards covering it at once, by at most
            // one frame per late packet so a single freak packet cannot add 200 ms; the slow
            // shrink gives the delay back if spikes do not recur.
            let extra = transit - self.min_transit() + MIN_TARGET_MS * 0.5;
            self.target_ms = self
                .target_ms
                .max(extra.min(self.target_ms + self.frame_ms()))
                .min(MAX_TARGET_MS);
            self.stats.target_ms = self.target_ms;
            self.stats.late += 1;
            return;
        }
        self.stats.received += 1;
        let arrived_ms = self.ms_since_epoch(now);
        let duration = self.duration_of(&payload);
        self.packets.insert(
            ts,
            Entry {
                seq,
                duration,
                payload,
                arrived_ms,
                redundant: false,
            },
        );
        self.bound();
    }

    /// Takes a packet that carries no payload (padding only: libwebrtc probes the bandwidth
    /// with such packets on the audio stream when transport-wide feedback is negotiated). It
    /// holds a sequence number, so it counts towards the loss figures as received, and nothing
    /// else: its timestamp repeats the last audio packet's, whose slot it must not take.
    pub fn insert_padding(&mut self, seq: u16) {
        let seq = self.seq.unwrap(u64::from(seq), 16);
        self.stats.padding += 1;
        self.track_loss(seq);
    }

    /// Takes a redundant copy of an earlier frame (a RED block): `seq` and `timestamp` are
    /// those of the packet it repeats. It fills that frame's slot only if the packet itself
    /// has not arrived and the slot has not been played yet; it says nothing about timing or
    /// loss, since it rode in another packet, which arrived at `now`.
    pub fn insert_redundant(&mut self, now: Instant, seq: u16, timestamp: u32, payload: Bytes) {
        let ts = self.ts.unwrap(u64::from(timestamp), 32);
        let seq = self.seq.unwrap(u64::from(seq), 16);
        if self.next_ts.is_some_and(|next| ts < next) || self.packets.contains_key(&ts) {
            return;
        }
        let duration = self.duration_of(&payload);
        self.packets.insert(
            ts,
            Entry {
                seq,
                duration,
                payload,
                arrived_ms: self.ms_since_epoch(now),
                redundant: true,
            },
        );
        self.bound();
    }

    /// A broken or hostile sender (timestamps far ahead) must not grow the buffer without end.
    fn bound(&mut self) {
        while self.packets.len() > MAX_PACKETS {
            self.packets.pop_last();
        }
    }

    fn track_loss(&mut self, seq: u64) {
        self.first_seq = Some(self.first_seq.map_or(seq, |f| f.min(seq)));
        if self.highest_seq.is_none_or(|h| seq > h) {
            self.highest_seq = Some(seq);
        }
        self.seq_window.push_back(seq);
        if self.seq_window.len() > WINDOW {
            self.seq_window.pop_front();
        }
        let (lo, hi) = self
            .seq_window
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        let expected = (hi - lo + 1) as f64;
        self.stats.recent_loss = (1.0 - self.seq_window.len() as f64 / expected).max(0.0);
    }

    fn min_transit(&self) -> f64 {
        self.transits.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The delay the recent transit spread asks for.
    fn wanted_target(&self) -> f64 {
        let min = self.min_transit();
        let mut extra: Vec<f64> = self.transits.iter().map(|t| t - min).collect();
        extra.sort_by(f64::total_cmp);
        let p98 = extra
            .get((extra.len() as f64 * PERCENTILE) as usize)
            .or(extra.last())
            .copied()
            .unwrap_or(0.0);
        let fec = if self.stats.recent_loss > 0.01 {
            FEC_HEADROOM_MS
        } else {
            0.0
        };
        (p98 + fec + MIN_TARGET_MS * 0.5).clamp(MIN_TARGET_MS, MAX_TARGET_MS)
    }

    /// Grows the target at once when the network asks for more.
    fn update_target(&mut self) {
        self.target_ms = self.target_ms.max(self.wanted_target());
        self.stats.target_ms = self.target_ms;
    }

    /// Gives delay back slowly once the network has calmed.
    fn shrink_target(&mut self) {
        self.target_ms = self
            .wanted_target()
            .max(self.target_ms - SHRINK_PER_FRAME_MS * self.frame_ms() / FRAME_MS);
        self.stats.target_ms = self.target_ms;
    }

    /// The RTP timestamp that should be playing at `now` under the current target.
    fn ideal_ts(&self, now: Instant) -> f64 {
        (self.ms_since_epoch(now) - self.min_transit() - self.target_ms) * TICKS_PER_MS
    }

    /// Decides what to play from `now`: a packet's frame (as long as the packet holds), or
    /// a frame of the stream's length in its place (see [`Self::popped_samples`]).
    pub fn pop(&mut self, now: Instant) -> Playout {
        self.popped_ticks = self.frame_ticks;
        let Some(mut next) = self.next_ts else {
            // Not started: silence for one engine frame, so the start is decided again as
            // soon as the engine asks for more.
            self.popped_ticks = self.hold_ticks();
            let Some(&first) = self.packets.keys().next() else {
                return Playout::Silence;
            };
            if self.ideal_ts(now) < first as f64 {
                return Playout::Silence;
            }
            self.next_ts = Some(first);
            return self.play(first, now);
        };
        let drift_ms = (self.ideal_ts(now) - next as f64) / TICKS_PER_MS;
        self.drift_ms = drift_ms;
        if drift_ms.abs() > RESYNC_MS {
            // Jump to the first packet at or after the ideal position.
            let ideal = self.ideal_ts(now).max(0.0) as u64;
            next = self
                .packets
                .range(ideal..)
                .next()
                .map(|(&ts, _)| ts)
                .unwrap_or(
                    next + (ideal.saturating_sub(next) / self.frame_ticks) * self.frame_ticks,
                );
            self.discard_before(next);
        } else if drift_ms > self.frame_ms() - SKIP_MARGIN_MS
            && (drift_ms > FORCE_SKIP_MS || self.quiet(next))
        {
            // Too much delay: skip one frame, a quiet one unless the excess has grown large.
            let skipped = self.packets.remove(&next);
            self.stats.skipped += 1;
            next += skipped.map_or(self.frame_ticks, |e| e.duration);
        } else if drift_ms < -HOLD_THRESHOLD_MS && (drift_ms < -FORCE_HOLD_MS || self.quiet(next)) {
            // Too little delay: hold the playhead for one engine frame, a quiet one unless
            // the deficit has grown large. One engine frame, not one packet: holding 20 ms
            // for a 5 ms deficit would leave 15 ms of excess delay that, in speech, nothing
            // takes back (calls with 20 ms packets into the 10 ms engine sat 10 ms later
            // than with the 20 ms engine until holds were this fine).
            self.popped_ticks = self.hold_ticks();
            self.stats.played += 1;
            return if self.frames_without_packet == 0 {
                self.stats.concealed += 1;
                self.pending_conceal += 1;
                Playout::Conceal
            } else {
                Playout::Silence
            };
        }
        self.play(next, now)
    }

    /// How long what the last [`Self::pop`] gave plays, in samples at 48 kHz: a packet's own
    /// length, or the stream's frame length for concealment, FEC and silence.
    pub fn popped_samples(&self) -> usize {
        self.popped_ticks as usize
    }

    /// The stream's frame length in ms.
    fn frame_ms(&self) -> f64 {
        self.frame_ticks as f64 / TICKS_PER_MS
    }

    /// How long a hold (or the silence before playout starts) lasts: the engine's frame, the
    /// finest step its playout takes, or the stream's packet if that is shorter.
    fn hold_ticks(&self) -> u64 {
        self.frame_ticks.min(crate::FRAME_SAMPLES as u64)
    }

    /// Whether the buffer has gone [`CONCEAL_LIMIT_MS`] without a packet.
    fn conceal_exhausted(&self) -> bool {
        f64::from(self.frames_without_packet) * self.frame_ms() >= CONCEAL_LIMIT_MS
    }

    /// Whether the frame at `ts` is near silence or part of a DTX pause, so skipping it to
    /// shed delay is inaudible. A frame missing in the middle of speech is not: it is lost or
    /// late, and skipping it would throw away its RED copy or FEC, or the late packet itself.
    fn quiet(&self, ts: u64) -> bool {
        match (self.packets.get(&ts), self.packets.values().next()) {
            (Some(e), _) => e.is_quiet(),
            // The sender's sequence goes on from the last packet played: a DTX pause.
            (None, Some(following)) => self.last_seq.is_some_and(|l| following.seq == l + 1),
            (None, None) => !self.speech_playing,
        }
    }

    fn discard_before(&mut self, ts: u64) {
        self.packets = self.packets.split_off(&ts);
    }

    fn play(&mut self, next: u64, now: Instant) -> Playout {
        self.shrink_target();
        self.stats.played += 1;
        // The first packet inside this frame's slot (a sender's timestamps need not follow
        // its packets' lengths exactly).
        let slot = self
            .packets
            .range(next..next + self.frame_ticks)
            .next()
            .map(|(&ts, _)| ts);
        let result = if let Some(ts) = slot {
            let entry = self.packets.remove(&ts);
            self.frames_without_packet = 0;
            match entry {
                Some(e) => {
                    self.next_ts = Some(ts + e.duration);
                    self.frame_ticks = e.duration;
                    self.popped_ticks = e.duration;
                    self.stats.packet_ms = e.duration as f64 / TICKS_PER_MS;
                    if self.last_seq.is_some_and(|last| e.seq == last + 1) {
                        self.stats.concealed -= self.pending_conceal.min(self.stats.concealed);
                    }
                    self.pending_conceal = 0;
                    self.last_seq = Some(e.seq);
                    // After a gap in the timestamps (DTX), a large packet is Opus's
                    // comfort-noise update (one every 400 ms), not speech going on: nothing
                    // follows it, and waiting for something would only churn (a hold, then
                    // a skip, and a concealment counted). Up to 3 frames covers a lost packet
                    // and 40/60 ms frames.
                    let goes_on = self
                        .last_played_ts
                        .is_some_and(|last| last < ts && ts - last <= 3 * FRAME_TICKS);
                    self.speech_playing = goes_on && !e.is_quiet();
                    self.last_played_ts = Some(ts);
                    if e.redundant {
                        self.stats.red += 1;
                    }
                    self.delay_sum_ms += self.ms_since_epoch(now) - e.arrived_ms;
                    self.delay_frames += 1;
                    Playout::Frame(e.payload)
                }
                None => {
                    self.next_ts = Some(ts + self.frame_ticks);
                    Playout::Conceal
                }
            }
        } else if self.packets.is_empty()
            && self.speech_playing
            && self.drift_ms < UNDERRUN_HOLD_MS
            && !self.conceal_exhausted()
        {
            // Dry in the middle of speech: what comes next is more likely late than lost.
            // Conceal without moving on, so it plays if it comes within the next frame.
            self.frames_without_packet += 1;
            self.stats.concealed += 1;
            self.stats.held += 1;
            Playout::Conceal
        } else {
            self.next_ts = Some(next + self.frame_ticks);
            self.frames_without_packet += 1;
            let following = self.packets.iter().next().map(|(&ts, e)| (ts, e));
            let dtx = match (following, self.last_seq) {
                (Some((_, e)), Some(last)) => e.seq == last + 1,
                (None, _) => {
                    f64::from(self.frames_without_packet) * self.frame_ms() > CONCEAL_LIMIT_MS
                }
                _ => false,
            };
            if dtx {
                Playout::Silence
            } else if let Some((_, e)) = following.filter(|(ts, _)| *ts == next + self.frame_ticks)
            {
                self.stats.fec += 1;
                Playout::Fec(e.payload.clone())
            } else {
                self.stats.concealed += 1;
                self.pending_conceal += 1;
                Playout::Conceal
            }
        };
        self.discard_before(self.next_ts.unwrap_or(next));
        result
    }

    /// Current delay between a packet's arrival and its playout slot, in ms (the target).
    pub fn target_delay_ms(&self) -> f64 {
        self.target_ms
    }

    /// Counters and figures so far.
    pub fn stats(&self) -> JitterStats {
        let mut stats = self.stats;
        stats.delay_ms = self.delay_sum_ms / self.delay_frames.max(1) as f64;
        if let (Some(first), Some(high)) = (self.first_seq, self.highest_seq) {
            stats.lost =
                (high - first + 1).saturating_sub(stats.received + stats.late + stats.padding);
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A packet as the network delivered it: arrival (ms from start), seq, frame index.
    struct Arrival {
        at_ms: f64,
        seq: u16,
        frame: u32,
        /// Speech-sized (100 bytes) rather than silence-sized (4).
        loud: bool,
    }

    /// Frames sent every 20 ms from `first_frame` with `delay(frame)` ms of network delay;
    /// `None` means lost.
    fn stream(
        frames: std::ops::Range<u32>,
        mut delay: impl FnMut(u32) -> Option<f64>,
    ) -> Vec<Arrival> {
        let mut v: Vec<Arrival> = frames
            .filter_map(|f| {
                delay(f).map(|d| Arrival {
                    at_ms: f64::from(f) * 20.0 + d,
                    seq: (f as u16).wrapping_add(65_000),
                    frame: f,
                    loud: false,
                })
            })
            .collect();
        v.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        v
    }

    fn payload(frame: u32, loud: bool) -> Bytes {
        // A table-of-contents byte for one 20 ms frame (CELT, full band, mono), the frame's
        // number after it.
        let mut p = vec![0xF8];
        p.extend_from_slice(&frame.to_be_bytes());
        if loud {
            p.resize(100, 0x55);
        }
        Bytes::from(p)
    }

    /// Runs the buffer, popping every 20 ms (phase 7 ms), returning what was played.
    fn simulate(jb: &mut JitterBuffer, arrivals: &[Arrival], until_ms: f64) -> Vec<Playout> {
        simulate_red(jb, arrivals, until_ms, 0)
    }

    /// [`simulate`] with every packet also carrying RED copies of the `red` frames before it.
    fn simulate_red(
        jb: &mut JitterBuffer,
        arrivals: &[Arrival],
        until_ms: f64,
        red: u32,
    ) -> Vec<Playout> {
        let start = Instant::now();
        let at = |ms: f64| start + Duration::from_secs_f64(ms / 1000.0);
        let mut out = Vec::new();
        let mut i = 0;
        let mut tick = 7.0;
        while tick < until_ms {
            while i < arrivals.len() && arrivals[i].at_ms <= tick {
                let a = &arrivals[i];
                // 4_000_000_000 start makes the 32-bit timestamp wrap during the test.
                let ts = 4_294_000_000u32.wrapping_add(a.frame * 960);
                jb.insert(at(a.at_ms), a.seq, ts, payload(a.frame, a.loud));
                for back in (1..=red).filter(|&b| b <= a.frame) {
                    jb.insert_redundant(
                        at(a.at_ms),
                        a.seq.wrapping_sub(back as u16),
                        ts.wrapping_sub(back * 960),
                        payload(a.frame - back, a.loud),
                    );
                }
                i += 1;
            }
            out.push(jb.pop(at(tick)));
            tick += 20.0;
        }
        out
    }

    fn frames_played(out: &[Playout]) -> Vec<u32> {
        out.iter()
            .filter_map(|p| match p {
                Playout::Frame(b) => Some(u32::from_be_bytes([b[1], b[2], b[3], b[4]])),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn in_order_stream_plays_every_frame_with_minimum_delay() {
        let mut jb = JitterBuffer::new();
        let out = simulate(&mut jb, &stream(0..200, |_| Some(1.0)), 4_010.0);
        assert_eq!(frames_played(&out), (0..200).collect::<Vec<_>>());
        let s = jb.stats();
        assert_eq!((s.lost, s.late, s.concealed, s.skipped), (0, 0, 0, 0));
        assert!(s.target_ms <= MIN_TARGET_MS + 5.0, "target {}", s.target_ms);
    }

    #[test]
    fn the_receive_delay_runs_from_a_packets_arrival_to_its_playout() {
        // Every packet 1–15 ms late, pops every 20 ms at phase 7 ms: each frame's wait is its
        // pop's time less its packet's arrival; a frame played from a RED copy (frame 44,
        // lost, carried by 45, which comes 1 ms late, well before 44's slot) waits from its
        // carrier's arrival.
        let delay = |f: u32| 1.0 + f64::from(f * 7 % 15);
        let arrival = |f: u32| f64::from(f) * 20.0 + delay(f);
        for lost in [None, Some(44)] {
            let arrivals: Vec<Arrival> = stream(0..100, |f| Some(delay(f)))
                .into_iter()
                .filter(|a| Some(a.frame) != lost)
                .collect();
            let mut jb = JitterBuffer::new();
            // (The loss makes the buffer grow by a frame, so it plays on a little longer.)
            let out = simulate_red(&mut jb, &arrivals, 2_100.0, 1);
            let waits: Vec<f64> = out
                .iter()
                .enumerate()
                .filter_map(|(tick, p)| match p {
                    Playout::Frame(b) => {
                        let f = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
                        let came = if Some(f) == lost { f + 1 } else { f };
                        Some(7.0 + 20.0 * tick as f64 - arrival(came))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(waits.len(), 100, "every frame played (lost: {lost:?})");
            let expected = waits.iter().sum::<f64>() / waits.len() as f64;
            let s = jb.stats();
            assert_eq!(s.red, u64::from(lost.is_some()));
            assert!(
                (s.delay_ms - expected).abs() < 1e-6,
                "{} vs {expected} (lost: {lost:?})",
                s.delay_ms
            );
            // Never negative (nothing plays before it came), and within the target and the
            // pop's phase.
            assert!(waits.iter().all(|&w| w >= 0.0), "{waits:?}");
            assert!(expected < s.target_ms + 20.0, "{expected} ms");
        }
    }

    #[test]
    fn a_delay_increase_waits_for_a_pause_instead_of_breaking_a_word() {
        let mut jb = JitterBuffer::new();
        // Speech from frame 50 to 69, a pause after; frame 60 arrives 30 ms after its slot,
        // which raises the target by a frame's worth while the word goes on.
        let mut arrivals = stream(0..200, |f| Some(if f == 60 { 52.0 } else { 1.0 }));
        for a in &mut arrivals {
            a.loud = (50..70).contains(&a.frame);
        }
        arrivals.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        let out = simulate(&mut jb, &arrivals, 4_200.0);
        assert_eq!(jb.stats().late, 1, "frame 60 should come after its slot");
        let position = |frame: u32| {
            out.iter()
                .position(|p| matches!(p, Playout::Frame(b) if b[1..5] == frame.to_be_bytes()))
                .expect("frame played")
        };
        // Between frame 61 and the end of the word every slot plays a frame: no hold.
        let (word, pause) = (position(61), position(69));
        assert!(
            out[word..=pause]
                .iter()
                .all(|p| matches!(p, Playout::Frame(_))),
            "a hold broke the word: {:?}",
            &out[word..=pause]
        );
        // The hold comes in the pause: one slot more than frames between 69 and 80.
        assert_eq!(
            position(80) - pause,
            12,
            "no hold in the pause: {:?}",
            &out[pause..position(80)]
        );
    }

    #[test]
    fn a_stall_in_a_word_is_waited_for_and_the_delay_given_back_in_the_pause() {
        let mut jb = JitterBuffer::new();
        // A word from frame 80 to 139, quiet frames around it. The path stalls for 45 ms at
        // frame 100: frames 100 and 101 arrive together with 102.
        let mut arrivals = stream(0..300, |f| {
            Some(match f {
                100 => 46.0,
                101 => 26.0,
                102 => 6.0,
                _ => 1.0,
            })
        });
        for a in &mut arrivals {
            a.loud = (80..140).contains(&a.frame);
        }
        let out = simulate(&mut jb, &arrivals, 6_200.0);
        let s = jb.stats();
        let played = frames_played(&out);
        let word: Vec<u32> = played
            .iter()
            .copied()
            .filter(|f| (80..140).contains(f))
            .collect();
        assert_eq!(word, (80..140).collect::<Vec<_>>(), "{s:?}");
        assert_eq!(s.late, 0, "{s:?}");
        assert!(s.held >= 1, "{s:?}");
        // The frame's worth of delay the wait added goes in the quiet after the word.
        assert!(s.skipped >= 1, "{s:?}");
        let position = |frame: u32| played.iter().position(|&f| f == frame);
        assert!(position(139).is_some() && played.len() < 300, "{s:?}");
    }

    #[test]
    fn a_frame_lost_in_a_word_is_rebuilt_after_the_wait_not_skipped() {
        let mut jb = JitterBuffer::new();
        // Speech throughout, frame 100 lost: the playhead waits a frame for it, then finds
        // the next packet (and its FEC) instead. Being a frame behind by then must not make
        // the lost frame look like a pause to skip.
        let mut arrivals = stream(0..200, |f| (f != 100).then_some(1.0));
        for a in &mut arrivals {
            a.loud = true;
        }
        let out = simulate(&mut jb, &arrivals, 4_200.0);
        let s = jb.stats();
        assert_eq!((s.lost, s.held, s.fec), (1, 1, 1), "{s:?}");
        assert!(out.contains(&Playout::Fec(payload(101, true))), "{s:?}");
    }

    #[test]
    fn reordered_packets_play_in_order() {
        let mut jb = JitterBuffer::new();
        // Odd frames overtake even ones by arriving 15 ms earlier than their predecessor.
        let arrivals = stream(0..200, |f| Some(if f % 2 == 0 { 16.0 } else { 1.0 }));
        let out = simulate(&mut jb, &arrivals, 4_200.0);
        let played = frames_played(&out);
        assert!(
            played.windows(2).all(|w| w[0] < w[1]),
            "out of order: {played:?}"
        );
        assert!(played.len() >= 195, "played {}", played.len());
    }

    #[test]
    fn lost_packets_are_counted_and_rebuilt_from_fec_once_loss_is_seen() {
        let mut jb = JitterBuffer::new();
        let arrivals = stream(0..300, |f| (f % 25 != 10).then_some(1.0));
        let out = simulate(&mut jb, &arrivals, 6_100.0);
        let s = jb.stats();
        assert_eq!(s.lost, 12);
        assert!(s.fec >= 8, "fec {} concealed {}", s.fec, s.concealed);
        assert!(out.iter().any(|p| matches!(p, Playout::Fec(_))));
    }

    #[test]
    fn lost_packets_play_from_their_redundant_copy_before_fec() {
        let mut jb = JitterBuffer::new();
        // Every 7th packet lost, and one burst of two (frames 100 and 101).
        let lost = |f: u32| f % 7 == 3 || f == 100 || f == 101;
        let arrivals = stream(0..300, |f| (!lost(f)).then_some(1.0));
        let out = simulate_red(&mut jb, &arrivals, 6_100.0, 1);
        let played = frames_played(&out);
        let s = jb.stats();
        // Each single loss is played from the copy in the next packet, the frame itself.
        for f in (0..290).filter(|&f| f % 7 == 3 && f > 20) {
            assert!(played.contains(&f), "frame {f} not recovered: {s:?}");
        }
        // Of the burst only the second frame has a copy; the first, whose FEC was in the
        // second, is concealed.
        assert!(played.contains(&101) && !played.contains(&100));
        assert!(s.red >= 38, "red {} ({s:?})", s.red);
        assert!(s.concealed >= 1, "concealed {}", s.concealed);
        // 43 frames with f % 7 == 3, and frame 100; copies are not counted as received.
        assert_eq!((s.lost, s.received), (44, 256));
    }

    #[test]
    fn a_packet_replaces_its_redundant_copy_and_stale_copies_are_ignored() {
        let mut jb = JitterBuffer::new();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // Copies carry other bytes than the packets, to tell which one played.
        let copy = |frame: u32| payload(1000 + frame, false);
        jb.insert(at(0), 10, 9600, payload(10, false));
        // Frame 12 overtakes frame 11: its copy of 11 comes first, then 11 itself.
        jb.insert(at(41), 12, 9600 + 1920, payload(12, false));
        jb.insert_redundant(at(41), 11, 9600 + 960, copy(11));
        jb.insert(at(42), 11, 9600 + 960, payload(11, false));
        // A copy of frame 10, which is already held.
        jb.insert_redundant(at(41), 10, 9600, copy(10));
        let out: Vec<Playout> = [40, 60, 80, 100].map(|ms| jb.pop(at(ms))).into();
        assert_eq!(frames_played(&out), vec![10, 11, 12]);
        let s = jb.stats();
        assert_eq!((s.received, s.red, s.lost), (3, 0, 0));
        // A copy of a frame already played changes nothing.
        jb.insert_redundant(at(110), 12, 9600 + 1920, copy(12));
        assert!(!matches!(jb.pop(at(120)), Playout::Frame(_)));
    }

    #[test]
    fn delay_grows_with_jitter_and_shrinks_when_the_network_calms() {
        let mut jb = JitterBuffer::new();
        let mut rng = 12345u32;
        let mut jitter = move || {
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            f64::from((rng >> 16) % 40)
        };
        let arrivals = stream(0..750, |f| Some(if f < 250 { 1.0 + jitter() } else { 1.0 }));
        let start = Instant::now();
        let _ = start;
        let out = simulate(&mut jb, &arrivals[..], 5_000.0);
        let grown = jb.stats().target_ms;
        assert!(grown > 35.0, "target after jitter {grown}");
        let late_during_jitter = jb.stats().late;
        assert!(late_during_jitter < 15, "late {late_during_jitter}");
        drop(out);
        let mut jb2 = JitterBuffer::new();
        simulate(&mut jb2, &arrivals, 15_000.0);
        let calmed = jb2.stats().target_ms;
        assert!(calmed < 20.0, "target after calm {calmed}");
        assert!(jb2.stats().skipped > 0);
    }

    #[test]
    fn packet_after_its_slot_is_dropped_as_late() {
        let mut jb = JitterBuffer::new();
        let arrivals = stream(0..100, |f| Some(if f == 50 { 200.0 } else { 1.0 }));
        let out = simulate(&mut jb, &arrivals, 2_100.0);
        assert!(!frames_played(&out).contains(&50));
        assert_eq!(jb.stats().late, 1);
    }

    #[test]
    fn dtx_gap_plays_silence_and_counts_no_loss() {
        let mut jb = JitterBuffer::new();
        // Frames 0..50 then 100..150 with consecutive sequence numbers (DTX between).
        let mut arrivals = stream(0..50, |_| Some(1.0));
        arrivals.extend(stream(100..150, |_| Some(1.0)).into_iter().map(|mut a| {
            a.seq = a.seq.wrapping_sub(50);
            a
        }));
        let out = simulate(&mut jb, &arrivals, 3_010.0);
        assert_eq!(frames_played(&out).len(), 100);
        assert_eq!(jb.stats().lost, 0);
        assert_eq!(
            jb.stats().concealed,
            0,
            "a DTX pause counted as concealment"
        );
        assert!(out.iter().filter(|p| **p == Playout::Silence).count() > 30);
    }

    #[test]
    fn comfort_noise_updates_in_a_dtx_pause_are_not_waited_for() {
        let mut jb = JitterBuffer::new();
        // Speech in frames 0..40 and 100..150, trailing off in quiet packets (40..50) before
        // the encoder goes silent; in the pause, Opus's comfort-noise updates (one every
        // 400 ms, larger than a quiet packet) at 70 and 90; sequence numbers consecutive, as
        // DTX sends them.
        let frames: Vec<u32> = (0..50).chain([70, 90]).chain(100..150).collect();
        let mut arrivals: Vec<Arrival> = frames
            .iter()
            .enumerate()
            .map(|(i, &f)| Arrival {
                at_ms: f64::from(f) * 20.0 + 1.0,
                seq: (i as u16).wrapping_add(65_000),
                frame: f,
                loud: !(40..50).contains(&f),
            })
            .collect();
        arrivals.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        let out = simulate(&mut jb, &arrivals, 3_010.0);
        assert_eq!(frames_played(&out).len(), frames.len());
        let s = jb.stats();
        assert_eq!(
            (s.lost, s.held, s.concealed, s.skipped),
            (0, 0, 0, 0),
            "a comfort-noise update was taken for speech and waited after"
        );
    }

    #[test]
    fn unwrapper_follows_wraps_and_reordering() {
        let mut u = Unwrapper::default();
        let a = u.unwrap(65_535, 16);
        let b = u.unwrap(0, 16);
        let c = u.unwrap(65_534, 16);
        assert_eq!(b, a + 1);
        assert_eq!(c, a - 1);
    }
}
