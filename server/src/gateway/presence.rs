//! Presence in Redis, shared by every instance.
//!
//! Each gateway connection is a member of its user's set in an [`ExpiringSets`] family. Its
//! instance renews it every heartbeat interval; a connection whose instance died stops being
//! renewed, and whichever instance sweeps it first reports the user offline if it was their
//! last.

use protocol::{
    gateway::{Event, Presence, PresenceState},
    users::UserStatus,
    UserId,
};
use sqlx::PgPool;

use super::membership::ExpiringSets;
use crate::{error::ApiError, events::EventBus};

/// Each user is a set of their live connections (`instance|conn`).
#[derive(Clone)]
pub struct PresenceStore {
    conns: ExpiringSets,
    instance: String,
}

impl PresenceStore {
    pub fn new(conns: ExpiringSets, instance: String) -> Self {
        Self { conns, instance }
    }

    fn member(&self, conn_id: u64) -> String {
        format!("{}|{conn_id}", self.instance)
    }

    /// Registers a connection; true if the user just came online.
    pub async fn connect(&self, user_id: UserId, conn_id: u64) -> Result<bool, ApiError> {
        let others = self
            .conns
            .add(&user_id.to_string(), &self.member(conn_id))
            .await?;
        Ok(others == 0)
    }

    /// Unregisters a connection; true if the user just went offline.
    pub async fn disconnect(&self, user_id: UserId, conn_id: u64) -> Result<bool, ApiError> {
        let (removed, left) = self
            .conns
            .remove(&user_id.to_string(), &self.member(conn_id))
            .await?;
        Ok(removed && left == 0)
    }

    /// Pushes the expiry of this instance's live connections forward.
    pub async fn renew(&self, conns: &[(UserId, u64)]) -> Result<(), ApiError> {
        let members: Vec<(String, String)> = conns
            .iter()
            .map(|&(user_id, conn_id)| (user_id.to_string(), self.member(conn_id)))
            .collect();
        self.conns.renew(&members).await
    }

    /// Removes expired connections of every instance; returns users now offline.
    pub async fn sweep(&self) -> Result<Vec<UserId>, ApiError> {
        let mut offline: Vec<UserId> = self
            .conns
            .sweep()
            .await?
            .into_iter()
            .filter(|e| e.left == 0)
            .filter_map(|e| e.set.parse().ok())
            .collect();
        offline.sort_unstable();
        offline.dedup();
        Ok(offline)
    }

    /// Which of `users` have a live connection.
    pub async fn online(&self, users: &[UserId]) -> Result<Vec<bool>, ApiError> {
        let sets: Vec<String> = users.iter().map(ToString::to_string).collect();
        let counts = self.conns.counts(&sets).await?;
        Ok(counts.into_iter().map(|c| c > 0).collect())
    }
}

/// Users who see `user_id`'s presence: accepted friends and co-members of any group.
pub async fn audience(db: &PgPool, user_id: UserId) -> Result<Vec<UserId>, ApiError> {
    Ok(sqlx::query_scalar!(
        r#"select user_id_2 as "user_id!" from friendships
            where user_id_1 = $1 and status = 'accepted'
         union
         select user_id_1 from friendships where user_id_2 = $1 and status = 'accepted'
         union
         select other.user_id from group_members mine
           join group_members other on other.group_id = mine.group_id
          where mine.user_id = $1 and other.user_id <> $1"#,
        user_id
    )
    .fetch_all(db)
    .await?)
}

/// The presence of each of `users` as others see it.
pub async fn states(
    db: &PgPool,
    store: &PresenceStore,
    users: &[UserId],
) -> Result<Vec<PresenceState>, ApiError> {
    let rows = sqlx::query!(
        "select user_id, status, last_seen from users where user_id = any($1)",
        users
    )
    .fetch_all(db)
    .await?;
    let ids: Vec<UserId> = rows.iter().map(|r| r.user_id).collect();
    let online = store.online(&ids).await?;
    Ok(rows
        .into_iter()
        .zip(online)
        .map(|(r, online)| PresenceState {
            user_id: r.user_id,
            presence: shown(online, &r.status),
            last_seen: r.last_seen,
        })
        .collect())
}

fn shown(online: bool, status: &str) -> Presence {
    match UserStatus::parse(status) {
        Some(s) if online => Presence::shown(s),
        _ => Presence::Offline,
    }
}

/// Why presence is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The first connection opened.
    Connected,
    /// The last connection closed or expired; records `last_seen`.
    Disconnected,
    /// The user chose another status while connected.
    StatusChanged,
}

/// Tells `user_id`'s audience their current presence.
pub async fn announce(db: &PgPool, events: &EventBus, user_id: UserId, change: Change) {
    let online = change != Change::Disconnected;
    let result: Result<(), ApiError> = async {
        let (status, last_seen) = if online {
            let r = sqlx::query!(
                "select status, last_seen from users where user_id = $1",
                user_id
            )
            .fetch_one(db)
            .await?;
            (r.status, r.last_seen)
        } else {
            let r = sqlx::query!(
                "update users set last_seen = now() where user_id = $1 returning status, last_seen",
                user_id
            )
            .fetch_one(db)
            .await?;
            (r.status, r.last_seen)
        };
        let presence = shown(online, &status);
        // An invisible user coming online or going offline changes nothing others see.
        if status == UserStatus::Invisible.as_str() && change != Change::StatusChanged {
            return Ok(());
        }
        let audience = audience(db, user_id).await?;
        events
            .publish(
                audience,
                Event::PresenceUpdated {
                    user_id,
                    presence,
                    last_seen,
                },
            )
            .await;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, user_id, "presence not announced");
    }
}
