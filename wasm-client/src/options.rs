//! `new Link(url, options)`: the JS options object, its defaults (from the
//! requirements) and its mapping onto the sans-IO `ClientConfig`.

use serde::Deserialize;
use shared_protocol::backoff::{BackoffConfig, Profile};
use shared_protocol::client::ClientConfig;
use shared_protocol::heartbeat::HeartbeatConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LinkOptions {
    /// "stable" (5 attempts, 1 s), "unstable" (20, 5 s), "lowBandwidth" (10, 3 s);
    /// absent: the dashboard default (10 attempts, 1 s .. 30 s).
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
    /// leader elected with Web Locks relays through a BroadcastChannel).
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

impl LinkOptions {
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let mut backoff = match self.profile.as_deref() {
            None => BackoffConfig::DASHBOARD,
            Some("stable") => BackoffConfig::profile(Profile::Stable),
            Some("unstable") => BackoffConfig::profile(Profile::Unstable),
            Some("lowBandwidth") => BackoffConfig::profile(Profile::LowBandwidth),
            Some(other) => {
                return Err(format!(
                    "unknown profile {other:?} (stable, unstable, lowBandwidth)"
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
