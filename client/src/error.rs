//! Errors of the SDK.

use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with its error body.
    #[error("{status} {code}: {message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The request did not complete (connection refused, timeout...).
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered something that is not the documented shape.
    #[error("unexpected answer {status}: {body}")]
    Unexpected { status: StatusCode, body: String },
    /// The operation needs a session: log in first.
    #[error("not logged in")]
    NotLoggedIn,
    /// The operation needs a gateway connection that has said `ready`.
    #[error("not connected to the gateway")]
    NotConnected,
    /// The gateway refused a frame (`not_found`, `forbidden`, `call_full`, ...).
    #[error("refused ({code}): {message}")]
    Refused { code: String, message: String },
    /// The server did not answer in time.
    #[error("no answer in time")]
    Timeout,
    /// The call has ended.
    #[error("the call has ended")]
    CallEnded,
    /// The voice engine failed (audio device, WebRTC).
    #[error("voice: {0}")]
    Voice(String),
}

impl ClientError {
    /// The API error code (`validation_failed`, `not_found`...), if the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } | Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } | Self::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }
}
