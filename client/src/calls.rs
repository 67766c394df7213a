//! Voice calls through a Sohbet server: [`Client::join_call`] (and [`Client::ring`],
//! [`Client::accept`], [`Client::decline`] for DMs) drives a [`voice::Call`] with the
//! gateway as its signaling channel.
//!
//! What the call does by itself: fetches the ICE servers (STUN, and TURN with time-limited
//! credentials), joins over the gateway and offers to everyone already in the call (those
//! who join later offer to us), resolves crossing offers by user id (the lower id's offer
//! wins), adds and removes peers as the call's voice state changes, resumes after a gateway
//! reconnect (within the server's grace period nobody notices; after it, it offers again),
//! leaves quietly when the user joins from another device, and derives speaking indicators
//! from the audio it receives. Everything it reports comes as [`CallEvent`]s, which are
//! `Serialize` so an application can forward them as they are.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use protocol::{
    gateway::{ClientFrame, Event, FrameRef, GroupId},
    voice::{IceServers, RingEnd, VoiceParticipant, VoiceSignal},
    UserId,
};
use serde::Serialize;
use tokio::{sync::mpsc, task::JoinHandle};
use voice::{
    audio::{Capture, Playout},
    dsp::SendSettings,
    Call, CallConfig, Signal, SignalMessage,
};

use crate::{
    gateway::{GatewayEvent, GatewaySender},
    rest::Client,
    ClientError,
};

/// How long the server may take to answer `voice_join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Speaking indicators and levels are refreshed this often: fast enough to follow words.
const SPEAKING_POLL: Duration = Duration::from_millis(100);
/// Per-peer link quality is reported this often.
const STATS_EVERY: Duration = Duration::from_secs(2);
/// A peer whose received level is above this is speaking (its encoder sends silence as
/// DTX, which plays at about -100 dBFS; quiet speech is around -40 dBFS).
const SPEAKING_DB: f32 = -50.0;
/// Speaking stays on this long after the level drops, so the indicator does not flicker
/// between syllables.
const SPEAKING_HOLD: Duration = Duration::from_millis(400);
/// Gateway events buffered for the call; signaling bursts (a dozen candidates per peer)
/// fit many times over.
const TAP_BUFFER: usize = 1024;
/// Application events buffered; a consumer this far behind loses the newest ones.
const EVENT_BUFFER: usize = 1024;

/// How to set up a call.
pub struct CallOptions {
    pub capture: Box<dyn Capture>,
    pub playout: Box<dyn Playout>,
    /// Engine settings; the server's ICE servers are added to `config.ice_servers`.
    pub config: CallConfig,
    /// Join muted / deafened.
    pub muted: bool,
    pub deafened: bool,
}

impl CallOptions {
    pub fn new(capture: Box<dyn Capture>, playout: Box<dyn Playout>) -> Self {
        Self {
            capture,
            playout,
            config: CallConfig::default(),
            muted: false,
            deafened: false,
        }
    }
}

/// One remote participant's link, for a "connection quality" hover.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct PeerQuality {
    pub user_id: UserId,
    pub rtt_ms: Option<f64>,
    /// Fraction of their packets we lost.
    pub loss: f64,
    /// Fraction of our packets they report lost.
    pub remote_loss: f64,
    pub jitter_ms: f64,
    pub jitter_buffer_ms: f64,
    pub mouth_to_ear_ms: f64,
    /// How media reaches this peer: `host` (directly), `srflx` (through NAT), `relay`
    /// (through TURN).
    pub route: Option<String>,
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum EndReason {
    /// [`CallHandle::leave`].
    Left,
    /// I joined this call from another device.
    Moved,
    /// The DM call I started was declined, missed, or (on the callee's side) cancelled.
    Ring { outcome: RingEnd },
    /// The server refused to let me (re)join.
    Refused { code: String, message: String },
    /// The gateway session ended (logged out, revoked).
    SessionEnded,
    /// The voice engine failed.
    Failed { message: String },
}

