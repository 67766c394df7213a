//! Messages: sending, history, edits and deletions.
//!
//! Ordering: a message's `seq` comes from `chat_groups.last_seq`, incremented in the
//! inserting transaction. The row lock on the group serializes senders, so sequence order is
//! commit order and a reader paging "after X" never skips a message that committed late.
//! Sending also moves the sender's read watermark (see [`super::read_status`]) in the same
//! transaction: this module is the one place a message is sent.

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
        read_status::{advance_watermark, all_read_up_to, publish_all_read},
        MessageContent, Nonce,
    },
    error::{violated_constraint, ApiError, ApiResult},
    state::AppState,
};

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

async fn by_nonce(
    db: impl PgExecutor<'_>,
    sender: UserId,
    nonce: &Nonce,
) -> ApiResult<Option<Message>> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "select ",
        message_columns!(),
        " from messages m where m.sender_id = $1 and m.nonce = $2"
    ))
    .bind(sender)
    .bind(nonce.as_str())
    .fetch_optional(db)
    .await?;
    Ok(row.map(Message::from))
}

/// What a send did.
pub enum Sent {
    /// A new message.
    Created(Message),
    /// A retry of a send already stored (same nonce): the first message, not a duplicate.
    Replayed(Message),
}

/// A retry with a nonce already used: the first message, if it was for this group.
fn replay(existing: Message, group_id: GroupId) -> ApiResult<Sent> {
    if existing.group_id != group_id {
        return Err(ApiError::Conflict {
            code: "nonce_reused",
            message: "that nonce was already used for a message in another conversation",
        });
    }
    Ok(Sent::Replayed(existing))
}

/// Sends a message: in one transaction, the group's next seq (its row lock serializes
/// senders), the message, and the sender's watermark and receipt; after commit, the event
/// to every member. With a nonce already used by the sender in this group, answers the
/// first message instead of storing a duplicate (409 `nonce_reused` if it was used in
/// another group). In a DM, only friends send (403: the DM is read-only). 404 unless a
/// member.
pub async fn send(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    content: &MessageContent,
    nonce: Option<Nonce>,
) -> ApiResult<Sent> {
    let member = membership(&state.db, group_id, me).await?;
    if member.is_dm {
        ensure_dm_open(&state.db, group_id, me).await?;
    }
    // A retry: answer before taking a sequence number.
    if let Some(nonce) = &nonce {
        if let Some(existing) = by_nonce(&state.db, me, nonce).await? {
            return replay(existing, group_id);
        }
    }
    let mut tx = state.db.begin().await?;
    // One statement takes the group's next seq (locking its row until commit) and inserts.
    let inserted = sqlx::query_as::<_, MessageRow>(concat!(
        "with g as (
             update chat_groups set last_seq = last_seq + 1, last_message_at = now()
              where group_id = $1 returning last_seq)
         insert into messages as m (group_id, sender_id, content, seq, nonce)
         select $1, $2, $3, g.last_seq, $4 from g returning ",
        message_columns!()
    ))
    .bind(group_id)
    .bind(me)
    .bind(content.as_str())
    .bind(nonce.as_ref().map(Nonce::as_str))
    .fetch_optional(&mut *tx)
    .await;
    let message = match inserted {
        Ok(None) => return Err(ApiError::NotFound("group")),
        Ok(Some(row)) => Message::from(row),
        // A concurrent retry with the same nonce won; rolling back returns our seq too.
        Err(e) if violated_constraint(&e) == Some("messages_sender_nonce_key") => {
            tx.rollback().await?;
            let Some(nonce) = &nonce else {
                return Err(e.into());
            };
            let existing = by_nonce(&state.db, me, nonce)
                .await?
                .ok_or(ApiError::Unavailable)?;
            return replay(existing, group_id);
        }
        Err(e) => return Err(e.into()),
    };
    // Removed from the group since the check above: the watermark has no row to move, and
    // dropping the transaction keeps nothing of this send.
    let Some(advance) =
        advance_watermark(&mut tx, group_id, me, message.seq, message.message_id).await?
    else {
        return Err(ApiError::NotFound("group"));
    };
    tx.commit().await?;
    let event = Event::MessageCreated {
        message: message.clone(),
    };
    state.events.publish(advance.members, event).await;
    publish_all_read(state, group_id, advance.all_read).await;
    Ok(Sent::Created(message))
}

/// The seq and sender of a message of this group, or 404.
pub async fn locate(
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

async fn fetch_page(
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

/// Up to `limit` messages of the group from `seq` on, oldest first (what a resuming client
/// missed).
pub async fn from_seq(
    db: &sqlx::PgPool,
    group_id: GroupId,
    seq: i64,
    limit: i64,
) -> ApiResult<Vec<Message>> {
    fetch_page(db, FROM_SQL, group_id, Some(seq), limit).await
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
                fetch_page(db, LATEST_SQL, group_id, None, limit + 1).await?,
                limit,
            );
            rows.reverse();
            (rows, more)
        }
        Anchor::Before(before) => {
            let (seq, _) = locate(db, group_id, before).await?;
            let (mut rows, more) = trim(
                fetch_page(db, BEFORE_SQL, group_id, Some(seq), limit + 1).await?,
                limit,
            );
            rows.reverse();
            (rows, more)
        }
        Anchor::After(after) => {
            let (seq, _) = locate(db, group_id, after).await?;
            trim(
                fetch_page(db, FROM_SQL, group_id, Some(seq + 1), limit + 1).await?,
                limit,
            )
        }
        Anchor::Around(around) => {
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
    let seq: Option<i64> = sqlx::query_scalar(
        "delete from messages where message_id = $1 and group_id = $2 returning seq",
    )
    .bind(message_id)
    .bind(group_id)
    .fetch_optional(&mut *tx)
    .await?;
    let seq = seq.ok_or(ApiError::NotFound("message"))?;
    // The gap keeps unread counts exact (see read_status::UNREAD_COUNT_SQL).
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
    Ok(())
}
