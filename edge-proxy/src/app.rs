//! The state every part of the running proxy shares: configuration, the
//! log, the session registry, the clock, the TX watchdog and the shutdown
//! signal. It lives here, not in the HTTP layer, so that sessions, the
//! bridge and the watchdog never import the web server.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use metrics_exporter_prometheus::PrometheusHandle;
use shared_protocol::frame::{Drain, DrainReason, ErrorCode};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::Config;
use crate::eventlog::EventLog;
use crate::policy::RateBucket;
use crate::registry::{Registry, Totals};

pub struct AppState {
    pub config: Arc<Config>,
    /// The host names requests may carry (see `auth::Hosts`).
    pub hosts: crate::auth::Hosts,
    /// The role of a client without a token when no tokens are configured:
    /// control only when the proxy listens on loopback alone.
    pub anonymous_role: crate::auth::Role,
    /// `stateless_kinds`, parsed (checked when the configuration loaded).
    pub stateless: crate::eventlog::StatelessKinds,
    pub log: EventLog,
    pub registry: Registry,
    pub clock: Clock,
    /// Becomes true when the proxy begins a graceful shutdown.
    pub shutdown: watch::Receiver<bool>,
    pub prometheus: PrometheusHandle,
    /// Distinguishes this process's session names from an earlier run's.
    pub instance: String,
    pub watchdog: crate::watchdog::Watchdog,
    /// The hardware links' status, once they run.
    pub links: std::sync::OnceLock<crate::bridge::Links>,
    /// Programs on the rig port and the virtual CAT port (`/stats`).
    pub programs: crate::programs::Programs,
    /// The global handshake budget (see [`AppState::admit_handshake`]).
    handshakes: Mutex<RateBucket>,
    /// Per source address (bounded: forgotten wholesale past 4,096 sources).
    handshakes_per_source: Mutex<std::collections::HashMap<std::net::IpAddr, RateBucket>>,
    crowd_at_shutdown: std::sync::atomic::AtomicU64,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        log: EventLog,
        shutdown: watch::Receiver<bool>,
        prometheus: PrometheusHandle,
    ) -> Self {
        let clock = Clock::new();
        let handshakes = Mutex::new(RateBucket::new(config.max_handshakes_per_sec, clock.now()));
        let watchdog = crate::watchdog::Watchdog::start(
            shared_protocol::txwatchdog::TxWatchdogConfig {
                keepalive_ms: config.tx_keepalive_ms,
                max_tx_ms: config.tx_max_ms,
            },
            log.clone(),
            clock,
            shutdown.clone(),
        );
        let hosts = crate::auth::Hosts::new(
            &config.allowed_hosts,
            crate::auth::Hosts::own_hostname().as_deref(),
        );
        let anonymous_role = if config.listen.ip().is_loopback() {
            crate::auth::Role::Control
        } else {
            crate::auth::Role::Read
        };
        let registry = Registry::new(config.retention_ms);
        let replacer = registry.clone();
        log.watch_sessions(move |claim| {
            if replacer.claimed_elsewhere(&claim) {
                tracing::info!(client_id = ?claim.client_id, "EVENT_SESSION_REPLACED: the client is now connected to another proxy of the shared log; its session here ends");
            }
        });
        let stateless =
            crate::eventlog::StatelessKinds::parse(&config.stateless_kinds).unwrap_or_default();
        AppState {
            stateless,
            hosts,
            anonymous_role,
            links: std::sync::OnceLock::new(),
            programs: Default::default(),
            watchdog,
            registry,
            instance: format!("{:x}", fastrand::u32(..)),
            config,
            log,
            clock,
            shutdown,
            prometheus,
            handshakes,
            handshakes_per_source: Mutex::default(),
            crowd_at_shutdown: Default::default(),
        }
    }

    /// A `Drain` for everyone connected now: come back after
    /// `drain_retry_after_ms` (at least `wait_ms`), spread so that the crowd
    /// returns under the handshake budget.
    pub fn drain(&self, reason: DrainReason, wait_ms: u64) -> Drain {
        // Sessions close one by one during a shutdown: size the window by
        // the crowd as it was when the shutdown began, not what is left.
        let crowd = self
            .registry
            .live_connections()
            .max(self.crowd_at_shutdown.load(Ordering::Relaxed));
        Drain {
            retry_after_ms: self.config.drain_retry_after_ms.max(wait_ms),
            jitter_ms: crate::policy::drain_spread_ms(crowd, self.config.max_handshakes_per_sec),
            reason,
        }
    }

    /// Begins a graceful shutdown: every session sends its `Drain` and closes.
    pub fn begin_shutdown(&self, shutdown: &watch::Sender<bool>) {
        self.crowd_at_shutdown
            .store(self.registry.live_connections(), Ordering::Relaxed);
        shutdown.send_replace(true);
    }

    pub fn totals(&self) -> &Totals {
        &self.registry.totals
    }

    pub fn bad_input(&self, code: ErrorCode) {
        self.totals().bad_input.fetch_add(1, Ordering::Relaxed);
        let reason = match code {
            ErrorCode::Malformed => "malformed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::ProtocolViolation => "protocol_violation",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Stale => "stale",
            ErrorCode::Replaced => "replaced",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Unavailable => "unavailable",
        };
        metrics::counter!("proxy_bad_input_total", "reason" => reason).increment(1);
    }

    /// Takes one handshake from the source's budget and the global one, or
    /// says how long to wait. Loopback has no budget of its own (the load
    /// generator, a local reverse proxy).
    pub fn admit_handshake(&self, source: std::net::IpAddr) -> Result<(), u64> {
        let now = self.clock.now();
        let mut sources = match self.handshakes_per_source.lock() {
            Ok(sources) if !source.is_loopback() => Some(sources),
            _ => None,
        };
        if let Some(sources) = sources.as_mut() {
            if sources.len() >= 4_096 && !sources.contains_key(&source) {
                sources.clear();
            }
            let per_source = self.config.max_handshakes_per_sec_per_source;
            sources
                .entry(source)
                .or_insert_with(|| RateBucket::new(per_source, now))
                .take(now)?;
        }
        drop(sources);
        self.handshakes
            .lock()
            .map(|mut b| b.take(now))
            .unwrap_or(Ok(()))
    }
}
