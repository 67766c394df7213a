//! The Sohbet voice engine: everything between a microphone and a remote speaker, and
//! nothing of the chat API.
//!
//! Module map:
//! - [`audio`]: the [`audio::Capture`] / [`audio::Playout`] traits, real devices through cpal
//!   ([`audio::device`]) and WAV files through hound ([`audio::wav`]).
//! - [`dsp`]: the send chain (downmix, resample to 48 kHz, echo cancellation, noise
//!   suppression, voice activity, gain, noise gate) and the conversions back to a device's format.
//! - [`echo`]: acoustic echo cancellation (SpeexDSP) against what the engine plays, and the
//!   pairing of microphone and far-end audio it needs.
//! - [`codec`]: Opus in VoIP mode with FEC and DTX.
//! - [`jitter`]: the per-peer adaptive jitter buffer.
//! - [`red`]: RFC 2198 redundant audio (RED) payloads: building and splitting them.
//! - [`receive`]: per-peer decoding (FEC, concealment, volume) and the mixer.
//! - [`signal`]: the typed signaling messages (offer, answer, candidate, bye).
//! - [`call`]: [`Call`], the engine and one webrtc-rs peer connection per participant, with
//!   its controls (mute, deafen, push-to-talk, volumes, device switching) and statistics.
//! - `peer` (private): one peer connection, its Opus track, RTP send and receive loops.
//! - `feedback` (private): reads the loss peers report over RTCP, which drives FEC.
//! - [`mic_test`]: the audio settings' microphone test (level, noise floor, clipping, echo).
//! - [`analysis`]: aligning and scoring received audio against what was sent (tests, bench).
//!
//! The engine works in 20 ms frames of 48 kHz mono `f32` samples throughout.

pub mod analysis;
pub mod audio;
pub mod call;
pub mod codec;
pub mod dsp;
pub mod echo;
mod error;
mod feedback;
pub mod jitter;
pub mod mic_test;
mod peer;
pub mod receive;
pub mod red;
pub mod signal;

pub use call::{Call, CallConfig, CallEvent, IcePolicy, IceServer, PeerStats};
pub use error::{Result, VoiceError};
pub use signal::{PeerId, Signal, SignalMessage};

/// The engine's sample rate (Opus's native rate).
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at [`SAMPLE_RATE`]: the Opus frame size we send, a trade of
/// latency against packet overhead that every VoIP stack settles on.
pub const FRAME_SAMPLES: usize = 960;
/// Duration of one frame in milliseconds.
pub const FRAME_MS: f64 = 20.0;

/// Locks a mutex, carrying on with the data if another thread panicked while holding it:
/// audio state is always usable, and a poisoned lock must not take the call down.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
