//! A call: the local audio engine plus one peer connection per remote participant (mesh).
//!
//! [`Call::start`] takes the audio devices, a stream of incoming [`SignalMessage`]s and a
//! sink for outgoing ones, and returns the call and its [`CallEvent`]s. The joiner calls
//! [`Call::connect`] for each participant already present; everyone else answers the offers
//! that arrive. The audio engine (a 5 ms clock that captures, encodes and fans packets out,
//! and mixes the peers into the playout device) runs on a thread of its own, so it wakes on
//! time whatever the connections' tasks are doing on the runtime's workers; three tasks run
//! beside it: signaling, peer-state events, and a once-a-second statistics poll that feeds
//! the loss the receivers report back into the encoder's FEC.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::peer_connection::{
    RTCIceCandidateInit, RTCSessionDescription, RTCStatsReportEntry, StatsSelector,
};

use crate::audio::{Capture, Playout};
use crate::codec::{OpusEncoder, DEFAULT_BITRATE, MAX_BITRATE, MIN_BITRATE};
use crate::dsp::{upmix, MonoResampler, SendChain, SendSettings};
use crate::peer::{OutFrame, PeerEvent, PeerLink};
use crate::receive::Mixer;
use crate::signal::{PeerId, Signal, SignalMessage};
use crate::{
    lock, Result, VoiceError, FRAME_MS, FRAME_SAMPLES, PACKET_MS_CLEAN, PACKET_MS_LOSSY,
    SAMPLE_RATE,
};

/// A STUN or TURN server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:host:port` / `turn:host:port?transport=udp` URLs.
    pub urls: Vec<String>,
    /// TURN user name (empty for STUN).
    #[serde(default)]
    pub username: String,
    /// TURN credential (empty for STUN).
    #[serde(default)]
    pub credential: String,
}

/// Which ICE candidates may be used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IcePolicy {
    /// Host, server-reflexive and relay candidates.
    #[default]
    All,
    /// Only TURN relays: hides the user's address from peers.
    Relay,
}

/// How a call is set up.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// STUN/TURN servers (from the server's config when peers are behind NAT).
    pub ice_servers: Vec<IceServer>,
    /// ICE transport policy.
    pub ice_policy: IcePolicy,
    /// Local UDP addresses to bind. `0.0.0.0:0` covers every interface except loopback;
    /// tests use `127.0.0.1:0`.
    pub bind_addrs: Vec<String>,
    /// Opus bitrate in bits/s (16–128 kbps).
    pub bitrate: u32,
    /// Send-path DSP settings.
    pub send: SendSettings,
    /// Double the bitrate (up to 128 kbps) while receivers report 3% loss or more. Opus
    /// in-band FEC takes its bits from the main encoding, so at a fixed 32 kbps heavy FEC
    /// leaves every frame worse; voice bitrates are tiny next to any link that loses packets.
    pub loss_boost: bool,
    /// Discontinuous transmission: send nothing while silent. On by default; off for peers
    /// whose receivers do not fill the gaps (aiortc plays only the frames it gets).
    pub dtx: bool,
    /// Send RED (RFC 2198: each packet also carries a copy of the frame before it, and of
    /// the one before that at 10% loss or more) to a peer that negotiated it, from its first
    /// report of 3% loss or more until it has reported none for 5 s; a lost packet's frame
    /// then comes whole from a later one. Off: plain Opus always (RED is still accepted).
    pub red: bool,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            ice_policy: IcePolicy::All,
            bind_addrs: vec!["0.0.0.0:0".to_owned()],
            bitrate: DEFAULT_BITRATE,
            send: SendSettings::default(),
            dtx: true,
            loss_boost: true,
            red: true,
        }
    }
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// Media can flow to and from this peer.
    PeerConnected(PeerId),
    /// The peer left (bye) or its connection failed or closed.
    PeerLeft {
        /// Who.
        peer: PeerId,
        /// Why, for logs.
        reason: String,
    },
    /// A peer sent signaling we could not use; the call goes on without that step.
    SignalingError {
        /// Who sent it.
        peer: PeerId,
        /// What was wrong.
        message: String,
    },
}

/// What the call knows about one remote peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStats {
    /// Who.
    pub peer: PeerId,
    /// Round-trip time from RTCP (ms), once measured.
    pub rtt_ms: Option<f64>,
    /// Fraction of this peer's packets we never received.
    pub loss: f64,
    /// Fraction of our packets this peer reports lost (RTCP receiver reports).
    pub remote_loss: f64,
    /// Interarrival jitter (ms).
    pub jitter_ms: f64,
    /// Jitter-buffer target delay (ms).
    pub jitter_buffer_ms: f64,
    /// Mean time a frame waited in the jitter buffer, from its packet's arrival (for a frame
    /// rebuilt from a RED copy, its carrier's) to leaving for the mixer (ms): WebRTC's
    /// `jitterBufferDelay / jitterBufferEmittedCount`, so comparable with Chromium's.
    pub jitter_buffer_delay_ms: f64,
    /// The receive side's whole share of the delay (ms): that wait plus the audio we keep
    /// queued at the playout device (the hand-off; the device's own buffers excluded).
    pub receive_delay_ms: f64,
    /// Fraction of played frames that were concealed.
    pub concealed_fraction: f64,
    /// Frames rebuilt from FEC.
    pub fec_frames: u64,
    /// Packets that came as RED (the peer sends redundancy).
    pub red_received: u64,
    /// Lost packets whose frame was played from the RED copy in a later packet.
    pub red_frames: u64,
    /// Whether we currently send this peer RED (it negotiated RED and reports loss).
    pub sending_red: bool,
    /// Audio per packet we send now (ms): 20, or 10 while we send RED to any peer.
    pub sending_packet_ms: f64,
    /// Audio per packet in this peer's stream (ms), from the last one played.
    pub received_packet_ms: f64,
    /// Packets received.
    pub packets_received: u64,
    /// Packets that came too late to play.
    pub packets_late: u64,
    /// Level of this peer's last frame (dBFS), for a speaking indicator.
    pub level_db: f32,
    /// Estimated mouth-to-ear delay (ms): framing, codec look-ahead, half the RTT, jitter
    /// buffer and our playout queue (device buffers excluded).
    pub mouth_to_ear_ms: f64,
    /// Time from creating the connection to the first decoded audio (ms).
    pub first_audio_ms: Option<f64>,
    /// Type of our side of the ICE candidate pair carrying the media: `host`, `srflx`,
    /// `prflx` or `relay` (through TURN), once one is selected.
    pub route: Option<String>,
}

