//! Voice calls' membership in Redis, shared by every instance, and the relay of signaling
//! between participants.
//!
//! Like presence, each participant is scored by an expiry that its connection renews with
//! every heartbeat; a participant whose instance died expires and is announced as gone by
//! whichever instance sweeps it first.

use protocol::{
    gateway::{GroupId, VoiceCall},
    UserId,
};
use redis::{aio::ConnectionManager, Script};

use super::presence::now_ms;
use crate::{error::ApiError, keys::Keys};

/// KEYS: global participants set. ARGV: now, call-key prefix, batch size.
/// Removes expired participants; returns `group|user` of each.
const SWEEP: &str = r#"
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[1], member)
  local sep = string.find(member, '|', 1, true)
  if sep then
    redis.call('ZREM', ARGV[2] .. string.sub(member, 1, sep - 1), string.sub(member, sep + 1))
  end
end
return expired
"#;

/// Most expired participants one sweep handles; the next sweep takes the rest.
const SWEEP_BATCH: usize = 500;

#[derive(Clone)]
pub struct VoiceStore {
    redis: ConnectionManager,
    keys: Keys,
    /// How long a participant stays in a call without renewal.
    ttl_ms: i64,
}

impl VoiceStore {
    pub fn new(redis: ConnectionManager, keys: Keys, ttl_ms: i64) -> Self {
        Self {
            redis,
            keys,
            ttl_ms,
        }
    }

    async fn set(
        &self,
        group_id: GroupId,
        user_id: UserId,
        only_existing: bool,
    ) -> Result<(), ApiError> {
        let expiry = now_ms() + self.ttl_ms;
        let call = self.keys.voice_call(group_id);
        let mut pipe = redis::pipe();
        let mut add = |key: &str, member: String| {
            let cmd = pipe.cmd("ZADD").arg(key);
            if only_existing {
                cmd.arg("XX");
            }
            cmd.arg(expiry).arg(member).ignore();
        };
        add(&call, user_id.to_string());
        add(
            &self.keys.voice_participants(),
            format!("{group_id}|{user_id}"),
        );
        pipe.cmd("PEXPIREAT").arg(&call).arg(expiry).ignore();
        pipe.query_async::<()>(&mut self.redis.clone()).await?;
        Ok(())
    }

    pub async fn join(&self, group_id: GroupId, user_id: UserId) -> Result<(), ApiError> {
        self.set(group_id, user_id, false).await
    }

    /// Keeps a participant in the call (on each heartbeat of its connection).
    pub async fn renew(&self, group_id: GroupId, user_id: UserId) -> Result<(), ApiError> {
        self.set(group_id, user_id, true).await
    }

    /// Removes a participant; true if they were in the call.
    pub async fn leave(&self, group_id: GroupId, user_id: UserId) -> Result<bool, ApiError> {
        let (removed, _): (i64, i64) = redis::pipe()
            .cmd("ZREM")
            .arg(self.keys.voice_call(group_id))
            .arg(user_id)
            .cmd("ZREM")
            .arg(self.keys.voice_participants())
            .arg(format!("{group_id}|{user_id}"))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(removed == 1)
    }

    pub async fn in_call(&self, group_id: GroupId, user_id: UserId) -> Result<bool, ApiError> {
        let score: Option<i64> = redis::cmd("ZSCORE")
            .arg(self.keys.voice_call(group_id))
            .arg(user_id)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(score.is_some_and(|expiry| expiry > now_ms()))
    }

    /// The calls going on in `groups`.
    pub async fn calls(&self, groups: &[GroupId]) -> Result<Vec<VoiceCall>, ApiError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut pipe = redis::pipe();
        for &g in groups {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.keys.voice_call(g))
                .arg(now)
                .arg("+inf");
        }
        let lists: Vec<Vec<UserId>> = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(groups
            .iter()
            .zip(lists)
            .filter(|(_, participants)| !participants.is_empty())
            .map(|(&group_id, participants)| VoiceCall {
                group_id,
                participants,
            })
            .collect())
    }

    /// Removes participants whose connection stopped renewing them; returns them.
    pub async fn sweep(&self) -> Result<Vec<(GroupId, UserId)>, ApiError> {
        let expired: Vec<String> = Script::new(SWEEP)
            .key(self.keys.voice_participants())
            .arg(now_ms())
            .arg(self.keys.voice_call_prefix())
            .arg(SWEEP_BATCH)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(expired
            .iter()
            .filter_map(|m| {
                let (g, u) = m.split_once('|')?;
                Some((g.parse().ok()?, u.parse().ok()?))
            })
            .collect())
    }
}
