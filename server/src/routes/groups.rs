//! Group chats and direct messages: create, list, read, rename, delete; members and roles.
//!
//! A non-member gets 404 for a group and everything in it, exactly as if it did not exist.
//! Roles are ordered owner > admin > member; each acts only on lower roles.
//!
//! A direct message (DM) is a group with `is_direct_msg`, no name and exactly its two
//! members, both `member`: nobody can be added, nobody leaves, nobody deletes it. It
//! survives unfriending and blocking but turns read-only: only friends send in a DM (see
//! [`ensure_dm_open`]), so a blocked user sees exactly what an unfriended one sees.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use protocol::{
    error::ErrorBody,
    gateway::Event,
    groups::{
        ChangeRoleRequest, CreateGroupRequest, Group, GroupDetail, GroupListItem, Member, Role,
        UpdateGroupRequest, UserRef,
    },
    messages::Message,
    users::PublicUser,
    GroupId, UserId,
};
use sqlx::{PgConnection, PgExecutor};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Auth,
    domain::{parse_description, parse_group_name},
    error::{violated_constraint, ApiError, ApiResult},
    extract::{Json, Path},
    public_user_columns,
    routes::{
        friends::are_friends,
        messages::{flip_read, min_watermark, publish_all_read, AllRead},
        users::{apply_presence, fetch_public_user, PublicUserRow},
    },
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

/// The columns of `chat_groups g` a [`Group`] is made of.
macro_rules! group_columns {
    () => {
        "g.group_id, g.name, g.description, g.is_direct_msg, g.created_at, g.updated_at, \
         g.last_seq, g.last_message_at"
    };
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    group_id: i64,
    name: Option<String>,
    description: Option<String>,
    is_direct_msg: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_seq: i64,
    last_message_at: Option<DateTime<Utc>>,
}

impl From<GroupRow> for Group {
    fn from(r: GroupRow) -> Self {
        Self {
            group_id: r.group_id,
            name: r.name,
            description: r.description,
            is_direct_msg: r.is_direct_msg,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_seq: r.last_seq,
            last_message_at: r.last_message_at,
        }
    }
}

fn role_of(s: &str) -> Role {
    // The column's CHECK allows only the three roles.
    Role::parse(s).unwrap_or(Role::Member)
}

/// The caller's place in a group.
pub struct Membership {
    pub role: Role,
    pub is_dm: bool,
    pub last_read_seq: i64,
}

impl Membership {
    /// 403 unless the member has at least `role` (never in a DM, where nobody administers).
    pub fn require(&self, role: Role, what: &'static str) -> ApiResult<()> {
        if self.is_dm || self.role < role {
            return Err(ApiError::Forbidden(what));
        }
        Ok(())
    }
}