/// Live switches, read by the engine every tick.
struct Controls {
    muted: AtomicBool,
    deafened: AtomicBool,
    push_to_talk: AtomicBool,
    ptt_pressed: AtomicBool,
    speaking: AtomicBool,
    /// Input level in dBFS as `f32` bits.
    level_db: AtomicU32,
    bitrate: AtomicU32,
    /// Worst loss any receiver reports, as `f32` bits: drives FEC.
    expected_loss: AtomicU32,
    /// Worst loss a receiver without RED reports, as `f32` bits: drives the bitrate boost.
    unprotected_loss: AtomicU32,
    /// Audio kept queued at the playout device (ms), as `f32` bits, for the delay estimate.
    playout_ms: AtomicU32,
    send: Mutex<SendSettings>,
}

impl Controls {
    fn transmitting(&self) -> bool {
        !self.muted.load(Ordering::Relaxed)
            && !self.deafened.load(Ordering::Relaxed)
            && (!self.push_to_talk.load(Ordering::Relaxed)
                || self.ptt_pressed.load(Ordering::Relaxed))
    }
}

/// The devices and the DSP state tied to their formats.
struct Io {
    capture: Box<dyn Capture>,
    chain: SendChain,
    playout: Box<dyn Playout>,
    out_resampler: MonoResampler,
}

/// Network figures from the statistics poll.
#[derive(Debug, Clone, Default)]
struct NetStats {
    rtt_ms: Option<f64>,
    remote_loss: f64,
    route: Option<String>,
}

/// Incoming candidates kept for a peer whose offer has not arrived yet (bounded, since a
/// hostile peer could send them forever).
const MAX_PENDING_CANDIDATES: usize = 64;
/// The engine's clock: capture is polled and playout topped up every 5 ms, which bounds the
/// latency it adds to half that on average.
const TICK: Duration = Duration::from_millis(5);
/// Keep at least 10 ms queued at the playout device so it never runs dry between ticks.
const PLAYOUT_LOW_WATER_MS: f64 = 10.0;
/// Each time the device runs dry anyway (the engine was not scheduled in time: a busy
/// machine), keep this much more queued ...
const PLAYOUT_STEP_MS: f64 = 10.0;
/// ... up to this much: a machine that stalls the engine longer is past helping.
const PLAYOUT_MAX_MS: f64 = 100.0;
/// After this long without running dry, give the extra back ...
const PLAYOUT_CALM: Duration = Duration::from_secs(10);
/// ... this much per tick (1 ms a second), slowly enough for the jitter buffers to shed it by
/// skipping quiet frames.
const PLAYOUT_SHRINK_MS: f64 = 0.005;
/// The jitter buffers' clock follows the device's at most this much faster or slower per
/// 10 ms frame (10 %): time lost to a stall is given back gradually, and a deeper queue held
/// back for gradually.
const PLAYOUT_CATCH_UP: Duration = Duration::from_millis(1);
/// Drift from the device's timeline past which the pacer jumps instead of catching up.
const PLAYOUT_RESYNC: Duration = Duration::from_millis(100);
/// Most frames written per tick: refills the deepest queue after a stall without spinning
/// forever on a device that does not drain.
const MAX_FRAMES_PER_TICK: usize = 16;
/// Reported loss at which the bitrate doubles (see [`CallConfig::loss_boost`]) ...
const LOSS_BOOST_ON: f32 = 0.03;
/// ... and below which it stops: the gap keeps it from flapping around one threshold.
const LOSS_BOOST_OFF: f32 = 0.01;
/// Codec look-ahead of Opus in VoIP mode (ms), for the mouth-to-ear estimate.
const OPUS_LOOKAHEAD_MS: f64 = 6.5;
/// How long a `Disconnected` peer may take to come back before it counts as gone.
const DISCONNECT_GRACE: Duration = Duration::from_secs(3);
/// Events queued for the application; beyond this they are dropped (the app is not reading).
const EVENT_QUEUE: usize = 64;

struct Shared {
    config: CallConfig,
    controls: Controls,
    peers: Mutex<HashMap<PeerId, Arc<PeerLink>>>,
    net: Mutex<HashMap<PeerId, NetStats>>,
    pending: Mutex<HashMap<PeerId, Vec<Signal>>>,
    io: Mutex<Io>,
    signals_out: mpsc::Sender<SignalMessage>,
    events_out: mpsc::Sender<CallEvent>,
    peer_events: mpsc::Sender<PeerEvent>,
    /// Set when the call is dropped or left: the engine thread stops at its next tick.
    stopped: AtomicBool,
}

impl Shared {
    fn emit(&self, event: CallEvent) {
        if self.events_out.try_send(event).is_err() {
            tracing::debug!("call event dropped: application not reading events");
        }
    }

    fn link(&self, peer: &str) -> Option<Arc<PeerLink>> {
        lock(&self.peers).get(peer).cloned()
    }

    async fn new_link(&self, peer: &str) -> Result<Arc<PeerLink>> {
        let s = self;
        let link = Arc::new(
            PeerLink::new(
                peer.to_owned(),
                &s.config,
                s.signals_out.clone(),
                s.peer_events.clone(),
            )
            .await?,
        );
        let old = lock(&s.peers).insert(peer.to_owned(), Arc::clone(&link));
        if let Some(old) = old {
            // The peer rejoined (e.g. after a crash): its old connection is dead.
            let _ = old.pc.close().await;
        }
        Ok(link)
    }

    async fn send_signal(&self, peer: &str, signal: Signal) -> Result<()> {
        self.signals_out
            .send(SignalMessage {
                peer: peer.to_owned(),
                signal,
            })
            .await
            .map_err(|_| VoiceError::CallEnded)
    }

