//! Conversions between the session's values and plain JavaScript values,
//! and calling listeners: what every part of the JS shell shares.

use js_sys::{Array, ArrayBuffer, Function, Map, Number, Object, Reflect, Uint8Array};
use shared_protocol::client::{HistoryEntry, Input, Metrics};
use shared_protocol::frame::{Access, Delivery, Event, Payload, Publish, MAX_DEPTH};
use shared_protocol::receiver::Delivered;
use wasm_bindgen::prelude::*;

/// A counter as a JS number (exact below 2^53, which no counter reaches).
pub(crate) fn num(v: u64) -> JsValue {
    (v as f64).into()
}

/// A JS number that is a whole number >= 0 and exact in a double, as a
/// `u64` (options and stored counters); `None` for anything else.
pub(crate) fn whole_number(v: &JsValue) -> Option<u64> {
    v.as_f64()
        .filter(|n| Number::is_safe_integer(v) && *n >= 0.0)
        .map(|n| n as u64)
}

fn opt_num(v: Option<u64>) -> JsValue {
    v.map_or(JsValue::NULL, num)
}

pub(crate) fn access_to_js(a: Option<Access>) -> JsValue {
    a.map_or(JsValue::NULL, |a| a.as_str().into())
}

/// A list of values as a JS array.
pub(crate) fn list<'a, T: 'a>(
    items: impl Iterator<Item = &'a T>,
    to_js: fn(&T) -> JsValue,
) -> JsValue {
    items.map(to_js).collect::<Array>().into()
}

/// A publish as `buffer()`, `exportLogs()` and localStorage show it.
pub(crate) fn publish_to_js(p: &Publish) -> JsValue {
    obj(&[
        ("client_seq", num(p.client_seq)),
        ("kind", p.kind.as_str().into()),
        ("payload", payload_to_js(&p.payload)),
        ("delivery", p.delivery.as_str().into()),
        (
            "expires_at_ms",
            p.expires_at_ms.map_or(JsValue::UNDEFINED, num),
        ),
    ])
}

pub(crate) fn history_to_js(h: &HistoryEntry) -> JsValue {
    obj(&[
        ("at_ms", num(h.at_ms)),
        ("event", h.event.into()),
        ("detail", h.detail.as_str().into()),
    ])
}

/// `metrics()`: the session's figures under their Rust names.
pub(crate) fn metrics_to_js(m: &Metrics) -> JsValue {
    obj(&[
        ("state", m.state.as_str().into()),
        ("client_id", m.client_id.as_str().into()),
        ("epoch", opt_num(m.epoch)),
        ("last_seq", num(m.last_seq)),
        ("attempt", m.attempt.into()),
        ("reconnects", num(m.reconnects)),
        ("connected_for_ms", num(m.connected_for_ms)),
        ("delivered", num(m.delivered)),
        ("duplicates", num(m.duplicates)),
        ("gaps", num(m.gaps)),
        ("outbox", num(m.outbox as u64)),
        ("outbox_capacity", num(m.outbox_capacity as u64)),
        ("outbox_evicted", num(m.outbox_evicted)),
        ("frames_in", num(m.frames_in)),
        ("frames_out", num(m.frames_out)),
        ("bytes_in", num(m.bytes_in)),
        ("bytes_out", num(m.bytes_out)),
        ("pings_sent", num(m.pings_sent)),
        ("pongs_received", num(m.pongs_received)),
        ("healthy", m.healthy.into()),
        ("rtt_last_ms", opt_num(m.rtt_last_ms)),
        (
            "rtt_smoothed_ms",
            m.rtt_smoothed_ms.map_or(JsValue::NULL, JsValue::from),
        ),
        ("rtt_p50_ms", opt_num(m.rtt_p50_ms)),
        ("rtt_p95_ms", opt_num(m.rtt_p95_ms)),
        ("quality", m.quality.into()),
        ("quality_stability", m.quality_stability.into()),
        ("quality_ack_rate", m.quality_ack_rate.into()),
        ("quality_uptime", m.quality_uptime.into()),
        ("quality_activity", m.quality_activity.into()),
    ])
}

#[wasm_bindgen(module = "/js/delivered.js")]
extern "C" {
    /// A delivered item's frame as its listener's value, read in JS
    /// (wasm-client/js/delivered.js) in one crossing.
    fn delivered(frame: &[u8]) -> JsValue;
}

/// A payload as a plain JS value: read by the same JS as an event's (a
/// stand-in event's frame), so there is one conversion, not two to keep
/// alike. Only for the rare paths (`buffer()`, a follower's relayed send).
pub fn payload_to_js(p: &Payload) -> JsValue {
    let e = Delivered::Event(Event {
        seq: 0,
        kind: String::new(),
        ts_ms: 0,
        payload: p.clone(),
    });
    get(&delivered(&e.encode_frame()), "payload")
}

/// A JS value as a payload: `null`/`undefined` → nil, booleans, numbers
/// (whole numbers that are exact in a double become integers), strings,
/// `Uint8Array`/`ArrayBuffer` → binary, arrays, `Map`s and plain objects →
/// maps. Anything else (functions, symbols, cycles) is an error.
pub fn payload_from_js(v: &JsValue) -> Result<Payload, String> {
    payload_from_js_at(v, 0)
}

