//! The event bus: REST handlers publish [`Event`]s after their transaction commits; every
//! server instance receives them over Redis pub/sub (sharded pub/sub on a Redis Cluster)
//! and its gateway delivers each to the connected recipients.
//!
//! Publishing never fails a request: the change is already committed, and clients that miss
//! a live event catch up when they resume (messages by sequence number). A failed publish is
//! logged.

use protocol::{gateway::Event, UserId};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;

use crate::{keys::Keys, redis_conn::RedisConn};

/// What travels on the Redis channel: the event and who may see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub recipients: Vec<UserId>,
    pub event: Event,
}

#[derive(Clone)]
pub struct EventBus {
    redis: RedisConn,
    channel: String,
}

impl EventBus {
    pub fn new(redis: RedisConn, keys: &Keys) -> Self {
        Self {
            redis,
            channel: keys.events_channel(),
        }
    }

    /// Closes the sockets of ended sessions on every instance.
    pub async fn sessions_ended(
        &self,
        control_channel: &str,
        user_id: UserId,
        session_ids: Vec<String>,
    ) {
        if session_ids.is_empty() {
            return;
        }
        let control = crate::gateway::Control::SessionsEnded {
            user_id,
            session_ids,
        };
        let Ok(payload) = serde_json::to_string(&control) else {
            return;
        };
        let published = redis::cmd(self.redis.publish_command())
            .arg(control_channel)
            .arg(payload)
            .query_async::<i64>(&mut self.redis.clone())
            .await;
        if let Err(e) = published {
            // Sockets still notice at their next heartbeat.
            tracing::warn!(error = %e, "session end not published");
        }
    }

    /// Delivers `event` to `recipients` (deduplicated) on every instance.
    pub async fn publish(&self, recipients: impl IntoIterator<Item = UserId>, event: Event) {
        self.publish_all(recipients.into_iter().collect(), vec![event])
            .await;
    }

    /// Delivers each of `events`, in order, to `recipients` on every instance: one round
    /// trip to Redis for all of them (a batch of sends).
    pub async fn publish_all(&self, recipients: Vec<UserId>, events: Vec<Event>) {
        let mut recipients = recipients;
        recipients.sort_unstable();
        recipients.dedup();
        if recipients.is_empty() || events.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for event in events {
            let envelope = Envelope {
                recipients: recipients.clone(),
                event,
            };
            match serde_json::to_string(&envelope) {
                Ok(payload) => {
                    pipe.cmd(self.redis.publish_command())
                        .arg(&self.channel)
                        .arg(payload)
                        .ignore();
                }
                Err(e) => tracing::error!(error = %e, "cannot serialize event"),
            }
        }
        let published = pipe.query_async::<()>(&mut self.redis.clone()).await;
        if let Err(e) = published {
            tracing::warn!(error = %e, "events not published; clients catch up on resume");
        }
    }

    /// Delivers `event` to every member of `group_id` (read after commit).
    pub async fn publish_to_group(&self, db: impl PgExecutor<'_>, group_id: i64, event: Event) {
        match sqlx::query_scalar!(
            "select user_id from group_members where group_id = $1",
            group_id
        )
        .fetch_all(db)
        .await
        {
            Ok(members) => self.publish(members, event).await,
            Err(e) => {
                tracing::warn!(error = %e, group_id, "cannot read members; event not published")
            }
        }
    }
}
