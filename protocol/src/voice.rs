//! Voice calls on the wire: the signaling relayed between participants, each participant's
//! voice state, ringing in DMs, and the ICE servers a client should use.
//!
//! A call is a group's (or DM's) voice channel. A client joins it with the gateway's
//! `voice_join`; the server answers `voice_joined` with who is already there, and the joiner
//! sends an [`VoiceSignal::Offer`] to each of them. Everything after that is peer to peer
//! (or through TURN); the server only relays [`VoiceSignal`]s between participants.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{GroupId, UserId};

/// Largest SDP accepted in an offer or answer. An audio-only offer is 1–3 KiB; 16 KiB leaves
/// room for many candidates and extensions without letting a peer make others parse
/// megabytes.
pub const MAX_SDP_BYTES: usize = 16 * 1024;
/// Largest trickled ICE candidate line (real ones are ~100–200 bytes).
pub const MAX_CANDIDATE_BYTES: usize = 1024;
/// Largest media-section id (`a=mid:`) in a candidate.
pub const MAX_MID_BYTES: usize = 64;

/// One signaling step between two participants of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum VoiceSignal {
    /// An SDP offer: the joiner sends one to each participant present.
    Offer { sdp: String },
    /// The SDP answer to an offer.
    Answer { sdp: String },
    /// A trickled ICE candidate (`candidate:...`).
    Candidate {
        candidate: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mline_index: Option<u16>,
    },
    /// The sender hung up on this peer.
    Bye,
}

impl VoiceSignal {
    /// Checks the size limits; the error names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::Offer { sdp } | Self::Answer { sdp } => {
                if sdp.is_empty() {
                    return Err("the SDP is empty".into());
                }
                if sdp.len() > MAX_SDP_BYTES {
                    return Err(format!("the SDP is over {MAX_SDP_BYTES} bytes"));
                }
            }
            Self::Candidate {
                candidate, sdp_mid, ..
            } => {
                if candidate.len() > MAX_CANDIDATE_BYTES {
                    return Err(format!("the candidate is over {MAX_CANDIDATE_BYTES} bytes"));
                }
                if sdp_mid.as_ref().is_some_and(|m| m.len() > MAX_MID_BYTES) {
                    return Err(format!("sdp_mid is over {MAX_MID_BYTES} bytes"));
                }
            }
            Self::Bye => {}
        }
        Ok(())
    }
}

/// One participant of a call as everyone sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct VoiceParticipant {
    pub user_id: UserId,
    /// Not sending audio (by their own choice).
    #[serde(default)]
    pub muted: bool,
    /// Not hearing anyone (and so not sending either).
    #[serde(default)]
    pub deafened: bool,
}

/// Who is in a group's voice call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct VoiceCall {
    pub group_id: GroupId,
    pub participants: Vec<VoiceParticipant>,
}

impl VoiceCall {
    /// The participants' user ids.
    pub fn user_ids(&self) -> Vec<UserId> {
        self.participants.iter().map(|p| p.user_id).collect()
    }
}

/// A DM call ringing for me right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct CallRing {
    pub group_id: GroupId,
    pub caller_id: UserId,
    /// How much longer it rings before it counts as missed.
    pub expires_in_ms: u64,
}

/// Why a DM call stopped ringing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
pub enum RingEnd {
    /// The callee joined (on one of their devices).
    Answered,
    /// The callee declined.
    Declined,
    /// Nobody answered in time; the callee finds it in their missed calls.
    Missed,
    /// The caller hung up before anyone answered.
    Cancelled,
}

/// A DM call nobody answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct MissedCall {
    pub missed_call_id: i64,
    pub group_id: GroupId,
    pub caller_id: UserId,
    /// When the call started ringing.
    pub called_at: DateTime<Utc>,
}

/// `GET /api/voice/missed-calls`: my most recent missed calls, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct MissedCalls {
    pub missed_calls: Vec<MissedCall>,
}

/// A STUN or TURN server, in the shape of WebRTC's `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:...`.
    pub urls: Vec<String>,
    /// TURN only: `"<expiry unix time>:<user_id>"` (the TURN REST scheme).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN only: base64(HMAC-SHA1(shared secret, username)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `GET /api/voice/ice-servers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct IceServers {
    /// Empty when the server has none configured: peers on one network still connect
    /// through their host candidates.
    pub ice_servers: Vec<IceServer>,
    /// How long the TURN credentials stay valid; fetch again before joining after that.
    pub ttl_secs: u64,
}

/// Stable codes of the gateway's `error` frame, in the style of the REST error codes.
pub mod refusal {
    /// The group does not exist or I am not a member (the same answer, as over REST).
    pub const NOT_FOUND: &str = "not_found";
    /// Known, but not allowed: e.g. a DM that became read-only after an unfriending or a
    /// block.
    pub const FORBIDDEN: &str = "forbidden";
    /// The call already has the most participants the server allows.
    pub const CALL_FULL: &str = "call_full";
    /// This connection is not in that call (never joined, left, or moved to another
    /// device).
    pub const NOT_IN_CALL: &str = "not_in_call";
    /// The addressed user is not in the call.
    pub const TARGET_NOT_IN_CALL: &str = "target_not_in_call";
    /// A signal over the size limits or otherwise unusable.
    pub const INVALID_SIGNAL: &str = "invalid_signal";
    /// No call is ringing for me in that group.
    pub const NOT_RINGING: &str = "not_ringing";
    /// A backing store is down; try again.
    pub const UNAVAILABLE: &str = "unavailable";
    /// Too many frames of this kind (typing, voice joins, voice signals) from this user;
    /// the message says when to retry.
    pub const RATE_LIMITED: &str = "rate_limited";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_have_a_type_tag_and_reject_unknown_fields() -> Result<(), serde_json::Error> {
        let offer = VoiceSignal::Offer { sdp: "v=0".into() };
        assert_eq!(
            serde_json::to_string(&offer)?,
            r#"{"type":"offer","sdp":"v=0"}"#
        );
        assert!(
            serde_json::from_str::<VoiceSignal>(r#"{"type":"offer","sdp":"v","x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<VoiceSignal>(r#"{"type":"launch"}"#).is_err());
        assert!(serde_json::from_str::<VoiceSignal>(r#"{"type":"offer","sdp":5}"#).is_err());
        let bye: VoiceSignal = serde_json::from_str(r#"{"type":"bye"}"#)?;
        assert_eq!(bye, VoiceSignal::Bye);
        Ok(())
    }

    #[test]
    fn size_limits_are_enforced() {
        let big = VoiceSignal::Offer {
            sdp: "a".repeat(MAX_SDP_BYTES + 1),
        };
        assert!(big.validate().is_err());
        let ok = VoiceSignal::Answer {
            sdp: "a".repeat(MAX_SDP_BYTES),
        };
        assert!(ok.validate().is_ok());
        assert!(VoiceSignal::Offer { sdp: String::new() }
            .validate()
            .is_err());
        let cand = VoiceSignal::Candidate {
            candidate: "c".repeat(MAX_CANDIDATE_BYTES + 1),
            sdp_mid: None,
            sdp_mline_index: None,
        };
        assert!(cand.validate().is_err());
        let mid = VoiceSignal::Candidate {
            candidate: "candidate:1".into(),
            sdp_mid: Some("m".repeat(MAX_MID_BYTES + 1)),
            sdp_mline_index: Some(0),
        };
        assert!(mid.validate().is_err());
    }
}
