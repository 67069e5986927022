//! The devtools console API: `window.stationLink` (name configurable with the
//! `consoleName` option, `null` to turn it off). Type `stationLink.help()`.

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::link::Link;

const HELP: &[(&str, &str)] = &[
    (
        "metrics()",
        "counters, latency (last, smoothed, p50, p95), quality and its inputs",
    ),
    ("forceReconnect()", "drop the connection and reconnect now"),
    (
        "buffer()",
        "reliable publishes waiting for the proxy (the outbox)",
    ),
    (
        "clearBuffer()",
        "empty the outbox (those publishes will never be sent)",
    ),
    (
        "simulateDisconnect(ms)",
        "drop the connection and stay away for ms milliseconds",
    ),
    (
        "exportLogs()",
        "download a JSON report: metrics, history, log, buffer",
    ),
    ("history()", "the lifecycle history (last 100 entries)"),
    ("help()", "this list"),
];

fn set(target: &Object, name: &str, f: &JsValue) {
    let _ = Reflect::set(target, &JsValue::from_str(name), f);
}

pub fn install(name: &str, link: Link) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let api = Object::new();
    let l = link.clone();
    set(
        &api,
        "metrics",
        &Closure::<dyn Fn() -> JsValue>::new(move || l.metrics()).into_js_value(),
    );
    let l = link.clone();
    set(
        &api,
        "forceReconnect",
        &Closure::<dyn Fn()>::new(move || l.force_reconnect()).into_js_value(),
    );
    let l = link.clone();
    set(
        &api,
        "buffer",
        &Closure::<dyn Fn() -> JsValue>::new(move || l.buffer()).into_js_value(),
    );
    let l = link.clone();
    set(
        &api,
        "clearBuffer",
        &Closure::<dyn Fn()>::new(move || l.clear_buffer()).into_js_value(),
    );
    let l = link.clone();
    set(
        &api,
        "simulateDisconnect",
        &Closure::<dyn Fn(f64)>::new(move |ms| l.simulate_disconnect(ms)).into_js_value(),
    );
    let l = link.clone();
    set(
        &api,
        "history",
        &Closure::<dyn Fn() -> JsValue>::new(move || l.history()).into_js_value(),
    );
    let l = link;
    set(
        &api,
        "exportLogs",
        &Closure::<dyn Fn() -> JsValue>::new(move || match l.export_logs() {
            Ok(blob) => {
                download(&blob);
                blob.into()
            }
            Err(e) => e.into(),
        })
        .into_js_value(),
    );
    let name_owned = name.to_string();
    set(
        &api,
        "help",
        &Closure::<dyn Fn()>::new(move || {
            let mut text = format!("{name_owned}: the station link's console API\n");
            for (call, what) in HELP {
                text.push_str(&format!("  {name_owned}.{call:<24} {what}\n"));
            }
            web_sys::console::log_1(&text.into());
        })
        .into_js_value(),
    );
    let _ = Reflect::set(&window, &JsValue::from_str(name), &api);
}

/// Offers the blob as a file download.
fn download(blob: &web_sys::Blob) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(blob) else {
        return;
    };
    if let Ok(a) = document.create_element("a") {
        let _ = a.set_attribute("href", &url);
        let _ = a.set_attribute("download", "station-link-logs.json");
        if let Some(a) = a.dyn_ref::<web_sys::HtmlElement>() {
            a.click();
        }
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}
