//! Sessions in Redis, exactly as the seed describes: key `session:{token}`, value JSON
//! `{user_id, username, ip_address, device_info, created_at}`, TTL renewed on every use.
//! A per-user hash indexes a user's sessions for listing and revocation.

use chrono::{DateTime, SecondsFormat, Utc};
use protocol::{auth::SessionInfo, UserId};
use serde::{Deserialize, Serialize};

use crate::{error::ApiError, keys::Keys, redis_conn::RedisConn};

/// 32 bytes = 256 bits from the OS CSPRNG, hex-encoded.
const TOKEN_BYTES: usize = 32;
/// Public session ids only need to be unique within one user's sessions.
const SESSION_ID_BYTES: usize = 12;
/// Longest `device_info` kept; longer text is cut, not rejected (it is informational).
const MAX_DEVICE_INFO_CHARS: usize = 200;

/// The value stored at `session:{token}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionData {
    pub user_id: UserId,
    pub username: String,
    pub ip_address: String,
    pub device_info: String,
    /// RFC 3339 in UTC with seconds, as in the seed (`2023-06-15T10:30:00Z`).
    pub created_at: String,
}

/// An authenticated request's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub data: SessionData,
}

#[derive(Clone)]
pub struct SessionStore {
    redis: RedisConn,
    keys: Keys,
    ttl_secs: u64,
}