/// What happens in a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallEvent {
    /// Someone joined (or rejoined from another device).
    ParticipantJoined {
        participant: VoiceParticipant,
    },
    ParticipantLeft {
        user_id: UserId,
    },
    /// Muted or deafened changed.
    ParticipantUpdated {
        participant: VoiceParticipant,
    },
    /// Audio can flow with this participant.
    PeerConnected {
        user_id: UserId,
    },
    /// The media connection with this participant broke; it is being replaced or dropped.
    PeerDisconnected {
        user_id: UserId,
        reason: String,
    },
    /// Someone (`user_id` = me included) started or stopped speaking.
    Speaking {
        user_id: UserId,
        speaking: bool,
    },
    /// My microphone's level (dBFS), for a meter.
    InputLevel {
        level_db: f32,
    },
    Stats {
        peers: Vec<PeerQuality>,
    },
    /// The gateway connection dropped and came back; the call went on.
    Resumed {
        renegotiated: bool,
    },
    /// The server refused something (a signal to someone who left, a state change...).
    Refused {
        code: String,
        message: String,
    },
    Ended {
        reason: EndReason,
    },
}

enum Command {
    Mute(bool),
    Deafen(bool),
    PushToTalk(bool),
    Ptt(bool),
    Volume(UserId, f32),
    Input(Box<dyn Capture>),
    Output(Box<dyn Playout>),
    Send(SendSettings),
    Leave,
}

/// A call in progress. Dropping it leaves the call.
pub struct CallHandle {
    group_id: GroupId,
    commands: mpsc::UnboundedSender<Command>,
    task: Option<JoinHandle<()>>,
}

impl CallHandle {
    pub fn group_id(&self) -> GroupId {
        self.group_id
    }

    fn command(&self, c: Command) -> Result<(), ClientError> {
        self.commands.send(c).map_err(|_| ClientError::CallEnded)
    }

    /// Stops (or resumes) sending audio; the others are told.
    pub fn set_muted(&self, muted: bool) -> Result<(), ClientError> {
        self.command(Command::Mute(muted))
    }

    /// Stops (or resumes) playing audio, and sending it; the others are told.
    pub fn set_deafened(&self, deafened: bool) -> Result<(), ClientError> {
        self.command(Command::Deafen(deafened))
    }

    /// Push-to-talk mode: audio is sent only between [`Self::ptt_press`] and release.
    pub fn set_push_to_talk(&self, enabled: bool) -> Result<(), ClientError> {
        self.command(Command::PushToTalk(enabled))
    }

    pub fn ptt_press(&self) -> Result<(), ClientError> {
        self.command(Command::Ptt(true))
    }

    pub fn ptt_release(&self) -> Result<(), ClientError> {
        self.command(Command::Ptt(false))
    }

    /// One participant's playback volume (linear, 0–4).
    pub fn set_volume(&self, user_id: UserId, volume: f32) -> Result<(), ClientError> {
        self.command(Command::Volume(user_id, volume))
    }

    /// Switches the microphone.
    pub fn set_input(&self, capture: Box<dyn Capture>) -> Result<(), ClientError> {
        self.command(Command::Input(capture))
    }

    /// Switches the speaker.
    pub fn set_output(&self, playout: Box<dyn Playout>) -> Result<(), ClientError> {
        self.command(Command::Output(playout))
    }

    /// Changes the microphone's processing (echo cancellation, noise suppression, gain,
    /// gate) for the rest of the call.
    pub fn set_send_settings(&self, settings: SendSettings) -> Result<(), ClientError> {
        self.command(Command::Send(settings))
    }

    /// Leaves the call (bye to every peer, `voice_leave` to the server) and waits until it
    /// is over.
    pub async fn leave(mut self) {
        let _ = self.commands.send(Command::Leave);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Leave);
    }
}

