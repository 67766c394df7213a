//! The WebSocket gateway (`GET /api/gateway`): frames, events and close codes.
//!
//! A session on the gateway:
//! 1. the server sends [`ServerFrame::Hello`] with the heartbeat interval;
//! 2. the client sends [`ClientFrame::Identify`] with its session token (never in the URL,
//!    so tokens stay out of access logs) and, after a disconnect, the last message sequence
//!    it saw per group;
//! 3. the server answers [`ServerFrame::Ready`], replays every message the client missed in
//!    order (as `message_created` events), then sends [`ServerFrame::Resumed`];
//! 4. events follow as [`ServerFrame::Event`]; the client sends [`ClientFrame::Heartbeat`]
//!    every interval and the server closes a silent connection after two intervals.
//!
//! REST handlers publish an [`Event`] after their transaction commits; the gateway delivers
//! it to every connected recipient on every server instance. Per group, `message_created`
//! events arrive exactly once and in sequence order, also across reconnects.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    friends::Friend,
    groups::{Group, GroupDetail, Member, Role},
    messages::Message,
    users::{PublicUser, User, UserStatus},
    voice::{CallRing, RingEnd, VoiceParticipant, VoiceSignal},
    MessageId, UserId,
};

pub use crate::voice::VoiceCall;
pub use crate::GroupId;

/// Version of the gateway protocol; bumped on incompatible changes.
pub const GATEWAY_VERSION: u32 = 1;

/// Presence as others see it: a user's chosen status while connected, `offline` otherwise
/// (and while `invisible`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
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

/// Close codes the server uses. 4xxx codes marked resumable mean: reconnect and identify
/// with `resume`; nothing is lost.
pub mod close {
    /// The first frame was not `identify`, or did not come in time.
    pub const NOT_AUTHENTICATED: u16 = 4001;
    /// A frame that is not valid JSON of a [`ClientFrame`](super::ClientFrame).
    pub const INVALID_FRAME: u16 = 4002;
    /// The token in `identify` is unknown, expired or revoked.
    pub const AUTHENTICATION_FAILED: u16 = 4003;
    /// The session ended while connected (logout, revocation, expiry): log in again.
    pub const SESSION_ENDED: u16 = 4004;
    /// The client read too slowly and its queue filled up. Resumable.
    pub const TOO_SLOW: u16 = 4008;
    /// No heartbeat within two intervals. Resumable.
    pub const HEARTBEAT_TIMEOUT: u16 = 4009;
    /// The client speaks a gateway version the server does not.
    pub const UNSUPPORTED_VERSION: u16 = 4010;
    /// The client sent frames faster than the server's cap. Resumable, after a backoff.
    pub const RATE_LIMITED: u16 = 4029;
    /// A frame over the size cap (64 KiB; WebSocket "message too big").
    pub const TOO_BIG: u16 = 1009;
    /// The server is shutting down (WebSocket "going away"). Resumable.
    pub const GOING_AWAY: u16 = 1001;
    /// A store the server needs (PostgreSQL or Redis) is unreachable right now (WebSocket
    /// "try again later"). Resumable, after a backoff.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Where a client was when it disconnected: the last message sequence it saw per group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct ResumeFrom {
    /// Groups left out are not replayed (fetch their history over REST).
    pub groups: Vec<GroupCursor>,
}

/// The last message sequence a client saw in one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct GroupCursor {
    pub group_id: GroupId,
    pub last_seq: i64,
}

impl ResumeFrom {
    pub fn from_positions(positions: &HashMap<GroupId, i64>) -> Self {
        let mut groups: Vec<GroupCursor> = positions
            .iter()
            .map(|(&group_id, &last_seq)| GroupCursor { group_id, last_seq })
            .collect();
        groups.sort_by_key(|g| g.group_id);
        Self { groups }
    }
}

/// A number the client may put on a frame (`"ref"`) so that the server's answer to it
/// (`voice_joined`, or an `error` frame when it is refused) can be matched to it.
pub type FrameRef = u64;

/// Client → server.
///
/// Frames that can be refused (`typing`, `voice_join`, `voice_signal`, `voice_state`,
/// `call_decline`) are answered with a [`ServerFrame::Error`] when they are, carrying the
/// frame's `ref`; they are never dropped in silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Identify {
        token: String,
        /// Must equal [`GATEWAY_VERSION`].
        version: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<ResumeFrom>,
    },
    Heartbeat,
    /// "I am typing in this group"; repeat every few seconds while typing. Throttled.
    Typing {
        group_id: GroupId,
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<FrameRef>,
    },
    /// Join the voice call of a group (leaving any other call of this connection). In a DM
    /// whose call is empty this rings the other person; joining a DM call that rings for me
    /// answers it. Joining the same call again from the same session (after a reconnect)
    /// resumes it without the others noticing; joining from another session moves me there.
    /// Answered with [`ServerFrame::VoiceJoined`] or an error (`not_found`, `forbidden`,
    /// `call_full`).
    VoiceJoin {
        group_id: GroupId,
        #[serde(default)]
        muted: bool,
        #[serde(default)]
        deafened: bool,
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<FrameRef>,
    },
    VoiceLeave,
    /// My muted / deafened state in my current call, for the others to show.
    VoiceState {
        muted: bool,
        deafened: bool,
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<FrameRef>,
    },
    /// WebRTC signaling for another participant of the same call; relayed only between
    /// participants.
    VoiceSignal {
        group_id: GroupId,
        to: UserId,
        signal: VoiceSignal,
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<FrameRef>,
    },
    /// Decline a DM call ringing for me (on every one of my devices).
    CallDecline {
        group_id: GroupId,
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<FrameRef>,
    },
}

