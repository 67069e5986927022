//! Feeds arbitrary bytes to both frame decoders, and to the batch reader
//! (several server frames in one message). The decoder must return an
//! error or a frame, never panic and never overflow the stack; a decoded
//! frame must re-encode to bytes that decode and re-encode identically
//! (bytes, not values, are compared: NaN payloads never equal themselves).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_protocol::frame::{ClientFrame, ServerFrame, MAX_FRAME_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = ClientFrame::decode(data, MAX_FRAME_BYTES) {
        let once = frame.encode().expect("a decoded frame encodes");
        let twice = ClientFrame::decode(&once, usize::MAX).expect("re-decodes").encode().expect("encodes");
        assert_eq!(once, twice);
    }
    if let Ok(frame) = ServerFrame::decode(data, MAX_FRAME_BYTES) {
        let once = frame.encode().expect("a decoded frame encodes");
        let twice = ServerFrame::decode(&once, usize::MAX).expect("re-decodes").encode().expect("encodes");
        assert_eq!(once, twice);
    }
    // A batch reads as the frames `decode` reads one at a time, and an
    // error takes nothing from the message.
    let mut rest = data;
    while !rest.is_empty() {
        let before = rest;
        match ServerFrame::decode_next(&mut rest, MAX_FRAME_BYTES) {
            Ok(frame) => {
                let used = &before[..before.len() - rest.len()];
                assert!(!used.is_empty());
                let alone = ServerFrame::decode(used, MAX_FRAME_BYTES).expect("a batch's frame decodes alone");
                assert_eq!(frame.encode().expect("encodes"), alone.encode().expect("encodes"));
            }
            Err(_) => {
                assert_eq!(rest.len(), before.len());
                break;
            }
        }
    }
});
