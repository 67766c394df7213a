//! The WebSocket gateway: `GET /api/gateway`.
//!
//! - [`connection`]: one connection's protocol, hello to close.
//! - [`hub`]: this instance's connections and the dispatcher with per-connection queues.
//! - [`membership`]: expiring memberships in Redis, the store under presence and voice.
//! - [`presence`]: presence in Redis, across instances.
//! - [`replay`]: the ready payload and missed messages from PostgreSQL.
//! - [`voice`]: who is in which voice call from which device, and DM rings, in Redis.
//! - [`calls`]: a connection's call frames: join, leave, state, signaling relay, ringing.
//!
//! Every instance subscribes to the Redis event channel (a sharded channel on a Redis
//! Cluster) and dispatches to its own connections, so several instances behind a load
//! balancer behave as one server.

pub mod calls;
pub mod connection;
pub mod hub;
pub mod membership;
pub mod presence;
pub mod replay;
pub mod voice;

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use axum::{extract::State, response::Response};
use protocol::{gateway::close, UserId};
use serde::{Deserialize, Serialize};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    events::Envelope, extract::WebSocketUpgrade, redis_conn::Subscription, state::AppState,
};

/// Per-connection socket buffers: enough for a burst of typical frames; a larger frame still
/// works, it just takes more than one read or write.
const READ_BUFFER: usize = 8 * 1024;
const WRITE_BUFFER: usize = 8 * 1024;

/// This instance's gateway: shared by the route and the background tasks.
#[derive(Clone)]
pub struct Gateway {
    pub hub: Arc<hub::Hub>,
    pub presence: presence::PresenceStore,
    pub voice: voice::VoiceStore,
    /// Cancelled when the server shuts down: connections close with "going away".
    pub shutdown: CancellationToken,
    /// Every upgraded connection's task. The HTTP server forgets a connection once it is
    /// upgraded, so shutdown waits on these before closing the pool: each closes its socket
    /// with "going away" and announces its user offline first.
    pub tasks: TaskTracker,
    /// Tests simulate a crashed instance: connections drop without presence clean-up.
    crashed: Arc<AtomicBool>,
}

impl Gateway {
    pub fn new(presence: presence::PresenceStore, voice: voice::VoiceStore) -> Self {
        Self {
            voice,
            hub: Arc::default(),
            presence,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            crashed: Arc::default(),
        }
    }

    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Stops this instance as a crash would: sockets drop, nothing is cleaned up, presence is
    /// no longer renewed. Other instances' sweeps must notice.
    pub fn crash(&self) {
        self.crashed.store(true, Ordering::SeqCst);
        self.shutdown.cancel();
    }
}

/// A control message between instances.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// These sessions ended (logout, revocation): close their sockets.
    SessionsEnded {
        user_id: UserId,
        session_ids: Vec<String>,
    },
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(gateway))
}

/// GET /api/gateway
///
/// Upgrades to a WebSocket speaking the protocol of `protocol::gateway`: the server sends
/// `hello`, the client answers `identify` with its session token in its first frame.
#[utoipa::path(get, path = "/api/gateway", tag = "gateway",
    responses((status = 101, description = "WebSocket upgrade"),
              (status = 400, description = "not a WebSocket request",
               body = protocol::error::ErrorBody)))]
async fn gateway(
    State(state): State<AppState>,
    WebSocketUpgrade(ws): WebSocketUpgrade,
) -> Response {
    let gateway = state.gateway.clone();
    // Tracked from before the upgrade, so a shutdown right after it still waits for it.
    let tracked = gateway.tasks.token();
    // Frames are small JSON: a 64 KiB cap stops a client from making the server buffer more.
    // Small buffers: tungstenite's defaults (128 KiB each way) cost ~256 KiB per idle
    // connection; events are a few hundred bytes.
    ws.max_message_size(64 * 1024)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            connection::run(socket, state, gateway).await;
            drop(tracked);
        })
}

/// Subscribes to the event and control channels.
async fn subscribe(state: &AppState) -> redis::RedisResult<Subscription> {
    Subscription::subscribe(
        state.settings.redis_url.expose(),
        &[state.keys.events_channel(), state.keys.control_channel()],
    )
    .await
}

