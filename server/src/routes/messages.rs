//! Messages and read status.
//!
//! Ordering: a message's `seq` comes from `chat_groups.last_seq`, incremented in the
//! inserting transaction. The row lock on the group serializes senders, so sequence order is
//! commit order and a reader paging "after X" never skips a message that committed late.
//!
//! Read status: each member has a watermark (`group_members.last_read_seq`): everything up
//! to it is read. Sending advances the sender's own watermark (you have read what you
//! wrote), so my unread count is the number of messages after my watermark: the sequence
//! span minus the deletions in it (`message_deletions`), without counting messages at all. `messages.is_read` is true once every
//! other member has read the message, i.e. once the minimum watermark of the group reaches
//! it; whenever a watermark moves, only the newly covered range of that minimum is flipped.
//! A receipt row (`message_read_status`) records when a member read up to which message.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use protocol::{
    error::ErrorBody,
    gateway::Event,
    groups::Role,
    messages::{
        EditMessageRequest, HistoryQuery, MarkReadRequest, Message, MessagePage, ReadState,
        Receipt, SendMessageRequest,
    },
    GroupId, MessageId, UserId,
};
use sqlx::{PgConnection, PgExecutor};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Auth,
    domain::{parse_nonce, MessageContent},
    error::{violated_constraint, ApiError, ApiResult},
    extract::{Json, Path, Query},
    routes::groups::{ensure_dm_open, membership},
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

/// The columns of `messages m` a [`Message`] is made of.
macro_rules! message_columns {
    () => {
        "m.message_id, m.group_id, m.sender_id, m.content, m.seq, m.is_read, m.sent_at, \
         m.updated_at, m.edited_at, m.nonce"
    };
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    message_id: i64,
    group_id: i64,
    sender_id: Option<i64>,
    content: String,
    seq: i64,
    is_read: bool,
    sent_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    nonce: Option<String>,
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Self {
        Self {
            message_id: r.message_id,
            group_id: r.group_id,
            sender_id: r.sender_id,
            content: r.content,
            seq: r.seq,
            is_read: r.is_read,
            sent_at: r.sent_at,
            updated_at: r.updated_at,
            edited_at: r.edited_at,
            nonce: r.nonce,
        }
    }
}

// The read-status queries, public so a test can EXPLAIN exactly what the API runs.

/// My unread count: the messages after my watermark ($2), all of them others' since sending
/// moves my own watermark past my message. Sequence numbers are dense but for deletions, so
/// this is the sequence span minus the deletions in it: one primary-key read of the group
/// and a count of the (few) gaps, never a count of the messages themselves.
pub const UNREAD_COUNT_SQL: &str = "select g.last_seq - $2
        - (select count(*) from message_deletions d where d.group_id = $1 and d.seq > $2)
     from chat_groups g where g.group_id = $1";
/// Moves a watermark forward (never back; one row by `group_members_group_user_key`) and,
/// if it moved, records the receipt for the message that moved it — one round trip. No row
/// when the watermark was already there (or the member is gone).
pub const ADVANCE_WATERMARK_SQL: &str = "with moved as (
         update group_members set last_read_seq = $4
          where group_id = $3 and user_id = $2 and last_read_seq < $4
         returning 1)
     insert into message_read_status (message_id, user_id, group_id, seq)
     select $1, $2, $3, $4 from moved
     on conflict (message_id, user_id) do update set is_read = true
     returning read_at";
/// Before a member's watermark moves (under the group's read lock): the group's lowest
/// watermark and the lowest of the other members — the new minimum follows without reading
/// the table again.
pub const WATERMARKS_SQL: &str = "select coalesce(min(last_read_seq), 0),
            min(last_read_seq) filter (where user_id <> $2)
       from group_members where group_id = $1";
/// The group's lowest watermark: over its members (at most the maximum group size).
pub const MIN_WATERMARK_SQL: &str =
    "select coalesce(min(last_read_seq), 0) from group_members where group_id = $1";
