//! The tasks themselves, and the small helpers they share.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::dist::{self, Build};
use crate::{names, setup};

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

pub fn cargo() -> Command {
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
    /// Adds up a closing line: cargo's `test result: ok. N passed; N failed;
    /// N ignored; ...` or node's TAP `# pass N` / `# fail N` / `# skipped N`.
    fn count(&mut self, line: &str) {
        let line = line.trim();
        let pairs: Vec<(&str, &str)> = if let Some(rest) = line.strip_prefix("test result: ") {
            rest.split([';', '.'])
                .filter_map(|part| {
                    let mut w = part.split_whitespace();
                    Some((w.next()?, w.next()?)).map(|(n, label)| (label, n))
                })
                .collect()
        } else if let Some(rest) = line.strip_prefix("# ") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            match w.as_slice() {
                [label, n] => vec![(*label, *n)],
                _ => vec![],
            }
        } else {
            vec![]
        };
        for (label, n) in pairs {
            let Ok(n) = n.parse::<u64>() else { continue };
            match label {
                "passed" | "pass" => self.passed += n,
                "failed" | "fail" => self.failed += n,
                "ignored" | "skipped" => self.ignored += n,
                _ => {}
            }
        }
    }

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
            self.count(&line);
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
    step("building the edge proxy and the station simulator for the end-to-end tests");
    run(cargo().args(["build", "-p", "edge-proxy", "-p", "station-sim"]))?;
    let proxy_bin = root().join("target/debug/edge-proxy");

    let mut tally = Tally::default();
    // The Debian packages of that debug build (and an arm64 one), for the
    // `dist` suite: contents, the amd64 one run from its files, the arm64
    // one under qemu-user. A failure here is counted, and the suite then
    // finds no packages and says so.
    // The browser client: packaged, and tested in Chromium below.
    npm_install()?;
    pkg()?;
    step("building the Debian packages for the dist suite (debug builds)");
    if let Err(e) = dist::dist(Build::Check) {
        eprintln!("    packages: {e:#}");
        tally
            .failures
            .push("packages (cargo xtask dist --check)".into());
    }
    tally.run(
        "native tests: protocol, properties, proxy, end-to-end",
        cargo()
            // Every test binary runs even after one failed, so a run shows
            // every failure at once.
            .args([
                "test",
                "--workspace",
                "--exclude",
                "wasm-client",
                "--no-fail-fast",
            ])
            .env("EDGE_PROXY_BIN", &proxy_bin)
            .env("STATION_LINK_DIST", Build::Check.out_dir())
            // The disk-full test mounts a tmpfs, which needs root.
            .envs((!setup::is_root()).then_some(("E2E_ALLOW_NO_MOUNT", "1"))),
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

    tally.run(
        "browser end-to-end tests: the npm package in Chromium against the real proxy",
        Command::new("npm")
            .current_dir(browser_tests_dir())
            .args(["test", "--silent"])
            .env("EDGE_PROXY_BIN", &proxy_bin),
    )?;

    // The benchmark's Node clients (bench/compare), a few seconds against
    // the real proxy and Socket.IO: not the benchmark, only that it works.
    if let Err(e) = crate::bench::npm_install() {
        eprintln!("    bench/compare: {e:#}");
        tally.failures.push("npm ci in bench/compare".into());
    }
    tally.run(
        "benchmark clients: bench/compare's load against the real proxy and Socket.IO (smoke)",
        Command::new("node")
            .current_dir(crate::bench::compare_dir())
            .args(["--test", "smoke.test.js"])
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

pub fn browser_tests_dir() -> PathBuf {
    root().join("tests/browser")
}

/// `npm ci` for the browser tests and the package build (playwright-core,
/// binaryen, terser, typescript, axe-core) and the dashboard's chart
/// library (uplot), when needed.
pub fn npm_install() -> Result<()> {
    let dir = browser_tests_dir();
    let installed = [
        "playwright-core",
        "binaryen",
        "terser",
        "typescript",
        "axe-core",
        "uplot",
    ];
    if installed
        .iter()
        .all(|p| dir.join("node_modules").join(p).exists())
    {
        return Ok(());
    }
    step("installing the browser tests' npm packages (playwright-core, binaryen, terser, typescript, axe-core, uplot)");
    run(Command::new("npm")
        .current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund"]))
    .context("npm ci failed in tests/browser")
}

/// Builds the browser client's npm package into `wasm-client/pkg`: always
/// the same package (shrunk by npm's binaryen, glue minified by npm's
/// terser), or an error saying what is missing, never a bigger one quietly.
pub fn pkg() -> Result<PathBuf> {
    setup::wasm_target()?;
    setup::wasm_bindgen_cli()?;
    npm_install().context(
        "the package build needs npm's binaryen (wasm-opt) and terser, pinned in \
         tests/browser/package.json: is npm installed and the npm registry reachable?",
    )?;
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
    let _ = std::fs::remove_dir_all(&out);
    run(Command::new("wasm-bindgen")
        .current_dir(root())
        .args(["--target", "web", "--out-name", "station_link"])
        .args([
            "--remove-name-section",
            "--remove-producers-section",
            "--out-dir",
        ])
        .arg(&out)
        .arg("target/wasm32-unknown-unknown/wasm-release/wasm_client.wasm"))?;
    // wasm-opt from npm's binaryen (Debian's 108 produces modules Chromium rejects).
    let wasm_opt = browser_tests_dir().join("node_modules/.bin/wasm-opt");
    let wasm = out.join("station_link_bg.wasm");
    if !wasm_opt.exists() {
        bail!(
            "{} is missing after `npm ci` in tests/browser: the package would miss its size target",
            wasm_opt.display()
        );
    }
    {
        // Optimised for size, then the import and export names shortened
        // (xtask/src/names.rs): binaryen prints what it renamed.
        // Rounds of -Oz around two flattens and re-loops of the control
        // flow, with similar functions merged: about 490 B less gzipped
        // than one -Oz, the second flatten round another 110 B
        // (docs/BENCHMARKS.md; a third round, or `--converge`, is larger).
        let report = Command::new(&wasm_opt)
            .args([
                "-Oz",
                "--merge-similar-functions",
                "--flatten",
                "--rereloop",
                "-Oz",
                "--flatten",
                "--rereloop",
                "-Oz",
                "-Oz",
                "--strip-target-features",
                "--minify-imports-and-exports-and-modules",
                "--enable-bulk-memory",
                "--enable-nontrapping-float-to-int",
            ])
            .args(["--enable-sign-ext", "--enable-mutable-globals", "-o"])
            .arg(&wasm)
            .arg(&wasm)
            .output()
            .context("could not start wasm-opt")?;
        if !report.status.success() {
            bail!(
                "wasm-opt failed: {}",
                String::from_utf8_lossy(&report.stderr)
            );
        }
        let renames = names::Renames::parse(&String::from_utf8_lossy(&report.stdout))?;
        rewrite(&out.join("station_link.js"), |js| {
            renames.glue(&inline_snippets(js, &out)?, "station_link")
        })?;
        std::fs::remove_dir_all(out.join("snippets"))
            .context("removing the snippets pasted into the glue")?;
        rewrite(&out.join("station_link.d.ts"), |dts| {
            Ok(renames.declarations(dts, "readonly "))
        })?;
        rewrite(&out.join("station_link_bg.wasm.d.ts"), |dts| {
            Ok(renames.declarations(dts, "export const "))
        })?;
    }
    // The JS glue minified (names, comments, whitespace): the types and their
    // documentation stay in station_link.d.ts.
    let terser = browser_tests_dir().join("node_modules/.bin/terser");
    let glue = out.join("station_link.js");
    if !terser.exists() {
        bail!(
            "{} is missing after `npm ci` in tests/browser: the package would miss its size target",
            terser.display()
        );
    }
    run(Command::new(&terser)
        .arg(&glue)
        .args(["--module", "--compress", "--mangle"])
        .args(["--comments", "/@ts-self-types/", "-o"])
        .arg(&glue))?;
    // The types are hand-written (wasm-bindgen's say `any` and `Function`),
    // replacing the generated declarations.
    for file in ["package.json", "README.md", "station_link.d.ts"] {
        std::fs::copy(root().join("wasm-client/npm").join(file), out.join(file))?;
    }
    eprintln!("    package: {}", out.display());
    vendor_www()?;
    // The size target (docs/BENCHMARKS.md) is wasm + JS glue, gzipped.
    let mut total = 0;
    for file in [wasm.clone(), out.join("station_link.js")] {
        let raw = std::fs::metadata(&file)?.len();
        let gzipped = gzipped_len(&file).unwrap_or(0);
        total += gzipped;
        eprintln!(
            "    {:<24} {raw:>8} B, {gzipped:>7} B gzipped",
            file.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
    }
    eprintln!(
        "    wasm + glue gzipped: {total} B ({:.1} KiB; target 60 KiB)",
        total as f64 / 1024.0
    );
    Ok(out)
}

/// The dashboard's chart library, npm's `uplot` (MIT; pinned in
/// tests/browser/package.json), copied from node_modules into `www/vendor/`
/// with its licence: the dashboard loads it as a plain script, no bundler.
pub fn vendor_www() -> Result<()> {
    let from = browser_tests_dir().join("node_modules/uplot");
    let to = root().join("www/vendor");
    std::fs::create_dir_all(&to)?;
    for (file, name) in [
        ("dist/uPlot.iife.min.js", "uPlot.iife.min.js"),
        ("dist/uPlot.min.css", "uPlot.min.css"),
        ("LICENSE", "uPlot.LICENSE"),
    ] {
        std::fs::copy(from.join(file), to.join(name)).with_context(|| {
            format!(
                "copying {} into www/vendor (run `npm ci` in tests/browser)",
                from.join(file).display()
            )
        })?;
    }
    eprintln!("    dashboard chart library: {}", to.display());
    Ok(())
}

/// The crate's JS files (`#[wasm_bindgen(module = "/js/...")]`, which
/// wasm-bindgen copies into `snippets/` and imports) pasted into the glue in
/// place of their imports, their `export`s dropped: one file to ship and to
/// minify, with nothing between the glue and them. Fails unless each import
/// is the one-line form wasm-bindgen writes.
fn inline_snippets(glue: &str, out: &Path) -> Result<String> {
    let mut js = String::with_capacity(glue.len() + 4096);
    let mut pasted = 0;
    for line in glue.split_inclusive('\n') {
        let Some(path) = line
            .strip_prefix("import ")
            .and_then(|l| l.split_once(" from './snippets/"))
            .and_then(|(_, rest)| rest.trim_end().strip_suffix("';"))
        else {
            js.push_str(line);
            continue;
        };
        let file = out.join("snippets").join(path);
        let source = std::fs::read_to_string(&file)
            .with_context(|| format!("reading the snippet {}", file.display()))?;
        js.push_str(&source.replace("\nexport function ", "\nfunction "));
        js.push('\n');
        pasted += 1;
    }
    if pasted == 0 || js.contains("./snippets/") || js.contains("\nexport function ") {
        bail!("the glue's snippet imports are not the expected ones (was wasm-bindgen upgraded?): see inline_snippets in xtask/src/tasks.rs");
    }
    Ok(js)
}

/// Rewrites a text file in place.
fn rewrite(path: &Path, change: impl FnOnce(&str) -> Result<String>) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    std::fs::write(path, change(&text)?)
        .with_context(|| format!("could not write {}", path.display()))
}

pub fn demo(port: u16, shared: bool) -> Result<()> {
    npm_install()?;
    let pkg = pkg()?;
    // The dashboard imports the package from /pkg.
    let www_pkg = root().join("www/pkg");
    std::fs::create_dir_all(&www_pkg)?;
    for entry in std::fs::read_dir(&pkg)? {
        let entry = entry?;
        std::fs::copy(entry.path(), www_pkg.join(entry.file_name()))?;
    }
    if shared {
        return demo_shared(port);
    }
    step("building and starting the edge proxy with simulated hardware (the first build takes a few minutes; Ctrl+C stops it)");
    run(cargo()
        .args([
            "run",
            "--release",
            "-p",
            "edge-proxy",
            "--",
            "--demo",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--www", "www", "--data-dir"])
        .arg(demo_data_dir(port)))
}

/// The demo's event log, one per port: the log is opened exclusively, so a
/// second demo on another port beside the first gets its own instead of
/// "Database already open".
fn demo_data_dir(port: u16) -> PathBuf {
    root().join("data").join(format!("demo-{port}"))
}

/// Two proxies on one JetStream log: a local `nats-server -js` (store in
/// data/demo-nats), site A with the simulated hardware on `port`, site B
/// with none on `port + 1`. Each dashboard falls back to the other proxy.
fn demo_shared(port: u16) -> Result<()> {
    let nats_bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("nats-server is missing: `cargo xtask setup` installs it as root (or: sudo apt-get install -y nats-server)")?;
    step("building the edge proxy (release)");
    run(cargo().args(["build", "--release", "-p", "edge-proxy"]))?;
    let data = root().join("data");
    std::fs::create_dir_all(data.join("demo-nats"))?;
    let nats_port = 4222;
    step(&format!(
        "starting nats-server with JetStream on 127.0.0.1:{nats_port}"
    ));
    let mut nats = Command::new(nats_bin)
        .args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &nats_port.to_string(),
            "-sd",
        ])
        .arg(data.join("demo-nats"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting nats-server")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_err() {
        if std::time::Instant::now() > deadline {
            let _ = nats.kill();
            bail!("nats-server did not listen on {nats_port} (is the port taken?)");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Each proxy accepts the other's dashboard page (another port is another origin).
    let config = data.join("demo-shared.toml");
    std::fs::write(
        &config,
        format!(
            "log = \"nats://127.0.0.1:{nats_port}\"\nallowed_origins = [\"http://127.0.0.1:{port}\", \"http://127.0.0.1:{}\"]\n",
            port + 1
        ),
    )?;
    let proxy = |name: &str, port: u16, demo: bool| {
        let mut cmd = Command::new(root().join("target/release/edge-proxy"));
        cmd.arg("--config")
            .arg(&config)
            .args(["--proxy-name", name, "--www", "www", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data.join(format!("demo-{name}")))
            .current_dir(root());
        if demo {
            cmd.arg("--demo");
        }
        cmd.spawn()
            .with_context(|| format!("starting the {name} proxy"))
    };
    let mut a = proxy("site-a", port, true)?;
    let mut b = proxy("site-b", port + 1, false)?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    println!(
        "\ntwo proxies on one JetStream log (Ctrl+C stops everything):\n  \
         site A, with the radio: http://127.0.0.1:{port}/?fallback=127.0.0.1:{b_port}\n  \
         site B:                 http://127.0.0.1:{b_port}/?fallback=127.0.0.1:{port}\n\
         Stop one proxy (kill its process) and its dashboard carries on through the other.",
        b_port = port + 1
    );
    let status = a.wait();
    let _ = b.kill();
    let _ = b.wait();
    let _ = nats.kill();
    let _ = nats.wait();
    status?;
    Ok(())
}

/// `gzip -9 -c FILE | wc -c`, as docs/BENCHMARKS.md measures it.
fn gzipped_len(file: &Path) -> Option<u64> {
    let out = Command::new("gzip")
        .arg("-9")
        .arg("-c")
        .arg(file)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout.len() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_demos_on_two_ports_have_two_data_directories() {
        assert_ne!(super::demo_data_dir(8080), super::demo_data_dir(8081));
    }

    #[test]
    fn snippets_are_pasted_in_place_of_their_imports() {
        let out = std::env::temp_dir().join(format!("xtask-snippets-{}", std::process::id()));
        let dir = out.join("snippets/wasm-client-0123/js");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("d.js"),
            "let x;\nexport function d(f) {\n  return f;\n}\n",
        )
        .unwrap();
        let glue = "/* @ts-self-types=\"./station_link.d.ts\" */\n\
                    import { d } from './snippets/wasm-client-0123/js/d.js';\n\
                    export class Link {}\n";
        let js = super::inline_snippets(glue, &out).unwrap();
        assert_eq!(
            js,
            "/* @ts-self-types=\"./station_link.d.ts\" */\n\
             let x;\nfunction d(f) {\n  return f;\n}\n\n\
             export class Link {}\n"
        );
        // No snippet import (wasm-bindgen changed, or the reader is gone):
        // the build stops rather than ship a glue without it.
        assert!(super::inline_snippets("export class Link {}\n", &out).is_err());
        let _ = std::fs::remove_dir_all(&out);
    }
}