impl ClientFrame {
    /// The frame's `ref`, if it carries one.
    pub fn reference(&self) -> Option<FrameRef> {
        match self {
            Self::Typing { reference, .. }
            | Self::VoiceJoin { reference, .. }
            | Self::VoiceState { reference, .. }
            | Self::VoiceSignal { reference, .. }
            | Self::CallDecline { reference, .. } => *reference,
            Self::Identify { .. } | Self::Heartbeat | Self::VoiceLeave => None,
        }
    }
}

/// A group as the client should know it on (re)connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct GroupPosition {
    pub group_id: GroupId,
    /// Sequence of the group's latest message (0 when empty).
    pub last_seq: i64,
    /// My unread count.
    pub unread: i64,
}

/// What a user sees of another user's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct PresenceState {
    pub user_id: UserId,
    pub presence: Presence,
    pub last_seen: Option<DateTime<Utc>>,
}

/// Server → client.
#[allow(clippy::large_enum_variant)] // Ready is sent once per connection; boxing buys nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerFrame {
    Hello {
        version: u32,
        heartbeat_interval_ms: u64,
    },
    Ready {
        user: User,
        /// The connection's session, as listed by `GET /api/auth/sessions`.
        session_id: String,
        groups: Vec<GroupPosition>,
        /// Friends and group co-members.
        presences: Vec<PresenceState>,
        /// Voice calls going on in my groups.
        #[serde(default)]
        voice_calls: Vec<VoiceCall>,
        /// DM calls ringing for me.
        #[serde(default)]
        rings: Vec<CallRing>,
    },
    /// Replay after `identify` is done: live events follow.
    Resumed {
        replayed: u64,
        /// Groups whose gap was too large to replay: refetch their history over REST.
        resync_groups: Vec<GroupId>,
    },
    HeartbeatAck,
    Event {
        event: Event,
    },
    /// The answer to `voice_join`: I am in the call, with these others already there (I
    /// offer to each). `resumed`: this session was still in the call (a reconnect within
    /// the grace period), so peer connections that survived need no new offer.
    VoiceJoined {
        group_id: GroupId,
        participants: Vec<VoiceParticipant>,
        resumed: bool,
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<FrameRef>,
    },
    /// A frame was refused. `code` is stable (see [`crate::voice::refusal`]); `ref` is the
    /// refused frame's.
    Error {
        code: String,
        message: String,
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<FrameRef>,
    },
}

/// A server → client event.
///
/// Add a variant per kind of change; name it `<thing>_<past tense>`, carry the REST type of
/// the thing (so clients parse one shape), and say in its doc who receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A friend's or group co-member's presence changed. To: their friends and co-members.
    PresenceUpdated {
        user_id: UserId,
        presence: Presence,
        last_seen: Option<DateTime<Utc>>,
    },
    /// Someone joined or left a group's voice call (leaving includes a connection that
    /// dropped or an instance that died). To: the group's members.
    /// Also sent when a participant mutes or deafens.
    VoiceStateUpdated {
        group_id: GroupId,
        user_id: UserId,
        in_call: bool,
        #[serde(default)]
        muted: bool,
        #[serde(default)]
        deafened: bool,
    },
    /// Signaling from another participant of my call. To: the addressed participant.
    VoiceSignal {
        group_id: GroupId,
        from: UserId,
        signal: VoiceSignal,
    },
    /// I joined this call from another device: it is now `session_id`'s. To: me (every
    /// device); a device in the call with another session leaves it without a word to the
    /// peers, who are about to get offers from the new device.
    VoiceMoved {
        group_id: GroupId,
        session_id: String,
    },
    /// Someone calls me in a DM. To: the callee (every device).
    CallRinging {
        group_id: GroupId,
        caller_id: UserId,
        expires_in_ms: u64,
    },
    /// A DM call stopped ringing. To: the caller and the callee (every device).
    CallRingEnded {
        group_id: GroupId,
        caller_id: UserId,
        reason: RingEnd,
    },

    /// Someone is typing; show it for `expires_in_ms` unless repeated. To: the group's other
    /// members.
    TypingStarted {
        group_id: GroupId,
        user_id: UserId,
        expires_in_ms: u64,
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

impl Event {
    /// For a new message: its group and sequence. Per group, these are delivered exactly
    /// once and in order; clients resume from the last one they saw.
    pub fn message_position(&self) -> Option<(GroupId, i64)> {
        match self {
            Self::MessageCreated { message } => Some((message.group_id, message.seq)),
            _ => None,
        }
    }
}
