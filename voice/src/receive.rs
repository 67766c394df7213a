//! The receive path: per-peer jitter buffer and Opus decoder, and the mixer across peers.

use std::time::Instant;

use bytes::Bytes;

use crate::codec::OpusDecoder;
use crate::dsp::level_dbfs;
use crate::jitter::{JitterBuffer, JitterStats, Playout};
use crate::{Result, FRAME_SAMPLES};

/// One remote peer's incoming audio: packets in, 20 ms frames out.
pub struct PeerReceiver {
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    frame: [f32; FRAME_SAMPLES],
    /// Linear playback volume for this peer, set by the user.
    pub volume: f32,
    level_db: f32,
    packets: u64,
    first_audio_at: Option<Instant>,
}

impl PeerReceiver {
    /// A receiver with an empty jitter buffer.
    pub fn new() -> Result<Self> {
        Ok(Self {
            jitter: JitterBuffer::new(),
            decoder: OpusDecoder::new()?,
            frame: [0.0; FRAME_SAMPLES],
            volume: 1.0,
            level_db: -100.0,
            packets: 0,
            first_audio_at: None,
        })
    }

    /// Takes an RTP packet as it arrived.
    pub fn push_rtp(&mut self, now: Instant, seq: u16, timestamp: u32, payload: Bytes) {
        self.packets += 1;
        self.jitter.insert(now, seq, timestamp, payload);
    }

    /// Decodes the next 20 ms (with volume applied) and returns it.
    pub fn next_frame(&mut self, now: Instant) -> &[f32] {
        match self.jitter.pop(now) {
            Playout::Frame(p) => {
                self.decoder.decode(&p, &mut self.frame);
                self.first_audio_at.get_or_insert(now);
            }
            Playout::Fec(p) => {
                self.decoder.decode_fec(&p, &mut self.frame);
            }
            Playout::Conceal => {
                self.decoder.conceal(&mut self.frame);
            }
            Playout::Silence => self.frame.fill(0.0),
        }
        self.level_db = level_dbfs(&self.frame);
        if self.volume != 1.0 {
            let v = self.volume;
            self.frame.iter_mut().for_each(|s| *s *= v);
        }
        &self.frame
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
    /// Starts a new 20 ms mix.
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
