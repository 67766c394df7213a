//! One gateway connection, from `hello` to close. Generic over the socket's `Stream` and
//! `Sink` so the protocol can be driven without a network in unit tests.

use std::{collections::HashMap, time::Duration};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures::{Sink, SinkExt, Stream, StreamExt};
use protocol::{
    gateway::{close, ClientFrame, Event, GroupId, ResumeFrom, ServerFrame, GATEWAY_VERSION},
    UserId,
};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Error as WsError;

use super::{
    calls::{self, Caller, Refusal},
    hub::Outbound,
    presence, replay, Gateway,
};
use crate::{
    domain::groups,
    error::ApiError,
    rate_limit::{self, Action},
    session::Session,
    state::AppState,
};

/// A peer that does not accept a frame within this time is as good as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a typing indicator shows unless repeated; clients repeat every ~3 s.
const TYPING_SHOWN_MS: u64 = 6000;
/// At most one typing event per user and group in this window.
const TYPING_THROTTLE_MS: u64 = 3000;
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

impl<S, E> Conn<'_, S>
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    async fn send_text(&mut self, text: Utf8Bytes) -> Result<(), End> {
        match timeout(SEND_TIMEOUT, self.socket.send(Message::Text(text))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    /// Queues a frame in the socket's write buffer without flushing it (the buffer is
    /// written out when it fills, or by [`Self::flush`]).
    async fn feed_text(&mut self, text: Utf8Bytes) -> Result<(), End> {
        match timeout(SEND_TIMEOUT, self.socket.feed(Message::Text(text))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        match timeout(SEND_TIMEOUT, self.socket.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    /// Delivers `first` and whatever else is already queued (up to a bound), then flushes
    /// once: one write for a burst instead of one per frame.
    async fn deliver_queued(
        &mut self,
        first: &Outbound,
        queue: &mut tokio::sync::mpsc::Receiver<std::sync::Arc<Outbound>>,
    ) -> Result<(), End> {
        self.deliver(first).await?;
        for _ in 1..MAX_FRAMES_PER_FLUSH {
            // Empty or closed: flush what was written; a closed queue is seen by the next recv.
            let Ok(next) = queue.try_recv() else { break };
            self.deliver(&next).await?;
        }
        self.flush().await
    }

    async fn send(&mut self, frame: &ServerFrame) -> Result<(), End> {
        let text = serde_json::to_string(frame).map_err(|_| End::Close(1011, "internal error"))?;
        self.send_text(text.into()).await
    }

    /// Writes a queued event to the socket's buffer (the caller flushes); message events go
    /// out exactly once and in sequence per group, filling any gap from the database (a
    /// message whose publish lagged behind a later one has already committed: its sender's
    /// transaction held the group row first).
    async fn deliver(&mut self, outbound: &Outbound) -> Result<(), End> {
        if let Some((group_id, seq)) = outbound.position {
            match self.positions.get(&group_id).copied() {
                Some(last) if seq <= last => return Ok(()),
                Some(last) if seq > last + 1 => {
                    let missing = replay::messages_between(&self.state.db, group_id, last, seq)
                        .await
                        .map_err(End::store_failed)?;
                    for (missing_seq, frame) in missing {
                        self.feed_text(frame.into()).await?;
                        self.positions.insert(group_id, missing_seq);
                    }
                }
                _ => {}
            }
            self.positions.insert(group_id, seq);
        }
        self.feed_text(Utf8Bytes::from(outbound.frame.as_ref()))
            .await
    }

    async fn replay(&mut self, resume: Option<ResumeFrom>) -> Result<(), End> {
        let mut replayed = 0;
        let mut resync_groups = Vec::new();
        let limit = self.state.settings.replay_limit;
        for cursor in resume.map(|r| r.groups).unwrap_or_default() {
            let (group_id, from) = (cursor.group_id, cursor.last_seq);
            // Only groups the user is in; others are skipped without a word.
            let Some(&current) = self.positions.get(&group_id) else {
                continue;
            };
            if from >= current {
                continue;
            }
            let messages = replay::messages_after(&self.state.db, group_id, from.max(0), limit + 1)
                .await
                .map_err(End::store_failed)?;
            if messages.len() as i64 > limit {
                resync_groups.push(group_id);
                continue;
            }
            // Live events queued meanwhile are filtered by position; send from `from`.
            self.positions.insert(group_id, from);
            for (seq, frame) in messages {
                self.send_text(frame.into()).await?;
                self.positions.insert(group_id, seq);
                replayed += 1;
            }
            let last = self.positions.get(&group_id).copied().unwrap_or(from);
            self.positions.insert(group_id, last.max(current));
        }
        resync_groups.sort_unstable();
        self.send(&ServerFrame::Resumed {
            replayed,
            resync_groups,
        })
        .await
    }

    fn caller(&self, user_id: UserId) -> Caller<'_> {
        Caller {
            state: self.state,
            gateway: self.gateway,
            user_id,
            session_id: &self.session_id,
        }
    }

    /// Leaves this connection's call, if any, and tells the group.
    async fn voice_leave(&mut self, user_id: UserId) {
        if let Some(group_id) = self.voice.take() {
            calls::leave(&self.caller(user_id), group_id).await;
        }
    }

    /// Answers a frame that has no answer of its own when it succeeds: only a refusal.
    async fn answer(
        &mut self,
        done: Result<(), Refusal>,
        reference: Option<u64>,
    ) -> Result<(), End> {
        match done {
            Ok(()) => Ok(()),
            Err(refusal) => self.refuse(refusal, reference).await,
        }
    }

    /// Answers a refused frame.
    async fn refuse(&mut self, refusal: Refusal, reference: Option<u64>) -> Result<(), End> {
        self.send(&ServerFrame::Error {
            code: refusal.code.to_owned(),
            message: refusal.message,
            reference,
        })
        .await
    }

    async fn on_frame(&mut self, session: &Session, frame: ClientFrame) -> Result<(), End> {
        match frame {
            ClientFrame::Heartbeat => {
                // A live socket is use of its session: renew it, and notice expiry or
                // revocation within one heartbeat.
                if let Some(group_id) = self.voice {
                    if let Err(e) = self
                        .gateway
                        .voice
                        .renew(group_id, session.data.user_id, &self.session_id)
                        .await
                    {
                        tracing::warn!(error = %e, "voice renewal failed");
                    }
                }
                match self.state.sessions.authenticate(&session.token).await {
                    Ok(_) => {}
                    Err(ApiError::Unauthorized) => {
                        return Err(End::Close(close::SESSION_ENDED, "session ended"))
                    }
                    Err(e) => tracing::warn!(error = %e, "session check failed"),
                }
                self.send(&ServerFrame::HeartbeatAck).await
            }
            ClientFrame::VoiceJoin {
                group_id,
                muted,
                deafened,
                reference,
            } => {
                let user_id = session.data.user_id;
                if let Err(refusal) = limited(self.state, user_id, Action::VoiceJoin).await {
                    return self.refuse(refusal, reference).await;
                }
                if self.voice.is_some_and(|g| g != group_id) {
                    self.voice_leave(user_id).await;
                }
                let joined = calls::join(&self.caller(user_id), group_id, muted, deafened).await;
                match joined {
                    Ok((participants, resumed)) => {
                        self.voice = Some(group_id);
                        self.send(&ServerFrame::VoiceJoined {
                            group_id,
                            participants,
                            resumed,
                            reference,
                        })
                        .await
                    }
                    Err(refusal) => self.refuse(refusal, reference).await,
                }
            }
            ClientFrame::VoiceLeave => {
                self.voice_leave(session.data.user_id).await;
                Ok(())
            }
            ClientFrame::VoiceState {
                muted,
                deafened,
                reference,
            } => {
                let caller = self.caller(session.data.user_id);
                let done = calls::set_state(&caller, self.voice, muted, deafened).await;
                self.answer(done, reference).await
            }
            ClientFrame::VoiceSignal {
                group_id,
                to,
                signal,
                reference,
            } => {
                if let Err(refusal) =
                    limited(self.state, session.data.user_id, Action::VoiceSignal).await
                {
                    return self.refuse(refusal, reference).await;
                }
                let caller = self.caller(session.data.user_id);
                let done = calls::signal(&caller, self.voice, group_id, to, signal).await;
                self.answer(done, reference).await
            }
            ClientFrame::CallDecline {
                group_id,
                reference,
            } => {
                let done = calls::decline(&self.caller(session.data.user_id), group_id).await;
                self.answer(done, reference).await
            }
            ClientFrame::Typing {
                group_id,
                reference,
            } => {
                if let Err(refusal) =
                    limited(self.state, session.data.user_id, Action::Typing).await
                {
                    return self.refuse(refusal, reference).await;
                }
                let done = typing(self.state, session.data.user_id, group_id).await;
                self.answer(done, reference).await
            }
            ClientFrame::Identify { .. } => {
                Err(End::Close(close::INVALID_FRAME, "already identified"))
            }
        }
    }
}

async fn typing(state: &AppState, user_id: UserId, group_id: GroupId) -> Result<(), Refusal> {
    // Not a member: the same answer whether or not the group exists.
    let membership = groups::membership(&state.db, group_id, user_id).await?;
    if membership.is_dm {
        groups::ensure_dm_open(&state.db, group_id, user_id).await?;
    }
    let throttle: Option<String> = redis::cmd("SET")
        .arg(state.keys.typing(group_id, user_id))
        .arg(1)
        .arg("PX")
        .arg(TYPING_THROTTLE_MS)
        .arg("NX")
        .query_async(&mut state.redis.clone())
        .await
        .map_err(ApiError::from)?;
    // Repeated within the throttle window: still shown, nothing to send.
    if throttle.is_none() {
        return Ok(());
    }
    let others = sqlx::query_scalar!(
        "select user_id from group_members where group_id = $1 and user_id <> $2",
        group_id,
        user_id
    )
    .fetch_all(&state.db)
    .await
    .map_err(ApiError::from)?;
    let event = Event::TypingStarted {
        group_id,
        user_id,
        expires_in_ms: TYPING_SHOWN_MS,
    };
    state.events.publish(others, event).await;
    Ok(())
}

fn parse_frame<E>(msg: Option<Result<Message, E>>) -> Result<Option<ClientFrame>, End>
where
    E: std::error::Error + 'static,
{
    match msg {
        Some(Err(e)) if too_big(&e) => Err(End::Close(close::TOO_BIG, "frame too big")),
        None | Some(Err(_)) => Err(End::Gone),
        // serde reads a tagged enum from an array too (`["heartbeat"]`): frames are objects.
        Some(Ok(Message::Text(text))) if !text.as_str().trim_start().starts_with('{') => {
            Err(End::Close(close::INVALID_FRAME, "a frame is a JSON object"))
        }
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str())
            .map(Some)
            .map_err(|_| End::Close(close::INVALID_FRAME, "invalid frame")),
        Some(Ok(Message::Binary(_))) => Err(End::Close(
            close::INVALID_FRAME,
            "binary frames are not used",
        )),
        Some(Ok(Message::Close(_))) => Err(End::Gone),
        // Pings are answered by the WebSocket layer; they still count as life.
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(None),
    }
}

/// Counts one `action` of this user against its abuse limit. (A free function: a future
/// borrowing the connection would need the socket to be `Sync`.)
async fn limited(state: &AppState, user_id: UserId, action: Action) -> Result<(), Refusal> {
    rate_limit::limit(state, user_id, &[action])
        .await
        .map_err(Refusal::from)
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