    async fn remove_peer(&self, peer: &str, reason: &str) {
        let link = lock(&self.peers).remove(peer);
        lock(&self.net).remove(peer);
        if let Some(link) = link {
            if let Err(e) = link.pc.close().await {
                tracing::debug!(%peer, error = %e, "closing peer connection");
            }
            self.emit(CallEvent::PeerLeft {
                peer: peer.to_owned(),
                reason: reason.to_owned(),
            });
        }
    }
}

/// A running call.
pub struct Call {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    /// The engine's thread; it ends at its next tick once `shared.stopped` is set.
    engine: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Call {
    /// Dropping a call without [`Call::leave`] still closes its connections (webrtc-rs keeps
    /// a dropped, unclosed connection alive), so peers see it end.
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
        let links: Vec<Arc<PeerLink>> = lock(&self.shared.peers).drain().map(|(_, l)| l).collect();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            for link in links {
                rt.spawn(async move {
                    let _ = link.pc.close().await;
                });
            }
        }
    }
}

fn signaling_error(peer: &str, reason: impl std::fmt::Display) -> VoiceError {
    VoiceError::Signaling {
        peer: peer.to_owned(),
        reason: reason.to_string(),
    }
}

impl Call {
    /// Starts the audio engine and the signaling loop. No peer is connected yet.
    pub async fn start(
        config: CallConfig,
        capture: Box<dyn Capture>,
        playout: Box<dyn Playout>,
        incoming: mpsc::Receiver<SignalMessage>,
        outgoing: mpsc::Sender<SignalMessage>,
    ) -> Result<(Self, mpsc::Receiver<CallEvent>)> {
        if !(MIN_BITRATE..=MAX_BITRATE).contains(&config.bitrate) {
            return Err(VoiceError::InvalidSetting(format!(
                "bitrate {}",
                config.bitrate
            )));
        }
        let io = Io {
            chain: SendChain::new(capture.format())?,
            out_resampler: MonoResampler::new(SAMPLE_RATE, playout.format().sample_rate)?,
            capture,
            playout,
        };
        let (events_out, events) = mpsc::channel(EVENT_QUEUE);
        let (peer_events, peer_events_rx) = mpsc::channel(EVENT_QUEUE);
        let shared = Arc::new(Shared {
            controls: Controls {
                muted: AtomicBool::new(false),
                deafened: AtomicBool::new(false),
                push_to_talk: AtomicBool::new(false),
                ptt_pressed: AtomicBool::new(false),
                speaking: AtomicBool::new(false),
                level_db: AtomicU32::new((-100.0f32).to_bits()),
                bitrate: AtomicU32::new(config.bitrate),
                expected_loss: AtomicU32::new(0.0f32.to_bits()),
                unprotected_loss: AtomicU32::new(0.0f32.to_bits()),
                playout_ms: AtomicU32::new((PLAYOUT_LOW_WATER_MS as f32).to_bits()),
                send: Mutex::new(config.send),
            },
            config,
            peers: Mutex::new(HashMap::new()),
            net: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            io: Mutex::new(io),
            signals_out: outgoing,
            events_out,
            peer_events,
            stopped: AtomicBool::new(false),
        });
        let encoder = OpusEncoder::new(shared.config.bitrate, shared.config.dtx)?;
        let engine = Arc::clone(&shared);
        let engine = std::thread::Builder::new()
            .name("sohbet-audio".to_owned())
            .spawn(move || run_engine(&engine, encoder))
            .map_err(|e| VoiceError::Device(format!("starting the audio thread: {e}")))?;
        let tasks = vec![
            tokio::spawn(run_signaling(Arc::clone(&shared), incoming)),
            tokio::spawn(run_peer_events(Arc::clone(&shared), peer_events_rx)),
            tokio::spawn(run_stats(Arc::clone(&shared))),
        ];
        Ok((
            Self {
                shared,
                tasks,
                engine: Some(engine),
            },
            events,
        ))
    }

    /// Opens a connection to `peer` and sends it an offer (the joiner does this for each
    /// participant already in the call).
    #[tracing::instrument(skip(self))]
    pub async fn connect(&self, peer: &str) -> Result<()> {
        let link = self.shared.new_link(peer).await?;
        let offer = link.pc.create_offer(None).await?;
        link.pc.set_local_description(offer.clone()).await?;
        self.shared
            .send_signal(peer, Signal::Offer { sdp: offer.sdp })
            .await
    }

    /// Applies one incoming signaling message. Anything wrong with what the peer sent is a
    /// [`VoiceError::Signaling`], never a panic.
    pub async fn handle_signal(&self, msg: SignalMessage) -> Result<()> {
        handle_signal(&self.shared, msg).await
    }

