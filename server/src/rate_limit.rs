//! Fixed-window rate limits counted in Redis, shared by every server instance: the login
//! limits, and the abuse limits of [`Action`] (per client IP for registration, per user for
//! the rest), each answering 429 `rate_limited` with `Retry-After`.

use std::{fmt, str::FromStr};

use redis::aio::ConnectionManager;

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
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut rates = Vec::with_capacity(actions.len());
    for action in actions {
        let rate = action.rate(&state.settings);
        let key = state.keys.rate_limit(action.name(), &subject);
        pipe.cmd("INCR")
            .arg(&key)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(rate.window_secs)
            .arg("NX")
            .ignore()
            .cmd("TTL")
            .arg(&key);
        rates.push(rate);
    }
    // Per action: its count, then its time to live.
    let replies: Vec<i64> = pipe.query_async(&mut state.redis.clone()).await?;
    let retry_after_secs = replies
        .chunks(2)
        .zip(&rates)
        .filter_map(|(reply, rate)| match *reply {
            [count, ttl] if count.unsigned_abs() > rate.count => Some(ttl.max(1).unsigned_abs()),
            _ => None,
        })
        .max();
    match retry_after_secs {
        Some(retry_after_secs) => Err(ApiError::RateLimited { retry_after_secs }),
        None => Ok(()),
    }
}

/// Counts one hit on `key` and fails with `RateLimited` once the window holds more than
/// `limit` hits.
pub async fn hit(
    redis: &ConnectionManager,
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
        return Err(ApiError::RateLimited {
            retry_after_secs: ttl.max(1) as u64,
        });
    }
    Ok(())
}

/// Fails with `RateLimited` if `key` already holds `limit` hits, without counting one.
pub async fn check(redis: &ConnectionManager, key: &str, limit: u64) -> Result<(), ApiError> {
    let (count, ttl): (Option<u64>, i64) = redis::pipe()
        .cmd("GET")
        .arg(key)
        .cmd("TTL")
        .arg(key)
        .query_async(&mut redis.clone())
        .await?;
    if count.unwrap_or(0) >= limit {
        return Err(ApiError::RateLimited {
            retry_after_secs: ttl.max(1) as u64,
        });
    }
    Ok(())
}

/// Counts one hit on `key` (e.g. a failed login) without checking.
pub async fn record(
    redis: &ConnectionManager,
    key: &str,
    window_secs: u64,
) -> Result<(), ApiError> {
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

pub async fn reset(redis: &ConnectionManager, key: &str) -> Result<(), ApiError> {
    redis::cmd("DEL")
        .arg(key)
        .query_async::<()>(&mut redis.clone())
        .await?;
    Ok(())
}
