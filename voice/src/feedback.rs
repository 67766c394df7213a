//! Reads the loss our peers report about our stream from the RTCP they send back.
//!
//! Receiver reports (alone, or inside a sender report, as libwebrtc sends them) carry each
//! receiver's `fraction_lost` for our SSRC. The interceptor sits next to the wire so it sees
//! every inbound RTCP packet before the default chain acts on it, records the fraction, and
//! passes the packet on untouched; the call feeds the worst peer's figure to Opus FEC, and
//! the peer's send loop reads, packet by packet, how much redundancy (RED) the last reports
//! ask for, so RED starts with the first report that shows loss, not a second later.
//!
//! Receiver reports alone come too seldom from libwebrtc: it reports on audio every 5 s on
//! average (2.5–7.5 s), so against Chromium RED started anywhere from 2 to 12 s into a lossy
//! call, and a call whose first seconds went unprotected scored 1.4–2.6 where the others
//! scored 3.1–3.6. Our packets therefore carry transport-wide sequence numbers, and the peer's
//! transport-wide congestion-control feedback (sent every 50–100 ms by libwebrtc and by our
//! own peers) says which of them arrived: the loss over the last second of those counts as a
//! report too, as libwebrtc's own sender reads it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::jitter::Unwrapper;
use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Slot below every default interceptor (the lowest named one is 1 000): read walks start at
/// the wire, so this sees inbound RTCP first.
pub(crate) const SLOT: usize = 500;

/// Reported loss (in 1/256) from which packets carry one redundant copy (RED): 3 %, where
/// Opus's FEC alone starts to leave audible gaps ...
pub(crate) const RED_ON: u32 = 8;
/// ... and from which they carry two (10 %): at that loss one packet in ten lost is followed
/// by another lost one, which a single copy cannot cover.
const RED_DEEP: u32 = 26;
/// How long a report asking for redundancy keeps it on. Two reporters speak for each peer
/// (its engine, over a few seconds of packets, and webrtc-rs's report interceptor, over the
/// last second only), and a second without loss in a lossy stretch is common: RED stops only
/// after this long with no report asking for it.
const RED_HOLD: Duration = Duration::from_secs(5);

/// The worst loss fraction (in 1/256) a peer reported for our stream since it was last
/// taken. Worst rather than last: the default report interceptor may send its own reports
/// beside ours, and one of them saying "no loss" must not hide the other.
#[derive(Clone)]
pub(crate) struct ReportedLoss {
    since_taken: Arc<AtomicU32>,
    /// The last value taken, kept while no new report arrives.
    last: Arc<AtomicU32>,
    epoch: Instant,
    /// When (ms after `epoch`, plus one; 0: never) a report last asked for one copy ...
    lossy_at: Arc<AtomicU64>,
    /// ... and for two.
    heavy_at: Arc<AtomicU64>,
}

impl Default for ReportedLoss {
    fn default() -> Self {
        Self {
            since_taken: Arc::new(AtomicU32::new(NONE)),
            last: Arc::default(),
            epoch: Instant::now(),
            lossy_at: Arc::default(),
            heavy_at: Arc::default(),
        }
    }
}

/// Marks "no report since the last take".
const NONE: u32 = u32::MAX;

impl ReportedLoss {
    /// The worst fraction (0–1) reported since the previous call, or the previous value if
    /// nothing was reported meanwhile.
    pub fn take(&self) -> f32 {
        let v = self.since_taken.swap(NONE, Ordering::Relaxed);
        if v != NONE {
            self.last.store(v, Ordering::Relaxed);
        }
        self.last.load(Ordering::Relaxed) as f32 / 256.0
    }

    /// Redundant copies each packet should carry now (0–2), by the reports of the last
    /// [`RED_HOLD`].
    pub fn red_depth(&self, now: Instant) -> u8 {
        let recent = |at: &AtomicU64| match at.load(Ordering::Relaxed) {
            0 => false,
            at => {
                let ms = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
                ms.saturating_sub(at) < RED_HOLD.as_millis() as u64
            }
        };
        if recent(&self.heavy_at) {
            2
        } else {
            u8::from(recent(&self.lossy_at))
        }
    }

    fn record(&self, reports: &[ReceptionReport]) {
        self.record_at(Instant::now(), reports);
    }

    fn record_at(&self, now: Instant, reports: &[ReceptionReport]) {
        if let Some(worst) = reports.iter().map(|r| u32::from(r.fraction_lost)).max() {
            self.record_fraction_at(now, worst);
        }
    }

    /// Records a reported loss of `fraction` / 256.
    fn record_fraction_at(&self, now: Instant, fraction: u32) {
        let at = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        if fraction >= RED_ON {
            self.lossy_at.store(at, Ordering::Relaxed);
        }
        if fraction >= RED_DEEP {
            self.heavy_at.store(at, Ordering::Relaxed);
        }
        let _ = self
            .since_taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(if v == NONE { fraction } else { v.max(fraction) })
            });
    }
}

