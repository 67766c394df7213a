//! Group members: adding, removing, leaving, roles and ownership. Roles are ordered
//! owner > admin > member; each acts only on lower roles. Nobody is added to, removed
//! from or leaves a DM.

use protocol::{
    gateway::Event,
    groups::{GroupDetail, Member, Role},
    GroupId, UserId,
};
use sqlx::PgConnection;

use crate::{
    domain::{
        friends::are_friends,
        groups::{delete_group_tx, detail, membership, MemberRow},
        read_status::{flip_read, min_watermark, publish_all_read, AllRead},
        users::apply_presence,
    },
    error::{violated_constraint, ApiError, ApiResult},
    state::AppState,
};

async fn fetch_member(state: &AppState, group_id: GroupId, user_id: UserId) -> ApiResult<Member> {
    let row = sqlx::query_as!(
        MemberRow,
        "select u.user_id, u.username, u.display_name, u.profile_pic, u.status, u.last_seen,
                m.role, m.joined_at, m.last_read_seq
           from group_members m join users u on u.user_id = m.user_id
          where m.group_id = $1 and m.user_id = $2",
        group_id,
        user_id
    )
    .fetch_optional(&state.db)
    .await?;
    let mut member = Member::from(row.ok_or(ApiError::NotFound("member"))?);
    apply_presence(state, [&mut member.user]).await?;
    Ok(member)
}

