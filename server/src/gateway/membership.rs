//! Expiring memberships in Redis, shared by every instance: the one store under presence
//! (a user's live connections) and voice (a call's participants).
//!
//! A family of sets (`{prefix}{set}`), each a sorted set of members scored by their expiry
//! in Unix ms, plus one global sorted set of every `set|member` of the family. The instance
//! that owns a member renews it; a member whose instance died stops being renewed, and
//! whichever instance sweeps the global set first removes it (atomically, in Lua) and
//! reports it, so it is announced gone exactly once.

use std::time::{SystemTime, UNIX_EPOCH};

use redis::{aio::ConnectionManager, Script};

use crate::error::ApiError;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// KEYS: set, global. ARGV: member, global member, expiry, now.
/// Returns how many live members the set had besides this one.
const ADD: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
redis.call('ZREM', KEYS[1], ARGV[1])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return before
"#;

/// KEYS: set, global. ARGV: member, global member, now.
/// Returns {removed, live members left}.
const REMOVE: &str = r#"
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
return {removed, redis.call('ZCARD', KEYS[1])}
"#;

/// KEYS: global. ARGV: now, set-key prefix, batch size.
/// Removes expired members; returns {set, member, live members left} for each.
const SWEEP: &str = r#"
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, entry in ipairs(expired) do
  redis.call('ZREM', KEYS[1], entry)
  local sep = string.find(entry, '|', 1, true)
  if sep then
    local set = string.sub(entry, 1, sep - 1)
    local member = string.sub(entry, sep + 1)
    local key = ARGV[2] .. set
    -- Unless it was re-added since (a later expiry there). Gone from there too means the
    -- set's key itself expired with it: still to be reported.
    local score = redis.call('ZSCORE', key, member)
    if (not score) or tonumber(score) <= tonumber(ARGV[1]) then
      redis.call('ZREM', key, member)
      redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
      table.insert(out, set)
      table.insert(out, member)
      table.insert(out, redis.call('ZCARD', key))
    end
  end
end
return out
"#;

/// Most expired members one sweep handles; the next sweep takes the rest.
const SWEEP_BATCH: usize = 500;

/// A member removed by a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub set: String,
    pub member: String,
    /// Live members the set still has.
    pub left: i64,
}

/// One family of expiring sets.
#[derive(Clone)]
pub struct ExpiringSets {
    redis: ConnectionManager,
    /// Prefix of each set's key (`…presence:user:`, `…voice:call:`).
    prefix: String,
    /// The family's global set.
    global: String,
    /// How long a member stays without renewal.
    ttl_ms: i64,
}

impl ExpiringSets {
    pub fn new(redis: ConnectionManager, prefix: String, global: String, ttl_ms: i64) -> Self {
        Self {
            redis,
            prefix,
            global,
            ttl_ms,
        }
    }

    pub fn key(&self, set: &str) -> String {
        format!("{}{set}", self.prefix)
    }

    pub fn global_key(&self) -> &str {
        &self.global
    }

    pub fn global_member(set: &str, member: &str) -> String {
        format!("{set}|{member}")
    }

    pub fn expiry(&self) -> i64 {
        now_ms() + self.ttl_ms
    }

    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Every live `set|member` of the family.
    pub async fn live_all(&self) -> Result<Vec<String>, ApiError> {
        Ok(redis::cmd("ZRANGE")
            .arg(&self.global)
            .arg(now_ms())
            .arg("+inf")
            .arg("BYSCORE")
            .query_async(&mut self.redis.clone())
            .await?)
    }

    /// Adds (or re-adds) a member; returns how many other live members the set has.
    pub async fn add(&self, set: &str, member: &str) -> Result<i64, ApiError> {
        Ok(Script::new(ADD)
            .key(self.key(set))
            .key(&self.global)
            .arg(member)
            .arg(Self::global_member(set, member))
            .arg(self.expiry())
            .arg(now_ms())
            .invoke_async(&mut self.redis.clone())
            .await?)
    }

    /// Removes a member; returns whether it was there and how many live members are left.
    pub async fn remove(&self, set: &str, member: &str) -> Result<(bool, i64), ApiError> {
        let (removed, left): (i64, i64) = Script::new(REMOVE)
            .key(self.key(set))
            .key(&self.global)
            .arg(member)
            .arg(Self::global_member(set, member))
            .arg(now_ms())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok((removed == 1, left))
    }

    /// Pushes the expiry of these members forward (never re-adding one that a sweep or a
    /// move already removed).
    pub async fn renew(&self, members: &[(String, String)]) -> Result<(), ApiError> {
        self.expire_at(members, self.expiry(), true).await
    }

    /// Sets these members' expiry to `at` (Unix ms), leaving absent ones absent. With
    /// `extend_key`, also keeps the set's own key alive that long.
    pub async fn expire_at(
        &self,
        members: &[(String, String)],
        at: i64,
        extend_key: bool,
    ) -> Result<(), ApiError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (set, member) in members {
            let key = self.key(set);
            // XX: never resurrect a member that is gone.
            pipe.cmd("ZADD")
                .arg(&key)
                .arg("XX")
                .arg(at)
                .arg(member)
                .ignore();
            if extend_key {
                pipe.cmd("PEXPIREAT").arg(&key).arg(at).ignore();
            }
            pipe.cmd("ZADD")
                .arg(&self.global)
                .arg("XX")
                .arg(at)
                .arg(Self::global_member(set, member))
                .ignore();
        }
        pipe.query_async::<()>(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// Removes expired members of every set; returns each.
    pub async fn sweep(&self) -> Result<Vec<Expired>, ApiError> {
        // A flat array {set, member, left, set, member, left, ...}.
        let flat: Vec<redis::Value> = Script::new(SWEEP)
            .key(&self.global)
            .arg(now_ms())
            .arg(&self.prefix)
            .arg(SWEEP_BATCH)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(flat
            .chunks_exact(3)
            .filter_map(|entry| {
                Some(Expired {
                    set: redis::from_redis_value_ref(&entry[0]).ok()?,
                    member: redis::from_redis_value_ref(&entry[1]).ok()?,
                    left: redis::from_redis_value_ref(&entry[2]).ok()?,
                })
            })
            .collect())
    }

    /// The live members of each set.
    pub async fn live(&self, sets: &[String]) -> Result<Vec<Vec<String>>, ApiError> {
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut pipe = redis::pipe();
        for set in sets {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.key(set))
                .arg(now)
                .arg("+inf");
        }
        Ok(pipe.query_async(&mut self.redis.clone()).await?)
    }

    /// How many live members each set has.
    pub async fn counts(&self, sets: &[String]) -> Result<Vec<i64>, ApiError> {
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut pipe = redis::pipe();
        for set in sets {
            pipe.cmd("ZCOUNT").arg(self.key(set)).arg(now).arg("+inf");
        }
        Ok(pipe.query_async(&mut self.redis.clone()).await?)
    }

    /// Whether `member` is live in `set`.
    pub async fn contains(&self, set: &str, member: &str) -> Result<bool, ApiError> {
        let score: Option<i64> = redis::cmd("ZSCORE")
            .arg(self.key(set))
            .arg(member)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(score.is_some_and(|expiry| expiry > now_ms()))
    }
}
