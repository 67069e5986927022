//! What ships in `deploy/` for operators, checked with the tools that will
//! read it: the Prometheus alert rules with promtool (their unit tests in
//! `alerts.test.yml`), the systemd unit with systemd-analyze (verify and the
//! security score).

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The tool at one of `paths`, or `None` with a note on stderr: the tests
/// then skip (`cargo xtask setup` installs both, so CI runs them).
fn tool(name: &str, paths: &[&str], package: &str) -> Option<PathBuf> {
    let found = paths.iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        eprintln!("SKIPPED: {name} is missing (Debian package {package}; `cargo xtask setup` installs it)");
    }
    found
}

/// Runs `command`, panicking with its output unless it succeeds.
fn run_ok(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
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

/// The exposure score in `systemd-analyze security` output ("Overall
/// exposure level for edge-proxy.service: 1.7 OK").
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    line.rsplit(':')
        .next()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
    let Some(analyze) = tool(
        "systemd-analyze",
        &["/usr/bin/systemd-analyze", "/bin/systemd-analyze"],
        "systemd",
    ) else {
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
    run_ok(Command::new(&analyze).arg("verify").arg(&path));
    let report = run_ok(
        Command::new(&analyze)
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&path),
    );
    let score = exposure(&report).unwrap_or_else(|| panic!("no score in:\n{report}"));
    assert!(score <= 3.0, "exposure {score} > 3.0:\n{report}");
}
