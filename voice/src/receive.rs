//! The receive path: per-peer jitter buffer and Opus decoder, and the mixer across peers.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::OpusDecoder;
use crate::dsp::level_dbfs;
use crate::jitter::{JitterBuffer, JitterStats, Playout};
use crate::{Result, FRAME_SAMPLES, SAMPLE_RATE};

/// The longest audio one Opus packet holds: 120 ms at 48 kHz.
const MAX_PACKET_SAMPLES: usize = 5760;

/// One remote peer's incoming audio: packets in (of any length), 10 ms engine frames out.
pub struct PeerReceiver {
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    /// The frame handed out.
    frame: [f32; FRAME_SAMPLES],
    /// Audio decoded from the last packet (or concealed in its place), the first
    /// `decoded_len` samples of it, not yet handed out: a packet may hold more than a frame
    /// (20 ms ones do) or less.
    decoded: Box<[f32]>,
    decoded_len: usize,
    /// How much of `decoded` has been handed out.
    decoded_used: usize,
    /// Linear playback volume for this peer, set by the user.
    pub volume: f32,
    level_db: f32,
    packets: u64,
    /// RED payloads that did not parse (a broken or hostile sender).
    malformed: u64,
    /// Packets that came as RED.
    red_packets: u64,
    first_audio_at: Option<Instant>,
}

impl PeerReceiver {
    /// A receiver with an empty jitter buffer.
    pub fn new() -> Result<Self> {
        Ok(Self {
            jitter: JitterBuffer::new(),
            decoder: OpusDecoder::new()?,
            frame: [0.0; FRAME_SAMPLES],
            decoded: vec![0.0; MAX_PACKET_SAMPLES].into_boxed_slice(),
            decoded_len: 0,
            decoded_used: 0,
            volume: 1.0,
            level_db: -100.0,
            packets: 0,
            malformed: 0,
            red_packets: 0,
            first_audio_at: None,
        })
    }

    /// Takes an RTP packet of Opus as it arrived. One with no payload (padding only, as
    /// libwebrtc sends to probe the bandwidth) counts for the loss figures and nothing else.
    pub fn push_rtp(&mut self, now: Instant, seq: u16, timestamp: u32, payload: Bytes) {
        self.packets += 1;
        if payload.is_empty() {
            self.jitter.insert_padding(seq);
        } else {
            self.jitter.insert(now, seq, timestamp, payload);
        }
    }

    /// Takes an RTP packet of RED (RFC 2198) whose blocks are Opus at `opus_pt`: the primary
    /// is the packet's own frame; each redundant block is the packet sent that many packets
    /// earlier, held in case that one was lost. A malformed payload counts as a lost packet.
    pub fn push_red(
        &mut self,
        now: Instant,
        seq: u16,
        timestamp: u32,
        payload: &Bytes,
        opus_pt: u8,
    ) {
        if payload.is_empty() {
            // Padding only (a bandwidth probe), not a broken RED payload.
            return self.push_rtp(now, seq, timestamp, Bytes::new());
        }
        let Ok(red) = crate::red::parse(payload) else {
            self.malformed += 1;
            return;
        };
        self.red_packets += 1;
        if red.primary.payload_type == opus_pt && !red.primary.payload.is_empty() {
            self.push_rtp(now, seq, timestamp, red.primary.payload);
        }
        let blocks = red.redundant.len();
        for (i, block) in red.redundant.into_iter().enumerate() {
            if block.payload_type == opus_pt {
                // Oldest first: the block `blocks - i` packets back.
                let back = (blocks - i) as u16;
                self.jitter.insert_redundant(
                    now,
                    seq.wrapping_sub(back),
                    timestamp.wrapping_sub(block.ts_offset),
                    block.payload,
                );
            }
        }
    }

    /// RED packets that could not be read.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Packets that came as RED (and could be read).
    pub fn red_packets(&self) -> u64 {
        self.red_packets
    }

    /// Decodes the next frame (with volume applied) and returns it; `now` is when its first
    /// sample will play.
    pub fn next_frame(&mut self, now: Instant) -> &[f32] {
        let mut filled = 0;
        while filled < FRAME_SAMPLES {
            if self.decoded_used == self.decoded_len {
                let offset = Duration::from_secs_f64(filled as f64 / f64::from(SAMPLE_RATE));
                self.decode_next(now + offset);
            }
            let n = (self.decoded_len - self.decoded_used).min(FRAME_SAMPLES - filled);
            self.frame[filled..filled + n]
                .copy_from_slice(&self.decoded[self.decoded_used..self.decoded_used + n]);
            self.decoded_used += n;
            filled += n;
        }
        self.level_db = level_dbfs(&self.frame);
        if self.volume != 1.0 {
            let v = self.volume;
            self.frame.iter_mut().for_each(|s| *s *= v);
        }
        &self.frame
    }

