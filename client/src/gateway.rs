//! The gateway event stream: connects, identifies, keeps the heartbeat, and when the
//! connection drops reconnects with backoff and resumes from the last message sequence seen
//! per group. Message events reach the stream exactly once and in order per group.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use protocol::gateway::{
    close, ClientFrame, Event, FrameRef, GroupId, GroupPosition, PresenceState, ResumeFrom,
    ServerFrame, VoiceCall, GATEWAY_VERSION,
};
use protocol::users::User;
use protocol::voice::{CallRing, VoiceParticipant, VoiceSignal};
use protocol::UserId;
use rand::Rng;
use tokio::{sync::mpsc, task::JoinHandle, time::timeout};
use tokio_tungstenite::{
    tungstenite::{protocol::CloseFrame, Message},
    Connector,
};

use crate::tls::Tls;

/// What the stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayEvent {
    /// Sent on every (re)connect, before any replayed message.
    Ready {
        user: Box<User>,
        session_id: String,
        groups: Vec<GroupPosition>,
        presences: Vec<PresenceState>,
        voice_calls: Vec<VoiceCall>,
        rings: Vec<CallRing>,
    },
    /// Replay done; `resync_groups` had too large a gap: refetch their history over REST.
    Resumed {
        replayed: u64,
        resync_groups: Vec<GroupId>,
    },
    Event(Event),
    /// The answer to a `voice_join` (see [`protocol::gateway::ServerFrame::VoiceJoined`]).
    VoiceJoined {
        group_id: GroupId,
        participants: Vec<VoiceParticipant>,
        resumed: bool,
        reference: Option<FrameRef>,
    },
    /// The server refused a frame (see [`protocol::voice::refusal`] for the codes).
    Refused {
        code: String,
        message: String,
        reference: Option<FrameRef>,
    },
    /// The connection dropped (with the server's close code, if it sent one); reconnecting.
    Disconnected {
        code: Option<u16>,
    },
    /// The session cannot continue (ended, or authentication failed): the stream ends.
    Closed {
        code: u16,
    },
}

#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// First reconnect delay; doubles per failed attempt up to `reconnect_max`, with jitter
    /// so that clients dropped together do not reconnect together.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Events buffered for a slow consumer before the client stops reading the socket (the
    /// server then closes it as too slow and the client resumes: nothing is lost).
    pub buffer: usize,
    /// Whom a `wss://` connection trusts: give the REST client's ([`Client::tls`]).
    ///
    /// [`Client::tls`]: crate::Client::tls
    pub tls: Tls,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            buffer: 4096,
            tls: Tls::default(),
        }
    }
}

enum Command {
    /// A frame for the server: typing, voice join/leave/signal. Dropped if the connection is
    /// down at that moment (all of these are ephemeral).
    Frame(ClientFrame),
    /// Drop the socket as a network failure would (no close frame), then reconnect.
    DropConnection,
    Close,
}

/// Who this connection is, once the server said `ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub session_id: String,
}

/// State shared between the handle, its senders and the connection task.
#[derive(Default)]
struct Shared {
    identity: Mutex<Option<Identity>>,
    /// Extra consumers of the stream (a call), fed alongside the main one; a full or closed
    /// one is skipped, never waited for.
    taps: Mutex<Vec<mpsc::Sender<GatewayEvent>>>,
    next_ref: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sends frames on a gateway connection and taps its events; cheap to clone, so a call can
/// keep one while the application keeps the [`GatewayHandle`].
#[derive(Clone)]
pub struct GatewaySender {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl GatewaySender {
    /// Sends a frame; dropped if the connection is down at that moment (every frame a client
    /// sends besides identify is ephemeral: a call re-joins after a reconnect).
    pub fn send(&self, frame: ClientFrame) {
        let _ = self.commands.send(Command::Frame(frame));
    }

    /// A fresh `ref` for a frame whose answer the caller wants to match.
    pub fn next_ref(&self) -> FrameRef {
        self.shared
            .next_ref
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// The connection's user and session, once `ready` arrived.
    pub fn identity(&self) -> Option<Identity> {
        lock(&self.shared.identity).clone()
    }

    /// A second stream of this connection's events (what the main stream gets, from now on).
    /// Events it cannot take at once are dropped for it, not for the main stream.
    pub fn tap(&self, buffer: usize) -> mpsc::Receiver<GatewayEvent> {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        lock(&self.shared.taps).push(tx);
        rx
    }

    pub fn typing(&self, group_id: GroupId) {
        self.send(ClientFrame::Typing {
            group_id,
            reference: None,
        });
    }

    /// Joins the voice call of a group (leaving any other call of this connection). The
    /// calls API ([`crate::calls`]) does this and everything after it.
    pub fn voice_join(&self, group_id: GroupId) {
        self.send(ClientFrame::VoiceJoin {
            group_id,
            muted: false,
            deafened: false,
            reference: None,
        });
    }

    pub fn voice_leave(&self) {
        self.send(ClientFrame::VoiceLeave);
    }

    /// Sends WebRTC signaling to another participant of the call.
    pub fn voice_signal(&self, group_id: GroupId, to: UserId, signal: VoiceSignal) {
        self.send(ClientFrame::VoiceSignal {
            group_id,
            to,
            signal,
            reference: None,
        });
    }

    /// Simulates a network failure: the socket is dropped without a close frame and the
    /// client reconnects and resumes.
    pub fn drop_connection(&self) {
        let _ = self.commands.send(Command::DropConnection);
    }
}

/// Controls a running gateway connection; closes it when dropped.
pub struct GatewayHandle {
    sender: GatewaySender,
    task: Option<JoinHandle<()>>,
}

impl std::ops::Deref for GatewayHandle {
    type Target = GatewaySender;

