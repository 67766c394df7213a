//! Group chats and direct messages: create, list, read, rename, delete; members and roles
//! (the rules live in `domain::groups` and `domain::members`).

use axum::{extract::State, http::StatusCode};
use protocol::{
    error::ErrorBody,
    groups::{
        ChangeRoleRequest, CreateGroupRequest, Group, GroupDetail, GroupListItem, Member,
        UpdateGroupRequest, UserRef,
    },
    GroupId, UserId,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Auth,
    domain::{
        groups::{self, GroupChange},
        members, Description, GroupName,
    },
    error::ApiResult,
    extract::{Json, Path},
    rate_limit::{self, Action},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_groups, create_group))
        .routes(routes!(get_group, update_group, delete_group))
        .routes(routes!(open_dm))
        .routes(routes!(add_member))
        .routes(routes!(remove_member, change_role))
        .routes(routes!(leave_group))
        .routes(routes!(transfer_ownership))
}

/// GET /api/groups
///
/// My groups and DMs, most recently active first, each with its latest message and my
/// unread count (messages from others after my read watermark, computed from sequence
/// numbers without counting messages). Read from `--database-read-url` when set (it may
/// lag the primary).
#[utoipa::path(get, path = "/api/groups", tag = "groups", security(("bearer" = [])),
    responses((status = 200, body = Vec<GroupListItem>), (status = 401, body = ErrorBody)))]
async fn list_groups(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Vec<GroupListItem>>> {
    Ok(Json(
        groups::list_groups(&state.for_reads(), auth.user_id()).await?,
    ))
}

/// POST /api/groups
///
/// Creates a group with me as its owner.
#[utoipa::path(post, path = "/api/groups", tag = "groups", security(("bearer" = [])),
    request_body = CreateGroupRequest,
    responses((status = 201, body = GroupDetail), (status = 422, body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody)))]
async fn create_group(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<CreateGroupRequest>,
) -> ApiResult<(StatusCode, Json<GroupDetail>)> {
    let name = GroupName::parse(&req.name)?;
    let description = req
        .description
        .as_deref()
        .map(Description::parse)
        .transpose()?
        .flatten();
    rate_limit::limit(&state, auth.user_id(), &[Action::GroupCreate]).await?;
    let detail = groups::create_group(&state, auth.user_id(), &name, description.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

/// GET /api/groups/{group_id}
///
/// The group with its members. 404 unless I am a member.
#[utoipa::path(get, path = "/api/groups/{group_id}", tag = "groups", security(("bearer" = [])),
    params(("group_id" = i64, Path)),
    responses((status = 200, body = GroupDetail), (status = 404, body = ErrorBody)))]
async fn get_group(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<GroupId>,
) -> ApiResult<Json<GroupDetail>> {
    Ok(Json(
        groups::get_group(&state, group_id, auth.user_id()).await?,
    ))
}

