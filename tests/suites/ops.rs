//! What ships in `deploy/` for operators, checked with the tools that will
//! read it: the Prometheus alert rules with promtool (their unit tests in
//! `alerts.test.yml`), the systemd unit with systemd-analyze (verify and the
//! security score), the Grafana dashboard against a demo proxy's `/metrics`.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::tools::{run_ok, systemd_analyze, tool, verify_and_score};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[test]
fn alert_rules_are_valid_and_their_unit_tests_pass() {
    let Some(promtool) = tool("promtool", &["/usr/bin/promtool"], "prometheus") else {
        return;
    };
    let dir = deploy().join("prometheus");
    run_ok(
        Command::new(&promtool)
            .args(["check", "rules", "alerts.yml"])
            .current_dir(&dir),
    );
    let out = run_ok(
        Command::new(&promtool)
            .args(["test", "rules", "alerts.test.yml"])
            .current_dir(&dir),
    );
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert the issue asks for is there and tested.
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts.test.yml")).unwrap();
    for alert in [
        "StationLinkProxyDown",
        "StationLinkHardwareLinkFailed",
        "StationLinkMaxRetriesExceeded",
        "StationLinkPowerCritical",
        "StationLinkTxWatchdogFired",
        "StationLinkEventLogUnavailable",
        "StationLinkNatsDisconnected",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}")),
            "no rule {alert}"
        );
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "no unit test for {alert}"
        );
    }
}

#[test]
fn the_systemd_unit_verifies_and_scores_three_or_better_yet_reaches_serial_ports() {
    let unit = std::fs::read_to_string(deploy().join("edge-proxy.service")).unwrap();
    // What must stay: serial ports and pseudo-terminals, reload, sockets,
    // state, the credentials hint; and no hidden override of the config.
    for line in [
        "DeviceAllow=char-ttyUSB rw",
        "DeviceAllow=char-ttyACM rw",
        "DeviceAllow=char-pts rw",
        "SupplementaryGroups=dialout",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=65536",
        "StateDirectory=edge-proxy",
        "DynamicUser=yes",
        "#LoadCredential=tokens.toml:",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet=",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "the unit lacks {line}"
        );
    }
    assert!(
        !unit.contains("Environment=EDGE_PROXY_DATA_DIR"),
        "an environment override silently beats data_dir in the config file"
    );
    assert!(unit.contains("--data-dir /var/lib/edge-proxy"));
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    // `verify` wants the ExecStart binary to exist: point it at one that does.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge-proxy.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/edge-proxy", "/bin/true"),
    )
    .unwrap();
    let (score, report) = verify_and_score(&analyze, &path);
    assert!(score <= 3.0, "exposure {score} > 3.0:\n{report}");
}

