//! Every Redis key the server uses, in one place. All carry the deployment's prefix, empty by
//! default, so the seed's `session:{token}` is literally the key in production.
//!
//! On a Redis Cluster each command, transaction and script must stay within one hash slot.
//! Sessions, rate-limit counters and typing throttles are single keys. Presence and voice
//! state keep sets together with an index of them (for sweeping what a dead instance left):
//! those are split into [`BUCKETS`] buckets, each under a hash tag of its own (`{N}`), and a
//! set shares its bucket with its index, the call's flags and its ring.

use protocol::UserId;

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `session:{token}` → the session JSON of the seed, with the session TTL.
    pub fn session(&self, token: &str) -> String {
        format!("{}session:{token}", self.prefix)
    }

    /// Hash of a user's sessions: field = public session id, value = token. Lets a user list
    /// and revoke sessions without ever seeing another session's token.
    pub fn user_sessions(&self, user_id: UserId) -> String {
        format!("{}user_sessions:{user_id}", self.prefix)
    }

    /// Login attempts from one client IP in the current window.
    pub fn login_ip(&self, ip: &str) -> String {
        format!("{}ratelimit:login:ip:{ip}", self.prefix)
    }

    /// Failed logins for one login name (username or email, lower-cased) from one client IP
    /// in the window. Keyed by what was typed, so unknown accounts are limited exactly like
    /// real ones; and by IP, so failures elsewhere never lock the owner out.
    pub fn login_failures(&self, login: &str, ip: &str) -> String {
        format!("{}ratelimit:login:account:{ip}:{login}", self.prefix)
    }

    /// Hits of one rate-limited action (see `rate_limit::Action`) by one subject (a user id
    /// or a client IP) in the current window.
    pub fn rate_limit(&self, action: &str, subject: impl std::fmt::Display) -> String {
        format!("{}ratelimit:{action}:{subject}", self.prefix)
    }

    /// Pub/sub channel carrying every event between server instances.
    pub fn events_channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// Pub/sub channel for control messages between instances (e.g. "session ended").
    pub fn control_channel(&self) -> String {
        format!("{}control", self.prefix)
    }

    /// Keys of `family` in `bucket` start with this: `{prefix}{family}:{N}:`. The `{N}` is a
    /// Redis Cluster hash tag: every key of a bucket lives in one hash slot, so the scripts
    /// and transactions that use a set together with its bucket's index work on a cluster,
    /// while the buckets spread a family over up to [`BUCKETS`] slots.
    fn bucket_prefix(&self, family: &str, bucket: u32) -> String {
        format!("{}{family}:{{{bucket}}}:", self.prefix)
    }

    /// One set of an expiring-set family: a user's live connections (`presence:{N}:user:ID`,
    /// member `instance|conn`) or a call's participants (`voice:{N}:call:GROUP`, member
    /// `user|session`), each scored by expiry in Unix ms.
    pub fn expiring_set(&self, family: SetFamily, set: &str) -> String {
        let (name, kind) = family.names();
        format!("{}{kind}:{set}", self.bucket_prefix(name, bucket(set)))
    }

    /// The index of one bucket of a family: every `set|member` of the bucket's sets, scored by
    /// expiry, swept by all instances so a dead instance's connections and callers expire
    /// (`presence:{N}:conns`, `voice:{N}:participants`).
    pub fn expiring_index(&self, family: SetFamily, bucket: u32) -> String {
        let (name, _) = family.names();
        format!(
            "{}{}",
            self.bucket_prefix(name, bucket),
            family.index_name()
        )
    }

    /// A call's participants' flags: field = user id, value = `{muted}{deafened}` (0/1). In
    /// the bucket of the call's set.
    pub fn voice_state(&self, group_id: i64) -> String {
        let group = group_id.to_string();
        format!(
            "{}state:{group}",
            self.bucket_prefix("voice", bucket(&group))
        )
    }

    /// The ring of a DM call: `group|caller|callee|called_at|deadline`. In the bucket of the
    /// call's set.
    pub fn voice_ring(&self, group_id: i64) -> String {
        let group = group_id.to_string();
        format!(
            "{}ring:{group}",
            self.bucket_prefix("voice", bucket(&group))
        )
    }

    /// Every ringing DM call of a bucket, scored by the time it counts as missed.
    pub fn voice_rings(&self, bucket: u32) -> String {
        format!("{}rings", self.bucket_prefix("voice", bucket))
    }

    /// Typing throttle of one user in one group.
    pub fn typing(&self, group_id: i64, user_id: UserId) -> String {
        format!("{}typing:{group_id}:{user_id}", self.prefix)
    }
}

/// Buckets of each expiring-set family. Each is one hash slot on a cluster, so 16 spread
/// presence and voice over up to 16 shards; every instance's sweep visits each bucket once a
/// tick (16 small reads in one pipeline on one Redis), which stays cheap.
pub const BUCKETS: u32 = 16;

/// The bucket of a set (a user or group id): FNV-1a, stable across instances and versions.
pub fn bucket(set: &str) -> u32 {
    let hash = set.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % BUCKETS
}

/// A family of expiring sets (see `gateway::membership`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetFamily {
    /// Each user's live gateway connections.
    Presence,
    /// Each call's participants.
    Voice,
}

impl SetFamily {
    /// The family's name in keys, and the kind of its sets.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Presence => ("presence", "user"),
            Self::Voice => ("voice", "call"),
        }
    }

    fn index_name(self) -> &'static str {
        match self {
            Self::Presence => "conns",
            Self::Voice => "participants",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_shares_its_hash_tag_with_its_index_and_a_call_with_its_state_and_ring() {
        let keys = Keys::new("p:");
        let b = bucket("42");
        assert!(b < BUCKETS);
        let tag = format!("{{{b}}}");
        assert_eq!(
            keys.expiring_set(SetFamily::Voice, "42"),
            format!("p:voice:{tag}:call:42")
        );
        assert_eq!(
            keys.expiring_index(SetFamily::Voice, b),
            format!("p:voice:{tag}:participants")
        );
        assert_eq!(keys.voice_state(42), format!("p:voice:{tag}:state:42"));
        assert_eq!(keys.voice_ring(42), format!("p:voice:{tag}:ring:42"));
        assert_eq!(keys.voice_rings(b), format!("p:voice:{tag}:rings"));
        assert_eq!(
            keys.expiring_set(SetFamily::Presence, "42"),
            format!("p:presence:{tag}:user:42")
        );
        assert_eq!(
            keys.expiring_index(SetFamily::Presence, b),
            format!("p:presence:{tag}:conns")
        );
        // Sessions keep the seed's name.
        assert_eq!(keys.session("ab"), "p:session:ab");
    }

    #[test]
    fn ids_spread_over_every_bucket() {
        let mut seen = [false; BUCKETS as usize];
        for id in 1..200 {
            seen[bucket(&id.to_string()) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }
}
