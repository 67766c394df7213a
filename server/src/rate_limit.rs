//! Fixed-window rate limits counted in Redis, shared by every server instance.

use redis::aio::ConnectionManager;

use crate::error::ApiError;

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
        crate::metrics::rate_limited();
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
        crate::metrics::rate_limited();
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
