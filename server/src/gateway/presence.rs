//! Presence in Redis, shared by every instance.
//!
//! Each gateway connection is a member of two sorted sets scored by its expiry time: the
//! user's own set and a global one. Its instance renews the scores every heartbeat interval;
//! a connection whose instance died simply stops being renewed, and whichever instance
//! sweeps it first (atomically, in Lua) reports the user offline if it was their last.

use std::time::{SystemTime, UNIX_EPOCH};

use protocol::{
    gateway::{Event, Presence, PresenceState},
    users::UserStatus,
    UserId,
};
use redis::{aio::ConnectionManager, Script};
use sqlx::PgPool;

use crate::{error::ApiError, events::EventBus, keys::Keys};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// KEYS: user set, global set. ARGV: user member, global member, expiry, now.
/// Returns how many live connections the user had before this one.
const CONNECT: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return before
"#;

/// KEYS: user set, global set. ARGV: user member, global member, now.
/// Returns 1 if this was the user's last live connection (and it was still registered).
const DISCONNECT: &str = r#"
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if removed == 1 and redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
return 0
"#;

/// KEYS: global set. ARGV: now, user-set key prefix, batch size.
/// Removes expired connections; returns the users left with none.
const SWEEP: &str = r#"
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local offline = {}
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[1], member)
  local sep = string.find(member, '|', 1, true)
  if sep then
    local user = string.sub(member, 1, sep - 1)
    local key = ARGV[2] .. user
    redis.call('ZREM', key, string.sub(member, sep + 1))
    redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
    if redis.call('ZCARD', key) == 0 then table.insert(offline, user) end
  end
end
return offline
"#;

/// Most expired connections one sweep handles; the next sweep takes the rest.
const SWEEP_BATCH: usize = 500;

#[derive(Clone)]
pub struct PresenceStore {
    redis: ConnectionManager,
    keys: Keys,
    instance: String,
    /// How long a connection stays present without renewal.
    ttl_ms: i64,
}

impl PresenceStore {
    pub fn new(redis: ConnectionManager, keys: Keys, instance: String, ttl_ms: i64) -> Self {
        Self {
            redis,
            keys,
            instance,
            ttl_ms,
        }
    }

    fn members(&self, user_id: UserId, conn_id: u64) -> (String, String) {
        let local = format!("{}|{conn_id}", self.instance);
        (local.clone(), format!("{user_id}|{local}"))
    }

    /// Registers a connection; true if the user just came online.
    pub async fn connect(&self, user_id: UserId, conn_id: u64) -> Result<bool, ApiError> {
        let (member, global) = self.members(user_id, conn_id);
        let now = now_ms();
        let before: i64 = Script::new(CONNECT)
            .key(self.keys.presence_user(user_id))
            .key(self.keys.presence_conns())
            .arg(member)
            .arg(global)
            .arg(now + self.ttl_ms)
            .arg(now)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(before == 0)
    }

    /// Unregisters a connection; true if the user just went offline.
    pub async fn disconnect(&self, user_id: UserId, conn_id: u64) -> Result<bool, ApiError> {
        let (member, global) = self.members(user_id, conn_id);
        let last: i64 = Script::new(DISCONNECT)
            .key(self.keys.presence_user(user_id))
            .key(self.keys.presence_conns())
            .arg(member)
            .arg(global)
            .arg(now_ms())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(last == 1)
    }

    /// Pushes the expiry of this instance's live connections forward.
    pub async fn renew(&self, conns: &[(UserId, u64)]) -> Result<(), ApiError> {
        if conns.is_empty() {
            return Ok(());
        }
        let expiry = now_ms() + self.ttl_ms;
        let mut pipe = redis::pipe();
        for &(user_id, conn_id) in conns {
            let (member, global) = self.members(user_id, conn_id);
            let user_key = self.keys.presence_user(user_id);
            // XX: never resurrect a connection that a sweep already declared gone.
            pipe.cmd("ZADD")
                .arg(&user_key)
                .arg("XX")
                .arg(expiry)
                .arg(member)
                .ignore();
            pipe.cmd("PEXPIREAT").arg(&user_key).arg(expiry).ignore();
            pipe.cmd("ZADD")
                .arg(self.keys.presence_conns())
                .arg("XX")
                .arg(expiry)
                .arg(global)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// Removes expired connections of every instance; returns users now offline.
    pub async fn sweep(&self) -> Result<Vec<UserId>, ApiError> {
        let offline: Vec<String> = Script::new(SWEEP)
            .key(self.keys.presence_conns())
            .arg(now_ms())
            .arg(self.keys.presence_user_prefix())
            .arg(SWEEP_BATCH)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(offline.iter().filter_map(|u| u.parse().ok()).collect())
    }

    /// Which of `users` have a live connection.
    pub async fn online(&self, users: &[UserId]) -> Result<Vec<bool>, ApiError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut pipe = redis::pipe();
        for &u in users {
            pipe.cmd("ZCOUNT")
                .arg(self.keys.presence_user(u))
                .arg(now)
                .arg("+inf");
        }
        let counts: Vec<i64> = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(counts.into_iter().map(|c| c > 0).collect())
    }
}

/// Users who see `user_id`'s presence: accepted friends and co-members of any group.
pub async fn audience(db: &PgPool, user_id: UserId) -> Result<Vec<UserId>, ApiError> {
    Ok(sqlx::query_scalar(
        "select user_id_2 from friendships where user_id_1 = $1 and status = 'accepted'
         union
         select user_id_1 from friendships where user_id_2 = $1 and status = 'accepted'
         union
         select other.user_id from group_members mine
           join group_members other on other.group_id = mine.group_id
          where mine.user_id = $1 and other.user_id <> $1",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

/// The presence of each of `users` as others see it.
pub async fn states(
    db: &PgPool,
    store: &PresenceStore,
    users: &[UserId],
) -> Result<Vec<PresenceState>, ApiError> {
    let rows: Vec<(UserId, String, Option<chrono::DateTime<chrono::Utc>>)> =
        sqlx::query_as("select user_id, status, last_seen from users where user_id = any($1)")
            .bind(users)
            .fetch_all(db)
            .await?;
    let ids: Vec<UserId> = rows.iter().map(|r| r.0).collect();
    let online = store.online(&ids).await?;
    Ok(rows
        .into_iter()
        .zip(online)
        .map(|((user_id, status, last_seen), online)| PresenceState {
            user_id,
            presence: shown(online, &status),
            last_seen,
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
        let (status, last_seen): (String, Option<chrono::DateTime<chrono::Utc>>) = if online {
            sqlx::query_as("select status, last_seen from users where user_id = $1")
                .bind(user_id)
                .fetch_one(db)
                .await?
        } else {
            sqlx::query_as(
                "update users set last_seen = now() where user_id = $1 returning status, last_seen",
            )
            .bind(user_id)
            .fetch_one(db)
            .await?
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
