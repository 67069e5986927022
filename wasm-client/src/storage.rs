//! localStorage (sessionStorage for a tab that does not share its
//! connection), used defensively: storage that is disabled, full or corrupt
//! gives an error the application hears about, and the link keeps working in
//! memory.
//!
//! Keys (`PREFIX` is the `storagePrefix` option):
//! - `PREFIX:client_id`: the persistent client id;
//! - `PREFIX:cursor`: `{"epoch": n, "last_seq": n, "at": unix ms}`;
//! - `PREFIX:state`: the last value of every kind as of that position (a
//!   `Snapshot` frame, one byte per character), so a reloaded page shows
//!   the station at once instead of a blank panel until the next event;
//! - `PREFIX:outbox`: `{"next_client_seq": n, "outbox": [Publish, ...]}`;
//! - `PREFIX:leader`: unix ms of the leading tab's newest beat (0 once it
//!   resigned), so that a tab that opens beside a busy leader follows it
//!   (`tabs::lease`).

use js_sys::Array;
use shared_protocol::client::Persisted;
use shared_protocol::frame::{encode_snapshot, Delivery, Publish, ServerFrame, Snapshot, State};
use wasm_bindgen::JsValue;

use crate::js::{get, num, obj, payload_from_js, publish_to_js, show, try_map, whole_number};

pub struct Store {
    storage: Option<web_sys::Storage>,
    prefix: String,
}

/// A stored whole number (what JSON gives back is a double).
fn whole(from: &JsValue, key: &str) -> Result<u64, String> {
    whole_number(&get(from, key)).ok_or_else(|| format!("`{key}` is not a whole number"))
}

fn parse(text: &str) -> Result<JsValue, String> {
    js_sys::JSON::parse(text).map_err(|_| "not JSON".to_string())
}

fn publish_from_js(v: &JsValue) -> Result<Publish, String> {
    let delivery = get(v, "delivery")
        .as_string()
        .and_then(|d| Delivery::from_name(&d))
        .ok_or("`delivery` is not reliable or volatile")?;
    let expires_at_ms = if get(v, "expires_at_ms").is_undefined() {
        None
    } else {
        Some(whole(v, "expires_at_ms")?)
    };
    Ok(Publish {
        client_seq: whole(v, "client_seq")?,
        kind: get(v, "kind").as_string().ok_or("`kind` is not a string")?,
        payload: payload_from_js(&get(v, "payload"))?,
        delivery,
        expires_at_ms,
        // Only a transmit command needs it, and those are never stored.
        ttl_ms: None,
    })
}

