//! The relationship between two users: one `friendships` row per unordered pair, read and
//! locked here for [`super::friends`] and [`super::blocks`].
//!
//! `user_id_1` acted first: sent the request, or blocked. `status` is `pending`,
//! `accepted` or `blocked`; `user_2_blocked` marks a mutual block, and
//! `blocked_request_at` a request the blocked side still sees as pending.

use chrono::{DateTime, Utc};
use protocol::UserId;
use sqlx::PgConnection;

use crate::error::ApiResult;

/// A query on the row of the unordered pair (`$1`, `$2`), matched through
/// `friendships_pair_key`: `$before`, the pair's condition, then `$after`, given to the
/// `sqlx` macro `$kind` (`query`, `query_scalar`, or `query_as` with its row type). The
/// condition is written only here, and every such query is still one literal that the
/// compiler checks against the schema.
macro_rules! on_pair {
    ($kind:ident $(($row:path))?, $before:literal, $after:literal, $me:expr, $other:expr $(,)?) => {
        sqlx::$kind!(
            $($row,)?
            $before
                + "least(user_id_1, user_id_2) = least($1::bigint, $2::bigint) \
                   and greatest(user_id_1, user_id_2) = greatest($1::bigint, $2::bigint)"
                + $after,
            $me,
            $other
        )
    };
}
pub(super) use on_pair;

pub(super) struct PairRow {
    pub user_id_1: i64,
    pub status: String,
    pub user_2_blocked: bool,
    pub created_at: DateTime<Utc>,
}

/// The relationship between `me` and another user, seen from `me`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Relation {
    None,
    Friends,
    /// I asked them.
    Outgoing,
    /// They asked me.
    Incoming,
    /// I blocked them (they may have blocked me too).
    IBlocked,
    /// They blocked me and I did not block them: I must not be able to tell.
    BlockedByThem,
}

impl Relation {
    pub(super) fn of(row: Option<&PairRow>, me: UserId) -> Self {
        let Some(row) = row else { return Self::None };
        let i_am_first = row.user_id_1 == me;
        match (row.status.as_str(), i_am_first) {
            ("accepted", _) => Self::Friends,
            ("pending", true) => Self::Outgoing,
            ("pending", false) => Self::Incoming,
            (_, true) => Self::IBlocked,
            (_, false) if row.user_2_blocked => Self::IBlocked,
            _ => Self::BlockedByThem,
        }
    }
}

/// Locks and reads the pair's row for the rest of the transaction.
pub(super) async fn lock_pair(
    tx: &mut PgConnection,
    me: UserId,
    other: UserId,
) -> ApiResult<Option<PairRow>> {
    Ok(on_pair!(
        query_as(PairRow),
        "select user_id_1, status, user_2_blocked, created_at from friendships where ",
        " for update",
        me,
        other
    )
    .fetch_optional(tx)
    .await?)
}

/// Inserts the pair's row as `me` → `other` with `status` unless the pair has one, then locks
/// whichever row is there. Says whether it inserted. A row that a concurrent transaction
/// deletes between our conflict and our lock is simply inserted on the next turn.
pub(super) async fn insert_or_lock(
    tx: &mut PgConnection,
    me: UserId,
    other: UserId,
    status: &'static str,
) -> ApiResult<(bool, Option<PairRow>)> {
    const ATTEMPTS: usize = 3;
    let mut result = (false, None);
    for _ in 0..ATTEMPTS {
        let inserted = sqlx::query_scalar!(
            r#"insert into friendships (user_id_1, user_id_2, status) values ($1, $2, $3)
               on conflict do nothing returning true as "inserted!""#,
            me,
            other,
            status
        )
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        result = (inserted, lock_pair(tx, me, other).await?);
        if result.1.is_some() {
            break;
        }
    }
    Ok(result)
}
