//! Group chats and direct messages: create, list, read, rename, delete; the caller's
//! membership, which every group-scoped operation checks first.
//!
//! A non-member gets 404 for a group and everything in it, exactly as if it did not exist.
//! Roles are ordered owner > admin > member; each acts only on lower roles (see
//! [`super::members`]).
//!
//! A direct message (DM) is a group with `is_direct_msg`, no name and exactly its two
//! members, both `member`: nobody can be added, nobody leaves, nobody deletes it. It
//! survives unfriending and blocking but turns read-only: only friends send in a DM (see
//! [`ensure_dm_open`]), so a blocked user sees exactly what an unfriended one sees.

use chrono::{DateTime, Utc};
use protocol::{
    gateway::Event,
    groups::{Group, GroupDetail, GroupListItem, Member, Role},
    messages::Message,
    users::PublicUser,
    GroupId, UserId,
};
use sqlx::{PgConnection, PgExecutor};

use crate::{
    domain::{
        friends::are_friends,
        members::insert_member,
        users::{apply_presence, fetch_public_user, public_user_row, PublicUserRow},
        Description, GroupName,
    },
    error::{ApiError, ApiResult},
    state::AppState,
};

/// A row of `chat_groups` as the checked queries of this module read it.
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

pub(super) fn role_of(s: &str) -> Role {
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
    let row = sqlx::query!(
        "select m.role, g.is_direct_msg, m.last_read_seq
           from group_members m join chat_groups g on g.group_id = m.group_id
          where m.group_id = $1 and m.user_id = $2",
        group_id,
        user_id
    )
    .fetch_optional(db)
    .await?
    .ok_or(ApiError::NotFound("group"))?;
    Ok(Membership {
        role: role_of(&row.role),
        is_dm: row.is_direct_msg,
        last_read_seq: row.last_read_seq,
    })
}

/// Why nobody can send in a DM whose two members are not (or no longer) friends.
pub const DM_READ_ONLY: &str =
    "only friends can send in a direct message; this conversation is read-only";

/// 403 unless the two members of a DM are friends: after an unfriending or a block the DM
/// stays readable but nobody can send in it (the same answer in both cases, so a blocked
/// user cannot tell).
pub async fn ensure_dm_open(db: &sqlx::PgPool, group_id: GroupId, me: UserId) -> ApiResult<()> {
    let other = sqlx::query_scalar!(
        "select user_id from group_members where group_id = $1 and user_id <> $2 limit 1",
        group_id,
        me
    )
    .fetch_optional(db)
    .await?;
    match other {
        Some(other) if are_friends(db, me, other).await? => Ok(()),
        _ => Err(ApiError::Forbidden(DM_READ_ONLY)),
    }
}

/// A member with their public profile, as the checked queries of this module and
/// [`super::members`] read it.
pub(super) struct MemberRow {
    pub(super) user_id: i64,
    pub(super) username: String,
    pub(super) display_name: Option<String>,
    pub(super) profile_pic: Option<String>,
    pub(super) status: String,
    pub(super) last_seen: Option<DateTime<Utc>>,
    pub(super) role: String,
    pub(super) joined_at: DateTime<Utc>,
    pub(super) last_read_seq: i64,
}

impl From<MemberRow> for Member {
    fn from(r: MemberRow) -> Self {
        let user = public_user_row!(r);
        Self {
            user: user.into(),
            role: role_of(&r.role),
            joined_at: r.joined_at,
            last_read_seq: r.last_read_seq,
        }
    }
}

async fn fetch_members(db: impl PgExecutor<'_>, group_id: GroupId) -> ApiResult<Vec<Member>> {
    let rows = sqlx::query_as!(
        MemberRow,
        "select u.user_id, u.username, u.display_name, u.profile_pic, u.status, u.last_seen,
                m.role, m.joined_at, m.last_read_seq
           from group_members m join users u on u.user_id = m.user_id
          where m.group_id = $1
          order by m.joined_at, m.user_id",
        group_id
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Member::from).collect())
}

