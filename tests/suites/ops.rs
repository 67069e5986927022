//! What ships in `deploy/` for operators, checked with the tools that will
//! read it: the Prometheus alert rules with promtool (their unit tests in
//! `alerts.test.yml`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The tool at one of `paths`, or `None` with a note on stderr: the tests
/// then skip (`cargo xtask setup` installs it, so CI runs them).
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