fn payload_from_js_at(v: &JsValue, depth: usize) -> Result<Payload, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "nested deeper than {MAX_DEPTH} levels (or a cycle)"
        ));
    }
    let inner = |v: &JsValue| payload_from_js_at(v, depth + 1);
    if v.is_null() || v.is_undefined() {
        return Ok(Payload::Nil);
    }
    if let Some(b) = v.as_bool() {
        return Ok(Payload::Boolean(b));
    }
    if let Some(n) = v.as_f64() {
        return Ok(if Number::is_safe_integer(v) {
            Payload::from(n as i64)
        } else {
            Payload::F64(n)
        });
    }
    if let Some(s) = v.as_string() {
        return Ok(Payload::from(s));
    }
    if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        return Ok(Payload::Binary(bytes.to_vec()));
    }
    if let Some(buffer) = v.dyn_ref::<ArrayBuffer>() {
        return Ok(Payload::Binary(Uint8Array::new(buffer).to_vec()));
    }
    if Array::is_array(v) {
        return try_map(&Array::from(v), |item| inner(&item)).map(Payload::Array);
    }
    if v.is_function() || v.is_symbol() || v.is_bigint() {
        return Err(format!(
            "cannot send {}",
            v.js_typeof().as_string().unwrap_or_default()
        ));
    }
    let entries = match v.dyn_ref::<Map>() {
        Some(map) => Array::from(&map.entries()),
        None => Object::entries(&Object::from(v.clone())),
    };
    try_map(&entries, |pair| {
        let pair = Array::from(&pair);
        Ok((inner(&pair.get(0))?, inner(&pair.get(1))?))
    })
    .map(Payload::Map)
}

/// `f` over a JS array, stopping at the first error. A plain loop: the
/// `collect::<Result<Vec<_>, _>>()` it replaces linked a copy of the
/// iterator adapters for each use (about 1 KB of the module each).
pub(crate) fn try_map<T>(
    array: &Array,
    mut f: impl FnMut(JsValue) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(array.length() as usize);
    for i in 0..array.length() {
        out.push(f(array.get(i))?);
    }
    Ok(out)
}

/// A JS value as text for an error message (JSON where it can be), formatted
/// by JS so no number formatting is linked into the wasm.
pub(crate) fn show(v: &JsValue) -> String {
    js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| s.as_string())
        .unwrap_or_else(|| v.js_typeof().as_string().unwrap_or_default())
}

pub(crate) fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// The application's listeners, in the order they were added. A list, not
/// a map: there are a handful, and a `HashMap` costs the browser module its
/// hasher and table code.
#[derive(Clone, Default)]
pub(crate) struct Listeners(Vec<(String, Function)>);

impl Listeners {
    pub(crate) fn of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Function> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, f)| f)
    }

    pub(crate) fn add(&mut self, name: String, f: Function) {
        self.0.push((name, f));
    }

    pub(crate) fn remove(&mut self, name: &str, f: &Function) {
        self.0.retain(|(n, g)| !(n == name && g == f));
    }
}

/// Calls the listeners for each emit, with no borrow held.
pub(crate) fn emit_all(listeners: &Listeners, emits: Vec<(&str, JsValue)>) {
    for (name, value) in emits {
        for f in listeners.of(name) {
            if let Err(e) = f.call1(&JsValue::NULL, &value) {
                web_sys::console::error_2(
                    &format!("station-link: a '{name}' listener threw").into(),
                    &e,
                );
            }
        }
    }
}

/// An event, gap or snapshot as its JS listener gets it.
pub(crate) fn delivered_to_js(d: &Delivered, emits: &mut Vec<(&'static str, JsValue)>) {
    let name = match d {
        Delivered::Event(_) => "event",
        Delivered::Gap(_) => "gap",
        Delivered::Snapshot(_) => "snapshot",
    };
    emits.push((name, delivered(&d.encode_frame())));
}

/// A follower's relayed send as a session input.
pub(crate) fn publish_input(msg: &JsValue) -> Option<Input> {
    let kind = get(msg, "kind").as_string()?;
    let payload = get(msg, "payload");
    let payload: Payload = if payload.is_undefined() {
        Payload::Nil
    } else {
        payload_from_js(&payload).ok()?
    };
    let delivery = get(msg, "delivery")
        .as_string()
        .and_then(|d| Delivery::from_name(&d))
        .unwrap_or(Delivery::Reliable);
    let ttl_ms = get(msg, "ttlMs").as_f64().map(|v| v.max(0.0) as u64);
    Some(Input::Publish {
        kind,
        payload,
        delivery,
        ttl_ms,
    })
}

/// A field of a JS object (`undefined` when absent).
pub(crate) fn get(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// "unknown option `maxAttempt` (options: ...)": one message for every
/// name the API refuses (options, send options, events).
pub(crate) fn unknown(what: &str, name: &str, known: &str) -> String {
    format!("unknown {what} `{name}` (known: {known})")
}
