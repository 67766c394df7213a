//! One webrtc-rs peer connection per remote participant, carrying one Opus track each way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, Registry,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::call::{CallConfig, IcePolicy};
use crate::feedback::{self, LossReportInterceptor, ReportedLoss};
use crate::jitter::JitterStats;
use crate::receive::PeerReceiver;
use crate::red::{self, DEFAULT_RED_PT, MIME_TYPE_RED};
use crate::signal::{PeerId, Signal, SignalMessage};
use crate::{lock, Result, FRAME_SAMPLES};
use rtc::interceptor::{Slot, TwccSenderBuilder};

/// Events a peer connection reports to its call.
#[derive(Debug)]
pub(crate) enum PeerEvent {
    Connected(PeerId),
    /// ICE lost the peer; it may come back within a grace period.
    Disconnected(PeerId),
    Gone(PeerId, String),
}

/// An encoded frame on its way to one peer.
#[derive(Debug, Clone)]
pub(crate) struct OutFrame {
    pub payload: bytes::Bytes,
    /// Index since the call started of the first 10 ms engine frame the packet holds
    /// (timestamps follow it, so DTX and mute gaps show as timestamp jumps with consecutive
    /// sequence numbers).
    pub frame_index: u64,
    /// How many engine frames the packet holds: 2 (20 ms) on a clean network, 1 while RED
    /// is on.
    pub frames: u64,
    /// First packet after a gap: the start of a talk spurt.
    pub marker: bool,
}

/// Packets queued to a peer's sender task: 20 (200 ms of 10 ms packets). When full the
/// newest packet is dropped and counted: old audio is worth less than keeping other peers
/// on time.
pub(crate) const OUT_QUEUE: usize = 20;

/// Most earlier packets a RED packet repeats. One covers every isolated loss with a copy that
/// arrives a packet (10 ms while RED is on) after the lost one, inside the headroom the
/// jitter buffer keeps under loss anyway; the second, sent only at heavy loss (see `feedback`), covers two
/// losses in a row when the network's jitter leaves it in time. libwebrtc sends one by
/// default (up to nine through a field trial) and reads any number.
pub(crate) const MAX_RED_DISTANCE: u8 = 2;

/// The payload types both sides agreed on, read from our sender once negotiation is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PayloadTypes {
    pub opus: u8,
    /// RED carrying Opus (`red/48000/2`, fmtp `<opus>/<opus>`), when both sides offered it.
    pub red: Option<u8>,
}

impl PayloadTypes {
    /// `None` until negotiation has produced a codec list.
    fn from_codecs(codecs: &[RTCRtpCodecParameters]) -> Option<Self> {
        if codecs.is_empty() {
            return None;
        }
        let opus = codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
            .map_or(DEFAULT_OPUS_PT, |c| c.payload_type);
        let red = codecs
            .iter()
            .find(|c| {
                c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_RED)
                    && c.rtp_codec
                        .sdp_fmtp_line
                        .split('/')
                        .all(|pt| pt.trim().parse::<u8>() == Ok(opus))
            })
            .map(|c| c.payload_type);
        Some(Self { opus, red })
    }
}

/// Where the send and receive loops learn the negotiated payload types.
#[derive(Default)]
pub(crate) struct Negotiation {
    sender: OnceLock<Arc<dyn RtpSender>>,
    /// Set when the connection first comes up: by then the answer has been applied. Before
    /// it, the sender lists only our own preference (Opus), not what the peer accepted.
    connected: AtomicBool,
    types: OnceLock<PayloadTypes>,
}

impl Negotiation {
    /// The agreed payload types, once the connection is up.
    async fn payload_types(&self) -> Option<PayloadTypes> {
        if let Some(types) = self.types.get() {
            return Some(*types);
        }
        if !self.connected.load(Ordering::Acquire) {
            return None;
        }
        let params = self.sender.get()?.get_parameters().await.ok()?;
        let types = PayloadTypes::from_codecs(&params.rtp_parameters.codecs)?;
        Some(*self.types.get_or_init(|| types))
    }
}

/// RED, offered after Opus exactly as Chromium offers it, so that neither side sends it by
/// default (libwebrtc sends RED only to a peer that lists it first); we send it when the
/// loss a receiver reports calls for it.
fn red_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_RED.to_owned(),
            clock_rate: crate::SAMPLE_RATE,
            channels: 2,
            sdp_fmtp_line: format!("{DEFAULT_OPUS_PT}/{DEFAULT_OPUS_PT}"),
            rtcp_feedback: vec![],
        },
        payload_type: DEFAULT_RED_PT,
    }
}

