//! Runs in real headless Chromium (wasm-bindgen-test-runner + chromedriver).

use shared_protocol::frame::*;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn a_js_object_encodes_to_the_native_frame() {
    let js = js_sys::JSON::parse(
        r#"{"Publish":{"client_seq":7,"kind":"radio.set_freq","payload":{"hz":14074000},"delivery":"reliable","expires_at_ms":1700000000000}}"#,
    )
    .unwrap();
    let bytes = wasm_client::codec::encode_client_frame(js).unwrap();
    let frame = ClientFrame::decode(&bytes, MAX_FRAME_BYTES).unwrap();
    match frame {
        ClientFrame::Publish(p) => {
            assert_eq!(p.client_seq, 7);
            assert_eq!(p.kind, "radio.set_freq");
            assert_eq!(p.delivery, Delivery::Reliable);
            assert_eq!(p.expires_at_ms, Some(1_700_000_000_000));
            assert_eq!(p.payload["hz"].as_u64(), Some(14_074_000));
        }
        other => panic!("decoded {other:?}"),
    }
}

#[wasm_bindgen_test]
fn server_frames_decode_to_plain_objects_and_errors_are_typed() {
    let bytes = ServerFrame::Gap(Gap {
        from: 3,
        to: 9,
        reason: GapReason::Retention,
    })
    .encode()
    .unwrap();
    let js = wasm_client::codec::decode_server_frame(&bytes).unwrap();
    let gap = js_sys::Reflect::get(&js, &JsValue::from_str("Gap")).unwrap();
    let to = js_sys::Reflect::get(&gap, &JsValue::from_str("to")).unwrap();
    assert_eq!(to.as_f64(), Some(9.0));

    let mut wrong = bytes.clone();
    wrong[1] = 42;
    assert!(wasm_client::codec::decode_server_frame(&wrong).is_err());
    assert!(wasm_client::codec::decode_server_frame(&bytes[..bytes.len() - 1]).is_err());
}
