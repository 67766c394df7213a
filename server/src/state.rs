//! Shared state handed to every handler.

use std::sync::Arc;

use sqlx::PgPool;

use crate::{
    config::Settings, domain::messages::SendQueues, events::EventBus, gateway::Gateway, keys::Keys,
    password::PasswordHasher, redis_conn::RedisConn, session::SessionStore,
};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    /// For read-only load that may lag the primary (`--database-read-url`; else `db`
    /// itself): see [`AppState::for_reads`].
    pub db_read: PgPool,
    pub redis: RedisConn,
    pub keys: Keys,
    pub sessions: SessionStore,
    pub passwords: PasswordHasher,
    pub settings: Arc<Settings>,
    pub events: EventBus,
    pub gateway: Gateway,
    /// The sends waiting to be committed, per group (group commit).
    pub sends: SendQueues,
}

impl AppState {
    /// This state with its `db` on the read pool, for a handler that only reads and may
    /// serve what a replica has (history pages, lists): everything the handler does then
    /// reads from there, its membership check included. Anything that writes, or must see
    /// its own writes (replay after an acknowledged send, `me` after an update), uses the
    /// state as it is.
    pub fn for_reads(&self) -> Self {
        Self {
            db: self.db_read.clone(),
            ..self.clone()
        }
    }
}