    /// Leaves the call: says bye to every peer and closes every connection.
    pub async fn leave(mut self) {
        let peers: Vec<PeerId> = lock(&self.shared.peers).keys().cloned().collect();
        for peer in peers {
            let _ = self.shared.send_signal(&peer, Signal::Bye).await;
            self.shared.remove_peer(&peer, "left").await;
        }
        self.shared.stopped.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            t.abort();
        }
        // The engine ends at its next tick: when this returns, it no longer plays or captures.
        if let Some(engine) = self.engine.take() {
            if !matches!(
                tokio::task::spawn_blocking(move || engine.join()).await,
                Ok(Ok(()))
            ) {
                tracing::warn!("the audio engine's thread panicked");
            }
        }
    }

    /// Stops sending audio (the speaking indicator still works, for "you are muted" hints).
    pub fn set_muted(&self, muted: bool) {
        self.shared.controls.muted.store(muted, Ordering::Relaxed);
    }

    /// Stops playing audio, and sending it too (deafened users are muted).
    pub fn set_deafened(&self, deafened: bool) {
        self.shared
            .controls
            .deafened
            .store(deafened, Ordering::Relaxed);
    }

    /// Push-to-talk mode: send only while the key is held.
    pub fn set_push_to_talk(&self, enabled: bool) {
        self.shared
            .controls
            .push_to_talk
            .store(enabled, Ordering::Relaxed);
    }

    /// The push-to-talk key went down.
    pub fn ptt_press(&self) {
        self.shared
            .controls
            .ptt_pressed
            .store(true, Ordering::Relaxed);
    }

    /// The push-to-talk key came up.
    pub fn ptt_release(&self) {
        self.shared
            .controls
            .ptt_pressed
            .store(false, Ordering::Relaxed);
    }

    /// Sets one peer's playback volume (linear, 0–4).
    pub fn set_peer_volume(&self, peer: &str, volume: f32) -> Result<()> {
        let link = self
            .shared
            .link(peer)
            .ok_or_else(|| VoiceError::InvalidSetting(format!("no peer {peer}")))?;
        lock(&link.receiver).volume = volume.clamp(0.0, 4.0);
        Ok(())
    }

    /// Changes the Opus bitrate mid-call.
    pub fn set_bitrate(&self, bitrate: u32) -> Result<()> {
        if !(MIN_BITRATE..=MAX_BITRATE).contains(&bitrate) {
            return Err(VoiceError::InvalidSetting(format!("bitrate {bitrate}")));
        }
        self.shared
            .controls
            .bitrate
            .store(bitrate, Ordering::Relaxed);
        Ok(())
    }

    /// Changes echo cancellation, noise suppression, gain, gate or input gain mid-call.
    pub fn set_send_settings(&self, settings: SendSettings) {
        *lock(&self.shared.controls.send) = settings;
    }

    /// Switches the microphone mid-call.
    pub fn set_input(&self, capture: Box<dyn Capture>) -> Result<()> {
        let chain = SendChain::new(capture.format())?;
        let mut io = lock(&self.shared.io);
        io.capture = capture;
        io.chain = chain;
        Ok(())
    }

    /// Switches the speaker mid-call.
    pub fn set_output(&self, playout: Box<dyn Playout>) -> Result<()> {
        let resampler = MonoResampler::new(SAMPLE_RATE, playout.format().sample_rate)?;
        let mut io = lock(&self.shared.io);
        io.playout = playout;
        io.out_resampler = resampler;
        // Another room, another delay: the echo path is learnt anew.
        io.chain.reset_echo();
        Ok(())
    }

    /// Input level (dBFS) of the last captured frame, for a meter.
    pub fn input_level_db(&self) -> f32 {
        f32::from_bits(self.shared.controls.level_db.load(Ordering::Relaxed))
    }

    /// Whether the local user is speaking (voice activity).
    pub fn is_speaking(&self) -> bool {
        self.shared.controls.speaking.load(Ordering::Relaxed)
    }

    /// The peers currently in the call.
    pub fn peers(&self) -> Vec<PeerId> {
        lock(&self.shared.peers).keys().cloned().collect()
    }

    /// Per-peer statistics.
    pub fn stats(&self) -> Vec<PeerStats> {
        let links: Vec<Arc<PeerLink>> = lock(&self.shared.peers).values().cloned().collect();
        let net = lock(&self.shared.net).clone();
        let packet_ms = FRAME_MS * packet_frames(&links) as f64;
        links
            .iter()
            .map(|link| {
                let rx = lock(&link.receiver);
                let js = rx.stats();
                let n = net.get(&link.id).cloned().unwrap_or_default();
                let played = js.played.max(1) as f64;
                // Every packet the sequence numbers account for, padding and late ones included.
                let expected = (js.received + js.late + js.padding + js.lost).max(1) as f64;
                let playout_ms = f64::from(f32::from_bits(
                    self.shared.controls.playout_ms.load(Ordering::Relaxed),
                ));
                let mouth_to_ear = packet_ms
                    + OPUS_LOOKAHEAD_MS
                    + TICK.as_secs_f64() * 500.0
                    + n.rtt_ms.unwrap_or(0.0) / 2.0
                    + js.target_ms
                    + playout_ms;
                PeerStats {
                    peer: link.id.clone(),
                    rtt_ms: n.rtt_ms,
                    loss: js.lost as f64 / expected,
                    remote_loss: n.remote_loss,
                    jitter_ms: js.jitter_ms,
                    jitter_buffer_ms: js.target_ms,
                    jitter_buffer_delay_ms: js.delay_ms,
                    receive_delay_ms: js.delay_ms + playout_ms,
                    concealed_fraction: js.concealed as f64 / played,
                    fec_frames: js.fec,
                    red_received: rx.red_packets(),
                    red_frames: js.red,
                    sending_red: link.red_negotiated()
                        && link.red_distance.load(Ordering::Relaxed) > 0,
                    sending_packet_ms: packet_ms,
                    received_packet_ms: js.packet_ms,
                    packets_received: js.received,
                    packets_late: js.late,
                    level_db: rx.level_db(),
                    mouth_to_ear_ms: mouth_to_ear,
                    first_audio_ms: rx
                        .first_audio_at()
                        .map(|t| t.duration_since(link.created).as_secs_f64() * 1000.0),
                    route: n.route.clone(),
                }
            })
            .collect()
    }
}

async fn handle_signal(shared: &Shared, msg: SignalMessage) -> Result<()> {
    let peer = msg.peer.as_str();
    match msg.signal {
        Signal::Offer { sdp } => {
            let desc = RTCSessionDescription::offer(sdp).map_err(|e| signaling_error(peer, e))?;
            let link = shared.new_link(peer).await?;
            if let Err(e) = link.pc.set_remote_description(desc).await {
                lock(&shared.peers).remove(peer);
                let _ = link.pc.close().await;
                return Err(signaling_error(peer, e));
            }
            let answer = link.pc.create_answer(None).await?;
            link.pc.set_local_description(answer.clone()).await?;
            shared
                .send_signal(peer, Signal::Answer { sdp: answer.sdp })
                .await?;
            flush_candidates(shared, peer).await
        }
        Signal::Answer { sdp } => {
            let link = shared
                .link(peer)
                .ok_or_else(|| signaling_error(peer, "answer without an offer"))?;
            let desc = RTCSessionDescription::answer(sdp).map_err(|e| signaling_error(peer, e))?;
            link.pc
                .set_remote_description(desc)
                .await
                .map_err(|e| signaling_error(peer, e))?;
            flush_candidates(shared, peer).await
        }
        candidate @ Signal::Candidate { .. } => {
            let ready = match shared.link(peer) {
                Some(link) => link.pc.remote_description().await.is_some(),
                None => false,
            };
            if ready {
                add_candidate(shared, peer, candidate).await
            } else {
                let mut pending = lock(&shared.pending);
                let list = pending.entry(peer.to_owned()).or_default();
                if list.len() >= MAX_PENDING_CANDIDATES {
                    return Err(signaling_error(peer, "too many early candidates"));
                }
                list.push(candidate);
                Ok(())
            }
        }
        Signal::Bye => {
            lock(&shared.pending).remove(peer);
            shared.remove_peer(peer, "bye").await;
            Ok(())
        }
    }
}

