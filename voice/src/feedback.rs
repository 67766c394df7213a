//! Reads the loss our peers report about our stream from the RTCP they send back.
//!
//! Receiver reports (alone, or inside a sender report, as libwebrtc sends them) carry each
//! receiver's `fraction_lost` for our SSRC. The interceptor sits next to the wire so it sees
//! every inbound RTCP packet before the default chain acts on it, records the fraction, and
//! passes the packet on untouched; the call feeds the worst peer's figure to Opus FEC.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Slot below every default interceptor (the lowest named one is 1 000): read walks start at
/// the wire, so this sees inbound RTCP first.
pub(crate) const SLOT: usize = 500;

/// The worst loss fraction (in 1/256) a peer reported for our stream since it was last
/// taken. Worst rather than last: the default report interceptor may send its own reports
/// beside ours, and one of them saying "no loss" must not hide the other.
#[derive(Clone, Default)]
pub(crate) struct ReportedLoss {
    since_taken: Arc<AtomicU32>,
    /// The last value taken, kept while no new report arrives.
    last: Arc<AtomicU32>,
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

    fn record(&self, reports: &[ReceptionReport]) {
        if let Some(worst) = reports.iter().map(|r| u32::from(r.fraction_lost)).max() {
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
