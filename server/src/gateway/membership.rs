//! Expiring memberships in Redis, shared by every instance: the one store under presence
//! (a user's live connections) and voice (a call's participants).
//!
//! A family of sets, each a sorted set of members scored by their expiry in Unix ms, plus an
//! index of every `set|member` of the family, split into buckets (`keys::BUCKETS`): a set and
//! its bucket's index share a hash tag, so each script below touches one hash slot and
//! declares every key it uses (as a Redis Cluster requires). The instance that owns a member
//! renews it; a member whose instance died stops being renewed, and whichever instance
//! claims it from the index first (atomically, in Lua) removes and reports it, so it is
//! announced gone exactly once.

use std::time::{SystemTime, UNIX_EPOCH};

use redis::Script;

use crate::{
    error::ApiError,
    keys::{bucket, Keys, SetFamily, BUCKETS},
    redis_conn::RedisConn,
};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// KEYS: set, its bucket's index. ARGV: member, index member, expiry, now.
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

/// KEYS: set, its bucket's index. ARGV: member, index member, now.
/// Returns {removed, live members left}.
const REMOVE: &str = r#"
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
return {removed, redis.call('ZCARD', KEYS[1])}
"#;

/// KEYS: a bucket's index, the set. ARGV: index member, member, now.
/// Claims an expired member found in the index: nil if another instance claimed it first or
/// it was renewed meanwhile; else removes it and returns how many live members the set has
/// left. A member gone from its set too (the set's key expired with it) is still reported.
const REAP: &str = r#"
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not due) or tonumber(due) > tonumber(ARGV[3]) then
  return false
end
redis.call('ZREM', KEYS[1], ARGV[1])
local score = redis.call('ZSCORE', KEYS[2], ARGV[2])
if score and tonumber(score) > tonumber(ARGV[3]) then
  return false
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
return redis.call('ZCARD', KEYS[2])
"#;

/// The first `batch` entries of the sorted set `key` scored `now` or earlier (due).
pub fn due(key: String, now: i64, batch: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("ZRANGEBYSCORE");
    cmd.arg(key)
        .arg("-inf")
        .arg(now)
        .arg("LIMIT")
        .arg(0)
        .arg(batch);
    cmd
}

/// Most expired members one sweep takes from each bucket; the next sweep takes the rest.
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
    redis: RedisConn,
    keys: Keys,
    family: SetFamily,
    /// How long a member stays without renewal.
    ttl_ms: i64,
}

impl ExpiringSets {
    pub fn new(redis: RedisConn, keys: Keys, family: SetFamily, ttl_ms: i64) -> Self {
        Self {
            redis,
            keys,
            family,
            ttl_ms,
        }
    }

    pub fn key(&self, set: &str) -> String {
        self.keys.expiring_set(self.family, set)
    }

    /// The index of the bucket `set` is in.
    pub fn index_key(&self, set: &str) -> String {
        self.keys.expiring_index(self.family, bucket(set))
    }

    pub fn index_member(set: &str, member: &str) -> String {
        format!("{set}|{member}")
    }

    pub fn expiry(&self) -> i64 {
        now_ms() + self.ttl_ms
    }

    pub fn redis(&self) -> RedisConn {
        self.redis.clone()
    }

    /// Every bucket's index.
    fn indexes(&self) -> Vec<String> {
        (0..BUCKETS)
            .map(|b| self.keys.expiring_index(self.family, b))
            .collect()
    }

    /// Every live `set|member` of the family.
    pub async fn live_all(&self) -> Result<Vec<String>, ApiError> {
        let now = now_ms();
        let cmds = self
            .indexes()
            .into_iter()
            .map(|index| {
                let mut cmd = redis::cmd("ZRANGE");
                cmd.arg(index).arg(now).arg("+inf").arg("BYSCORE");
                cmd
            })
            .collect();
        let lists: Vec<Vec<String>> = self.redis.query_each(cmds).await?;
        Ok(lists.into_iter().flatten().collect())
    }

    /// Adds (or re-adds) a member; returns how many other live members the set has.
    pub async fn add(&self, set: &str, member: &str) -> Result<i64, ApiError> {
        Ok(Script::new(ADD)
            .key(self.key(set))
            .key(self.index_key(set))
            .arg(member)
            .arg(Self::index_member(set, member))
            .arg(self.expiry())
            .arg(now_ms())
            .invoke_async(&mut self.redis.clone())
            .await?)
    }

    /// Removes a member; returns whether it was there and how many live members are left.
    pub async fn remove(&self, set: &str, member: &str) -> Result<(bool, i64), ApiError> {
        let (removed, left): (i64, i64) = Script::new(REMOVE)
            .key(self.key(set))
            .key(self.index_key(set))
            .arg(member)
            .arg(Self::index_member(set, member))
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
        let mut cmds = Vec::with_capacity(members.len() * 3);
        for (set, member) in members {
            let key = self.key(set);
            // XX: never resurrect a member that is gone.
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(&key).arg("XX").arg(at).arg(member);
            cmds.push(zadd);
            if extend_key {
                let mut expire = redis::cmd("PEXPIREAT");
                expire.arg(&key).arg(at);
                cmds.push(expire);
            }
            let mut index = redis::cmd("ZADD");
            index
                .arg(self.index_key(set))
                .arg("XX")
                .arg(at)
                .arg(Self::index_member(set, member));
            cmds.push(index);
        }
        self.redis.query_each::<redis::Value>(cmds).await?;
        Ok(())
    }

    /// Removes expired members of every set; returns each.
    pub async fn sweep(&self) -> Result<Vec<Expired>, ApiError> {
        let now = now_ms();
        let cmds = self
            .indexes()
            .into_iter()
            .map(|index| due(index, now, SWEEP_BATCH))
            .collect();
        let due: Vec<Vec<String>> = self.redis.query_each(cmds).await?;
        let mut expired = Vec::new();
        // Rare (a dropped connection, a dead instance): one claim each.
        for entry in due.into_iter().flatten() {
            let Some((set, member)) = entry.split_once('|') else {
                continue;
            };
            let left: Option<i64> = Script::new(REAP)
                .key(self.index_key(set))
                .key(self.key(set))
                .arg(&entry)
                .arg(member)
                .arg(now)
                .invoke_async(&mut self.redis.clone())
                .await?;
            if let Some(left) = left {
                expired.push(Expired {
                    set: set.to_owned(),
                    member: member.to_owned(),
                    left,
                });
            }
        }
        Ok(expired)
    }

    /// The live members of each set.
    pub async fn live(&self, sets: &[String]) -> Result<Vec<Vec<String>>, ApiError> {
        self.per_live_set("ZRANGEBYSCORE", sets).await
    }

    /// How many live members each set has.
    pub async fn counts(&self, sets: &[String]) -> Result<Vec<i64>, ApiError> {
        self.per_live_set("ZCOUNT", sets).await
    }

    /// `command key now +inf` (ZRANGEBYSCORE, ZCOUNT) on each set: its live members.
    async fn per_live_set<T: redis::FromRedisValue>(
        &self,
        command: &str,
        sets: &[String],
    ) -> Result<Vec<T>, ApiError> {
        let now = now_ms();
        let cmds = sets
            .iter()
            .map(|set| {
                let mut cmd = redis::cmd(command);
                cmd.arg(self.key(set)).arg(now).arg("+inf");
                cmd
            })
            .collect();
        Ok(self.redis.query_each(cmds).await?)
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