async fn flush_candidates(shared: &Shared, peer: &str) -> Result<()> {
    let early = lock(&shared.pending).remove(peer).unwrap_or_default();
    for c in early {
        add_candidate(shared, peer, c).await?;
    }
    Ok(())
}

async fn add_candidate(shared: &Shared, peer: &str, signal: Signal) -> Result<()> {
    let Signal::Candidate {
        candidate,
        sdp_mid,
        sdp_mline_index,
    } = signal
    else {
        return Ok(());
    };
    let link = shared
        .link(peer)
        .ok_or_else(|| signaling_error(peer, "candidate for an unknown peer"))?;
    link.pc
        .add_ice_candidate(RTCIceCandidateInit {
            candidate,
            sdp_mid,
            sdp_mline_index,
            ..Default::default()
        })
        .await
        .map_err(|e| signaling_error(peer, e))
}

/// Applies incoming signaling in order; a bad message is reported, not fatal.
async fn run_signaling(shared: Arc<Shared>, mut incoming: mpsc::Receiver<SignalMessage>) {
    while let Some(msg) = incoming.recv().await {
        let peer = msg.peer.clone();
        if let Err(e) = handle_signal(&shared, msg).await {
            tracing::warn!(%peer, error = %e, "signaling message rejected");
            shared.emit(CallEvent::SignalingError {
                peer,
                message: e.to_string(),
            });
        }
    }
}

async fn run_peer_events(shared: Arc<Shared>, mut events: mpsc::Receiver<PeerEvent>) {
    let mut disconnected: HashMap<PeerId, Instant> = HashMap::new();
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(PeerEvent::Connected(peer)) => {
                    disconnected.remove(&peer);
                    shared.emit(CallEvent::PeerConnected(peer));
                }
                Some(PeerEvent::Disconnected(peer)) => {
                    disconnected.entry(peer).or_insert_with(Instant::now);
                }
                Some(PeerEvent::Gone(peer, reason)) => {
                    disconnected.remove(&peer);
                    shared.remove_peer(&peer, &reason).await;
                }
                None => return,
            },
            _ = check.tick() => {
                let expired: Vec<PeerId> = disconnected
                    .iter()
                    .filter(|(_, since)| since.elapsed() > DISCONNECT_GRACE)
                    .map(|(p, _)| p.clone())
                    .collect();
                for peer in expired {
                    disconnected.remove(&peer);
                    shared.remove_peer(&peer, "connection lost").await;
                }
            }
        }
    }
}

/// Whether the bitrate boost, `on` now, should be on at `loss`.
fn loss_response(on: bool, loss: f32) -> bool {
    if loss >= LOSS_BOOST_ON {
        true
    } else if loss < LOSS_BOOST_OFF {
        false
    } else {
        on
    }
}

/// Polls RTCP-derived figures once a second and feeds the worst reported loss to FEC and the
/// bitrate boost (RED follows each peer's reports in its send loop).
async fn run_stats(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let links: Vec<Arc<PeerLink>> = lock(&shared.peers).values().cloned().collect();
        let mut worst_loss = 0.0f64;
        // Worst loss among peers not protected by RED: only they need the bitrate boost
        // (RED already doubles what a lossy peer gets).
        let mut worst_unprotected = 0.0f64;
        for link in links {
            let report = link.pc.get_stats(Instant::now(), StatsSelector::None).await;
            let mut net = NetStats {
                remote_loss: f64::from(link.reported_loss.take()),
                ..NetStats::default()
            };
            // The pair carrying media: the transport's selected pair when it names one, else
            // the busiest (webrtc-rs keeps figures only for the pair in use).
            let selected_pair = report.iter().find_map(|e| match e {
                RTCStatsReportEntry::Transport(t) if !t.selected_candidate_pair_id.is_empty() => {
                    Some(t.selected_candidate_pair_id.clone())
                }
                _ => None,
            });
            let pairs = || {
                report.iter().filter_map(|e| match e {
                    RTCStatsReportEntry::IceCandidatePair(p) => Some(p),
                    _ => None,
                })
            };
            let busiest = || {
                pairs()
                    .filter(|p| p.bytes_sent + p.bytes_received + p.responses_received > 0)
                    .max_by_key(|p| (p.bytes_sent + p.bytes_received, p.responses_received))
            };
            let selected = selected_pair
                .and_then(|id| pairs().find(|p| p.stats.id == id))
                .or_else(busiest)
                .map(|p| p.local_candidate_id.clone());
            // Local candidates' stats ids carry a prefix the pair's reference lacks.
            net.route = selected.and_then(|id| {
                report.iter().find_map(|e| match e {
                    RTCStatsReportEntry::LocalCandidate(c)
                        if c.stats.id == id || c.stats.id.ends_with(&format!("_{id}")) =>
                    {
                        Some(c.candidate_type.to_string())
                    }
                    _ => None,
                })
            });
            for entry in report.iter() {
                match entry {
                    RTCStatsReportEntry::RemoteInboundRtp(r)
                        if r.round_trip_time_measurements > 0 =>
                    {
                        net.rtt_ms = Some(r.round_trip_time * 1000.0);
                    }
                    RTCStatsReportEntry::IceCandidatePair(p)
                        if net.rtt_ms.is_none() && p.current_round_trip_time > 0.0 =>
                    {
                        net.rtt_ms = Some(p.current_round_trip_time * 1000.0);
                    }
                    _ => {}
                }
            }
            // The send loop chooses RED packet by packet from the same reports.
            let depth = link.red_distance.load(Ordering::Relaxed);
            if depth > 0 && link.red_negotiated() {
                worst_loss = worst_loss.max(fec_loss(net.remote_loss, depth));
            } else {
                worst_loss = worst_loss.max(net.remote_loss);
                worst_unprotected = worst_unprotected.max(net.remote_loss);
            }
            lock(&shared.net).insert(link.id.clone(), net);
        }
        shared
            .controls
            .expected_loss
            .store((worst_loss as f32).to_bits(), Ordering::Relaxed);
        shared
            .controls
            .unprotected_loss
            .store((worst_unprotected as f32).to_bits(), Ordering::Relaxed);
    }
}

