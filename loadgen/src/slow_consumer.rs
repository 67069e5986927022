//! `slow-consumer`: 20 fast subscribers with and without one subscriber
//! that never reads; the fast ones' rate should not drop.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use crate::bench::{start_proxy, Results, BENCH_CONFIG, DEFAULT_WINDOW};
use crate::complete::{verify, Expect};
use crate::workload::{run_throughput, Workload};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 20)]
    fast: usize,
    #[arg(long, default_value_t = 8)]
    seconds: u64,
}

pub async fn run(bin: &Path, args: Args, results: &mut Results) -> Result<()> {
    let Args { fast, seconds } = args;
    println!("slow consumer: {fast} fast subscribers, publisher as fast as the proxy accepts, {seconds} s per phase");
    let mut rates = Vec::new();
    for slow in [0, 1] {
        let mut proxy = start_proxy(bin, BENCH_CONFIG)?;
        let w = Workload {
            clients: fast,
            slow,
            rate: 0,
            seconds,
            payload_bytes: 64,
            window: DEFAULT_WINDOW,
        };
        let r = run_throughput(&proxy, w).await?;
        let per_client = r.delivered_per_sec() / fast as f64;
        println!(
            "  {slow} slow: {per_client:.0} events/s per fast client, p99 {:.2} ms",
            r.latency_ms(0.99)
        );
        let outcome = verify(
            &mut proxy,
            BENCH_CONFIG,
            std::slice::from_ref(&r.sent),
            Expect::Exact,
        )
        .await?;
        results.completeness(&format!("slow-consumer, {slow} slow"), &outcome);
        rates.push(per_client);
        results
            .rows
            .push(json!({"slow": slow, "per_fast_client_per_sec": per_client,
            "p99_ms": r.latency_ms(0.99), "completeness": outcome.json()}));
    }
    let ratio = rates[1] / rates[0].max(1e-9);
    println!("ratio (with slow / without): {ratio:.3}  (target >= 0.90)");
    results.rows.push(json!({ "ratio": ratio }));
    Ok(())
}