impl Store {
    /// Opens localStorage, or, for a tab that keeps its own connection
    /// (`per_tab`), sessionStorage: that tab's own identity, outbox and
    /// position, which survive its reloads and are never another tab's (two
    /// tabs with one client id would replace each other at the proxy). An
    /// error says why storage is unavailable.
    pub fn open(prefix: &str, per_tab: bool) -> (Store, Option<String>) {
        let storage = web_sys::window().map(|w| {
            if per_tab {
                w.session_storage()
            } else {
                w.local_storage()
            }
        });
        match storage {
            Some(Ok(Some(storage))) => (Store { storage: Some(storage), prefix: prefix.into() }, None),
            _ => (
                Store { storage: None, prefix: prefix.into() },
                Some("localStorage is unavailable; working in memory only (a reload will not resume)".into()),
            ),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn get(&self, name: &str) -> Option<String> {
        self.storage
            .as_ref()?
            .get_item(&self.key(name))
            .ok()
            .flatten()
    }

    fn set(&self, name: &str, value: &str) -> Result<(), String> {
        let Some(storage) = &self.storage else {
            return Ok(());
        };
        storage
            .set_item(&self.key(name), value)
            .map_err(|e| describe(&e))
    }

    /// Loads what the last page left. Problems are returned as messages; the
    /// corrupt part is replaced by a fresh default.
    pub fn load(&self, client_id_override: Option<&str>) -> (Persisted, Vec<String>) {
        let mut problems = Vec::new();
        let client_id = match client_id_override
            .map(str::to_string)
            .or_else(|| self.get("client_id"))
        {
            Some(id) if !id.is_empty() && id.len() <= 128 => id,
            _ => {
                let id = new_client_id();
                if let Err(e) = self.set("client_id", &id) {
                    problems.push(format!("could not store the client id: {e}"));
                }
                id
            }
        };
        let mut persisted = Persisted {
            client_id,
            ..Persisted::default()
        };
        if let Some(text) = self.get("cursor") {
            let cursor =
                parse(&text).and_then(|c| Ok((whole(&c, "epoch")?, whole(&c, "last_seq")?)));
            match cursor {
                Ok((epoch, last_seq)) => {
                    persisted.epoch = Some(epoch);
                    persisted.last_seq = last_seq;
                }
                Err(e) => problems.push(format!(
                    "stored cursor is corrupt ({e}); starting from a snapshot"
                )),
            }
        }
        if let Some(text) = self.get("outbox") {
            let saved = parse(&text).and_then(|o| {
                let list = get(&o, "outbox");
                if !Array::is_array(&list) {
                    return Err("`outbox` is not an array".to_string());
                }
                let outbox = try_map(&Array::from(&list), |p| publish_from_js(&p))?;
                Ok((whole(&o, "next_client_seq")?, outbox))
            });
            match saved {
                Ok((next_client_seq, outbox)) => {
                    persisted.next_client_seq = next_client_seq;
                    persisted.outbox = outbox;
                }
                Err(e) => {
                    problems.push(format!("stored outbox is corrupt ({e}); it was discarded"))
                }
            }
        }
        (persisted, problems)
    }

    /// The position, and the state as of it (written first: a state
    /// whose `upto` is not the stored position is never used).
    pub fn save_cursor(
        &self,
        epoch: u64,
        last_seq: u64,
        (upto, state): (u64, &State),
    ) -> Result<(), String> {
        let bytes = encode_snapshot(upto, state);
        let mut text = String::with_capacity(bytes.len());
        for b in bytes {
            text.push(char::from(b));
        }
        self.set("state", &text)?;
        let at = js_sys::Date::now() as u64;
        self.set(
            "cursor",
            &format!("{{\"epoch\":{epoch},\"last_seq\":{last_seq},\"at\":{at}}}"),
        )
    }

    /// The state the last page showed, if it is as of `last_seq`, with when
    /// it was saved (Unix ms).
    pub fn load_state(&self, last_seq: u64) -> Option<(Snapshot, u64)> {
        let at = parse(&self.get("cursor")?)
            .ok()
            .and_then(|c| whole(&c, "at").ok())?;
        let text = self.get("state")?;
        let mut bytes = Vec::with_capacity(text.len());
        for c in text.chars() {
            bytes.push(u8::try_from(c).ok()?);
        }
        match ServerFrame::decode(&bytes, usize::MAX) {
            Ok(ServerFrame::Snapshot(s)) if s.upto == last_seq => Some((s, at)),
            _ => None,
        }
    }

    /// The leading tab's stamp: it beat at `at` (Unix ms; 0 once it
    /// resigned).
    pub fn stamp_leader(&self, at: u64) {
        let _ = self.set("leader", &format!("{at}"));
    }

    /// How long ago (ms) the leading tab stamped itself, if it did.
    pub fn leader_age(&self) -> Option<f64> {
        Some(js_sys::Date::now() - js_sys::JSON::parse(&self.get("leader")?).ok()?.as_f64()?)
    }

    pub fn save_outbox(&self, next_client_seq: u64, outbox: &[Publish]) -> Result<(), String> {
        let list: Array = outbox.iter().map(publish_to_js).collect();
        let saved = obj(&[
            ("next_client_seq", num(next_client_seq)),
            ("outbox", list.into()),
        ]);
        let text = js_sys::JSON::stringify(&saved).map_err(|e| describe(&e))?;
        self.set("outbox", &String::from(text))
    }
}

fn describe(e: &JsValue) -> String {
    js_sys::Reflect::get(e, &JsValue::from_str("name"))
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_else(|| show(e))
}

/// A random id from `crypto.getRandomValues`, which every context has
/// (`crypto.randomUUID` exists only in secure contexts: not on a page served
/// over plain HTTP from a LAN name or address). Math.random only where there
/// is no `crypto` at all.
pub(crate) fn new_client_id() -> String {
    let mut bytes = [0u8; 16];
    let from_crypto = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(&mut bytes).is_ok());
    if !from_crypto {
        for b in &mut bytes {
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    // Hex by hand: no formatting machinery for one id.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 15)]));
    }
    id
}