/// Passes webrtc-rs events for one peer to the call.
struct Handler {
    peer: PeerId,
    receiver: Arc<Mutex<PeerReceiver>>,
    negotiation: Arc<Negotiation>,
    signals: mpsc::Sender<SignalMessage>,
    events: mpsc::Sender<PeerEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let Ok(init) = event.candidate.to_json() else {
            return;
        };
        let msg = SignalMessage {
            peer: self.peer.clone(),
            signal: Signal::Candidate {
                candidate: init.candidate,
                // webrtc-rs says "" for "unknown"; browsers and aiortc reject an empty mid.
                sdp_mid: init.sdp_mid.filter(|m| !m.is_empty()),
                sdp_mline_index: init.sdp_mline_index,
            },
        };
        if self.signals.send(msg).await.is_err() {
            tracing::debug!(peer = %self.peer, "signaling sink closed; candidate not sent");
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(peer = %self.peer, ?state, "peer connection state");
        let event = match state {
            RTCPeerConnectionState::Connected => {
                self.negotiation.connected.store(true, Ordering::Release);
                PeerEvent::Connected(self.peer.clone())
            }
            RTCPeerConnectionState::Disconnected => PeerEvent::Disconnected(self.peer.clone()),
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                PeerEvent::Gone(self.peer.clone(), format!("connection {state}"))
            }
            _ => return,
        };
        // Bounded: if the call stopped reading, it is going away and the event is moot.
        let _ = self.events.send(event).await;
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        tokio::spawn(receive_loop(
            track,
            Arc::clone(&self.receiver),
            Arc::clone(&self.negotiation),
            self.peer.clone(),
        ));
    }
}

/// How often we tell the sender what we receive (RTCP receiver report): once a second, as
/// RFC 3550 suggests for a two-party session's bandwidth share.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// When packets go missing while our last report told the sender of too little loss for
/// redundancy, the next report goes out early, but no sooner than this after the previous
/// one: the sender's RED then starts a fraction of a second after the first losses rather
/// than up to a second later, for at most five extra reports a second.
const EARLY_REPORT_GAP: Duration = Duration::from_millis(200);