pub fn random_hex(bytes: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| ApiError::Internal(anyhow::anyhow!("getrandom: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn is_token_shaped(token: &str) -> bool {
    token.len() == TOKEN_BYTES * 2 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

impl SessionStore {
    pub fn new(redis: RedisConn, keys: Keys, ttl_secs: u64) -> Self {
        Self {
            redis,
            keys,
            ttl_secs,
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// When a session used now lapses.
    pub fn expires_at(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(i64::try_from(self.ttl_secs).unwrap_or(i64::MAX / 2))
    }

    #[tracing::instrument(skip(self, username, device_info), fields(user_id))]
    pub async fn create(
        &self,
        user_id: UserId,
        username: &str,
        ip_address: &str,
        device_info: Option<&str>,
    ) -> Result<String, ApiError> {
        let token = random_hex(TOKEN_BYTES)?;
        let session_id = random_hex(SESSION_ID_BYTES)?;
        let device_info: String = device_info
            .map(|d| {
                d.trim()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_DEVICE_INFO_CHARS)
                    .collect()
            })
            .unwrap_or_default();
        let data = SessionData {
            user_id,
            username: username.to_owned(),
            ip_address: ip_address.to_owned(),
            device_info,
            created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        let json = serde_json::to_string(&data).map_err(|e| ApiError::Internal(e.into()))?;
        // The index first, then the session: the two keys may be on different nodes of a
        // cluster, and if the second write fails, an index entry without its session is
        // harmless (listing prunes it) while a session missing from the index could be
        // neither listed nor revoked.
        let index = self.keys.user_sessions(user_id);
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(&index)
            .arg(&session_id)
            .arg(&token)
            .ignore()
            .cmd("EXPIRE")
            .arg(&index)
            .arg(self.ttl_secs)
            .ignore()
            .query_async::<()>(&mut self.redis.clone())
            .await?;
        redis::cmd("SET")
            .arg(self.keys.session(&token))
            .arg(json)
            .arg("EX")
            .arg(self.ttl_secs)
            .query_async::<()>(&mut self.redis.clone())
            .await?;
        Ok(token)
    }

    /// Looks a token up and renews its TTL (sliding expiry). Unknown, expired, revoked and
    /// malformed tokens are all `Unauthorized`.
    pub async fn authenticate(&self, token: &str) -> Result<Session, ApiError> {
        if !is_token_shaped(token) {
            return Err(ApiError::Unauthorized);
        }
        let raw: Option<String> = redis::cmd("GETEX")
            .arg(self.keys.session(token))
            .arg("EX")
            .arg(self.ttl_secs)
            .query_async(&mut self.redis.clone())
            .await?;
        let raw = raw.ok_or(ApiError::Unauthorized)?;
        let data: SessionData = serde_json::from_str(&raw).map_err(|e| {
            tracing::error!(error = %e, "unreadable session record");
            ApiError::Unauthorized
        })?;
        // The index must outlive every session it lists.
        redis::cmd("EXPIRE")
            .arg(self.keys.user_sessions(data.user_id))
            .arg(self.ttl_secs)
            .query_async::<()>(&mut self.redis.clone())
            .await?;
        Ok(Session {
            token: token.to_owned(),
            data,
        })
    }

    /// The user's live sessions, pruning index entries whose session has lapsed.
    pub async fn list(
        &self,
        user_id: UserId,
        current_token: &str,
    ) -> Result<Vec<SessionInfo>, ApiError> {
        let mut conn = self.redis.clone();
        let index = self.keys.user_sessions(user_id);
        let entries: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&index)
            .query_async(&mut conn)
            .await?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let cmds = entries
            .iter()
            .flat_map(|(_, token)| {
                let key = self.keys.session(token);
                [
                    redis::cmd("GET").arg(&key).clone(),
                    redis::cmd("TTL").arg(&key).clone(),
                ]
            })
            .collect();
        let replies: Vec<redis::Value> = self.redis.query_each(cmds).await?;
        let mut sessions = Vec::new();
        let mut stale = Vec::new();
        for ((session_id, token), pair) in entries.iter().zip(replies.chunks(2)) {
            let (raw, ttl): (Option<String>, i64) = match pair {
                [raw, ttl] => (
                    redis::from_redis_value_ref(raw).unwrap_or(None),
                    redis::from_redis_value_ref(ttl).unwrap_or(-2),
                ),
                _ => (None, -2),
            };
            match raw.and_then(|r| serde_json::from_str::<SessionData>(&r).ok()) {
                Some(data) if ttl > 0 => sessions.push(SessionInfo {
                    session_id: session_id.clone(),
                    ip_address: data.ip_address,
                    device_info: data.device_info,
                    created_at: DateTime::parse_from_rfc3339(&data.created_at)
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or_default(),
                    expires_in: ttl,
                    current: token == current_token,
                }),
                _ => stale.push(session_id.clone()),
            }
        }
        if !stale.is_empty() {
            redis::cmd("HDEL")
                .arg(&index)
                .arg(&stale)
                .query_async::<()>(&mut conn)
                .await?;
        }
        sessions.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(sessions)
    }

    /// Revokes one of the user's sessions by its public id. An id that is not one of the
    /// user's sessions is `NotFound`, whoever it might belong to.
    pub async fn revoke(&self, user_id: UserId, session_id: &str) -> Result<(), ApiError> {
        let mut conn = self.redis.clone();
        let index = self.keys.user_sessions(user_id);
        let token: Option<String> = redis::cmd("HGET")
            .arg(&index)
            .arg(session_id)
            .query_async(&mut conn)
            .await?;
        let token = token.ok_or(ApiError::NotFound("session"))?;
        self.delete(user_id, &[(session_id.to_owned(), token)])
            .await
    }

    /// Revokes every session of the user except `keep_token`; returns their ids.
    pub async fn revoke_others(
        &self,
        user_id: UserId,
        keep_token: &str,
    ) -> Result<Vec<String>, ApiError> {
        let others: Vec<_> = self
            .entries(user_id)
            .await?
            .into_iter()
            .filter(|(_, t)| t != keep_token)
            .collect();
        self.delete(user_id, &others).await?;
        Ok(others.into_iter().map(|(id, _)| id).collect())
    }

    /// The public id of the session holding `token`.
    pub async fn session_id(&self, user_id: UserId, token: &str) -> Result<String, ApiError> {
        self.entries(user_id)
            .await?
            .into_iter()
            .find(|(_, t)| t == token)
            .map(|(id, _)| id)
            .ok_or(ApiError::Unauthorized)
    }

    /// Ends the session holding `token` (logout); returns its id.
    pub async fn end(&self, session: &Session) -> Result<Vec<String>, ApiError> {
        let mine: Vec<_> = self
            .entries(session.data.user_id)
            .await?
            .into_iter()
            .filter(|(_, t)| *t == session.token)
            .collect();
        if mine.is_empty() {
            // Not indexed (should not happen): still make sure the token stops working.
            redis::cmd("DEL")
                .arg(self.keys.session(&session.token))
                .query_async::<()>(&mut self.redis.clone())
                .await?;
        }
        self.delete(session.data.user_id, &mine).await?;
        Ok(mine.into_iter().map(|(id, _)| id).collect())
    }

    /// The user's index: (session id, token) pairs.
    async fn entries(&self, user_id: UserId) -> Result<Vec<(String, String)>, ApiError> {
        Ok(redis::cmd("HGETALL")
            .arg(self.keys.user_sessions(user_id))
            .query_async(&mut self.redis.clone())
            .await?)
    }

    async fn delete(&self, user_id: UserId, sessions: &[(String, String)]) -> Result<(), ApiError> {
        if sessions.is_empty() {
            return Ok(());
        }
        // The sessions first, so they stop working even if the index update fails (listing
        // prunes index entries whose session is gone). One command per key: on a cluster
        // they may be on different nodes.
        let cmds = sessions
            .iter()
            .map(|(_, token)| redis::cmd("DEL").arg(self.keys.session(token)).clone())
            .collect();
        self.redis.query_each::<redis::Value>(cmds).await?;
        let ids: Vec<&str> = sessions.iter().map(|(id, _)| id.as_str()).collect();
        redis::cmd("HDEL")
            .arg(self.keys.user_sessions(user_id))
            .arg(ids)
            .query_async::<()>(&mut self.redis.clone())
            .await?;
        Ok(())
    }
}
