#![no_main]
//! Voice signaling payloads as the gateway checks them before relaying: any bytes either
//! fail to decode, or decode to a signal that round-trips; one that `validate` accepts is
//! within every size limit (so the server never relays an oversized SDP or candidate).

use libfuzzer_sys::fuzz_target;
use protocol::voice::{VoiceSignal, MAX_CANDIDATE_BYTES, MAX_MID_BYTES, MAX_SDP_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(signal) = serde_json::from_slice::<VoiceSignal>(data) else {
        return;
    };
    let text = serde_json::to_string(&signal).expect("a decoded signal encodes");
    let again: VoiceSignal = serde_json::from_str(&text).expect("an encoded signal decodes");
    assert_eq!(signal, again, "{text}");
    if signal.validate().is_err() {
        return;
    }
    match &signal {
        VoiceSignal::Offer { sdp } | VoiceSignal::Answer { sdp } => {
            assert!(!sdp.is_empty() && sdp.len() <= MAX_SDP_BYTES);
        }
        VoiceSignal::Candidate {
            candidate, sdp_mid, ..
        } => {
            assert!(candidate.len() <= MAX_CANDIDATE_BYTES);
            assert!(sdp_mid.as_ref().is_none_or(|m| m.len() <= MAX_MID_BYTES));
        }
        VoiceSignal::Bye => {}
    }
});
