//! `loadgen`: drives a real edge proxy over loopback and reports what users
//! care about: delivered events/s, end-to-end latency percentiles, the
//! proxy's CPU and RSS, and the scenarios of docs/BENCHMARKS.md.
//!
//! It starts the proxy itself (a release build, fresh data directory) so one
//! command gives a reproducible figure; results print as a table and,
//! with `--json FILE`, as JSON.

mod catchup;
mod proc_stats;
mod txdrop;
mod wire;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;

use crate::proc_stats::ProcStats;
use crate::wire::{Publisher, Resilient, Subscriber};

#[derive(Parser)]
#[command(about = "Load generator for edge-proxy (starts its own proxy on loopback)")]
struct Cli {
    /// The proxy binary to start (build it with `cargo build --release -p edge-proxy`).
    #[arg(long, default_value = "target/release/edge-proxy")]
    proxy_bin: PathBuf,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N subscribers, one publisher: delivered events/s and end-to-end latency.
    Throughput {
        /// Subscriber counts to run, one after the other.
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        clients: Vec<usize>,
        /// Events per second published (0: as fast as the proxy accepts them).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Payload size in bytes (padding on top of the timestamp).
        #[arg(long, default_value_t = 64)]
        payload_bytes: usize,
    },
    /// 20 fast subscribers with and without one subscriber that never reads.
    SlowConsumer {
        #[arg(long, default_value_t = 20)]
        fast: usize,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
    },
    /// N clients connected, the proxy killed (-9) and restarted: time until all
    /// have resumed, peak connection attempts per second, events lost.
    Storm {
        #[arg(long, default_value_t = 1_000)]
        clients: usize,
        /// Events per second published during the run.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// How long the proxy stays down.
        #[arg(long, default_value_t = 1_000)]
        down_ms: u64,
    },
    /// One client comes back far behind while live clients stream: its paged
    /// replay, the proxy's RSS growth, the live clients' p99 before and during.
    CatchUp {
        #[arg(long, default_value_t = 50_000)]
        backlog: u64,
        #[arg(long, default_value_t = 20)]
        live: usize,
        /// Live events per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 6)]
        seconds: u64,
    },
    /// A simulated radio on a pty: time from a TX drop mid-frame to the
    /// dashboard hearing the radio link is back (median of the runs).
    TxDrop {
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// The same throughput workload on the embedded log and on a NATS
    /// JetStream log (a local `nats-server -js`), run after run: the ratio.
    LogBackends {
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// Events per second published (0: as fast as the proxy accepts them).
        #[arg(long, value_delimiter = ',', default_value = "1000,0")]
        rates: Vec<u64>,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
    },
    /// RSS per idle connection, and bytes per event on disk and in memory.
    Footprint {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 20_000)]
        events: u64,
    },
}

struct Proxy {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Proxy {
    fn start(bin: &PathBuf, config: &str) -> Result<Proxy> {
        if !bin.exists() {
            bail!(
                "{} is missing: run `cargo build --release -p edge-proxy` first",
                bin.display()
            );
        }
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("proxy.toml"), config)?;
        let (child, addr) = Proxy::spawn(bin, &dir, "127.0.0.1:0")?;
        Ok(Proxy {
            child,
            addr,
            dir,
            bin: bin.clone(),
        })
    }

    /// `kill -9`: nothing is flushed.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The same binary again, on the same port and data directory.
    fn restart(&mut self) -> Result<()> {
        let (child, _) = Proxy::spawn(&self.bin, &self.dir, &self.addr)?;
        self.child = child;
        Ok(())
    }

