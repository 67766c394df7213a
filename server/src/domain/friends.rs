//! Friend requests and friends: one `friendships` row per unordered pair of users.
//!
//! `user_id_1` acted first: sent the request, or blocked. A blocked user is never told:
//! their requests to the blocker answer like any request and stay "pending" in their own
//! outgoing list (`blocked_request_at`), blocking a friend looks to them like being
//! unfriended, and a direct message with the blocker turns read-only exactly as after an
//! unfriending. Blocks may be mutual (`user_2_blocked`); each side unblocks only its own
//! (see [`super::blocks`]).

use chrono::{DateTime, Utc};
use protocol::{
    friends::{Friend, FriendRequestOutcome, FriendRequestState, FriendRequests},
    gateway::Event,
    users::PublicUser,
    UserId,
};
use sqlx::{PgConnection, PgExecutor};

use super::relation::{insert_or_lock, lock_pair, on_pair, Relation};
use crate::{
    domain::{
        users::{apply_presence, as_stranger, fetch_public_user, public_user_row, PublicUserRow},
        FriendCode, Username,
    },
    error::{ApiError, ApiResult},
    state::AppState,
};

/// True when `a` and `b` are friends (accepted), which also means neither blocks the other.
pub async fn are_friends(db: impl PgExecutor<'_>, a: UserId, b: UserId) -> ApiResult<bool> {
    Ok(on_pair!(
        query_scalar,
        "select exists (select 1 from friendships where ",
        " and status = 'accepted') as \"friends!\"",
        a,
        b
    )
    .fetch_one(db)
    .await?)
}

/// An existing other user, or 404 (also for myself: there is no relationship to oneself).
pub(super) async fn other_user(
    db: impl PgExecutor<'_>,
    me: UserId,
    other: UserId,
) -> ApiResult<PublicUser> {
    if other == me {
        return Err(ApiError::NotFound("user"));
    }
    fetch_public_user(db, other)
        .await?
        .ok_or(ApiError::NotFound("user"))
}

/// Me as `other` now sees me: with presence once we are friends, as a stranger before.
async fn me_as_seen(state: &AppState, me: UserId, friends: bool) -> ApiResult<PublicUser> {
    let user = fetch_public_user(&state.db, me)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    seen_by_me(state, user, friends).await
}

/// `user` as I now see them: with presence once we are friends, as a stranger before.
async fn seen_by_me(
    state: &AppState,
    mut user: PublicUser,
    friends: bool,
) -> ApiResult<PublicUser> {
    if !friends {
        return Ok(as_stranger(user));
    }
    apply_presence(state, [&mut user]).await?;
    Ok(user)
}

/// Another user and when our relation began, as the friend, request and block lists read
/// them (`query_as!` fills flat rows only).
pub(super) struct FriendRow {
    pub user_id: i64,
    pub username: String,
    pub display_name: Option<String>,
    pub profile_pic: Option<String>,
    pub status: String,
    pub last_seen: Option<DateTime<Utc>>,
    pub since: DateTime<Utc>,
}

impl From<FriendRow> for Friend {
    fn from(r: FriendRow) -> Self {
        let user = public_user_row!(r);
        Self {
            user: user.into(),
            since: r.since,
        }
    }
}

/// Users who are not (or not yet) friends see no presence of each other.
pub(super) fn strangers(rows: Vec<FriendRow>) -> Vec<Friend> {
    rows.into_iter()
        .map(|row| {
            let f = Friend::from(row);
            Friend {
                user: as_stranger(f.user),
                since: f.since,
            }
        })
        .collect()
}

/// My friends, by name, with their presence.
pub async fn list_friends(state: &AppState, me: UserId) -> ApiResult<Vec<Friend>> {
    let rows = sqlx::query_as!(
        FriendRow,
        "select u.user_id, u.username, u.display_name, u.profile_pic, u.status, u.last_seen,
                f.updated_at as since
           from friendships f
           join users u
             on u.user_id = case when f.user_id_1 = $1 then f.user_id_2 else f.user_id_1 end
          where (f.user_id_1 = $1 or f.user_id_2 = $1) and f.status = 'accepted'
          order by lower(coalesce(u.display_name, u.username)), u.user_id",
        me
    )
    .fetch_all(&state.db)
    .await?;
    let mut friends: Vec<Friend> = rows.into_iter().map(Friend::from).collect();
    apply_presence(state, friends.iter_mut().map(|f| &mut f.user)).await?;
    Ok(friends)
}