impl Client {
    /// Joins the voice call of a group or DM. In a DM whose call is empty this rings the
    /// other person ([`Self::ring`] says so); in one that rings for me it answers
    /// ([`Self::accept`]). Returns once the server accepted: a refusal (`not_found`,
    /// `forbidden`, `call_full`) is [`ClientError::Refused`].
    pub async fn join_call(
        &self,
        gateway: &GatewaySender,
        group_id: GroupId,
        options: CallOptions,
    ) -> Result<(CallHandle, mpsc::Receiver<CallEvent>), ClientError> {
        let me = gateway.identity().ok_or(ClientError::NotConnected)?;
        tracing::debug!(group_id, "joining a call: fetching ICE servers");
        let ice = self.ice_servers().await?;
        tracing::debug!(
            group_id,
            servers = ice.ice_servers.len(),
            "joining a call: voice_join"
        );
        let mut config = options.config;
        config
            .ice_servers
            .extend(ice.ice_servers.into_iter().map(|s| voice::IceServer {
                urls: s.urls,
                username: s.username.unwrap_or_default(),
                credential: s.credential.unwrap_or_default(),
            }));
        let mut tap = gateway.tap(TAP_BUFFER);
        let participants =
            request_join(gateway, &mut tap, group_id, options.muted, options.deafened).await?;
        tracing::debug!(group_id, present = participants.len(), "joined a call");

        let (signals_in, signals_in_rx) = mpsc::channel(TAP_BUFFER);
        let (signals_out_tx, signals_out) = mpsc::channel(TAP_BUFFER);
        let (call, engine_events) = match Call::start(
            config,
            options.capture,
            options.playout,
            signals_in_rx,
            signals_out_tx,
        )
        .await
        {
            Ok(started) => started,
            Err(e) => {
                gateway.send(ClientFrame::VoiceLeave);
                return Err(ClientError::Voice(e.to_string()));
            }
        };
        call.set_muted(options.muted);
        call.set_deafened(options.deafened);
        let (events, events_rx) = mpsc::channel(EVENT_BUFFER);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            group_id,
            me: me.user_id,
            session_id: me.session_id,
            gateway: gateway.clone(),
            call: Some(call),
            signals_in,
            events,
            participants: HashMap::new(),
            offered: HashSet::new(),
            join_ref: None,
            muted: options.muted,
            deafened: options.deafened,
            speaking: HashMap::new(),
            input_level: f32::NAN,
        };
        let task =
            tokio::spawn(driver.run(participants, tap, signals_out, engine_events, commands_rx));
        Ok((
            CallHandle {
                group_id,
                commands,
                task: Some(task),
            },
            events_rx,
        ))
    }

    /// Calls the other member of a DM: joins its call, which rings them on every device.
    /// The call ends with [`EndReason::Ring`] if they decline or do not answer in time.
    pub async fn ring(
        &self,
        gateway: &GatewaySender,
        dm_id: GroupId,
        options: CallOptions,
    ) -> Result<(CallHandle, mpsc::Receiver<CallEvent>), ClientError> {
        self.join_call(gateway, dm_id, options).await
    }

    /// Answers a DM call ringing for me: joins it (the ringing stops on my other devices).
    pub async fn accept(
        &self,
        gateway: &GatewaySender,
        dm_id: GroupId,
        options: CallOptions,
    ) -> Result<(CallHandle, mpsc::Receiver<CallEvent>), ClientError> {
        self.join_call(gateway, dm_id, options).await
    }

    /// Declines a DM call ringing for me, on every device; the caller is told.
    pub async fn decline(
        &self,
        gateway: &GatewaySender,
        dm_id: GroupId,
    ) -> Result<(), ClientError> {
        let mut tap = gateway.tap(TAP_BUFFER);
        let reference = gateway.next_ref();
        gateway.send(ClientFrame::CallDecline {
            group_id: dm_id,
            reference: Some(reference),
        });
        let wait = async {
            while let Some(event) = tap.recv().await {
                match event {
                    GatewayEvent::Event(Event::CallRingEnded { group_id, .. })
                        if group_id == dm_id =>
                    {
                        return Ok(());
                    }
                    GatewayEvent::Refused {
                        code,
                        message,
                        reference: Some(r),
                    } if r == reference => return Err(ClientError::Refused { code, message }),
                    GatewayEvent::Closed { .. } => return Err(ClientError::NotConnected),
                    _ => {}
                }
            }
            Err(ClientError::NotConnected)
        };
        tokio::time::timeout(JOIN_TIMEOUT, wait)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// `GET /api/voice/ice-servers`.
    pub async fn ice_servers(&self) -> Result<IceServers, ClientError> {
        self.get("/api/voice/ice-servers").await
    }

    /// `GET /api/voice/missed-calls`.
    pub async fn missed_calls(&self) -> Result<protocol::voice::MissedCalls, ClientError> {
        self.get("/api/voice/missed-calls").await
    }
}

/// Sends `voice_join` and waits for its answer; sends it again if the gateway reconnects
/// meanwhile (a frame sent while it is down is lost).
async fn request_join(
    gateway: &GatewaySender,
    tap: &mut mpsc::Receiver<GatewayEvent>,
    group_id: GroupId,
    muted: bool,
    deafened: bool,
) -> Result<Vec<VoiceParticipant>, ClientError> {
    let send = || {
        let reference = gateway.next_ref();
        gateway.send(ClientFrame::VoiceJoin {
            group_id,
            muted,
            deafened,
            reference: Some(reference),
        });
        reference
    };
    let mut reference = send();
    let wait = async {
        while let Some(event) = tap.recv().await {
            match event {
                GatewayEvent::VoiceJoined {
                    participants,
                    reference: Some(r),
                    ..
                } if r == reference => return Ok(participants),
                GatewayEvent::Refused {
                    code,
                    message,
                    reference: Some(r),
                } if r == reference => return Err(ClientError::Refused { code, message }),
                GatewayEvent::Ready { .. } => reference = send(),
                GatewayEvent::Closed { .. } => return Err(ClientError::NotConnected),
                _ => {}
            }
        }
        Err(ClientError::NotConnected)
    };
    tokio::time::timeout(JOIN_TIMEOUT, wait)
        .await
        .map_err(|_| ClientError::Timeout)?
}

