//! `idle`: what an idle station costs. The proxy runs with the demo
//! hardware (the simulated TS-2000 and LP-100A, on ptys, polled at the
//! default intervals) and one dashboard connected, nothing happening, for
//! `--seconds`: bytes written to disk per second (`/proc/PID/io`
//! `write_bytes`: what reaches the block layer, fsyncs included), wake-ups
//! per second (context switches of all the proxy's threads, voluntary and
//! not, from `/proc/PID/task/*/status`), CPU % of one core and RSS. The
//! wake-ups are also broken down by thread name: the simulated hardware runs
//! inside the proxy process with the demo, and real hardware would not.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::json;

use crate::bench::{progress, proxy_stats, start_proxy, Results};
use crate::wire::Subscriber;

#[derive(clap::Args)]
pub struct Args {
    /// How long the idle window is.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds to wait before the window: start-up is not idle (the open,
    /// the first readings, the handshake, and each link's
    /// EVENT_CONNECTION_STABLE 30 s after it connected).
    #[arg(long, default_value_t = 35)]
    settle: u64,
    /// Extra proxy configuration (TOML lines), e.g. "meter_poll_ms = 250".
    #[arg(long, default_value = "")]
    config: String,
}

/// Counters of the whole process at one moment.
struct Sample {
    at: Instant,
    write_bytes: u64,
    /// Context switches by thread name.
    switches: BTreeMap<String, u64>,
    /// CPU time by thread name, ns (`schedstat`: finer than clock ticks,
    /// which at 10 ms are 0.017 % of a core over a minute).
    cpu_ns: BTreeMap<String, u64>,
}

impl Sample {
    fn of(pid: u32) -> Sample {
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        let write_bytes = io
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut switches = BTreeMap::new();
        let mut cpu_ns = BTreeMap::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let field = |name: &str| -> u64 {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            let name = std::fs::read_to_string(task.path().join("comm"))
                .unwrap_or_default()
                .trim_end()
                .to_string();
            *cpu_ns.entry(name.clone()).or_default() +=
                std::fs::read_to_string(task.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0);
            *switches.entry(name).or_default() +=
                field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:");
        }
        Sample {
            at: Instant::now(),
            write_bytes,
            switches,
            cpu_ns,
        }
    }
}

fn global_seq(proxy: &e2e::Proxy) -> u64 {
    let (_, body) = proxy.get("/stats");
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|s| s["global_seq"].as_u64())
        .unwrap_or(0)
}

fn links_connected(proxy: &e2e::Proxy) -> bool {
    let (_, body) = proxy.get("/stats");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    ["radio", "meter"]
        .iter()
        .all(|l| stats["links"][l]["state"] == "connected")
}

pub async fn run(bin: &Path, args: Args, results: &mut Results) -> Result<()> {
    let config = format!("demo = true\n{}\n", args.config.replace("\\n", "\n"));
    let proxy = start_proxy(bin, &config)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !links_connected(&proxy) {
        if Instant::now() > deadline {
            bail!("the demo hardware did not connect within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut dashboard = Subscriber::connect(&proxy.ws_url(), "idle-dashboard").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new(3)?));
    let reader = {
        let (stop, delivered, latency) = (stop.clone(), delivered.clone(), latency.clone());
        tokio::spawn(async move { dashboard.run(stop, delivered, latency).await })
    };
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let pid = proxy.pid().unwrap_or(0);
    // The window is bracketed by the samples, the /stats reads outside it.
    let seq0 = global_seq(&proxy);
    let (cpu0, sample0) = (proxy_stats(&proxy), Sample::of(pid));
    let bar = progress("idle", args.seconds);
    for s in 0..args.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.set_position(s + 1);
    }
    bar.finish_and_clear();
    let (cpu1, sample1) = (proxy_stats(&proxy), Sample::of(pid));
    let seq1 = global_seq(&proxy);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.await;
    let seconds = sample1.at.duration_since(sample0.at).as_secs_f64();
    let written = sample1.write_bytes.saturating_sub(sample0.write_bytes) as f64 / seconds;
    let by_thread: BTreeMap<&String, f64> = sample1
        .switches
        .iter()
        .map(|(name, n)| {
            let before = sample0.switches.get(name).copied().unwrap_or(0);
            (name, n.saturating_sub(before) as f64 / seconds)
        })
        .filter(|(_, rate)| *rate > 0.0)
        .collect();
    let wakeups: f64 = by_thread.values().sum();
    let cpu_by_thread: BTreeMap<&String, f64> = sample1
        .cpu_ns
        .iter()
        .map(|(name, ns)| {
            let before = sample0.cpu_ns.get(name).copied().unwrap_or(0);
            (
                name,
                ns.saturating_sub(before) as f64 / 1e9 / seconds * 100.0,
            )
        })
        .collect();
    let cpu: f64 = cpu_by_thread.values().sum();
    // The simulated hardware runs in the proxy's process with the demo
    // (threads `pty-*`); real hardware would not.
    let simulated = |name: &&String| name.starts_with("pty-");
    let proxy_cpu: f64 = cpu_by_thread
        .iter()
        .filter(|(n, _)| !simulated(n))
        .map(|(_, c)| c)
        .sum();
    let proxy_wakeups: f64 = by_thread
        .iter()
        .filter(|(n, _)| !simulated(n))
        .map(|(_, w)| w)
        .sum();
    let cpu_ticks = cpu1.cpu_percent_since(&cpu0);
    let events = seq1.saturating_sub(seq0) as f64 / seconds;
    println!(
        "idle {seconds:.0} s, demo hardware and one dashboard: {written:.0} bytes/s written, \
         {events:.2} events/s logged, {wakeups:.1} wake-ups/s, CPU {cpu:.3} % of a core ({cpu_ticks:.2} % by clock ticks), RSS {:.1} MiB",
        cpu1.rss_kib as f64 / 1024.0
    );
    let shown: Vec<String> = by_thread
        .iter()
        .map(|(name, rate)| format!("{name} {rate:.1}"))
        .collect();
    println!("wake-ups/s by thread: {}", shown.join(", "));
    println!(
        "without the simulated hardware's threads (pty-*): {proxy_wakeups:.1} wake-ups/s, CPU {proxy_cpu:.3} % of a core"
    );
    results.rows.push(json!({
        "scenario": "idle",
        "seconds": seconds,
        "write_bytes_per_sec": written,
        "events_logged_per_sec": events,
        "wakeups_per_sec": wakeups,
        "wakeups_per_sec_by_thread": by_thread,
        "cpu_percent": cpu,
        "cpu_percent_by_thread": cpu_by_thread,
        "proxy_wakeups_per_sec": proxy_wakeups,
        "proxy_cpu_percent": proxy_cpu,
        "cpu_percent_ticks": cpu_ticks,
        "rss_kib": cpu1.rss_kib,
    }));
    Ok(())
}
