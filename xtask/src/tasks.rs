//! The tasks themselves, and the small helpers they share.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::setup;

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn step(what: &str) {
    eprintln!("\n==> {what}");
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command to completion, failing on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Totals over every `cargo test` run, for the closing summary line.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
    failures: Vec<String>,
}

impl Tally {
    /// Runs a test command, echoing its output and adding up its
    /// `test result:` lines. A failing run is recorded, not fatal, so the
    /// summary covers everything.
    fn run(&mut self, name: &str, cmd: &mut Command) -> Result<()> {
        step(name);
        let started = Instant::now();
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start {cmd:?}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.trim().strip_prefix("test result: ") {
                for part in rest.split([';', '.']) {
                    let mut words = part.split_whitespace();
                    if let (Some(n), Some(label)) = (words.next(), words.next()) {
                        if let Ok(n) = n.parse::<u64>() {
                            match label {
                                "passed" => self.passed += n,
                                "failed" => self.failed += n,
                                "ignored" => self.ignored += n,
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
        let status = child.wait()?;
        eprintln!(
            "    {name}: {status} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        if !status.success() {
            self.failures.push(name.to_string());
        }
        Ok(())
    }
}

pub fn test(lint: bool) -> Result<()> {
    let started = Instant::now();
    step("checking tools");
    setup::all()?;
    if lint {
        step("cargo fmt --check");
        run(cargo().args(["fmt", "--all", "--check"]))
            .context("formatting differs; run `cargo fmt --all`")?;
        step("clippy (native and wasm32), warnings are errors");
        run(cargo().args([
            "clippy",
            "--workspace",
            "--exclude",
            "wasm-client",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        run(cargo().args([
            "clippy",
            "-p",
            "wasm-client",
            "--target",
            "wasm32-unknown-unknown",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    step("building the edge proxy for the end-to-end tests");
    run(cargo().args(["build", "-p", "edge-proxy"]))?;
    let proxy_bin = root().join("target/debug/edge-proxy");

    let mut tally = Tally::default();
    tally.run(
        "native tests: protocol, properties, proxy, end-to-end",
        cargo()
            .args(["test", "--workspace", "--exclude", "wasm-client"])
            .env("EDGE_PROXY_BIN", &proxy_bin),
    )?;
    tally.run(
        "browser tests: wasm-client in headless Chromium",
        cargo()
            .args([
                "test",
                "-p",
                "wasm-client",
                "--target",
                "wasm32-unknown-unknown",
                "--tests",
            ])
            .env("CHROMEDRIVER", "/usr/bin/chromedriver")
            .env("WASM_BINDGEN_TEST_TIMEOUT", "120")
            .env("EDGE_PROXY_BIN", &proxy_bin),
    )?;

    let minutes = started.elapsed().as_secs_f64() / 60.0;
    eprintln!("\nall test runs finished in {minutes:.1} min");
    if !tally.failures.is_empty() {
        eprintln!("failed runs: {}", tally.failures.join(", "));
    }
    println!(
        "summary: {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.ignored
    );
    if !tally.failures.is_empty() || tally.failed > 0 {
        bail!("some tests failed");
    }
    Ok(())
}

/// Builds the browser client's npm package into `wasm-client/pkg`.
pub fn pkg() -> Result<PathBuf> {
    setup::wasm_target()?;
    setup::wasm_bindgen_cli()?;
    step("building the wasm client (release)");
    run(cargo().args([
        "build",
        "-p",
        "wasm-client",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "wasm-release",
    ]))?;
    let out = root().join("wasm-client/pkg");
    run(Command::new("wasm-bindgen")
        .current_dir(root())
        .args([
            "--target",
            "web",
            "--remove-name-section",
            "--remove-producers-section",
            "--out-dir",
        ])
        .arg(&out)
        .arg("target/wasm32-unknown-unknown/wasm-release/wasm_client.wasm"))?;
    Ok(out)
}

pub fn demo(port: u16) -> Result<()> {
    let pkg = pkg()?;
    // The dashboard imports the package from /pkg.
    let www_pkg = root().join("www/pkg");
    std::fs::create_dir_all(&www_pkg)?;
    for entry in std::fs::read_dir(&pkg)? {
        let entry = entry?;
        std::fs::copy(entry.path(), www_pkg.join(entry.file_name()))?;
    }
    step("starting the edge proxy with simulated hardware (Ctrl+C stops it)");
    run(cargo()
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "edge-proxy",
            "--",
            "--demo",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--www", "www", "--data-dir", "data/demo"]))
}