/// PATCH /api/groups/{group_id}
///
/// Renames a group or changes its description (`null` or empty clears it): admin or owner.
/// A DM has neither (403).
#[utoipa::path(patch, path = "/api/groups/{group_id}", tag = "groups", security(("bearer" = [])),
    params(("group_id" = i64, Path)), request_body = UpdateGroupRequest,
    responses((status = 200, body = Group), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_group(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<GroupId>,
    Json(req): Json<UpdateGroupRequest>,
) -> ApiResult<Json<Group>> {
    let change = GroupChange {
        name: req.name.as_deref().map(GroupName::parse).transpose()?,
        description: req
            .description
            .map(|d| {
                d.as_deref()
                    .map(Description::parse)
                    .transpose()
                    .map(Option::flatten)
            })
            .transpose()?,
    };
    Ok(Json(
        groups::update_group(&state, group_id, auth.user_id(), change).await?,
    ))
}

/// DELETE /api/groups/{group_id}
///
/// Deletes a group and all its messages: owner only. A DM cannot be deleted (403).
#[utoipa::path(delete, path = "/api/groups/{group_id}", tag = "groups", security(("bearer" = [])),
    params(("group_id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_group(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<GroupId>,
) -> ApiResult<StatusCode> {
    groups::delete_group(&state, group_id, auth.user_id()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /api/dms
///
/// Gets or creates my direct message with a friend: 201 when created, 200 when it existed.
/// Concurrent calls from either side yield one DM. An existing DM is returned even after
/// an unfriending (read-only); creating one needs a friendship (403 otherwise).
#[utoipa::path(post, path = "/api/dms", tag = "groups", security(("bearer" = [])),
    request_body = UserRef,
    responses((status = 200, body = GroupDetail), (status = 201, body = GroupDetail),
        (status = 403, description = "not friends", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody)))]
async fn open_dm(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<UserRef>,
) -> ApiResult<(StatusCode, Json<GroupDetail>)> {
    let (created, detail) = groups::open_dm(&state, auth.user_id(), req.user_id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(detail)))
}

/// POST /api/groups/{group_id}/members
///
/// Adds one of my friends: admin or owner. 409 `already_member`, 409 `group_full` at the
/// configured maximum size; 403 for a DM or a user who is not my friend. The new member
/// starts with everything before their arrival counted as read.
#[utoipa::path(post, path = "/api/groups/{group_id}/members", tag = "groups",
    security(("bearer" = [])), params(("group_id" = i64, Path)), request_body = UserRef,
    responses((status = 201, body = Member), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn add_member(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<GroupId>,
    Json(req): Json<UserRef>,
) -> ApiResult<(StatusCode, Json<Member>)> {
    let member = members::add_member(&state, group_id, auth.user_id(), req.user_id).await?;
    Ok((StatusCode::CREATED, Json(member)))
}

/// DELETE /api/groups/{group_id}/members/{user_id}
///
/// Removes a member of lower role than mine (admins remove members, the owner removes
/// anyone). My own user id means leaving (see `POST /api/groups/{group_id}/leave`), with its
/// answers: the owner leaving a group with other members gets 409 `owner_must_transfer`.
#[utoipa::path(delete, path = "/api/groups/{group_id}/members/{user_id}", tag = "groups",
    security(("bearer" = [])), params(("group_id" = i64, Path), ("user_id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    Path((group_id, user_id)): Path<(GroupId, UserId)>,
) -> ApiResult<StatusCode> {
    members::remove_member(&state, group_id, auth.user_id(), user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /api/groups/{group_id}/leave
///
/// Leaves a group. The owner must transfer ownership first (409 `owner_must_transfer`),
/// unless they are the last member: then the group is deleted. Nobody leaves a DM (403).
#[utoipa::path(post, path = "/api/groups/{group_id}/leave", tag = "groups",
    security(("bearer" = [])), params(("group_id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn leave_group(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<GroupId>,
) -> ApiResult<StatusCode> {
    members::leave_group(&state, group_id, auth.user_id()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// PATCH /api/groups/{group_id}/members/{user_id}
///
/// Makes a member an admin or an admin a member: owner only. Ownership moves only by
/// transfer (`role: owner` is 422).
#[utoipa::path(patch, path = "/api/groups/{group_id}/members/{user_id}", tag = "groups",
    security(("bearer" = [])), params(("group_id" = i64, Path), ("user_id" = i64, Path)),
    request_body = ChangeRoleRequest,
    responses((status = 200, body = Member), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn change_role(
    State(state): State<AppState>,
    auth: Auth,
    Path((group_id, user_id)): Path<(GroupId, UserId)>,
    Json(req): Json<ChangeRoleRequest>,
) -> ApiResult<Json<Member>> {
    Ok(Json(
        members::change_role(&state, group_id, auth.user_id(), user_id, req.role).await?,
    ))
}

/// POST /api/groups/{group_id}/owner
///
/// Transfers ownership to another member: owner only. The old owner becomes an admin.
#[utoipa::path(post, path = "/api/groups/{group_id}/owner", tag = "groups",
    security(("bearer" = [])), params(("group_id" = i64, Path)), request_body = UserRef,
    responses((status = 200, body = GroupDetail), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn transfer_ownership(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<GroupId>,
    Json(req): Json<UserRef>,
) -> ApiResult<Json<GroupDetail>> {
    Ok(Json(
        members::transfer_ownership(&state, group_id, auth.user_id(), req.user_id).await?,
    ))
}
