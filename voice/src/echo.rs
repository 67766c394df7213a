//! Acoustic echo cancellation on the send path: removes from the microphone what the engine
//! itself played (the far end's voices coming back through the speaker and the room).
//!
//! The canceller is SpeexDSP's (MDF, a partitioned frequency-domain adaptive filter, with its
//! residual-echo suppressor), through the `sohbet-speexdsp` wrapper, at the engine's 48 kHz
//! in 10 ms frames. It learns the echo path from pairs (microphone frame, far-end frame
//! played around the same time); what it cannot do is find the far end's audio in time on
//! its own: SpeexDSP has no delay estimator, so the pairing must put each echo *after* its
//! far-end frame, and within the filter's length.
//!
//! The pairing is by count: the far-end signal the engine hands to the playout device is
//! queued here ([`EchoCanceller::played`]), and every microphone sample takes the oldest
//! queued far-end sample. Since the device plays and the microphone records on the same
//! timeline, the n-th sample played and the n-th sample recorded are a constant time apart
//! (the output latency, the air, minus nothing: the microphone lags), and the filter learns
//! that constant delay along with the room. What breaks counting — an underrun (the device
//! played silence nobody queued), a capture overflow, a capture that started late or
//! stalled — shows as a change in what the speaker has played minus what the microphone has
//! recorded, which [`EchoCanceller::align`] watches every engine tick and undoes.

use std::collections::VecDeque;

use sohbet_speexdsp::{EchoCanceller as Speex, EchoConfig};

use crate::{Result, SAMPLE_RATE};

/// Samples per canceller frame: 10 ms at 48 kHz (SpeexDSP recommends 10–20 ms; 10 ms adapts
/// twice as often and matches RNNoise's frame, which comes next).
pub const AEC_FRAME: usize = 480;
/// Filter length: 250 ms. It must cover the whole delay between a sample being handed to the
/// output device and its echo being recorded (device buffers on both sides, typically
/// 20–100 ms with PipeWire or PulseAudio, plus the room's tail of 50–100 ms in an office).
/// Longer converges more slowly and costs more per frame.
const FILTER_MS: usize = 250;
/// Residual-echo suppression while only the far end talks (SpeexDSP's default).
const SUPPRESS_DB: i32 = -40;
/// ... and during double talk: mild, so the near voice is kept (SpeexDSP's default).
const SUPPRESS_ACTIVE_DB: i32 = -15;
/// More far-end audio queued than the device holds plus this (300 ms) means the microphone
/// stopped delivering: the pairing restarts from the present.
const MAX_AHEAD: usize = SAMPLE_RATE as usize * 3 / 10;
/// Engine ticks (5 ms each) over which the pairing's offset is watched: long enough to span
/// a few device periods, short enough to undo an underrun before the filter unlearns.
const DRIFT_WINDOW: u32 = 40;
/// Offset drift (samples, 2 ms) tolerated before realigning: device periods jitter by
/// less; an underrun or lost capture is at least a period.
const DRIFT_TOLERANCE: i64 = 96;

/// 16-bit scale SpeexDSP works in.
const I16_SCALE: f32 = 32768.0;

/// The echo canceller with its far-end queue.
pub struct EchoCanceller {
    speex: Speex,
    /// Far-end samples played or queued for playing, not yet paired with the microphone.
    far: VecDeque<f32>,
    mic: [i16; AEC_FRAME],
    reference: [i16; AEC_FRAME],
    out: [i16; AEC_FRAME],
    /// Whether the last frame was cancelled: the filter is reset when cancellation resumes,
    /// since the echo path may have changed meanwhile.
    running: bool,
    realigned: u64,
    /// Offset (see [`EchoCanceller::align`]) the pairing started at, once measured.
    anchor: Option<i64>,
    window_min: i64,
    window_ticks: u32,
    windows_seen: u32,
}

impl EchoCanceller {
    pub fn new() -> Result<Self> {
        let speex = Speex::new(EchoConfig {
            frame_size: AEC_FRAME,
            filter_length: SAMPLE_RATE as usize * FILTER_MS / 1000,
            sample_rate: SAMPLE_RATE,
            residual_suppression_db: Some(SUPPRESS_DB),
            residual_suppression_active_db: SUPPRESS_ACTIVE_DB,
        })?;
        Ok(Self {
            speex,
            far: VecDeque::with_capacity(MAX_AHEAD * 2),
            mic: [0; AEC_FRAME],
            reference: [0; AEC_FRAME],
            out: [0; AEC_FRAME],
            running: false,
            realigned: 0,
            anchor: None,
            window_min: i64::MAX,
            window_ticks: 0,
            windows_seen: 0,
        })
    }

