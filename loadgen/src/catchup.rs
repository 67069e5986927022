//! `catch-up`: one client comes back far behind while live clients
//! stream: its paged replay, the proxy's RSS growth, the live clients' p99
//! before and during.
//!
//! The catch-up client comes back `backlog` events behind (resuming from
//! `last_seq = 0` of a session that was welcomed and never got an event) and
//! reads the replay as fast as the proxy's pages allow, acking each page.
//! Checks every event arrives once, in order.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use shared_protocol::frame::*;
use tokio_tungstenite::tungstenite::Message;

use crate::bench::{
    merge_config, progress, proxy_stats, start_proxy, Results, BENCH_CONFIG, DEFAULT_WINDOW,
};
use crate::complete::{verify, Expect};
use crate::proc_stats::ProcStats;
use crate::wire::{Publisher, Ws};
use crate::workload::{run_throughput, Workload};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 50_000)]
    backlog: u64,
    #[arg(long, default_value_t = 20)]
    live: usize,
    /// Live events per second.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    #[arg(long, default_value_t = 6)]
    seconds: u64,
}

pub async fn run(bin: &Path, args: Args, results: &mut Results) -> Result<()> {
    let Args {
        backlog,
        live,
        rate,
        seconds,
    } = args;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let config = merge_config(
        BENCH_CONFIG,
        &format!(
            "max_behind = {}\nmax_events = {}\nretention_ms = 3600000\n",
            backlog * 2,
            backlog * 4
        ),
    );
    let mut proxy = start_proxy(bin, &config)?;
    let epoch = register(&proxy.ws_url()).await?;
    let mut filler = Publisher::connect(&proxy.ws_url(), "filler", DEFAULT_WINDOW).await?;
    let bar = progress("writing the backlog", backlog / 1_000);
    while filler.sent() < backlog {
        let n = 500.min(backlog - filler.sent());
        filler.publish_batch(n as usize, 64).await?;
        bar.set_position(filler.sent() / 1_000);
    }
    let filled = filler.finish().await?;
    bar.finish_and_clear();
    println!("catch-up: {backlog} events behind, {live} live clients at {rate} events/s, {seconds} s per phase, {cores} cores");
    let w = Workload {
        clients: live,
        slow: 0,
        rate,
        seconds,
        payload_bytes: 64,
        window: DEFAULT_WINDOW,
    };
    let quiet = run_throughput(&proxy, w).await?;
    let rss_before = proxy_stats(&proxy).rss_kib;
    // The late client and the second live phase, at the same time;
    // the proxy's RSS sampled throughout.
    let url = proxy.ws_url();
    let late = tokio::spawn(async move {
        // Midway through the live phase.
        tokio::time::sleep(Duration::from_millis(seconds * 500)).await;
        catch_up(&url, epoch, backlog).await
    });
    let pid = proxy.pid().unwrap_or(0);
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let (s, p) = (sampling.clone(), peak.clone());
    let sampler = tokio::spawn(async move {
        while s.load(Ordering::Relaxed) {
            p.fetch_max(ProcStats::of(pid).rss_kib, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let busy = run_throughput(&proxy, w).await?;
    let took = late.await??;
    sampling.store(false, Ordering::Relaxed);
    sampler.await?;
    let growth_mib = peak.load(Ordering::Relaxed).saturating_sub(rss_before) as f64 / 1024.0;
    let (p99_quiet, p99_busy) = (quiet.latency_ms(0.99), busy.latency_ms(0.99));
    let (max_quiet, max_busy) = (
        crate::bench::ms(quiet.latency.max()),
        crate::bench::ms(busy.latency.max()),
    );
    println!("  live p99: {p99_quiet:.2} ms before, {p99_busy:.2} ms during the catch-up ({:.2}x); max {max_quiet:.2} ms before, {max_busy:.2} ms during", p99_busy / p99_quiet.max(0.001));
    println!(
        "  the late client caught up {backlog} events in {:.2} s ({:.0} events/s), every one once and in order",
        took.as_secs_f64(),
        backlog as f64 / took.as_secs_f64()
    );
    println!("  proxy RSS: {:.1} MiB before, peak growth {growth_mib:.1} MiB during (the backlog is {:.1} MiB on the wire)", rss_before as f64 / 1024.0, backlog as f64 * 110.0 / 1_048_576.0);
    let sent = [filled, quiet.sent.clone(), busy.sent.clone()];
    let outcome = verify(&mut proxy, &config, &sent, Expect::Exact).await?;
    results.completeness("catch-up (backlog and both live phases)", &outcome);
    results.rows.push(json!({"backlog": backlog, "live": live, "rate": rate, "p99_before_ms": p99_quiet, "p99_during_ms": p99_busy, "max_before_ms": max_quiet, "max_during_ms": max_busy,
        "catch_up_seconds": took.as_secs_f64(), "rss_before_mib": rss_before as f64 / 1024.0, "rss_growth_mib": growth_mib,
        "completeness": outcome.json()}));
    Ok(())
}

async fn hello(url: &str, resume: Option<Resume>) -> Result<(Ws, Welcome)> {
    crate::wire::hello_from(url, "catch-up", resume).await
}

/// Connects once to be welcomed (learns the epoch), then leaves.
async fn register(url: &str) -> Result<u64> {
    let (mut ws, welcome) = hello(url, None).await?;
    let _ = ws.close(None).await;
    Ok(welcome.epoch)
}

/// Resumes from 0 and reads until `upto`; returns how long it took.
async fn catch_up(url: &str, epoch: u64, upto: u64) -> Result<Duration> {
    let started = Instant::now();
    let (mut ws, welcome) = hello(url, Some(Resume { epoch, last_seq: 0 })).await?;
    if !welcome.resumed {
        bail!("the proxy did not replay (raise max_behind)");
    }
    let mut last = 0;
    while last < upto {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| anyhow!("replay stalled at {last}"))?
            .ok_or_else(|| anyhow!("closed at {last}"))??;
        let Message::Binary(b) = msg else { continue };
        match ServerFrame::decode(&b, usize::MAX)? {
            ServerFrame::Event(e) => {
                if e.seq != last + 1 {
                    bail!("expected seq {}, got {}", last + 1, e.seq);
                }
                last = e.seq;
                if last % 100 == 0 {
                    ws.send(Message::Binary(
                        ClientFrame::Ack { upto: last }.encode()?.into(),
                    ))
                    .await?;
                }
            }
            ServerFrame::Gap(g) => bail!("gap in the replay: {g:?}"),
            ServerFrame::Ping(p) => {
                ws.send(Message::Binary(ClientFrame::Pong(p).encode()?.into()))
                    .await?
            }
            _ => {}
        }
    }
    Ok(started.elapsed())
}