/// The loss Opus's in-band FEC should plan for when a peer reporting `loss` gets `depth`
/// redundant copies (RED) in each packet: what the copies leave, a packet lost with the
/// `depth` after it (random loss). The next packet's FEC rebuilds the same frame its RED copy
/// does, so FEC planned for the whole loss only takes bits from the frames themselves
/// (`VOICE_BENCH_ONLY=codec`, ideal RED, two copies, 20 % loss: PESQ-WB 3.85 planned for
/// 20 %, 3.95 for the 0.8 % left).
fn fec_loss(loss: f64, depth: u8) -> f64 {
    loss.powi(i32::from(depth) + 1)
}

/// Paces playout by the device: how much to keep queued, and the instant each frame is due.
///
/// A frame is due when the device will reach it, less the queue kept: `now + queued -
/// headroom`, which is `now` while the engine keeps up. After a stall the engine writes
/// several frames at once, and these must reach the jitter buffers as consecutive slots, not
/// as frames asked for early (filled with concealment) and then late (skipped: a phase jump
/// in every frame). When the device ran dry anyway, the queue kept grows, so a machine too
/// busy to run the engine every few milliseconds stops breaking the audio into pieces, and
/// the time lost is given back at most 2 ms per frame, which the jitter buffers follow by
/// skipping quiet frames rather than words.
struct PlayoutPacer {
    last_due: Option<Instant>,
    headroom_ms: f64,
    underruns: u64,
    calm_since: Instant,
}

impl PlayoutPacer {
    fn new(underruns: u64) -> Self {
        Self {
            last_due: None,
            headroom_ms: PLAYOUT_LOW_WATER_MS,
            underruns,
            calm_since: Instant::now(),
        }
    }

    /// Takes the device's underrun count once per tick.
    fn observe(&mut self, underruns: u64, now: Instant) {
        if underruns > self.underruns {
            self.headroom_ms = (self.headroom_ms + PLAYOUT_STEP_MS).min(PLAYOUT_MAX_MS);
            tracing::debug!(headroom_ms = self.headroom_ms, "playout device ran dry");
            self.calm_since = now;
        } else if now.duration_since(self.calm_since) > PLAYOUT_CALM {
            self.headroom_ms = (self.headroom_ms - PLAYOUT_SHRINK_MS).max(PLAYOUT_LOW_WATER_MS);
        }
        // A new device counts from zero.
        self.underruns = underruns;
    }

    /// Frames to keep queued at a device of `rate` Hz.
    fn low_water(&self, rate: u32) -> usize {
        (f64::from(rate) * self.headroom_ms / 1000.0) as usize
    }

    /// The instant the jitter buffers should play the next frame at, `queued` being what the
    /// device still has to play before it.
    fn due(&mut self, now: Instant, queued: Duration) -> Instant {
        let headroom = Duration::from_secs_f64(self.headroom_ms / 1000.0);
        let device = (now + queued).checked_sub(headroom).unwrap_or(now);
        let frame = Duration::from_secs_f64(crate::FRAME_MS / 1000.0);
        let due = match self.last_due {
            // Far off the device's timeline (the engine stalled, or played with nobody to
            // hear for a while): jump to it rather than creep back 2 ms per frame for seconds.
            Some(prev)
                if device > prev + frame + PLAYOUT_RESYNC
                    || device + PLAYOUT_RESYNC < prev + frame =>
            {
                device
            }
            Some(prev) => device.clamp(
                prev + frame - PLAYOUT_CATCH_UP,
                prev + frame + PLAYOUT_CATCH_UP,
            ),
            None => device,
        };
        self.last_due = Some(due);
        due
    }
}

/// The engine's clock, on the engine's own thread: sleeps until each tick; ticks missed while
/// the thread was not scheduled are skipped rather than run back to back.
struct Ticker {
    next: Instant,
    period: Duration,
}

impl Ticker {
    fn new(period: Duration) -> Self {
        Self {
            next: Instant::now(),
            period,
        }
    }

    fn tick(&mut self) {
        if let Some(wait) = self.next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        self.schedule(Instant::now());
    }

    /// Sets the next tick after one that ran at `now`: a period on, or the first tick of the
    /// schedule still ahead if the thread woke so late that it missed some.
    fn schedule(&mut self, now: Instant) {
        self.next += self.period;
        if self.next < now {
            let missed = (now - self.next).as_nanos() / self.period.as_nanos().max(1) + 1;
            self.next += self.period * u32::try_from(missed).unwrap_or(u32::MAX);
        }
    }
}

/// Engine frames per packet now: one (10 ms) while RED is on towards any peer, whose loss
/// reports asked for it, two (20 ms) otherwise. One stream goes to every peer, so the peer
/// with the worst network decides.
fn packet_frames(links: &[Arc<PeerLink>]) -> usize {
    let lossy = links
        .iter()
        .any(|l| l.red_distance.load(Ordering::Relaxed) > 0);
    let ms = if lossy {
        PACKET_MS_LOSSY
    } else {
        PACKET_MS_CLEAN
    };
    (ms / FRAME_MS) as usize
}

/// Gathers the engine's 10 ms frames into Opus packets of one or more frames.
#[derive(Default)]
struct Packetizer {
    /// Frames waiting for the rest of their packet.
    pending: Vec<f32>,
    /// Index of the first frame in `pending`.
    pending_index: u64,
    /// Index of the frame after the last packet sent: a packet that does not start there
    /// starts a talk spurt (marker bit).
    sent_until: Option<u64>,
}

