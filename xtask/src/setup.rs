//! Installs what the tests and the demo need, only when missing, and says
//! clearly what to do when it cannot.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::tasks::{root, run, step};

pub fn all() -> Result<()> {
    wasm_target()?;
    wasm_bindgen_cli()?;
    system_packages()?;
    Ok(())
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn wasm_target() -> Result<()> {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        return Ok(());
    }
    step("installing the wasm32-unknown-unknown target");
    run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))
        .context("`rustup target add wasm32-unknown-unknown` failed; run it by hand and retry")
}

/// The exact wasm-bindgen version in Cargo.lock: the CLI must match it.
pub fn locked_wasm_bindgen_version() -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))
        .context("Cargo.lock is missing; run `cargo generate-lockfile`")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == r#"name = "wasm-bindgen""# {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                return Ok(v.trim_matches('"').to_string());
            }
        }
    }
    bail!("wasm-bindgen is not in Cargo.lock")
}

pub fn wasm_bindgen_cli() -> Result<()> {
    let want = locked_wasm_bindgen_version()?;
    let have = output("wasm-bindgen", &["--version"]).unwrap_or_default();
    if have.split_whitespace().nth(1) == Some(want.as_str()) {
        return Ok(());
    }
    step(&format!(
        "installing wasm-bindgen-cli {want} (matches Cargo.lock; takes about 3 minutes once)"
    ));
    let locked = run(Command::new("cargo").args([
        "install",
        "--quiet",
        "--locked",
        "wasm-bindgen-cli",
        "--version",
        &want,
    ]));
    if locked.is_ok() {
        return Ok(());
    }
    // The CLI's own lock file can name a version the registry no longer has.
    run(Command::new("cargo").args(["install", "--quiet", "wasm-bindgen-cli", "--version", &want]))
        .with_context(|| {
            format!("could not install wasm-bindgen-cli {want}; try `cargo install wasm-bindgen-cli --version {want}` by hand")
        })
}

/// Debian packages: Chromium and its driver for the browser tests, Hamlib for
/// the rigctld interop tests and its Python bindings for the rig port's
/// (`tests/suites/rigport.rs`), promtool to validate /metrics, nats-server
/// for the shared JetStream log's tests, faketime to run one proxy with a
/// wrong wall clock.
const PACKAGES: &[(&str, &str)] = &[
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
    ("/usr/bin/rigctld", "libhamlib-utils"),
    ("/usr/lib/python3/dist-packages/Hamlib.py", "python3-hamlib"),
    ("/usr/bin/promtool", "prometheus"),
    ("/usr/sbin/nats-server", "nats-server"),
    ("/usr/bin/faketime", "faketime"),
];

pub fn is_root() -> bool {
    output("id", &["-u"]).is_some_and(|u| u.trim() == "0")
}

pub fn system_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {0}. Install them with\n    sudo apt-get install -y {0}\nand run the command again.",
            missing.join(" ")
        );
    }
    step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("apt-get install failed")
}
