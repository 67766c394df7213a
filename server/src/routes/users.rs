//! The signed-in user's own account: read, update, new friend code.

use axum::extract::State;
use protocol::users::{FriendCodeResponse, UpdateMeRequest, User};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Auth,
    domain::{
        users::{self, ProfileChange},
        DisplayName, ProfilePicUrl,
    },
    error::ApiResult,
    extract::Json,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me, update_me))
        .routes(routes!(regenerate_friend_code))
}

/// GET /api/users/me
#[utoipa::path(get, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = protocol::error::ErrorBody)))]
async fn get_me(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<User>> {
    Ok(Json(users::fetch_user(&state.db, auth.user_id()).await?))
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
    let change = ProfileChange {
        display_name: req
            .display_name
            .map(|v| v.as_deref().map(DisplayName::parse).transpose())
            .transpose()?,
        profile_pic: req
            .profile_pic
            .map(|v| v.as_deref().map(ProfilePicUrl::parse).transpose())
            .transpose()?,
        status: req.status,
    };
    Ok(Json(
        users::update_profile(&state, auth.user_id(), change).await?,
    ))
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
    let code = users::regenerate_friend_code(&state.db, auth.user_id()).await?;
    Ok(Json(FriendCodeResponse {
        friend_code: code.into_string(),
    }))
}