    /// Queues far-end audio (48 kHz mono) handed to the playout device.
    pub fn played(&mut self, samples: &[f32]) {
        self.far.extend(samples);
        // Bounded whatever the caller does: never more than a second.
        let cap = SAMPLE_RATE as usize;
        if self.far.len() > cap {
            self.far.drain(..self.far.len() - cap);
        }
    }

    /// Keeps the pairing where it started: `unplayed` is how many 48 kHz samples the playout
    /// device still holds, `pending` how many the send chain has captured but not yet
    /// passed through the canceller. Call once per engine tick. Returns whether it realigned.
    ///
    /// `queued - unplayed - pending` is what the speaker has played minus what the
    /// microphone has recorded since the pairing began: constant while both run (the
    /// offset the filter has learnt), it drops by the length of every gap the speaker
    /// played that nobody queued (an underrun) and grows by every stretch the microphone
    /// lost. Its minimum over a short window (device periods make it saw-toothed) is
    /// compared with the one it started at, and a drift past [`DRIFT_TOLERANCE`] is undone
    /// by inserting silence in front of the far end (or dropping some), so the echo stays
    /// where the filter learnt it instead of moving and costing a re-convergence.
    pub fn align(&mut self, unplayed: usize, pending: usize) -> bool {
        let queued = self.far.len();
        if queued > unplayed + pending + MAX_AHEAD {
            // The microphone stalled (or started late): what played meanwhile has no pair.
            self.far.drain(..queued - unplayed - pending);
            self.measure_afresh();
            return self.realign(queued, unplayed, "microphone stalled");
        }
        let offset = queued as i64 - unplayed as i64 - pending as i64;
        self.window_min = self.window_min.min(offset);
        self.window_ticks += 1;
        if self.window_ticks < DRIFT_WINDOW {
            return false;
        }
        let seen = std::mem::replace(&mut self.window_min, i64::MAX);
        self.window_ticks = 0;
        // The first window holds the start-up (far end not flowing yet, first frames
        // buffered): the offset is taken from the second.
        self.windows_seen += 1;
        let Some(anchor) = self.anchor else {
            if self.windows_seen >= 2 {
                self.anchor = Some(seen);
            }
            return false;
        };
        let drift = seen - anchor;
        if drift.abs() <= DRIFT_TOLERANCE {
            return false;
        }
        if drift < 0 {
            // The speaker played silence of its own (underrun): so must the far end here.
            for _ in 0..(-drift).min(MAX_AHEAD as i64) {
                self.far.push_front(0.0);
            }
        } else {
            // The microphone lost samples: skip the far end they would have been paired with.
            self.far.drain(..(drift as usize).min(self.far.len()));
        }
        self.realign(queued, unplayed, "drift")
    }

    fn realign(&mut self, queued: usize, unplayed: usize, why: &'static str) -> bool {
        self.realigned += 1;
        tracing::debug!(queued, unplayed, why, "echo canceller realigned");
        true
    }

    /// Times the pairing had to be realigned (for statistics and tests).
    pub fn realigned(&self) -> u64 {
        self.realigned
    }

    /// Cancels the echo in one 10 ms microphone frame (48 kHz), in place, pairing it with the
    /// oldest queued far-end audio. With `enabled` false the frame is left alone but the
    /// far end is still consumed, so the pairing stays right for when it is switched on.
    pub fn process(&mut self, frame: &mut [f32], enabled: bool) {
        let n = frame.len().min(AEC_FRAME);
        for r in self.reference.iter_mut().take(n) {
            *r = to_i16(self.far.pop_front().unwrap_or(0.0));
        }
        if !enabled || n != AEC_FRAME {
            self.running = false;
            return;
        }
        if !self.running {
            self.speex.reset();
            self.running = true;
        }
        for (m, &s) in self.mic.iter_mut().zip(frame.iter()) {
            *m = to_i16(s);
        }
        match self
            .speex
            .process(&self.mic, &self.reference, &mut self.out)
        {
            Ok(()) => {
                for (s, &o) in frame.iter_mut().zip(self.out.iter()) {
                    *s = f32::from(o) / I16_SCALE;
                }
            }
            // Cannot happen (the buffers are one frame by construction); leave the frame as
            // it was rather than lose it.
            Err(e) => tracing::warn!(error = %e, "echo canceller refused a frame"),
        }
    }

    /// Forgets the echo path and the far-end queue (the output device changed).
    pub fn reset(&mut self) {
        self.far.clear();
        self.running = false;
        self.measure_afresh();
    }

    /// Forgets the pairing's offset: the next window measures it anew.
    fn measure_afresh(&mut self) {
        self.anchor = None;
        self.window_min = i64::MAX;
        self.window_ticks = 0;
        self.windows_seen = 0;
    }
}

fn to_i16(s: f32) -> i16 {
    (s * I16_SCALE).round().clamp(-32768.0, 32767.0) as i16
}