    /// Asks the jitter buffer what plays from `at` and decodes it into `decoded`.
    fn decode_next(&mut self, at: Instant) {
        let playout = self.jitter.pop(at);
        let len = self.jitter.popped_samples().clamp(1, MAX_PACKET_SAMPLES);
        let out = &mut self.decoded[..len];
        let n = match playout {
            Playout::Frame(p) => {
                self.first_audio_at.get_or_insert(at);
                self.decoder.decode(&p, out)
            }
            Playout::Fec(p) => self.decoder.decode_fec(&p, out),
            Playout::Conceal => self.decoder.conceal(out),
            Playout::Silence => {
                out.fill(0.0);
                len
            }
        };
        self.decoded_len = n.clamp(1, len);
        self.decoded_used = 0;
    }

    /// Level of the last decoded frame (before volume), dBFS.
    pub fn level_db(&self) -> f32 {
        self.level_db
    }

    /// When the first packet was decoded for playout.
    pub fn first_audio_at(&self) -> Option<Instant> {
        self.first_audio_at
    }

    /// Jitter-buffer figures.
    pub fn stats(&self) -> JitterStats {
        self.jitter.stats()
    }
}

/// Adds frames together and keeps the sum out of hard clipping.
pub struct Mixer {
    sum: [f32; FRAME_SAMPLES],
}

/// Below this the mix is passed untouched; above, it is compressed smoothly towards 1.0.
const KNEE: f32 = 0.8;

impl Default for Mixer {
    fn default() -> Self {
        Self {
            sum: [0.0; FRAME_SAMPLES],
        }
    }
}

impl Mixer {
    /// Starts a new frame's mix.
    pub fn clear(&mut self) {
        self.sum.fill(0.0);
    }

    /// Adds one source.
    pub fn add(&mut self, frame: &[f32]) {
        for (s, x) in self.sum.iter_mut().zip(frame) {
            *s += x;
        }
    }

    /// The mixed frame, soft-limited.
    pub fn finish(&mut self) -> &[f32] {
        for s in self.sum.iter_mut() {
            let a = s.abs();
            if a > KNEE {
                let over = a - KNEE;
                let squeezed = KNEE + (1.0 - KNEE) * (over / (1.0 - KNEE)).tanh();
                *s = s.signum() * squeezed;
            }
        }
        &self.sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::synth_speech;
    use crate::codec::OpusEncoder;
    use std::time::Duration;

    /// 20 ms: the packets senders send on a clean network, two engine frames each.
    const PACKET: usize = 960;

    /// The 20 ms the engine takes from `rx` in two frames, the first at `at`.
    fn take_20_ms(rx: &mut PeerReceiver, at: Instant, out: &mut Vec<f32>) {
        for k in 0..PACKET / FRAME_SAMPLES {
            let offset = Duration::from_secs_f64((k * FRAME_SAMPLES) as f64 / 48_000.0);
            out.extend_from_slice(rx.next_frame(at + offset));
        }
    }

    /// Plays `packets` through a receiver in simulated time with every fifth packet lost
    /// (20 %, never two in a row), sent as RED (each carrying a copy of the one before) or
    /// as plain Opus; returns what it played and its counters.
    fn play_with_loss(packets: &[Bytes], red: bool) -> Result<(Vec<f32>, JitterStats)> {
        let mut rx = PeerReceiver::new()?;
        let start = Instant::now();
        let at = |ms: usize| start + Duration::from_millis(ms as u64);
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let (seq, ts) = (i as u16, (i * PACKET) as u32);
            if i % 5 != 2 {
                match i.checked_sub(1).filter(|_| red) {
                    Some(prev) => {
                        let payload = crate::red::build(111, &[(960, &packets[prev])], p);
                        rx.push_red(at(20 * i + 1), seq, ts, &payload, 111);
                    }
                    None => rx.push_rtp(at(20 * i + 1), seq, ts, p.clone()),
                }
            }
            take_20_ms(&mut rx, at(20 * i + 7), &mut out);
        }
        Ok((out, rx.stats()))
    }

