//! `cargo xtask bench`: the edge proxy and Socket.IO 4 driven by the same
//! Node client code in the same runtime (bench/compare: `run.js` and
//! `worker.js`), in interleaved rounds, as ratios with their spread.
//!
//! Each run gets a fresh server: the release proxy with its durable
//! (fsync'd) log in a new data directory under `target/`, default config
//! but for the publish and handshake rate limits, or
//! `bench/compare/socketio-server.js`. Then `run.js` connects N subscribers
//! (spread over `--workers` threads) and one publisher (its own thread),
//! warms up, measures, and prints one JSON line. Flow control is the same
//! on both sides: at most `--window` publishes unanswered and at most
//! `--window` events published but not yet received by any one subscriber.
//! The server's CPU comes from /proc/PID/stat over the measured window.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::tasks::{cargo, root, run, step};

/// What `cargo xtask bench` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Seconds measured per run (after the warm-up).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Seconds of load before the measurement starts, every run.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Rounds; each runs every size on both servers, the order of the
    /// two servers alternating from round to round.
    #[arg(long, default_value_t = 6)]
    pub rounds: usize,
    /// Subscriber counts.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    pub clients: Vec<usize>,
    /// Threads the subscribers are spread over (the publisher has its own).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Most publishes unanswered, and most events undelivered per subscriber.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Where the JSON results go.
    #[arg(long, default_value = "docs/bench/fair.json")]
    pub json: PathBuf,
}

/// The proxy's config: the defaults (durable log, fsync on every group
/// commit, flow control, limits) with the publish and handshake rate limits
/// out of the way: one publisher far above 50 publishes a second, and up to
/// 1,000 clients connecting at once from loopback.
const PROXY_CONFIG: &str = "max_publish_per_sec = 1000000\nmax_handshakes_per_sec = 100000\n";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum System {
    Edge,
    SocketIo,
}

impl System {
    fn arg(self) -> &'static str {
        match self {
            System::Edge => "edge",
            System::SocketIo => "socketio",
        }
    }
}

pub fn compare_dir() -> PathBuf {
    root().join("bench/compare")
}

/// `npm ci` in bench/compare (Socket.IO 4, its client and MessagePack
/// parser, ws, @msgpack/msgpack), when something is missing.
pub fn npm_install() -> Result<()> {
    let modules = compare_dir().join("node_modules");
    let packages = [
        "socket.io",
        "socket.io-client",
        "socket.io-msgpack-parser",
        "ws",
        "@msgpack/msgpack",
    ];
    if packages.iter().all(|p| modules.join(p).exists()) {
        return Ok(());
    }
    step("installing Socket.IO 4, ws and @msgpack/msgpack from npm (bench/compare)");
    run(Command::new("npm")
        .current_dir(compare_dir())
        .args(["ci", "--no-audit", "--no-fund"]))
    .context("npm ci failed in bench/compare")
}

