//! Messages and read status (the rules live in `domain::messages` and
//! `domain::read_status`).

use axum::{extract::State, http::StatusCode};
use protocol::{
    error::ErrorBody,
    messages::{
        EditMessageRequest, HistoryQuery, MarkReadRequest, Message, MessagePage, ReadState,
        Receipt, SendMessageRequest,
    },
    GroupId, MessageId,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Auth,
    domain::{
        messages::{self, Anchor, Sent},
        read_status, MessageContent, Nonce,
    },
    error::{ApiError, ApiResult},
    extract::{Json, Path, Query},
    rate_limit::{self, Action},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(history, send_message))
        .routes(routes!(edit_message, delete_message))
        .routes(routes!(receipts))
        .routes(routes!(read_state, mark_read))
}

/// History page size when the client does not say, and the most it may ask for.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 100;

/// POST /api/groups/{group_id}/messages
///
/// Sends a message: 201. With a `nonce` already used by me in this group, answers 200 with
/// the first message instead of storing a duplicate (409 `nonce_reused` if it was used in
/// another group). In a DM, only friends send (403 otherwise: the DM is read-only).
#[utoipa::path(post, path = "/api/groups/{group_id}/messages", tag = "messages",
    security(("bearer" = [])), params(("group_id" = i64, Path)), request_body = SendMessageRequest,
    responses((status = 201, body = Message), (status = 200, description = "nonce replay", body = Message),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "`rate_limited`: a burst or a sustained rate", body = ErrorBody)))]
async fn send_message(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<GroupId>,
    Json(req): Json<SendMessageRequest>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let content = MessageContent::parse(&req.content)?;
    let nonce = req.nonce.as_deref().map(Nonce::parse).transpose()?;
    rate_limit::limit(
        &state,
        auth.user_id(),
        &[Action::MessageBurst, Action::MessageSustained],
    )
    .await?;
    match messages::send(&state, group_id, auth.user_id(), &content, nonce).await? {
        Sent::Created(message) => Ok((StatusCode::CREATED, Json(message))),
        Sent::Replayed(message) => Ok((StatusCode::OK, Json(message))),
    }
}

/// GET /api/groups/{group_id}/messages
///
/// A page of history, oldest first, by `seq`: the latest messages, or those `before`,
/// `after` or `around` a message of this group; `limit` 1–100 (default 50). Paging `after`
/// never skips a message, even one that committed late. Every page is an index range, so
/// its cost does not grow with the history. Read from `--database-read-url` when set: a page
/// may lag the primary by the replica's delay (the gateway and its replay never do).
#[utoipa::path(get, path = "/api/groups/{group_id}/messages", tag = "messages",
    security(("bearer" = [])), params(("group_id" = i64, Path), HistoryQuery),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn history(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<GroupId>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<MessagePage>> {
    let limit = match q.limit {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::InvalidParameter(format!(
                "limit must be 1 to {MAX_PAGE}"
            )))
        }
    };
    let anchor = match (q.before, q.after, q.around) {
        (None, None, None) => Anchor::Latest,
        (Some(before), None, None) => Anchor::Before(before),
        (None, Some(after), None) => Anchor::After(after),
        (None, None, Some(around)) => Anchor::Around(around),
        _ => {
            return Err(ApiError::InvalidParameter(
                "give at most one of before, after, around".into(),
            ))
        }
    };
    Ok(Json(
        messages::history(&state.for_reads(), group_id, auth.user_id(), anchor, limit).await?,
    ))
}

/// PATCH /api/groups/{group_id}/messages/{message_id}
///
/// Edits my own message (only the sender may: 403 otherwise); it is then shown as edited
/// (`edited_at`). In a read-only DM nothing can be edited.
#[utoipa::path(patch, path = "/api/groups/{group_id}/messages/{message_id}", tag = "messages",
    security(("bearer" = [])), params(("group_id" = i64, Path), ("message_id" = i64, Path)),
    request_body = EditMessageRequest,
    responses((status = 200, body = Message), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn edit_message(
    State(state): State<AppState>,
    auth: Auth,
    Path((group_id, message_id)): Path<(GroupId, MessageId)>,
    Json(req): Json<EditMessageRequest>,
) -> ApiResult<Json<Message>> {
    let content = MessageContent::parse(&req.content)?;
    Ok(Json(
        messages::edit(&state, group_id, auth.user_id(), message_id, &content).await?,
    ))
}

/// DELETE /api/groups/{group_id}/messages/{message_id}
///
/// Deletes my own message, or, as admin or owner of a group, anyone's (403 otherwise).
/// Its `seq` is not reused.
#[utoipa::path(delete, path = "/api/groups/{group_id}/messages/{message_id}", tag = "messages",
    security(("bearer" = [])), params(("group_id" = i64, Path), ("message_id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_message(
    State(state): State<AppState>,
    auth: Auth,
    Path((group_id, message_id)): Path<(GroupId, MessageId)>,
) -> ApiResult<StatusCode> {
    messages::delete(&state, group_id, auth.user_id(), message_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /api/groups/{group_id}/read
///
/// My read watermark and unread count in a group.
#[utoipa::path(get, path = "/api/groups/{group_id}/read", tag = "messages",
    security(("bearer" = [])), params(("group_id" = i64, Path)),
    responses((status = 200, body = ReadState), (status = 404, body = ErrorBody)))]
async fn read_state(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<GroupId>,
) -> ApiResult<Json<ReadState>> {
    Ok(Json(
        read_status::read_state(&state, group_id, auth.user_id()).await?,
    ))
}

/// POST /api/groups/{group_id}/read
///
/// Marks everything up to and including a message as read by me. Never moves backwards:
/// an older message leaves the watermark where it is.
#[utoipa::path(post, path = "/api/groups/{group_id}/read", tag = "messages",
    security(("bearer" = [])), params(("group_id" = i64, Path)), request_body = MarkReadRequest,
    responses((status = 200, body = ReadState), (status = 404, body = ErrorBody)))]
async fn mark_read(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<GroupId>,
    Json(req): Json<MarkReadRequest>,
) -> ApiResult<Json<ReadState>> {
    Ok(Json(
        read_status::mark_read(&state, group_id, auth.user_id(), req.message_id).await?,
    ))
}

/// GET /api/groups/{group_id}/messages/{message_id}/receipts
///
/// Who (other than the sender) has read the message, and when.
#[utoipa::path(get, path = "/api/groups/{group_id}/messages/{message_id}/receipts", tag = "messages",
    security(("bearer" = [])), params(("group_id" = i64, Path), ("message_id" = i64, Path)),
    responses((status = 200, body = Vec<Receipt>), (status = 404, body = ErrorBody)))]
async fn receipts(
    State(state): State<AppState>,
    auth: Auth,
    Path((group_id, message_id)): Path<(GroupId, MessageId)>,
) -> ApiResult<Json<Vec<Receipt>>> {
    Ok(Json(
        read_status::receipts(&state, group_id, auth.user_id(), message_id).await?,
    ))
}
