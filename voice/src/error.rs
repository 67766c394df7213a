//! The voice crate's error type: one enum at the crate boundary.

/// Everything that can go wrong in the voice engine.
///
/// Causes coming from the network or a remote peer (bad SDP, a refused candidate) are
/// `Signaling` or `WebRtc`; device trouble is `Device`; a codec refusing its settings is `Codec`.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    /// A remote peer sent signaling we cannot use (unparseable SDP or candidate, wrong state).
    #[error("bad signaling from peer {peer}: {reason}")]
    Signaling {
        /// The peer that sent it.
        peer: String,
        /// What was wrong.
        reason: String,
    },
    /// webrtc-rs refused an operation.
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    /// An audio device could not be found, opened or configured.
    #[error("audio device: {0}")]
    Device(String),
    /// The Opus codec refused a setting or a packet.
    #[error("opus: {0}")]
    Codec(#[from] opus::Error),
    /// The resampler could not be built for the requested rates.
    #[error("resampler: {0}")]
    Resample(String),
    /// The echo canceller (SpeexDSP) refused its settings or a frame.
    #[error("echo canceller: {0}")]
    EchoCanceller(#[from] sohbet_speexdsp::Error),
    /// Reading or writing a WAV file failed.
    #[error("wav: {0}")]
    Wav(#[from] hound::Error),
    /// A setting is out of its allowed range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// The call has ended; its tasks are gone.
    #[error("the call has ended")]
    CallEnded,
}

/// The voice crate's result type.
pub type Result<T, E = VoiceError> = std::result::Result<T, E>;
