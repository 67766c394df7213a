//! What a connecting client is told: the ready payload and the messages it missed, read
//! from PostgreSQL, the source of truth.

use protocol::{
    gateway::{Event, GroupId, GroupPosition, ServerFrame},
    messages::Message,
    voice::CallRing,
    UserId,
};
use sqlx::PgPool;

use super::{presence, Gateway};
use crate::{
    domain::{messages, users::fetch_user},
    error::ApiError,
    state::AppState,
};

pub async fn ready(
    state: &AppState,
    gateway: &Gateway,
    user_id: UserId,
    session_id: String,
) -> Result<ServerFrame, ApiError> {
    let user = fetch_user(&state.db, user_id).await?;
    let groups: Vec<(GroupId, i64, i64)> = sqlx::query!(
        r#"select g.group_id, g.last_seq,
                -- As GET /api/groups: the sequence span minus deletions, not a row count.
                g.last_seq - m.last_read_seq
                  - (select count(*) from message_deletions d
                      where d.group_id = g.group_id and d.seq > m.last_read_seq) as "unread!"
           from group_members m join chat_groups g on g.group_id = m.group_id
          where m.user_id = $1"#,
        user_id
    )
    .fetch_all(&state.db)
    .await?
    .into_iter()
    .map(|r| (r.group_id, r.last_seq, r.unread))
    .collect();
    let audience = presence::audience(&state.db, user_id).await?;
    let presences = presence::states(&state.db, &gateway.presence, &audience).await?;
    let group_ids: Vec<GroupId> = groups.iter().map(|g| g.0).collect();
    let voice_calls = gateway.voice.calls(&group_ids).await?;
    let now = super::membership::now_ms();
    let rings = gateway
        .voice
        .rings_for(&group_ids, user_id)
        .await?
        .into_iter()
        .map(|r| CallRing {
            group_id: r.group_id,
            caller_id: r.caller_id,
            expires_in_ms: u64::try_from(r.deadline_ms - now).unwrap_or(0),
        })
        .collect();
    Ok(ServerFrame::Ready {
        user,
        session_id,
        groups: groups
            .into_iter()
            .map(|(group_id, last_seq, unread)| GroupPosition {
                group_id,
                last_seq,
                unread,
            })
            .collect(),
        presences,
        voice_calls,
        rings,
    })
}

/// Up to `limit` messages of the group after `after`, as serialized `message_created`
/// frames with their sequence, oldest first.
pub async fn messages_after(
    db: &PgPool,
    group_id: GroupId,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>, ApiError> {
    let messages = messages::from_seq(db, group_id, after + 1, limit).await?;
    frames(messages)
}

/// The messages of the group strictly between two sequences, as frames, oldest first.
pub async fn messages_between(
    db: &PgPool,
    group_id: GroupId,
    after: i64,
    before: i64,
) -> Result<Vec<(i64, String)>, ApiError> {
    let mut messages = messages::from_seq(db, group_id, after + 1, before - after - 1).await?;
    messages.retain(|m| m.seq < before);
    frames(messages)
}

fn frames(messages: Vec<Message>) -> Result<Vec<(i64, String)>, ApiError> {
    messages
        .into_iter()
        .map(|message| {
            let seq = message.seq;
            let frame = ServerFrame::Event {
                event: Event::MessageCreated { message },
            };
            serde_json::to_string(&frame)
                .map(|f| (seq, f))
                .map_err(|e| ApiError::Internal(e.into()))
        })
        .collect()
}
