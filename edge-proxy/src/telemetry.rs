//! Metric names and their help texts, in one place. `/metrics` renders them
//! in the Prometheus text format (`promtool check metrics` accepts it).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub fn describe() {
    describe_counter!(
        "proxy_connections_total",
        "WebSocket connections that said Hello."
    );
    describe_gauge!(
        "proxy_connections_active",
        "Connections currently welcomed."
    );
    describe_counter!(
        "proxy_events_appended_total",
        "Events made durable in the log."
    );
    describe_counter!(
        "proxy_events_sent_total",
        "Events written to client sockets (replays included)."
    );
    describe_counter!("proxy_events_acked_total", "Events clients acknowledged.");
    describe_counter!(
        "proxy_publishes_total",
        "Client publishes by result (applied, duplicate, rejected_*)."
    );
    describe_counter!(
        "proxy_bad_input_total",
        "Connections closed for bad input, by reason."
    );
    describe_counter!(
        "proxy_handshakes_refused_total",
        "Upgrades refused by admission control (HTTP 503)."
    );
    describe_gauge!("proxy_global_seq", "The newest durable sequence number.");
    describe_counter!(
        "proxy_connections_refused_total",
        "Connections closed before a request: over max_connections, past the header timeout, or displaced by newer unfinished ones (label reason)."
    );
    describe_gauge!(
        "proxy_log_writable",
        "1 while the event log can store events, 0 while it cannot (a full disk; see /healthz)."
    );
    describe_gauge!(
        "proxy_log_nats_connected",
        "1 while the JetStream log's NATS connection is up, 0 while it is down (JetStream log only)."
    );
    describe_counter!(
        "proxy_log_publish_retries_total",
        "JetStream publishes retried (NATS unreachable or an ack lost)."
    );
    describe_counter!("proxy_log_trimmed_total", "Events removed by retention.");
    describe_counter!(
        "proxy_log_commit_failures_total",
        "Group commits that failed (nothing in them was applied)."
    );
    describe_histogram!(
        "proxy_log_commit_seconds",
        Unit::Seconds,
        "Time to write and fsync one group commit."
    );
    describe_histogram!(
        "proxy_log_batch_requests",
        "Requests written per group commit."
    );
    describe_gauge!(
        "connection_health_score",
        "Health score 0..100 per connection."
    );
    describe_counter!(
        "connection_health_checks_total",
        "Heartbeat health checks per connection, by result."
    );
    describe_gauge!(
        "connection_temperature",
        "How far behind a connection is, 0 (cool) to 1 (at max_behind)."
    );
    describe_counter!(
        "connection_cooling_events_total",
        "Times a connection was cooled, by reason."
    );
}
