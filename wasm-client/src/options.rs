//! `new Link(url, options)`: the JS options object, its defaults (from the
//! requirements) and its mapping onto the sans-IO `ClientConfig`.

use js_sys::Object;
use shared_protocol::backoff::{BackoffConfig, Profile};
use shared_protocol::client::ClientConfig;
use shared_protocol::heartbeat::HeartbeatConfig;
use wasm_bindgen::JsValue;

use crate::js::{get, show, try_map, whole_number};

/// The options a page passes, with the names it passes them by (camelCase).
/// Read by hand rather than through serde: the browser build stays small.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// "stable" (5 attempts, 1 s), "unstable" (20, 5 s), "lowBandwidth" (10, 3 s);
    /// absent: the dashboard default (1 s .. 30 s, no attempt limit).
    pub profile: Option<String>,
    pub token: Option<String>,
    /// Prefix of the localStorage keys.
    pub storage_prefix: String,
    /// Override the persistent client id (normally generated once and stored).
    pub client_id: Option<String>,
    pub max_attempts: Option<u32>,
    pub base_delay_ms: Option<u64>,
    pub max_delay_ms: Option<u64>,
    /// Relative jitter, 0..1 (default 0.3).
    pub jitter: Option<f64>,
    /// Latency ping interval (default 10 s); the link is stale after 1.5x.
    pub ping_interval_ms: u64,
    pub outbox_capacity: usize,
    pub connect_timeout_ms: u64,
    /// Name of the devtools console object on `window`; `null` turns it off.
    pub console_name: Option<String>,
    /// Connect as soon as the link is constructed.
    pub auto_connect: bool,
    /// Tabs of the same origin and storage prefix share one connection (a
    /// leader elected over a BroadcastChannel relays through it). Off, or
    /// where there is no BroadcastChannel, each tab has its own identity.
    pub share_tabs: bool,
    /// More proxies serving the same station, tried in turn after the
    /// current one fails (its connection drops or cannot be opened).
    pub fallback_urls: Vec<String>,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            profile: None,
            token: None,
            storage_prefix: "station-link".into(),
            client_id: None,
            max_attempts: None,
            base_delay_ms: None,
            max_delay_ms: None,
            jitter: None,
            ping_interval_ms: 10_000,
            outbox_capacity: shared_protocol::outbox::DEFAULT_CAPACITY,
            connect_timeout_ms: 15_000,
            console_name: Some("stationLink".into()),
            auto_connect: true,
            share_tabs: true,
            fallback_urls: Vec::new(),
        }
    }
}

/// Every option's name, for the unknown-option error.
const NAMES: [&str; 15] = [
    "profile",
    "token",
    "storagePrefix",
    "clientId",
    "maxAttempts",
    "baseDelayMs",
    "maxDelayMs",
    "jitter",
    "pingIntervalMs",
    "outboxCapacity",
    "connectTimeoutMs",
    "consoleName",
    "autoConnect",
    "shareTabs",
    "fallbackUrls",
];

/// The same, for the message (a literal: `join` would link a copy of the
/// generic join code for one error message).
const NAMES_TEXT: &str = "profile, token, storagePrefix, clientId, maxAttempts, baseDelayMs, \
    maxDelayMs, jitter, pingIntervalMs, outboxCapacity, connectTimeoutMs, consoleName, \
    autoConnect, shareTabs, fallbackUrls";

/// One option of the JS object: absent (`undefined`) keeps the default.
struct Field<'a>(&'a JsValue, &'static str);

impl Field<'_> {
    fn value(&self) -> Option<JsValue> {
        Some(get(self.0, self.1)).filter(|v| !v.is_undefined())
    }

    /// For options without a "none": `null` keeps the default, like absent.
    fn present(&self) -> Option<JsValue> {
        self.value().filter(|v| !v.is_null())
    }

    fn wrong(&self, v: &JsValue, what: &str) -> String {
        format!("{} must be {what}, not {}", self.1, show(v))
    }

    /// `null` is "none" for the options whose default is a value.
    fn string(&self) -> Result<Option<Option<String>>, String> {
        self.value()
            .map(|v| match v.as_string() {
                Some(s) => Ok(Some(s)),
                None if v.is_null() => Ok(None),
                None => Err(self.wrong(&v, "a string")),
            })
            .transpose()
    }

    fn whole(&self) -> Result<Option<u64>, String> {
        self.present()
            .map(|v| whole_number(&v).ok_or_else(|| self.wrong(&v, "a whole number >= 0")))
            .transpose()
    }

    fn number(&self) -> Result<Option<f64>, String> {
        self.present()
            .map(|v| v.as_f64().ok_or_else(|| self.wrong(&v, "a number")))
            .transpose()
    }

    fn boolean(&self) -> Result<Option<bool>, String> {
        self.present()
            .map(|v| v.as_bool().ok_or_else(|| self.wrong(&v, "true or false")))
            .transpose()
    }

    fn strings(&self) -> Result<Option<Vec<String>>, String> {
        self.present()
            .map(|v| {
                let wrong = || self.wrong(&v, "an array of strings");
                if !js_sys::Array::is_array(&v) {
                    return Err(wrong());
                }
                try_map(&js_sys::Array::from(&v), |s| {
                    s.as_string().ok_or_else(wrong)
                })
            })
            .transpose()
    }
}

