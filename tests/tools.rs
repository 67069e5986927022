//! Third-party tools the suites run (promtool, systemd-analyze, dpkg-deb,
//! qemu-user): found or skipped with a note, run with their output kept.

use std::path::PathBuf;
use std::process::Command;

/// The tool at one of `paths`, or `None` with a note on stderr: the tests
/// then skip (`cargo xtask setup` installs them, so CI runs them).
pub fn tool(name: &str, paths: &[&str], package: &str) -> Option<PathBuf> {
    let found = paths.iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        eprintln!("SKIPPED: {name} is missing (Debian package {package}; `cargo xtask setup` installs it)");
    }
    found
}

/// Runs `command`, panicking with its output unless it succeeds; returns
/// its stdout and stderr together.
pub fn run_ok(command: &mut Command) -> String {
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

/// `systemd-analyze`, or `None` (skip) where systemd is not installed.
pub fn systemd_analyze() -> Option<PathBuf> {
    tool(
        "systemd-analyze",
        &["/usr/bin/systemd-analyze", "/bin/systemd-analyze"],
        "systemd",
    )
}

/// The exposure score in `systemd-analyze security` output ("Overall
/// exposure level for edge-proxy.service: 1.7 OK").
pub fn exposure(report: &str) -> Option<f64> {
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

/// `systemd-analyze verify` and `security --offline=true` of the unit file
/// at `unit` (its ExecStart binary must exist): panics unless it verifies,
/// returns the exposure score and the report.
pub fn verify_and_score(analyze: &std::path::Path, unit: &std::path::Path) -> (f64, String) {
    run_ok(Command::new(analyze).arg("verify").arg(unit));
    let report = run_ok(
        Command::new(analyze)
            .args(["security", "--offline=true", "--no-pager"])
            .arg(unit),
    );
    let score = exposure(&report).unwrap_or_else(|| panic!("no score in:\n{report}"));
    (score, report)
}
