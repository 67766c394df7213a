//! Registration, login and sessions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::users::User;

/// `POST /api/auth/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3–32 characters of `a-z 0-9 _ .`; stored lower-case, unique regardless of case.
    pub username: String,
    pub email: String,
    /// 8–128 characters.
    pub password: String,
    /// At most 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `POST /api/auth/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username or email.
    pub login: String,
    pub password: String,
    /// Free text shown in the session list, e.g. "Sohbet desktop on Linux".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_info: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct LoginResponse {
    /// Bearer token for `Authorization: Bearer <token>`; 256 bits from a CSPRNG.
    pub token: String,
    pub user: User,
    /// When the session lapses if unused; every authenticated request pushes it forward.
    pub expires_at: DateTime<Utc>,
}

/// One of the caller's sessions, as listed by `GET /api/auth/sessions`. The token itself is
/// never listed; `session_id` names the session for revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct SessionInfo {
    pub session_id: String,
    pub ip_address: String,
    pub device_info: String,
    pub created_at: DateTime<Utc>,
    /// Seconds until the session lapses if unused.
    pub expires_in: i64,
    /// True for the session making this request.
    pub current: bool,
}

/// `DELETE /api/auth/sessions` answers with how many other sessions were revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct RevokedSessions {
    pub revoked: u64,
}
