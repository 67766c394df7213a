//! Blocks, kept on the pair's `friendships` row (see [`super::friends`]). The blocked user
//! is never told: to them a block looks like being unfriended, and a request they had sent
//! stays "pending" on their side.

use protocol::{friends::Friend, gateway::Event, UserId};

use super::{
    friends::{other_user, publish_pair, strangers, FriendRow},
    relation::{insert_or_lock, lock_pair, on_pair, Relation},
};
use crate::{
    error::{ApiError, ApiResult},
    state::AppState,
};

/// Users I block, most recent first.
pub async fn list_blocked(state: &AppState, me: UserId) -> ApiResult<Vec<Friend>> {
    let blocked = sqlx::query_as!(
        FriendRow,
        r#"select u.user_id, u.username, u.display_name, u.profile_pic, u.status, u.last_seen,
                  f.since as "since!"
             from (select user_id_2 as other, updated_at as since from friendships
                    where user_id_1 = $1 and status = 'blocked'
                   union all
                   select user_id_1, updated_at from friendships
                    where user_id_2 = $1 and status = 'blocked' and user_2_blocked
                  ) f
             join users u on u.user_id = f.other
            order by f.since desc"#,
        me
    )
    .fetch_all(&state.db)
    .await?;
    Ok(strangers(blocked))
}

/// Blocks `other`: ends a friendship or pending request between us, stops their requests
/// and their messages in our direct message. Idempotent. 404 if there is no such user.
pub async fn block(state: &AppState, me: UserId, other: UserId) -> ApiResult<()> {
    other_user(&state.db, me, other).await?;
    let mut tx = state.db.begin().await?;
    let (_, row) = insert_or_lock(&mut tx, me, other, "blocked").await?;
    let relation = Relation::of(row.as_ref(), me);
    match relation {
        // Just inserted (or already blocked by me): nothing more to do.
        Relation::IBlocked => {}
        // Only if the row kept vanishing under concurrent deletes: see insert_or_lock.
        Relation::None => return Err(ApiError::Unavailable),
        Relation::BlockedByThem => {
            on_pair!(
                query,
                "update friendships set user_2_blocked = true, blocked_request_at = null where ",
                "",
                me,
                other
            )
            .execute(&mut *tx)
            .await?;
        }
        // Their request stays visible to them as pending, as if I had never seen it.
        Relation::Incoming => {
            on_pair!(
                query,
                "update friendships set user_id_1 = $1, user_id_2 = $2, status = 'blocked',
                     blocked_request_at = created_at where ",
                "",
                me,
                other
            )
            .execute(&mut *tx)
            .await?;
        }
        Relation::Outgoing | Relation::Friends => {
            on_pair!(
                query,
                "update friendships set user_id_1 = $1, user_id_2 = $2, status = 'blocked' where ",
                "",
                me,
                other
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    match relation {
        Relation::Friends => {
            publish_pair(state, me, other, |user_id| Event::FriendRemoved { user_id }).await
        }
        Relation::Outgoing => {
            publish_pair(state, me, other, |user_id| Event::FriendRequestCancelled {
                user_id,
            })
            .await
        }
        // Only my own devices: to them the request is still pending.
        Relation::Incoming => {
            state
                .events
                .publish([me], Event::FriendRequestDeclined { user_id: other })
                .await
        }
        _ => {}
    }
    Ok(())
}

/// Lifts my block of `other`. If they block me too, their block stays. 404 if I do not
/// block them.
pub async fn unblock(state: &AppState, me: UserId, other: UserId) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    let row = lock_pair(&mut tx, me, other).await?;
    if Relation::of(row.as_ref(), me) != Relation::IBlocked {
        return Err(ApiError::NotFound("block"));
    }
    let Some(row) = row else {
        return Err(ApiError::NotFound("block"));
    };
    let done = match (row.user_id_1 == me, row.user_2_blocked) {
        (true, false) => {
            on_pair!(query, "delete from friendships where ", "", me, other)
                .execute(&mut *tx)
                .await
        }
        // Mutual: the row becomes their block of me alone.
        (true, true) => {
            on_pair!(
            query,
            "update friendships set user_id_1 = $2, user_id_2 = $1, user_2_blocked = false where ",
            "",
            me,
            other
        )
            .execute(&mut *tx)
            .await
        }
        (false, _) => {
            on_pair!(
                query,
                "update friendships set user_2_blocked = false where ",
                "",
                me,
                other
            )
            .execute(&mut *tx)
            .await
        }
    };
    done?;
    tx.commit().await?;
    Ok(())
}