/// The caller's membership, or 404 `not_found` for a group they are not in (whether or not
/// it exists).
pub async fn membership(
    db: impl PgExecutor<'_>,
    group_id: GroupId,
    user_id: UserId,
) -> ApiResult<Membership> {
    let row: Option<(String, bool, i64)> = sqlx::query_as(
        "select m.role, g.is_direct_msg, m.last_read_seq
           from group_members m join chat_groups g on g.group_id = m.group_id
          where m.group_id = $1 and m.user_id = $2",
    )
    .bind(group_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    let (role, is_dm, last_read_seq) = row.ok_or(ApiError::NotFound("group"))?;
    Ok(Membership {
        role: role_of(&role),
        is_dm,
        last_read_seq,
    })
}

/// 403 unless the two members of a DM are friends: after an unfriending or a block the DM
/// stays readable but nobody can send in it (the same answer in both cases, so a blocked
/// user cannot tell).
pub async fn ensure_dm_open(db: &sqlx::PgPool, group_id: GroupId, me: UserId) -> ApiResult<()> {
    let other: Option<i64> = sqlx::query_scalar(
        "select user_id from group_members where group_id = $1 and user_id <> $2 limit 1",
    )
    .bind(group_id)
    .bind(me)
    .fetch_optional(db)
    .await?;
    match other {
        Some(other) if are_friends(db, me, other).await? => Ok(()),
        _ => Err(ApiError::Forbidden(
            "only friends can send in a direct message; this conversation is read-only",
        )),
    }
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    #[sqlx(flatten)]
    user: PublicUserRow,
    role: String,
    joined_at: DateTime<Utc>,
    last_read_seq: i64,
}

impl From<MemberRow> for Member {
    fn from(r: MemberRow) -> Self {
        Self {
            user: r.user.into(),
            role: role_of(&r.role),
            joined_at: r.joined_at,
            last_read_seq: r.last_read_seq,
        }
    }
}

async fn fetch_members(db: impl PgExecutor<'_>, group_id: GroupId) -> ApiResult<Vec<Member>> {
    let rows: Vec<MemberRow> = sqlx::query_as(concat!(
        "select ",
        public_user_columns!(),
        ", m.role, m.joined_at, m.last_read_seq
           from group_members m join users u on u.user_id = m.user_id
          where m.group_id = $1
          order by m.joined_at, m.user_id"
    ))
    .bind(group_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Member::from).collect())
}

async fn fetch_member(state: &AppState, group_id: GroupId, user_id: UserId) -> ApiResult<Member> {
    let row: Option<MemberRow> = sqlx::query_as(concat!(
        "select ",
        public_user_columns!(),
        ", m.role, m.joined_at, m.last_read_seq
           from group_members m join users u on u.user_id = m.user_id
          where m.group_id = $1 and m.user_id = $2"
    ))
    .bind(group_id)
    .bind(user_id)
    .fetch_optional(&state.db)
    .await?;
    let mut member = Member::from(row.ok_or(ApiError::NotFound("member"))?);
    apply_presence(state, [&mut member.user]).await?;
    Ok(member)
}

async fn fetch_group(db: impl PgExecutor<'_>, group_id: GroupId) -> ApiResult<Group> {
    let row: Option<GroupRow> = sqlx::query_as(concat!(
        "select ",
        group_columns!(),
        " from chat_groups g where g.group_id = $1"
    ))
    .bind(group_id)
    .fetch_optional(db)
    .await?;
    row.map(Group::from).ok_or(ApiError::NotFound("group"))
}

async fn detail(state: &AppState, group_id: GroupId, my_role: Role) -> ApiResult<GroupDetail> {
    let mut members = fetch_members(&state.db, group_id).await?;
    apply_presence(state, members.iter_mut().map(|m| &mut m.user)).await?;
    Ok(GroupDetail {
        group: fetch_group(&state.db, group_id).await?,
        my_role,
        members,
    })
}

#[derive(sqlx::FromRow)]
struct ListRow {
    #[sqlx(flatten)]
    group: GroupRow,
    my_role: String,
    last_read_seq: i64,
    unread_count: i64,
    /// The latest message as JSON text (one nullable column instead of ten).
    last_message: Option<String>,
    dm_user: Option<String>,
}

/// My groups with my unread count (see `messages::UNREAD_COUNT_SQL`), the latest message
/// (one backward index step) and, for a DM, the other member.
pub const LIST_GROUPS_SQL: &str = concat!(
    "select ",
    group_columns!(),
    ", gm.role as my_role, gm.last_read_seq,
           g.last_seq - gm.last_read_seq
             - (select count(*) from message_deletions d
                 where d.group_id = g.group_id and d.seq > gm.last_read_seq) as unread_count,
           (select to_jsonb(x)::text from (
               select m.message_id, m.group_id, m.sender_id, m.content, m.seq, m.is_read,
                      m.sent_at, m.updated_at, m.edited_at, m.nonce
                 from messages m where m.group_id = g.group_id
                order by m.seq desc limit 1) x) as last_message,
           case when g.is_direct_msg then (select to_jsonb(x)::text from (
               select ",
    public_user_columns!(),
    " from group_members o join users u on u.user_id = o.user_id
                where o.group_id = g.group_id and o.user_id <> $1 limit 1) x) end as dm_user
          from group_members gm join chat_groups g on g.group_id = gm.group_id
         where gm.user_id = $1
         order by coalesce(g.last_message_at, g.created_at) desc, g.group_id desc"
);

