//! Read status: watermarks, unread counts, receipts and `messages.is_read`.
//!
//! Each member has a watermark (`group_members.last_read_seq`): everything up to it is
//! read. Sending advances the sender's own watermark (you have read what you wrote), so my
//! unread count is the number of messages after my watermark: the sequence span minus the
//! deletions in it (`message_deletions`), without counting messages at all.
//! `messages.is_read` is true once every other member has read the message, i.e. once the
//! minimum watermark of the group reaches it; whenever a watermark moves, only the newly
//! covered range of that minimum is flipped. A receipt row (`message_read_status`) records
//! when a member read up to which message.
//!
//! Every watermark move (a send, a read, a member leaving) happens under the group's read
//! lock ([`READ_LOCK_NAMESPACE`], taken only here).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use protocol::{
    gateway::Event,
    messages::{ReadState, Receipt},
    GroupId, MessageId, UserId,
};
use sqlx::{PgConnection, PgExecutor};

use crate::{
    domain::{groups::membership, messages::locate},
    error::ApiResult,
    state::AppState,
};

// The read-status queries, public so a test can EXPLAIN exactly what the API runs; each is
// checked against the schema at build time through `sqlx::query_file!` on the same file.

/// My unread count: the messages after my watermark ($2), all of them others' since sending
/// moves my own watermark past my message. Sequence numbers are dense but for deletions, so
/// this is the sequence span minus the deletions in it: one primary-key read of the group
/// and a count of the (few) gaps, never a count of the messages themselves.
pub const UNREAD_COUNT_SQL: &str = include_str!("read_status/unread_count.sql");
/// Moves a watermark forward (never back; one row by `group_members_group_user_key`) and,
/// if it moved, records the receipt for the message that moved it — one round trip. No row
/// when the watermark was already there (or the member is gone).
pub const ADVANCE_WATERMARK_SQL: &str = include_str!("read_status/advance_watermark.sql");
/// Before a member's watermark moves (under the group's read lock): the group's lowest
/// watermark, the lowest of the other members, and who the members are (a send's
/// recipients) — the new minimum follows without reading the table again.
pub const WATERMARKS_SQL: &str = include_str!("read_status/watermarks.sql");
/// The group's lowest watermark: over its members (at most the maximum group size).
pub const MIN_WATERMARK_SQL: &str = include_str!("read_status/min_watermark.sql");
/// Flips `is_read` on up to $3 messages, oldest first, that every member has now read (at or
/// below the minimum watermark $2) and are not flipped yet: found through the partial index
/// `messages_not_read_by_all_idx`, never by walking the flipped history.
pub const FLIP_READ_SQL: &str = include_str!("read_status/flip_read.sql");

/// At most this many messages flip inside a request's transaction. The rest (after a first
/// read of a long history) flip after commit in background batches of the same size, so no
/// request holds the group's read lock for longer than one batch.
const FLIP_BATCH: i64 = 1000;

/// Namespace of the advisory locks serializing watermark moves within one group (the two-key
/// form: this constant, and the group id folded into 32 bits; two groups sharing a fold only
/// wait for each other). The only place the key is written.
const READ_LOCK_NAMESPACE: i32 = 0x5EAD;

/// The group's lowest watermark, taking the group's read lock for the rest of the
/// transaction. Without the lock, two members reading at once could each see the other's
/// old watermark and neither flip `is_read`.
pub async fn min_watermark(tx: &mut PgConnection, group_id: GroupId) -> ApiResult<i64> {
    read_lock(tx, group_id).await?;
    Ok(lowest_watermark(tx, group_id).await?)
}

async fn lowest_watermark(db: impl PgExecutor<'_>, group_id: GroupId) -> sqlx::Result<i64> {
    sqlx::query_file_scalar!("src/domain/read_status/min_watermark.sql", group_id)
        .fetch_one(db)
        .await
}

/// The group's lowest watermark without the lock: what everyone has read, for answering.
pub async fn all_read_up_to(db: impl PgExecutor<'_>, group_id: GroupId) -> ApiResult<i64> {
    Ok(lowest_watermark(db, group_id).await?)
}

