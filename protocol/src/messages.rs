//! Messages, history pages and read status.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{GroupId, MessageId, UserId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Message {
    pub message_id: MessageId,
    pub group_id: GroupId,
    /// `None` once the author's account is deleted.
    pub sender_id: Option<UserId>,
    pub content: String,
    /// Position in the group: strictly increasing in commit order; the history cursor.
    pub seq: i64,
    /// True once every other member has read it (in a DM: the other person).
    pub is_read: bool,
    pub sent_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when the author edited the content: show the message as edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// The sender's retry key, if one was given.
    pub nonce: Option<String>,
}

/// `POST /api/groups/{group_id}/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// 1–4000 characters after trimming; no NUL or control characters except newline and tab.
    pub content: String,
    /// 1–64 characters chosen by the client; sending again with the same nonce returns the
    /// first message instead of a duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// `PATCH /api/groups/{group_id}/messages/{message_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct EditMessageRequest {
    pub content: String,
}

/// A page of history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// More messages exist past the page in the direction asked (`before`: older;
    /// `after`: newer; no cursor: older; `around`: either side).
    pub has_more: bool,
}

/// `POST /api/groups/{group_id}/read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct MarkReadRequest {
    /// Everything up to and including this message counts as read.
    pub message_id: MessageId,
}

/// My read position in a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ReadState {
    pub group_id: GroupId,
    pub last_read_seq: i64,
    pub unread_count: i64,
}

/// Who read a message, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Receipt {
    pub user_id: UserId,
    /// When the member first marked this message or a later one read; `None` if that
    /// record went with a deleted message.
    pub read_at: Option<DateTime<Utc>>,
}

/// `GET /api/groups/{group_id}/messages`: at most one of `before`, `after`, `around` (message
/// ids of this group); none gives the latest page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Messages older than this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<MessageId>,
    /// Messages newer than this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<MessageId>,
    /// This message with up to `limit / 2` older ones and the rest newer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub around: Option<MessageId>,
    /// 1–100, default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}
