//! Runs in real headless Chromium (wasm-bindgen-test-runner + chromedriver):
//! the hand-written conversions between JS values and the protocol's.

use shared_protocol::frame::*;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;
use wasm_client::js::{payload_from_js, payload_to_js};
use wasm_client::options::LinkOptions;

wasm_bindgen_test_configure!(run_in_browser);

fn json(text: &str) -> JsValue {
    js_sys::JSON::parse(text).unwrap()
}

fn stringify(v: &JsValue) -> String {
    js_sys::JSON::stringify(v).unwrap().into()
}

#[wasm_bindgen_test]
fn a_js_value_survives_the_wire_unchanged() {
    let text = r#"{"hz":14074000,"mode":"USB","on":true,"list":[1,-2,1.5,null,"x"],"nested":{"a":{"b":[]}},"big":9007199254740991,"neg":-9007199254740991}"#;
    let payload = payload_from_js(&json(text)).unwrap();
    assert_eq!(payload["hz"].as_u64(), Some(14_074_000));
    assert_eq!(payload["list"][1].as_i64(), Some(-2));
    assert_eq!(payload["list"][2].as_f64(), Some(1.5));
    let frame = ClientFrame::Publish(Publish {
        client_seq: 7,
        kind: "radio.set_freq".into(),
        payload,
        delivery: Delivery::Reliable,
        expires_at_ms: None,
        ttl_ms: None,
    });
    let bytes = frame.encode().unwrap();
    let ClientFrame::Publish(back) = ClientFrame::decode(&bytes, MAX_FRAME_BYTES).unwrap() else {
        panic!("not a publish");
    };
    assert_eq!(stringify(&payload_to_js(&back.payload)), text);
}

#[wasm_bindgen_test]
fn binary_maps_and_non_string_keys_convert() {
    let bytes = js_sys::Uint8Array::from(&[1u8, 2, 3][..]);
    assert_eq!(
        payload_from_js(&bytes.into()).unwrap(),
        Payload::Binary(vec![1, 2, 3])
    );
    let map = js_sys::Map::new();
    map.set(&JsValue::from_str("k"), &JsValue::from(2));
    assert_eq!(
        payload_from_js(&map.into()).unwrap(),
        Payload::Map(vec![(Payload::from("k"), Payload::from(2))])
    );
    // A map key that is not a string becomes the property name JS would use.
    let keyed = Payload::Map(vec![(Payload::from(5), Payload::from(true))]);
    assert_eq!(stringify(&payload_to_js(&keyed)), r#"{"5":true}"#);
}

#[wasm_bindgen_test]
fn values_json_cannot_carry_are_refused_with_a_reason() {
    let f = js_sys::Function::new_no_args("return 1");
    assert!(payload_from_js(&f.into()).unwrap_err().contains("function"));
    let cyclic = json(r#"{"a":{}}"#);
    let inner = js_sys::Reflect::get(&cyclic, &"a".into()).unwrap();
    js_sys::Reflect::set(&inner, &"back".into(), &cyclic).unwrap();
    assert!(payload_from_js(&cyclic).unwrap_err().contains("deeper"));
}

#[wasm_bindgen_test]
fn options_are_checked_by_name_and_type() {
    let o = LinkOptions::from_js(&JsValue::UNDEFINED).unwrap();
    assert_eq!(o.ping_interval_ms, 10_000);
    assert_eq!(o.console_name.as_deref(), Some("stationLink"));

    let o = LinkOptions::from_js(&json(
        r#"{"profile":"stable","maxAttempts":3,"jitter":0.5,"consoleName":null,"fallbackUrls":["ws://b"]}"#,
    ))
    .unwrap();
    assert_eq!(o.max_attempts, Some(3));
    assert_eq!(o.jitter, Some(0.5));
    assert_eq!(o.console_name, None);
    assert_eq!(o.fallback_urls, vec!["ws://b".to_string()]);
    assert!(o.client_config().is_ok());

    // null keeps the default where an option has no "none".
    let o = LinkOptions::from_js(&json(r#"{"maxAttempts":null,"storagePrefix":null}"#)).unwrap();
    assert_eq!(o.max_attempts, None);
    assert_eq!(o.storage_prefix, "station-link");

    let typo = LinkOptions::from_js(&json(r#"{"maxAttempt":3}"#)).unwrap_err();
    assert!(typo.contains("unknown option `maxAttempt`"), "{typo}");
    let wrong = LinkOptions::from_js(&json(r#"{"pingIntervalMs":"soon"}"#)).unwrap_err();
    assert!(
        wrong.contains("pingIntervalMs must be a whole number"),
        "{wrong}"
    );
    let jitter = LinkOptions::from_js(&json(r#"{"jitter":1.5}"#))
        .unwrap()
        .client_config()
        .unwrap_err();
    assert!(jitter.contains("not 1.5"), "{jitter}");
}
