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
//! The engine works in 10 ms frames of 48 kHz mono `f32` samples throughout, and sends
//! Opus packets of 20 ms (10 ms while the loss calls for redundancy).

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
/// Samples in one 10 ms frame at [`SAMPLE_RATE`]: the block the engine captures, processes
/// (echo cancellation, noise suppression, gain), mixes and plays, as libwebrtc's audio
/// pipeline does. What goes on the wire is one or two of these per Opus packet: 20 ms on a
/// clean network, the trade of latency against packet overhead every VoIP stack settles on,
/// and 10 ms while redundancy (RED) is on, so a lost packet's copy arrives 10 ms after it
/// rather than 20 (see [`PACKET_MS_LOSSY`]).
pub const FRAME_SAMPLES: usize = 480;
/// Duration of one frame in milliseconds.
pub const FRAME_MS: f64 = 10.0;
/// Audio per packet on a clean network (ms).
pub const PACKET_MS_CLEAN: f64 = 20.0;
/// Audio per packet while a peer's loss reports have RED on (ms). Measured in calls at 20 %
/// loss with 20 ± 10 ms jitter (voice/README.md, "Frame length"), 10 ms packets bring the
/// receive-side delay from 57–61 ms to 45–46 ms and score as well or better; on a clean
/// network they cost PESQ-WB and ~25 kbps of headers for nothing, so they are used only
/// while the loss calls for redundancy.
pub const PACKET_MS_LOSSY: f64 = 10.0;

/// Locks a mutex, carrying on with the data if another thread panicked while holding it:
/// audio state is always usable, and a poisoned lock must not take the call down.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
