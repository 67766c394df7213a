//! Group chats and direct messages, their members and roles.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{messages::Message, users::PublicUser, GroupId, UserId};

/// A member's role. Each role can do everything the ones below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends messages, edits and deletes their own.
    Member,
    /// Also renames the group, adds members, removes members and deletes anyone's messages.
    Admin,
    /// Also removes admins, changes roles, transfers ownership and deletes the group.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }
}

/// A group chat or a direct message (`is_direct_msg`, no name: show the other member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Group {
    pub group_id: GroupId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_direct_msg: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Sequence number of the latest message ever sent (deleted ones included).
    pub last_seq: i64,
    pub last_message_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Member {
    pub user: PublicUser,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    /// Every message with `seq <= last_read_seq` is read by this member.
    pub last_read_seq: i64,
}

/// `GET /api/groups/{group_id}` and the answer to creating one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct GroupDetail {
    pub group: Group,
    pub my_role: Role,
    pub members: Vec<Member>,
}

/// One entry of `GET /api/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct GroupListItem {
    pub group: Group,
    pub my_role: Role,
    pub last_message: Option<Message>,
    /// Messages from others after my read watermark.
    pub unread_count: i64,
    pub last_read_seq: i64,
    /// For a direct message: the other person.
    pub dm_user: Option<PublicUser>,
}

/// `POST /api/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct CreateGroupRequest {
    /// 1–100 characters.
    pub name: String,
    /// At most 1000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PATCH /api/groups/{group_id}`: absent fields are left alone; `null` clears the
/// description.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct UpdateGroupRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::serde_util::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[cfg_attr(feature = "specta", specta(type = Option<String>))]
    pub description: Option<Option<String>>,
}

/// `POST /api/dms`, `POST /api/groups/{group_id}/members`, `POST /api/groups/{group_id}/owner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    pub user_id: UserId,
}

/// `PATCH /api/groups/{group_id}/members/{user_id}`: `admin` or `member` (ownership moves
/// only by transfer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct ChangeRoleRequest {
    pub role: Role,
}
