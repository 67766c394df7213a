#![no_main]
//! Gateway frames as the server (client → server) and the SDK (server → client) decode
//! them: any bytes either fail to decode, or decode to a frame that encodes and decodes
//! back to the same frame. Never a panic. Client frames go through the server's own
//! decoder (`server/src/gateway/connection/decode.rs`, built here on its own), which
//! accepts only JSON objects.

use libfuzzer_sys::fuzz_target;
use protocol::gateway::{ClientFrame, ServerFrame};

#[path = "../../server/src/gateway/connection/decode.rs"]
mod decode;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match decode::client_frame(text) {
            Ok(frame) => {
                assert!(text.trim_start().starts_with('{'), "accepted a non-object: {text}");
                let _ = frame.reference();
                let encoded = serde_json::to_string(&frame).expect("a decoded client frame encodes");
                assert_eq!(decode::client_frame(&encoded), Ok(frame.clone()), "{encoded}");
            }
            Err(rejected) => {
                // An object refused is one serde refuses too; anything else is not an object.
                let plain = serde_json::from_str::<ClientFrame>(text);
                if rejected == decode::Rejected::Invalid {
                    assert!(plain.is_err(), "refused what serde reads: {text}");
                }
                assert!(!rejected.reason().is_empty());
            }
        }
    }
    if let Ok(frame) = serde_json::from_slice::<ServerFrame>(data) {
        let text = serde_json::to_string(&frame).expect("a decoded server frame encodes");
        let again: ServerFrame =
            serde_json::from_str(&text).expect("an encoded server frame decodes");
        assert_eq!(frame, again, "{text}");
    }
});
