//! A simulated room: a loudspeaker that a microphone hears, as a [`Capture`] and a
//! [`Playout`] sharing one wall clock. The microphone picks up `near` (the person in the
//! room) plus whatever the speaker played `delay` earlier, scaled by `gain` — the echo path
//! of laptop speakers, without a sound card.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use voice::audio::{Capture, Playout, StreamFormat};

use super::{MONO, RATE};

struct Inner {
    start: Option<Instant>,
    near: Vec<f32>,
    /// What the speaker played, on the room's timeline (index = sample time).
    far: Vec<f32>,
    captured: usize,
    delay: usize,
    gain: f32,
}

impl Inner {
    /// Samples of room time that have passed (the clock starts at first use).
    fn now(&mut self) -> usize {
        let start = *self.start.get_or_insert_with(Instant::now);
        (start.elapsed().as_secs_f64() * f64::from(RATE)) as usize
    }
}

/// The microphone of a [`room`].
pub struct RoomMic(Arc<Mutex<Inner>>);
/// The loudspeaker of a [`room`].
pub struct RoomSpeaker(Arc<Mutex<Inner>>);

/// A room where the microphone hears `near` and the speaker's output `delay` later at `gain`.
pub fn room(near: Vec<f32>, delay: Duration, gain: f32) -> (RoomMic, RoomSpeaker) {
    let inner = Arc::new(Mutex::new(Inner {
        start: None,
        near,
        far: Vec::new(),
        captured: 0,
        delay: (delay.as_secs_f64() * f64::from(RATE)) as usize,
        gain,
    }));
    (RoomMic(Arc::clone(&inner)), RoomSpeaker(inner))
}

impl Capture for RoomMic {
    fn format(&self) -> StreamFormat {
        MONO
    }

    fn read(&mut self, out: &mut Vec<f32>) -> usize {
        let Ok(mut r) = self.0.lock() else { return 0 };
        let now = r.now();
        let from = r.captured;
        for i in from..now {
            let echo = i
                .checked_sub(r.delay)
                .and_then(|j| r.far.get(j))
                .copied()
                .unwrap_or(0.0);
            out.push(r.near.get(i).copied().unwrap_or(0.0) + r.gain * echo);
        }
        r.captured = now.max(from);
        now.saturating_sub(from)
    }
}

impl Playout for RoomSpeaker {
    fn format(&self) -> StreamFormat {
        MONO
    }

    fn queued(&self) -> usize {
        let Ok(mut r) = self.0.lock() else { return 0 };
        let now = r.now();
        r.far.len().saturating_sub(now)
    }

    fn write(&mut self, interleaved: &[f32]) {
        let Ok(mut r) = self.0.lock() else { return };
        let now = r.now();
        // The speaker ran dry: it played silence until now.
        if r.far.len() < now {
            r.far.resize(now, 0.0);
        }
        r.far.extend_from_slice(interleaved);
    }
}
