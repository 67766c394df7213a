//! One gateway connection, from `hello` to close. Generic over the socket's `Stream` and
//! `Sink` so the protocol can be driven without a network in unit tests.
//!
//! - [`decode`]: what a client's text frame may be (pure; fuzzed).
//! - [`frames`]: the client frames after identify: heartbeat, typing, calls.
//! - [`output`]: writing frames and queued events, and replaying missed messages.

mod decode;
mod frames;
mod output;

use std::{collections::HashMap, time::Duration};

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt};
use protocol::{
    gateway::{close, ClientFrame, GroupId, ResumeFrom, ServerFrame, GATEWAY_VERSION},
    UserId,
};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Error as WsError;

use super::{calls, presence, replay, Gateway};
use crate::{error::ApiError, session::Session, state::AppState};

/// A peer that does not accept a frame within this time is as good as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The window over which a connection's frame rate is capped: long enough that a burst (a
/// call's candidates) averages out, short enough that a flood is cut off within it.
const FRAME_RATE_WINDOW: Duration = Duration::from_secs(10);
/// The most queued events written before one flush. A busy group sends each member
/// hundreds of frames a second: written one syscall each they cost more than the rest of
/// the delivery, so what has queued up meanwhile goes out in one write. Bounded so that a
/// flood still flushes (and notices a stalled peer) regularly.
const MAX_FRAMES_PER_FLUSH: usize = 64;

/// Why a connection ended.
enum End {
    Close(u16, &'static str),
    /// The peer closed or the socket failed: nothing more to send.
    Gone,
}

impl End {
    /// A store failed mid-way: "try again later" when it is unreachable (the client backs off
    /// and resumes, missing nothing), "internal error" for anything else.
    fn store_failed(e: ApiError) -> Self {
        match e {
            ApiError::Unavailable => Self::Close(close::TRY_AGAIN_LATER, "temporarily unavailable"),
            _ => Self::Close(1011, "internal error"),
        }
    }
}

struct Conn<'a, S> {
    socket: &'a mut S,
    state: &'a AppState,
    gateway: &'a Gateway,
    /// Last message sequence delivered per group.
    positions: HashMap<GroupId, i64>,
    /// The voice call this connection is in.
    voice: Option<GroupId>,
    /// The public id of the connection's session: a device, for voice.
    session_id: String,
}

fn parse_frame<E>(msg: Option<Result<Message, E>>) -> Result<Option<ClientFrame>, End>
where
    E: std::error::Error + 'static,
{
    match msg {
        Some(Err(e)) if too_big(&e) => Err(End::Close(close::TOO_BIG, "frame too big")),
        None | Some(Err(_)) => Err(End::Gone),
        Some(Ok(Message::Text(text))) => decode::client_frame(text.as_str())
            .map(Some)
            .map_err(|rejected| End::Close(close::INVALID_FRAME, rejected.reason())),
        Some(Ok(Message::Binary(_))) => Err(End::Close(
            close::INVALID_FRAME,
            "binary frames are not used",
        )),
        Some(Ok(Message::Close(_))) => Err(End::Gone),
        // Pings are answered by the WebSocket layer; they still count as life.
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(None),
    }
}

/// Whether a read failed on a frame over the size cap (the socket can still say so).
fn too_big(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(WsError::Capacity(_)) = e.downcast_ref::<WsError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Runs one connection to its end.
pub async fn run<S, E>(mut socket: S, state: AppState, gateway: Gateway)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
    E: std::error::Error + 'static,
{
    let interval = state.settings.heartbeat_interval();
    let mut conn = Conn {
        socket: &mut socket,
        state: &state,
        gateway: &gateway,
        positions: HashMap::new(),
        voice: None,
        session_id: String::new(),
    };
    let end = session(&mut conn, interval).await;
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = timeout(
            Duration::from_secs(1),
            socket.send(Message::Close(Some(frame))),
        )
        .await;
    }
}

