//! Friend requests, friends and blocks: one `friendships` row per unordered pair of users.
//!
//! `user_id_1` acted first: sent the request, or blocked. A blocked user is never told:
//! their requests to the blocker answer like any request and stay "pending" in their own
//! outgoing list (`blocked_request_at`), blocking a friend looks to them like being
//! unfriended, and a direct message with the blocker turns read-only exactly as after an
//! unfriending. Blocks may be mutual (`user_2_blocked`); each side unblocks only its own.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use protocol::{
    error::ErrorBody,
    friends::{
        Friend, FriendRequestBody, FriendRequestOutcome, FriendRequestState, FriendRequests,
    },
    gateway::Event,
    users::PublicUser,
    UserId,
};
use sqlx::{PgConnection, PgExecutor};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Auth,
    domain::{parse_friend_code, Username},
    error::{ApiError, ApiResult},
    extract::{Json, Path},
    public_user_columns,
    routes::users::{apply_presence, as_stranger, fetch_public_user, PublicUserRow},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_friends))
        .routes(routes!(remove_friend))
        .routes(routes!(list_requests, send_request))
        .routes(routes!(cancel_request))
        .routes(routes!(accept_request))
        .routes(routes!(decline_request))
        .routes(routes!(list_blocked))
        .routes(routes!(block, unblock))
}

/// Matches the row of the unordered pair ($1, $2) through `friendships_pair_key`.
macro_rules! pair {
    () => {
        "least(user_id_1, user_id_2) = least($1::bigint, $2::bigint) \
         and greatest(user_id_1, user_id_2) = greatest($1::bigint, $2::bigint)"
    };
}

#[derive(sqlx::FromRow)]
struct PairRow {
    user_id_1: i64,
    status: String,
    user_2_blocked: bool,
    created_at: DateTime<Utc>,
}

