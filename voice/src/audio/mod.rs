//! Audio I/O: where samples come from and where they go.
//!
//! The engine sees every device through two small traits, [`Capture`] and [`Playout`], so a
//! real sound card ([`device`], through cpal) and a WAV file ([`wav`], through hound) are
//! interchangeable: tests, bots and benchmarks use WAV, the desktop app uses devices.
//! Samples are interleaved `f32` in `[-1, 1]` at the device's own rate and channel count;
//! the DSP stages convert to and from the engine's 48 kHz mono.

pub mod device;
pub mod wav;

/// Sample rate and channel count of a device or file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    /// Frames per second.
    pub sample_rate: u32,
    /// Interleaved channels per frame.
    pub channels: u16,
}

/// A source of captured audio: a microphone, a file, a generator.
pub trait Capture: Send {
    /// The format of the samples [`Capture::read`] returns.
    fn format(&self) -> StreamFormat;
    /// Appends every captured interleaved sample that is ready to `out` and returns how many.
    /// Never blocks: the engine polls it on its own clock.
    fn read(&mut self, out: &mut Vec<f32>) -> usize;
    /// Samples lost because the reader was too slow (ring overflow). Zero for files.
    fn dropped(&self) -> u64 {
        0
    }
}

/// A sink for audio to be played: a speaker, a file.
pub trait Playout: Send {
    /// The format [`Playout::write`] expects.
    fn format(&self) -> StreamFormat;
    /// Frames (samples per channel) written but not yet played. The engine writes a new 20 ms
    /// frame whenever this falls below its low-water mark, so the device's clock paces playout.
    fn queued(&self) -> usize;
    /// Queues interleaved samples for playing.
    fn write(&mut self, interleaved: &[f32]);
    /// Times the device had nothing to play (underruns). Zero for files.
    fn underruns(&self) -> u64 {
        0
    }
}