/// Our packets the loss from transport-wide feedback is judged over: the last second of
/// 20 ms packets (half a second once RED has them at 10 ms) ...
const FEEDBACK_WINDOW: u64 = 50;
/// ... once the feedback has covered at least this many of them (a loss figure from a handful
/// of packets would switch RED on for one unlucky pair).
const FEEDBACK_MIN_PACKETS: usize = 25;

/// Which of our packets (by transport-wide sequence number) the peer's transport-wide
/// feedback says arrived, over the last [`FEEDBACK_WINDOW`] of them.
#[derive(Default)]
struct FeedbackLoss {
    /// Unwrapped sequence number → arrived. A packet first reported missing and later
    /// reported received (it was late, or the feedback repeats itself) counts as received.
    arrived: BTreeMap<u64, bool>,
    seq: Unwrapper,
    highest: Option<u64>,
}

impl FeedbackLoss {
    /// Takes one feedback packet; returns the loss (in 1/256) over the window, once it holds
    /// enough packets.
    fn take(&mut self, cc: &TransportLayerCc) -> Option<u32> {
        let count = usize::from(cc.packet_status_count);
        // Only the newest statuses can fall in the window: a feedback packet claiming 65 535
        // packets (a broken or hostile peer) costs no more than one covering 50.
        let statuses = cc
            .packet_chunks
            .iter()
            .flat_map(|chunk| -> Box<dyn Iterator<Item = SymbolTypeTcc> + '_> {
                match chunk {
                    PacketStatusChunk::RunLengthChunk(r) => Box::new(std::iter::repeat_n(
                        r.packet_status_symbol,
                        usize::from(r.run_length),
                    )),
                    PacketStatusChunk::StatusVectorChunk(v) => {
                        Box::new(v.symbol_list.iter().copied())
                    }
                }
            })
            .take(count)
            .enumerate()
            .skip(count.saturating_sub(FEEDBACK_WINDOW as usize));
        for (i, symbol) in statuses {
            let seq = self.seq.unwrap(
                u64::from(cc.base_sequence_number.wrapping_add(i as u16)),
                16,
            );
            let arrived = symbol != SymbolTypeTcc::PacketNotReceived;
            *self.arrived.entry(seq).or_insert(arrived) |= arrived;
            if self.highest.is_none_or(|h| seq > h) {
                self.highest = Some(seq);
            }
        }
        let highest = self.highest?;
        self.arrived = self
            .arrived
            .split_off(&highest.saturating_sub(FEEDBACK_WINDOW - 1));
        if self.arrived.len() < FEEDBACK_MIN_PACKETS {
            return None;
        }
        let lost = self.arrived.values().filter(|a| !**a).count();
        Some((lost * 256 / self.arrived.len()) as u32)
    }
}

