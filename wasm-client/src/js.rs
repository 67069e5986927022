//! Conversions between the session's values and plain JavaScript values,
//! and calling listeners: what every part of the JS shell shares.

use std::collections::HashMap;

use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use serde::Serialize;
use shared_protocol::client::Input;
use shared_protocol::frame::{Delivery, Payload};
use shared_protocol::receiver::Delivered;
use wasm_bindgen::prelude::*;

pub(crate) fn to_js<T: Serialize>(value: &T) -> JsValue {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    value
        .serialize(&serializer)
        .or_else(|_| value.serialize(&serde_wasm_bindgen::Serializer::new()))
        .unwrap_or(JsValue::NULL)
}

/// An event's payload as a plain JS value, by hand: about twice as fast as
/// going through serde for the one conversion every event needs.
pub(crate) fn payload_to_js(p: &Payload) -> JsValue {
    match p {
        Payload::Nil => JsValue::NULL,
        Payload::Boolean(b) => (*b).into(),
        Payload::Integer(i) => i
            .as_i64()
            .map(|v| v as f64)
            .or_else(|| i.as_u64().map(|v| v as f64))
            .unwrap_or(f64::NAN)
            .into(),
        Payload::F32(v) => f64::from(*v).into(),
        Payload::F64(v) => (*v).into(),
        Payload::String(s) => match s.as_str() {
            Some(s) => JsValue::from_str(s),
            None => Uint8Array::from(s.as_bytes()).into(),
        },
        Payload::Binary(b) | Payload::Ext(_, b) => Uint8Array::from(b.as_slice()).into(),
        Payload::Array(items) => items.iter().map(payload_to_js).collect::<Array>().into(),
        Payload::Map(entries) => {
            let o = Object::new();
            for (k, v) in entries {
                let key = match k {
                    Payload::String(s) => JsValue::from_str(s.as_str().unwrap_or_default()),
                    other => JsValue::from_str(&other.to_string()),
                };
                let _ = Reflect::set(&o, &key, &payload_to_js(v));
            }
            o.into()
        }
    }
}

pub(crate) fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

pub(crate) type Listeners = HashMap<String, Vec<Function>>;

/// Calls the listeners for each emit, with no borrow held.
pub(crate) fn emit_all(listeners: &Listeners, emits: Vec<(&str, JsValue)>) {
    for (name, value) in emits {
        if let Some(fns) = listeners.get(name) {
            for f in fns {
                if let Err(e) = f.call1(&JsValue::NULL, &value) {
                    web_sys::console::error_2(
                        &format!("station-link: a '{name}' listener threw").into(),
                        &e,
                    );
                }
            }
        }
    }
}

/// An event, gap or snapshot as its JS listener gets it.
pub(crate) fn delivered_to_js(d: Delivered, emits: &mut Vec<(&'static str, JsValue)>) {
    match d {
        Delivered::Event(e) => emits.push((
            "event",
            obj(&[
                ("seq", (e.seq as f64).into()),
                ("kind", e.kind.as_str().into()),
                ("tsMs", (e.ts_ms as f64).into()),
                ("payload", payload_to_js(&e.payload)),
            ]),
        )),
        Delivered::Gap(g) => emits.push(("gap", to_js(&g))),
        Delivered::Snapshot(s) => emits.push(("snapshot", to_js(&s))),
    }
}

/// A follower's relayed send as a session input.
pub(crate) fn publish_input(msg: &JsValue) -> Option<Input> {
    let kind = get(msg, "kind").as_string()?;
    let payload = get(msg, "payload");
    let payload: Payload = if payload.is_undefined() {
        Payload::Nil
    } else {
        serde_wasm_bindgen::from_value(payload).ok()?
    };
    let delivery = match get(msg, "delivery").as_string().as_deref() {
        Some("volatile") => Delivery::Volatile,
        _ => Delivery::Reliable,
    };
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