async fn session<S, E>(conn: &mut Conn<'_, S>, interval: Duration) -> End
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
    E: std::error::Error + 'static,
{
    let hello = ServerFrame::Hello {
        version: GATEWAY_VERSION,
        heartbeat_interval_ms: interval.as_millis() as u64,
    };
    if let Err(end) = conn.send(&hello).await {
        return end;
    }
    // The first frame must be identify, within one heartbeat interval.
    let first = match timeout(interval, conn.socket.next()).await {
        Ok(msg) => parse_frame(msg),
        Err(_) => return End::Close(close::NOT_AUTHENTICATED, "identify expected"),
    };
    let (token, version, resume) = match first {
        Ok(Some(ClientFrame::Identify {
            token,
            version,
            resume,
        })) => (token, version, resume),
        Ok(_) => return End::Close(close::NOT_AUTHENTICATED, "identify expected"),
        Err(end) => return end,
    };
    if version != GATEWAY_VERSION {
        return End::Close(close::UNSUPPORTED_VERSION, "unsupported gateway version");
    }
    let session = match conn.state.sessions.authenticate(&token).await {
        Ok(s) => s,
        Err(ApiError::Unauthorized) => {
            return End::Close(close::AUTHENTICATION_FAILED, "authentication failed")
        }
        Err(e) => return End::store_failed(e),
    };
    let user_id = session.data.user_id;
    let session_id = conn
        .state
        .sessions
        .session_id(user_id, &token)
        .await
        .unwrap_or_default();

    // Register before reading positions, so no event published from here on is missed:
    // anything older than the positions read below is filtered out or replayed.
    let hub = conn.gateway.hub.clone();
    let mut reg = hub.register(
        user_id,
        session_id.clone(),
        conn.state.settings.gateway_queue,
    );
    conn.session_id.clone_from(&session_id);
    let end = identified(conn, &session, session_id, resume, &mut reg, interval).await;
    hub.unregister(user_id, reg.id);
    if !conn.gateway.crashed() {
        // Not a leave: a client that reconnects within the grace period resumes its call.
        if let Some(group_id) = conn.voice.take() {
            calls::dropped(&conn.caller(user_id), group_id).await;
        }
        track_presence(
            conn.state,
            conn.gateway,
            user_id,
            reg.id,
            presence::Change::Disconnected,
        )
        .await;
    }
    end
}

async fn identified<S, E>(
    conn: &mut Conn<'_, S>,
    session: &Session,
    session_id: String,
    resume: Option<ResumeFrom>,
    reg: &mut super::hub::Registration,
    interval: Duration,
) -> End
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
    E: std::error::Error + 'static,
{
    let user_id = session.data.user_id;
    track_presence(
        conn.state,
        conn.gateway,
        user_id,
        reg.id,
        presence::Change::Connected,
    )
    .await;
    let ready = match replay::ready(conn.state, conn.gateway, user_id, session_id).await {
        Ok(r) => r,
        Err(e) => return End::store_failed(e),
    };
    if let ServerFrame::Ready { groups, .. } = &ready {
        conn.positions = groups.iter().map(|g| (g.group_id, g.last_seq)).collect();
    }
    if let Err(end) = conn.send(&ready).await {
        return end;
    }
    if let Err(end) = conn.replay(resume).await {
        return end;
    }

    let silence_limit = interval * 2;
    let mut last_heard = Instant::now();
    let shutdown = conn.gateway.shutdown.clone();
    let frame_cap = u64::from(conn.state.settings.gateway_frame_rate) * FRAME_RATE_WINDOW.as_secs();
    let (mut window_start, mut frames_in_window) = (Instant::now(), 0u64);
    loop {
        let deadline = last_heard + silence_limit;
        tokio::select! {
            msg = conn.socket.next() => {
                match parse_frame(msg) {
                    Ok(frame) => {
                        last_heard = Instant::now();
                        if last_heard.duration_since(window_start) >= FRAME_RATE_WINDOW {
                            (window_start, frames_in_window) = (last_heard, 0);
                        }
                        frames_in_window += 1;
                        if frames_in_window > frame_cap {
                            return End::Close(close::RATE_LIMITED, "too many frames");
                        }
                        if let Some(frame) = frame {
                            if let Err(end) = conn.on_frame(session, frame).await {
                                return end;
                            }
                        }
                    }
                    Err(end) => return end,
                }
            }
            outbound = reg.rx.recv() => {
                let Some(outbound) = outbound else { return End::Close(close::TOO_SLOW, "too slow") };
                let kick = reg.kick.clone();
                tokio::select! {
                    sent = conn.deliver_queued(&outbound, &mut reg.rx) => if let Err(end) = sent { return end },
                    code = kick.kicked() => return kicked(code),
                }
            }
            code = reg.kick.kicked() => return kicked(code),
            () = tokio::time::sleep_until(deadline) => {
                return End::Close(close::HEARTBEAT_TIMEOUT, "heartbeat timeout");
            }
            () = shutdown.cancelled() => {
                if conn.gateway.crashed() {
                    return End::Gone;
                }
                return End::Close(close::GOING_AWAY, "server shutting down");
            }
        }
    }
}

/// Records a connection opening or closing and announces the user's presence when it
/// changed (first connection opened, last one closed).
async fn track_presence(
    state: &AppState,
    gateway: &Gateway,
    user_id: UserId,
    conn_id: u64,
    change: presence::Change,
) {
    let changed = match change {
        presence::Change::Connected => gateway.presence.connect(user_id, conn_id).await,
        _ => gateway.presence.disconnect(user_id, conn_id).await,
    };
    match changed {
        Ok(true) => presence::announce(&state.db, &state.events, user_id, change).await,
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, ?change, "presence not tracked"),
    }
}

fn kicked(code: u16) -> End {
    match code {
        close::TOO_SLOW => End::Close(close::TOO_SLOW, "too slow: resume"),
        close::SESSION_ENDED => End::Close(close::SESSION_ENDED, "session ended"),
        other => End::Close(other, "closed"),
    }
}