/// Our receiver report on the stream `ssrc`: the loss over the jitter buffer's recent window
/// (what the sender's FEC and RED should plan for), the cumulative loss and the jitter.
fn receiver_report(ssrc: u32, last_seq: u16, stats: &JitterStats) -> ReceiverReport {
    ReceiverReport {
        ssrc: 0,
        reports: vec![ReceptionReport {
            ssrc,
            fraction_lost: (stats.recent_loss * 256.0).clamp(0.0, 255.0) as u8,
            total_lost: stats.lost.min(0x7f_ffff) as u32,
            last_sequence_number: u32::from(last_seq),
            jitter: (stats.jitter_ms * 48.0) as u32,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Feeds a remote track's packets to the peer's jitter buffer and reports our reception
/// (loss, jitter) back to the sender, whose encoder uses the loss to size its FEC and RED.
async fn receive_loop(
    track: Arc<dyn TrackRemote>,
    receiver: Arc<Mutex<PeerReceiver>>,
    negotiation: Arc<Negotiation>,
    peer: PeerId,
) {
    let mut report = tokio::time::interval(REPORT_INTERVAL);
    let mut remote_ssrc: Option<u32> = None;
    let mut last_seq: u16 = 0;
    let mut types: Option<PayloadTypes> = None;
    // What the last report said: when, the loss fraction, and the packets lost by then.
    let mut reported = (Instant::now(), 0u8, 0u64);
    loop {
        let due = tokio::select! {
            event = track.poll() => match event {
                Some(TrackRemoteEvent::OnRtpPacket(p)) => {
                    let now = Instant::now();
                    remote_ssrc = Some(p.header.ssrc);
                    last_seq = p.header.sequence_number;
                    if types.is_none() {
                        types = negotiation.payload_types().await;
                    }
                    let h = &p.header;
                    let mut rx = lock(&receiver);
                    match types.filter(|t| t.red == Some(h.payload_type)) {
                        Some(t) => rx.push_red(
                            now,
                            h.sequence_number,
                            h.timestamp,
                            &p.payload,
                            t.opus,
                        ),
                        None => rx.push_rtp(now, h.sequence_number, h.timestamp, p.payload),
                    }
                    let (at, fraction, lost) = reported;
                    rx.stats().lost > lost
                        && u32::from(fraction) < feedback::RED_ON
                        && now.duration_since(at) >= EARLY_REPORT_GAP
                }
                Some(TrackRemoteEvent::OnEnded) | None => break,
                Some(_) => false,
            },
            _ = report.tick() => true,
        };
        let Some(ssrc) = remote_ssrc.filter(|_| due) else {
            continue;
        };
        let stats = lock(&receiver).stats();
        let rr = receiver_report(ssrc, last_seq, &stats);
        reported = (Instant::now(), rr.reports[0].fraction_lost, stats.lost);
        report.reset();
        if let Err(e) = track.write_rtcp(vec![Box::new(rr)]).await {
            tracing::debug!(%peer, error = %e, "receiver report not sent");
        }
    }
    tracing::debug!(%peer, "remote track ended");
}

/// A live connection to one remote participant.
pub(crate) struct PeerLink {
    pub id: PeerId,
    pub pc: Arc<dyn PeerConnection>,
    pub receiver: Arc<Mutex<PeerReceiver>>,
    pub outbound: mpsc::Sender<OutFrame>,
    sender_task: tokio::task::JoinHandle<()>,
    pub created: Instant,
    /// Loss this peer reports about our stream (RTCP).
    pub reported_loss: ReportedLoss,
    /// Earlier frames the last packet to this peer repeated as RED (0: plain Opus), as the
    /// send loop chose it from the loss the peer reports.
    pub red_distance: Arc<AtomicU8>,
    negotiation: Arc<Negotiation>,
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        self.sender_task.abort();
    }
}

impl PeerLink {
    /// Builds the connection and its Opus track; no SDP has been exchanged yet.
    pub async fn new(
        id: PeerId,
        config: &CallConfig,
        signals: mpsc::Sender<SignalMessage>,
        events: mpsc::Sender<PeerEvent>,
    ) -> Result<Self> {
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        media.register_codec(red_codec(), RtpCodecKind::Audio)?;
        let reported_loss = ReportedLoss::default();
        // The defaults read transport-wide sequence numbers but add none; ours carry them so
        // the peer sends transport-wide feedback, whose per-packet loss drives RED much sooner
        // than libwebrtc's 5-second receiver reports (see `feedback`).
        let registry = register_default_interceptors(Registry::new(), &mut media)?
            .with(Slot::TwccSender, TwccSenderBuilder::new().build())
            .with(
                Slot::from(feedback::SLOT),
                LossReportInterceptor::new(reported_loss.clone()),
            );
        let rtc_config = RTCConfigurationBuilder::default()
            .with_ice_servers(
                config
                    .ice_servers
                    .iter()
                    .map(|s| RTCIceServer {
                        urls: s.urls.clone(),
                        username: s.username.clone(),
                        credential: s.credential.clone(),
                    })
                    .collect(),
            )
            .with_ice_transport_policy(match config.ice_policy {
                IcePolicy::All => RTCIceTransportPolicy::All,
                IcePolicy::Relay => RTCIceTransportPolicy::Relay,
            })
            .build();
        let receiver = Arc::new(Mutex::new(PeerReceiver::new()?));
        let negotiation = Arc::new(Negotiation::default());
        let handler = Handler {
            peer: id.clone(),
            receiver: Arc::clone(&receiver),
            negotiation: Arc::clone(&negotiation),
            signals,
            events,
        };
        let pc = PeerConnectionBuilder::new()
            .with_configuration(rtc_config)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(handler))
            .with_udp_addrs(config.bind_addrs.clone())
            .build()
            .await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let ssrc = rand::random::<u32>();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "sohbet".to_owned(),
            format!("voice-{ssrc:08x}"),
            "voice".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_OPUS.to_owned(),
                    clock_rate: crate::SAMPLE_RATE,
                    channels: 2,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                },
                ..Default::default()
            }],
        )));
        let sender = pc
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await?;
        let _ = negotiation.sender.set(sender);
        let (outbound, out_rx) = mpsc::channel(OUT_QUEUE);
        let red_distance = Arc::new(AtomicU8::new(0));
        let sender_task = tokio::spawn(send_loop(
            track,
            Arc::clone(&negotiation),
            Redundancy {
                allowed: config.red,
                reported: reported_loss.clone(),
                distance: Arc::clone(&red_distance),
            },
            ssrc,
            out_rx,
        ));
        Ok(Self {
            id,
            pc,
            receiver,
            outbound,
            sender_task,
            created: Instant::now(),
            reported_loss,
            red_distance,
            negotiation,
        })
    }

    /// Whether this peer agreed to receive RED (known once negotiation is done).
    pub fn red_negotiated(&self) -> bool {
        self.negotiation
            .types
            .get()
            .is_some_and(|t| t.red.is_some())
    }
}

/// Opus's RTP payload type before negotiation tells us otherwise (Chromium and webrtc-rs
/// both offer 111).
const DEFAULT_OPUS_PT: u8 = 111;

/// How much redundancy a peer's send loop adds.
struct Redundancy {
    /// [`CallConfig::red`]: RED may be sent at all.
    allowed: bool,
    /// The loss the peer reports, read for every packet.
    reported: ReportedLoss,
    /// Where the loop says what it sent, for the call's statistics.
    distance: Arc<AtomicU8>,
}

