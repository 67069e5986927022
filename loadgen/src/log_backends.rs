//! `log-backends`: the same throughput workload on the embedded log and on
//! a NATS JetStream log (a local `nats-server -js`), run after run: the
//! ratio.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use crate::bench::{merge_config, start_proxy, Results, BENCH_CONFIG, DEFAULT_WINDOW};
use crate::complete::{verify, Expect};
use crate::workload::{run_throughput, Workload};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Events per second published (0: as fast as the proxy accepts them).
    #[arg(long, value_delimiter = ',', default_value = "1000,0")]
    rates: Vec<u64>,
    #[arg(long, default_value_t = 8)]
    seconds: u64,
}

pub async fn run(bin: &Path, args: Args, results: &mut Results) -> Result<()> {
    let Args {
        clients,
        rates,
        seconds,
    } = args;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The end-to-end tests' nats-server harness (a temp store, a free port).
    let nats = e2e::Nats::start();
    println!("log backends: {clients} clients, 1 publisher, {seconds} s per run, {cores} cores; JetStream on a local nats-server (file storage)");
    println!(
        "{:>10} {:>10} {:>12} {:>12} {:>9} {:>9} {:>7}",
        "rate", "log", "published/s", "delivered/s", "p50 ms", "p99 ms", "cpu %"
    );
    for rate in rates {
        let mut row = json!({ "clients": clients, "rate": rate });
        let rate_label = if rate == 0 {
            "max".to_string()
        } else {
            rate.to_string()
        };
        for (name, log) in [
            ("embedded", "embedded".to_string()),
            ("jetstream", nats.url()),
        ] {
            let config = merge_config(BENCH_CONFIG, &format!("log = \"{log}\"\nproxy_name = \"bench-{name}\"\nnats_stream = \"BENCH{rate}\"\nnats_subject = \"bench.{rate}\"\n"));
            let mut proxy = start_proxy(bin, &config)?;
            let w = Workload {
                clients,
                slow: 0,
                rate,
                seconds,
                payload_bytes: 64,
                window: DEFAULT_WINDOW,
            };
            let r = run_throughput(&proxy, w).await?;
            let (p50, p99) = (r.latency_ms(0.50), r.latency_ms(0.99));
            println!(
                "{:>10} {:>10} {:>12.0} {:>12.0} {:>9.2} {:>9.2} {:>7.0}",
                rate_label,
                name,
                r.published_per_sec(),
                r.delivered_per_sec(),
                p50,
                p99,
                r.cpu_percent
            );
            let outcome = verify(
                &mut proxy,
                &config,
                std::slice::from_ref(&r.sent),
                Expect::Exact,
            )
            .await?;
            results.completeness(&format!("log-backends {name} at {rate_label}"), &outcome);
            row[name] = json!({
                "published_per_sec": r.published_per_sec(),
                "delivered_per_sec": r.delivered_per_sec(),
                "p50_ms": p50, "p99_ms": p99, "cpu_percent": r.cpu_percent, "duplicates": r.duplicates,
                "completeness": outcome.json(),
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
        results.rows.push(row);
    }
    Ok(())
}