/// Inserts a membership row; 409 `already_member` if there is one.
pub(super) async fn insert_member(
    tx: &mut PgConnection,
    group_id: GroupId,
    user_id: UserId,
    role: Role,
    last_read_seq: i64,
) -> ApiResult<()> {
    let inserted = sqlx::query!(
        "insert into group_members (group_id, user_id, role, last_read_seq) values ($1, $2, $3, $4)",
        group_id,
        user_id,
        role.as_str(),
        last_read_seq
    )
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

/// Adds one of my friends: admin or owner. 409 `already_member`, 409 `group_full` at the
/// configured maximum size; 403 for a DM or a user who is not my friend. The new member
/// starts with everything before their arrival counted as read.
pub async fn add_member(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    user_id: UserId,
) -> ApiResult<Member> {
    let mine = membership(&state.db, group_id, me).await?;
    if mine.is_dm {
        return Err(ApiError::Forbidden(
            "members cannot be added to a direct message",
        ));
    }
    mine.require(Role::Admin, "only admins and the owner can add members")?;
    if !are_friends(&state.db, me, user_id).await? {
        return Err(ApiError::Forbidden("you can add only your friends"));
    }
    let mut tx = state.db.begin().await?;
    // The group row lock serializes additions, so the size check cannot be raced past.
    let last_seq = sqlx::query_scalar!(
        "select last_seq from chat_groups where group_id = $1 for update",
        group_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound("group"))?;
    let size = sqlx::query_scalar!(
        r#"select count(*) as "size!" from group_members where group_id = $1"#,
        group_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if size >= state.settings.max_group_size {
        return Err(ApiError::Conflict {
            code: "group_full",
            message: "the group has reached its maximum size",
        });
    }
    insert_member(&mut tx, group_id, user_id, Role::Member, last_seq).await?;
    tx.commit().await?;
    let member = fetch_member(state, group_id, user_id).await?;
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
    Ok(member)
}

/// Removes a member and flips `is_read` on messages the leaver was the last one not to
/// have read.
async fn remove_member_tx(
    tx: &mut PgConnection,
    group_id: GroupId,
    user_id: UserId,
) -> ApiResult<Option<AllRead>> {
    let old_min = min_watermark(&mut *tx, group_id).await?;
    sqlx::query!(
        "delete from group_members where group_id = $1 and user_id = $2",
        group_id,
        user_id
    )
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

/// Removes a member of lower role than mine (admins remove members, the owner removes
/// anyone). My own user id means leaving (see [`leave_group`]).
pub async fn remove_member(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    user_id: UserId,
) -> ApiResult<()> {
    if user_id == me {
        return leave_group(state, group_id, me).await;
    }
    let mine = membership(&state.db, group_id, me).await?;
    mine.require(Role::Admin, "only admins and the owner can remove members")?;
    let target = membership(&state.db, group_id, user_id)
        .await
        .map_err(|_| ApiError::NotFound("member"))?;
    if target.role >= mine.role {
        return Err(ApiError::Forbidden(
            "you can remove only members of a lower role than yours",
        ));
    }
    let mut tx = state.db.begin().await?;
    let read = remove_member_tx(&mut tx, group_id, user_id).await?;
    tx.commit().await?;
    publish_removed(state, group_id, user_id, read).await;
    Ok(())
}

/// Leaves a group. The owner must transfer ownership first (409 `owner_must_transfer`),
/// unless they are the last member: then the group is deleted. Nobody leaves a DM (403).
pub async fn leave_group(state: &AppState, group_id: GroupId, me: UserId) -> ApiResult<()> {
    let mine = membership(&state.db, group_id, me).await?;
    if mine.is_dm {
        return Err(ApiError::Forbidden("you cannot leave a direct message"));
    }
    let mut tx = state.db.begin().await?;
    if mine.role == Role::Owner {
        let others = sqlx::query_scalar!(
            r#"select count(*) as "others!" from group_members
                where group_id = $1 and user_id <> $2"#,
            group_id,
            me
        )
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
        return Ok(());
    }
    let read = remove_member_tx(&mut tx, group_id, me).await?;
    tx.commit().await?;
    publish_removed(state, group_id, me, read).await;
    Ok(())
}

async fn set_role(
    tx: &mut PgConnection,
    group_id: GroupId,
    user_id: UserId,
    role: Role,
) -> ApiResult<bool> {
    let done = sqlx::query!(
        "update group_members set role = $3 where group_id = $1 and user_id = $2",
        group_id,
        user_id,
        role.as_str()
    )
    .execute(tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes a member an admin or an admin a member: owner only. Ownership moves only by
/// transfer (`role: owner` is 422).
pub async fn change_role(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    user_id: UserId,
    role: Role,
) -> ApiResult<Member> {
    let mine = membership(&state.db, group_id, me).await?;
    mine.require(Role::Owner, "only the owner can change roles")?;
    if role == Role::Owner {
        return Err(ApiError::validation(
            "role",
            "ownership moves only by transfer: POST /api/groups/{group_id}/owner",
        ));
    }
    if user_id == me {
        return Err(ApiError::Forbidden(
            "the owner cannot change their own role; transfer ownership instead",
        ));
    }
    let mut tx = state.db.begin().await?;
    if !set_role(&mut tx, group_id, user_id, role).await? {
        return Err(ApiError::NotFound("member"));
    }
    tx.commit().await?;
    let member = fetch_member(state, group_id, user_id).await?;
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
    Ok(member)
}

/// Transfers ownership to another member: owner only. The old owner becomes an admin.
pub async fn transfer_ownership(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    new_owner: UserId,
) -> ApiResult<GroupDetail> {
    let mine = membership(&state.db, group_id, me).await?;
    mine.require(Role::Owner, "only the owner can transfer ownership")?;
    if new_owner == me {
        return detail(state, group_id, Role::Owner).await;
    }
    let mut tx = state.db.begin().await?;
    // Demote first: at most one owner per group (group_members_one_owner_key). The `role`
    // condition re-checks, under the row lock, that I am still the owner.
    let demoted = sqlx::query!(
        "update group_members set role = 'admin'
          where group_id = $1 and user_id = $2 and role = 'owner'",
        group_id,
        me
    )
    .execute(&mut *tx)
    .await?;
    if demoted.rows_affected() == 0 {
        return Err(ApiError::Forbidden("only the owner can transfer ownership"));
    }
    if !set_role(&mut tx, group_id, new_owner, Role::Owner).await? {
        return Err(ApiError::NotFound("member"));
    }
    tx.commit().await?;
    for (user_id, role) in [(me, Role::Admin), (new_owner, Role::Owner)] {
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
    detail(state, group_id, Role::Admin).await
}
