//! `throughput`: N subscribers, one publisher; delivered events/s and
//! end-to-end latency, for each publish window asked for, every run
//! checked for completeness.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use serde_json::json;

use crate::bench::{merge_config, start_proxy, Results, BENCH_CONFIG};
use crate::complete::{verify, Expect};
use crate::workload::{run_throughput, Workload};

#[derive(clap::Args)]
pub struct Args {
    /// Subscriber counts to run, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    clients: Vec<usize>,
    /// Events per second published (0: as fast as the proxy accepts them).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Payload size in bytes (padding on top of the timestamp and numbers).
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// The publisher's publish windows to run (most publishes sent and not
    /// yet answered); the proxy is started with `publish_window` set to
    /// each, 1 to 65536.
    #[arg(long, value_delimiter = ',', default_value = "4096")]
    window: Vec<usize>,
    /// Rounds of every (window, clients) run, interleaved so that a noisy
    /// neighbour hits all settings alike; with more than one, medians and
    /// spreads are printed.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

/// One measured run, kept for the summary.
struct Point {
    round: usize,
    delivered: f64,
    p99: f64,
    cpu_us: f64,
    accepted: f64,
    accept_p99: f64,
}

pub async fn run(bin: &Path, args: Args, results: &mut Results) -> Result<()> {
    if let Some(w) = args.window.iter().find(|w| !(1..=65_536).contains(*w)) {
        bail!("--window {w}: the proxy's publish_window is 1 to 65536");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rate = if args.rate == 0 {
        "max".to_string()
    } else {
        args.rate.to_string()
    };
    println!(
        "throughput: 1 publisher at {rate} events/s, {} s per run, {}-byte payloads, windows {:?}, {} round(s), {cores} cores",
        args.seconds, args.payload_bytes, args.window, args.rounds
    );
    println!(
        "{:>6} {:>7} {:>12} {:>12} {:>9} {:>9} {:>9} {:>6} {:>8} {:>5}",
        "window",
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
    let mut points: BTreeMap<(usize, usize), Vec<Point>> = BTreeMap::new();
    for round in 1..=args.rounds.max(1) {
        for &window in &args.window {
            for &clients in &args.clients {
                let config = merge_config(BENCH_CONFIG, &format!("publish_window = {window}\n"));
                let mut proxy = start_proxy(bin, &config)?;
                let w = Workload {
                    clients,
                    slow: 0,
                    rate: args.rate,
                    seconds: args.seconds,
                    payload_bytes: args.payload_bytes,
                    window,
                };
                let r = run_throughput(&proxy, w).await?;
                println!(
                    "{:>6} {:>7} {:>12.0} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>6.0} {:>8.1} {:>5}",
                    window,
                    clients,
                    r.published_per_sec(),
                    r.delivered_per_sec(),
                    r.latency_ms(0.50),
                    r.latency_ms(0.99),
                    r.latency_ms(0.999),
                    r.cpu_percent,
                    r.rss_kib as f64 / 1024.0,
                    r.duplicates
                );
                println!(
                    "{:>8} proxy CPU {:.3} us per delivery; publisher: {:.0} accepted/s, publish to Accepted p50 {:.2} ms, p99 {:.2} ms",
                    "",
                    r.cpu_us_per_delivery(),
                    r.accepted_per_sec(),
                    r.accept_ms(0.50),
                    r.accept_ms(0.99)
                );
                let metric = |name: &str, q: &str| proxy.metric_quantile(name, q).unwrap_or(0.0);
                let commit_p50 = metric("proxy_log_commit_seconds", "0.5") * 1e3;
                let commit_p99 = metric("proxy_log_commit_seconds", "0.99") * 1e3;
                let batch = metric("proxy_log_batch_requests", "0.5");
                println!("{:>8} group commit p50 {commit_p50:.2} ms, p99 {commit_p99:.2} ms, {batch:.0} requests per commit (p50)", "");
                let outcome = verify(
                    &mut proxy,
                    &config,
                    std::slice::from_ref(&r.sent),
                    Expect::Exact,
                )
                .await?;
                results.completeness(
                    &format!("throughput window {window}, {clients} clients, round {round}"),
                    &outcome,
                );
                let mut row = json!({
                    "round": round, "window": window, "clients": clients,
                    "published_per_sec": r.published_per_sec(),
                    "delivered_per_sec": r.delivered_per_sec(),
                    "p50_ms": r.latency_ms(0.50), "p99_ms": r.latency_ms(0.99),
                    "p999_ms": r.latency_ms(0.999), "cpu_percent": r.cpu_percent,
                    "rss_mib": r.rss_kib as f64 / 1024.0, "duplicates": r.duplicates,
                    "cpu_us_per_delivery": r.cpu_us_per_delivery(),
                    "accepted_per_sec": r.accepted_per_sec(),
                    "accept_p50_ms": r.accept_ms(0.50), "accept_p99_ms": r.accept_ms(0.99),
                    "commit_p50_ms": commit_p50, "commit_p99_ms": commit_p99,
                });
                row["completeness"] = outcome.json();
                results.rows.push(row);
                points.entry((window, clients)).or_default().push(Point {
                    round,
                    delivered: r.delivered_per_sec(),
                    p99: r.latency_ms(0.99),
                    cpu_us: r.cpu_us_per_delivery(),
                    accepted: r.accepted_per_sec(),
                    accept_p99: r.accept_ms(0.99),
                });
            }
        }
    }
    if args.rounds > 1 {
        summarize(&args, &points, results);
    }
    Ok(())
}

/// Median and range of `values` (zeros when there are none).
fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

/// Medians over the rounds, and each window against the first one, as
/// ratios taken within a round (paired, so a noisy round moves both).
fn summarize(args: &Args, points: &BTreeMap<(usize, usize), Vec<Point>>, results: &mut Results) {
    let Some(&base) = args.window.first() else {
        return;
    };
    println!("summary over {} rounds: median [min..max]", args.rounds);
    for &clients in &args.clients {
        for &window in &args.window {
            let Some(ps) = points.get(&(window, clients)) else {
                continue;
            };
            let (d, dmin, dmax) = spread(&mut ps.iter().map(|p| p.delivered).collect::<Vec<_>>());
            let (p, pmin, pmax) = spread(&mut ps.iter().map(|p| p.p99).collect::<Vec<_>>());
            let (c, cmin, cmax) = spread(&mut ps.iter().map(|p| p.cpu_us).collect::<Vec<_>>());
            let (a, amin, amax) = spread(&mut ps.iter().map(|p| p.accepted).collect::<Vec<_>>());
            let (ap, apmin, apmax) =
                spread(&mut ps.iter().map(|p| p.accept_p99).collect::<Vec<_>>());
            let mut line = format!(
                "  window {window:>5}, {clients} clients: delivered/s {d:.0} [{dmin:.0}..{dmax:.0}], p99 {p:.2} ms [{pmin:.2}..{pmax:.2}], cpu {c:.3} us/delivery [{cmin:.3}..{cmax:.3}], accepted/s {a:.0} [{amin:.0}..{amax:.0}], Accepted p99 {ap:.2} ms [{apmin:.2}..{apmax:.2}]"
            );
            let mut row = json!({"summary": true, "window": window, "clients": clients,
                "delivered_per_sec_median": d, "delivered_per_sec_min": dmin, "delivered_per_sec_max": dmax,
                "p99_ms_median": p, "p99_ms_min": pmin, "p99_ms_max": pmax});
            if window != base {
                if let Some(bs) = points.get(&(base, clients)) {
                    let paired = |f: fn(&Point) -> f64| -> Vec<f64> {
                        ps.iter()
                            .filter_map(|p| {
                                let b = bs.iter().find(|b| b.round == p.round)?;
                                Some(f(p) / f(b).max(1e-9))
                            })
                            .collect()
                    };
                    let (rd, rdmin, rdmax) = spread(&mut paired(|p| p.delivered));
                    let (rp, rpmin, rpmax) = spread(&mut paired(|p| p.p99));
                    line.push_str(&format!(
                        "; against window {base}: delivered/s {rd:.2}x [{rdmin:.2}..{rdmax:.2}], p99 {rp:.2}x [{rpmin:.2}..{rpmax:.2}]"
                    ));
                    row["ratio_delivered"] = json!([rd, rdmin, rdmax]);
                    row["ratio_p99"] = json!([rp, rpmin, rpmax]);
                }
            }
            println!("{line}");
            results.rows.push(row);
        }
    }
}