/// First wait before subscribing again after the subscription was lost (e.g. Redis
/// restarted), doubled per failed attempt up to the maximum: quick after a restart, gentle
/// on a Redis that stays down.
const RESUBSCRIBE_MIN: std::time::Duration = std::time::Duration::from_millis(100);
const RESUBSCRIBE_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Subscribes again until it works; `None` if the gateway shuts down first.
async fn resubscribe(state: &AppState) -> Option<Subscription> {
    let mut delay = RESUBSCRIBE_MIN;
    loop {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = state.gateway.shutdown.cancelled() => return None,
        }
        match subscribe(state).await {
            Ok(subscription) => return Some(subscription),
            Err(e) => tracing::warn!(error = %e, "event subscription: still failing"),
        }
        delay = (delay * 2).min(RESUBSCRIBE_MAX);
    }
}

/// Starts this instance's gateway tasks: the event subscriber and presence upkeep. They
/// stop when the gateway shuts down.
pub async fn start(state: &AppState) -> anyhow::Result<()> {
    let first = subscribe(state).await?;
    let control_channel = state.keys.control_channel();
    let gateway = state.gateway.clone();
    let subscriber_state = state.clone();
    tokio::spawn(async move {
        let mut subscription = Some(first);
        loop {
            let mut messages = match subscription.take() {
                Some(subscription) => subscription,
                None => {
                    let Some(subscription) = resubscribe(&subscriber_state).await else {
                        break;
                    };
                    tracing::info!("event subscription restored");
                    // What was published meanwhile never reached this instance's sockets:
                    // their clients resume, and get every message they missed from
                    // PostgreSQL exactly once.
                    gateway.hub_close_all(close::GOING_AWAY);
                    subscription
                }
            };
            loop {
                tokio::select! {
                    msg = messages.next() => {
                        let Some(msg) = msg else {
                            tracing::error!("event subscription lost; subscribing again");
                            break;
                        };
                        let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
                        if msg.get_channel_name() == control_channel {
                            match serde_json::from_slice::<Control>(&payload) {
                                Ok(Control::SessionsEnded { user_id, session_ids }) => {
                                    gateway.hub.end_sessions(user_id, Some(&session_ids), close::SESSION_ENDED);
                                }
                                Err(e) => tracing::warn!(error = %e, "bad control message"),
                            }
                        } else {
                            match serde_json::from_slice::<Envelope>(&payload) {
                                Ok(envelope) => gateway.hub.dispatch(envelope),
                                Err(e) => tracing::warn!(error = %e, "bad event envelope"),
                            }
                        }
                    }
                    () = gateway.shutdown.cancelled() => return,
                }
            }
        }
    });

    let (gateway, db, events, state) = (
        state.gateway.clone(),
        state.db.clone(),
        state.events.clone(),
        state.clone(),
    );
    // Voice participants lingering after a dropped connection are noticed within a grace
    // period, so sweep at least that often.
    let period = state
        .settings
        .heartbeat_interval()
        .min(std::time::Duration::from_millis(
            state.settings.voice_grace_ms.max(100),
        ));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = gateway.shutdown.cancelled() => break,
            }
            if let Err(e) = gateway.presence.renew(&gateway.hub.connections()).await {
                tracing::warn!(error = %e, "presence renewal failed");
            }
            match gateway.presence.sweep().await {
                Ok(offline) => {
                    for user_id in offline {
                        presence::announce(&db, &events, user_id, presence::Change::Disconnected)
                            .await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "presence sweep failed"),
            }
            match gateway.voice.sweep().await {
                Ok(gone) => {
                    for (group_id, user_id) in gone {
                        calls::gone(&state, &gateway.voice, group_id, user_id).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "voice sweep failed"),
            }
            calls::expire_rings(&state, &gateway.voice).await;
        }
    });
    Ok(())
}

impl Gateway {
    fn hub_close_all(&self, code: u16) {
        for (user_id, _) in self.hub.connections() {
            self.hub.end_sessions(user_id, None, code);
        }
    }
}