impl LinkOptions {
    /// Reads `new Link(url, options)`'s options; `undefined` or `null` gives
    /// the defaults. An unknown name or a value of the wrong type is an error
    /// naming the option, so a typo does not silently keep a default.
    pub fn from_js(options: &JsValue) -> Result<LinkOptions, String> {
        let mut o = LinkOptions::default();
        if options.is_undefined() || options.is_null() {
            return Ok(o);
        }
        if !options.is_object() {
            return Err(format!("options must be an object, not {}", show(options)));
        }
        for key in Object::keys(&Object::from(options.clone())).iter() {
            let key = key.as_string().unwrap_or_default();
            if !NAMES.contains(&key.as_str()) {
                return Err(crate::js::unknown("option", &key, NAMES_TEXT));
            }
        }
        let f = |name| Field(options, name);
        let count = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        if let Some(v) = f("profile").string()? {
            o.profile = v;
        }
        if let Some(v) = f("token").string()? {
            o.token = v;
        }
        if let Some(Some(v)) = f("storagePrefix").string()? {
            o.storage_prefix = v;
        }
        if let Some(v) = f("clientId").string()? {
            o.client_id = v;
        }
        o.max_attempts = f("maxAttempts").whole()?.map(count).or(o.max_attempts);
        o.base_delay_ms = f("baseDelayMs").whole()?.or(o.base_delay_ms);
        o.max_delay_ms = f("maxDelayMs").whole()?.or(o.max_delay_ms);
        o.jitter = f("jitter").number()?.or(o.jitter);
        o.ping_interval_ms = f("pingIntervalMs").whole()?.unwrap_or(o.ping_interval_ms);
        if let Some(n) = f("outboxCapacity").whole()? {
            o.outbox_capacity = usize::try_from(n).unwrap_or(usize::MAX);
        }
        o.connect_timeout_ms = f("connectTimeoutMs")
            .whole()?
            .unwrap_or(o.connect_timeout_ms);
        if let Some(v) = f("consoleName").string()? {
            o.console_name = v;
        }
        o.auto_connect = f("autoConnect").boolean()?.unwrap_or(o.auto_connect);
        o.share_tabs = f("shareTabs").boolean()?.unwrap_or(o.share_tabs);
        o.fallback_urls = f("fallbackUrls").strings()?.unwrap_or_default();
        Ok(o)
    }

    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let mut backoff = match self.profile.as_deref() {
            // A station display never gives up by itself: no attempt limit
            // unless asked for (a profile or `maxAttempts`), and even then
            // the session keeps probing at the maximum delay.
            None => BackoffConfig {
                max_attempts: None,
                ..BackoffConfig::DASHBOARD
            },
            Some("stable") => BackoffConfig::profile(Profile::Stable),
            Some("unstable") => BackoffConfig::profile(Profile::Unstable),
            Some("lowBandwidth") => BackoffConfig::profile(Profile::LowBandwidth),
            Some(other) => {
                return Err(format!(
                    "unknown profile \"{other}\" (stable, unstable, lowBandwidth)"
                ))
            }
        };
        if let Some(n) = self.max_attempts {
            backoff.max_attempts = Some(n);
        }
        if let Some(ms) = self.base_delay_ms {
            backoff.base_ms = ms.max(1);
        }
        if let Some(ms) = self.max_delay_ms {
            backoff.max_ms = ms.max(backoff.base_ms);
        }
        if let Some(j) = self.jitter {
            if !(0.0..=1.0).contains(&j) {
                let j = show(&JsValue::from(j));
                return Err(format!("jitter must be between 0 and 1, not {j}"));
            }
            backoff.jitter = j;
        }
        Ok(ClientConfig {
            token: self.token.clone(),
            backoff,
            heartbeat: HeartbeatConfig::every(self.ping_interval_ms.max(100)),
            outbox_capacity: self.outbox_capacity.max(1),
            connect_timeout_ms: self.connect_timeout_ms.max(100),
            ..ClientConfig::default()
        })
    }
}
