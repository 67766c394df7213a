//! Users: the stored profile, what others see of it, and the changes a user makes to their
//! own account.

use chrono::{DateTime, Utc};
use protocol::{
    gateway::Presence,
    users::{PublicUser, User, UserStatus},
    UserId,
};
use sqlx::PgExecutor;

use crate::{
    domain::{DisplayName, FriendCode, ProfilePicUrl},
    error::{violated_constraint, ApiError, ApiResult},
    gateway::presence,
    state::AppState,
};

/// How many times to draw a new friend code when the drawn one is taken (rare: see
/// `values::FRIEND_CODE_ALPHABET`).
pub const FRIEND_CODE_ATTEMPTS: usize = 5;

/// A `users` row as a [`User`] is made of it.
pub struct UserRow {
    pub user_id: i64,
    pub username: String,
    pub email: String,
    pub display_name: Option<String>,
    pub profile_pic: Option<String>,
    pub friend_code: String,
    pub status: String,
    pub last_seen: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        Self {
            user_id: r.user_id,
            username: r.username,
            email: r.email,
            display_name: r.display_name,
            profile_pic: r.profile_pic,
            friend_code: r.friend_code,
            // The column's CHECK allows only these four values.
            status: UserStatus::parse(&r.status).unwrap_or(UserStatus::Online),
            last_seen: r.last_seen,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A `users` row as others see it.
#[derive(serde::Deserialize)]
pub struct PublicUserRow {
    pub user_id: i64,
    pub username: String,
    pub display_name: Option<String>,
    pub profile_pic: Option<String>,
    pub status: String,
    pub last_seen: Option<DateTime<Utc>>,
}

/// The [`PublicUserRow`] inside a flat row that selected the public columns of `users`
/// next to others (`query_as!` fills flat rows only).
macro_rules! public_user_row {
    ($row:ident) => {
        $crate::domain::users::PublicUserRow {
            user_id: $row.user_id,
            username: $row.username,
            display_name: $row.display_name,
            profile_pic: $row.profile_pic,
            status: $row.status,
            last_seen: $row.last_seen,
        }
    };
}
pub(crate) use public_user_row;

impl From<PublicUserRow> for PublicUser {
    fn from(r: PublicUserRow) -> Self {
        Self {
            user_id: r.user_id,
            username: r.username,
            display_name: r.display_name,
            profile_pic: r.profile_pic,
            // The column's CHECK allows only the four statuses.
            status: Presence::shown(UserStatus::parse(&r.status).unwrap_or(UserStatus::Online)),
            last_seen: r.last_seen,
        }
    }
}

/// Shows friends' and co-members' real presence: `offline` unless they have a live gateway
/// connection (the columns alone only know the status they chose).
pub async fn apply_presence<'a>(
    state: &AppState,
    users: impl IntoIterator<Item = &'a mut PublicUser>,
) -> ApiResult<()> {
    let mut users: Vec<&mut PublicUser> = users.into_iter().collect();
    let ids: Vec<i64> = users.iter().map(|u| u.user_id).collect();
    let online = state.gateway.presence.online(&ids).await?;
    for (user, online) in users.iter_mut().zip(online) {
        if !online {
            user.status = Presence::Offline;
        }
    }
    Ok(())
}

/// What someone who is neither a friend nor a co-member may see: no presence, no last seen.
pub fn as_stranger(mut user: PublicUser) -> PublicUser {
    user.status = Presence::Offline;
    user.last_seen = None;
    user
}

/// Another user's profile (their presence as the columns say: see [`apply_presence`] and
/// [`as_stranger`]); `None` if there is no such user.
pub async fn fetch_public_user(
    db: impl PgExecutor<'_>,
    user_id: i64,
) -> ApiResult<Option<PublicUser>> {
    let row = sqlx::query_as!(
        PublicUserRow,
        "select u.user_id, u.username, u.display_name, u.profile_pic, u.status, u.last_seen
           from users u where u.user_id = $1",
        user_id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(PublicUser::from))
}

/// The signed-in user's own account; 401 if it no longer exists.
pub async fn fetch_user(db: impl PgExecutor<'_>, user_id: i64) -> ApiResult<User> {
    let row = sqlx::query_as!(
        UserRow,
        "select user_id, username, email, display_name, profile_pic, friend_code, status,
                last_seen, created_at, updated_at
           from users where user_id = $1",
        user_id
    )
    .fetch_optional(db)
    .await?;
    // A session whose account was deleted is as good as no session.
    row.map(User::from).ok_or(ApiError::Unauthorized)
}

/// A change to one's own profile: `None` leaves a field alone; `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub display_name: Option<Option<DisplayName>>,
    pub profile_pic: Option<Option<ProfilePicUrl>>,
    pub status: Option<UserStatus>,
}

/// Applies a profile change and, when the chosen status changed while the user is online,
/// tells whoever sees their presence.
pub async fn update_profile(
    state: &AppState,
    user_id: UserId,
    change: ProfileChange,
) -> ApiResult<User> {
    let ProfileChange {
        display_name,
        profile_pic,
        status,
    } = change;
    if display_name.is_none() && profile_pic.is_none() && status.is_none() {
        return fetch_user(&state.db, user_id).await;
    }
    let (set_name, set_pic) = (display_name.is_some(), profile_pic.is_some());
    let (display_name, profile_pic) = (display_name.flatten(), profile_pic.flatten());
    let row = sqlx::query_as!(
        UserRow,
        "update users set
             display_name = case when $2 then $3 else display_name end,
             profile_pic  = case when $4 then $5 else profile_pic end,
             status       = coalesce($6, status)
         where user_id = $1
         returning user_id, username, email, display_name, profile_pic, friend_code, status,
                   last_seen, created_at, updated_at",
        user_id,
        set_name,
        display_name.as_ref().map(DisplayName::as_str),
        set_pic,
        profile_pic.as_ref().map(ProfilePicUrl::as_str),
        status.map(UserStatus::as_str)
    )
    .fetch_optional(&state.db)
    .await?;
    let user: User = row.map(User::from).ok_or(ApiError::Unauthorized)?;
    if status.is_some() {
        let online = state.gateway.presence.online(&[user.user_id]).await?;
        if online.first() == Some(&true) {
            presence::announce(
                &state.db,
                &state.events,
                user.user_id,
                presence::Change::StatusChanged,
            )
            .await;
        }
    }
    Ok(user)
}

/// Draws a new friend code for the user; the old one stops working at once.
pub async fn regenerate_friend_code(db: &sqlx::PgPool, user_id: UserId) -> ApiResult<FriendCode> {
    for _ in 0..FRIEND_CODE_ATTEMPTS {
        let code = FriendCode::random();
        let result = sqlx::query!(
            "update users set friend_code = $2 where user_id = $1",
            user_id,
            code.as_str()
        )
        .execute(db)
        .await;
        match result {
            Ok(done) if done.rows_affected() == 1 => return Ok(code),
            Ok(_) => return Err(ApiError::Unauthorized),
            Err(e) if violated_constraint(&e) == Some("users_friend_code_key") => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "no free friend code after {FRIEND_CODE_ATTEMPTS} draws"
    )))
}
