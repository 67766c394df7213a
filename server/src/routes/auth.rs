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
    domain::{
        accounts::{self, Credentials, Registration},
        DisplayName, Email, LoginName, Password, Username,
    },
    error::ApiResult,
    extract::{Json, Path},
    rate_limit::{self, Action},
    state::AppState,
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
        (status = 422, body = ErrorBody),
        (status = 429, description = "`rate_limited`: registrations from this IP", body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let registration = Registration {
        username: Username::parse(&req.username)?,
        email: Email::parse(&req.email)?,
        password: Password::parse(req.password)?,
        display_name: req
            .display_name
            .as_deref()
            .map(DisplayName::parse)
            .transpose()?,
    };
    rate_limit::limit(&state, peer.ip(), &[Action::Register]).await?;
    let user = accounts::register(&state, registration).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// POST /api/auth/login
///
/// `login` is a username or an email. An unknown account and a wrong password give the same
/// `invalid_credentials` answer after the same argon2 work. Attempts are limited per client
/// IP and failures per login name from that IP (429 with `Retry-After`), so nobody can lock
/// another person out. A login with control characters or over 254 characters is 422.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let login = LoginName::parse(&req.login)?;
    let credentials = Credentials {
        login: &login,
        password: &req.password,
        device_info: req.device_info.as_deref(),
        ip: peer.ip().to_string(),
    };
    Ok(Json(accounts::login(&state, credentials).await?))
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