/// Flips `is_read` on up to $3 messages, oldest first, that every member has now read (at or
/// below the minimum watermark $2) and are not flipped yet: found through the partial index
/// `messages_not_read_by_all_idx`, never by walking the flipped history.
pub const FLIP_READ_SQL: &str = "update messages set is_read = true
     where message_id = any(array(select message_id from messages
                                   where group_id = $1 and seq <= $2 and not is_read
                                   order by seq limit $3))";

/// A send in one round trip: see `migrations/…0005_send_message_function.sql`.
pub const SEND_SQL: &str = "select * from send_message($1, $2, $3, $4, $5)";

/// SQLSTATE `send_message` raises when the sender is no longer a member.
const NOT_A_MEMBER: &str = "P0002";

#[derive(sqlx::FromRow)]
struct SentRow {
    message_id: MessageId,
    seq: i64,
    sent_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    old_min: i64,
    new_min: i64,
    unfinished: bool,
    members: Vec<UserId>,
}

/// At most this many messages flip inside a request's transaction. The rest (after a first
/// read of a long history) flip after commit in background batches of the same size, so no
/// request holds the group's read lock for longer than one batch.
const FLIP_BATCH: i64 = 1000;

/// Namespace of the advisory locks serializing watermark moves within one group (the two-key
/// form: this constant, and the group id folded into 32 bits; two groups sharing a fold only
/// wait for each other).
const READ_LOCK_NAMESPACE: i32 = 0x5EAD;

/// The group's lowest watermark, taking the group's read lock for the rest of the
/// transaction. Without the lock, two members reading at once could each see the other's
/// old watermark and neither flip `is_read`.
pub async fn min_watermark(tx: &mut PgConnection, group_id: GroupId) -> ApiResult<i64> {
    read_lock(tx, group_id).await?;
    Ok(sqlx::query_scalar(MIN_WATERMARK_SQL)
        .bind(group_id)
        .fetch_one(tx)
        .await?)
}

/// Takes the group's read lock for the rest of the transaction (see [`min_watermark`]).
async fn read_lock(tx: &mut PgConnection, group_id: GroupId) -> ApiResult<()> {
    sqlx::query("select pg_advisory_xact_lock($1, ($2 % 2147483647)::int)")
        .bind(READ_LOCK_NAMESPACE)
        .bind(group_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// Every message up to `up_to_seq` is read by every member; `unfinished` when more than one
/// batch of them is left to flip (see [`publish_all_read`]).
pub struct AllRead {
    pub up_to_seq: i64,
    unfinished: bool,
}

async fn flip_batch(db: impl PgExecutor<'_>, group_id: GroupId, up_to_seq: i64) -> ApiResult<bool> {
    let done = sqlx::query(FLIP_READ_SQL)
        .bind(group_id)
        .bind(up_to_seq)
        .bind(FLIP_BATCH)
        .execute(db)
        .await?;
    Ok(done.rows_affected() >= u64::try_from(FLIP_BATCH).unwrap_or(u64::MAX))
}

/// After a watermark moved or a member left: flips `is_read` on (a first batch of) what
/// every remaining member has now read. `Some` if the minimum watermark rose. Call after
/// [`min_watermark`] in the same transaction.
pub async fn flip_read(
    tx: &mut PgConnection,
    group_id: GroupId,
    old_min: i64,
) -> ApiResult<Option<AllRead>> {
    let new_min: i64 = sqlx::query_scalar(MIN_WATERMARK_SQL)
        .bind(group_id)
        .fetch_one(&mut *tx)
        .await?;
    if new_min <= old_min {
        return Ok(None);
    }
    let unfinished = flip_batch(tx, group_id, new_min).await?;
    Ok(Some(AllRead {
        up_to_seq: new_min,
        unfinished,
    }))
}

/// Flips the rest, one short transaction per batch. Nothing depends on it finishing: the
/// history answers `is_read` from the watermarks, and the next flip in the group picks up
/// whatever a failure left.
async fn finish_flip(db: sqlx::PgPool, group_id: GroupId, up_to_seq: i64) {
    loop {
        match flip_batch(&db, group_id, up_to_seq).await {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, group_id, "is_read left unflipped until the next read");
                return;
            }
        }
    }
}

