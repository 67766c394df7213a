//! `CommandError`: what every command returns to the UI on failure.

use serde::Serialize;
use sohbet_client::ClientError;

/// A failed command, as the UI sees it: a stable `code` to branch on, a `message` for
/// people, the rejected `field` for form errors and, when rate limited, how long to wait.
///
/// Codes are the server's (`invalid_credentials`, `validation_failed`, `rate_limited`,
/// `not_found`…) plus the app's own: `unreachable` (no answer from the server),
/// `not_logged_in`, `invalid_server` (an address that is not http(s)), `bad_answer` (the
/// server answered something that is not Sohbet), `storage` (the token could not be kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CommandError {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    pub retry_after_secs: Option<u32>,
}

impl CommandError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            field: None,
            retry_after_secs: None,
        }
    }

    pub fn not_logged_in() -> Self {
        Self::new("not_logged_in", "Log in first.")
    }
}

impl From<ClientError> for CommandError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api {
                code,
                message,
                field,
                retry_after_secs,
                ..
            } => Self {
                code,
                message,
                field,
                retry_after_secs: retry_after_secs.map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
            },
            ClientError::Transport(e) => {
                tracing::info!(error = %e, "server unreachable");
                let message = if e.is_timeout() {
                    "The server did not answer in time."
                } else {
                    "Cannot reach the server. Check the address and your connection."
                };
                Self::new("unreachable", message)
            }
            ClientError::Tls(e) => {
                tracing::info!(error = %e, "TLS failed");
                Self::new(
                    "tls",
                    format!("The secure connection to the server failed: {e}."),
                )
            }
            ClientError::Unexpected { status, .. } => Self::new(
                "bad_answer",
                format!(
                    "The server answered something unexpected ({status}). Is this a Sohbet server?"
                ),
            ),
            ClientError::NotLoggedIn => Self::not_logged_in(),
            ClientError::NotConnected => Self::new("offline", "Not connected to the server yet."),
            ClientError::Refused { code, message } => Self::new(&code, message),
            ClientError::Timeout => Self::new("timeout", "The server did not answer in time."),
            ClientError::CallEnded => Self::new("call_ended", "The call has ended."),
            ClientError::Voice(e) => {
                tracing::warn!(error = %e, "voice engine");
                Self::new("voice", "The audio device or connection failed.")
            }
        }
    }
}

pub type CommandResult<T> = Result<T, CommandError>;
