//! Friend requests, friends and blocks (the rules live in `domain::friends` and
//! `domain::blocks`).

use axum::{extract::State, http::StatusCode};
use protocol::{
    error::ErrorBody,
    friends::{
        Friend, FriendRequestBody, FriendRequestOutcome, FriendRequestState, FriendRequests,
    },
    UserId,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Auth,
    domain::{
        blocks,
        friends::{self, RequestTarget},
        FriendCode, Username,
    },
    error::{ApiError, ApiResult},
    extract::{Json, Path},
    rate_limit::{self, Action},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_friends))
        .routes(routes!(remove_friend))
        .routes(routes!(list_requests, send_request))
        .routes(routes!(cancel_request))
        .routes(routes!(accept_request))
        .routes(routes!(decline_request))
        .routes(routes!(list_blocked))
        .routes(routes!(block, unblock))
}

/// GET /api/friends
///
/// My friends, by name. Read from `--database-read-url` when set (it may lag the primary).
#[utoipa::path(get, path = "/api/friends", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = Vec<Friend>), (status = 401, body = ErrorBody)))]
async fn list_friends(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Vec<Friend>>> {
    Ok(Json(
        friends::list_friends(&state.for_reads(), auth.user_id()).await?,
    ))
}

/// GET /api/friends/requests
///
/// Requests sent to me (`incoming`) and by me (`outgoing`), newest first.
#[utoipa::path(get, path = "/api/friends/requests", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = FriendRequests), (status = 401, body = ErrorBody)))]
async fn list_requests(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<FriendRequests>> {
    Ok(Json(friends::list_requests(&state, auth.user_id()).await?))
}

/// Which user a request names: exactly one of friend code or username.
fn request_target(req: &FriendRequestBody) -> ApiResult<RequestTarget> {
    match (&req.friend_code, &req.username) {
        (Some(code), None) => Ok(RequestTarget::FriendCode(FriendCode::parse(code)?)),
        (None, Some(name)) => Ok(RequestTarget::Username(Username::parse(name)?)),
        _ => Err(ApiError::validation(
            "friend_code",
            "give exactly one of friend_code or username",
        )),
    }
}

/// POST /api/friends/requests
///
/// Sends a friend request by friend code or username: 202 `pending`. If that user had
/// already asked me, we become friends at once: 200 `friends`. Asking again is harmless
/// (same answer). A request to someone who blocked me answers exactly like any pending
/// request and is never shown to them. 409 `blocked` if I blocked them (unblock first).
#[utoipa::path(post, path = "/api/friends/requests", tag = "friends", security(("bearer" = [])),
    request_body = FriendRequestBody,
    responses(
        (status = 202, description = "request pending", body = FriendRequestOutcome),
        (status = 200, description = "now friends", body = FriendRequestOutcome),
        (status = 404, description = "no such user", body = ErrorBody),
        (status = 409, description = "`blocked`: I block this user", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody)))]
async fn send_request(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<FriendRequestBody>,
) -> ApiResult<(StatusCode, Json<FriendRequestOutcome>)> {
    let target = request_target(&req)?;
    rate_limit::limit(&state, auth.user_id(), &[Action::FriendRequest]).await?;
    let outcome = friends::send_request(&state, auth.user_id(), &target).await?;
    let status = match outcome.state {
        FriendRequestState::Friends => StatusCode::OK,
        FriendRequestState::Pending => StatusCode::ACCEPTED,
    };
    Ok((status, Json(outcome)))
}

/// DELETE /api/friends/requests/{user_id}
///
/// Withdraws my pending request to that user. 404 if there is none.
#[utoipa::path(delete, path = "/api/friends/requests/{user_id}", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn cancel_request(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<StatusCode> {
    friends::cancel_request(&state, auth.user_id(), other).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /api/friends/requests/{user_id}/accept
///
/// Accepts that user's pending request to me: we become friends. 404 if there is none.
#[utoipa::path(post, path = "/api/friends/requests/{user_id}/accept", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = Friend), (status = 404, body = ErrorBody)))]
async fn accept_request(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<Json<Friend>> {
    Ok(Json(
        friends::accept_request(&state, auth.user_id(), other).await?,
    ))
}

/// POST /api/friends/requests/{user_id}/decline
///
/// Declines that user's pending request to me. 404 if there is none.
#[utoipa::path(post, path = "/api/friends/requests/{user_id}/decline", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn decline_request(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<StatusCode> {
    friends::decline_request(&state, auth.user_id(), other).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /api/friends/{user_id}
///
/// Ends a friendship. Our direct message stays readable but becomes read-only until we are
/// friends again. 404 if we are not friends.
#[utoipa::path(delete, path = "/api/friends/{user_id}", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove_friend(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<StatusCode> {
    friends::remove_friend(&state, auth.user_id(), other).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /api/blocks
///
/// Users I block, most recent first.
#[utoipa::path(get, path = "/api/blocks", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = Vec<Friend>), (status = 401, body = ErrorBody)))]
async fn list_blocked(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Vec<Friend>>> {
    Ok(Json(blocks::list_blocked(&state, auth.user_id()).await?))
}

/// PUT /api/blocks/{user_id}
///
/// Blocks a user: ends a friendship or pending request between us, stops their requests and
/// their messages in our direct message. They are not told: to them it looks like being
/// unfriended, and a request they had sent me stays "pending" on their side. Idempotent.
#[utoipa::path(put, path = "/api/blocks/{user_id}", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 204), (status = 404, description = "no such user", body = ErrorBody)))]
async fn block(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<StatusCode> {
    blocks::block(&state, auth.user_id(), other).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /api/blocks/{user_id}
///
/// Lifts my block. If they block me too, their block stays. 404 if I do not block them.
#[utoipa::path(delete, path = "/api/blocks/{user_id}", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn unblock(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<StatusCode> {
    blocks::unblock(&state, auth.user_id(), other).await?;
    Ok(StatusCode::NO_CONTENT)
}