impl Packetizer {
    /// Takes frame `index` and, once `frames_per_packet` frames (or more, when the packet
    /// length just shrank) are gathered, encodes them with `encode` (`None`: DTX, nothing to
    /// send) into `out`.
    fn push(
        &mut self,
        frame: &[f32],
        index: u64,
        frames_per_packet: usize,
        out: &mut Vec<OutFrame>,
        encode: impl FnOnce(&[f32]) -> Option<bytes::Bytes>,
    ) {
        let gathered = self.pending.len() / FRAME_SAMPLES;
        if gathered > 0 && self.pending_index + gathered as u64 != index {
            // Frames were skipped (not transmitting): what is pending belongs to the past.
            self.pending.clear();
        }
        if self.pending.is_empty() {
            self.pending_index = index;
        }
        self.pending.extend_from_slice(frame);
        let frames = self.pending.len() / FRAME_SAMPLES;
        if frames < frames_per_packet.max(1) {
            return;
        }
        if let Some(payload) = encode(&self.pending) {
            out.push(OutFrame {
                payload,
                frame_index: self.pending_index,
                frames: frames as u64,
                marker: self.sent_until != Some(self.pending_index),
            });
            self.sent_until = Some(self.pending_index + frames as u64);
        }
        self.pending.clear();
    }

    /// Drops what is pending (transmission stopped: mute, push-to-talk released).
    fn reset(&mut self) {
        self.pending.clear();
    }
}

/// The audio engine: capture → DSP → Opus → peers, and peers → jitter buffers → mix → playout.
fn run_engine(shared: &Shared, mut encoder: OpusEncoder) {
    let mut ticker = Ticker::new(TICK);
    let controls = &shared.controls;
    let mut captured = Vec::with_capacity(SAMPLE_RATE as usize / 10);
    let mut encoded: Vec<OutFrame> = Vec::with_capacity(4);
    let mut frame_index: u64 = 0;
    let mut packetizer = Packetizer::default();
    let mut bitrate = shared.config.bitrate;
    let mut boosted = false;
    let mut mixer = Mixer::default();
    let mut mono = Vec::with_capacity(SAMPLE_RATE as usize / 25);
    let mut device = Vec::with_capacity(SAMPLE_RATE as usize / 10);
    let mut pacer = PlayoutPacer::new(lock(&shared.io).playout.underruns());
    while !shared.stopped.load(Ordering::Relaxed) {
        ticker.tick();
        let loss = f32::from_bits(controls.expected_loss.load(Ordering::Relaxed));
        let unprotected = f32::from_bits(controls.unprotected_loss.load(Ordering::Relaxed));
        boosted = shared.config.loss_boost && loss_response(boosted, unprotected);
        let configured = controls.bitrate.load(Ordering::Relaxed);
        let wanted_bitrate = if boosted {
            (configured * 2).min(MAX_BITRATE)
        } else {
            configured
        };
        if wanted_bitrate != bitrate && encoder.set_bitrate(wanted_bitrate).is_ok() {
            bitrate = wanted_bitrate;
        }
        if let Err(e) = encoder.set_expected_loss(loss) {
            tracing::warn!(error = %e, "setting expected loss");
        }
        let settings = *lock(&controls.send);
        let transmitting = controls.transmitting();
        let mut io = lock(&shared.io);
        let io = &mut *io;

        // Send path.
        let links: Vec<Arc<PeerLink>> = lock(&shared.peers).values().cloned().collect();
        let frames_per_packet = packet_frames(&links);
        captured.clear();
        io.capture.read(&mut captured);
        encoded.clear();
        io.chain.push(&captured, settings, |frame, info| {
            controls
                .level_db
                .store(info.level_db.to_bits(), Ordering::Relaxed);
            controls.speaking.store(info.speaking, Ordering::Relaxed);
            if transmitting {
                packetizer.push(
                    frame,
                    frame_index,
                    frames_per_packet,
                    &mut encoded,
                    |audio| {
                        encoder.encode(audio).unwrap_or_else(|e| {
                            tracing::warn!(error = %e, "opus encode failed");
                            None
                        })
                    },
                );
            } else {
                packetizer.reset();
            }
            frame_index += 1;
        });
        // What the device still holds has not been heard by the microphone yet: the echo
        // canceller's pairing must not have used it (see `echo`).
        let format = io.playout.format();
        let unplayed = io.playout.queued() as u64 * u64::from(SAMPLE_RATE)
            / u64::from(format.sample_rate.max(1));
        io.chain.align_far_end(unplayed as usize);
        for frame in &encoded {
            for link in &links {
                if link.outbound.try_send(frame.clone()).is_err() {
                    tracing::trace!(peer = %link.id, "send queue full; frame dropped");
                }
            }
        }

        // Receive path.
        pacer.observe(io.playout.underruns(), Instant::now());
        controls
            .playout_ms
            .store((pacer.headroom_ms as f32).to_bits(), Ordering::Relaxed);
        let low_water = pacer.low_water(format.sample_rate);
        let deafened = controls.deafened.load(Ordering::Relaxed);
        for _ in 0..MAX_FRAMES_PER_TICK {
            if io.playout.queued() >= low_water {
                break;
            }
            let queued = io.playout.queued() as f64 / f64::from(format.sample_rate);
            let due = pacer.due(Instant::now(), Duration::from_secs_f64(queued));
            mixer.clear();
            for link in &links {
                let mut rx = lock(&link.receiver);
                let frame = rx.next_frame(due);
                if !deafened {
                    mixer.add(frame);
                }
            }
            mono.clear();
            let mixed = mixer.finish();
            io.chain.far_end(mixed);
            io.out_resampler.process(mixed, &mut mono);
            device.clear();
            upmix(&mono, format.channels, &mut device);
            io.playout.write(&device);
        }
    }
}

#[cfg(test)]
mod engine_tests {
    use super::*;
    use crate::audio::wav::{WavSink, WavSource};
    use crate::audio::StreamFormat;

    const MONO: StreamFormat = StreamFormat {
        sample_rate: SAMPLE_RATE,
        channels: 1,
    };