async fn fetch_group(db: impl PgExecutor<'_>, group_id: GroupId) -> ApiResult<Group> {
    let row = sqlx::query_as!(
        GroupRow,
        "select g.group_id, g.name, g.description, g.is_direct_msg, g.created_at, g.updated_at,
                g.last_seq, g.last_message_at
           from chat_groups g where g.group_id = $1",
        group_id
    )
    .fetch_optional(db)
    .await?;
    row.map(Group::from).ok_or(ApiError::NotFound("group"))
}

/// The group with its members (their presence applied), as `my_role` sees it.
pub(super) async fn detail(
    state: &AppState,
    group_id: GroupId,
    my_role: Role,
) -> ApiResult<GroupDetail> {
    let mut members = fetch_members(&state.db, group_id).await?;
    apply_presence(state, members.iter_mut().map(|m| &mut m.user)).await?;
    Ok(GroupDetail {
        group: fetch_group(&state.db, group_id).await?,
        my_role,
        members,
    })
}

/// My groups with my unread count (see `read_status::UNREAD_COUNT_SQL`), the latest message
/// (one backward index step, as JSON text: one nullable column instead of ten) and, for a
/// DM, the other member. Public so a test can EXPLAIN exactly what the API runs; checked
/// against the schema at build time through `sqlx::query_file!` on the same file.
pub const LIST_GROUPS_SQL: &str = include_str!("groups/list_groups.sql");

