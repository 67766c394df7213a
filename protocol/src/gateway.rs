//! Real-time events pushed over the WebSocket gateway (`GET /api/gateway`).
//!
//! Every event is one JSON object tagged by `type`. REST handlers publish an [`Event`] after
//! their transaction commits; the gateway delivers it to every connected recipient on every
//! server instance.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{users::UserStatus, UserId};

/// Version of the gateway protocol; bumped on incompatible changes.
pub const GATEWAY_VERSION: u32 = 1;

/// Presence as others see it: a user's chosen status while connected, `offline` otherwise
/// (and while `invisible`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Online,
    Idle,
    Dnd,
    Offline,
}

impl Presence {
    /// What others see of a connected user who chose `status`.
    pub fn shown(status: UserStatus) -> Self {
        match status {
            UserStatus::Online => Self::Online,
            UserStatus::Idle => Self::Idle,
            UserStatus::Dnd => Self::Dnd,
            UserStatus::Invisible => Self::Offline,
        }
    }
}

/// A server → client event.
///
/// Add a variant per kind of change; name it `<thing>_<past tense>`, carry the REST type of
/// the thing (so clients parse one shape), and say in its doc who receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A friend's or group co-member's presence changed. To: their friends and co-members.
    PresenceUpdated {
        user_id: UserId,
        presence: Presence,
        last_seen: Option<DateTime<Utc>>,
    },
}
