//! Voice calls' state in Redis, shared by every instance: who is in which call from which
//! device (session), their muted/deafened state, and DM calls that are ringing.
//!
//! Participants are an [`ExpiringSets`] family: one set per group, members
//! `{user_id}|{session_id}`, renewed by the owning connection's heartbeat. A connection that
//! drops shortens its participant's expiry to the grace period instead of leaving, so a
//! client that reconnects in time resumes; a crashed client's participant expires and is
//! announced gone by whichever instance sweeps it first.

use protocol::{
    gateway::GroupId,
    voice::{VoiceCall, VoiceParticipant},
    UserId,
};
use redis::Script;

use super::membership::{due, now_ms, ExpiringSets};
use crate::{
    error::ApiError,
    keys::{bucket, Keys, BUCKETS},
};

/// KEYS: call set, its bucket's index, state hash (one hash slot).
/// ARGV: user prefix (`user|`), member, expiry, now, limit, state, group, user.
/// Returns {'full'} or {resumed, moved live devices, other member, its state, ...}.
const JOIN: &str = r#"
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local now = tonumber(ARGV[4])
local resumed = 0
local moved = {}
local moved_live = 0
local others = {}
for i = 1, #all, 2 do
  local m = all[i]
  local live = tonumber(all[i + 1]) > now
  if m == ARGV[2] then
    if live then resumed = 1 end
  elseif string.sub(m, 1, #ARGV[1]) == ARGV[1] then
    table.insert(moved, m)
    if live then moved_live = moved_live + 1 end
  elseif live then
    table.insert(others, m)
  end
end
if resumed == 0 and moved_live == 0 and #others >= tonumber(ARGV[5]) then
  return {'full'}
end
for _, m in ipairs(moved) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZREM', KEYS[2], ARGV[7] .. '|' .. m)
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[7] .. '|' .. ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[8], ARGV[6])
redis.call('PEXPIREAT', KEYS[3], ARGV[3])
local out = {tostring(resumed), tostring(moved_live)}
for _, m in ipairs(others) do
  local sep = string.find(m, '|', 1, true)
  local user = string.sub(m, 1, sep - 1)
  table.insert(out, user)
  table.insert(out, redis.call('HGET', KEYS[3], user) or '00')
end
return out
"#;

/// KEYS: ring key, its bucket's rings set (one hash slot). ARGV: the ring's value.
/// Ends that ring: drops it from the rings set, and deletes the ring key if it is still this
/// one; 1 if this call ended it (so each ring ends exactly once, across instances).
const CLAIM_RING: &str = r#"
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// Most due rings one expiry pass takes from each bucket; the next pass takes the rest.
const RING_BATCH: usize = 200;

/// A participant's flags as stored: `"{muted}{deafened}"`, each `0` or `1`.
fn encode_state(muted: bool, deafened: bool) -> String {
    format!("{}{}", u8::from(muted), u8::from(deafened))
}

fn decode_state(user_id: UserId, state: &str) -> VoiceParticipant {
    let bytes = state.as_bytes();
    VoiceParticipant {
        user_id,
        muted: bytes.first() == Some(&b'1'),
        deafened: bytes.get(1) == Some(&b'1'),
    }
}

/// The member of a participant in its call's set.
pub fn member(user_id: UserId, session_id: &str) -> String {
    format!("{user_id}|{session_id}")
}

fn member_user(member: &str) -> Option<UserId> {
    member.split_once('|')?.0.parse().ok()
}

/// What `voice_join` found.
#[derive(Debug)]
pub enum Joined {
    Full,
    In {
        /// This session was still in the call.
        resumed: bool,
        /// Another device of mine was in the call and has been replaced.
        moved: bool,
        others: Vec<VoiceParticipant>,
    },
}

/// A DM call ringing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    pub group_id: GroupId,
    pub caller_id: UserId,
    pub callee_id: UserId,
    /// Unix ms when it started ringing.
    pub called_at_ms: i64,
    /// Unix ms when it counts as missed.
    pub deadline_ms: i64,
}

impl Ring {
    fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.group_id, self.caller_id, self.callee_id, self.called_at_ms, self.deadline_ms
        )
    }

    fn decode(s: &str) -> Option<Self> {
        let mut parts = s.split('|').map(str::parse::<i64>);
        let mut next = || parts.next()?.ok();
        Some(Self {
            group_id: next()?,
            caller_id: next()?,
            callee_id: next()?,
            called_at_ms: next()?,
            deadline_ms: next()?,
        })
    }
}

#[derive(Clone)]
pub struct VoiceStore {
    participants: ExpiringSets,
    keys: Keys,
}

impl VoiceStore {
    pub fn new(participants: ExpiringSets, keys: Keys) -> Self {
        Self { participants, keys }
    }