    #[tokio::test]
    async fn the_engine_thread_plays_and_ends_with_the_call() {
        let sink = WavSink::new(MONO);
        let recording = sink.recording();
        let (_signals_in, incoming) = mpsc::channel(1);
        let (outgoing, _signals_out) = mpsc::channel(1);
        let (call, _events) = Call::start(
            CallConfig::default(),
            Box::new(WavSource::from_samples(vec![0.0; 48_000], MONO)),
            Box::new(sink),
            incoming,
            outgoing,
        )
        .await
        .expect("call starts");
        // The engine's clock runs without the runtime: with nobody in the call, it keeps the
        // device fed with silence.
        let started = Instant::now();
        while recording.samples().len() < 4_800 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "engine never played"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut call = call;
        let engine = call.engine.take().expect("engine thread");
        assert_eq!(engine.thread().name(), Some("sohbet-audio"));
        assert!(!engine.is_finished(), "engine thread ended early");
        drop(call);
        // It holds the devices: it must end (within a tick) once the call is gone.
        let dropped = Instant::now();
        while !engine.is_finished() {
            assert!(
                dropped.elapsed() < Duration::from_secs(5),
                "engine thread outlived the call"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(engine.join().is_ok(), "engine thread panicked");
    }
}

#[cfg(test)]
mod ticker_tests {
    use super::*;

    #[test]
    fn ticks_keep_their_schedule_and_skip_the_ones_missed() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut ticker = Ticker::new(TICK);
        ticker.next = t0;
        // On time (or a little late): the next tick is a period on, not a period from now.
        ticker.schedule(t0 + ms(1));
        assert_eq!(ticker.next, t0 + ms(5));
        // Woken 12 ms late: the ticks at 10 and 15 ms are gone; the schedule resumes at 20.
        ticker.schedule(t0 + ms(17));
        assert_eq!(ticker.next, t0 + ms(20));
        // Exactly on a missed tick's time: that one counts as missed too.
        ticker.schedule(t0 + ms(30));
        assert_eq!(ticker.next, t0 + ms(35));
    }
}

#[cfg(test)]
mod pacer_tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);

    #[test]
    fn small_drift_is_caught_up_slowly_and_a_large_one_at_once() {
        let mut pacer = PlayoutPacer::new(0);
        let t0 = Instant::now();
        let first = pacer.due(t0, Duration::ZERO);
        // The device is 10 ms further along than one frame later: 1 ms of it per frame.
        let next = pacer.due(t0 + FRAME + Duration::from_millis(10), Duration::ZERO);
        assert_eq!(next - first, FRAME + PLAYOUT_CATCH_UP);
        // A second late (the engine stalled, or nobody was heard): straight to the device.
        let late = t0 + Duration::from_secs(1);
        let headroom = Duration::from_secs_f64(PLAYOUT_LOW_WATER_MS / 1000.0);
        assert_eq!(pacer.due(late, Duration::ZERO), late - headroom);
    }
}

#[cfg(test)]
mod packetizer_tests {
    use super::*;
    use crate::codec::OpusEncoder;

    fn tone(frame: u64) -> Vec<f32> {
        (0..FRAME_SAMPLES)
            .map(|i| {
                let t = (frame as usize * FRAME_SAMPLES + i) as f32 / SAMPLE_RATE as f32;
                0.3 * (std::f32::consts::TAU * 440.0 * t).sin()
            })
            .collect()
    }

    /// Each packet's (first frame, frames, marker).
    fn packets(out: &[OutFrame]) -> Vec<(u64, u64, bool)> {
        out.iter()
            .map(|f| (f.frame_index, f.frames, f.marker))
            .collect()
    }

    /// Audio per packet (ms), read back from each Opus packet's table of contents.
    fn packet_ms(out: &[OutFrame]) -> Vec<f64> {
        out.iter()
            .map(|p| {
                opus::packet::get_nb_samples(&p.payload, SAMPLE_RATE).unwrap_or(0) as f64 / 48.0
            })
            .collect()
    }

    #[test]
    fn packets_follow_the_length_asked_for_frame_by_frame() -> Result<()> {
        let mut encoder = OpusEncoder::new(DEFAULT_BITRATE, false)?;
        let mut p = Packetizer::default();
        let mut out = Vec::new();
        // Clean: 20 ms packets. Then RED comes on after frame 4, with frame 4 alone pending:
        // it goes out with frame 5 as one 20 ms packet, and 10 ms packets follow.
        for (index, per_packet) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (3, 2),
            (4, 2),
            (5, 1),
            (6, 1),
            (7, 1),
        ] {
            p.push(&tone(index), index, per_packet, &mut out, |a| {
                encoder.encode(a).ok().flatten()
            });
        }
        assert_eq!(packet_ms(&out), vec![20.0, 20.0, 20.0, 10.0, 10.0]);
        let starts = packets(&out);
        assert_eq!(
            starts,
            vec![
                (0, 2, true),
                (2, 2, false),
                (4, 2, false),
                (6, 1, false),
                (7, 1, false)
            ]
        );
        Ok(())
    }

    #[test]
    fn a_gap_drops_the_half_gathered_packet_and_marks_the_next_talk_spurt() -> Result<()> {
        let mut encoder = OpusEncoder::new(DEFAULT_BITRATE, false)?;
        let mut p = Packetizer::default();
        let mut out = Vec::new();
        let mut push = |p: &mut Packetizer, index: u64, out: &mut Vec<OutFrame>| {
            p.push(&tone(index), index, 2, out, |a| {
                encoder.encode(a).ok().flatten()
            });
        };
        push(&mut p, 0, &mut out);
        push(&mut p, 1, &mut out);
        push(&mut p, 2, &mut out);
        // Muted for frames 3–5: frame 2, alone, must not go out glued to frame 6.
        p.reset();
        push(&mut p, 6, &mut out);
        push(&mut p, 7, &mut out);
        let starts = packets(&out);
        assert_eq!(starts, vec![(0, 2, true), (6, 2, true)]);
        // Frames skipped without a reset (nothing encoded for them) count as a gap too.
        let mut q = Packetizer::default();
        let mut out = Vec::new();
        push(&mut q, 0, &mut out);
        push(&mut q, 5, &mut out);
        push(&mut q, 6, &mut out);
        let starts = packets(&out);
        assert_eq!(starts, vec![(5, 2, true)]);
        Ok(())
    }

    #[test]
    fn nothing_goes_out_for_dtx_and_the_next_packet_starts_a_spurt() {
        let mut p = Packetizer::default();
        let mut out = Vec::new();
        for index in 0..6 {
            // Frames 2–3 are "nothing to say" for the encoder.
            p.push(&tone(index), index, 2, &mut out, |_| {
                (index != 3).then(|| bytes::Bytes::from_static(b"abc"))
            });
        }
        let starts = packets(&out);
        assert_eq!(starts, vec![(0, 2, true), (4, 2, true)]);
    }
}
