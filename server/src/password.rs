//! Password hashing with argon2id on a bounded blocking pool.
//!
//! Parameters are OWASP's first recommendation for argon2id (m = 19 MiB, t = 2, p = 1).
//! Hashing runs on tokio's blocking threads, at most `concurrency` at a time, so a burst of
//! logins queues here instead of stalling the async runtime or exhausting memory.
//!
//! Each of those slots hashes in a 19 MiB block of memory allocated once and reused. Left to
//! argon2, every hash allocated and freed its own; glibc then kept the freed blocks in the
//! blocking threads' arenas, and 20 logins left the server at ~430 MB for good. With the
//! blocks reused, the server holds at most `concurrency` of them, whatever the login history.

use std::sync::{Arc, Mutex};

use argon2::{
    password_hash::{
        phc::{Output, ParamsString, Salt},
        PasswordVerifier as _,
    },
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// OWASP Password Storage Cheat Sheet: argon2id, 19 MiB, 2 iterations, 1 lane.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// Bytes of salt in a new hash (the PHC string format's recommendation).
const SALT_LEN: usize = 16;
/// Bytes of hash output (argon2's default).
const OUTPUT_LEN: usize = 32;

/// Argon2 working memory of one hashing slot: `M_COST_KIB` blocks of 1 KiB.
type Memory = Vec<Block>;

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Working memory of the slots not hashing right now; at most one per permit exists.
    memory: Arc<Mutex<Vec<Memory>>>,
    /// A hash of a random password, verified against when the login names no account, so an
    /// unknown user costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

fn new_memory() -> Memory {
    vec![Block::new(); M_COST_KIB as usize]
}

fn argon2() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("argon2 params: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("{what}: {e}"))
}

/// A new PHC string (`$argon2id$v=19$m=…`) for `password`, hashed in `memory`.
fn hash_blocking(password: &[u8], memory: &mut [Block]) -> Result<String, ApiError> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| internal("getrandom", e))?;
    let argon2 = argon2()?;
    let mut out = [0u8; OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(password, &salt, &mut out, memory)
        .map_err(|e| internal("argon2 hash", e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).map_err(|e| internal("argon2", e))?,
        salt: Some(Salt::new(&salt).map_err(|e| internal("argon2 salt", e))?),
        hash: Some(Output::new(&out).map_err(|e| internal("argon2 output", e))?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `hash`, computed in `memory` when the hash's
/// parameters fit in it (all hashes this server wrote), else in memory of its own.
fn verify_blocking(password: &[u8], hash: &str, memory: &mut [Block]) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        tracing::warn!("a stored password hash does not parse");
        return false;
    };
    let params = Params::try_from(&parsed);
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str());
    let version = Version::try_from(parsed.version.unwrap_or(Version::V0x13.into()));
    let (Ok(params), Ok(algorithm), Ok(version), Some(salt), Some(expected)) =
        (params, algorithm, version, &parsed.salt, &parsed.hash)
    else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    if usize::try_from(params.m_cost()).map_or(true, |m| m > memory.len()) {
        return argon2.verify_password(password, hash).is_ok();
    }
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    if argon2
        .hash_password_into_with_memory(password, salt, out, memory)
        .is_err()
    {
        return false;
    }
    // Output compares in constant time.
    Output::new(out).is_ok_and(|computed| computed == *expected)
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> Result<Self, ApiError> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("getrandom: {e}")))?;
        let mut memory = new_memory();
        let dummy_hash = hash_blocking(&random, &mut memory)?.into();
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            memory: Arc::new(Mutex::new(vec![memory])),
            dummy_hash,
        })
    }

    /// Runs `job` on a blocking thread with a slot's working memory.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        let mut memory = self
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_else(new_memory);
        let (result, memory) = tokio::task::spawn_blocking(move || {
            let result = job(&mut memory);
            (result, memory)
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(memory);
        Ok(result)
    }

    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let password = password.to_owned();
        self.run(move |memory| hash_blocking(password.as_bytes(), memory))
            .await?
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
            .run(move |memory| verify_blocking(password.as_bytes(), &hash, memory))
            .await?;
        Ok(known && ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::new(1).expect("hasher");
        let hash = hasher.hash("correct horse").await.expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher
            .verify("correct horse", Some(hash.clone()))
            .await
            .expect("verify"));
        assert!(!hasher
            .verify("wrong horse", Some(hash))
            .await
            .expect("verify"));
        assert!(!hasher.verify("correct horse", None).await.expect("verify"));
    }

    #[test]
    fn hashes_written_by_argon2_itself_still_verify() {
        use argon2::password_hash::PasswordHasher as _;
        let hash = argon2()
            .and_then(|a| a.hash_password(b"pw").map_err(|e| internal("argon2", e)))
            .expect("hash")
            .to_string();
        let mut memory = new_memory();
        assert!(verify_blocking(b"pw", &hash, &mut memory));
        assert!(!verify_blocking(b"px", &hash, &mut memory));
        // Parameters needing more memory than a slot has are verified all the same.
        let bigger = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(M_COST_KIB * 2, 1, 1, None).expect("params"),
        )
        .hash_password(b"pw")
        .expect("hash")
        .to_string();
        assert!(verify_blocking(b"pw", &bigger, &mut memory));
    }
}