/// A watermark that moved.
struct Advance {
    read_at: DateTime<Utc>,
    /// Every message up to this seq is now read by all (it rose with this move).
    all_read: Option<AllRead>,
}

/// Moves `user_id`'s watermark up to `seq` (the message `message_id`) and records the
/// receipt. `None` if it was already there, or the user is not a member.
async fn advance_watermark(
    tx: &mut PgConnection,
    group_id: GroupId,
    user_id: UserId,
    seq: i64,
    message_id: MessageId,
) -> ApiResult<Option<Advance>> {
    read_lock(tx, group_id).await?;
    let (old_min, others_min): (i64, Option<i64>) = sqlx::query_as(WATERMARKS_SQL)
        .bind(group_id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    let read_at: Option<DateTime<Utc>> = sqlx::query_scalar(ADVANCE_WATERMARK_SQL)
        .bind(message_id)
        .bind(user_id)
        .bind(group_id)
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(read_at) = read_at else {
        return Ok(None);
    };
    // Only this member's watermark moved (to `seq`), under the lock: the new minimum is the
    // lower of `seq` and everyone else's.
    let new_min = others_min.map_or(seq, |m| m.min(seq));
    let all_read = if new_min > old_min {
        let unfinished = flip_batch(&mut *tx, group_id, new_min).await?;
        Some(AllRead {
            up_to_seq: new_min,
            unfinished,
        })
    } else {
        None
    };
    Ok(Some(Advance { read_at, all_read }))
}

async fn unread_count(
    db: impl PgExecutor<'_>,
    group_id: GroupId,
    watermark: i64,
) -> ApiResult<i64> {
    Ok(sqlx::query_scalar(UNREAD_COUNT_SQL)
        .bind(group_id)
        .bind(watermark)
        .fetch_one(db)
        .await?)
}

async fn by_nonce(
    db: impl PgExecutor<'_>,
    sender: UserId,
    nonce: &str,
) -> ApiResult<Option<Message>> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "select ",
        message_columns!(),
        " from messages m where m.sender_id = $1 and m.nonce = $2"
    ))
    .bind(sender)
    .bind(nonce)
    .fetch_optional(db)
    .await?;
    Ok(row.map(Message::from))
}

/// A retry with a nonce already used: the first message, if it was for this group.
fn replay(existing: Message, group_id: GroupId) -> ApiResult<(StatusCode, Json<Message>)> {
    if existing.group_id != group_id {
        return Err(ApiError::Conflict {
            code: "nonce_reused",
            message: "that nonce was already used for a message in another conversation",
        });
    }
    Ok((StatusCode::OK, Json(existing)))
}

/// After commit: publishes that everything up to `up_to_seq` is read by all, if that moved,
/// and flips what the transaction left in the background.
pub async fn publish_all_read(state: &AppState, group_id: GroupId, all_read: Option<AllRead>) {
    if let Some(AllRead {
        up_to_seq,
        unfinished,
    }) = all_read
    {
        if unfinished {
            tokio::spawn(finish_flip(state.db.clone(), group_id, up_to_seq));
        }
        state
            .events
            .publish_to_group(
                &state.db,
                group_id,
                Event::MessagesRead {
                    group_id,
                    up_to_seq,
                },
            )
            .await;
    }
}