/// A server for one run; killed on drop.
struct Server {
    child: Child,
    url: String,
    data: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.data {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn start_edge(n: usize) -> Result<Server> {
    let dir = root()
        .join("target/bench-compare")
        .join(format!("{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("proxy.toml");
    std::fs::write(&config, PROXY_CONFIG)?;
    let port_file = dir.join("port");
    let child = Command::new(root().join("target/release/edge-proxy"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .env("EDGE_PROXY_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .context("starting target/release/edge-proxy")?;
    let mut server = Server {
        child,
        url: String::new(),
        data: Some(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(addr) = std::fs::read_to_string(&port_file) {
            if !addr.trim().is_empty() {
                server.url = format!("ws://{}/ws", addr.trim());
                return Ok(server);
            }
        }
        if let Some(status) = server.child.try_wait()? {
            bail!("edge-proxy exited at start-up with {status}");
        }
        if Instant::now() > deadline {
            bail!("edge-proxy did not start within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_socketio() -> Result<Server> {
    let mut child = Command::new("node")
        .current_dir(compare_dir())
        .args(["socketio-server.js", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting node bench/compare/socketio-server.js")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut server = Server {
        child,
        url: String::new(),
        data: None,
    };
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    lines.read_line(&mut line)?;
    // Whatever else it prints is read and dropped (a closed pipe would
    // kill it at its next line).
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let port = line
        .trim()
        .strip_prefix("listening ")
        .with_context(|| format!("socketio-server.js printed {line:?}"))?;
    server.url = format!("http://127.0.0.1:{port}");
    Ok(server)
}

/// `cargo`, without the variables `cargo run` set for xtask itself
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ...): build scripts such as
/// ring's rerun when one changes, so a release proxy built from the shell
/// was rebuilt from scratch here, and the next shell build again.
fn cargo_outside_xtask() -> Command {
    let mut cmd = cargo();
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&key)
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// The 1-minute load average now.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// One run: a fresh server, `run.js` against it, the server stopped.
fn one_run(args: &Args, system: System, clients: usize, n: usize) -> Result<Value> {
    let server = match system {
        System::Edge => start_edge(n)?,
        System::SocketIo => start_socketio()?,
    };
    let mut child = Command::new("node")
        .current_dir(compare_dir())
        .arg("run.js")
        .args(["--system", system.arg(), "--url", &server.url])
        .args(["--server-pid", &server.child.id().to_string()])
        .args(["--clients", &clients.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--workers", &args.workers.to_string()])
        .args(["--window", &args.window.to_string()])
        .args(["--payload-bytes", &args.payload_bytes.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("running node bench/compare/run.js")?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    // Connecting 1,000 clients takes seconds; more than a minute beyond the
    // run is a hang.
    let deadline = Instant::now() + Duration::from_secs(args.seconds + args.warmup + 90);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("run.js did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        bail!("run.js failed with {status}");
    }
    let line = out.lines().last().context("run.js printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("run.js printed {line:?}"))
}

/// Median, min and max.
fn spread(mut values: Vec<f64>) -> Option<(f64, f64, f64)> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    Some((median, values[0], values[n - 1]))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// `12,345` for a rate.
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let digits = format!("{x:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0 / 1024.0);
    let output = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    json!({
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": cpu,
        "memory_gib": (mem_gib * 10.0).round() / 10.0,
        "kernel": output("uname", &["-r"]),
        "node": output("node", &["--version"]),
        "date": output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
    })
}

pub fn bench(args: Args) -> Result<()> {
    let started = Instant::now();
    step("building the proxy (release)");
    run(cargo_outside_xtask().args(["build", "--release", "-p", "edge-proxy"]))?;
    npm_install()?;
    let machine = machine();
    let per_run = args.seconds + args.warmup;
    eprintln!(
        "{} rounds x {} sizes x 2 servers, {per_run} s of load each (plus connecting): about {:.0} min",
        args.rounds,
        args.clients.len(),
        (args.rounds * args.clients.len() * 2) as f64 * (per_run as f64 + 3.0) / 60.0
    );
    let mut runs = Vec::new();
    let mut n = 0;
    for round in 1..=args.rounds {
        for &clients in &args.clients {
            let order = if round % 2 == 1 {
                [System::Edge, System::SocketIo]
            } else {
                [System::SocketIo, System::Edge]
            };
            for system in order {
                n += 1;
                let load = loadavg();
                step(&format!(
                    "round {round}/{}: {clients} clients, {} (load average {load:.2})",
                    args.rounds,
                    system.arg()
                ));
                let mut row = match one_run(&args, system, clients, n) {
                    Ok(v) => {
                        eprintln!(
                            "    {:>10} ev/s delivered, p50 {:.2} ms, p99 {:.2} ms, server {:.1} us/delivery ({:.0} % CPU), client {:.0} % CPU",
                            thousands(f(&v, "delivered_per_sec")),
                            f(&v, "p50_ms"),
                            f(&v, "p99_ms"),
                            f(&v, "server_cpu_us_per_delivery"),
                            f(&v, "server_cpu_percent"),
                            f(&v, "client_cpu_percent"),
                        );
                        v
                    }
                    Err(e) => {
                        eprintln!("    FAILED: {e:#}");
                        json!({"error": format!("{e:#}")})
                    }
                };
                row["round"] = json!(round);
                row["clients"] = json!(clients);
                row["system"] = json!(system.arg());
                row["loadavg_1m"] = json!(load);
                runs.push(row);
            }
        }
    }
    let summary = summarize(&args, &runs);
    let table = markdown(&args, &summary, &machine);
    println!("\n{table}");
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    eprintln!("total time {minutes:.1} min");
    let path = root().join(&args.json);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({
            "command": command_line(&args),
            "machine": machine,
            "seconds": args.seconds, "warmup": args.warmup, "rounds": args.rounds,
            "workers": args.workers, "window": args.window, "payload_bytes": args.payload_bytes,
            "proxy_config": PROXY_CONFIG,
            "total_minutes": minutes,
            "summary": summary, "runs": runs,
        }))?,
    )?;
    println!("results written to {}", path.display());
    Ok(())
}

fn command_line(args: &Args) -> String {
    let clients: Vec<String> = args.clients.iter().map(|c| c.to_string()).collect();
    format!(
        "cargo xtask bench --seconds {} --warmup {} --rounds {} --clients {} --workers {} --window {} --payload-bytes {}",
        args.seconds,
        args.warmup,
        args.rounds,
        clients.join(","),
        args.workers,
        args.window,
        args.payload_bytes
    )
}

/// Per size: each server's medians (and ranges) over the rounds, and the
/// edge-proxy / Socket.IO ratios taken within each round (paired, so a
/// noisy round moves both), median [min..max].
fn summarize(args: &Args, runs: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for &clients in &args.clients {
        let mut by: BTreeMap<(System, usize), &Value> = BTreeMap::new();
        let mut loads = Vec::new();
        let mut failed = BTreeMap::new();
        for r in runs.iter().filter(|r| r["clients"] == json!(clients)) {
            let system = if r["system"] == "edge" {
                System::Edge
            } else {
                System::SocketIo
            };
            loads.push(f(r, "loadavg_1m"));
            if r.get("error").is_some() {
                *failed.entry(system.arg()).or_insert(0) += 1;
                continue;
            }
            by.insert((system, r["round"].as_u64().unwrap_or(0) as usize), r);
        }
        let stat = |system: System, key: &str| {
            spread(
                by.iter()
                    .filter(|((s, _), _)| *s == system)
                    .map(|(_, r)| f(r, key))
                    .collect(),
            )
            .map_or(
                json!(null),
                |(m, lo, hi)| json!({"median": m, "min": lo, "max": hi}),
            )
        };
        let ratio = |key: &str| {
            let paired: Vec<f64> = (1..=args.rounds)
                .filter_map(|round| {
                    let e = by.get(&(System::Edge, round))?;
                    let s = by.get(&(System::SocketIo, round))?;
                    Some(f(e, key) / f(s, key))
                })
                .collect();
            spread(paired).map_or(
                json!(null),
                |(m, lo, hi)| json!({"median": m, "min": lo, "max": hi}),
            )
        };
        let mut row = json!({"clients": clients, "failed_runs": failed});
        for (name, system) in [
            ("edge_proxy", System::Edge),
            ("socket_io", System::SocketIo),
        ] {
            row[name] = json!({
                "delivered_per_sec": stat(system, "delivered_per_sec"),
                "published_per_sec": stat(system, "published_per_sec"),
                "p50_ms": stat(system, "p50_ms"),
                "p99_ms": stat(system, "p99_ms"),
                "server_cpu_us_per_delivery": stat(system, "server_cpu_us_per_delivery"),
                "server_cpu_percent": stat(system, "server_cpu_percent"),
                "client_cpu_percent": stat(system, "client_cpu_percent"),
            });
        }
        row["ratio_delivered"] = ratio("delivered_per_sec");
        row["ratio_p99"] = ratio("p99_ms");
        row["ratio_cpu_per_delivery"] = ratio("server_cpu_us_per_delivery");
        row["loadavg_1m"] = spread(loads).map_or(
            json!(null),
            |(m, lo, hi)| json!({"median": m, "min": lo, "max": hi}),
        );
        out.push(row);
    }
    out
}

fn markdown(args: &Args, summary: &[Value], machine: &Value) -> String {
    let med = |v: &Value| v["median"].as_f64().unwrap_or(f64::NAN);
    let range = |v: &Value, digits: usize| {
        format!(
            "{:.digits$}..{:.digits$}",
            v["min"].as_f64().unwrap_or(f64::NAN),
            v["max"].as_f64().unwrap_or(f64::NAN)
        )
    };
    let mut t = format!(
        "`{}`: {} rounds, {} s measured after {} s of warm-up per run, {} cores ({}), node {}, {}\n\n",
        command_line(args),
        args.rounds,
        args.seconds,
        args.warmup,
        machine["cores"],
        machine["cpu"].as_str().unwrap_or(""),
        machine["node"].as_str().unwrap_or(""),
        machine["date"].as_str().unwrap_or(""),
    );
    t.push_str("| clients | edge-proxy ev/s | Socket.IO ev/s | ratio [min..max] | edge-proxy p50 / p99 | Socket.IO p50 / p99 | server CPU per delivery, edge-proxy / Socket.IO | CPU ratio [min..max] | load avg (1 min) |\n");
    t.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in summary {
        let (e, s) = (&r["edge_proxy"], &r["socket_io"]);
        t.push_str(&format!(
            "| {} | {} | {} | **{:.2}** [{}] | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.2} / {:.2} µs | {:.2} [{}] | {} |\n",
            r["clients"],
            thousands(med(&e["delivered_per_sec"])),
            thousands(med(&s["delivered_per_sec"])),
            med(&r["ratio_delivered"]),
            range(&r["ratio_delivered"], 2),
            med(&e["p50_ms"]),
            med(&e["p99_ms"]),
            med(&s["p50_ms"]),
            med(&s["p99_ms"]),
            med(&e["server_cpu_us_per_delivery"]),
            med(&s["server_cpu_us_per_delivery"]),
            med(&r["ratio_cpu_per_delivery"]),
            range(&r["ratio_cpu_per_delivery"], 2),
            range(&r["loadavg_1m"], 1),
        ));
    }
    t.push_str("\n(medians over the rounds; ratios are edge-proxy / Socket.IO within each round, median [min..max]; below 1 for ev/s, or above 1 for CPU, edge-proxy is worse)\n");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_median_min_max_without_failed_values() {
        assert_eq!(spread(vec![3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(
            spread(vec![4.0, 1.0, f64::NAN, 2.0, 3.0]),
            Some((2.5, 1.0, 4.0))
        );
        assert_eq!(spread(vec![]), None);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(5_018.4), "5,018");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn ratios_pair_runs_of_the_same_round_and_skip_failures() {
        let args = Args {
            seconds: 1,
            warmup: 0,
            rounds: 2,
            clients: vec![10],
            workers: 2,
            window: 32,
            payload_bytes: 64,
            json: PathBuf::from("x.json"),
        };
        let run = |round: u64, system: &str, rate: f64| json!({"round": round, "clients": 10, "system": system, "delivered_per_sec": rate, "loadavg_1m": 1.0});
        let runs = vec![
            run(1, "edge", 200.0),
            run(1, "socketio", 100.0),
            run(2, "socketio", 100.0),
            json!({"round": 2, "clients": 10, "system": "edge", "error": "failed", "loadavg_1m": 1.0}),
        ];
        let summary = summarize(&args, &runs);
        assert_eq!(summary[0]["ratio_delivered"]["median"], json!(2.0));
        assert_eq!(summary[0]["failed_runs"]["edge"], json!(1));
    }
}