/// My groups and DMs, most recently active first, each with its latest message and my
/// unread count.
pub async fn list_groups(state: &AppState, me: UserId) -> ApiResult<Vec<GroupListItem>> {
    let rows = sqlx::query_file!("src/domain/groups/list_groups.sql", me)
        .fetch_all(&state.db)
        .await?;
    let mut items = rows
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
            let group = GroupRow {
                group_id: r.group_id,
                name: r.name,
                description: r.description,
                is_direct_msg: r.is_direct_msg,
                created_at: r.created_at,
                updated_at: r.updated_at,
                last_seq: r.last_seq,
                last_message_at: r.last_message_at,
            };
            Ok(GroupListItem {
                group: group.into(),
                my_role: role_of(&r.my_role),
                last_message,
                unread_count: r.unread_count,
                last_read_seq: r.last_read_seq,
                dm_user,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    apply_presence(state, items.iter_mut().filter_map(|i| i.dm_user.as_mut())).await?;
    Ok(items)
}

/// Creates a group with `me` as its owner.
pub async fn create_group(
    state: &AppState,
    me: UserId,
    name: &GroupName,
    description: Option<&Description>,
) -> ApiResult<GroupDetail> {
    let mut tx = state.db.begin().await?;
    let group_id = sqlx::query_scalar!(
        "insert into chat_groups (name, description) values ($1, $2) returning group_id",
        name.as_str(),
        description.map(Description::as_str)
    )
    .fetch_one(&mut *tx)
    .await?;
    insert_member(&mut tx, group_id, me, Role::Owner, 0).await?;
    tx.commit().await?;
    let detail = detail(state, group_id, Role::Owner).await?;
    state
        .events
        .publish(
            [me],
            Event::GroupCreated {
                group: detail.clone(),
            },
        )
        .await;
    Ok(detail)
}

/// The group with its members. 404 unless I am a member.
pub async fn get_group(state: &AppState, group_id: GroupId, me: UserId) -> ApiResult<GroupDetail> {
    let member = membership(&state.db, group_id, me).await?;
    detail(state, group_id, member.role).await
}

/// A change to a group: `None` leaves a field alone; a description of `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct GroupChange {
    pub name: Option<GroupName>,
    pub description: Option<Option<Description>>,
}

/// Renames a group or changes its description: admin or owner. A DM has neither (403).
pub async fn update_group(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    change: GroupChange,
) -> ApiResult<Group> {
    let member = membership(&state.db, group_id, me).await?;
    member.require(
        Role::Admin,
        "only admins and the owner can change the group",
    )?;
    let clear_or_set = change.description.is_some();
    let description = change.description.flatten();
    let row = sqlx::query_as!(
        GroupRow,
        "update chat_groups g set
             name = coalesce($2, name),
             description = case when $3 then $4 else description end
         where group_id = $1
         returning g.group_id, g.name, g.description, g.is_direct_msg, g.created_at,
                   g.updated_at, g.last_seq, g.last_message_at",
        group_id,
        change.name.as_ref().map(GroupName::as_str),
        clear_or_set,
        description.as_ref().map(Description::as_str)
    )
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
    Ok(group)
}

/// Deletes the group with its history; returns who was in it.
pub(super) async fn delete_group_tx(
    tx: &mut PgConnection,
    group_id: GroupId,
) -> ApiResult<Vec<UserId>> {
    let members = sqlx::query_scalar!(
        "select user_id from group_members where group_id = $1",
        group_id
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query!("delete from chat_groups where group_id = $1", group_id)
        .execute(&mut *tx)
        .await?;
    Ok(members)
}

/// Deletes a group and all its messages: owner only. A DM cannot be deleted (403).
pub async fn delete_group(state: &AppState, group_id: GroupId, me: UserId) -> ApiResult<()> {
    let member = membership(&state.db, group_id, me).await?;
    member.require(Role::Owner, "only the owner can delete the group")?;
    let mut tx = state.db.begin().await?;
    let members = delete_group_tx(&mut tx, group_id).await?;
    tx.commit().await?;
    state
        .events
        .publish(members, Event::GroupDeleted { group_id })
        .await;
    Ok(())
}

/// The DM's key: the same for both users, so the unique constraint makes get-or-create
/// idempotent under concurrency.
fn dm_key(a: UserId, b: UserId) -> String {
    format!("{}:{}", a.min(b), a.max(b))
}

/// Gets or creates my direct message with a friend; `true` when created. Concurrent calls
/// from either side yield one DM. An existing DM is returned even after an unfriending
/// (read-only); creating one needs a friendship (403 otherwise). 404 for no such user.
pub async fn open_dm(
    state: &AppState,
    me: UserId,
    other: UserId,
) -> ApiResult<(bool, GroupDetail)> {
    if other == me || fetch_public_user(&state.db, other).await?.is_none() {
        return Err(ApiError::NotFound("user"));
    }
    let key = dm_key(me, other);
    let existing = || async {
        sqlx::query_scalar!("select group_id from chat_groups where dm_key = $1", key)
            .fetch_optional(&state.db)
            .await
    };
    if let Some(group_id) = existing().await? {
        return Ok((false, detail(state, group_id, Role::Member).await?));
    }
    if !are_friends(&state.db, me, other).await? {
        return Err(ApiError::Forbidden(
            "you can start a direct message only with a friend",
        ));
    }
    let mut tx = state.db.begin().await?;
    let created = sqlx::query_scalar!(
        "insert into chat_groups (is_direct_msg, dm_key) values (true, $1)
         on conflict (dm_key) do nothing returning group_id",
        key
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(group_id) = created else {
        // A concurrent call created it; the conflict waited for its commit, so it is visible.
        tx.rollback().await?;
        let group_id = existing().await?.ok_or(ApiError::NotFound("group"))?;
        return Ok((false, detail(state, group_id, Role::Member).await?));
    };
    insert_member(&mut tx, group_id, me, Role::Member, 0).await?;
    insert_member(&mut tx, group_id, other, Role::Member, 0).await?;
    tx.commit().await?;
    let detail = detail(state, group_id, Role::Member).await?;
    state
        .events
        .publish(
            [me, other],
            Event::GroupCreated {
                group: detail.clone(),
            },
        )
        .await;
    Ok((true, detail))
}
