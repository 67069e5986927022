//! HTTP surface: the WebSocket endpoint (`/ws`), `/stats` (JSON), `/metrics`
//! (Prometheus text), `/healthz`, and the dashboard's static files.

pub mod listener;
mod stats;

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use shared_protocol::frame::{DrainReason, ErrorCode};

use crate::app::AppState;
use crate::auth::origin_allowed;

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/ws", get(ws_upgrade))
        .route("/stats", get(stats::stats))
        .route("/metrics", get(stats::metrics_text))
        .route("/healthz", get(healthz));
    if let Some(www) = &state.config.www {
        router = router.fallback_service(tower_http::services::ServeDir::new(www));
    }
    router.with_state(state)
}

async fn ws_upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(listener::Remote(remote)): ConnectInfo<listener::Remote>,
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
    let admitted = state.admit_handshake(remote.ip());
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

/// 200 `ok` while the proxy can store events; 503 with the reason while it
/// cannot (a full disk, NATS unreachable), so a supervisor or a person sees it.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.log.problem() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the event log cannot store events: {problem}\n"),
        )
            .into_response(),
    }
}
