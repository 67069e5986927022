//! What ships in `deploy/` for operators, checked with the tools that will
//! read it: the Prometheus alert rules with promtool (their unit tests in
//! `alerts.test.yml`), the systemd unit with systemd-analyze (verify and the
//! security score).

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