    /// Joins `user_id` from `session_id`, unless the call is full; replaces the user's other
    /// device if it was in the call.
    pub async fn join(
        &self,
        group_id: GroupId,
        user_id: UserId,
        session_id: &str,
        limit: u32,
        muted: bool,
        deafened: bool,
    ) -> Result<Joined, ApiError> {
        let group = group_id.to_string();
        let out: Vec<String> = Script::new(JOIN)
            .key(self.participants.key(&group))
            .key(self.participants.index_key(&group))
            .key(self.keys.voice_state(group_id))
            .arg(format!("{user_id}|"))
            .arg(member(user_id, session_id))
            .arg(self.participants.expiry())
            .arg(now_ms())
            .arg(limit)
            .arg(encode_state(muted, deafened))
            .arg(&group)
            .arg(user_id)
            .invoke_async(&mut self.participants.redis())
            .await?;
        if out.first().map(String::as_str) == Some("full") {
            return Ok(Joined::Full);
        }
        let resumed = out.first().map(String::as_str) == Some("1");
        let moved = out.get(1).is_some_and(|m| m != "0");
        let others = out
            .get(2..)
            .unwrap_or_default()
            .chunks_exact(2)
            .filter_map(|pair| Some(decode_state(pair[0].parse().ok()?, &pair[1])))
            .collect();
        Ok(Joined::In {
            resumed,
            moved,
            others,
        })
    }

    /// Keeps a participant in the call (on each heartbeat of its connection); a device that
    /// was replaced by another is not brought back.
    pub async fn renew(
        &self,
        group_id: GroupId,
        user_id: UserId,
        session_id: &str,
    ) -> Result<(), ApiError> {
        self.participants
            .renew(&[(group_id.to_string(), member(user_id, session_id))])
            .await
    }

    /// The connection dropped: the participant stays only for `grace_ms` unless it rejoins.
    pub async fn linger(
        &self,
        group_id: GroupId,
        user_id: UserId,
        session_id: &str,
        grace_ms: i64,
    ) -> Result<(), ApiError> {
        self.participants
            .expire_at(
                &[(group_id.to_string(), member(user_id, session_id))],
                now_ms() + grace_ms,
                false,
            )
            .await
    }

    /// Removes this device's participant; true if it was in the call (a device that was
    /// replaced by another one is not, and leaves nothing).
    pub async fn leave(
        &self,
        group_id: GroupId,
        user_id: UserId,
        session_id: &str,
    ) -> Result<bool, ApiError> {
        let (removed, _) = self
            .participants
            .remove(&group_id.to_string(), &member(user_id, session_id))
            .await?;
        if removed {
            self.forget_state(group_id, user_id).await?;
        }
        Ok(removed)
    }

    async fn forget_state(&self, group_id: GroupId, user_id: UserId) -> Result<(), ApiError> {
        redis::cmd("HDEL")
            .arg(self.keys.voice_state(group_id))
            .arg(user_id)
            .query_async::<()>(&mut self.participants.redis())
            .await?;
        Ok(())
    }

    /// Every live participant of every call, as `group|user|session`.
    pub async fn live_participants(&self) -> Result<Vec<String>, ApiError> {
        self.participants.live_all().await
    }

