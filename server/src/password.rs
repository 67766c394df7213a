//! Password hashing with argon2id on a bounded blocking pool.
//!
//! Parameters are OWASP's first recommendation for argon2id (m = 19 MiB, t = 2, p = 1).
//! Hashing runs on tokio's blocking threads, at most `concurrency` at a time, so a burst of
//! logins queues here instead of stalling the async runtime or exhausting memory.

use std::sync::Arc;

use argon2::{
    password_hash::{PasswordHasher as _, PasswordVerifier as _},
    Algorithm, Argon2, Params, Version,
};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// OWASP Password Storage Cheat Sheet: argon2id, 19 MiB, 2 iterations, 1 lane.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the login names no account, so an
    /// unknown user costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

fn argon2() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("argon2 params: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &[u8]) -> Result<String, ApiError> {
    argon2()?
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("argon2 hash: {e}")))
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> Result<Self, ApiError> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("getrandom: {e}")))?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: hash_blocking(&random)?.into(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| ApiError::Internal(e.into()))
    }

    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let password = password.to_owned();
        self.run(move || hash_blocking(password.as_bytes())).await?
    }

    /// Verifies `password` against `hash`, or against a dummy hash when there is no account,
    /// always returning false in that case. A stored hash that does not parse counts as a
    /// mismatch (and is logged), never as a server error the caller could tell apart.
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, ApiError> {
        let password = password.to_owned();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = self
            .run(move || match argon2() {
                Ok(a) => a
                    .verify_password(password.as_bytes(), hash.as_str())
                    .is_ok(),
                Err(_) => false,
            })
            .await?;
        Ok(known && ok)
    }
}
