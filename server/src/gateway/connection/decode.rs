//! What the gateway accepts as a client frame, as one pure function of the frame's text:
//! `fuzz/fuzz_targets/gateway_frame.rs` builds this file on its own (`#[path]`), so it
//! depends on nothing but the protocol crate and serde_json.

use protocol::gateway::ClientFrame;

/// Why a text frame was refused (the connection closes with "invalid frame").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// serde reads a tagged enum from an array too (`["heartbeat"]`): frames are objects.
    NotAnObject,
    /// Not JSON, or not a frame the protocol knows.
    Invalid,
}

impl Rejected {
    /// The close reason sent to the client.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotAnObject => "a frame is a JSON object",
            Self::Invalid => "invalid frame",
        }
    }
}

/// Decodes a client's text frame.
pub fn client_frame(text: &str) -> Result<ClientFrame, Rejected> {
    if !text.trim_start().starts_with('{') {
        return Err(Rejected::NotAnObject);
    }
    serde_json::from_str(text).map_err(|_| Rejected::Invalid)
}