/// Requests sent to me and by me, newest first.
pub async fn list_requests(state: &AppState, me: UserId) -> ApiResult<FriendRequests> {
    let incoming = sqlx::query_as!(
        FriendRow,
        "select u.user_id, u.username, u.display_name, u.profile_pic, u.status, u.last_seen,
                f.created_at as since
           from friendships f join users u on u.user_id = f.user_id_1
          where f.user_id_2 = $1 and f.status = 'pending'
          order by f.created_at desc",
        me
    )
    .fetch_all(&state.db)
    .await?;
    // A request to someone who blocked me shows as pending, like any other.
    let outgoing = sqlx::query_as!(
        FriendRow,
        r#"select u.user_id, u.username, u.display_name, u.profile_pic, u.status, u.last_seen,
                  f.since as "since!"
             from (select user_id_2 as other, created_at as since from friendships
                    where user_id_1 = $1 and status = 'pending'
                   union all
                   select user_id_1, blocked_request_at from friendships
                    where user_id_2 = $1 and status = 'blocked' and blocked_request_at is not null
                  ) f
             join users u on u.user_id = f.other
            order by f.since desc"#,
        me
    )
    .fetch_all(&state.db)
    .await?;
    Ok(FriendRequests {
        incoming: strangers(incoming),
        outgoing: strangers(outgoing),
    })
}

/// Whom a friend request names.
#[derive(Debug)]
pub enum RequestTarget {
    FriendCode(FriendCode),
    Username(Username),
}

async fn find_target(db: &sqlx::PgPool, target: &RequestTarget) -> ApiResult<PublicUser> {
    let row = match target {
        RequestTarget::FriendCode(code) => {
            sqlx::query_as!(
                PublicUserRow,
                "select u.user_id, u.username, u.display_name, u.profile_pic, u.status, u.last_seen
                   from users u where u.friend_code = $1",
                code.as_str()
            )
            .fetch_optional(db)
            .await?
        }
        RequestTarget::Username(name) => {
            sqlx::query_as!(
                PublicUserRow,
                "select u.user_id, u.username, u.display_name, u.profile_pic, u.status, u.last_seen
                   from users u where u.username = $1",
                name.as_str()
            )
            .fetch_optional(db)
            .await?
        }
    };
    row.map(PublicUser::from).ok_or(ApiError::NotFound("user"))
}

