//! `cargo xtask bench`: the same workloads against the edge proxy (loadgen)
//! and Socket.IO 4 (bench/socketio), in one run on one machine, as ratios.

use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::tasks::{root, run, step};

fn loadgen(clients: u64, rate: u64, seconds: u64) -> Result<Value> {
    let out = std::env::temp_dir().join(format!("loadgen-{clients}-{rate}.json"));
    run(Command::new(root().join("target/release/loadgen"))
        .current_dir(root())
        .arg("--json")
        .arg(&out)
        .args([
            "throughput",
            "--clients",
            &clients.to_string(),
            "--rate",
            &rate.to_string(),
        ])
        .args(["--seconds", &seconds.to_string()]))?;
    let text = std::fs::read_to_string(&out)?;
    let v: Value = serde_json::from_str(&text)?;
    Ok(v["results"][0].clone())
}

fn socketio(clients: u64, rate: u64, seconds: u64) -> Result<Value> {
    let out = Command::new("node")
        .current_dir(root().join("bench/socketio"))
        .args([
            "load.js",
            "--clients",
            &clients.to_string(),
            "--rate",
            &rate.to_string(),
        ])
        .args(["--seconds", &seconds.to_string()])
        .output()
        .context("running node bench/socketio/load.js")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .context("Socket.IO load printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("Socket.IO load printed {line:?}"))
}

pub fn bench(seconds: u64) -> Result<()> {
    step("building the proxy and the load generator (release)");
    run(Command::new("cargo").current_dir(root()).args([
        "build",
        "--release",
        "-p",
        "edge-proxy",
        "-p",
        "loadgen",
    ]))?;
    step("installing Socket.IO 4 from npm (bench/socketio)");
    run(Command::new("npm")
        .current_dir(root().join("bench/socketio"))
        .args(["ci", "--no-audit", "--no-fund"]))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for rate in [0u64, 1_000] {
        for clients in [1u64, 100, 1_000] {
            step(&format!(
                "{clients} clients, {} : edge-proxy, then Socket.IO",
                if rate == 0 {
                    "as fast as possible".into()
                } else {
                    format!("{rate} events/s")
                }
            ));
            let ours = loadgen(clients, rate, seconds)?;
            let theirs = socketio(clients, rate, seconds)?;
            rows.push(
                json!({"clients": clients, "rate": rate, "edge_proxy": ours, "socket_io": theirs}),
            );
        }
    }
    println!("\nedge-proxy vs Socket.IO 4 (msgpack parser, connection state recovery), {cores} cores, {seconds} s per run, one publisher, 64-byte payloads");
    println!(
        "{:>6} {:>8} | {:>12} {:>12} {:>7} | {:>10} {:>10} {:>7}",
        "rate", "clients", "ours ev/s", "sio ev/s", "x", "ours p99", "sio p99", "x"
    );
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    for r in &rows {
        let (o, s) = (&r["edge_proxy"], &r["socket_io"]);
        let rate = if r["rate"] == 0 {
            "max".to_string()
        } else {
            r["rate"].to_string()
        };
        println!(
            "{:>6} {:>8} | {:>12.0} {:>12.0} {:>7.2} | {:>8.2}ms {:>8.2}ms {:>7.2}",
            rate,
            r["clients"],
            f(o, "delivered_per_sec"),
            f(s, "delivered_per_sec"),
            f(o, "delivered_per_sec") / f(s, "delivered_per_sec"),
            f(o, "p99_ms"),
            f(s, "p99_ms"),
            f(s, "p99_ms") / f(o, "p99_ms"),
        );
    }
    println!("(x: ours / theirs for events/s, theirs / ours for p99; targets at 100 clients: >= 5 and >= 5)");
    let path = root().join("docs/bench/comparison.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({"cores": cores, "seconds": seconds, "rows": rows}))?,
    )?;
    println!("results written to {}", path.display());
    Ok(())
}