    fn spawn(bin: &PathBuf, dir: &tempfile::TempDir, listen: &str) -> Result<(Child, String)> {
        let port_file = dir.path().join("port");
        let _ = std::fs::remove_file(&port_file);
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(dir.path().join("proxy.toml"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", listen, "--port-file"])
            .arg(&port_file)
            .env("EDGE_PROXY_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .context("starting the proxy")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&port_file) {
                if !addr.is_empty() {
                    return Ok((child, addr));
                }
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                bail!("the proxy did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    fn stats(&self) -> ProcStats {
        ProcStats::of(self.child.id())
    }

    /// A quantile of a summary in the proxy's /metrics (seconds or count).
    fn metric(&self, name: &str, quantile: &str) -> Option<f64> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).ok()?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        let key = format!("{name}{{quantile=\"{quantile}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Config for benchmark proxies: no publish rate limit in the way.
const BENCH_CONFIG: &str = "max_publish_per_sec = 1000000\nmax_handshakes_per_sec = 100000\n";

fn progress(label: &str, seconds: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(seconds);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(label.to_string());
    bar
}

struct RunResult {
    delivered: u64,
    seconds: f64,
    latency: Histogram<u64>,
    duplicates: u64,
    cpu_percent: f64,
    rss_kib: u64,
    published: u64,
}

/// One publisher at `rate`/s and `clients` subscribers for `seconds`.
async fn run_throughput(
    proxy: &Proxy,
    clients: usize,
    slow: usize,
    rate: u64,
    seconds: u64,
    payload: usize,
) -> Result<RunResult> {
    // Each run has its own client ids (a reused publisher id would have its
    // client_seqs taken for resends and deduplicated).
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let mut sub = Subscriber::connect(&proxy.url(), &format!("sub-{run}-{i}")).await?;
        let (stop, delivered, latency) = (stop.clone(), delivered.clone(), latency.clone());
        tasks.push(tokio::spawn(async move {
            sub.run(stop, delivered, latency).await
        }));
    }
    // Subscribers that connect and then never read: their socket backs up.
    let mut slow_sockets = Vec::new();
    for i in 0..slow {
        slow_sockets.push(Subscriber::connect(&proxy.url(), &format!("slow-{i}")).await?);
    }
    let mut publisher = Publisher::connect(&proxy.url(), &format!("publisher-{run}")).await?;
    let before = proxy.stats();
    let started = Instant::now();
    let bar = progress(
        &format!("{clients} clients{}", if slow > 0 { " + slow" } else { "" }),
        seconds,
    );
    let deadline = started + Duration::from_secs(seconds);
    let mut published = 0u64;
    let mut next_tick = started;
    while Instant::now() < deadline {
        if rate == 0 {
            publisher.publish_batch(64, payload).await?;
            published += 64;
            // Keep the publisher's in-flight window bounded by acceptances.
            publisher
                .wait_accepted(published.saturating_sub(4_096))
                .await?;
        } else {
            next_tick += Duration::from_millis(10);
            let per_tick = (rate / 100).max(1);
            publisher.publish_batch(per_tick as usize, payload).await?;
            published += per_tick;
            tokio::time::sleep_until(next_tick.into()).await;
        }
        let elapsed = started.elapsed().as_secs();
        if elapsed != bar.position() {
            bar.set_position(elapsed);
            bar.set_message(format!("{} delivered", delivered.load(Ordering::Relaxed)));
        }
    }
    let seconds_run = started.elapsed().as_secs_f64();
    let delivered_in_window = delivered.load(Ordering::Relaxed);
    let after = proxy.stats();
    stop.store(true, Ordering::Relaxed);
    bar.finish_and_clear();
    let mut duplicates = 0;
    for t in tasks {
        duplicates += t.await??;
    }
    drop(slow_sockets);
    let latency = latency
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok(RunResult {
        delivered: delivered_in_window,
        seconds: seconds_run,
        latency,
        duplicates,
        cpu_percent: after.cpu_percent_since(&before),
        rss_kib: after.rss_kib,
        published,
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut results = Vec::new();
    match cli.scenario {
        Scenario::Throughput {
            clients,
            rate,
            seconds,
            payload_bytes,
        } => {
            println!("throughput: 1 publisher at {} events/s, {seconds} s per run, {payload_bytes}-byte payloads, {cores} cores", if rate == 0 { "max".to_string() } else { rate.to_string() });
            println!(
                "{:>8} {:>12} {:>12} {:>9} {:>9} {:>9} {:>7} {:>9} {:>5}",
                "clients",
                "published/s",
                "delivered/s",
                "p50 ms",
                "p99 ms",
                "p999 ms",
                "cpu %",
                "rss MiB",
                "dups"
            );
            for n in clients {
                let proxy = Proxy::start(&cli.proxy_bin, BENCH_CONFIG)?;
                let r = run_throughput(&proxy, n, 0, rate, seconds, payload_bytes).await?;
                let row = json!({
                    "clients": n, "published_per_sec": r.published as f64 / r.seconds,
                    "delivered_per_sec": r.delivered as f64 / r.seconds,
                    "p50_ms": ms(r.latency.value_at_quantile(0.50)), "p99_ms": ms(r.latency.value_at_quantile(0.99)),
                    "p999_ms": ms(r.latency.value_at_quantile(0.999)), "cpu_percent": r.cpu_percent,
                    "rss_mib": r.rss_kib as f64 / 1024.0, "duplicates": r.duplicates,
                });
                println!(
                    "{:>8} {:>12.0} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>7.0} {:>9.1} {:>5}",
                    n,
                    r.published as f64 / r.seconds,
                    r.delivered as f64 / r.seconds,
                    ms(r.latency.value_at_quantile(0.50)),
                    ms(r.latency.value_at_quantile(0.99)),
                    ms(r.latency.value_at_quantile(0.999)),
                    r.cpu_percent,
                    r.rss_kib as f64 / 1024.0,
                    r.duplicates
                );
                let commit_p50 = proxy
                    .metric("proxy_log_commit_seconds", "0.5")
                    .unwrap_or(0.0)
                    * 1e3;
                let commit_p99 = proxy
                    .metric("proxy_log_commit_seconds", "0.99")
                    .unwrap_or(0.0)
                    * 1e3;
                let batch = proxy
                    .metric("proxy_log_batch_requests", "0.5")
                    .unwrap_or(0.0);
                println!("{:>8} group commit p50 {commit_p50:.2} ms, p99 {commit_p99:.2} ms, {batch:.0} requests per commit (p50)", "");
                let mut row = row;
                row["commit_p50_ms"] = json!(commit_p50);
                row["commit_p99_ms"] = json!(commit_p99);
                results.push(row);
            }
        }
        Scenario::CatchUp {
            backlog,
            live,
            rate,
            seconds,
        } => {
            let config = format!(
                "{BENCH_CONFIG}max_behind = {}\nmax_events = {}\nretention_ms = 3600000\n",
                backlog * 2,
                backlog * 4
            );
            let proxy = Proxy::start(&cli.proxy_bin, &config)?;
            let epoch = catchup::register(&proxy.url()).await?;
            let mut filler = Publisher::connect(&proxy.url(), "filler").await?;
            let bar = progress("writing the backlog", backlog / 1_000);
            let mut written = 0;
            while written < backlog {
                let n = 500.min(backlog - written);
                filler.publish_batch(n as usize, 64).await?;
                written += n;
                filler.wait_accepted(written.saturating_sub(4_096)).await?;
                bar.set_position(written / 1_000);
            }
            filler.wait_accepted(backlog).await?;
            bar.finish_and_clear();
            println!("catch-up: {backlog} events behind, {live} live clients at {rate} events/s, {seconds} s per phase, {cores} cores");
            let quiet = run_throughput(&proxy, live, 0, rate, seconds, 64).await?;
            let rss_before = proxy.stats().rss_kib;
            // The late client and the second live phase, at the same time;
            // the proxy's RSS sampled throughout.
            let url = proxy.url();
            let late = tokio::spawn(async move {
                // Midway through the live phase.
                tokio::time::sleep(Duration::from_millis(seconds * 500)).await;
                catchup::catch_up(&url, epoch, backlog).await
            });
            let pid = proxy.child.id();
            let sampling = Arc::new(AtomicBool::new(true));
            let peak = Arc::new(AtomicU64::new(0));
            let (s, p) = (sampling.clone(), peak.clone());
            let sampler = tokio::spawn(async move {
                while s.load(Ordering::Relaxed) {
                    p.fetch_max(ProcStats::of(pid).rss_kib, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            let busy = run_throughput(&proxy, live, 0, rate, seconds, 64).await?;
            let took = late.await??;
            sampling.store(false, Ordering::Relaxed);
            sampler.await?;
            let growth_mib =
                peak.load(Ordering::Relaxed).saturating_sub(rss_before) as f64 / 1024.0;
            let (p99_quiet, p99_busy) = (
                ms(quiet.latency.value_at_quantile(0.99)),
                ms(busy.latency.value_at_quantile(0.99)),
            );
            let (max_quiet, max_busy) = (ms(quiet.latency.max()), ms(busy.latency.max()));
            println!("  live p99: {p99_quiet:.2} ms before, {p99_busy:.2} ms during the catch-up ({:.2}x); max {max_quiet:.2} ms before, {max_busy:.2} ms during", p99_busy / p99_quiet.max(0.001));
            println!(
                "  the late client caught up {backlog} events in {:.2} s ({:.0} events/s), every one once and in order",
                took.as_secs_f64(),
                backlog as f64 / took.as_secs_f64()
            );
            println!("  proxy RSS: {:.1} MiB before, peak growth {growth_mib:.1} MiB during (the backlog is {:.1} MiB on the wire)", rss_before as f64 / 1024.0, backlog as f64 * 110.0 / 1_048_576.0);
            results.push(json!({"backlog": backlog, "live": live, "rate": rate, "p99_before_ms": p99_quiet, "p99_during_ms": p99_busy, "max_before_ms": max_quiet, "max_during_ms": max_busy,
                "catch_up_seconds": took.as_secs_f64(), "rss_before_mib": rss_before as f64 / 1024.0, "rss_growth_mib": growth_mib}));
        }
        Scenario::LogBackends {
            clients,
            rates,
            seconds,
        } => {
            // The end-to-end tests' nats-server harness (a temp store, a free port).
            let nats = e2e::Nats::start();
            println!("log backends: {clients} clients, 1 publisher, {seconds} s per run, {cores} cores; JetStream on a local nats-server (file storage)");
            println!(
                "{:>10} {:>10} {:>12} {:>12} {:>9} {:>9} {:>7}",
                "rate", "log", "published/s", "delivered/s", "p50 ms", "p99 ms", "cpu %"
            );
            for rate in rates {
                let mut row = json!({ "clients": clients, "rate": rate });
                for (name, log) in [
                    ("embedded", "embedded".to_string()),
                    ("jetstream", nats.url()),
                ] {
                    let config = format!("{BENCH_CONFIG}log = \"{log}\"\nproxy_name = \"bench-{name}\"\nnats_stream = \"BENCH{rate}\"\nnats_subject = \"bench.{rate}\"\n");
                    let proxy = Proxy::start(&cli.proxy_bin, &config)?;
                    let r = run_throughput(&proxy, clients, 0, rate, seconds, 64).await?;
                    let (p50, p99) = (
                        ms(r.latency.value_at_quantile(0.50)),
                        ms(r.latency.value_at_quantile(0.99)),
                    );
                    println!(
                        "{:>10} {:>10} {:>12.0} {:>12.0} {:>9.2} {:>9.2} {:>7.0}",
                        if rate == 0 {
                            "max".to_string()
                        } else {
                            rate.to_string()
                        },
                        name,
                        r.published as f64 / r.seconds,
                        r.delivered as f64 / r.seconds,
                        p50,
                        p99,
                        r.cpu_percent
                    );
                    row[name] = json!({
                        "published_per_sec": r.published as f64 / r.seconds,
                        "delivered_per_sec": r.delivered as f64 / r.seconds,
                        "p50_ms": p50, "p99_ms": p99, "cpu_percent": r.cpu_percent, "duplicates": r.duplicates,
                    });
                }
                let ratio = |key: &str| {
                    row["jetstream"][key].as_f64().unwrap_or(0.0)
                        / row["embedded"][key].as_f64().unwrap_or(1.0).max(1e-9)
                };
                let (delivered, p99) = (ratio("delivered_per_sec"), ratio("p99_ms"));
                println!(
                    "{:>10} jetstream / embedded: delivered/s {delivered:.2}x, p99 {p99:.2}x",
                    ""
                );
                row["ratio_delivered"] = json!(delivered);
                row["ratio_p99"] = json!(p99);
                results.push(row);
            }
        }
        Scenario::TxDrop { runs } => {
            let sim = station_sim::pty::PtyRadio::start(station_sim::kenwood::Radio::default())?;
            // Defaults otherwise (radio_poll_ms 500, radio_poll_tx_ms 50): the real thing.
            let config = format!(
                "radio_port = \"{}\"\nmeter = \"none\"\ntx_keepalive_ms = 60000\n",
                sim.path.display()
            );
            let proxy = Proxy::start(&cli.proxy_bin, &config)?;
            println!(
                "tx drop: TS-2000 simulator on {}, {runs} runs",
                sim.path.display()
            );
            let mut runs = txdrop::run(&proxy.url(), &sim, runs).await?;
            runs.sort();
            let heard: Vec<f64> = runs.iter().map(|r| r.0.as_secs_f64() * 1e3).collect();
            let mut proxy_side: Vec<u64> = runs.iter().map(|r| r.1).collect();
            proxy_side.sort_unstable();
            let pick = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            let (median, p90, max) = (pick(&heard, 0.5), pick(&heard, 0.9), pick(&heard, 1.0));
            let detect_to_ok = proxy_side[proxy_side.len() / 2];
            println!("  fault -> dashboard hears EVENT_RECONNECT_OK: median {median:.1} ms, p90 {p90:.1} ms, max {max:.1} ms (target < 200 ms)");
            println!("  detection -> reconnected, on the proxy's clock: median {detect_to_ok} ms");
            results.push(json!({"runs": heard.len(), "median_ms": median, "p90_ms": p90, "max_ms": max, "detect_to_reconnected_median_ms": detect_to_ok}));
        }
        Scenario::SlowConsumer { fast, seconds } => {
            println!("slow consumer: {fast} fast subscribers, publisher as fast as the proxy accepts, {seconds} s per phase");
            let mut rates = Vec::new();
            for slow in [0, 1] {
                let proxy = Proxy::start(&cli.proxy_bin, BENCH_CONFIG)?;
                let r = run_throughput(&proxy, fast, slow, 0, seconds, 64).await?;
                let per_client = r.delivered as f64 / r.seconds / fast as f64;
                println!(
                    "  {} slow: {:.0} events/s per fast client, p99 {:.2} ms",
                    slow,
                    per_client,
                    ms(r.latency.value_at_quantile(0.99))
                );
                rates.push(per_client);
                results.push(json!({"slow": slow, "per_fast_client_per_sec": per_client, "p99_ms": ms(r.latency.value_at_quantile(0.99))}));
            }
            let ratio = rates[1] / rates[0];
            println!("ratio (with slow / without): {ratio:.3}  (target >= 0.90)");
            results.push(json!({"ratio": ratio}));
        }
        Scenario::Storm {
            clients,
            rate,
            down_ms,
        } => {
            // Default admission control (500 handshakes/s) and backoff: the real thing.
            let mut proxy = Proxy::start(&cli.proxy_bin, "max_publish_per_sec = 1000000\n")?;
            let url = proxy.url();
            let stop = Arc::new(AtomicBool::new(false));
            let target = Arc::new(AtomicU64::new(0));
            let bar = progress("connecting", clients as u64);
            let mut tasks = Vec::new();
            for i in 0..clients {
                let sub = Resilient::new(format!("storm-{i}"));
                tasks.push(tokio::spawn(sub.run(
                    url.clone(),
                    target.clone(),
                    stop.clone(),
                    i as u64 + 1,
                )));
                if i % 50 == 0 {
                    bar.set_position(i as u64);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            bar.finish_and_clear();
            // A publisher with an outbox: unaccepted numbers are resent after the restart.
            let published = Arc::new(AtomicU64::new(0));
            let publisher_stop = Arc::new(AtomicBool::new(false));
            let (p_url, p_stop, p_count) = (url.clone(), publisher_stop.clone(), published.clone());
            let publisher =
                tokio::spawn(
                    async move { wire::publish_resilient(p_url, rate, p_stop, p_count).await },
                );
            tokio::time::sleep(Duration::from_secs(3)).await;
            println!(
                "storm: {clients} clients connected; kill -9 the proxy, down for {down_ms} ms"
            );
            proxy.kill9();
            let killed = Instant::now();
            tokio::time::sleep(Duration::from_millis(down_ms)).await;
            // Clients may get in while restart() still waits for the port file:
            // time from the moment the new process is started.
            let restarted = Instant::now();
            proxy.restart()?;
            tokio::time::sleep(Duration::from_secs(15)).await;
            // Stop publishing, then everyone must reach the final head.
            publisher_stop.store(true, Ordering::Relaxed);
            let _ = publisher.await;
            let sent = published.load(Ordering::Relaxed);
            let reader = Subscriber::connect(&proxy.url(), "storm-reader").await?;
            let head = reader.head();
            target.store(head, Ordering::Relaxed);
            let mut subs = Vec::new();
            let wait_until = Instant::now() + Duration::from_secs(60);
            for t in tasks {
                let left = wait_until.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, t).await {
                    Ok(Ok(s)) => subs.push(s),
                    _ => bail!("a client did not catch up within 60 s"),
                }
            }
            // Attempts after the kill, in 100 ms buckets.
            let mut buckets = std::collections::BTreeMap::<u64, u64>::new();
            let mut resumed_at = Vec::new();
            let (mut lost, mut behind) = (0, 0);
            for s in &subs {
                for a in s.attempts.iter().filter(|a| **a >= killed) {
                    *buckets
                        .entry(a.duration_since(killed).as_millis() as u64 / 100)
                        .or_default() += 1;
                }
                if let Some(w) = s.welcomes.iter().find(|w| **w >= restarted) {
                    resumed_at.push(w.duration_since(restarted));
                }
                lost += s.gaps;
                behind += u64::from(s.receiver.last_seq() < head);
            }
            resumed_at.sort();
            let all = resumed_at.last().copied().unwrap_or_default();
            let median = resumed_at
                .get(resumed_at.len() / 2)
                .copied()
                .unwrap_or_default();
            let peak_100ms = buckets.values().copied().max().unwrap_or(0);
            let peak_1s = buckets
                .keys()
                .map(|k| (*k..*k + 10).filter_map(|b| buckets.get(&b)).sum::<u64>())
                .max()
                .unwrap_or(0);
            let attempts: u64 = buckets.values().sum();
            println!(
                "resumed after the restart: {} of {clients}; all within {:.2} s (median {:.2} s)",
                resumed_at.len(),
                all.as_secs_f64(),
                median.as_secs_f64()
            );
            println!("connection attempts after the kill: {attempts}; peak {peak_1s} in any 1 s window, {peak_100ms} in any 100 ms");
            println!("events: {sent} accepted, head {head}; lost (gaps) {lost}; clients not at the head {behind}");
            results.push(json!({
                "clients": clients, "resumed": resumed_at.len(), "all_resumed_s": all.as_secs_f64(),
                "median_resumed_s": median.as_secs_f64(), "attempts": attempts, "peak_attempts_1s": peak_1s,
                "peak_attempts_100ms": peak_100ms, "accepted": sent, "head": head, "lost": lost, "not_at_head": behind,
            }));
            if lost > 0 || behind > 0 || resumed_at.len() < clients {
                bail!("the storm lost events or left clients behind");
            }
        }
        Scenario::Footprint {
            connections,
            events,
        } => {
            let proxy = Proxy::start(
                &cli.proxy_bin,
                &format!("{BENCH_CONFIG}max_events = {}\n", events * 2),
            )?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let base = proxy.stats().rss_kib;
            let bar = progress("idle connections", connections as u64);
            let mut idle = Vec::with_capacity(connections);
            for i in 0..connections {
                idle.push(Subscriber::connect(&proxy.url(), &format!("idle-{i}")).await?);
                if i % 100 == 0 {
                    bar.set_position(i as u64);
                }
            }
            bar.finish_and_clear();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let with_idle = proxy.stats().rss_kib;
            let per_conn = (with_idle.saturating_sub(base)) as f64 * 1024.0 / connections as f64;
            drop(idle);
            println!("idle connections: {connections}, proxy RSS {:.1} MiB -> {:.1} MiB: {:.1} KiB per connection", base as f64 / 1024.0, with_idle as f64 / 1024.0, per_conn / 1024.0);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before_events = proxy.stats().rss_kib;
            let mut publisher = Publisher::connect(&proxy.url(), "filler").await?;
            let mut sent = 0;
            while sent < events {
                publisher.publish_batch(256, 64).await?;
                sent += 256;
                publisher.wait_accepted(sent.saturating_sub(4_096)).await?;
            }
            publisher.wait_accepted(sent).await?;
            let after_events = proxy.stats().rss_kib;
            let db = proxy.dir.path().join("data/events.redb");
            let disk = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
            // The in-memory tail holds the newest 4096 events.
            let tail = 4_096.min(sent) as f64;
            let mem_per_event = after_events.saturating_sub(before_events) as f64 * 1024.0 / tail;
            println!("events: {sent} of 64-byte payloads: {:.0} bytes per event on disk, about {:.0} bytes per event in the in-memory tail", disk as f64 / sent as f64, mem_per_event);
            results.push(json!({"connections": connections, "rss_per_idle_connection_bytes": per_conn, "events": sent, "disk_bytes_per_event": disk as f64 / sent as f64, "memory_bytes_per_tail_event": mem_per_event}));
        }
    }
    if let Some(path) = cli.json {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&json!({"cores": cores, "results": results}))?,
        )?;
        println!("results written to {}", path.display());
    }
    Ok(())
}