    /// A stand-in Opus packet of `len` bytes for frame `i`: a table-of-contents byte for one
    /// 20 ms frame, then filler.
    fn opus_like(i: u64, len: usize) -> Bytes {
        let mut p = vec![(i % 251) as u8 + 1; len];
        p[0] = 0xF8;
        Bytes::from(p)
    }

    /// Signal-to-error ratio (dB) of `out` against `reference`, at the whole-frame delay
    /// (up to 100 ms) that matches best, over all but the first second.
    fn snr_db(reference: &[f32], out: &[f32]) -> f32 {
        let f = FRAME_SAMPLES;
        (0..=100 / crate::FRAME_MS as usize)
            .map(|shift| {
                let (mut sig, mut err) = (0.0f64, 0.0f64);
                for j in SAMPLE_RATE as usize..out.len() {
                    let r = f64::from(reference[j - shift * f]);
                    sig += r * r;
                    err += (f64::from(out[j]) - r).powi(2);
                }
                (10.0 * (sig / err.max(1e-12)).log10()) as f32
            })
            .fold(f32::MIN, f32::max)
    }

    #[test]
    fn red_copies_rebuild_lost_frames_exactly_where_fec_only_approximates() -> Result<()> {
        let speech = synth_speech(7, crate::SAMPLE_RATE, 6.0);
        let mut encoder = OpusEncoder::new(64_000, false)?;
        encoder.set_expected_loss(0.2)?;
        let packets: Vec<Bytes> = speech
            .chunks_exact(PACKET)
            .filter_map(|f| encoder.encode(f).ok().flatten())
            .collect();
        let mut clean_decoder = OpusDecoder::new()?;
        let mut clean = Vec::new();
        let mut frame = [0.0; PACKET];
        for p in &packets {
            clean_decoder.decode(p, &mut frame);
            clean.extend_from_slice(&frame);
        }
        let (with_red, red_stats) = play_with_loss(&packets, true)?;
        let (with_fec, fec_stats) = play_with_loss(&packets, false)?;
        let (red_snr, fec_snr) = (snr_db(&clean, &with_red), snr_db(&clean, &with_fec));
        eprintln!(
            "20 % loss: RED {red_snr:.1} dB ({red_stats:?}), FEC {fec_snr:.1} dB ({fec_stats:?})"
        );
        let lost = packets.len() as u64 / 5;
        assert!(
            red_stats.red >= lost - 3,
            "{} of {lost} rebuilt from RED",
            red_stats.red
        );
        assert!(
            fec_stats.fec >= lost - 3,
            "{} of {lost} rebuilt from FEC",
            fec_stats.fec
        );
        assert!(
            red_snr > fec_snr + 10.0 && red_snr > 30.0,
            "RED {red_snr} dB, FEC {fec_snr} dB against a loss-free decode"
        );
        Ok(())
    }

    /// Plays a stream of `ms`-long packets of `speech` and half a second of silence after it
    /// (sent as RED with a copy of the packet before when `red`, the packets in `lost` never
    /// arriving) into a receiver asked for a frame every 10 ms, as the engine asks, until the
    /// speech has played;
    /// returns what it played, a clean decode of every packet, and the jitter buffer's
    /// counters.
    fn play_packets_of(
        ms: usize,
        speech: &[f32],
        lost: &[usize],
        red: bool,
    ) -> Result<(Vec<f32>, Vec<f32>, JitterStats)> {
        let len = ms * SAMPLE_RATE as usize / 1000;
        let mut encoder = OpusEncoder::new(64_000, false)?;
        encoder.set_expected_loss(0.1)?;
        let mut signal = speech.to_vec();
        signal.resize(speech.len() + SAMPLE_RATE as usize / 2, 0.0);
        let packets: Vec<Bytes> = signal
            .chunks_exact(len)
            .filter_map(|f| encoder.encode(f).ok().flatten())
            .collect();
        let mut clean = Vec::new();
        let mut decoder = OpusDecoder::new()?;
        let mut buf = vec![0.0; len];
        for p in &packets {
            let n = decoder.decode(p, &mut buf);
            assert_eq!(n, len, "a {ms} ms packet decodes to {ms} ms");
            clean.extend_from_slice(&buf);
        }
        let mut rx = PeerReceiver::new()?;
        let start = Instant::now();
        let at = |us: usize| start + Duration::from_micros(us as u64);
        let mut out = Vec::new();
        let mut next = 0;
        // Until the speech has played (with 200 ms for the delay), not to the end of the
        // packets, where concealment would follow.
        for tick in 0..(speech.len() / FRAME_SAMPLES + 20) {
            let now_us = tick * 10_000 + 7_000;
            // A packet leaves once its audio is captured and arrives 1 ms later.
            while next < packets.len() && (next + 1) * ms * 1000 + 1000 <= now_us {
                let (seq, ts) = (next as u16, (next * len) as u32);
                let arrived = at((next + 1) * ms * 1000 + 1000);
                if !lost.contains(&next) {
                    match next.checked_sub(1).filter(|_| red) {
                        Some(prev) => {
                            let copy = [(len as u32, &packets[prev][..])];
                            let payload = crate::red::build(111, &copy, &packets[next]);
                            rx.push_red(arrived, seq, ts, &payload, 111);
                        }
                        None => rx.push_rtp(arrived, seq, ts, packets[next].clone()),
                    }
                }
                next += 1;
            }
            out.extend_from_slice(rx.next_frame(at(now_us)));
        }
        Ok((out, clean, rx.stats()))
    }