/// The earlier packets a RED packet starting at frame `index` repeats, at most `distance`,
/// oldest first, each with how much earlier it starts (RTP ticks), from `sent` (first frame
/// index, frames, payload; newest last). Only the packets just before it, with no gap
/// between them and it: older ones (before a DTX pause) would arrive after their slot, and
/// the receiver takes the copies for the packets right before the one carrying them.
fn red_copies(
    sent: &VecDeque<(u64, u64, bytes::Bytes)>,
    index: u64,
    distance: usize,
) -> Vec<(u32, &[u8])> {
    let mut copies = Vec::with_capacity(distance);
    let mut follows = index;
    for (start, frames, payload) in sent.iter().rev().take(distance) {
        if start + frames != follows {
            break;
        }
        let age = (index - start) * FRAME_SAMPLES as u64;
        copies.push((u32::try_from(age).unwrap_or(u32::MAX), &payload[..]));
        follows = *start;
    }
    copies.reverse();
    copies
}

/// Packetizes frames for one peer: one Opus frame per RTP packet (RFC 7587), or, while the
/// peer's reports ask for it and the peer accepts RED, a RED packet (RFC 2198) carrying the
/// frame and copies of the frames sent just before it.
async fn send_loop(
    track: Arc<TrackLocalStaticRTP>,
    negotiation: Arc<Negotiation>,
    redundancy: Redundancy,
    ssrc: u32,
    mut frames: mpsc::Receiver<OutFrame>,
) {
    let ts_base = rand::random::<u32>();
    let mut seq = rand::random::<u16>();
    // The last packets sent (first frame index, frames, payload), newest last: the copies
    // RED repeats.
    let mut sent: VecDeque<(u64, u64, bytes::Bytes)> =
        VecDeque::with_capacity(usize::from(MAX_RED_DISTANCE) + 1);
    while let Some(frame) = frames.recv().await {
        // Known once negotiation is done; until then frames are dropped.
        let Some(types) = negotiation.payload_types().await else {
            continue;
        };
        let depth = match types.red {
            Some(_) if redundancy.allowed => redundancy
                .reported
                .red_depth(Instant::now())
                .min(MAX_RED_DISTANCE),
            _ => 0,
        };
        redundancy.distance.store(depth, Ordering::Relaxed);
        let distance = u64::from(depth);
        let (payload_type, payload) = match types.red.filter(|_| distance > 0) {
            Some(red_pt) => {
                let copies = red_copies(&sent, frame.frame_index, distance as usize);
                (red_pt, red::build(types.opus, &copies, &frame.payload))
            }
            None => (types.opus, frame.payload.clone()),
        };
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: frame.marker,
                payload_type,
                sequence_number: seq,
                timestamp: ts_base
                    .wrapping_add((frame.frame_index as u32).wrapping_mul(FRAME_SAMPLES as u32)),
                ssrc,
                ..Default::default()
            },
            payload,
        };
        // Until the track is bound (negotiation not finished) writes fail: drop the frame.
        if track.write_rtp(packet).await.is_ok() {
            seq = seq.wrapping_add(1);
            if sent.len() > usize::from(MAX_RED_DISTANCE) {
                sent.pop_front();
            }
            sent.push_back((frame.frame_index, frame.frames, frame.payload));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(packets: &[(u64, u64, u8)]) -> VecDeque<(u64, u64, bytes::Bytes)> {
        packets
            .iter()
            .map(|&(i, n, b)| (i, n, bytes::Bytes::from(vec![b; 3])))
            .collect()
    }

    #[test]
    fn red_repeats_the_packets_just_before_whatever_their_length() {
        // A 20 ms packet (frames 0–1), then 10 ms ones once RED came on.
        let history = sent(&[(0, 2, 1), (2, 1, 2), (3, 1, 3)]);
        let copies = red_copies(&history, 4, 2);
        let f = FRAME_SAMPLES as u32;
        assert_eq!(copies, vec![(2 * f, &[2u8; 3][..]), (f, &[3u8; 3][..])]);
        // Reaching back over the length change: the 20 ms packet starts 3 frames earlier.
        let before = sent(&[(0, 2, 1), (2, 1, 2)]);
        let copies = red_copies(&before, 3, 2);
        assert_eq!(copies, vec![(3 * f, &[1u8; 3][..]), (f, &[2u8; 3][..])]);
        assert!(red_copies(&history, 4, 0).is_empty());
    }

    #[test]
    fn red_repeats_nothing_from_before_a_gap() {
        // Frames 4–5 were DTX: the packet at 6 follows a gap, the one at 7 only packet 6.
        let history = sent(&[(2, 1, 2), (3, 1, 3)]);
        assert!(red_copies(&history, 6, 2).is_empty());
        let history = sent(&[(2, 1, 2), (3, 1, 3), (6, 1, 6)]);
        assert_eq!(
            red_copies(&history, 7, 2),
            vec![(FRAME_SAMPLES as u32, &[6u8; 3][..])]
        );
    }
}
