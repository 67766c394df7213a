//! Messages: sending ([`sending`], with group commit), history, edits and deletions.
//!
//! Ordering: a message's `seq` comes from `chat_groups.last_seq`, incremented in the
//! inserting transaction (see [`sending`]); `seq` order is commit order, so a reader paging
//! "after X" never skips a message that committed late.

mod sending;

pub use sending::{send, SendQueues, Sent};

use chrono::{DateTime, Utc};
use protocol::{
    gateway::Event,
    groups::Role,
    messages::{Message, MessagePage},
    GroupId, MessageId, UserId,
};
use sqlx::PgExecutor;

use crate::{
    domain::{
        groups::{ensure_dm_open, membership},
        read_status::all_read_up_to,
        MessageContent,
    },
    error::{ApiError, ApiResult},
    state::AppState,
};

/// A row of `messages` as the checked queries of this module read it.
pub(crate) struct MessageRow {
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

/// The seq and sender of a message of this group, or 404.
pub async fn locate(
    db: impl PgExecutor<'_>,
    group_id: GroupId,
    message_id: MessageId,
) -> ApiResult<(i64, Option<UserId>)> {
    let row = sqlx::query!(
        "select seq, sender_id from messages where message_id = $1 and group_id = $2",
        message_id,
        group_id
    )
    .fetch_optional(db)
    .await?;
    row.map(|r| (r.seq, r.sender_id))
        .ok_or(ApiError::NotFound("message"))
}

// The history's queries, public so a test can EXPLAIN exactly what the API runs; each is
// checked against the schema at build time through `sqlx::query_file_as!` on the same file.

/// Latest messages, newest first in SQL (reversed before answering).
pub const LATEST_SQL: &str = include_str!("latest.sql");
/// Messages before a seq, newest first in SQL.
pub const BEFORE_SQL: &str = include_str!("before.sql");
/// Messages from a seq on, oldest first.
pub const FROM_SQL: &str = include_str!("from.sql");

/// Which page of history to read.
enum Page {
    Latest,
    Before(i64),
    From(i64),
}

async fn fetch_page(
    db: &sqlx::PgPool,
    group_id: GroupId,
    page: Page,
    limit: i64,
) -> ApiResult<Vec<Message>> {
    let rows = match page {
        Page::Latest => {
            sqlx::query_file_as!(
                MessageRow,
                "src/domain/messages/latest.sql",
                group_id,
                limit
            )
            .fetch_all(db)
            .await?
        }
        Page::Before(seq) => {
            sqlx::query_file_as!(
                MessageRow,
                "src/domain/messages/before.sql",
                group_id,
                seq,
                limit
            )
            .fetch_all(db)
            .await?
        }
        Page::From(seq) => {
            sqlx::query_file_as!(
                MessageRow,
                "src/domain/messages/from.sql",
                group_id,
                seq,
                limit
            )
            .fetch_all(db)
            .await?
        }
    };
    Ok(rows.into_iter().map(Message::from).collect())
}

/// Up to `limit` messages of the group from `seq` on, oldest first (what a resuming client
/// missed).
pub async fn from_seq(
    db: &sqlx::PgPool,
    group_id: GroupId,
    seq: i64,
    limit: i64,
) -> ApiResult<Vec<Message>> {
    fetch_page(db, group_id, Page::From(seq), limit).await
}

/// Keeps `limit` of `rows` fetched with one extra; says whether there were more.
fn trim(mut rows: Vec<Message>, limit: i64) -> (Vec<Message>, bool) {
    let keep = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > keep;
    rows.truncate(keep);
    (rows, more)
}

/// Where a page of history is anchored.
#[derive(Debug, Clone, Copy)]
pub enum Anchor {
    Latest,
    Before(MessageId),
    After(MessageId),
    Around(MessageId),
}

/// A page of history, oldest first, by `seq` (404 unless I am a member). Paging `after`
/// never skips a message, even one that committed late. Every page is an index range, so
/// its cost does not grow with the history.
pub async fn history(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    anchor: Anchor,
    limit: i64,
) -> ApiResult<MessagePage> {
    membership(&state.db, group_id, me).await?;
    let db = &state.db;
    let (messages, has_more) = match anchor {
        Anchor::Latest => {
            let (mut rows, more) = trim(
                fetch_page(db, group_id, Page::Latest, limit + 1).await?,
                limit,
            );
            rows.reverse();
            (rows, more)
        }
        Anchor::Before(before) => {
            let (seq, _) = locate(db, group_id, before).await?;
            let (mut rows, more) = trim(
                fetch_page(db, group_id, Page::Before(seq), limit + 1).await?,
                limit,
            );
            rows.reverse();
            (rows, more)
        }
        Anchor::After(after) => {
            let (seq, _) = locate(db, group_id, after).await?;
            trim(
                fetch_page(db, group_id, Page::From(seq + 1), limit + 1).await?,
                limit,
            )
        }
        Anchor::Around(around) => {
            let (seq, _) = locate(db, group_id, around).await?;
            let older = limit / 2;
            let (mut rows, more_before) = trim(
                fetch_page(db, group_id, Page::Before(seq), older + 1).await?,
                older,
            );
            rows.reverse();
            let newer = limit - older;
            let (after, more_after) = trim(
                fetch_page(db, group_id, Page::From(seq), newer + 1).await?,
                newer,
            );
            rows.extend(after);
            (rows, more_before || more_after)
        }
    };
    // From the watermarks: exact even while a long flip is still finishing in the background.
    let all_read = all_read_up_to(db, group_id).await?;
    let messages = messages
        .into_iter()
        .map(|mut m| {
            m.is_read |= m.seq <= all_read;
            m
        })
        .collect();
    Ok(MessagePage { messages, has_more })
}

/// Edits my own message (only the sender may: 403 otherwise); it is then shown as edited.
/// In a read-only DM nothing can be edited.
pub async fn edit(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    message_id: MessageId,
    content: &MessageContent,
) -> ApiResult<Message> {
    let member = membership(&state.db, group_id, me).await?;
    let (_, sender) = locate(&state.db, group_id, message_id).await?;
    if sender != Some(me) {
        return Err(ApiError::Forbidden("only the sender can edit a message"));
    }
    if member.is_dm {
        ensure_dm_open(&state.db, group_id, me).await?;
    }
    let row = sqlx::query_as!(
        MessageRow,
        "update messages m set content = $4, edited_at = now()
          where message_id = $1 and group_id = $2 and sender_id = $3
          returning m.message_id, m.group_id, m.sender_id, m.content, m.seq, m.is_read,
                    m.sent_at, m.updated_at, m.edited_at, m.nonce",
        message_id,
        group_id,
        me,
        content.as_str()
    )
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
    Ok(message)
}

/// Deletes my own message, or, as admin or owner of a group, anyone's (403 otherwise).
/// Its `seq` is not reused.
pub async fn delete(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    message_id: MessageId,
) -> ApiResult<()> {
    let member = membership(&state.db, group_id, me).await?;
    let (_, sender) = locate(&state.db, group_id, message_id).await?;
    if sender != Some(me) {
        member.require(
            Role::Admin,
            "only the sender, an admin or the owner can delete a message",
        )?;
    }
    let mut tx = state.db.begin().await?;
    let seq = sqlx::query_scalar!(
        "delete from messages where message_id = $1 and group_id = $2 returning seq",
        message_id,
        group_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let seq = seq.ok_or(ApiError::NotFound("message"))?;
    // The gap keeps unread counts exact (see read_status::UNREAD_COUNT_SQL).
    sqlx::query!(
        "insert into message_deletions (group_id, seq) values ($1, $2)",
        group_id,
        seq
    )
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
    Ok(())
}