    /// Signal-to-error ratio (dB) of `out` against `reference` at the delay (in 2.5 ms steps,
    /// up to 200 ms) that matches best, over `reference`'s second second.
    fn snr_at_best_delay(reference: &[f32], out: &[f32]) -> f32 {
        snr_at_best_delay_in(reference, out, 1.0, 2.0)
    }

    /// [`snr_at_best_delay`] over `reference`'s seconds `from` to `to`.
    fn snr_at_best_delay_in(reference: &[f32], out: &[f32], from: f32, to: f32) -> f32 {
        let second = SAMPLE_RATE as f32;
        let (from, to) = ((from * second) as usize, (to * second) as usize);
        (0..=80)
            .map(|step| step * 120)
            .filter(|&d| to + d <= out.len())
            .map(|d| {
                let (mut sig, mut err) = (0.0f64, 0.0f64);
                for j in from..to {
                    let r = f64::from(reference[j]);
                    sig += r * r;
                    err += (f64::from(out[j + d]) - r).powi(2);
                }
                (10.0 * (sig / err.max(1e-12)).log10()) as f32
            })
            .fold(f32::MIN, f32::max)
    }

    #[test]
    fn packets_of_other_lengths_than_20_ms_play_whole() -> Result<()> {
        let speech = synth_speech(11, crate::SAMPLE_RATE, 3.0);
        for ms in [10, 20, 40, 60] {
            let (out, clean, stats) = play_packets_of(ms, &speech, &[], false)?;
            let snr = snr_at_best_delay(&clean, &out);
            assert!(snr > 30.0, "{ms} ms packets: {snr:.1} dB, {stats:?}");
            assert_eq!(
                (stats.lost, stats.late, stats.concealed, stats.skipped),
                (0, 0, 0, 0),
                "{ms} ms packets: {stats:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_stream_switching_between_20_and_10_ms_packets_plays_whole() -> Result<()> {
        // 20 ms packets, then 10 ms ones from 0.8 s to 1.6 s (a sender whose RED came on and
        // went off again), through a receiver asked for a frame every 10 ms.
        let speech = synth_speech(14, SAMPLE_RATE, 3.0);
        let rate = SAMPLE_RATE as usize;
        let mut encoder = OpusEncoder::new(64_000, false)?;
        let (mut packets, mut clean) = (Vec::new(), Vec::new());
        let mut decoder = OpusDecoder::new()?;
        let mut pos = 0;
        while pos + PACKET <= speech.len() {
            let short = (rate * 8 / 10..rate * 16 / 10).contains(&pos);
            let len = if short { FRAME_SAMPLES } else { PACKET };
            let payload = encoder
                .encode(&speech[pos..pos + len])?
                .expect("speech is sent");
            let mut buf = vec![0.0; len];
            assert_eq!(decoder.decode(&payload, &mut buf), len);
            clean.extend_from_slice(&buf);
            packets.push((pos, payload));
            pos += len;
        }
        let mut rx = PeerReceiver::new()?;
        let start = Instant::now();
        let at = |us: usize| start + Duration::from_micros(us as u64);
        let (mut out, mut next, mut lengths) = (Vec::new(), 0, Vec::new());
        for tick in 0..(speech.len() / FRAME_SAMPLES + 20) {
            let now_us = tick * 10_000 + 7_000;
            // A packet leaves once its audio is captured and arrives 1 ms later.
            while let Some((pos, payload)) = packets.get(next) {
                let len = opus::packet::get_nb_samples(payload, SAMPLE_RATE).unwrap_or(0);
                let arrives = (pos + len) * 1000 / 48 + 1000;
                if arrives > now_us {
                    break;
                }
                rx.push_rtp(at(arrives), next as u16, *pos as u32, payload.clone());
                next += 1;
            }
            out.extend_from_slice(rx.next_frame(at(now_us)));
            lengths.push(rx.stats().packet_ms);
        }
        let stats = rx.stats();
        assert!(
            lengths.contains(&10.0) && lengths.last() == Some(&20.0),
            "{stats:?}"
        );
        assert_eq!((stats.lost, stats.late), (0, 0), "{stats:?}");
        // Bit-exact before, between and after the switches. Shorter packets leave 10 ms
        // sooner after their first sample, so at the first switch the buffer sheds 10 ms,
        // in the pause the speech has there (0.79–0.85 s): not compared.
        for (from, to) in [(0.3, 0.79), (0.85, 1.55), (1.55, 1.7), (1.7, 2.5)] {
            let snr = snr_at_best_delay_in(&clean, &out, from, to);
            assert!(snr > 30.0, "{from}–{to} s: {snr:.1} dB, {stats:?}");
        }
        Ok(())
    }

    #[test]
    fn a_lost_10_ms_packet_is_rebuilt_from_its_red_copy_or_fec() -> Result<()> {
        let speech = synth_speech(12, crate::SAMPLE_RATE, 3.0);
        // Lost inside the second second, where the comparison runs: the next packet, which
        // carries its copy, has come when the lost one's slot is decided.
        let lost = [130, 150];
        let (out, clean, stats) = play_packets_of(10, &speech, &lost, true)?;
        let snr = snr_at_best_delay(&clean, &out);
        assert_eq!((stats.lost, stats.red), (2, 2), "{stats:?}");
        assert!(snr > 30.0, "RED: {snr:.1} dB, {stats:?}");
        let (out, clean, stats) = play_packets_of(10, &speech, &lost, false)?;
        assert_eq!((stats.lost, stats.fec), (2, 2), "{stats:?}");
        let snr = snr_at_best_delay(&clean, &out);
        assert!(snr > 15.0, "FEC: {snr:.1} dB, {stats:?}");
        Ok(())
    }

    #[test]
    fn loss_counts_packets_not_the_red_copies_that_ride_in_them() -> Result<()> {
        use rand::{Rng, SeedableRng};
        // Every packet RED with two copies, as a sender at heavy loss sends them; one in
        // ten lost at random.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut rx = PeerReceiver::new()?;
        let start = Instant::now();
        let frame = |i: u64| opus_like(i, 120);
        let (mut sent, mut lost) = (0u64, 0u64);
        for i in 2..1002u64 {
            let (seq, ts) = (i as u16, (i * PACKET as u64) as u32);
            let at = start + Duration::from_millis(20 * i);
            sent += 1;
            if rng.random_bool(0.1) {
                lost += 1;
            } else {
                let payload = crate::red::build(
                    111,
                    &[(1920, &frame(i - 2)), (960, &frame(i - 1))],
                    &frame(i),
                );
                rx.push_red(at, seq, ts, &payload, 111);
            }
            take_20_ms(&mut rx, at + Duration::from_millis(7), &mut Vec::new());
        }
        let stats = rx.stats();
        let real = lost as f64 / sent as f64;
        let counted = stats.lost as f64 / (stats.received + stats.late + stats.lost) as f64;
        assert!(
            (counted - real).abs() < 0.005,
            "counted {counted:.3} lost, really {real:.3}: {stats:?}"
        );
        assert!(
            (stats.recent_loss - real).abs() < 0.05,
            "reported {:.3} lost, really {real:.3}: {stats:?}",
            stats.recent_loss
        );
        Ok(())
    }

    /// Chromium probes the bandwidth with padding-only packets on the audio stream: they take
    /// sequence numbers and repeat the last audio packet's timestamp.
    #[test]
    fn padding_packets_count_as_received_and_never_replace_audio() -> Result<()> {
        for red in [false, true] {
            let mut rx = PeerReceiver::new()?;
            let start = Instant::now();
            let mut seq = 0u16;
            let mut played = Vec::new();
            for i in 0..200u64 {
                let at = start + Duration::from_millis(20 * i);
                let ts = (i * PACKET as u64) as u32;
                let frame = opus_like(i, 100);
                if red {
                    rx.push_red(at, seq, ts, &crate::red::build(111, &[], &frame), 111);
                } else {
                    rx.push_rtp(at, seq, ts, frame);
                }
                seq = seq.wrapping_add(1);
                // Bursts of probes after every fourth packet, in both forms.
                for _ in 0..(if i % 4 == 0 { 3 } else { 0 }) {
                    if red {
                        rx.push_red(at, seq, ts, &Bytes::new(), 111);
                    } else {
                        rx.push_rtp(at, seq, ts, Bytes::new());
                    }
                    seq = seq.wrapping_add(1);
                }
                if let Playout::Frame(p) = rx.jitter.pop(at + Duration::from_millis(7)) {
                    played.push(p.len());
                }
            }
            let stats = rx.stats();
            assert_eq!(
                (stats.lost, stats.padding),
                (0, 150),
                "RED {red}: {stats:?}"
            );
            assert!(stats.recent_loss < 0.001, "RED {red}: {stats:?}");
            assert_eq!(rx.malformed(), 0);
            assert!(
                played.len() > 190 && played.iter().all(|&n| n == 100),
                "RED {red}: played {played:?}"
            );
        }
        Ok(())
    }

    /// A hostile or broken sender: packets whose table of contents claims anything from
    /// 2.5 to 120 ms (or does not parse) with garbage after it, at 20 ms timestamps. The
    /// receiver must hand out a frame of finite audio every time without stalling, and a
    /// real stream that follows plays.
    #[test]
    fn packets_claiming_any_length_never_stall_the_receiver() -> Result<()> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut rx = PeerReceiver::new()?;
        let mut mixer = Mixer::default();
        let start = Instant::now();
        let at = |ms: usize| start + Duration::from_millis(ms as u64);
        for i in 0..250usize {
            let mut p = vec![0u8; rng.random_range(1..400)];
            rng.fill(&mut p[..]);
            rx.push_rtp(at(20 * i + 1), i as u16, (i * PACKET) as u32, p.into());
            for half in [7, 17] {
                let out = rx.next_frame(at(20 * i + half));
                assert_eq!(out.len(), FRAME_SAMPLES);
                assert!(out.iter().all(|s| s.is_finite()), "frame {i}");
                // Garbage can decode to anything loud (so can a real sender); the mix that
                // reaches the device stays within full scale.
                mixer.clear();
                mixer.add(out);
                assert!(mixer.finish().iter().all(|s| s.abs() <= 1.0), "frame {i}");
            }
        }
        // Then a real 20 ms stream from the same sender, sequence and timestamps going on.
        let speech = synth_speech(13, SAMPLE_RATE, 3.0);
        let mut encoder = OpusEncoder::new(64_000, false)?;
        let (mut out, mut clean) = (Vec::new(), Vec::new());
        let mut decoder = OpusDecoder::new()?;
        let mut frame = [0.0; PACKET];
        for (k, chunk) in speech.chunks_exact(PACKET).enumerate() {
            let i = 250 + k;
            let Some(p) = encoder.encode(chunk)? else {
                continue;
            };
            decoder.decode(&p, &mut frame);
            clean.extend_from_slice(&frame);
            rx.push_rtp(at(20 * i + 1), i as u16, (i * PACKET) as u32, p);
            take_20_ms(&mut rx, at(20 * i + 7), &mut out);
        }
        let snr = snr_at_best_delay(&clean, &out);
        assert!(
            snr > 30.0,
            "{snr:.1} dB after the garbage, {:?}",
            rx.stats()
        );
        Ok(())
    }

    #[test]
    fn a_malformed_red_packet_counts_as_lost() -> Result<()> {
        let mut rx = PeerReceiver::new()?;
        let now = Instant::now();
        rx.push_red(
            now,
            1,
            960,
            &Bytes::from_static(&[0xEF, 0x0F, 0x00, 0x63, 0x6F, 1]),
            111,
        );
        rx.push_red(now, 2, 1920, &Bytes::from_static(&[0x80, 0x01]), 111);
        assert_eq!(rx.malformed(), 2);
        assert_eq!(rx.stats().received, 0);
        Ok(())
    }

    #[test]
    fn mixer_sums_and_never_exceeds_full_scale() {
        let mut m = Mixer::default();
        m.clear();
        m.add(&[0.3; FRAME_SAMPLES]);
        m.add(&[0.2; FRAME_SAMPLES]);
        assert!((m.finish()[0] - 0.5).abs() < 1e-6);
        m.clear();
        m.add(&[0.9; FRAME_SAMPLES]);
        m.add(&[0.9; FRAME_SAMPLES]);
        let out = m.finish()[0];
        assert!(out > 0.9 && out <= 1.0, "{out}");
    }
}
