//! Signaling: the typed messages peers exchange to set up a call, whatever carries them.
//!
//! The engine reads [`SignalMessage`]s from a stream and writes them to a sink; the gateway,
//! an in-process router in tests, or anything else moves them between participants. In a
//! message going out, `peer` is the addressee; in one coming in, it is the sender.

use serde::{Deserialize, Serialize};

/// Identifies a remote participant (the gateway uses user ids; tests use names).
pub type PeerId = String;

/// One signaling step of a peer connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Signal {
    /// An SDP offer: the joiner sends one to each participant.
    Offer {
        /// The session description.
        sdp: String,
    },
    /// The SDP answer to an offer.
    Answer {
        /// The session description.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate {
        /// The candidate attribute (`candidate:...`).
        candidate: String,
        /// The media section it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        /// The index of that media section.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mline_index: Option<u16>,
    },
    /// The sender has left the call.
    Bye,
}

/// A [`Signal`] with the peer it goes to (outgoing) or comes from (incoming).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalMessage {
    /// Addressee when sent, sender when received.
    pub peer: PeerId,
    /// The signal itself.
    #[serde(flatten)]
    pub signal: Signal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_serializes_with_a_type_tag() -> Result<(), serde_json::Error> {
        let msg = SignalMessage {
            peer: "alice".into(),
            signal: Signal::Offer { sdp: "v=0".into() },
        };
        let json = serde_json::to_string(&msg)?;
        assert_eq!(json, r#"{"peer":"alice","type":"offer","sdp":"v=0"}"#);
        assert_eq!(serde_json::from_str::<SignalMessage>(&json)?, msg);
        let bye: SignalMessage = serde_json::from_str(r#"{"peer":"bob","type":"bye"}"#)?;
        assert_eq!(bye.signal, Signal::Bye);
        Ok(())
    }
}
