//! The devtools console API: `window.stationLink` (name configurable with the
//! `consoleName` option, `null` to turn it off). Type `stationLink.help()`.

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

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

/// A console method. All have one signature (an argument in, a value out)
/// and are boxed before wasm-bindgen sees them: it writes glue for each
/// closure signature and each closure type it is given.
fn method(f: impl Fn(JsValue) -> JsValue + 'static) -> JsValue {
    let f: Box<dyn Fn(JsValue) -> JsValue> = Box::new(f);
    Closure::wrap(f).into_js_value()
}

fn set(target: &Object, name: &str, f: &JsValue) {
    let _ = Reflect::set(target, &JsValue::from_str(name), f);
}

/// What the console API calls: the `Link`'s own methods (the link
/// implements this; the console does not know the link's insides, and the
/// two modules do not import each other).
pub trait Target: Clone + 'static {
    fn metrics(&self) -> JsValue;
    fn force_reconnect(&self);
    fn buffer(&self) -> JsValue;
    fn clear_buffer(&self);
    fn simulate_disconnect(&self, ms: f64);
    fn history(&self) -> JsValue;
    fn export_logs(&self) -> Result<web_sys::Blob, wasm_bindgen::JsError>;
}

pub fn install(name: &str, link: impl Target) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let api = Object::new();
    let l = link.clone();
    set(&api, "metrics", &method(move |_| l.metrics()));
    let l = link.clone();
    set(
        &api,
        "forceReconnect",
        &method(move |_| {
            l.force_reconnect();
            JsValue::UNDEFINED
        }),
    );
    let l = link.clone();
    set(&api, "buffer", &method(move |_| l.buffer()));
    let l = link.clone();
    set(
        &api,
        "clearBuffer",
        &method(move |_| {
            l.clear_buffer();
            JsValue::UNDEFINED
        }),
    );
    let l = link.clone();
    set(
        &api,
        "simulateDisconnect",
        &method(move |ms| {
            // JS number coercion, as a `number` parameter would apply.
            l.simulate_disconnect(ms.unchecked_into_f64());
            JsValue::UNDEFINED
        }),
    );
    let l = link.clone();
    set(&api, "history", &method(move |_| l.history()));
    let l = link;
    set(
        &api,
        "exportLogs",
        &method(move |_| match l.export_logs() {
            Ok(blob) => {
                download(&blob);
                blob.into()
            }
            Err(e) => e.into(),
        }),
    );
    let name_owned = name.to_string();
    set(
        &api,
        "help",
        &method(move |_| {
            let mut text = format!("{name_owned}: the station link's console API\n");
            for (call, what) in HELP {
                // Padded by hand: `{:<24}` links char counting and padding.
                text.push_str("  ");
                text.push_str(&name_owned);
                text.push('.');
                text.push_str(call);
                text.push_str(&"                         "[call.len().min(24)..]);
                text.push_str(what);
                text.push('\n');
            }
            web_sys::console::log_1(&text.into());
            JsValue::UNDEFINED
        }),
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