    /// The live participants of a call, by member (`user|session`).
    pub async fn members(&self, group_id: GroupId) -> Result<Vec<String>, ApiError> {
        Ok(self
            .participants
            .live(&[group_id.to_string()])
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// Records a participant's flags; false if this device is not in the call.
    pub async fn set_state(
        &self,
        group_id: GroupId,
        user_id: UserId,
        session_id: &str,
        muted: bool,
        deafened: bool,
    ) -> Result<bool, ApiError> {
        if !self
            .participants
            .contains(&group_id.to_string(), &member(user_id, session_id))
            .await?
        {
            return Ok(false);
        }
        redis::cmd("HSET")
            .arg(self.keys.voice_state(group_id))
            .arg(user_id)
            .arg(encode_state(muted, deafened))
            .query_async::<()>(&mut self.participants.redis())
            .await?;
        Ok(true)
    }

    /// The calls going on in `groups`, with each participant's flags.
    pub async fn calls(&self, groups: &[GroupId]) -> Result<Vec<VoiceCall>, ApiError> {
        let sets: Vec<String> = groups.iter().map(ToString::to_string).collect();
        let lists = self.participants.live(&sets).await?;
        let active: Vec<(GroupId, Vec<UserId>)> = groups
            .iter()
            .zip(lists)
            .filter(|(_, members)| !members.is_empty())
            .map(|(&g, members)| (g, members.iter().filter_map(|m| member_user(m)).collect()))
            .collect();
        if active.is_empty() {
            return Ok(Vec::new());
        }
        let cmds = active
            .iter()
            .map(|(group_id, users)| {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(self.keys.voice_state(*group_id)).arg(users);
                cmd
            })
            .collect();
        let states: Vec<Vec<Option<String>>> = self.participants.redis().query_each(cmds).await?;
        Ok(active
            .into_iter()
            .zip(states)
            .map(|((group_id, users), states)| VoiceCall {
                group_id,
                participants: users
                    .into_iter()
                    .zip(states)
                    .map(|(u, s)| decode_state(u, s.as_deref().unwrap_or("00")))
                    .collect(),
            })
            .collect())
    }

    /// Removes participants whose connection stopped renewing them; returns them.
    pub async fn sweep(&self) -> Result<Vec<(GroupId, UserId)>, ApiError> {
        let mut gone = Vec::new();
        for expired in self.participants.sweep().await? {
            let (Ok(group_id), Some(user_id)) =
                (expired.set.parse::<GroupId>(), member_user(&expired.member))
            else {
                continue;
            };
            self.forget_state(group_id, user_id).await?;
            gone.push((group_id, user_id));
        }
        Ok(gone)
    }

    /// Starts ringing in a DM unless it already rings; the ring, if this call started it.
    pub async fn start_ring(
        &self,
        group_id: GroupId,
        caller_id: UserId,
        callee_id: UserId,
        timeout_ms: i64,
    ) -> Result<Option<Ring>, ApiError> {
        let now = now_ms();
        let ring = Ring {
            group_id,
            caller_id,
            callee_id,
            called_at_ms: now,
            deadline_ms: now + timeout_ms,
        };
        let value = ring.encode();
        let (set,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(self.keys.voice_ring(group_id))
            .arg(&value)
            .arg("NX")
            // The key outlives its deadline a little: the expiry pass, not Redis, ends it.
            .arg("PX")
            .arg(timeout_ms + 60_000)
            .cmd("ZADD")
            .arg(self.rings(group_id))
            .arg(ring.deadline_ms)
            .arg(&value)
            .ignore()
            .query_async(&mut self.participants.redis())
            .await?;
        if set.is_none() {
            // Already ringing: undo the index entry just added.
            redis::cmd("ZREM")
                .arg(self.rings(group_id))
                .arg(&value)
                .query_async::<()>(&mut self.participants.redis())
                .await?;
            return Ok(None);
        }
        Ok(Some(ring))
    }

    /// The ring of a DM, if it rings.
    pub async fn ring(&self, group_id: GroupId) -> Result<Option<Ring>, ApiError> {
        let value: Option<String> = redis::cmd("GET")
            .arg(self.keys.voice_ring(group_id))
            .query_async(&mut self.participants.redis())
            .await?;
        Ok(value.as_deref().and_then(Ring::decode))
    }

    /// The rings of these groups whose callee is `user_id`.
    pub async fn rings_for(
        &self,
        groups: &[GroupId],
        user_id: UserId,
    ) -> Result<Vec<Ring>, ApiError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let cmds = groups
            .iter()
            .map(|&g| {
                let mut cmd = redis::cmd("GET");
                cmd.arg(self.keys.voice_ring(g));
                cmd
            })
            .collect();
        let values: Vec<Option<String>> = self.participants.redis().query_each(cmds).await?;
        let now = now_ms();
        Ok(values
            .iter()
            .flatten()
            .filter_map(|v| Ring::decode(v))
            .filter(|r| r.callee_id == user_id && r.deadline_ms > now)
            .collect())
    }

    /// The rings set of the bucket of `group_id`'s call.
    fn rings(&self, group_id: GroupId) -> String {
        self.keys.voice_rings(bucket(&group_id.to_string()))
    }

    /// Ends a ring; true if this call ended it (it was still that ring).
    pub async fn claim_ring(&self, ring: &Ring) -> Result<bool, ApiError> {
        self.claim(ring.group_id, &ring.encode()).await
    }

    async fn claim(&self, group_id: GroupId, value: &str) -> Result<bool, ApiError> {
        let claimed: i64 = Script::new(CLAIM_RING)
            .key(self.keys.voice_ring(group_id))
            .key(self.rings(group_id))
            .arg(value)
            .invoke_async(&mut self.participants.redis())
            .await?;
        Ok(claimed == 1)
    }

    /// Claims every ring past its deadline (each exactly once across instances).
    pub async fn expire_rings(&self) -> Result<Vec<Ring>, ApiError> {
        let now = now_ms();
        let cmds = (0..BUCKETS)
            .map(|b| due(self.keys.voice_rings(b), now, RING_BATCH))
            .collect();
        let due: Vec<Vec<String>> = self.participants.redis().query_each(cmds).await?;
        let mut ended = Vec::new();
        for value in due.into_iter().flatten() {
            let Some(ring) = Ring::decode(&value) else {
                continue;
            };
            if self.claim(ring.group_id, &value).await? {
                ended.push(ring);
            }
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_round_trip_through_their_encoding() {
        let ring = Ring {
            group_id: 7,
            caller_id: 1,
            callee_id: 2,
            called_at_ms: 1_700_000_000_000,
            deadline_ms: 1_700_000_030_000,
        };
        assert_eq!(Ring::decode(&ring.encode()), Some(ring));
        assert_eq!(Ring::decode("7|1|x|0|0"), None);
        assert_eq!(Ring::decode("7|1"), None);
    }

    #[test]
    fn states_decode_leniently() {
        assert_eq!(
            decode_state(3, "10"),
            VoiceParticipant {
                user_id: 3,
                muted: true,
                deafened: false
            }
        );
        assert!(!decode_state(3, "").muted);
        assert_eq!(encode_state(false, true), "01");
    }
}