/// POST /api/groups/{group_id}/messages
///
/// Sends a message: 201. With a `nonce` already used by me in this group, answers 200 with
/// the first message instead of storing a duplicate (409 `nonce_reused` if it was used in
/// another group). In a DM, only friends send (403 otherwise: the DM is read-only).
#[utoipa::path(post, path = "/api/groups/{group_id}/messages", tag = "messages",
    security(("bearer" = [])), params(("group_id" = i64, Path)), request_body = SendMessageRequest,
    responses((status = 201, body = Message), (status = 200, description = "nonce replay", body = Message),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn send_message(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<GroupId>,
    Json(req): Json<SendMessageRequest>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let me = auth.user_id();
    let member = membership(&state.db, group_id, me).await?;
    let content = MessageContent::parse(&req.content)?;
    let nonce = req.nonce.as_deref().map(parse_nonce).transpose()?;
    if member.is_dm {
        ensure_dm_open(&state.db, group_id, me).await?;
    }
    // A retry: answer before taking a sequence number.
    if let Some(nonce) = &nonce {
        if let Some(existing) = by_nonce(&state.db, me, nonce).await? {
            return replay(existing, group_id);
        }
    }
    // One round trip (migrations/…0005): seq, message, my watermark and receipt, is_read.
    let sent = sqlx::query_as::<_, SentRow>(SEND_SQL)
        .bind(group_id)
        .bind(me)
        .bind(content.as_str())
        .bind(&nonce)
        .bind(FLIP_BATCH)
        .fetch_optional(&state.db)
        .await;
    let sent = match sent {
        Ok(Some(row)) => row,
        Ok(None) => return Err(ApiError::NotFound("group")),
        // A concurrent retry with the same nonce won; the failed send took no seq.
        Err(e) if violated_constraint(&e) == Some("messages_sender_nonce_key") => {
            let nonce = nonce.as_deref().unwrap_or_default();
            let existing = by_nonce(&state.db, me, nonce)
                .await?
                .ok_or(ApiError::Unavailable)?;
            return replay(existing, group_id);
        }
        // Removed from the group since the check above.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(NOT_A_MEMBER) => {
            return Err(ApiError::NotFound("group"))
        }
        Err(e) => return Err(e.into()),
    };
    let message = Message {
        message_id: sent.message_id,
        group_id,
        sender_id: Some(me),
        content: content.as_str().to_owned(),
        seq: sent.seq,
        is_read: false,
        sent_at: sent.sent_at,
        updated_at: sent.updated_at,
        edited_at: None,
        nonce,
    };
    let all_read = (sent.new_min > sent.old_min).then_some(AllRead {
        up_to_seq: sent.new_min,
        unfinished: sent.unfinished,
    });
    let event = Event::MessageCreated {
        message: message.clone(),
    };
    state.events.publish(sent.members, event).await;
    publish_all_read(&state, group_id, all_read).await;
    Ok((StatusCode::CREATED, Json(message)))
}

/// The seq and sender of a message of this group, or 404.
async fn locate(
    db: impl PgExecutor<'_>,
    group_id: GroupId,
    message_id: MessageId,
) -> ApiResult<(i64, Option<UserId>)> {
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
        "select seq, sender_id from messages where message_id = $1 and group_id = $2",
    )
    .bind(message_id)
    .bind(group_id)
    .fetch_optional(db)
    .await?;
    row.ok_or(ApiError::NotFound("message"))
}

fn page_limit(limit: Option<i64>) -> ApiResult<i64> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::InvalidParameter(format!(
            "limit must be 1 to {MAX_PAGE}"
        ))),
    }
}

/// Latest messages, newest first in SQL (reversed before answering).
pub const LATEST_SQL: &str = concat!(
    "select ",
    message_columns!(),
    " from messages m where m.group_id = $1 order by m.seq desc limit $2"
);
pub const BEFORE_SQL: &str = concat!(
    "select ",
    message_columns!(),
    " from messages m where m.group_id = $1 and m.seq < $2 order by m.seq desc limit $3"
);
pub const FROM_SQL: &str = concat!(
    "select ",
    message_columns!(),
    " from messages m where m.group_id = $1 and m.seq >= $2 order by m.seq limit $3"
);

