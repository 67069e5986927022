//! HTTP surface: the WebSocket endpoint (`/ws`), `/stats` (JSON), `/metrics`
//! (Prometheus text), `/healthz`, and the dashboard's static files.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use shared_protocol::frame::{Drain, DrainReason, ErrorCode};
use tokio::sync::watch;

use crate::auth::origin_allowed;
use crate::clock::Clock;
use crate::config::Config;
use crate::eventlog::EventLog;
use crate::policy::RateBucket;
use crate::registry::{Registry, Totals};

pub struct AppState {
    pub config: Arc<Config>,
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
    handshakes: Mutex<RateBucket>,
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
        AppState {
            links: std::sync::OnceLock::new(),
            watchdog,
            registry: Registry::new(config.retention_ms),
            instance: format!("{:x}", fastrand::u32(..)),
            config,
            log,
            clock,
            shutdown,
            prometheus,
            handshakes,
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
}

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/ws", get(ws_upgrade))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }));
    if let Some(www) = &state.config.www {
        router = router.fallback_service(tower_http::services::ServeDir::new(www));
    }
    router.with_state(state)
}

async fn ws_upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, host, &state.config.allowed_origins) {
        state.bad_input(ErrorCode::Unauthorized);
        tracing::warn!(?origin, %remote, "EVENT_ORIGIN_REFUSED");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    if *state.shutdown.borrow() {
        return retry_later(2, "shutting down");
    }
    let admitted = state
        .handshakes
        .lock()
        .map(|mut b| b.take(state.clock.now()))
        .unwrap_or(Ok(()));
    let limit = state.config.max_frame_bytes as usize;
    if let Err(wait_ms) = admitted {
        metrics::counter!("proxy_handshakes_refused_total").increment(1);
        // A retry hint instead of work. Over WebSocket, not HTTP 503: a
        // browser cannot read the status or Retry-After of a failed upgrade.
        let drain = state.drain(DrainReason::Overload, wait_ms);
        return upgrade
            .read_buffer_size(1024)
            .write_buffer_size(1024)
            .on_upgrade(move |socket| crate::session::turn_away(socket, drain));
    }
    upgrade
        // Over our own limit we still read the frame, so we can answer with
        // a TooLarge error frame; far over it the socket is dropped.
        .max_message_size(limit * 2)
        .max_frame_size(limit * 2)
        // tungstenite's defaults (128 KiB read buffer per socket) would cost
        // over 1 GiB at 10,000 idle dashboards; frames here are small.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| crate::session::run(socket, state, remote))
}

fn retry_later(seconds: u64, why: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, seconds.to_string())],
        format!("{why}; retry in {seconds} s\n"),
    )
        .into_response()
}

/// A shared status as JSON (`null` when absent).
fn shown<T: serde::Serialize>(status: &Option<Arc<Mutex<T>>>) -> Option<serde_json::Value> {
    let status = status.as_ref()?.lock().ok()?;
    serde_json::to_value(&*status).ok()
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let links = state.links.get();
    let head = state.log.head();
    let now = state.clock.now();
    let sessions = state.registry.sessions(head, now);
    let active = sessions
        .iter()
        .filter(|s| {
            matches!(
                s.state,
                crate::registry::SessionState::Connected | crate::registry::SessionState::Stale
            )
        })
        .count();
    let buffered: u64 = sessions.iter().map(|s| s.behind).sum();
    let average_quality = if sessions.is_empty() {
        1.0
    } else {
        sessions.iter().map(|s| s.quality).sum::<f64>() / sessions.len() as f64
    };
    let t = state.totals();
    Json(json!({
        "proxy": state.config.proxy_name,
        "log": state.log.describe(),
        "epoch": state.log.epoch(),
        "global_seq": head,
        "uptime_ms": now,
        "connections": {
            "total": t.connections.load(Ordering::Relaxed),
            "active": active,
        },
        "events": {
            "sent": t.events_sent.load(Ordering::Relaxed),
            "acknowledged": t.events_acked.load(Ordering::Relaxed),
            "buffered": buffered,
            "dropped": t.events_dropped.load(Ordering::Relaxed),
            "retained": state.log.retained().unwrap_or(0),
        },
        "publishes": {
            "applied": t.publishes_applied.load(Ordering::Relaxed),
            "duplicate": t.publishes_duplicate.load(Ordering::Relaxed),
            "rejected": t.publishes_rejected.load(Ordering::Relaxed),
        },
        "bad_input": t.bad_input.load(Ordering::Relaxed),
        "average_quality": average_quality,
        "links": {
            "radio": links.and_then(|l| shown(&l.radio)),
            "meter": links.and_then(|l| shown(&l.meter)),
        },
        "power": links.and_then(|l| shown(&l.power)),
        "sessions": sessions,
    }))
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    metrics::gauge!("proxy_global_seq").set(state.log.head() as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.prometheus.render(),
    )
}
