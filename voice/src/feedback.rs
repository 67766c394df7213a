//! Reads the loss our peers report about our stream from the RTCP they send back.
//!
//! Receiver reports (alone, or inside a sender report, as libwebrtc sends them) carry each
//! receiver's `fraction_lost` for our SSRC. The interceptor sits next to the wire so it sees
//! every inbound RTCP packet before the default chain acts on it, records the fraction, and
//! passes the packet on untouched; the call feeds the worst peer's figure to Opus FEC, and
//! the peer's send loop reads, packet by packet, how much redundancy (RED) the last reports
//! ask for, so RED starts with the first report that shows loss, not a second later.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
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
            let at = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
            if worst >= RED_ON {
                self.lossy_at.store(at, Ordering::Relaxed);
            }
            if worst >= RED_DEEP {
                self.heavy_at.store(at, Ordering::Relaxed);
            }
            let _ = self
                .since_taken
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(if v == NONE { worst } else { v.max(worst) })
                });
        }
    }
}

/// Pass-through interceptor recording the loss in inbound receiver reports.
pub(crate) struct LossReportInterceptor {
    loss: ReportedLoss,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl LossReportInterceptor {
    pub fn new(loss: ReportedLoss) -> Self {
        Self {
            loss,
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