pub async fn fetch_page(
    db: &sqlx::PgPool,
    sql: &'static str,
    group_id: GroupId,
    seq: Option<i64>,
    limit: i64,
) -> ApiResult<Vec<Message>> {
    let mut query = sqlx::query_as::<_, MessageRow>(sql).bind(group_id);
    if let Some(seq) = seq {
        query = query.bind(seq);
    }
    let rows = query.bind(limit).fetch_all(db).await?;
    Ok(rows.into_iter().map(Message::from).collect())
}

/// Keeps `limit` of `rows` fetched with one extra; says whether there were more.
fn trim(mut rows: Vec<Message>, limit: i64) -> (Vec<Message>, bool) {
    let keep = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > keep;
    rows.truncate(keep);
    (rows, more)
}

/// GET /api/groups/{group_id}/messages
///
/// A page of history, oldest first, by `seq`: the latest messages, or those `before`,
/// `after` or `around` a message of this group; `limit` 1–100 (default 50). Paging `after`
/// never skips a message, even one that committed late. Every page is an index range, so
/// its cost does not grow with the history.
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
    membership(&state.db, group_id, auth.user_id()).await?;
    let limit = page_limit(q.limit)?;
    let db = &state.db;
    let (messages, has_more) = match (q.before, q.after, q.around) {
        (None, None, None) => {
            let (mut rows, more) = trim(
                fetch_page(db, LATEST_SQL, group_id, None, limit + 1).await?,
                limit,
            );
            rows.reverse();
            (rows, more)
        }
        (Some(before), None, None) => {
            let (seq, _) = locate(db, group_id, before).await?;
            let (mut rows, more) = trim(
                fetch_page(db, BEFORE_SQL, group_id, Some(seq), limit + 1).await?,
                limit,
            );
            rows.reverse();
            (rows, more)
        }
        (None, Some(after), None) => {
            let (seq, _) = locate(db, group_id, after).await?;
            trim(
                fetch_page(db, FROM_SQL, group_id, Some(seq + 1), limit + 1).await?,
                limit,
            )
        }
        (None, None, Some(around)) => {
            let (seq, _) = locate(db, group_id, around).await?;
            let older = limit / 2;
            let (mut rows, more_before) = trim(
                fetch_page(db, BEFORE_SQL, group_id, Some(seq), older + 1).await?,
                older,
            );
            rows.reverse();
            let newer = limit - older;
            let (after, more_after) = trim(
                fetch_page(db, FROM_SQL, group_id, Some(seq), newer + 1).await?,
                newer,
            );
            rows.extend(after);
            (rows, more_before || more_after)
        }
        _ => {
            return Err(ApiError::InvalidParameter(
                "give at most one of before, after, around".into(),
            ))
        }
    };
    // From the watermarks: exact even while a long flip is still finishing in the background.
    let all_read: i64 = sqlx::query_scalar(MIN_WATERMARK_SQL)
        .bind(group_id)
        .fetch_one(db)
        .await?;
    let messages = messages
        .into_iter()
        .map(|mut m| {
            m.is_read |= m.seq <= all_read;
            m
        })
        .collect();
    Ok(Json(MessagePage { messages, has_more }))
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
    let me = auth.user_id();
    let member = membership(&state.db, group_id, me).await?;
    let (_, sender) = locate(&state.db, group_id, message_id).await?;
    if sender != Some(me) {
        return Err(ApiError::Forbidden("only the sender can edit a message"));
    }
    let content = MessageContent::parse(&req.content)?;
    if member.is_dm {
        ensure_dm_open(&state.db, group_id, me).await?;
    }
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "update messages m set content = $4, edited_at = now()
          where message_id = $1 and group_id = $2 and sender_id = $3
          returning ",
        message_columns!()
    ))
    .bind(message_id)
    .bind(group_id)
    .bind(me)
    .bind(content.as_str())
    .fetch_optional(&state.db)
    .await?;
    let message = Message::from(row.ok_or(ApiError::NotFound("message"))?);
    state
        .events
        .publish_to_group(
            &state.db,
            group_id,
            Event::MessageUpdated {
                message: message.clone(),
            },
        )
        .await;
    Ok(Json(message))
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
    let me = auth.user_id();
    let member = membership(&state.db, group_id, me).await?;
    let (_, sender) = locate(&state.db, group_id, message_id).await?;
    if sender != Some(me) {
        member.require(
            Role::Admin,
            "only the sender, an admin or the owner can delete a message",
        )?;
    }
    let mut tx = state.db.begin().await?;
    let seq: Option<i64> = sqlx::query_scalar(
        "delete from messages where message_id = $1 and group_id = $2 returning seq",
    )
    .bind(message_id)
    .bind(group_id)
    .fetch_optional(&mut *tx)
    .await?;
    let seq = seq.ok_or(ApiError::NotFound("message"))?;
    // The gap keeps unread counts exact (see UNREAD_COUNT_SQL).
    sqlx::query("insert into message_deletions (group_id, seq) values ($1, $2)")
        .bind(group_id)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    state
        .events
        .publish_to_group(
            &state.db,
            group_id,
            Event::MessageDeleted {
                group_id,
                message_id,
                seq,
            },
        )
        .await;
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
    let member = membership(&state.db, group_id, auth.user_id()).await?;
    Ok(Json(ReadState {
        group_id,
        last_read_seq: member.last_read_seq,
        unread_count: unread_count(&state.db, group_id, member.last_read_seq).await?,
    }))
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
    let me = auth.user_id();
    membership(&state.db, group_id, me).await?;
    let (seq, _) = locate(&state.db, group_id, req.message_id).await?;
    let mut tx = state.db.begin().await?;
    let advance = advance_watermark(&mut tx, group_id, me, seq, req.message_id).await?;
    tx.commit().await?;
    let last_read_seq = membership(&state.db, group_id, me).await?.last_read_seq;
    let read = ReadState {
        group_id,
        last_read_seq,
        unread_count: unread_count(&state.db, group_id, last_read_seq).await?,
    };
    if let Some(advance) = advance {
        state
            .events
            .publish_to_group(
                &state.db,
                group_id,
                Event::ReadUpdated {
                    group_id,
                    user_id: me,
                    last_read_seq: seq,
                    message_id: req.message_id,
                    read_at: advance.read_at,
                },
            )
            .await;
        state
            .events
            .publish(
                [me],
                Event::UnreadUpdated {
                    group_id,
                    last_read_seq: read.last_read_seq,
                    unread_count: read.unread_count,
                },
            )
            .await;
        publish_all_read(&state, group_id, advance.all_read).await;
    }
    Ok(Json(read))
}

/// Members other than the sender whose watermark covers the message, with the time of their
/// first receipt at or after it: one index lookup per member
/// (`message_read_status_group_user_seq_idx`).
pub const RECEIPTS_SQL: &str = "select gm.user_id,
        (select s.read_at from message_read_status s
          where s.group_id = gm.group_id and s.user_id = gm.user_id and s.seq >= $2
          order by s.seq limit 1) as read_at
   from group_members gm
  where gm.group_id = $1 and gm.last_read_seq >= $2 and gm.user_id is distinct from $3
  order by read_at nulls last, gm.user_id";

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
    membership(&state.db, group_id, auth.user_id()).await?;
    let (seq, sender) = locate(&state.db, group_id, message_id).await?;
    let rows: Vec<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(RECEIPTS_SQL)
        .bind(group_id)
        .bind(seq)
        .bind(sender)
        .fetch_all(&state.db)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|(user_id, read_at)| Receipt { user_id, read_at })
            .collect(),
    ))
}
