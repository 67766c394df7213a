//! A connection's client frames after identify: heartbeat, typing, and the call frames
//! (handed to [`calls`]), each answered with an error frame when refused.

use axum::extract::ws::Message;
use futures::{Sink, Stream};
use protocol::{
    gateway::{close, ClientFrame, Event, GroupId, ServerFrame},
    UserId,
};

use super::{Conn, End};
use crate::{
    domain::groups,
    error::ApiError,
    gateway::calls::{self, Caller, Refusal},
    rate_limit::{self, Action},
    session::Session,
    state::AppState,
};

/// How long a typing indicator shows unless repeated; clients repeat every ~3 s.
const TYPING_SHOWN_MS: u64 = 6000;
/// At most one typing event per user and group in this window.
const TYPING_THROTTLE_MS: u64 = 3000;

impl<S, E> Conn<'_, S>
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    pub(super) fn caller(&self, user_id: UserId) -> Caller<'_> {
        Caller {
            state: self.state,
            gateway: self.gateway,
            user_id,
            session_id: &self.session_id,
        }
    }

    /// Leaves this connection's call, if any, and tells the group.
    pub(super) async fn voice_leave(&mut self, user_id: UserId) {
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

    pub(super) async fn on_frame(
        &mut self,
        session: &Session,
        frame: ClientFrame,
    ) -> Result<(), End> {
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

/// Counts one `action` of this user against its abuse limit. (A free function: a future
/// borrowing the connection would need the socket to be `Sync`.)
async fn limited(state: &AppState, user_id: UserId, action: Action) -> Result<(), Refusal> {
    rate_limit::limit(state, user_id, &[action])
        .await
        .map_err(Refusal::from)
}
