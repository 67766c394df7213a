#![no_main]
//! Gateway frames as the server (client → server) and the SDK (server → client) decode
//! them: any bytes either fail to decode, or decode to a frame that encodes and decodes
//! back to the same frame. Never a panic.

use libfuzzer_sys::fuzz_target;
use protocol::gateway::{ClientFrame, ServerFrame};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = serde_json::from_slice::<ClientFrame>(data) {
        let _ = frame.reference();
        let text = serde_json::to_string(&frame).expect("a decoded client frame encodes");
        let again: ClientFrame =
            serde_json::from_str(&text).expect("an encoded client frame decodes");
        assert_eq!(frame, again, "{text}");
    }
    if let Ok(frame) = serde_json::from_slice::<ServerFrame>(data) {
        let text = serde_json::to_string(&frame).expect("a decoded server frame encodes");
        let again: ServerFrame =
            serde_json::from_str(&text).expect("an encoded server frame decodes");
        assert_eq!(frame, again, "{text}");
    }
});