fn to_engine(signal: VoiceSignal) -> Signal {
    match signal {
        VoiceSignal::Offer { sdp } => Signal::Offer { sdp },
        VoiceSignal::Answer { sdp } => Signal::Answer { sdp },
        VoiceSignal::Candidate {
            candidate,
            sdp_mid,
            sdp_mline_index,
        } => Signal::Candidate {
            candidate,
            sdp_mid,
            sdp_mline_index,
        },
        VoiceSignal::Bye => Signal::Bye,
    }
}

fn to_wire(signal: Signal) -> VoiceSignal {
    match signal {
        Signal::Offer { sdp } => VoiceSignal::Offer { sdp },
        Signal::Answer { sdp } => VoiceSignal::Answer { sdp },
        Signal::Candidate {
            candidate,
            sdp_mid,
            sdp_mline_index,
        } => VoiceSignal::Candidate {
            candidate,
            sdp_mid,
            sdp_mline_index,
        },
        Signal::Bye => VoiceSignal::Bye,
    }
}

/// The task behind a [`CallHandle`].
struct Driver {
    group_id: GroupId,
    me: UserId,
    session_id: String,
    gateway: GatewaySender,
    /// `None` once the engine is shut down.
    call: Option<Call>,
    signals_in: mpsc::Sender<SignalMessage>,
    events: mpsc::Sender<CallEvent>,
    participants: HashMap<UserId, VoiceParticipant>,
    /// Peers I sent an offer to that has not been answered: a crossing offer from one of
    /// them is glare.
    offered: HashSet<UserId>,
    /// The `ref` of a re-join after a reconnect, while its answer is awaited.
    join_ref: Option<FrameRef>,
    muted: bool,
    deafened: bool,
    /// Each participant's speaking indicator (me included).
    speaking: HashMap<UserId, Speaking>,
    /// The input level last reported.
    input_level: f32,
}

struct Speaking {
    on: bool,
    last_loud: Instant,
}

impl Driver {
    fn emit(&self, event: CallEvent) {
        if self.events.try_send(event).is_err() {
            tracing::debug!("call event dropped: the application is not reading");
        }
    }

