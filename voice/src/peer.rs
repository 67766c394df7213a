//! One webrtc-rs peer connection per remote participant, carrying one Opus track each way.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
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
use crate::receive::PeerReceiver;
use crate::signal::{PeerId, Signal, SignalMessage};
use crate::{lock, Result};
use rtc::interceptor::Slot;

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
    /// Index of the 20 ms frame since the call started (timestamps follow it, so DTX and
    /// mute gaps show as timestamp jumps with consecutive sequence numbers).
    pub frame_index: u64,
    /// First packet after a gap: the start of a talk spurt.
    pub marker: bool,
}

/// Packets queued to a peer's sender task; 10 frames (200 ms). When full the newest frame is
/// dropped and counted: old audio is worth less than keeping other peers on time.
pub(crate) const OUT_QUEUE: usize = 10;

/// Passes webrtc-rs events for one peer to the call.
struct Handler {
    peer: PeerId,
    receiver: Arc<Mutex<PeerReceiver>>,
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
            RTCPeerConnectionState::Connected => PeerEvent::Connected(self.peer.clone()),
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
            self.peer.clone(),
        ));
    }
}

/// How often we tell the sender what we receive (RTCP receiver report): once a second, as
/// RFC 3550 suggests for a two-party session's bandwidth share.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Feeds a remote track's packets to the peer's jitter buffer and reports our reception
/// (loss, jitter) back to the sender, whose encoder uses the loss to size its FEC.
async fn receive_loop(
    track: Arc<dyn TrackRemote>,
    receiver: Arc<Mutex<PeerReceiver>>,
    peer: PeerId,
) {
    let mut report = tokio::time::interval(REPORT_INTERVAL);
    let mut remote_ssrc: Option<u32> = None;
    let mut last_seq: u16 = 0;
    loop {
        tokio::select! {
            event = track.poll() => match event {
                Some(TrackRemoteEvent::OnRtpPacket(p)) => {
                    remote_ssrc = Some(p.header.ssrc);
                    last_seq = p.header.sequence_number;
                    lock(&receiver).push_rtp(
                        Instant::now(),
                        p.header.sequence_number,
                        p.header.timestamp,
                        p.payload,
                    );
                }
                Some(TrackRemoteEvent::OnEnded) | None => break,
                Some(_) => {}
            },
            _ = report.tick() => {
                let Some(ssrc) = remote_ssrc else { continue };
                let stats = lock(&receiver).stats();
                let rr = ReceiverReport {
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
                };
                if let Err(e) = track.write_rtcp(vec![Box::new(rr)]).await {
                    tracing::debug!(%peer, error = %e, "receiver report not sent");
                }
            }
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
        let reported_loss = ReportedLoss::default();
        let registry = register_default_interceptors(Registry::new(), &mut media)?.with(
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
        let handler = Handler {
            peer: id.clone(),
            receiver: Arc::clone(&receiver),
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
        let (outbound, out_rx) = mpsc::channel(OUT_QUEUE);
        let sender_task = tokio::spawn(send_loop(track, sender, ssrc, out_rx));
        Ok(Self {
            id,
            pc,
            receiver,
            outbound,
            sender_task,
            created: Instant::now(),
            reported_loss,
        })
    }
}

/// Opus's RTP payload type before negotiation tells us otherwise (Chromium and webrtc-rs
/// both offer 111).
const DEFAULT_OPUS_PT: u8 = 111;

/// Packetizes frames for one peer: one Opus frame per RTP packet (RFC 7587).
async fn send_loop(
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    mut frames: mpsc::Receiver<OutFrame>,
) {
    let mut payload_type: Option<u8> = None;
    let ts_base = rand::random::<u32>();
    let mut seq = rand::random::<u16>();
    while let Some(frame) = frames.recv().await {
        if payload_type.is_none() {
            // Known once negotiation is done; until then frames are dropped.
            let Ok(params) = sender.get_parameters().await else {
                continue;
            };
            let codecs = &params.rtp_parameters.codecs;
            if codecs.is_empty() {
                continue;
            }
            payload_type = Some(
                codecs
                    .iter()
                    .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
                    .map(|c| c.payload_type)
                    .unwrap_or(DEFAULT_OPUS_PT),
            );
        }
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: frame.marker,
                payload_type: payload_type.unwrap_or(DEFAULT_OPUS_PT),
                sequence_number: seq,
                timestamp: ts_base.wrapping_add(
                    (frame.frame_index as u32).wrapping_mul(crate::FRAME_SAMPLES as u32),
                ),
                ssrc,
                ..Default::default()
            },
            payload: frame.payload,
        };
        // Until the track is bound (negotiation not finished) writes fail: drop the frame.
        if track.write_rtp(packet).await.is_ok() {
            seq = seq.wrapping_add(1);
        }
    }
}
