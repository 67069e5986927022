//! `loadgen`: drives a real edge proxy over loopback and reports what users
//! care about: delivered events/s, end-to-end latency percentiles, the
//! proxy's CPU and RSS, and the scenarios of docs/BENCHMARKS.md.
//!
//! It starts the proxy itself (a release build, fresh data directory,
//! through the end-to-end tests' launcher `e2e::Proxy`) so one command gives
//! a reproducible figure; results print as a table and, with `--json FILE`,
//! as JSON. Every scenario that publishes checks afterwards that each
//! publish was applied exactly once and in order (`complete.rs`) and exits
//! non-zero when one was not: a fast figure from a proxy that loses
//! publishes is worth nothing.
//!
//! This file is the command line and the dispatch; each scenario lives in
//! its own module.

mod abuse;
mod bench;
mod catchup;
mod complete;
mod footprint;
mod idle;
mod log_backends;
mod proc_stats;
mod slow_consumer;
mod storm;
mod throughput;
mod tls;
mod tls_vs_plain;
mod txdrop;
mod vfo;
mod wire;
mod workload;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::bench::Results;

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
    /// N subscribers, one publisher: delivered events/s and end-to-end
    /// latency, per publish window.
    Throughput(throughput::Args),
    /// 20 fast subscribers with and without one subscriber that never reads.
    SlowConsumer(slow_consumer::Args),
    /// N clients connected, the proxy killed (-9) and restarted: time until all
    /// have resumed, peak connection attempts per second, events lost.
    Storm(storm::Args),
    /// One client comes back far behind while live clients stream: its paged
    /// replay, the proxy's RSS growth, the live clients' p99 before and during.
    CatchUp(catchup::Args),
    /// A simulated radio on a pty: time from a TX drop mid-frame to the
    /// dashboard hearing the radio link is back (median of the runs).
    TxDrop(txdrop::Args),
    /// A simulated radio on a pty: time from a turn of its VFO knob to a
    /// dashboard receiving that frequency, polling versus auto information.
    Vfo(vfo::Args),
    /// The same throughput workload on the embedded log and on a NATS
    /// JetStream log (a local `nats-server -js`), run after run: the ratio.
    LogBackends(log_backends::Args),
    /// RSS per idle connection, and bytes per event on disk and in memory.
    Footprint(footprint::Args),
    /// Minutes of hostile load at the default limits (kinds, big payloads,
    /// bursts, client-id churn, reconnects, stuck readers): the RSS ceiling
    /// against a bound derived from the limits.
    Abuse(abuse::Args),
    /// The throughput workload over ws:// and wss:// in interleaved rounds,
    /// and the cost of a TLS connection.
    Tls(tls_vs_plain::Args),
    /// An idle station: the demo hardware and one dashboard, nothing
    /// happening: bytes written per second, wake-ups per second, CPU, RSS.
    Idle(idle::Args),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bin = &cli.proxy_bin;
    let mut results = Results::default();
    let r = &mut results;
    match cli.scenario {
        Scenario::Throughput(args) => throughput::run(bin, args, r).await?,
        Scenario::SlowConsumer(args) => slow_consumer::run(bin, args, r).await?,
        Scenario::Storm(args) => storm::run(bin, args, r).await?,
        Scenario::CatchUp(args) => catchup::run(bin, args, r).await?,
        Scenario::TxDrop(args) => txdrop::run(bin, args, r).await?,
        Scenario::Vfo(args) => vfo::run(bin, args, r).await?,
        Scenario::LogBackends(args) => log_backends::run(bin, args, r).await?,
        Scenario::Footprint(args) => footprint::run(bin, args, r).await?,
        Scenario::Abuse(args) => abuse::run(bin, args, r).await?,
        Scenario::Tls(args) => tls_vs_plain::run(bin, args, r).await?,
        Scenario::Idle(args) => idle::run(bin, args, r).await?,
    }
    if let Some(path) = cli.json {
        let all =
            json!({"cores": cores, "results": results.rows, "incomplete": results.incomplete});
        std::fs::write(&path, serde_json::to_string_pretty(&all)?)?;
        println!("results written to {}", path.display());
    }
    if !results.incomplete.is_empty() {
        eprintln!();
        eprintln!("!!! LOADGEN: PUBLISHES WERE LOST, DUPLICATED OR MISCOUNTED !!!");
        for problem in &results.incomplete {
            eprintln!("!!!   {problem}");
        }
        bail!(
            "{} completeness failure(s): the proxy did not apply every publish exactly once",
            results.incomplete.len()
        );
    }
    Ok(())
}
