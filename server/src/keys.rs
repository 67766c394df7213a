//! Every Redis key the server uses, in one place. All carry the deployment's prefix, empty by
//! default, so the seed's `session:{token}` is literally the key in production.

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

    /// Every live gateway connection on every instance: member `user|instance|conn`, score =
    /// expiry in Unix ms. Swept by all instances, so a dead instance's connections expire.
    pub fn presence_conns(&self) -> String {
        format!("{}presence:conns", self.prefix)
    }

    /// One user's live connections (`{prefix}{user_id}`): member `instance|conn`, score =
    /// expiry in Unix ms.
    pub fn presence_user_prefix(&self) -> String {
        format!("{}presence:user:", self.prefix)
    }

    pub fn voice_call_prefix(&self) -> String {
        format!("{}voice:call:", self.prefix)
    }

    /// Every voice participant on every instance: member `group|user|session`, score =
    /// expiry, swept by all instances so a dead instance's callers leave their calls. The
    /// call's own set is `voice_call_prefix() + group_id`, members `user|session`.
    pub fn voice_participants(&self) -> String {
        format!("{}voice:participants", self.prefix)
    }

    /// A call's participants' flags: field = user id, value = `{muted}{deafened}` (0/1).
    pub fn voice_state(&self, group_id: i64) -> String {
        format!("{}voice:state:{group_id}", self.prefix)
    }

    /// The ring of a DM call: `group|caller|callee|called_at|deadline`.
    pub fn voice_ring(&self, group_id: i64) -> String {
        format!("{}{group_id}", self.voice_ring_prefix())
    }

    pub fn voice_ring_prefix(&self) -> String {
        format!("{}voice:ring:", self.prefix)
    }

    /// Every ringing DM call, scored by the time it counts as missed.
    pub fn voice_rings(&self) -> String {
        format!("{}voice:rings", self.prefix)
    }

    /// Typing throttle of one user in one group.
    pub fn typing(&self, group_id: i64, user_id: UserId) -> String {
        format!("{}typing:{group_id}:{user_id}", self.prefix)
    }
}