    async fn run(
        mut self,
        present: Vec<VoiceParticipant>,
        mut tap: mpsc::Receiver<GatewayEvent>,
        mut signals_out: mpsc::Receiver<SignalMessage>,
        mut engine_events: mpsc::Receiver<voice::CallEvent>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        self.offer_to(present).await;
        let mut poll = tokio::time::interval(SPEAKING_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_stats = Instant::now();
        let reason = loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Leave) => break EndReason::Left,
                    Some(command) => self.on_command(command),
                },
                out = signals_out.recv() => {
                    let Some(out) = out else { break EndReason::Failed { message: "the voice engine stopped".into() } };
                    self.send_signal(out);
                }
                event = engine_events.recv() => match event {
                    Some(event) => self.on_engine(event),
                    None => break EndReason::Failed { message: "the voice engine stopped".into() },
                },
                event = tap.recv() => {
                    let Some(event) = event else { break EndReason::SessionEnded };
                    if let Some(reason) = self.on_gateway(event).await {
                        break reason;
                    }
                }
                _ = poll.tick() => {
                    self.poll_levels();
                    if last_stats.elapsed() >= STATS_EVERY {
                        last_stats = Instant::now();
                        self.report_stats();
                    }
                }
            }
        };
        self.end(reason, signals_out).await;
    }

    /// Offers to each participant present (the joiner's part of the mesh).
    async fn offer_to(&mut self, present: Vec<VoiceParticipant>) {
        for p in present {
            if p.user_id == self.me {
                continue;
            }
            self.participants.insert(p.user_id, p);
            self.emit(CallEvent::ParticipantJoined { participant: p });
            self.offered.insert(p.user_id);
            if let Some(call) = &self.call {
                if let Err(e) = call.connect(&p.user_id.to_string()).await {
                    tracing::warn!(peer = p.user_id, error = %e, "offer failed");
                }
            }
        }
    }

    fn send_signal(&mut self, out: SignalMessage) {
        let Ok(to) = out.peer.parse::<UserId>() else {
            return;
        };
        self.gateway.send(ClientFrame::VoiceSignal {
            group_id: self.group_id,
            to,
            signal: to_wire(out.signal),
            reference: None,
        });
    }

    fn on_command(&mut self, command: Command) {
        let Some(call) = &self.call else { return };
        match command {
            Command::Mute(m) => {
                call.set_muted(m);
                self.muted = m;
                self.send_state();
            }
            Command::Deafen(d) => {
                call.set_deafened(d);
                self.deafened = d;
                self.send_state();
            }
            Command::PushToTalk(on) => call.set_push_to_talk(on),
            Command::Ptt(true) => call.ptt_press(),
            Command::Ptt(false) => call.ptt_release(),
            Command::Volume(user, v) => {
                if let Err(e) = call.set_peer_volume(&user.to_string(), v) {
                    tracing::debug!(error = %e, "volume of an unknown peer");
                }
            }
            Command::Input(capture) => {
                if let Err(e) = call.set_input(capture) {
                    self.emit(CallEvent::Refused {
                        code: "device".into(),
                        message: e.to_string(),
                    });
                }
            }
            Command::Output(playout) => {
                if let Err(e) = call.set_output(playout) {
                    self.emit(CallEvent::Refused {
                        code: "device".into(),
                        message: e.to_string(),
                    });
                }
            }
            Command::Send(settings) => call.set_send_settings(settings),
            Command::Leave => {}
        }
    }

    fn send_state(&self) {
        self.gateway.send(ClientFrame::VoiceState {
            muted: self.muted,
            deafened: self.deafened,
            reference: None,
        });
    }

    fn on_engine(&mut self, event: voice::CallEvent) {
        match event {
            voice::CallEvent::PeerConnected(peer) => {
                if let Ok(user_id) = peer.parse() {
                    self.emit(CallEvent::PeerConnected { user_id });
                }
            }
            voice::CallEvent::PeerLeft { peer, reason } => {
                if let Ok(user_id) = peer.parse() {
                    self.offered.remove(&user_id);
                    self.speaking.remove(&user_id);
                    self.emit(CallEvent::PeerDisconnected { user_id, reason });
                }
            }
            voice::CallEvent::SignalingError { peer, message } => {
                tracing::warn!(%peer, %message, "unusable signaling");
            }
        }
    }

    /// Handles a gateway event; `Some` ends the call.
    async fn on_gateway(&mut self, event: GatewayEvent) -> Option<EndReason> {
        match event {
            GatewayEvent::Event(event) => return self.on_event(event).await,
            GatewayEvent::Ready { .. } => {
                // Reconnected: join again. Within the grace period the server says
                // `resumed` and the peer connections, which never depended on the gateway,
                // simply go on.
                let reference = self.gateway.next_ref();
                self.join_ref = Some(reference);
                self.gateway.send(ClientFrame::VoiceJoin {
                    group_id: self.group_id,
                    muted: self.muted,
                    deafened: self.deafened,
                    reference: Some(reference),
                });
            }
            GatewayEvent::VoiceJoined {
                participants,
                resumed,
                reference,
                ..
            } if reference.is_some() && reference == self.join_ref => {
                self.join_ref = None;
                self.emit(CallEvent::Resumed {
                    renegotiated: !resumed,
                });
                if !resumed {
                    // The others saw me leave and dropped me: connect afresh.
                    self.offer_to(participants).await;
                }
            }
            GatewayEvent::Refused {
                code,
                message,
                reference,
            } => {
                if reference.is_some() && reference == self.join_ref {
                    return Some(EndReason::Refused { code, message });
                }
                self.emit(CallEvent::Refused { code, message });
            }
            GatewayEvent::Closed { .. } => return Some(EndReason::SessionEnded),
            _ => {}
        }
        None
    }

    async fn on_event(&mut self, event: Event) -> Option<EndReason> {
        match event {
            Event::VoiceSignal {
                group_id,
                from,
                signal,
            } if group_id == self.group_id => self.on_signal(from, signal).await,
            Event::VoiceStateUpdated {
                group_id,
                user_id,
                in_call,
                muted,
                deafened,
            } if group_id == self.group_id && user_id != self.me => {
                let participant = VoiceParticipant {
                    user_id,
                    muted,
                    deafened,
                };
                if !in_call {
                    if self.participants.remove(&user_id).is_some() {
                        self.emit(CallEvent::ParticipantLeft { user_id });
                    }
                    // Its peer connection goes at once, not after ICE notices.
                    self.offered.remove(&user_id);
                    self.deliver(user_id, Signal::Bye).await;
                } else if self.participants.insert(user_id, participant).is_some() {
                    self.emit(CallEvent::ParticipantUpdated { participant });
                } else {
                    self.emit(CallEvent::ParticipantJoined { participant });
                }
            }
            Event::VoiceMoved {
                group_id,
                session_id,
            } if group_id == self.group_id && session_id != self.session_id => {
                return Some(EndReason::Moved);
            }
            Event::CallRingEnded {
                group_id,
                caller_id,
                reason,
            } if group_id == self.group_id
                && caller_id == self.me
                && matches!(reason, RingEnd::Declined | RingEnd::Missed)
                && self.participants.is_empty() =>
            {
                return Some(EndReason::Ring { outcome: reason });
            }
            _ => {}
        }
        None
    }

    async fn on_signal(&mut self, from: UserId, signal: VoiceSignal) {
        match &signal {
            VoiceSignal::Offer { .. } if self.offered.contains(&from) => {
                // Glare: both offered. The lower user id's offer wins; the other side drops
                // its own and answers.
                if self.me < from {
                    tracing::debug!(peer = from, "crossing offer ignored: ours wins");
                    return;
                }
                self.offered.remove(&from);
            }
            VoiceSignal::Answer { .. } => {
                self.offered.remove(&from);
            }
            _ => {}
        }
        self.deliver(from, to_engine(signal)).await;
    }

    async fn deliver(&self, from: UserId, signal: Signal) {
        let msg = SignalMessage {
            peer: from.to_string(),
            signal,
        };
        if self.signals_in.send(msg).await.is_err() {
            tracing::debug!("signal for a stopped engine");
        }
    }

    fn poll_levels(&mut self) {
        let Some(call) = &self.call else { return };
        let now = Instant::now();
        let mut levels: Vec<(UserId, bool)> = call
            .stats()
            .iter()
            .filter_map(|s| Some((s.peer.parse().ok()?, s.level_db > SPEAKING_DB)))
            .collect();
        levels.push((self.me, call.is_speaking() && !self.muted && !self.deafened));
        // The meter moves in whole decibels; steady levels are not repeated.
        let level_db = call.input_level_db().round();
        if level_db != self.input_level {
            self.input_level = level_db;
            self.emit(CallEvent::InputLevel { level_db });
        }
        for (user_id, loud) in levels {
            let state = self.speaking.entry(user_id).or_insert(Speaking {
                on: false,
                last_loud: now,
            });
            let change = if loud {
                state.last_loud = now;
                !state.on
            } else {
                state.on && now.duration_since(state.last_loud) >= SPEAKING_HOLD
            };
            if change {
                state.on = !state.on;
                let speaking = state.on;
                self.emit(CallEvent::Speaking { user_id, speaking });
            }
        }
    }

    fn report_stats(&self) {
        let Some(call) = &self.call else { return };
        let peers = call
            .stats()
            .into_iter()
            .filter_map(|s| {
                Some(PeerQuality {
                    user_id: s.peer.parse().ok()?,
                    rtt_ms: s.rtt_ms,
                    loss: s.loss,
                    remote_loss: s.remote_loss,
                    jitter_ms: s.jitter_ms,
                    jitter_buffer_ms: s.jitter_buffer_ms,
                    mouth_to_ear_ms: s.mouth_to_ear_ms,
                    route: s.route,
                })
            })
            .collect();
        self.emit(CallEvent::Stats { peers });
    }

    async fn end(mut self, reason: EndReason, mut signals_out: mpsc::Receiver<SignalMessage>) {
        if let Some(call) = self.call.take() {
            if reason == EndReason::Moved {
                // The new device takes over these peers: no bye, which would reach them
                // after its offers and hang up on it.
                drop(call);
            } else {
                call.leave().await;
                // The byes the engine just queued.
                while let Ok(out) = signals_out.try_recv() {
                    self.send_signal(out);
                }
            }
        }
        if !matches!(reason, EndReason::Moved | EndReason::SessionEnded) {
            self.gateway.send(ClientFrame::VoiceLeave);
        }
        self.emit(CallEvent::Ended { reason });
    }
}
