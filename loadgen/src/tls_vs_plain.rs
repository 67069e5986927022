//! `tls`: the same throughput workload over `ws://` and `wss://` in one
//! run, rounds interleaved (plain first in odd rounds, TLS first in even
//! ones, so drift and noisy neighbours hit both alike), then the cost of a
//! connection: full handshakes (TCP, TLS, WebSocket upgrade, Hello and
//! Welcome) one after the other, wall time and the proxy's CPU per
//! connection. TLS is the proxy's own (rustls, ring, a P-256 certificate).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use crate::bench::{merge_config, proxy_stats, start_proxy, Results, BENCH_CONFIG};
use crate::complete::{verify, Expect};
use crate::tls::TestCert;
use crate::workload::{run_throughput_at, Workload};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Events per second published (0: as fast as the proxy accepts them).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Connections opened one after the other per round for the handshake cost.
    #[arg(long, default_value_t = 500)]
    handshakes: usize,
}

struct Point {
    delivered: f64,
    p99: f64,
    connect_ms: f64,
    cpu_ms: f64,
}

pub async fn run(bin: &Path, args: Args, results: &mut Results) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cert = TestCert::make(dir.path())?;
    cert.trust()?;
    println!(
        "tls: {} clients, 1 publisher at {} events/s, {} s per run, {}-byte payloads, {} rounds; {} handshakes per round",
        args.clients,
        if args.rate == 0 { "max".to_string() } else { args.rate.to_string() },
        args.seconds,
        args.payload_bytes,
        args.rounds,
        args.handshakes
    );
    println!(
        "{:>5} {:>6} {:>12} {:>9} {:>9} {:>6} {:>14} {:>14}",
        "round", "scheme", "delivered/s", "p50 ms", "p99 ms", "cpu %", "connect ms", "proxy cpu ms"
    );
    let mut plain = Vec::new();
    let mut tls = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let order = if round % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        for use_tls in order {
            let config = if use_tls {
                merge_config(BENCH_CONFIG, &cert.config())
            } else {
                BENCH_CONFIG.to_string()
            };
            let mut proxy = start_proxy(bin, &config)?;
            let scheme = if use_tls { "wss" } else { "ws" };
            let url = format!("{scheme}://{}/ws", proxy.addr);
            let w = Workload {
                clients: args.clients,
                slow: 0,
                rate: args.rate,
                seconds: args.seconds,
                payload_bytes: args.payload_bytes,
                window: crate::bench::DEFAULT_WINDOW,
            };
            let r = run_throughput_at(&proxy, &url, w).await?;
            let (connect_ms, cpu_ms) = handshake_cost(&proxy, &url, args.handshakes).await?;
            println!(
                "{:>5} {:>6} {:>12.0} {:>9.2} {:>9.2} {:>6.0} {:>14.3} {:>14.3}",
                round,
                scheme,
                r.delivered_per_sec(),
                r.latency_ms(0.50),
                r.latency_ms(0.99),
                r.cpu_percent,
                connect_ms,
                cpu_ms
            );
            // A TLS proxy is read back over plain WebSocket (restarted
            // without the certificate); its /stats is not reachable here.
            let (check_config, expect) = if use_tls {
                (BENCH_CONFIG.to_string(), Expect::LogOnly)
            } else {
                (config.clone(), Expect::Exact)
            };
            let outcome = verify(
                &mut proxy,
                &check_config,
                std::slice::from_ref(&r.sent),
                expect,
            )
            .await?;
            results.completeness(&format!("tls round {round}, {scheme}"), &outcome);
            results.rows.push(json!({
                "round": round, "scheme": scheme, "clients": args.clients,
                "delivered_per_sec": r.delivered_per_sec(), "p50_ms": r.latency_ms(0.50),
                "p99_ms": r.latency_ms(0.99), "cpu_percent": r.cpu_percent,
                "connect_ms": connect_ms, "proxy_cpu_ms_per_connection": cpu_ms,
                "completeness": outcome.json(),
            }));
            let point = Point {
                delivered: r.delivered_per_sec(),
                p99: r.latency_ms(0.99),
                connect_ms,
                cpu_ms,
            };
            if use_tls {
                tls.push(point)
            } else {
                plain.push(point)
            }
        }
    }
    summarize(&plain, &tls);
    Ok(())
}

/// Opens `n` connections one after the other (each to its Welcome, then
/// closed): wall ms per connection and the proxy's CPU ms per connection.
async fn handshake_cost(proxy: &e2e::Proxy, url: &str, n: usize) -> Result<(f64, f64)> {
    // Let the throughput run's sessions wind down first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proxy_stats(proxy);
    let started = Instant::now();
    for i in 0..n {
        let (mut ws, _) = crate::wire::hello(url, &format!("handshake-{i}")).await?;
        let _ = ws.close(None).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let after = proxy_stats(proxy);
    let cpu_seconds = after.cpu_percent_since(&before) / 100.0 * wall;
    let n = n.max(1) as f64;
    Ok((wall * 1e3 / n, cpu_seconds * 1e3 / n))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// TLS over plain per round (rounds pair up in order), median and range.
fn summarize(plain: &[Point], tls: &[Point]) {
    let ratios = |f: &dyn Fn(&Point) -> f64| -> Vec<f64> {
        plain.iter().zip(tls).map(|(p, t)| f(t) / f(p)).collect()
    };
    let line = |what: &str, r: Vec<f64>| {
        let (lo, hi) = r
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        println!(
            "  tls/plain {what}: median {:.3} (range {lo:.3} to {hi:.3} over {} rounds)",
            median(r.clone()),
            r.len()
        );
    };
    println!();
    line("delivered/s", ratios(&|p| p.delivered));
    line("p99", ratios(&|p| p.p99));
    let extra_connect: Vec<f64> = plain
        .iter()
        .zip(tls)
        .map(|(p, t)| t.connect_ms - p.connect_ms)
        .collect();
    let extra_cpu: Vec<f64> = plain
        .iter()
        .zip(tls)
        .map(|(p, t)| t.cpu_ms - p.cpu_ms)
        .collect();
    println!(
        "  a connection: plain {:.3} ms ({:.3} ms proxy CPU), TLS {:.3} ms ({:.3} ms proxy CPU): TLS adds {:.3} ms and {:.3} ms of proxy CPU (medians)",
        median(plain.iter().map(|p| p.connect_ms).collect()),
        median(plain.iter().map(|p| p.cpu_ms).collect()),
        median(tls.iter().map(|p| p.connect_ms).collect()),
        median(tls.iter().map(|p| p.cpu_ms).collect()),
        median(extra_connect),
        median(extra_cpu),
    );
}
