//! The hub: this instance's live gateway connections, and the dispatcher that hands each
//! event from the Redis bus to the connections of its recipients.
//!
//! Dispatch never waits on a connection: each has a bounded queue, and one whose queue is
//! full is kicked with a resumable close code instead of slowing anyone else.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU16, AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use protocol::{
    gateway::{GroupId, ServerFrame},
    UserId,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::Envelope;

/// One event as queued for connections: serialized once, shared by all recipients.
#[derive(Debug)]
pub struct Outbound {
    pub frame: Arc<str>,
    /// For `message_created`: the group and sequence, so each connection can deliver a
    /// group's messages exactly once and in order.
    pub position: Option<(GroupId, i64)>,
}

/// What the hub holds of a connection.
struct ConnEntry {
    id: u64,
    session_id: String,
    tx: mpsc::Sender<Arc<Outbound>>,
    kick: Kick,
}

/// Closes a connection from outside its task, with a reason.
#[derive(Clone, Default)]
pub struct Kick {
    token: CancellationToken,
    code: Arc<AtomicU16>,
}

impl Kick {
    pub fn kick(&self, code: u16) {
        // The first reason wins.
        let _ = self
            .code
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.token.cancel();
    }

    pub async fn kicked(&self) -> u16 {
        self.token.cancelled().await;
        self.code.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
pub struct Hub {
    conns: RwLock<HashMap<UserId, Vec<ConnEntry>>>,
    next_id: AtomicU64,
    /// Counters for the load benchmark and logs.
    pub delivered: AtomicU64,
    pub kicked_slow: AtomicU64,
}

/// A registered connection: its id, its queue, and the handle that closes it.
pub struct Registration {
    pub id: u64,
    pub rx: mpsc::Receiver<Arc<Outbound>>,
    pub kick: Kick,
}

impl Hub {
    pub fn register(&self, user_id: UserId, session_id: String, capacity: usize) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let kick = Kick::default();
        let entry = ConnEntry {
            id,
            session_id,
            tx,
            kick: kick.clone(),
        };
        self.write().entry(user_id).or_default().push(entry);
        Registration { id, rx, kick }
    }

    pub fn unregister(&self, user_id: UserId, id: u64) {
        let mut conns = self.write();
        if let Some(list) = conns.get_mut(&user_id) {
            list.retain(|c| c.id != id);
            if list.is_empty() {
                conns.remove(&user_id);
            }
        }
    }

    /// (user, connection) pairs of every live connection, for presence renewal.
    pub fn connections(&self) -> Vec<(UserId, u64)> {
        self.read()
            .iter()
            .flat_map(|(user, list)| list.iter().map(move |c| (*user, c.id)))
            .collect()
    }

    pub fn connection_count(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }

    /// Hands an event to every local connection of its recipients.
    pub fn dispatch(&self, envelope: Envelope) {
        let position = envelope.event.message_position();
        let frame = match serde_json::to_string(&ServerFrame::Event {
            event: envelope.event,
        }) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize event");
                return;
            }
        };
        let outbound = Arc::new(Outbound {
            frame: frame.into(),
            position,
        });
        let conns = self.read();
        for user in &envelope.recipients {
            for conn in conns.get(user).into_iter().flatten() {
                match conn.tx.try_send(outbound.clone()) {
                    Ok(()) => {
                        self.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.kicked_slow.fetch_add(1, Ordering::Relaxed);
                        conn.kick.kick(protocol::gateway::close::TOO_SLOW);
                    }
                    // The connection is closing; it unregisters itself.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
    }

    /// Closes the user's connections running on the given sessions (or all of them).
    pub fn end_sessions(&self, user_id: UserId, session_ids: Option<&[String]>, code: u16) {
        for conn in self.read().get(&user_id).into_iter().flatten() {
            if session_ids.is_none_or(|ids| ids.contains(&conn.session_id)) {
                conn.kick.kick(code);
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<UserId, Vec<ConnEntry>>> {
        self.conns
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<UserId, Vec<ConnEntry>>> {
        self.conns
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
