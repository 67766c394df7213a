//! Fixed-window rate limits counted in Redis, shared by every server instance: the login
//! limits, and the abuse limits of [`Action`] (per client IP for registration, per user for
//! the rest), each answering 429 `rate_limited` with `Retry-After`.

use std::{fmt, str::FromStr};

use crate::redis_conn::RedisConn;

use crate::{config::Settings, error::ApiError, state::AppState};

/// At most `count` hits per window of `window_secs`; written `COUNT/SECONDS` in flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub window_secs: u64,
}

impl Rate {
    pub const fn new(count: u64, window_secs: u64) -> Self {
        Self { count, window_secs }
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = s.split_once('/').and_then(|(count, secs)| {
            Some((count.trim().parse().ok()?, secs.trim().parse().ok()?))
        });
        match parsed {
            Some((count, window_secs)) if window_secs > 0 => Ok(Self { count, window_secs }),
            _ => Err(format!("expected COUNT/SECONDS (e.g. 30/10), got {s:?}")),
        }
    }
}

/// Printed as in flags (`30/3600`), e.g. by `check-config`.
impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.window_secs)
    }
}

/// What an abuse limit counts. Each has its own [`Rate`] in the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Registrations from one client IP.
    Register,
    /// Friend requests sent by one user.
    FriendRequest,
    /// Messages sent by one user, over a short window (a burst)...
    MessageBurst,
    /// ...and over a long one (a sustained rate).
    MessageSustained,
    /// Typing frames from one user.
    Typing,
    /// Voice joins by one user.
    VoiceJoin,
    /// Voice signals (offers, answers, candidates, byes) sent by one user.
    VoiceSignal,
    /// Groups created by one user.
    GroupCreate,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::FriendRequest => "friend_request",
            Self::MessageBurst => "message_burst",
            Self::MessageSustained => "message_sustained",
            Self::Typing => "typing",
            Self::VoiceJoin => "voice_join",
            Self::VoiceSignal => "voice_signal",
            Self::GroupCreate => "group_create",
        }
    }

    fn rate(self, settings: &Settings) -> Rate {
        match self {
            Self::Register => settings.limit_register,
            Self::FriendRequest => settings.limit_friend_requests,
            Self::MessageBurst => settings.limit_messages_burst,
            Self::MessageSustained => settings.limit_messages_sustained,
            Self::Typing => settings.limit_typing,
            Self::VoiceJoin => settings.limit_voice_joins,
            Self::VoiceSignal => settings.limit_voice_signals,
            Self::GroupCreate => settings.limit_groups,
        }
    }
}

/// Counts one hit of each of `actions` by `subject` (a user id, or a client IP for
/// registration) in one round trip; fails with `RateLimited` (the longest wait) if any is
/// over its rate.
pub async fn limit(
    state: &AppState,
    subject: impl fmt::Display,
    actions: &[Action],
) -> Result<(), ApiError> {
    // Per action, an atomic count on its own key (keys of different actions may be in
    // different hash slots of a cluster), all sent at once.
    let mut pipes = Vec::with_capacity(actions.len());
    let mut rates = Vec::with_capacity(actions.len());
    for action in actions {
        let rate = action.rate(&state.settings);
        let key = state.keys.rate_limit(action.name(), &subject);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("INCR")
            .arg(&key)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(rate.window_secs)
            .arg("NX")
            .ignore()
            .cmd("TTL")
            .arg(&key);
        pipes.push(pipe);
        rates.push(rate);
    }
    // Per action: its count, then its time to live.
    let replies: Vec<(i64, i64)> = state.redis.query_pipes(&pipes).await?;
    let retry_after_secs = replies
        .iter()
        .zip(&rates)
        .filter(|(&(count, _), rate)| count.unsigned_abs() > rate.count)
        .map(|(&(_, ttl), _)| ttl.max(1).unsigned_abs())
        .max();
    match retry_after_secs {
        Some(retry_after_secs) => {
            crate::metrics::rate_limited();
            Err(ApiError::RateLimited { retry_after_secs })
        }
        None => Ok(()),
    }
}

/// Counts one hit on `key` and fails with `RateLimited` once the window holds more than
/// `limit` hits.
pub async fn hit(
    redis: &RedisConn,
    key: &str,
    limit: u64,
    window_secs: u64,
) -> Result<(), ApiError> {
    let (count, ttl): (u64, i64) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg(key)
        .cmd("EXPIRE")
        .arg(key)
        .arg(window_secs)
        .arg("NX")
        .ignore()
        .cmd("TTL")
        .arg(key)
        .query_async(&mut redis.clone())
        .await?;
    if count > limit {
        crate::metrics::rate_limited();
        return Err(ApiError::RateLimited {
            retry_after_secs: ttl.max(1) as u64,
        });
    }
    Ok(())
}

/// Fails with `RateLimited` if `key` already holds `limit` hits, without counting one.
pub async fn check(redis: &RedisConn, key: &str, limit: u64) -> Result<(), ApiError> {
    let (count, ttl): (Option<u64>, i64) = redis::pipe()
        .cmd("GET")
        .arg(key)
        .cmd("TTL")
        .arg(key)
        .query_async(&mut redis.clone())
        .await?;
    if count.unwrap_or(0) >= limit {
        crate::metrics::rate_limited();
        return Err(ApiError::RateLimited {
            retry_after_secs: ttl.max(1) as u64,
        });
    }
    Ok(())
}

/// Counts one hit on `key` (e.g. a failed login) without checking.
pub async fn record(redis: &RedisConn, key: &str, window_secs: u64) -> Result<(), ApiError> {
    redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg(key)
        .ignore()
        .cmd("EXPIRE")
        .arg(key)
        .arg(window_secs)
        .arg("NX")
        .ignore()
        .query_async::<()>(&mut redis.clone())
        .await?;
    Ok(())
}

pub async fn reset(redis: &RedisConn, key: &str) -> Result<(), ApiError> {
    redis::cmd("DEL")
        .arg(key)
        .query_async::<()>(&mut redis.clone())
        .await?;
    Ok(())
}
