//! Gateway and call events on their way to the web view.
//!
//! The gateway stream of `sohbet-client` is read by one task per session, and the event
//! stream of a call by one task per call, and handed to the UI's [`Channel`] as
//! [`AppEvent`]s. Until the UI subscribes (at start-up, or again after
//! a reload of the web view) the task waits and the client's bounded queue holds the
//! events; when that fills the client stops reading and the server drops the socket as too
//! slow, after which the client resumes: nothing is lost, only delayed.

use protocol::{
    gateway::{Event, GroupPosition, PresenceState},
    users::User,
    voice::{CallRing, VoiceCall},
    GroupId,
};
use serde::Serialize;
use sohbet_client::{calls::CallEvent, gateway::GatewayEvent};
use tauri::ipc::Channel;
use tokio::sync::{mpsc, watch};

/// What the UI receives on its event channel.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppEvent {
    /// Connected (again): the UI refreshes what it shows from this snapshot.
    Ready {
        user: User,
        session_id: String,
        groups: Vec<GroupPosition>,
        presences: Vec<PresenceState>,
        voice_calls: Vec<VoiceCall>,
        /// DM calls ringing for me now.
        rings: Vec<CallRing>,
    },
    /// Missed messages were replayed; `resync_groups` must be refetched over REST.
    Resumed {
        replayed: u64,
        resync_groups: Vec<GroupId>,
    },
    Event {
        event: Event,
    },
    /// The connection dropped; the client is reconnecting by itself.
    Disconnected {
        code: Option<u16>,
    },
    /// The session ended (logged out elsewhere, revoked, expired): log in again.
    SessionEnded {
        code: u16,
    },
    /// Something happened in my call (`join_call`); `ended` is its last event.
    Call {
        group_id: GroupId,
        event: CallEvent,
    },
}

impl AppEvent {
    /// The UI's view of a gateway event; `None` for the answers to voice frames, which
    /// only the calls API consumes.
    pub fn from_gateway(e: GatewayEvent) -> Option<Self> {
        Some(match e {
            GatewayEvent::Ready {
                user,
                session_id,
                groups,
                presences,
                voice_calls,
                rings,
            } => Self::Ready {
                user: *user,
                session_id,
                groups,
                presences,
                voice_calls,
                rings,
            },
            GatewayEvent::Resumed {
                replayed,
                resync_groups,
            } => Self::Resumed {
                replayed,
                resync_groups,
            },
            GatewayEvent::Event(event) => Self::Event { event },
            GatewayEvent::Disconnected { code } => Self::Disconnected { code },
            GatewayEvent::Closed { code } => Self::SessionEnded { code },
            GatewayEvent::VoiceJoined { .. } | GatewayEvent::Refused { .. } => return None,
        })
    }
}

/// The UI's current event channel; replaced when the web view subscribes again.
pub type Subscriber = watch::Receiver<Option<Channel<AppEvent>>>;

/// Forwards a stream (a session's gateway events, a call's events) to whichever channel
/// the UI last subscribed, as the [`AppEvent`]s `into` makes of them.
pub async fn forward<T>(
    mut events: mpsc::Receiver<T>,
    mut subscriber: Subscriber,
    into: impl Fn(T) -> Option<AppEvent>,
) {
    while let Some(event) = events.recv().await {
        let Some(event) = into(event) else {
            continue;
        };
        if !deliver(&mut subscriber, event).await {
            return;
        }
    }
}

/// Hands one event to the UI's channel, waiting for the UI to subscribe (again) if it has
/// no live one; `false` once the app is shutting down.
pub async fn deliver(subscriber: &mut Subscriber, event: AppEvent) -> bool {
    loop {
        let channel = subscriber.borrow_and_update().clone();
        if let Some(channel) = channel {
            if channel.send(event.clone()).is_ok() {
                return true;
            }
        }
        if subscriber.changed().await.is_err() {
            return false;
        }
    }
}