/// The relationship between `me` and another user, seen from `me`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
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
    fn of(row: Option<&PairRow>, me: UserId) -> Self {
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
async fn lock_pair(tx: &mut PgConnection, me: UserId, other: UserId) -> ApiResult<Option<PairRow>> {
    Ok(sqlx::query_as(concat!(
        "select user_id_1, status, user_2_blocked, created_at from friendships where ",
        pair!(),
        " for update"
    ))
    .bind(me)
    .bind(other)
    .fetch_optional(tx)
    .await?)
}

/// Inserts the pair's row as `me` → `other` with `status` unless the pair has one, then locks
/// whichever row is there. Says whether it inserted. A row that a concurrent transaction
/// deletes between our conflict and our lock is simply inserted on the next turn.
async fn insert_or_lock(
    tx: &mut PgConnection,
    me: UserId,
    other: UserId,
    status: &'static str,
) -> ApiResult<(bool, Option<PairRow>)> {
    const ATTEMPTS: usize = 3;
    let mut result = (false, None);
    for _ in 0..ATTEMPTS {
        let inserted = sqlx::query_scalar::<_, bool>(
            "insert into friendships (user_id_1, user_id_2, status) values ($1, $2, $3)
             on conflict do nothing returning true",
        )
        .bind(me)
        .bind(other)
        .bind(status)
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

/// True when `a` and `b` are friends (accepted), which also means neither blocks the other.
pub async fn are_friends(db: impl PgExecutor<'_>, a: UserId, b: UserId) -> ApiResult<bool> {
    Ok(sqlx::query_scalar::<_, bool>(concat!(
        "select exists (select 1 from friendships where ",
        pair!(),
        " and status = 'accepted')"
    ))
    .bind(a)
    .bind(b)
    .fetch_one(db)
    .await?)
}

/// An existing other user, or 404 (also for myself: there is no relationship to oneself).
async fn other_user(db: impl PgExecutor<'_>, me: UserId, other: UserId) -> ApiResult<PublicUser> {
    if other == me {
        return Err(ApiError::NotFound("user"));
    }
    fetch_public_user(db, other)
        .await?
        .ok_or(ApiError::NotFound("user"))
}

/// Me as `other` now sees me: with presence once we are friends, as a stranger before.
async fn me_as_seen(state: &AppState, me: UserId, friends: bool) -> ApiResult<PublicUser> {
    let mut user = fetch_public_user(&state.db, me)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if !friends {
        return Ok(as_stranger(user));
    }
    apply_presence(state, [&mut user]).await?;
    Ok(user)
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

#[derive(sqlx::FromRow)]
struct FriendRow {
    #[sqlx(flatten)]
    user: PublicUserRow,
    since: DateTime<Utc>,
}

impl From<FriendRow> for Friend {
    fn from(r: FriendRow) -> Self {
        Self {
            user: r.user.into(),
            since: r.since,
        }
    }
}

/// Users who are not (or not yet) friends see no presence of each other.
fn strangers(list: Vec<Friend>) -> Vec<Friend> {
    list.into_iter()
        .map(|f| Friend {
            user: as_stranger(f.user),
            since: f.since,
        })
        .collect()
}

async fn list(db: &sqlx::PgPool, query: &'static str, me: UserId) -> ApiResult<Vec<Friend>> {
    let rows: Vec<FriendRow> = sqlx::query_as(query).bind(me).fetch_all(db).await?;
    Ok(rows.into_iter().map(Friend::from).collect())
}

/// GET /api/friends
///
/// My friends, by name.
#[utoipa::path(get, path = "/api/friends", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = Vec<Friend>), (status = 401, body = ErrorBody)))]
async fn list_friends(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Vec<Friend>>> {
    let friends = list(
        &state.db,
        concat!(
            "select ",
            public_user_columns!(),
            ", f.updated_at as since
             from friendships f
             join users u on u.user_id = case when f.user_id_1 = $1 then f.user_id_2 else f.user_id_1 end
             where (f.user_id_1 = $1 or f.user_id_2 = $1) and f.status = 'accepted'
             order by lower(coalesce(u.display_name, u.username)), u.user_id"
        ),
        auth.user_id(),
    )
    .await?;
    let mut friends = friends;
    apply_presence(&state, friends.iter_mut().map(|f| &mut f.user)).await?;
    Ok(Json(friends))
}

/// GET /api/friends/requests
///
/// Requests sent to me (`incoming`) and by me (`outgoing`), newest first.
#[utoipa::path(get, path = "/api/friends/requests", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = FriendRequests), (status = 401, body = ErrorBody)))]
async fn list_requests(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<FriendRequests>> {
    let me = auth.user_id();
    let incoming = list(
        &state.db,
        concat!(
            "select ",
            public_user_columns!(),
            ", f.created_at as since
             from friendships f join users u on u.user_id = f.user_id_1
             where f.user_id_2 = $1 and f.status = 'pending'
             order by f.created_at desc"
        ),
        me,
    )
    .await?;
    // A request to someone who blocked me shows as pending, like any other.
    let outgoing = list(
        &state.db,
        concat!(
            "select ",
            public_user_columns!(),
            ", f.since from (
                 select user_id_2 as other, created_at as since from friendships
                  where user_id_1 = $1 and status = 'pending'
                 union all
                 select user_id_1, blocked_request_at from friendships
                  where user_id_2 = $1 and status = 'blocked' and blocked_request_at is not null
             ) f join users u on u.user_id = f.other
             order by f.since desc"
        ),
        me,
    )
    .await?;
    Ok(Json(FriendRequests {
        incoming: strangers(incoming),
        outgoing: strangers(outgoing),
    }))
}

/// Which user a request names: exactly one of friend code or username.
async fn request_target(db: &sqlx::PgPool, req: &FriendRequestBody) -> ApiResult<PublicUser> {
    let row: Option<PublicUserRow> = match (&req.friend_code, &req.username) {
        (Some(code), None) => {
            sqlx::query_as(concat!(
                "select ",
                public_user_columns!(),
                " from users u where u.friend_code = $1"
            ))
            .bind(parse_friend_code(code)?)
            .fetch_optional(db)
            .await?
        }
        (None, Some(name)) => {
            sqlx::query_as(concat!(
                "select ",
                public_user_columns!(),
                " from users u where u.username = $1"
            ))
            .bind(Username::parse(name)?.as_str())
            .fetch_optional(db)
            .await?
        }
        _ => {
            return Err(ApiError::validation(
                "friend_code",
                "give exactly one of friend_code or username",
            ))
        }
    };
    row.map(PublicUser::from).ok_or(ApiError::NotFound("user"))
}

/// POST /api/friends/requests
///
/// Sends a friend request by friend code or username: 202 `pending`. If that user had
/// already asked me, we become friends at once: 200 `friends`. Asking again is harmless
/// (same answer). A request to someone who blocked me answers exactly like any pending
/// request and is never shown to them. 409 `blocked` if I blocked them (unblock first).
#[utoipa::path(post, path = "/api/friends/requests", tag = "friends", security(("bearer" = [])),
    request_body = FriendRequestBody,
    responses(
        (status = 202, description = "request pending", body = FriendRequestOutcome),
        (status = 200, description = "now friends", body = FriendRequestOutcome),
        (status = 404, description = "no such user", body = ErrorBody),
        (status = 409, description = "`blocked`: I block this user", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn send_request(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<FriendRequestBody>,
) -> ApiResult<(StatusCode, Json<FriendRequestOutcome>)> {
    let me = auth.user_id();
    let target = request_target(&state.db, &req).await?;
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
            sqlx::query(concat!(
                "update friendships set status = 'accepted' where ",
                pair!()
            ))
            .bind(me)
            .bind(target.user_id)
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
        sqlx::query(concat!(
            "update friendships set blocked_request_at = coalesce(blocked_request_at, now()) where ",
            pair!()
        ))
        .bind(me)
        .bind(target.user_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    let friends = state_after == FriendRequestState::Friends;
    let target = seen_by_me(&state, target, friends).await?;
    match relation {
        Relation::Outgoing if inserted => {
            let request = Friend {
                user: me_as_seen(&state, me, false).await?,
                since,
            };
            state
                .events
                .publish([target.user_id], Event::FriendRequestReceived { request })
                .await;
        }
        Relation::Incoming => {
            let me_user = me_as_seen(&state, me, true).await?;
            state
                .events
                .publish(
                    [target.user_id],
                    Event::FriendRequestAccepted { user: me_user },
                )
                .await;
            state
                .events
                .publish(
                    [me],
                    Event::FriendRequestAccepted {
                        user: target.clone(),
                    },
                )
                .await;
        }
        _ => {}
    }
    let status = if friends {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(FriendRequestOutcome {
            state: state_after,
            user: target,
        }),
    ))
}

/// DELETE /api/friends/requests/{user_id}
///
/// Withdraws my pending request to that user. 404 if there is none.
#[utoipa::path(delete, path = "/api/friends/requests/{user_id}", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn cancel_request(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<StatusCode> {
    let me = auth.user_id();
    let mut tx = state.db.begin().await?;
    let row = lock_pair(&mut tx, me, other).await?;
    match Relation::of(row.as_ref(), me) {
        Relation::Outgoing => {
            sqlx::query(concat!("delete from friendships where ", pair!()))
                .bind(me)
                .bind(other)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            publish_pair(&state, me, other, |user_id| Event::FriendRequestCancelled {
                user_id,
            })
            .await;
        }
        Relation::BlockedByThem if had_hidden_request(&mut tx, me, other).await? => {
            sqlx::query(concat!(
                "update friendships set blocked_request_at = null where ",
                pair!()
            ))
            .bind(me)
            .bind(other)
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
    Ok(StatusCode::NO_CONTENT)
}

async fn had_hidden_request(tx: &mut PgConnection, me: UserId, other: UserId) -> ApiResult<bool> {
    Ok(sqlx::query_scalar::<_, bool>(concat!(
        "select blocked_request_at is not null from friendships where ",
        pair!()
    ))
    .bind(me)
    .bind(other)
    .fetch_optional(tx)
    .await?
    .unwrap_or(false))
}

/// POST /api/friends/requests/{user_id}/accept
///
/// Accepts that user's pending request to me: we become friends. 404 if there is none.
#[utoipa::path(post, path = "/api/friends/requests/{user_id}/accept", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = Friend), (status = 404, body = ErrorBody)))]
async fn accept_request(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<Json<Friend>> {
    let me = auth.user_id();
    let user = seen_by_me(&state, other_user(&state.db, me, other).await?, true).await?;
    let since: Option<DateTime<Utc>> = sqlx::query_scalar(
        "update friendships set status = 'accepted'
         where user_id_1 = $1 and user_id_2 = $2 and status = 'pending'
         returning updated_at",
    )
    .bind(other)
    .bind(me)
    .fetch_optional(&state.db)
    .await?;
    let since = since.ok_or(ApiError::NotFound("friend request"))?;
    state
        .events
        .publish(
            [other],
            Event::FriendRequestAccepted {
                user: me_as_seen(&state, me, true).await?,
            },
        )
        .await;
    state
        .events
        .publish([me], Event::FriendRequestAccepted { user: user.clone() })
        .await;
    Ok(Json(Friend { user, since }))
}

/// POST /api/friends/requests/{user_id}/decline
///
/// Declines that user's pending request to me. 404 if there is none.
#[utoipa::path(post, path = "/api/friends/requests/{user_id}/decline", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn decline_request(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<StatusCode> {
    let me = auth.user_id();
    let deleted = sqlx::query(
        "delete from friendships where user_id_1 = $1 and user_id_2 = $2 and status = 'pending'",
    )
    .bind(other)
    .bind(me)
    .execute(&state.db)
    .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound("friend request"));
    }
    publish_pair(&state, me, other, |user_id| Event::FriendRequestDeclined {
        user_id,
    })
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /api/friends/{user_id}
///
/// Ends a friendship. Our direct message stays readable but becomes read-only until we are
/// friends again. 404 if we are not friends.
#[utoipa::path(delete, path = "/api/friends/{user_id}", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove_friend(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<StatusCode> {
    let me = auth.user_id();
    let deleted = sqlx::query(concat!(
        "delete from friendships where ",
        pair!(),
        " and status = 'accepted'"
    ))
    .bind(me)
    .bind(other)
    .execute(&state.db)
    .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound("friend"));
    }
    publish_pair(&state, me, other, |user_id| Event::FriendRemoved {
        user_id,
    })
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Tells both sides, each event naming the other user.
async fn publish_pair(state: &AppState, me: UserId, other: UserId, event: fn(UserId) -> Event) {
    state.events.publish([me], event(other)).await;
    state.events.publish([other], event(me)).await;
}

/// GET /api/blocks
///
/// Users I block, most recent first.
#[utoipa::path(get, path = "/api/blocks", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = Vec<Friend>), (status = 401, body = ErrorBody)))]
async fn list_blocked(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Vec<Friend>>> {
    let blocked = list(
        &state.db,
        concat!(
            "select ",
            public_user_columns!(),
            ", f.since from (
                 select user_id_2 as other, updated_at as since from friendships
                  where user_id_1 = $1 and status = 'blocked'
                 union all
                 select user_id_1, updated_at from friendships
                  where user_id_2 = $1 and status = 'blocked' and user_2_blocked
             ) f join users u on u.user_id = f.other
             order by f.since desc"
        ),
        auth.user_id(),
    )
    .await?;
    Ok(Json(strangers(blocked)))
}

/// PUT /api/blocks/{user_id}
///
/// Blocks a user: ends a friendship or pending request between us, stops their requests and
/// their messages in our direct message. They are not told: to them it looks like being
/// unfriended, and a request they had sent me stays "pending" on their side. Idempotent.
#[utoipa::path(put, path = "/api/blocks/{user_id}", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 204), (status = 404, description = "no such user", body = ErrorBody)))]
async fn block(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<StatusCode> {
    let me = auth.user_id();
    other_user(&state.db, me, other).await?;
    let mut tx = state.db.begin().await?;
    let (_, row) = insert_or_lock(&mut tx, me, other, "blocked").await?;
    let relation = Relation::of(row.as_ref(), me);
    let query = match relation {
        // Just inserted (or already blocked by me): nothing more to do.
        Relation::IBlocked => None,
        // Only if the row kept vanishing under concurrent deletes: see insert_or_lock.
        Relation::None => return Err(ApiError::Unavailable),
        Relation::BlockedByThem => Some(concat!(
            "update friendships set user_2_blocked = true, blocked_request_at = null where ",
            pair!()
        )),
        // Their request stays visible to them as pending, as if I had never seen it.
        Relation::Incoming => Some(concat!(
            "update friendships set user_id_1 = $1, user_id_2 = $2, status = 'blocked',
                 blocked_request_at = created_at where ",
            pair!()
        )),
        Relation::Outgoing | Relation::Friends => Some(concat!(
            "update friendships set user_id_1 = $1, user_id_2 = $2, status = 'blocked' where ",
            pair!()
        )),
    };
    if let Some(query) = query {
        sqlx::query(query)
            .bind(me)
            .bind(other)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    match relation {
        Relation::Friends => {
            publish_pair(&state, me, other, |user_id| Event::FriendRemoved {
                user_id,
            })
            .await
        }
        Relation::Outgoing => {
            publish_pair(&state, me, other, |user_id| Event::FriendRequestCancelled {
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
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /api/blocks/{user_id}
///
/// Lifts my block. If they block me too, their block stays. 404 if I do not block them.
#[utoipa::path(delete, path = "/api/blocks/{user_id}", tag = "friends",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn unblock(
    State(state): State<AppState>,
    auth: Auth,
    Path(other): Path<UserId>,
) -> ApiResult<StatusCode> {
    let me = auth.user_id();
    let mut tx = state.db.begin().await?;
    let row = lock_pair(&mut tx, me, other).await?;
    if Relation::of(row.as_ref(), me) != Relation::IBlocked {
        return Err(ApiError::NotFound("block"));
    }
    let Some(row) = row else {
        return Err(ApiError::NotFound("block"));
    };
    let query = match (row.user_id_1 == me, row.user_2_blocked) {
        (true, false) => concat!("delete from friendships where ", pair!()),
        // Mutual: the row becomes their block of me alone.
        (true, true) => concat!(
            "update friendships set user_id_1 = $2, user_id_2 = $1, user_2_blocked = false where ",
            pair!()
        ),
        (false, _) => concat!(
            "update friendships set user_2_blocked = false where ",
            pair!()
        ),
    };
    sqlx::query(query)
        .bind(me)
        .bind(other)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
