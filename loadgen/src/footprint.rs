//! `footprint`: RSS per idle connection, and bytes per event on disk and
//! in memory.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::bench::{
    merge_config, progress, proxy_stats, start_proxy, Results, BENCH_CONFIG, DEFAULT_WINDOW,
};
use crate::complete::{verify, Expect};
use crate::wire::{Publisher, Subscriber};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    #[arg(long, default_value_t = 20_000)]
    events: u64,
}

pub async fn run(bin: &Path, args: Args, results: &mut Results) -> Result<()> {
    let Args {
        connections,
        events,
    } = args;
    let config = merge_config(BENCH_CONFIG, &format!("max_events = {}\n", events * 2));
    let mut proxy = start_proxy(bin, &config)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = proxy_stats(&proxy).rss_kib;
    let bar = progress("idle connections", connections as u64);
    let mut idle = Vec::with_capacity(connections);
    for i in 0..connections {
        idle.push(Subscriber::connect(&proxy.ws_url(), &format!("idle-{i}")).await?);
        if i % 100 == 0 {
            bar.set_position(i as u64);
        }
    }
    bar.finish_and_clear();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_idle = proxy_stats(&proxy).rss_kib;
    let per_conn = (with_idle.saturating_sub(base)) as f64 * 1024.0 / connections.max(1) as f64;
    drop(idle);
    println!("idle connections: {connections}, proxy RSS {:.1} MiB -> {:.1} MiB: {:.1} KiB per connection", base as f64 / 1024.0, with_idle as f64 / 1024.0, per_conn / 1024.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_events = proxy_stats(&proxy).rss_kib;
    let mut publisher = Publisher::connect(&proxy.ws_url(), "filler", DEFAULT_WINDOW).await?;
    while publisher.sent() < events {
        publisher.publish_batch(256, 64).await?;
    }
    let sent = publisher.finish().await?;
    let after_events = proxy_stats(&proxy).rss_kib;
    let db = proxy.data_dir.join("events.redb");
    let disk = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let count = sent.count.max(1);
    // The in-memory tail holds the newest 4096 events.
    let tail = 4_096.min(count) as f64;
    let mem_per_event = after_events.saturating_sub(before_events) as f64 * 1024.0 / tail;
    println!("events: {count} of 64-byte payloads: {:.0} bytes per event on disk, about {:.0} bytes per event in the in-memory tail", disk as f64 / count as f64, mem_per_event);
    let outcome = verify(&mut proxy, &config, &[sent], Expect::Exact).await?;
    results.completeness("footprint", &outcome);
    results.rows.push(json!({"connections": connections, "rss_per_idle_connection_bytes": per_conn, "events": count,
        "disk_bytes_per_event": disk as f64 / count as f64, "memory_bytes_per_tail_event": mem_per_event,
        "completeness": outcome.json()}));
    Ok(())
}
