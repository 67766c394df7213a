//! The signed-in user's own account: read, update, new friend code.

use axum::extract::State;
use chrono::{DateTime, Utc};
use protocol::{
    gateway::Presence,
    users::{FriendCodeResponse, PublicUser, UpdateMeRequest, User, UserStatus},
};
use sqlx::PgExecutor;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Auth,
    domain::{new_friend_code, parse_display_name, parse_profile_pic},
    error::{violated_constraint, ApiError, ApiResult},
    extract::Json,
    gateway::presence,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me, update_me))
        .routes(routes!(regenerate_friend_code))
}

/// How many times to draw a new friend code when the drawn one is taken (rare: see
/// `domain::FRIEND_CODE_ALPHABET`).
pub const FRIEND_CODE_ATTEMPTS: usize = 5;

/// The columns of `users` a [`User`] is made of, as a literal so queries stay `&'static str`
/// (built with `concat!`, never from runtime values).
#[macro_export]
macro_rules! user_columns {
    () => {
        "user_id, username, email, display_name, profile_pic, friend_code, status, last_seen, \
         created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
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

/// The columns of `users u` a [`PublicUser`] is made of (see [`user_columns!`]).
#[macro_export]
macro_rules! public_user_columns {
    () => {
        "u.user_id, u.username, u.display_name, u.profile_pic, u.status, u.last_seen"
    };
}

#[derive(sqlx::FromRow, serde::Deserialize)]
pub struct PublicUserRow {
    pub user_id: i64,
    pub username: String,
    pub display_name: Option<String>,
    pub profile_pic: Option<String>,
    pub status: String,
    pub last_seen: Option<DateTime<Utc>>,
}

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
    let row: Option<PublicUserRow> = sqlx::query_as(concat!(
        "select ",
        public_user_columns!(),
        " from users u where u.user_id = $1"
    ))
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(PublicUser::from))
}

pub async fn fetch_user(db: impl PgExecutor<'_>, user_id: i64) -> ApiResult<User> {
    let row: Option<UserRow> = sqlx::query_as(concat!(
        "select ",
        user_columns!(),
        " from users where user_id = $1"
    ))
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    // A session whose account was deleted is as good as no session.
    row.map(User::from).ok_or(ApiError::Unauthorized)
}

/// GET /api/users/me
#[utoipa::path(get, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = protocol::error::ErrorBody)))]
async fn get_me(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<User>> {
    Ok(Json(fetch_user(&state.db, auth.user_id()).await?))
}

/// PATCH /api/users/me
///
/// Absent fields are left alone; `null` clears `display_name` or `profile_pic`.
#[utoipa::path(patch, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses((status = 200, body = User), (status = 422, body = protocol::error::ErrorBody)))]
async fn update_me(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<UpdateMeRequest>,
) -> ApiResult<Json<User>> {
    let display_name = req
        .display_name
        .map(|v| v.as_deref().map(parse_display_name).transpose())
        .transpose()?;
    let profile_pic = req
        .profile_pic
        .map(|v| v.as_deref().map(parse_profile_pic).transpose())
        .transpose()?;
    if display_name.is_none() && profile_pic.is_none() && req.status.is_none() {
        return get_me(State(state), auth).await;
    }
    let row: Option<UserRow> = sqlx::query_as(concat!(
        "update users set
             display_name = case when $2 then $3 else display_name end,
             profile_pic  = case when $4 then $5 else profile_pic end,
             status       = coalesce($6, status)
         where user_id = $1
         returning ",
        user_columns!()
    ))
    .bind(auth.user_id())
    .bind(display_name.is_some())
    .bind(display_name.flatten())
    .bind(profile_pic.is_some())
    .bind(profile_pic.flatten())
    .bind(req.status.map(UserStatus::as_str))
    .fetch_optional(&state.db)
    .await?;
    let user: User = row.map(User::from).ok_or(ApiError::Unauthorized)?;
    if req.status.is_some() {
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
    Ok(Json(user))
}

/// POST /api/users/me/friend-code
///
/// Draws a new friend code; the old one stops working at once.
#[utoipa::path(post, path = "/api/users/me/friend-code", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = FriendCodeResponse), (status = 401, body = protocol::error::ErrorBody)))]
async fn regenerate_friend_code(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<FriendCodeResponse>> {
    for _ in 0..FRIEND_CODE_ATTEMPTS {
        let code = new_friend_code();
        let result = sqlx::query("update users set friend_code = $2 where user_id = $1")
            .bind(auth.user_id())
            .bind(&code)
            .execute(&state.db)
            .await;
        match result {
            Ok(done) if done.rows_affected() == 1 => {
                return Ok(Json(FriendCodeResponse { friend_code: code }))
            }
            Ok(_) => return Err(ApiError::Unauthorized),
            Err(e) if violated_constraint(&e) == Some("users_friend_code_key") => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "no free friend code after {FRIEND_CODE_ATTEMPTS} draws"
    )))
}
