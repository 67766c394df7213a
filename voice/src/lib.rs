//! The Sohbet voice engine: everything between a microphone and a remote speaker, and
//! nothing of the chat API.
//!
//! Module map:
//! - [`audio`]: the [`audio::Capture`] / [`audio::Playout`] traits, real devices through cpal
//!   ([`audio::device`]) and WAV files through hound ([`audio::wav`]).
//! - [`dsp`]: the send chain (downmix, resample to 48 kHz, noise suppression, voice activity,
//!   gain, noise gate) and the conversions back to a device's format.
//! - [`codec`]: Opus in VoIP mode with FEC and DTX.
//! - [`jitter`]: the per-peer adaptive jitter buffer.
//!
//! The engine works in 20 ms frames of 48 kHz mono `f32` samples throughout.

pub mod audio;
pub mod codec;
pub mod dsp;
mod error;
pub mod jitter;

pub use error::{Result, VoiceError};

/// The engine's sample rate (Opus's native rate).
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at [`SAMPLE_RATE`]: the Opus frame size we send, a trade of
/// latency against packet overhead that every VoIP stack settles on.
pub const FRAME_SAMPLES: usize = 960;