/// GET /api/groups
///
/// My groups and DMs, most recently active first, each with its latest message and my
/// unread count (messages from others after my read watermark, computed from sequence
/// numbers without counting messages).
#[utoipa::path(get, path = "/api/groups", tag = "groups", security(("bearer" = [])),
    responses((status = 200, body = Vec<GroupListItem>), (status = 401, body = ErrorBody)))]
async fn list_groups(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Vec<GroupListItem>>> {
    let rows: Vec<ListRow> = sqlx::query_as(LIST_GROUPS_SQL)
        .bind(auth.user_id())
        .fetch_all(&state.db)
        .await?;
    let items = rows
        .into_iter()
        .map(|r| -> ApiResult<GroupListItem> {
            let last_message = r
                .last_message
                .as_deref()
                .map(serde_json::from_str::<Message>)
                .transpose()
                .map_err(|e| ApiError::Internal(e.into()))?;
            let dm_user = r
                .dm_user
                .as_deref()
                .map(serde_json::from_str::<PublicUserRow>)
                .transpose()
                .map_err(|e| ApiError::Internal(e.into()))?
                .map(PublicUser::from);
            Ok(GroupListItem {
                group: r.group.into(),
                my_role: role_of(&r.my_role),
                last_message,
                unread_count: r.unread_count,
                last_read_seq: r.last_read_seq,
                dm_user,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let mut items = items;
    apply_presence(&state, items.iter_mut().filter_map(|i| i.dm_user.as_mut())).await?;
    Ok(Json(items))
}

/// POST /api/groups
///
/// Creates a group with me as its owner.
#[utoipa::path(post, path = "/api/groups", tag = "groups", security(("bearer" = [])),
    request_body = CreateGroupRequest,
    responses((status = 201, body = GroupDetail), (status = 422, body = ErrorBody)))]
async fn create_group(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<CreateGroupRequest>,
) -> ApiResult<(StatusCode, Json<GroupDetail>)> {
    let name = parse_group_name(&req.name)?;
    let description = req
        .description
        .as_deref()
        .map(parse_description)
        .transpose()?
        .flatten();
    let mut tx = state.db.begin().await?;
    let group_id: i64 = sqlx::query_scalar(
        "insert into chat_groups (name, description) values ($1, $2) returning group_id",
    )
    .bind(&name)
    .bind(&description)
    .fetch_one(&mut *tx)
    .await?;
    insert_member(&mut tx, group_id, auth.user_id(), Role::Owner, 0).await?;
    tx.commit().await?;
    let detail = detail(&state, group_id, Role::Owner).await?;
    state
        .events
        .publish(
            [auth.user_id()],
            Event::GroupCreated {
                group: detail.clone(),
            },
        )
        .await;
    Ok((StatusCode::CREATED, Json(detail)))
}

async fn insert_member(
    tx: &mut PgConnection,
    group_id: GroupId,
    user_id: UserId,
    role: Role,
    last_read_seq: i64,
) -> ApiResult<()> {
    let inserted = sqlx::query(
        "insert into group_members (group_id, user_id, role, last_read_seq) values ($1, $2, $3, $4)",
    )
    .bind(group_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(last_read_seq)
    .execute(tx)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if violated_constraint(&e) == Some("group_members_group_user_key") => {
            Err(ApiError::Conflict {
                code: "already_member",
                message: "that user is already a member",
            })
        }
        Err(e) => Err(e.into()),
    }
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
    let me = membership(&state.db, group_id, auth.user_id()).await?;
    Ok(Json(detail(&state, group_id, me.role).await?))
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
    let me = membership(&state.db, group_id, auth.user_id()).await?;
    me.require(
        Role::Admin,
        "only admins and the owner can change the group",
    )?;
    let name = req.name.as_deref().map(parse_group_name).transpose()?;
    let description = req
        .description
        .map(|d| {
            d.as_deref()
                .map(parse_description)
                .transpose()
                .map(Option::flatten)
        })
        .transpose()?;
    let row: Option<GroupRow> = sqlx::query_as(concat!(
        "update chat_groups g set
             name = coalesce($2, name),
             description = case when $3 then $4 else description end
         where group_id = $1
         returning ",
        group_columns!()
    ))
    .bind(group_id)
    .bind(&name)
    .bind(description.is_some())
    .bind(description.flatten())
    .fetch_optional(&state.db)
    .await?;
    let group = Group::from(row.ok_or(ApiError::NotFound("group"))?);
    state
        .events
        .publish_to_group(
            &state.db,
            group_id,
            Event::GroupUpdated {
                group: group.clone(),
            },
        )
        .await;
    Ok(Json(group))
}

/// Deletes the group with its history; returns who was in it.
async fn delete_group_tx(tx: &mut PgConnection, group_id: GroupId) -> ApiResult<Vec<UserId>> {
    let members: Vec<i64> =
        sqlx::query_scalar("select user_id from group_members where group_id = $1")
            .bind(group_id)
            .fetch_all(&mut *tx)
            .await?;
    sqlx::query("delete from chat_groups where group_id = $1")
        .bind(group_id)
        .execute(&mut *tx)
        .await?;
    Ok(members)
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
    let me = membership(&state.db, group_id, auth.user_id()).await?;
    me.require(Role::Owner, "only the owner can delete the group")?;
    let mut tx = state.db.begin().await?;
    let members = delete_group_tx(&mut tx, group_id).await?;
    tx.commit().await?;
    state
        .events
        .publish(members, Event::GroupDeleted { group_id })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The DM's key: the same for both users, so the unique constraint makes get-or-create
/// idempotent under concurrency.
fn dm_key(a: UserId, b: UserId) -> String {
    format!("{}:{}", a.min(b), a.max(b))
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
    let me = auth.user_id();
    let other = req.user_id;
    if other == me || fetch_public_user(&state.db, other).await?.is_none() {
        return Err(ApiError::NotFound("user"));
    }
    let key = dm_key(me, other);
    let existing = || async {
        sqlx::query_scalar::<_, i64>("select group_id from chat_groups where dm_key = $1")
            .bind(&key)
            .fetch_optional(&state.db)
            .await
    };
    if let Some(group_id) = existing().await? {
        return Ok((
            StatusCode::OK,
            Json(detail(&state, group_id, Role::Member).await?),
        ));
    }
    if !are_friends(&state.db, me, other).await? {
        return Err(ApiError::Forbidden(
            "you can start a direct message only with a friend",
        ));
    }
    let mut tx = state.db.begin().await?;
    let created: Option<i64> = sqlx::query_scalar(
        "insert into chat_groups (is_direct_msg, dm_key) values (true, $1)
         on conflict (dm_key) do nothing returning group_id",
    )
    .bind(&key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(group_id) = created else {
        // A concurrent call created it; the conflict waited for its commit, so it is visible.
        tx.rollback().await?;
        let group_id = existing().await?.ok_or(ApiError::NotFound("group"))?;
        return Ok((
            StatusCode::OK,
            Json(detail(&state, group_id, Role::Member).await?),
        ));
    };
    insert_member(&mut tx, group_id, me, Role::Member, 0).await?;
    insert_member(&mut tx, group_id, other, Role::Member, 0).await?;
    tx.commit().await?;
    let detail = detail(&state, group_id, Role::Member).await?;
    state
        .events
        .publish(
            [me, other],
            Event::GroupCreated {
                group: detail.clone(),
            },
        )
        .await;
    Ok((StatusCode::CREATED, Json(detail)))
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
    let me = membership(&state.db, group_id, auth.user_id()).await?;
    if me.is_dm {
        return Err(ApiError::Forbidden(
            "members cannot be added to a direct message",
        ));
    }
    me.require(Role::Admin, "only admins and the owner can add members")?;
    if !are_friends(&state.db, auth.user_id(), req.user_id).await? {
        return Err(ApiError::Forbidden("you can add only your friends"));
    }
    let mut tx = state.db.begin().await?;
    // The group row lock serializes additions, so the size check cannot be raced past.
    let last_seq: Option<i64> =
        sqlx::query_scalar("select last_seq from chat_groups where group_id = $1 for update")
            .bind(group_id)
            .fetch_optional(&mut *tx)
            .await?;
    let last_seq = last_seq.ok_or(ApiError::NotFound("group"))?;
    let size: i64 = sqlx::query_scalar("select count(*) from group_members where group_id = $1")
        .bind(group_id)
        .fetch_one(&mut *tx)
        .await?;
    if size >= state.settings.max_group_size {
        return Err(ApiError::Conflict {
            code: "group_full",
            message: "the group has reached its maximum size",
        });
    }
    insert_member(&mut tx, group_id, req.user_id, Role::Member, last_seq).await?;
    tx.commit().await?;
    let member = fetch_member(&state, group_id, req.user_id).await?;
    state
        .events
        .publish_to_group(
            &state.db,
            group_id,
            Event::MemberAdded {
                group_id,
                member: member.clone(),
            },
        )
        .await;
    Ok((StatusCode::CREATED, Json(member)))
}

/// Removes a member and flips `is_read` on messages the leaver was the last one not to
/// have read.
async fn remove_member_tx(
    tx: &mut PgConnection,
    group_id: GroupId,
    user_id: UserId,
) -> ApiResult<Option<AllRead>> {
    let old_min = min_watermark(&mut *tx, group_id).await?;
    sqlx::query("delete from group_members where group_id = $1 and user_id = $2")
        .bind(group_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    flip_read(tx, group_id, old_min).await
}

async fn publish_removed(
    state: &AppState,
    group_id: GroupId,
    user_id: UserId,
    read: Option<AllRead>,
) {
    let event = Event::MemberRemoved { group_id, user_id };
    state
        .events
        .publish_to_group(&state.db, group_id, event.clone())
        .await;
    state.events.publish([user_id], event).await;
    publish_all_read(state, group_id, read).await;
}

/// DELETE /api/groups/{group_id}/members/{user_id}
///
/// Removes a member of lower role than mine (admins remove members, the owner removes
/// anyone). My own user id means leaving (see `POST /api/groups/{group_id}/leave`).
#[utoipa::path(delete, path = "/api/groups/{group_id}/members/{user_id}", tag = "groups",
    security(("bearer" = [])), params(("group_id" = i64, Path), ("user_id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    Path((group_id, user_id)): Path<(GroupId, UserId)>,
) -> ApiResult<StatusCode> {
    if user_id == auth.user_id() {
        return leave_group(State(state), auth, Path(group_id)).await;
    }
    let me = membership(&state.db, group_id, auth.user_id()).await?;
    me.require(Role::Admin, "only admins and the owner can remove members")?;
    let target = membership(&state.db, group_id, user_id)
        .await
        .map_err(|_| ApiError::NotFound("member"))?;
    if target.role >= me.role {
        return Err(ApiError::Forbidden(
            "you can remove only members of a lower role than yours",
        ));
    }
    let mut tx = state.db.begin().await?;
    let read = remove_member_tx(&mut tx, group_id, user_id).await?;
    tx.commit().await?;
    publish_removed(&state, group_id, user_id, read).await;
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
    let user_id = auth.user_id();
    let me = membership(&state.db, group_id, user_id).await?;
    if me.is_dm {
        return Err(ApiError::Forbidden("you cannot leave a direct message"));
    }
    let mut tx = state.db.begin().await?;
    if me.role == Role::Owner {
        let others: i64 = sqlx::query_scalar(
            "select count(*) from group_members where group_id = $1 and user_id <> $2",
        )
        .bind(group_id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        if others > 0 {
            return Err(ApiError::Conflict {
                code: "owner_must_transfer",
                message: "transfer ownership before leaving the group",
            });
        }
        let members = delete_group_tx(&mut tx, group_id).await?;
        tx.commit().await?;
        state
            .events
            .publish(members, Event::GroupDeleted { group_id })
            .await;
        return Ok(StatusCode::NO_CONTENT);
    }
    let read = remove_member_tx(&mut tx, group_id, user_id).await?;
    tx.commit().await?;
    publish_removed(&state, group_id, user_id, read).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_role(
    tx: &mut PgConnection,
    group_id: GroupId,
    user_id: UserId,
    role: Role,
) -> ApiResult<bool> {
    let done =
        sqlx::query("update group_members set role = $3 where group_id = $1 and user_id = $2")
            .bind(group_id)
            .bind(user_id)
            .bind(role.as_str())
            .execute(tx)
            .await?;
    Ok(done.rows_affected() == 1)
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
    let me = membership(&state.db, group_id, auth.user_id()).await?;
    me.require(Role::Owner, "only the owner can change roles")?;
    if req.role == Role::Owner {
        return Err(ApiError::validation(
            "role",
            "ownership moves only by transfer: POST /api/groups/{group_id}/owner",
        ));
    }
    if user_id == auth.user_id() {
        return Err(ApiError::Forbidden(
            "the owner cannot change their own role; transfer ownership instead",
        ));
    }
    let mut tx = state.db.begin().await?;
    if !set_role(&mut tx, group_id, user_id, req.role).await? {
        return Err(ApiError::NotFound("member"));
    }
    tx.commit().await?;
    let member = fetch_member(&state, group_id, user_id).await?;
    state
        .events
        .publish_to_group(
            &state.db,
            group_id,
            Event::MemberRoleChanged {
                group_id,
                user_id,
                role: req.role,
            },
        )
        .await;
    Ok(Json(member))
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
    let me = membership(&state.db, group_id, auth.user_id()).await?;
    me.require(Role::Owner, "only the owner can transfer ownership")?;
    if req.user_id == auth.user_id() {
        return Ok(Json(detail(&state, group_id, Role::Owner).await?));
    }
    let mut tx = state.db.begin().await?;
    // Demote first: at most one owner per group (group_members_one_owner_key). The `role`
    // condition re-checks, under the row lock, that I am still the owner.
    let demoted = sqlx::query(
        "update group_members set role = 'admin'
          where group_id = $1 and user_id = $2 and role = 'owner'",
    )
    .bind(group_id)
    .bind(auth.user_id())
    .execute(&mut *tx)
    .await?;
    if demoted.rows_affected() == 0 {
        return Err(ApiError::Forbidden("only the owner can transfer ownership"));
    }
    if !set_role(&mut tx, group_id, req.user_id, Role::Owner).await? {
        return Err(ApiError::NotFound("member"));
    }
    tx.commit().await?;
    for (user_id, role) in [(auth.user_id(), Role::Admin), (req.user_id, Role::Owner)] {
        state
            .events
            .publish_to_group(
                &state.db,
                group_id,
                Event::MemberRoleChanged {
                    group_id,
                    user_id,
                    role,
                },
            )
            .await;
    }
    Ok(Json(detail(&state, group_id, Role::Admin).await?))
}
