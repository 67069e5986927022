//! `/stats` (JSON for people and the dashboard) and `/metrics` (Prometheus).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::app::AppState;

/// A shared status as JSON (`null` when absent).
fn shown<T: serde::Serialize>(status: &Option<Arc<Mutex<T>>>) -> Option<serde_json::Value> {
    let status = status.as_ref()?.lock().ok()?;
    serde_json::to_value(&*status).ok()
}

pub(super) async fn stats(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
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
    // One reading, so kinds and bytes describe the same moment.
    let (state_kinds, state_bytes) = state.log.state_usage();
    Json(json!({
        "proxy": state.config.proxy_name,
        "log": state.log.describe(),
        "state": {
            "kinds": state_kinds,
            "bytes": state_bytes,
            "max_kinds": state.config.max_state_kinds,
            "max_bytes": state.config.max_state_bytes,
        },
        // The deduplication table (null on a shared log: the stream's
        // duplicate window deduplicates there).
        "publishers": {
            "entries": state.log.publishers(),
            "max": state.config.max_publishers,
            "ttl_ms": state.config.publisher_ttl_ms,
        },
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
            // Volatile readings handed out and not yet on disk (written
            // with the next commit or trim, at most a minute later).
            "unwritten": state.log.head().saturating_sub(state.log.durable_head()),
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
        "programs": state.programs.describe(),
        // Who holds the transmitter through this proxy: the dashboards'
        // list shows which one is keying.
        "tx": { "keyed_by": state.watchdog.keyed_by() },
        "sessions": sessions,
    }))
}

pub(super) async fn metrics_text(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    metrics::gauge!("proxy_global_seq").set(state.log.head() as f64);
    crate::telemetry::collect_process();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.prometheus.render(),
    )
}
