//! Shared state handed to every handler.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::{
    config::Settings, domain::messages::SendQueues, events::EventBus, gateway::Gateway, keys::Keys,
    password::PasswordHasher, session::SessionStore,
};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub sessions: SessionStore,
    pub passwords: PasswordHasher,
    pub settings: Arc<Settings>,
    pub events: EventBus,
    pub gateway: Gateway,
    /// The sends waiting to be committed, per group (group commit).
    pub sends: SendQueues,
}
