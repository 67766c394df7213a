//! The call frames of one gateway connection: join, leave, voice state, signaling relay,
//! ringing in DMs. Each refused frame is answered with a [`Refusal`] (an `error` frame),
//! never dropped in silence.

use std::time::Duration;

use protocol::{
    gateway::{Event, GroupId},
    voice::{refusal, RingEnd, VoiceParticipant, VoiceSignal},
    UserId,
};

use super::{
    voice::{self, Joined, Ring},
    Gateway,
};
use crate::{domain::groups, error::ApiError, state::AppState};

/// Why a frame was refused: becomes `{"op":"error","code":…,"message":…,"ref":…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::NotFound(_) => Self::new(refusal::NOT_FOUND, "group not found"),
            ApiError::Forbidden(why) => Self::new(refusal::FORBIDDEN, why),
            ApiError::RateLimited { retry_after_secs } => Self::new(
                refusal::RATE_LIMITED,
                format!("too many; retry in {retry_after_secs} s"),
            ),
            other => {
                tracing::warn!(error = ?other, "call frame failed");
                Self::new(
                    refusal::UNAVAILABLE,
                    "the service is temporarily unavailable",
                )
            }
        }
    }
}

/// Who sends the frames: one connection of one session.
pub struct Caller<'a> {
    pub state: &'a AppState,
    pub gateway: &'a Gateway,
    pub user_id: UserId,
    pub session_id: &'a str,
}

/// `voice_join`: checks membership (and, in a DM, that it is not read-only), joins, tells
/// the group, and rings or answers in a DM.
pub async fn join(
    c: &Caller<'_>,
    group_id: GroupId,
    muted: bool,
    deafened: bool,
) -> Result<(Vec<VoiceParticipant>, bool), Refusal> {
    let membership = groups::membership(&c.state.db, group_id, c.user_id).await?;
    if membership.is_dm {
        groups::ensure_dm_open(&c.state.db, group_id, c.user_id).await?;
    }
    let limit = c.state.settings.max_call_participants;
    let joined = c
        .gateway
        .voice
        .join(group_id, c.user_id, c.session_id, limit, muted, deafened)
        .await?;
    let Joined::In {
        resumed,
        moved,
        others,
    } = joined
    else {
        return Err(Refusal::new(
            refusal::CALL_FULL,
            format!("the call already has {limit} participants"),
        ));
    };
    if moved {
        let event = Event::VoiceMoved {
            group_id,
            session_id: c.session_id.to_owned(),
        };
        c.state.events.publish([c.user_id], event).await;
    }
    if !resumed {
        announce(c.state, group_id, c.user_id, true, muted, deafened).await;
    }
    if membership.is_dm && !resumed {
        ring_or_answer(c, group_id, others.is_empty()).await?;
    }
    Ok((others, resumed))
}

/// In a DM: answers the ring if it rings for me; otherwise rings the other member if I am
/// alone in the call.
async fn ring_or_answer(c: &Caller<'_>, group_id: GroupId, alone: bool) -> Result<(), Refusal> {
    let voice = &c.gateway.voice;
    if let Some(ring) = voice.ring(group_id).await? {
        if ring.callee_id == c.user_id {
            end_ring(c.state, voice, &ring, RingEnd::Answered).await;
        }
        return Ok(());
    }
    if !alone {
        return Ok(());
    }
    let callee = sqlx::query_scalar!(
        "select user_id from group_members where group_id = $1 and user_id <> $2 limit 1",
        group_id,
        c.user_id
    )
    .fetch_optional(&c.state.db)
    .await
    .map_err(ApiError::from)?;
    let Some(callee) = callee else {
        return Ok(());
    };
    let timeout = c.state.settings.ring_timeout();
    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    let Some(ring) = voice
        .start_ring(group_id, c.user_id, callee, timeout_ms)
        .await?
    else {
        return Ok(());
    };
    let event = Event::CallRinging {
        group_id,
        caller_id: ring.caller_id,
        expires_in_ms: timeout.as_millis() as u64,
    };
    c.state.events.publish([callee], event).await;
    // This instance ends the ring on time; every instance's upkeep is the fallback should
    // this one die meanwhile.
    let (state, voice) = (c.state.clone(), voice.clone());
    tokio::spawn(async move {
        tokio::time::sleep(timeout + Duration::from_millis(50)).await;
        expire_rings(&state, &voice).await;
    });
    Ok(())
}

/// Ends `ring` with `reason` if nobody ended it first, and tells both sides.
async fn end_ring(state: &AppState, voice: &voice::VoiceStore, ring: &Ring, reason: RingEnd) {
    match voice.claim_ring(ring).await {
        Ok(true) => ring_ended(state, ring, reason).await,
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "ring not ended"),
    }
}

