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
        /// For `validation_failed`: the request field that was rejected.
        field: Option<String>,
        /// For `rate_limited`: the server's `Retry-After`, in seconds.
        retry_after_secs: Option<u64>,
    },
    /// The request did not complete (connection refused, timeout...).
    #[error("transport: {0}")]
    Transport(reqwest::Error),
    /// TLS failed: the server's certificate is not trusted (give its CA as the extra CA),
    /// is for another name or expired, or an extra CA file is unusable.
    #[error("TLS: {0}")]
    Tls(String),
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

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        match crate::tls::tls_cause(&e) {
            Some(tls) => Self::Tls(tls.to_string()),
            None => Self::Transport(e),
        }
    }
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

/// `{"code": …, "message": …}`, so an application (the desktop app) can forward an error as
/// it is: the server's code when it sent one, else one naming the kind of failure.
impl serde::Serialize for ClientError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let code = self.code().unwrap_or(match self {
            Self::Transport(_) => "unreachable",
            Self::Tls(_) => "tls",
            Self::Unexpected { .. } => "unexpected_answer",
            Self::NotLoggedIn => "not_logged_in",
            Self::NotConnected => "not_connected",
            Self::Timeout => "timeout",
            Self::CallEnded => "call_ended",
            Self::Voice(_) => "voice",
            Self::Api { .. } | Self::Refused { .. } => "error",
        });
        let mut s = serializer.serialize_struct("ClientError", 2)?;
        s.serialize_field("code", code)?;
        s.serialize_field("message", &self.to_string())?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_serialize_with_a_stable_code() -> Result<(), serde_json::Error> {
        let refused = ClientError::Refused {
            code: "call_full".into(),
            message: "the call already has 8 participants".into(),
        };
        let json = serde_json::to_value(&refused)?;
        assert_eq!(json["code"], "call_full");
        assert_eq!(
            serde_json::to_value(ClientError::Timeout)?["code"],
            "timeout"
        );
        Ok(())
    }
}