/// Takes the group's read lock for the rest of the transaction (see [`min_watermark`]).
async fn read_lock(tx: &mut PgConnection, group_id: GroupId) -> sqlx::Result<()> {
    sqlx::query!(
        "select pg_advisory_xact_lock($1, ($2::bigint % 2147483647)::int)",
        READ_LOCK_NAMESPACE,
        group_id
    )
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

async fn flip_batch(
    db: impl PgExecutor<'_>,
    group_id: GroupId,
    up_to_seq: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query_file!(
        "src/domain/read_status/flip_read.sql",
        group_id,
        up_to_seq,
        FLIP_BATCH
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() >= u64::try_from(FLIP_BATCH).unwrap_or(u64::MAX))
}

/// After a member left: flips `is_read` on (a first batch of) what every remaining member
/// has now read. `Some` if the minimum watermark rose. Call after [`min_watermark`] in the
/// same transaction.
pub async fn flip_read(
    tx: &mut PgConnection,
    group_id: GroupId,
    old_min: i64,
) -> ApiResult<Option<AllRead>> {
    let new_min = lowest_watermark(&mut *tx, group_id).await?;
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
pub struct Advance {
    pub read_at: DateTime<Utc>,
    /// The group's members when the watermark moved (a send's recipients).
    pub members: Vec<UserId>,
    /// Every message up to this seq is now read by all (it rose with this move).
    pub all_read: Option<AllRead>,
}

/// Moves `user_id`'s watermark up to `seq` (the message `message_id`) and records the
/// receipt, flipping `is_read` on (a first batch of) what everyone has now read. `None` if
/// it was already there, or the user is not a member. Used by reading and by sending (you
/// have read what you wrote).
pub async fn advance_watermark(
    tx: &mut PgConnection,
    group_id: GroupId,
    user_id: UserId,
    seq: i64,
    message_id: MessageId,
) -> ApiResult<Option<Advance>> {
    read_lock(tx, group_id).await?;
    let before = sqlx::query_file!("src/domain/read_status/watermarks.sql", group_id, user_id)
        .fetch_one(&mut *tx)
        .await?;
    let (old_min, others_min) = (before.lowest, before.lowest_of_others);
    let read_at = sqlx::query_file_scalar!(
        "src/domain/read_status/advance_watermark.sql",
        message_id,
        user_id,
        group_id,
        seq
    )
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
    Ok(Some(Advance {
        read_at,
        members: before.members,
        all_read,
    }))
}

/// What a batch of sends did to its senders' watermarks.
#[derive(Default)]
pub struct SendersRead {
    /// The group's members: the batch's recipients.
    pub members: Vec<UserId>,
    /// The senders whose watermark moved: every sender, unless one was removed meanwhile.
    pub moved: Vec<UserId>,
    /// Every message up to this seq is now read by all (it rose with this batch).
    pub all_read: Option<AllRead>,
}

/// Moves each sender's watermark up to their last message of a batch of sends (`last`:
/// sender → seq; every seq is above every watermark), all in one statement under the
/// group's read lock, and flips `is_read` on (a first batch of) what everyone has now read.
/// The receipts follow after commit ([`record_receipts`]).
pub async fn advance_senders(
    tx: &mut PgConnection,
    group_id: GroupId,
    last: &HashMap<UserId, i64>,
) -> sqlx::Result<SendersRead> {
    read_lock(tx, group_id).await?;
    let (senders, seqs): (Vec<UserId>, Vec<i64>) = last.iter().map(|(u, s)| (*u, *s)).unzip();
    // The outer select reads the watermarks as they were before the update (one snapshot),
    // so it yields the old minimum and, with the senders' new seqs, the new one.
    let row = sqlx::query!(
        r#"with v as (select * from unnest($2::bigint[], $3::bigint[]) as v(user_id, seq)),
           moved as (
               update group_members gm set last_read_seq = v.seq from v
                where gm.group_id = $1 and gm.user_id = v.user_id and gm.last_read_seq < v.seq
               returning gm.user_id)
           select coalesce(min(gm.last_read_seq), 0) as "old_min!",
                  coalesce(min(greatest(gm.last_read_seq, v.seq)), 0) as "new_min!",
                  coalesce(array_agg(gm.user_id), '{}') as "members!",
                  coalesce((select array_agg(user_id) from moved), '{}') as "moved!"
             from group_members gm left join v on v.user_id = gm.user_id
            where gm.group_id = $1"#,
        group_id,
        &senders,
        &seqs
    )
    .fetch_one(&mut *tx)
    .await?;
    let all_read = if row.new_min > row.old_min {
        let unfinished = flip_batch(&mut *tx, group_id, row.new_min).await?;
        Some(AllRead {
            up_to_seq: row.new_min,
            unfinished,
        })
    } else {
        None
    };
    Ok(SendersRead {
        members: row.members,
        moved: row.moved,
        all_read,
    })
}

/// Records that each sender read their message (`(sender, seq, message_id)`), as
/// [`advance_watermark`] does for a reader.
pub async fn record_receipts(
    db: impl PgExecutor<'_>,
    group_id: GroupId,
    receipts: &[(UserId, i64, MessageId)],
) -> sqlx::Result<()> {
    if receipts.is_empty() {
        return Ok(());
    }
    let users: Vec<UserId> = receipts.iter().map(|r| r.0).collect();
    let seqs: Vec<i64> = receipts.iter().map(|r| r.1).collect();
    let messages: Vec<MessageId> = receipts.iter().map(|r| r.2).collect();
    sqlx::query!(
        "insert into message_read_status (message_id, user_id, group_id, seq)
         select r.message_id, r.user_id, $1, r.seq
           from unnest($2::bigint[], $3::bigint[], $4::bigint[]) as r(user_id, seq, message_id)
         on conflict (message_id, user_id) do update set is_read = true",
        group_id,
        &users,
        &seqs,
        &messages
    )
    .execute(db)
    .await?;
    Ok(())
}

async fn unread_count(
    db: impl PgExecutor<'_>,
    group_id: GroupId,
    watermark: i64,
) -> ApiResult<i64> {
    Ok(sqlx::query_file_scalar!(
        "src/domain/read_status/unread_count.sql",
        group_id,
        watermark
    )
    .fetch_one(db)
    .await?)
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

/// My read watermark and unread count in a group (404 unless I am a member).
pub async fn read_state(state: &AppState, group_id: GroupId, me: UserId) -> ApiResult<ReadState> {
    let member = membership(&state.db, group_id, me).await?;
    Ok(ReadState {
        group_id,
        last_read_seq: member.last_read_seq,
        unread_count: unread_count(&state.db, group_id, member.last_read_seq).await?,
    })
}

/// Marks everything up to and including a message as read by me. Never moves backwards:
/// an older message leaves the watermark where it is.
pub async fn mark_read(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    message_id: MessageId,
) -> ApiResult<ReadState> {
    membership(&state.db, group_id, me).await?;
    let (seq, _) = locate(&state.db, group_id, message_id).await?;
    let mut tx = state.db.begin().await?;
    let advance = advance_watermark(&mut tx, group_id, me, seq, message_id).await?;
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
                    message_id,
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
        publish_all_read(state, group_id, advance.all_read).await;
    }
    Ok(read)
}

/// Members other than the sender whose watermark covers the message, with the time of their
/// first receipt at or after it: one index lookup per member
/// (`message_read_status_group_user_seq_idx`).
pub const RECEIPTS_SQL: &str = include_str!("read_status/receipts.sql");

/// Who (other than the sender) has read a message, and when (404 unless I am a member).
pub async fn receipts(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    message_id: MessageId,
) -> ApiResult<Vec<Receipt>> {
    membership(&state.db, group_id, me).await?;
    let (seq, sender) = locate(&state.db, group_id, message_id).await?;
    let rows = sqlx::query_file!("src/domain/read_status/receipts.sql", group_id, seq, sender)
        .fetch_all(&state.db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Receipt {
            user_id: r.user_id,
            read_at: r.read_at,
        })
        .collect())
}