async fn ring_ended(state: &AppState, ring: &Ring, reason: RingEnd) {
    if reason == RingEnd::Missed {
        let called_at = chrono::DateTime::from_timestamp_millis(ring.called_at_ms)
            .unwrap_or_else(chrono::Utc::now);
        let stored = sqlx::query!(
            "insert into missed_calls (group_id, caller_id, callee_id, called_at)
             select $1, $2, $3, $4
              where exists (select 1 from group_members where group_id = $1 and user_id = $3)",
            ring.group_id,
            ring.caller_id,
            ring.callee_id,
            called_at
        )
        .execute(&state.db)
        .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "missed call not recorded");
        }
    }
    let event = Event::CallRingEnded {
        group_id: ring.group_id,
        caller_id: ring.caller_id,
        reason,
    };
    state
        .events
        .publish([ring.caller_id, ring.callee_id], event)
        .await;
}

/// Ends every ring past its deadline as missed (called by timers and by the upkeep).
pub async fn expire_rings(state: &AppState, voice: &voice::VoiceStore) {
    match voice.expire_rings().await {
        Ok(rings) => {
            for ring in rings {
                ring_ended(state, &ring, RingEnd::Missed).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "ring expiry failed"),
    }
}

/// `call_decline`: only the callee of a ringing DM call.
pub async fn decline(c: &Caller<'_>, group_id: GroupId) -> Result<(), Refusal> {
    groups::membership(&c.state.db, group_id, c.user_id).await?;
    let voice = &c.gateway.voice;
    match voice.ring(group_id).await? {
        Some(ring) if ring.callee_id == c.user_id => {
            end_ring(c.state, voice, &ring, RingEnd::Declined).await;
            Ok(())
        }
        _ => Err(Refusal::new(
            refusal::NOT_RINGING,
            "no call is ringing for you here",
        )),
    }
}

/// Tells the group a participant's state.
async fn announce(
    state: &AppState,
    group_id: GroupId,
    user_id: UserId,
    in_call: bool,
    muted: bool,
    deafened: bool,
) {
    let event = Event::VoiceStateUpdated {
        group_id,
        user_id,
        in_call,
        muted,
        deafened,
    };
    state
        .events
        .publish_to_group(&state.db, group_id, event)
        .await;
}

/// Someone left a call (on purpose, or expired): tells the group, and a caller leaving a
/// DM call that still rings cancels the ring.
pub async fn gone(state: &AppState, voice: &voice::VoiceStore, group_id: GroupId, user_id: UserId) {
    announce(state, group_id, user_id, false, false, false).await;
    match voice.ring(group_id).await {
        Ok(Some(ring)) if ring.caller_id == user_id => {
            end_ring(state, voice, &ring, RingEnd::Cancelled).await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "ring not checked"),
    }
}

/// `voice_leave`, or the connection's call replaced by another.
pub async fn leave(c: &Caller<'_>, group_id: GroupId) {
    match c
        .gateway
        .voice
        .leave(group_id, c.user_id, c.session_id)
        .await
    {
        Ok(true) => gone(c.state, &c.gateway.voice, group_id, c.user_id).await,
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "voice leave failed"),
    }
}

/// The connection dropped while in a call: the participant lingers for the grace period.
pub async fn dropped(c: &Caller<'_>, group_id: GroupId) {
    let grace = i64::try_from(c.state.settings.voice_grace_ms).unwrap_or(i64::MAX);
    if let Err(e) = c
        .gateway
        .voice
        .linger(group_id, c.user_id, c.session_id, grace)
        .await
    {
        tracing::warn!(error = %e, "voice grace not set");
    }
}

/// `voice_state`: my flags in my current call.
pub async fn set_state(
    c: &Caller<'_>,
    group_id: Option<GroupId>,
    muted: bool,
    deafened: bool,
) -> Result<(), Refusal> {
    let not_in_call = || Refusal::new(refusal::NOT_IN_CALL, "you are not in a call");
    let group_id = group_id.ok_or_else(not_in_call)?;
    let recorded = c
        .gateway
        .voice
        .set_state(group_id, c.user_id, c.session_id, muted, deafened)
        .await?;
    if !recorded {
        return Err(not_in_call());
    }
    announce(c.state, group_id, c.user_id, true, muted, deafened).await;
    Ok(())
}

/// `voice_signal`: relayed only from this device, in the call, to another participant.
pub async fn signal(
    c: &Caller<'_>,
    current: Option<GroupId>,
    group_id: GroupId,
    to: UserId,
    signal: VoiceSignal,
) -> Result<(), Refusal> {
    signal
        .validate()
        .map_err(|why| Refusal::new(refusal::INVALID_SIGNAL, why))?;
    let not_in_call = || Refusal::new(refusal::NOT_IN_CALL, "you are not in this call");
    if current != Some(group_id) {
        return Err(not_in_call());
    }
    let members = c.gateway.voice.members(group_id).await?;
    let me = voice::member(c.user_id, c.session_id);
    if !members.contains(&me) {
        return Err(not_in_call());
    }
    let prefix = format!("{to}|");
    if to == c.user_id || !members.iter().any(|m| m.starts_with(&prefix)) {
        return Err(Refusal::new(
            refusal::TARGET_NOT_IN_CALL,
            "that user is not in this call",
        ));
    }
    let event = Event::VoiceSignal {
        group_id,
        from: c.user_id,
        signal,
    };
    c.state.events.publish([to], event).await;
    Ok(())
}
