//! Friends, friend requests and blocks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::users::PublicUser;

/// `POST /api/friends/requests`: exactly one of `friend_code` or `username`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct FriendRequestBody {
    /// Eight characters, case-insensitive; spaces and dashes ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friend_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// Where a relationship stands after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
pub enum FriendRequestState {
    /// The request waits for the other user.
    Pending,
    /// The other user had already asked: the two are now friends.
    Friends,
}

/// The answer to `POST /api/friends/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct FriendRequestOutcome {
    pub state: FriendRequestState,
    pub user: PublicUser,
}

/// A friend, or the other side of a pending request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Friend {
    pub user: PublicUser,
    /// When the request was sent, or the friendship or block began.
    pub since: DateTime<Utc>,
}

/// `GET /api/friends/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct FriendRequests {
    /// Requests others sent to me, newest first.
    pub incoming: Vec<Friend>,
    /// Requests I sent, newest first.
    pub outgoing: Vec<Friend>,
}
