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
    dist_tools()?;
    Ok(())
}

/// The Raspberry Pi's target: the packages' arm64 build.
pub const ARM64: &str = "aarch64-unknown-linux-gnu";

/// The cargo-deb release `cargo xtask dist` is written against (its
/// metadata keys and `--no-build` behaviour), installed once into
/// ~/.cargo/bin rather than linked into xtask, so its hundred dependencies
/// are not compiled (and linted) with every `cargo xtask` build.
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// What `cargo xtask dist` needs beyond the Debian packages in [`PACKAGES`]
/// (the cross compiler, qemu-user): the arm64 Rust target and cargo-deb.
pub fn dist_tools() -> Result<()> {
    rust_target(ARM64)?;
    let have = output("cargo", &["deb", "--version"]).unwrap_or_default();
    if have.split_whitespace().nth(1) == Some(CARGO_DEB_VERSION) {
        return Ok(());
    }
    step(&format!(
        "installing cargo-deb {CARGO_DEB_VERSION} (builds the .deb packages; about 3 minutes once)"
    ));
    run(Command::new("cargo").args([
        "install",
        "--quiet",
        "--locked",
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
    ]))
    .with_context(|| {
        format!("could not install cargo-deb; try `cargo install --locked cargo-deb --version {CARGO_DEB_VERSION}` by hand")
    })
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn wasm_target() -> Result<()> {
    rust_target("wasm32-unknown-unknown")
}

fn rust_target(target: &str) -> Result<()> {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    step(&format!("installing the {target} target"));
    run(Command::new("rustup").args(["target", "add", target]))
        .with_context(|| format!("`rustup target add {target}` failed; run it by hand and retry"))
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
/// wrong wall clock; for the packages (`cargo xtask
/// dist`), Debian's arm64 cross compiler and C library (the linker, and
/// ring's C and assembly) and qemu-user to run the arm64 binary in the tests.
const PACKAGES: &[(&str, &str)] = &[
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
    ("/usr/bin/rigctld", "libhamlib-utils"),
    ("/usr/lib/python3/dist-packages/Hamlib.py", "python3-hamlib"),
    ("/usr/bin/promtool", "prometheus"),
    ("/usr/sbin/nats-server", "nats-server"),
    ("/usr/bin/faketime", "faketime"),
    ("/usr/bin/aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
    ("/usr/aarch64-linux-gnu/lib/crt1.o", "libc6-dev-arm64-cross"),
    ("/usr/bin/qemu-aarch64", "qemu-user"),
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
