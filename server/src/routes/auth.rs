//! Registration, login, logout and the session list.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State},
    http::StatusCode,
};
use protocol::{
    auth::{LoginRequest, LoginResponse, RegisterRequest, RevokedSessions, SessionInfo},
    error::ErrorBody,
    users::User,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Auth,
    domain::{new_friend_code, parse_display_name, Email, Password, Username},
    error::{violated_constraint, ApiError, ApiResult},
    extract::{Json, Path},
    rate_limit,
    routes::users::{UserRow, FRIEND_CODE_ATTEMPTS},
    state::AppState,
    user_columns,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(list_sessions, revoke_other_sessions))
        .routes(routes!(revoke_session))
}

/// POST /api/auth/register
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, body = User),
        (status = 409, description = "`username_taken` or `email_taken`", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let username = Username::parse(&req.username)?;
    let email = Email::parse(&req.email)?;
    let password = Password::parse(req.password)?;
    let display_name = req
        .display_name
        .as_deref()
        .map(parse_display_name)
        .transpose()?;
    let hash = state.passwords.hash(password.expose()).await?;

    for _ in 0..FRIEND_CODE_ATTEMPTS {
        let inserted = sqlx::query_as::<_, UserRow>(concat!(
            "insert into users (username, email, password_hash, friend_code, display_name)
             values ($1, $2, $3, $4, $5)
             returning ",
            user_columns!()
        ))
        .bind(username.as_str())
        .bind(email.as_str())
        .bind(&hash)
        .bind(new_friend_code())
        .bind(&display_name)
        .fetch_one(&state.db)
        .await;
        match inserted {
            Ok(row) => {
                tracing::info!(user_id = row.user_id, "registered");
                return Ok((StatusCode::CREATED, Json(row.into())));
            }
            Err(e) => match violated_constraint(&e) {
                Some("users_username_key") => {
                    return Err(ApiError::Conflict {
                        code: "username_taken",
                        message: "that username is taken",
                    })
                }
                Some("users_email_key") => {
                    return Err(ApiError::Conflict {
                        code: "email_taken",
                        message: "an account with that email exists",
                    })
                }
                Some("users_friend_code_key") => continue,
                _ => return Err(e.into()),
            },
        }
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "no free friend code after {FRIEND_CODE_ATTEMPTS} draws"
    )))
}

#[derive(sqlx::FromRow)]
struct LoginRow {
    password_hash: String,
    #[sqlx(flatten)]
    user: UserRow,
}

/// POST /api/auth/login
///
/// `login` is a username or an email. An unknown account and a wrong password give the same
/// `invalid_credentials` answer after the same argon2 work. Attempts are limited per client
/// IP and failures per login name (429 with `Retry-After`).
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let settings = &state.settings;
    let ip = peer.ip().to_string();
    rate_limit::hit(
        &state.redis,
        &state.keys.login_ip(&ip),
        settings.login_ip_limit,
        settings.login_window_secs,
    )
    .await?;
    let login = req.login.trim().to_lowercase();
    // Bound the key length: the login name is attacker-chosen.
    let account_key = state
        .keys
        .login_account(&login.chars().take(254).collect::<String>());
    rate_limit::check(&state.redis, &account_key, settings.login_account_limit).await?;

    // Usernames cannot contain '@', so the login's shape says which column to look in.
    let query = if login.contains('@') {
        concat!(
            "select password_hash, ",
            user_columns!(),
            " from users where lower(email) = $1"
        )
    } else {
        concat!(
            "select password_hash, ",
            user_columns!(),
            " from users where username = $1"
        )
    };
    let row: Option<LoginRow> = sqlx::query_as(query)
        .bind(&login)
        .fetch_optional(&state.db)
        .await?;
    let (hash, user) = match row {
        Some(r) => (Some(r.password_hash), Some(r.user)),
        None => (None, None),
    };
    let verified = state.passwords.verify(&req.password, hash).await?;
    let user = match user {
        Some(user) if verified => user,
        _ => {
            rate_limit::record(&state.redis, &account_key, settings.login_window_secs).await?;
            return Err(ApiError::InvalidCredentials);
        }
    };
    rate_limit::reset(&state.redis, &account_key).await?;
    let token = state
        .sessions
        .create(
            user.user_id,
            &user.username,
            &ip,
            req.device_info.as_deref(),
        )
        .await?;
    tracing::info!(user_id = user.user_id, "logged in");
    Ok(Json(LoginResponse {
        token,
        user: user.into(),
        expires_at: state.sessions.expires_at(),
    }))
}

/// POST /api/auth/logout
///
/// Ends the calling session; its token stops working at once.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(State(state): State<AppState>, auth: Auth) -> ApiResult<StatusCode> {
    let ended = state.sessions.end(&auth.0).await?;
    state
        .events
        .sessions_ended(&state.keys.control_channel(), auth.user_id(), ended)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /api/auth/sessions
///
/// The caller's live sessions, newest first; `current` marks this one. Tokens are never
/// listed.
#[utoipa::path(get, path = "/api/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Vec<SessionInfo>), (status = 401, body = ErrorBody)))]
async fn list_sessions(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Vec<SessionInfo>>> {
    Ok(Json(
        state.sessions.list(auth.user_id(), &auth.0.token).await?,
    ))
}

/// DELETE /api/auth/sessions
///
/// Revokes every session of the caller except the calling one ("sign out everywhere else").
#[utoipa::path(delete, path = "/api/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = RevokedSessions), (status = 401, body = ErrorBody)))]
async fn revoke_other_sessions(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<RevokedSessions>> {
    let revoked = state
        .sessions
        .revoke_others(auth.user_id(), &auth.0.token)
        .await?;
    let count = revoked.len() as u64;
    let channel = state.keys.control_channel();
    state
        .events
        .sessions_ended(&channel, auth.user_id(), revoked)
        .await;
    Ok(Json(RevokedSessions { revoked: count }))
}

/// DELETE /api/auth/sessions/{session_id}
///
/// Revokes one of the caller's sessions. Any id that is not the caller's is 404.
#[utoipa::path(delete, path = "/api/auth/sessions/{session_id}", tag = "auth", security(("bearer" = [])),
    params(("session_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn revoke_session(
    State(state): State<AppState>,
    auth: Auth,
    Path(session_id): Path<String>,
) -> ApiResult<StatusCode> {
    state.sessions.revoke(auth.user_id(), &session_id).await?;
    state
        .events
        .sessions_ended(
            &state.keys.control_channel(),
            auth.user_id(),
            vec![session_id],
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}