/// The unit's settings (no comments, no blank lines), in order.
fn directives(unit: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_packaged_unit_is_the_deploy_unit_with_the_package_paths_and_user() {
    let base = std::fs::read_to_string(deploy().join("edge-proxy.service")).unwrap();
    let packaged = std::fs::read_to_string(deploy().join("debian/edge-proxy.service")).unwrap();
    // The package's differences, and nothing else: a sandbox setting added
    // to one unit must be added to the other.
    let expected: Vec<String> = directives(&base)
        .into_iter()
        .flat_map(|line| match line.as_str() {
            "DynamicUser=yes" => vec!["User=station-link".into(), "Group=station-link".into()],
            _ => vec![line
                .replace("/usr/local/bin/edge-proxy", "/usr/bin/edge-proxy")
                .replace("/etc/edge-proxy/", "/etc/station-link/")
                .replace("/var/lib/edge-proxy", "/var/lib/station-link")
                .replace("Directory=edge-proxy", "Directory=station-link")],
        })
        .collect();
    assert_eq!(directives(&packaged), expected);
    // The commented-out credential line, adapted too.
    assert!(packaged
        .lines()
        .any(|l| l == "#LoadCredential=tokens.toml:/etc/station-link/tokens.toml"));
}

/// The metric names a PromQL expression reads: identifiers that are not
/// functions (followed by `(`), keywords, label names of `by (...)` and
/// the like, or inside `{...}` label matchers, `[...]` ranges and strings.
fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 11] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
    ];
    // Aggregations, which may have `by (...)` before their `(`.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_group => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_group = false;
                i += 1;
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if AGGREGATIONS.contains(&word.as_str()) {
                    // An operator, not a metric.
                } else if KEYWORDS.contains(&word.as_str()) {
                    skip_group = matches!(
                        word.as_str(),
                        "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                    );
                } else if next != Some(&'(') {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn promql_metric_names_are_told_from_functions_labels_and_keywords() {
    assert_eq!(
        metric_names(
            r#"sum by (link, type) (increase(link_events_total{instance=~"$i", a="b}"}[5m])) > 0"#
        ),
        ["link_events_total"]
    );
    assert_eq!(
        metric_names(r#"time() - process_start_time_seconds{x="1"} / on (instance) up"#),
        ["process_start_time_seconds", "up"]
    );
    assert_eq!(
        metric_names(r#"proxy_log_commit_seconds{quantile="0.99"} * 1e3"#),
        ["proxy_log_commit_seconds"]
    );
}

/// The names of the samples in a Prometheus text exposition (a summary's
/// `name{quantile=...}`, `name_sum` and `name_count` all count).
fn exported(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_grafana_dashboard_is_valid_and_reads_only_metrics_the_proxy_exports() {
    let text = std::fs::read_to_string(deploy().join("grafana/station-link.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    // What Grafana needs to import it (its dashboard schema's required
    // fields, as far as they can be checked without a Grafana here).
    assert_eq!(dashboard["uid"], "station-link");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = std::collections::BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(panel["id"].as_u64().expect("a panel id")),
            "id of {title} repeats"
        );
        let kind = panel["type"].as_str().expect("panel type");
        assert!(
            [
                "row",
                "stat",
                "timeseries",
                "gauge",
                "table",
                "state-timeline"
            ]
            .contains(&kind),
            "{title}: type {kind}"
        );
        let grid = &panel["gridPos"];
        for key in ["h", "w", "x", "y"] {
            assert!(grid[key].as_u64().is_some(), "{title}: gridPos.{key}");
        }
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "{title} is wider than the grid"
        );
        if kind == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("targets[].expr");
            assert!(target["refId"].as_str().is_some(), "{title}: refId");
            exprs.push((title.to_string(), expr.to_string()));
        }
    }
    // Every panel the issue asks for.
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Link state",
        "Link health",
        "Forward power",
        "SWR",
        "Sessions",
        "Delivery rate",
        "Lag",
        "p99",
        "CPU",
        "Resident memory",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel for {wanted}: {titles:?}"
        );
    }
    // The names the proxy really exports: with the demo hardware, the rig
    // port and one dashboard connected, and on a JetStream log for the NATS
    // gauge.
    let demo = e2e::Proxy::start("demo = true\nrigctl_listen = \"127.0.0.1:0\"\n");
    let mut dashboard = e2e::TestClient::new("grafana-check");
    dashboard.connect(&demo.ws_url()).await.unwrap();
    dashboard
        .publish(
            "note",
            shared_protocol::frame::Payload::from(1),
            shared_protocol::frame::Delivery::Reliable,
            None,
        )
        .await
        .unwrap();
    let wanted: std::collections::BTreeSet<String> =
        exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut have = std::collections::BTreeSet::new();
    let mut nats = None;
    loop {
        have.extend(exported(&demo.get("/metrics").1));
        if wanted.iter().any(|n| n.starts_with("proxy_log_nats")) && nats.is_none() {
            let server = e2e::Nats::start();
            let shared = e2e::Proxy::start(&format!("log = \"{}\"\n", server.url()));
            have.extend(exported(&shared.get("/metrics").1));
            nats = Some((server, shared));
        }
        let missing: Vec<&String> = wanted.iter().filter(|n| !have.contains(*n)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dashboard reads metrics the proxy does not export: {missing:?}"
        );
        // The dashboard reads meanwhile (its session's gauges move).
        dashboard
            .pump_until(std::time::Duration::from_millis(200), |_| false)
            .await
            .unwrap();
    }
}
