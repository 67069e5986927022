//! Metric names and their help texts, in one place. `/metrics` renders them
//! in the Prometheus text format (`promtool check metrics` accepts it).
//!
//! Every metric the proxy can emit is described here, and those whose label
//! values are known up front are registered at zero by [`register`], so an
//! alert on a counter (`increase(...[5m]) > 0`) works from the first scrape
//! instead of only after the first increment.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// The process's own metrics, from the `metrics-process` crate (read from
/// `/proc/self` at each scrape by [`collect_process`]):
/// `process_cpu_seconds_total` (whole seconds: the `metrics` crate's counters
/// are integers), `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_virtual_memory_max_bytes`,
/// `process_open_fds`, `process_max_fds`, `process_start_time_seconds`,
/// `process_threads`: the names Prometheus' own client libraries use.
fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Brings the process metrics up to date (before each `/metrics` render).
pub fn collect_process() {
    process().collect();
}

pub fn describe() {
    process().describe();
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
    describe_gauge!(
        "proxy_publishers",
        "Clients the publishers (deduplication) table remembers, at most max_publishers (embedded log)."
    );
    describe_counter!(
        "proxy_publishers_forgotten_total",
        "Clients dropped from the publishers table: silent for publisher_ttl_ms, or the longest silent beyond max_publishers."
    );
    describe_counter!(
        "proxy_log_state_puts_dropped_total",
        "Last values not kept in the shared log's state bucket (NATS away; a newer value follows)."
    );
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
    describe_counter!(
        "proxy_tx_watchdog_unkeys_total",
        "Transmitter unkeys by the TX watchdog, by reason."
    );
    describe_counter!(
        "bridge_log_dropped_total",
        "Hardware events dropped because the event log did not keep up."
    );
    describe_gauge!(
        "link_state",
        "1 for the hardware link's current state, 0 for the others (labels link, state)."
    );
    describe_gauge!(
        "link_health_score",
        "Health score 0..100 of a hardware link (0 while failed or not yet connected)."
    );
    describe_counter!(
        "link_reconnects_total",
        "Reconnects of a hardware link since start."
    );
    describe_counter!(
        "link_events_total",
        "Hardware link events, by link and type (EVENT_MAX_RETRIES_EXCEEDED, EVENT_POWER_CRITICAL, ...)."
    );
    describe_gauge!(
        "power_forward_watts",
        "Forward power in watts, from the power meter (0 before the first reading)."
    );
    describe_gauge!(
        "power_swr",
        "Standing-wave ratio from the power meter (0 before a reading with forward power)."
    );
    describe_gauge!(
        "power_alarm_level",
        "Power monitor alarm level: 0 normal, 1 warning, 2 critical."
    );
    describe_gauge!(
        "rig_programs_connected",
        "Programs connected to the rig port (rigctl) and the virtual CAT port."
    );
    describe_counter!("rig_commands_total", "Commands received from programs.");
    describe_counter!(
        "rig_sets_total",
        "Sets from programs on the rig port, by result (ok: the radio confirmed)."
    );
    describe_counter!(
        "rig_connections_refused_total",
        "Rig-port connections refused, by reason."
    );
}

/// The `reason` labels of `proxy_bad_input_total` (see `AppState::bad_input`).
pub const BAD_INPUT_REASONS: [&str; 9] = [
    "malformed",
    "too_large",
    "unsupported_version",
    "protocol_violation",
    "unauthorized",
    "stale",
    "replaced",
    "shutting_down",
    "unavailable",
];

/// The `result` labels of `proxy_publishes_total`.
pub const PUBLISH_RESULTS: [&str; 9] = [
    "applied",
    "duplicate",
    "rejected_expired",
    "rejected_forbidden",
    "rejected_rate_limited",
    "rejected_invalid",
    "rejected_unavailable",
    "rejected_tx_timeout",
    "rejected_state_full",
];

/// The `reason` labels of `proxy_connections_refused_total`.
pub const REFUSED_REASONS: [&str; 4] = [
    "max_connections",
    "displaced_unfinished",
    "tls_handshake",
    "header_timeout",
];

/// The `reason` labels of `proxy_tx_watchdog_unkeys_total`: the session
/// watchdog's and the radio link's own backstop's.
pub const UNKEY_REASONS: [&str; 8] = [
    "silent",
    "session_ended",
    "max_tx_time",
    "shutting_down",
    "no_keeper_at_start",
    "log_gap",
    "max_on_air",
    "keepalive_lost",
];

/// Registers, at zero, the metrics whose labels are known before anything
/// happens. Hardware links register theirs in [`register_link`].
pub fn register() {
    use metrics::{counter, gauge};
    for name in [
        "proxy_connections_total",
        "proxy_events_appended_total",
        "proxy_events_sent_total",
        "proxy_events_acked_total",
        "proxy_handshakes_refused_total",
        "proxy_log_trimmed_total",
        "proxy_publishers_forgotten_total",
        "proxy_log_commit_failures_total",
        "proxy_log_state_puts_dropped_total",
        "bridge_log_dropped_total",
    ] {
        counter!(name).absolute(0);
    }
    for reason in BAD_INPUT_REASONS {
        counter!("proxy_bad_input_total", "reason" => reason).absolute(0);
    }
    for result in PUBLISH_RESULTS {
        counter!("proxy_publishes_total", "result" => result).absolute(0);
    }
    for reason in REFUSED_REASONS {
        counter!("proxy_connections_refused_total", "reason" => reason).absolute(0);
    }
    for reason in UNKEY_REASONS {
        counter!("proxy_tx_watchdog_unkeys_total", "reason" => reason).absolute(0);
    }
    gauge!("proxy_connections_active").set(0.0);
    gauge!("proxy_global_seq").set(0.0);
}

/// Registers one hardware link's metrics (`link` is `radio` or `meter`):
/// health 0 and the `disconnected` state until the link reports, every event
/// type at zero.
pub fn register_link(link: &'static str) {
    use metrics::{counter, gauge};
    use shared_protocol::link::LinkEventType;
    gauge!("link_health_score", "link" => link).set(0.0);
    gauge!("link_state", "link" => link, "state" => "disconnected").set(1.0);
    counter!("link_reconnects_total", "link" => link).absolute(0);
    for kind in LinkEventType::ALL {
        counter!("link_events_total", "link" => link, "type" => kind.as_str()).absolute(0);
    }
}

/// Registers the rig port's metrics for one of its ports (`rigctl`,
/// `virtual_cat`), at zero, so a dashboard or an alert on them works before
/// the first program connects.
pub fn register_rig_port(port: &'static str) {
    use metrics::{counter, gauge};
    gauge!("rig_programs_connected", "port" => port).set(0.0);
    counter!("rig_commands_total", "port" => port).absolute(0);
    if port == "rigctl" {
        for result in ["ok", "error"] {
            counter!("rig_sets_total", "result" => result).absolute(0);
        }
        for reason in ["not_allowed", "too_many"] {
            counter!("rig_connections_refused_total", "reason" => reason).absolute(0);
        }
    }
}

/// Registers the power monitor's gauges (a meter or a radio reading power).
pub fn register_power() {
    use metrics::gauge;
    gauge!("power_forward_watts").set(0.0);
    gauge!("power_swr").set(0.0);
    gauge!("power_alarm_level").set(0.0);
}
