//! HTTP surface: the WebSocket endpoint (`/ws`), `/stats` (JSON), `/metrics`
//! (Prometheus text), `/healthz`, and the dashboard's static files.

pub mod listener;
mod stats;
pub mod tls;

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
    // What the operator's view shows (client ids, addresses) needs a token
    // when tokens are configured.
    let private = Router::new()
        .route("/stats", get(stats::stats))
        .route("/metrics", get(stats::metrics_text))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            operator_only,
        ));
    let mut router = Router::new()
        .route("/ws", get(ws_upgrade))
        .route("/healthz", get(healthz))
        .merge(private);
    if let Some(www) = &state.config.www {
        router = router.fallback_service(tower_http::services::ServeDir::new(www));
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host_check,
        ))
        .with_state(state)
}

/// Every request names a host the proxy answers for (DNS rebinding: a
/// foreign page whose name resolves here carries its own name).
async fn host_check(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host())
        .map(str::to_string);
    if let Some(host) = host {
        if !state.hosts.allows(&host) {
            state.bad_input(ErrorCode::Unauthorized);
            tracing::warn!(host = ?host, "EVENT_HOST_REFUSED: add it to allowed_hosts if it is this proxy's name");
            return (
                StatusCode::FORBIDDEN,
                format!(
                    "host {host:?} is not one this proxy answers for; add it to allowed_hosts\n"
                ),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// `/stats` and `/metrics` with tokens configured: any configured token (or
/// `metrics_token`), as `Authorization: Bearer ...` (Prometheus'
/// `bearer_token`) or `?token=...`.
async fn operator_only(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let config = &state.config;
    if config.tokens.is_empty() && config.metrics_token.is_none() {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let query = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_string)
    });
    let presented = bearer.or(query);
    let allowed = presented.as_deref().is_some_and(|p| {
        crate::auth::role_for(&config.tokens, Some(p), crate::auth::Role::Read)
            .is_some_and(|_| !config.tokens.is_empty())
            || config
                .metrics_token
                .as_deref()
                .is_some_and(|m| crate::auth::secrets_equal(m, p))
    });
    if !allowed {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a token is needed: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
        )
            .into_response();
    }
    next.run(request).await
}

async fn ws_upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(listener::Remote(remote)): ConnectInfo<listener::Remote>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, &state.hosts, &state.config.allowed_origins) {
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
