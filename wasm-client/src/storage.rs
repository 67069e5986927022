//! localStorage, used defensively: storage that is disabled, full or corrupt
//! gives an error the application hears about, and the link keeps working in
//! memory.
//!
//! Keys (`PREFIX` is the `storagePrefix` option):
//! - `PREFIX:client_id`: the persistent client id;
//! - `PREFIX:cursor`: `{"epoch": n, "last_seq": n}`;
//! - `PREFIX:outbox`: `{"next_client_seq": n, "outbox": [Publish, ...]}`.

use serde::{Deserialize, Serialize};
use shared_protocol::client::Persisted;
use shared_protocol::frame::Publish;
use wasm_bindgen::JsValue;

pub struct Store {
    storage: Option<web_sys::Storage>,
    prefix: String,
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    epoch: u64,
    last_seq: u64,
}

#[derive(Serialize, Deserialize)]
struct SavedOutbox {
    next_client_seq: u64,
    outbox: Vec<Publish>,
}

/// Objects as plain JSON objects, so stored values read naturally.
fn to_json<T: Serialize>(value: &T) -> Result<String, String> {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    let js = value.serialize(&serializer).map_err(|e| e.to_string())?;
    js_sys::JSON::stringify(&js)
        .map(String::from)
        .map_err(|e| format!("{e:?}"))
}

fn from_json<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
    let js = js_sys::JSON::parse(text).map_err(|_| "not JSON".to_string())?;
    serde_wasm_bindgen::from_value(js).map_err(|e| e.to_string())
}

impl Store {
    /// Opens localStorage; an error says why it is unavailable.
    pub fn open(prefix: &str) -> (Store, Option<String>) {
        let storage = web_sys::window().map(|w| w.local_storage());
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
            match from_json::<Cursor>(&text) {
                Ok(c) => {
                    persisted.epoch = Some(c.epoch);
                    persisted.last_seq = c.last_seq;
                }
                Err(e) => problems.push(format!(
                    "stored cursor is corrupt ({e}); starting from a snapshot"
                )),
            }
        }
        if let Some(text) = self.get("outbox") {
            match from_json::<SavedOutbox>(&text) {
                Ok(o) => {
                    persisted.next_client_seq = o.next_client_seq;
                    persisted.outbox = o.outbox;
                }
                Err(e) => {
                    problems.push(format!("stored outbox is corrupt ({e}); it was discarded"))
                }
            }
        }
        (persisted, problems)
    }

    pub fn save_cursor(&self, epoch: u64, last_seq: u64) -> Result<(), String> {
        self.set(
            "cursor",
            &format!("{{\"epoch\":{epoch},\"last_seq\":{last_seq}}}"),
        )
    }

    pub fn save_outbox(&self, next_client_seq: u64, outbox: &[Publish]) -> Result<(), String> {
        let saved = SavedOutbox {
            next_client_seq,
            outbox: outbox.to_vec(),
        };
        self.set("outbox", &to_json(&saved)?)
    }
}

fn describe(e: &JsValue) -> String {
    js_sys::Reflect::get(e, &JsValue::from_str("name"))
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// A random id: `crypto.randomUUID()` where available, else Math.random.
fn new_client_id() -> String {
    let from_crypto = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .map(|c| c.random_uuid());
    from_crypto.unwrap_or_else(|| {
        let a = (js_sys::Math::random() * 1e15) as u64;
        let b = (js_sys::Math::random() * 1e15) as u64;
        format!("{a:x}-{b:x}")
    })
}