/// Pass-through interceptor recording the loss in inbound receiver reports and
/// transport-wide feedback.
pub(crate) struct LossReportInterceptor {
    loss: ReportedLoss,
    feedback: FeedbackLoss,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl LossReportInterceptor {
    pub fn new(loss: ReportedLoss) -> Self {
        Self {
            loss,
            feedback: FeedbackLoss::default(),
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for LossReportInterceptor {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                let any = p.as_any();
                if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    self.loss.record(&rr.reports);
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    self.loss.record(&sr.reports);
                } else if let Some(cc) = any.downcast_ref::<TransportLayerCc>() {
                    if let Some(fraction) = self.feedback.take(cc) {
                        self.loss.record_fraction_at(Instant::now(), fraction);
                    }
                }
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for LossReportInterceptor {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
        RunLengthChunk, StatusChunkTypeTcc, StatusVectorChunk, SymbolSizeTypeTcc,
    };

    /// Transport-wide feedback from `base` for `statuses` (true: arrived), as a run of the
    /// first status and then 7-symbol vectors, as libwebrtc mixes them.
    fn feedback(base: u16, statuses: &[bool]) -> TransportLayerCc {
        let symbol = |arrived: bool| {
            if arrived {
                SymbolTypeTcc::PacketReceivedSmallDelta
            } else {
                SymbolTypeTcc::PacketNotReceived
            }
        };
        let run = statuses.iter().take_while(|a| **a == statuses[0]).count();
        let mut chunks = vec![PacketStatusChunk::RunLengthChunk(RunLengthChunk {
            type_tcc: StatusChunkTypeTcc::RunLengthChunk,
            packet_status_symbol: symbol(statuses[0]),
            run_length: run as u16,
        })];
        for group in statuses[run..].chunks(7) {
            let mut list: Vec<_> = group.iter().map(|a| symbol(*a)).collect();
            // The last vector is padded with "not received", which the count excludes.
            list.resize(7, SymbolTypeTcc::PacketNotReceived);
            chunks.push(PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                symbol_size: SymbolSizeTypeTcc::TwoBit,
                symbol_list: list,
            }));
        }
        TransportLayerCc {
            base_sequence_number: base,
            packet_status_count: statuses.len() as u16,
            packet_chunks: chunks,
            ..Default::default()
        }
    }

    #[test]
    fn transport_feedback_gives_the_loss_over_the_last_second_of_packets() {
        let mut f = FeedbackLoss::default();
        // Too few packets to judge yet, however many of them were lost.
        let early: Vec<bool> = (0..10).map(|i| i % 2 == 0).collect();
        assert_eq!(f.take(&feedback(65_500, &early)), None);
        // 40 more across the sequence number's wrap, every fifth lost: 50 packets in the
        // window, 5 + 8 of them lost.
        let lossy: Vec<bool> = (0..40).map(|i| i % 5 != 4).collect();
        assert_eq!(f.take(&feedback(65_510, &lossy)), Some(13 * 256 / 50));
        // A packet reported missing that turns up later (late, or a repeated report) counts
        // as received; the window slides on to the newest 50.
        assert_eq!(f.take(&feedback(65_510 + 4, &[true])), Some(12 * 256 / 50));
        let clean = vec![true; 50];
        assert_eq!(f.take(&feedback(14, &clean)), Some(0));
    }

    #[test]
    fn a_feedback_packet_claiming_every_sequence_number_costs_only_the_window() {
        let mut f = FeedbackLoss::default();
        let run = |symbol, run_length| {
            PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                packet_status_symbol: symbol,
                run_length,
            })
        };
        // 65 535 packets: the first 65 485 lost, the newest 50 received.
        let cc = TransportLayerCc {
            base_sequence_number: 7,
            packet_status_count: u16::MAX,
            packet_chunks: vec![
                run(SymbolTypeTcc::PacketNotReceived, 8191),
                run(SymbolTypeTcc::PacketNotReceived, u16::MAX - 8191 - 50),
                run(SymbolTypeTcc::PacketReceivedSmallDelta, 50),
                run(SymbolTypeTcc::PacketReceivedSmallDelta, 8191),
            ],
            ..Default::default()
        };
        assert_eq!(f.take(&cc), Some(0), "only the newest 50 count");
        assert_eq!(f.arrived.len(), FEEDBACK_WINDOW as usize);
    }

    #[test]
    fn transport_feedback_switches_red_on_without_waiting_for_a_receiver_report() {
        let loss = ReportedLoss::default();
        let mut f = FeedbackLoss::default();
        let now = loss.epoch + Duration::from_millis(1500);
        let lossy: Vec<bool> = (0..50).map(|i| i % 5 != 0).collect();
        let fraction = f.take(&feedback(0, &lossy)).expect("a second of packets");
        loss.record_fraction_at(now, fraction);
        assert_eq!(loss.red_depth(now), 2, "20 % loss: two copies");
        assert!((loss.take() - 0.2).abs() < 0.01);
    }

    fn report(fraction_lost: u8) -> [ReceptionReport; 1] {
        [ReceptionReport {
            fraction_lost,
            ..Default::default()
        }]
    }

    #[test]
    fn red_depth_follows_the_reports_at_once_and_lets_go_after_a_hold() {
        let loss = ReportedLoss::default();
        let t0 = loss.epoch;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(loss.red_depth(at(0)), 0, "no report: plain Opus");
        loss.record_at(at(100), &report(2)); // 0.8 %
        assert_eq!(loss.red_depth(at(100)), 0);
        // The first report with 5 % loss switches one copy on at once ...
        loss.record_at(at(1000), &report(13));
        assert_eq!(loss.red_depth(at(1000)), 1);
        // ... 20 % asks for two ...
        loss.record_at(at(2000), &report(51));
        assert_eq!(loss.red_depth(at(2000)), 2);
        // ... and a clean report from the other reporter does not take them away ...
        loss.record_at(at(2500), &report(0));
        assert_eq!(loss.red_depth(at(2500)), 2);
        // ... until no report has asked for two (then one) copies for the hold time.
        loss.record_at(at(3000), &report(13));
        assert_eq!(loss.red_depth(at(2000) + RED_HOLD), 1);
        assert_eq!(
            loss.red_depth(at(3000) + RED_HOLD - Duration::from_millis(1)),
            1
        );
        assert_eq!(loss.red_depth(at(3000) + RED_HOLD), 0);
        // The FEC figure is still the worst fraction since it was last taken.
        assert!((loss.take() - 51.0 / 256.0).abs() < 1e-6);
    }
}
