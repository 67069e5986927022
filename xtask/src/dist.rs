//! `cargo xtask dist`: Debian packages of the edge proxy for amd64 and arm64
//! (a Raspberry Pi), built with cargo-deb from the metadata in
//! `edge-proxy/Cargo.toml` and the files in `deploy/debian/`.
//!
//! xtask builds each binary itself and runs `cargo deb --no-build`: the
//! build is then the one cargo would do anyway (same flags, same `-j`), and
//! the test command can package the debug build it already has instead of
//! compiling the proxy a second time.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::setup::{self, ARM64};
use crate::tasks::{cargo, pkg, root, run, step};

/// Which build goes into the packages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `[profile.dist]` (release, thin LTO, stripped): what an operator
    /// installs. Into `target/dist/`.
    Dist,
    /// The debug build, for the test command: what the tests check (the
    /// package's files, its scripts, its unit, the binary running from it
    /// and, under qemu, the arm64 one driving the simulated radio) does not
    /// depend on optimisation, and the amd64 debug binary is already built
    /// for the end-to-end tests. Into `target/dist-check/`.
    Check,
}

impl Build {
    fn profile(self) -> &'static str {
        match self {
            Build::Dist => "dist",
            Build::Check => "dev",
        }
    }

    pub fn out_dir(self) -> PathBuf {
        root().join(match self {
            Build::Dist => "target/dist",
            Build::Check => "target/dist-check",
        })
    }
}

/// The packages' architectures: Debian's name and Rust's target.
const TARGETS: &[(&str, &str)] = &[("amd64", "x86_64-unknown-linux-gnu"), ("arm64", ARM64)];

/// Builds the browser client (`cargo xtask pkg`), then both packages.
pub fn dist_all(build: Build) -> Result<Vec<PathBuf>> {
    setup::system_packages()?;
    setup::dist_tools()?;
    pkg()?;
    dist(build)
}

/// Builds both packages into [`Build::out_dir`] and returns their paths;
/// the dashboard's browser client must be built (wasm-client/pkg).
pub fn dist(build: Build) -> Result<Vec<PathBuf>> {
    let out = build.out_dir();
    std::fs::create_dir_all(&out)?;
    for old in debs(&out)? {
        std::fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    let host = host_triple()?;
    let mut built = Vec::new();
    for &(arch, triple) in TARGETS {
        // The host's own target without --target: cargo then builds into
        // target/<profile>, where the test command's debug build already is.
        let target = (triple != host).then_some(triple);
        step(&format!(
            "building edge-proxy for {arch} ({triple}, profile {})",
            build.profile()
        ));
        let mut cmd = cargo();
        cmd.args(["build", "-p", "edge-proxy", "--profile", build.profile()]);
        if let Some(t) = target {
            cmd.args(["--target", t]);
        }
        run(&mut cmd)?;
        step(&format!("packaging edge-proxy for {arch}"));
        let before = debs(&out)?;
        let mut cmd = cargo();
        cmd.args(["deb", "-p", "edge-proxy", "--no-build", "--profile"])
            .arg(build.profile())
            .arg("--output")
            .arg(&out);
        if build == Build::Check {
            // Quicker compression: these packages are checked and thrown away.
            cmd.arg("--fast");
        }
        if let Some(t) = target {
            cmd.args(["--target", t]);
        }
        run(&mut cmd)?;
        let new: Vec<PathBuf> = debs(&out)?
            .into_iter()
            .filter(|d| !before.contains(d))
            .collect();
        match new.as_slice() {
            [deb] if deb.to_string_lossy().ends_with(&format!("_{arch}.deb")) => {
                built.push(deb.clone())
            }
            _ => bail!(
                "cargo deb made {new:?} in {}, not one _{arch}.deb",
                out.display()
            ),
        }
    }
    for deb in &built {
        let size = std::fs::metadata(deb)?.len();
        eprintln!(
            "    {} ({:.1} MiB)",
            deb.display(),
            size as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(built)
}

/// The `.deb` files in `dir`.
fn debs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            found.push(path);
        }
    }
    Ok(found)
}

/// The target rustc builds for by default (`host:` in `rustc -vV`).
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("could not run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("no host line in rustc -vV")
}