/// Sends a friend request: `pending`, or `friends` at once if they had already asked me.
/// Asking again is harmless (same answer). A request to someone who blocked me answers
/// exactly like any pending request and is never shown to them. 409 `blocked` if I block
/// them.
pub async fn send_request(
    state: &AppState,
    me: UserId,
    target: &RequestTarget,
) -> ApiResult<FriendRequestOutcome> {
    let target = find_target(&state.db, target).await?;
    if target.user_id == me {
        return Err(ApiError::validation(
            "friend_code",
            "you cannot send a friend request to yourself",
        ));
    }
    let mut tx = state.db.begin().await?;
    let (inserted, row) = insert_or_lock(&mut tx, me, target.user_id, "pending").await?;
    let relation = Relation::of(row.as_ref(), me);
    let since = row.as_ref().map_or_else(Utc::now, |r| r.created_at);
    let state_after = match relation {
        Relation::Outgoing | Relation::BlockedByThem => FriendRequestState::Pending,
        Relation::Friends => FriendRequestState::Friends,
        Relation::Incoming => {
            on_pair!(
                query,
                "update friendships set status = 'accepted' where ",
                "",
                me,
                target.user_id
            )
            .execute(&mut *tx)
            .await?;
            FriendRequestState::Friends
        }
        Relation::IBlocked => {
            return Err(ApiError::Conflict {
                code: "blocked",
                message: "you have blocked this user; unblock them first",
            })
        }
        // Only if the row kept vanishing under concurrent deletes: see insert_or_lock.
        Relation::None => return Err(ApiError::Unavailable),
    };
    if relation == Relation::BlockedByThem {
        on_pair!(
            query,
            "update friendships set blocked_request_at = coalesce(blocked_request_at, now()) where ",
            "",
            me,
            target.user_id
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    let friends = state_after == FriendRequestState::Friends;
    let target = seen_by_me(state, target, friends).await?;
    match relation {
        Relation::Outgoing if inserted => {
            let request = Friend {
                user: me_as_seen(state, me, false).await?,
                since,
            };
            state
                .events
                .publish([target.user_id], Event::FriendRequestReceived { request })
                .await;
        }
        Relation::Incoming => {
            let me_user = me_as_seen(state, me, true).await?;
            befriended(state, me_user, target.clone()).await;
        }
        _ => {}
    }
    Ok(FriendRequestOutcome {
        state: state_after,
        user: target,
    })
}

/// Withdraws my pending request to `other`. 404 if there is none.
pub async fn cancel_request(state: &AppState, me: UserId, other: UserId) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    let row = lock_pair(&mut tx, me, other).await?;
    match Relation::of(row.as_ref(), me) {
        Relation::Outgoing => {
            on_pair!(query, "delete from friendships where ", "", me, other)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            publish_pair(state, me, other, |user_id| Event::FriendRequestCancelled {
                user_id,
            })
            .await;
        }
        Relation::BlockedByThem if had_hidden_request(&mut tx, me, other).await? => {
            on_pair!(
                query,
                "update friendships set blocked_request_at = null where ",
                "",
                me,
                other
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            state
                .events
                .publish([me], Event::FriendRequestCancelled { user_id: other })
                .await;
        }
        _ => return Err(ApiError::NotFound("friend request")),
    }
    Ok(())
}

async fn had_hidden_request(tx: &mut PgConnection, me: UserId, other: UserId) -> ApiResult<bool> {
    Ok(on_pair!(
        query_scalar,
        "select blocked_request_at is not null as \"hidden!\" from friendships where ",
        "",
        me,
        other
    )
    .fetch_optional(tx)
    .await?
    .unwrap_or(false))
}

/// Accepts `other`'s pending request to me: we become friends. 404 if there is none.
pub async fn accept_request(state: &AppState, me: UserId, other: UserId) -> ApiResult<Friend> {
    let user = seen_by_me(state, other_user(&state.db, me, other).await?, true).await?;
    let since = sqlx::query_scalar!(
        "update friendships set status = 'accepted'
         where user_id_1 = $1 and user_id_2 = $2 and status = 'pending'
         returning updated_at",
        other,
        me
    )
    .fetch_optional(&state.db)
    .await?;
    let since = since.ok_or(ApiError::NotFound("friend request"))?;
    befriended(state, me_as_seen(state, me, true).await?, user.clone()).await;
    Ok(Friend { user, since })
}

/// Tells two users who just became friends: each gets the other as a friend, then the
/// other's presence (hidden from them while they were strangers), as any later change of it
/// will come.
async fn befriended(state: &AppState, a: PublicUser, b: PublicUser) {
    let (a_id, b_id) = (a.user_id, b.user_id);
    for (to, friend) in [(b_id, a), (a_id, b)] {
        let presence = Event::PresenceUpdated {
            user_id: friend.user_id,
            presence: friend.status,
            last_seen: friend.last_seen,
        };
        let accepted = Event::FriendRequestAccepted { user: friend };
        state.events.publish([to], accepted).await;
        state.events.publish([to], presence).await;
    }
}

/// Declines `other`'s pending request to me. 404 if there is none.
pub async fn decline_request(state: &AppState, me: UserId, other: UserId) -> ApiResult<()> {
    let deleted = sqlx::query!(
        "delete from friendships where user_id_1 = $1 and user_id_2 = $2 and status = 'pending'",
        other,
        me
    )
    .execute(&state.db)
    .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound("friend request"));
    }
    publish_pair(state, me, other, |user_id| Event::FriendRequestDeclined {
        user_id,
    })
    .await;
    Ok(())
}

/// Ends a friendship. 404 if we are not friends.
pub async fn remove_friend(state: &AppState, me: UserId, other: UserId) -> ApiResult<()> {
    let deleted = on_pair!(
        query,
        "delete from friendships where ",
        " and status = 'accepted'",
        me,
        other
    )
    .execute(&state.db)
    .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound("friend"));
    }
    publish_pair(state, me, other, |user_id| Event::FriendRemoved { user_id }).await;
    Ok(())
}

/// Tells both sides, each event naming the other user.
pub(super) async fn publish_pair(
    state: &AppState,
    me: UserId,
    other: UserId,
    event: fn(UserId) -> Event,
) {
    state.events.publish([me], event(other)).await;
    state.events.publish([other], event(me)).await;
}
