//! Real-time events pushed over the WebSocket gateway (`GET /api/gateway`).
//!
//! Every event is one JSON object tagged by `type`. REST handlers publish an [`Event`] after
//! their transaction commits; the gateway delivers it to every connected recipient on every
//! server instance.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    friends::Friend,
    groups::{Group, GroupDetail, Member, Role},
    messages::Message,
    users::{PublicUser, UserStatus},
    GroupId, MessageId, UserId,
};

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

    /// Someone sent me a friend request. To: the recipient.
    FriendRequestReceived { request: Friend },
    /// A request between me and `user` became a friendship. To: both.
    FriendRequestAccepted { user: PublicUser },
    /// The recipient declined a request. To: both (the requester's outgoing list shrinks).
    FriendRequestDeclined { user_id: UserId },
    /// The requester withdrew a request. To: both.
    FriendRequestCancelled { user_id: UserId },
    /// A friendship ended (unfriended, or blocked: deliberately the same event). To: both.
    FriendRemoved { user_id: UserId },

    /// I became a member of a new group or DM. To: its members.
    GroupCreated { group: GroupDetail },
    /// Name or description changed. To: members.
    GroupUpdated { group: Group },
    /// The group is gone with its history. To: its last members.
    GroupDeleted { group_id: GroupId },
    /// To: members, the new one included (who should fetch the group).
    MemberAdded { group_id: GroupId, member: Member },
    /// Removed or left. To: the remaining members and the one who went.
    MemberRemoved { group_id: GroupId, user_id: UserId },
    /// A role changed (also on ownership transfer, once per member changed). To: members.
    MemberRoleChanged {
        group_id: GroupId,
        user_id: UserId,
        role: Role,
    },

    /// To: members.
    MessageCreated { message: Message },
    /// Edited, or became read by everyone (`is_read`). To: members.
    MessageUpdated { message: Message },
    /// To: members. `seq` lets a resuming client drop it from its cache.
    MessageDeleted {
        group_id: GroupId,
        message_id: MessageId,
        seq: i64,
    },
    /// A member's read receipt moved: everything up to `last_read_seq` is read by `user_id`.
    /// To: members.
    ReadUpdated {
        group_id: GroupId,
        user_id: UserId,
        last_read_seq: i64,
        message_id: MessageId,
        read_at: DateTime<Utc>,
    },
    /// My unread count in a group changed because I read on another device. To: me.
    UnreadUpdated {
        group_id: GroupId,
        last_read_seq: i64,
        unread_count: i64,
    },
    /// These messages became read by every other member. To: members. Sent instead of one
    /// `message_updated` per message, since one read can cover thousands.
    MessagesRead {
        group_id: GroupId,
        /// Every message with `seq <= up_to_seq` is now read by all.
        up_to_seq: i64,
    },
}