    fn deref(&self) -> &GatewaySender {
        &self.sender
    }
}

impl GatewayHandle {
    /// A sender for this connection that outlives borrows of the handle.
    pub fn sender(&self) -> GatewaySender {
        self.sender.clone()
    }

    /// Closes the connection for good and waits for the task to end.
    pub async fn close(mut self) {
        let _ = self.sender.commands.send(Command::Close);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        let _ = self.sender.commands.send(Command::Close);
    }
}

/// Connects to `url` (`ws://host/api/gateway`) with the session `token`.
pub fn connect(
    url: String,
    token: String,
    options: GatewayOptions,
) -> (GatewayHandle, mpsc::Receiver<GatewayEvent>) {
    start(url, token, options, None)
}

/// Connects and resumes from saved positions (group → last message sequence seen), as a
/// client restarted from its stored state does.
pub fn connect_from(
    url: String,
    token: String,
    options: GatewayOptions,
    positions: HashMap<GroupId, i64>,
) -> (GatewayHandle, mpsc::Receiver<GatewayEvent>) {
    start(url, token, options, Some(positions))
}

fn start(
    url: String,
    token: String,
    options: GatewayOptions,
    positions: Option<HashMap<GroupId, i64>>,
) -> (GatewayHandle, mpsc::Receiver<GatewayEvent>) {
    let (events_tx, events_rx) = mpsc::channel(options.buffer.max(1));
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::default());
    let state = State {
        url,
        token,
        tls: options.tls.clone(),
        positions,
        events: events_tx,
        shared: Arc::clone(&shared),
    };
    let task = tokio::spawn(run(state, options, commands_rx));
    (
        GatewayHandle {
            sender: GatewaySender { commands, shared },
            task: Some(task),
        },
        events_rx,
    )
}

/// How one connection attempt ended.
enum Outcome {
    /// Reconnect (after backoff unless `fast`).
    Retry { code: Option<u16>, fast: bool },
    /// Stop for good.
    Stop,
}

struct State {
    url: String,
    token: String,
    tls: Tls,
    /// Last message sequence delivered per group; `None` until the first ready.
    positions: Option<HashMap<GroupId, i64>>,
    events: mpsc::Sender<GatewayEvent>,
    shared: Arc<Shared>,
}

async fn run(
    mut state: State,
    options: GatewayOptions,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut delay = options.reconnect_min;
    loop {
        match state.connection(&mut commands).await {
            Outcome::Stop => return,
            Outcome::Retry { code, fast } => {
                if !state.emit(GatewayEvent::Disconnected { code }).await {
                    return;
                }
                if fast {
                    delay = options.reconnect_min;
                }
                let jitter = rand::rng().random_range(0.5..1.5);
                let wait = delay.mul_f64(jitter);
                delay = (delay * 2).min(options.reconnect_max);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    cmd = commands.recv() => if matches!(cmd, None | Some(Command::Close)) { return },
                }
            }
        }
    }
}

/// The server's close code, if the socket was closed with one.
fn close_code(frame: Option<&CloseFrame>) -> Option<u16> {
    frame.map(|f| u16::from(f.code))
}

fn terminal(code: u16) -> bool {
    // Retrying would fail the same way; an invalid frame is a bug in this client.
    matches!(
        code,
        close::AUTHENTICATION_FAILED
            | close::SESSION_ENDED
            | close::UNSUPPORTED_VERSION
            | close::INVALID_FRAME
    )
}

impl State {
    /// Hands an event to the main stream and the taps; false when the consumer has gone.
    async fn emit(&self, event: GatewayEvent) -> bool {
        {
            let mut taps = lock(&self.shared.taps);
            taps.retain(|tap| match tap.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!("a gateway tap is full; event dropped for it");
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
        self.events.send(event).await.is_ok()
    }

    async fn connection(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Outcome {
        let retry = Outcome::Retry {
            code: None,
            fast: false,
        };
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            self.url.as_str(),
            None,
            false,
            Some(Connector::Rustls(self.tls.config())),
        );
        let mut socket = match timeout(Duration::from_secs(10), connecting).await {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(e)) => {
                // An untrusted certificate will not fix itself by retrying, but a renewed one
                // may: keep trying, and say why where someone can see it.
                if let Some(tls) = crate::tls::tls_cause(&e) {
                    tracing::warn!(error = %tls, "gateway: TLS failed");
                } else {
                    tracing::debug!(error = %e, "gateway: cannot connect");
                }
                return retry;
            }
            Err(_) => return retry,
        };
        // hello
        let interval = match timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<ServerFrame>(&text) {
                Ok(ServerFrame::Hello {
                    heartbeat_interval_ms,
                    ..
                }) => Duration::from_millis(heartbeat_interval_ms.max(50)),
                _ => return retry,
            },
            _ => return retry,
        };
        let identify = ClientFrame::Identify {
            token: self.token.clone(),
            version: GATEWAY_VERSION,
            resume: self.positions.as_ref().map(ResumeFrom::from_positions),
        };
        let Ok(text) = serde_json::to_string(&identify) else {
            return Outcome::Stop;
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return retry;
        }

        // Heartbeat at a bit under the interval so a slow tick never looks like silence.
        let mut heartbeat = tokio::time::interval(interval.mul_f64(0.8));
        heartbeat.tick().await;
        loop {
            tokio::select! {
                msg = socket.next() => {
                    let frame = match msg {
                        Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerFrame>(&text) {
                            Ok(frame) => frame,
                            Err(e) => {
                                tracing::warn!(error = %e, "unreadable gateway frame");
                                continue;
                            }
                        },
                        Some(Ok(Message::Close(frame))) => {
                            let code = close_code(frame.as_ref());
                            if let Some(code) = code.filter(|c| terminal(*c)) {
                                let _ = self.emit(GatewayEvent::Closed { code }).await;
                                return Outcome::Stop;
                            }
                            // A server that closed us on purpose (too slow, shutting down) is
                            // healthy: come back at once; unless it said its stores are down
                            // (try again later) or we sent too much: then back off.
                            let fast = code.is_some_and(|c| {
                                c != close::TRY_AGAIN_LATER && c != close::RATE_LIMITED
                            });
                            return Outcome::Retry { code, fast };
                        }
                        Some(Ok(_)) => continue,
                        None | Some(Err(_)) => return retry,
                    };
                    if !self.on_frame(frame).await {
                        return Outcome::Stop;
                    }
                }
                _ = heartbeat.tick() => {
                    let Ok(text) = serde_json::to_string(&ClientFrame::Heartbeat) else { return Outcome::Stop };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return retry;
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::Frame(frame)) => {
                        let Ok(text) = serde_json::to_string(&frame) else { continue };
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            return retry;
                        }
                    }
                    Some(Command::DropConnection) => return Outcome::Retry { code: None, fast: true },
                    None | Some(Command::Close) => {
                        let _ = socket.close(None).await;
                        return Outcome::Stop;
                    }
                },
            }
        }
    }

    /// Handles one frame; false when the consumer has gone.
    async fn on_frame(&mut self, frame: ServerFrame) -> bool {
        match frame {
            ServerFrame::Ready {
                user,
                session_id,
                groups,
                presences,
                voice_calls,
                rings,
            } => {
                *lock(&self.shared.identity) = Some(Identity {
                    user_id: user.user_id,
                    session_id: session_id.clone(),
                });
                let positions = self.positions.get_or_insert_with(HashMap::new);
                // Groups new to this client start at their current end: their history is
                // fetched over REST, not replayed.
                for g in &groups {
                    positions.entry(g.group_id).or_insert(g.last_seq);
                }
                self.emit(GatewayEvent::Ready {
                    user: Box::new(user),
                    session_id,
                    groups,
                    presences,
                    voice_calls,
                    rings,
                })
                .await
            }
            ServerFrame::Resumed {
                replayed,
                resync_groups,
            } => {
                self.emit(GatewayEvent::Resumed {
                    replayed,
                    resync_groups,
                })
                .await
            }
            ServerFrame::Event { event } => {
                if let Some((group_id, seq)) = event.message_position() {
                    let positions = self.positions.get_or_insert_with(HashMap::new);
                    let last = positions.entry(group_id).or_insert(seq - 1);
                    if seq <= *last {
                        return true; // already delivered
                    }
                    *last = seq;
                }
                self.emit(GatewayEvent::Event(event)).await
            }
            ServerFrame::VoiceJoined {
                group_id,
                participants,
                resumed,
                reference,
            } => {
                self.emit(GatewayEvent::VoiceJoined {
                    group_id,
                    participants,
                    resumed,
                    reference,
                })
                .await
            }
            ServerFrame::Error {
                code,
                message,
                reference,
            } => {
                self.emit(GatewayEvent::Refused {
                    code,
                    message,
                    reference,
                })
                .await
            }
            ServerFrame::HeartbeatAck | ServerFrame::Hello { .. } => true,
        }
    }
}
