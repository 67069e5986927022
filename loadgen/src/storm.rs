//! `storm`: N clients connected, the proxy killed (-9) and restarted: time
//! until all have resumed, peak connection attempts per second, events
//! lost; and the publisher's outbox checked against the log.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::json;

use crate::bench::{progress, start_proxy, Results};
use crate::complete::{verify, Expect};
use crate::wire::{publish_resilient, Resilient, Subscriber};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// Events per second published during the run.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// How long the proxy stays down.
    #[arg(long, default_value_t = 1_000)]
    down_ms: u64,
}

pub async fn run(bin: &Path, args: Args, results: &mut Results) -> Result<()> {
    let Args {
        clients,
        rate,
        down_ms,
    } = args;
    // Default admission control (500 handshakes/s), backoff and publish
    // window: the real thing; only the publish rate limit out of the way,
    // and nothing trimmed before the check.
    let config = "max_publish_per_sec = 1000000\nmax_events = 100000000\nretention_ms = 3600000\n";
    let mut proxy = start_proxy(bin, config)?;
    let url = proxy.ws_url();
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
    // A publisher with an outbox: unanswered numbers are resent after the restart.
    let accepted = Arc::new(AtomicU64::new(0));
    let publisher_stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish_resilient(
        url.clone(),
        rate,
        publisher_stop.clone(),
        accepted.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("storm: {clients} clients connected; kill -9 the proxy, down for {down_ms} ms");
    proxy.kill9();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(down_ms)).await;
    // Clients may get in while restart() still waits for the port file:
    // time from the moment the new process is started.
    let restarted = Instant::now();
    proxy.restart();
    tokio::time::sleep(Duration::from_secs(15)).await;
    // Stop publishing (every publish answered), then everyone must reach the final head.
    publisher_stop.store(true, Ordering::Relaxed);
    let published = publisher.await?;
    let sent = published.sent.count;
    let reader = Subscriber::connect(&proxy.ws_url(), "storm-reader").await?;
    let head = reader.head();
    drop(reader);
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
    println!("events: {sent} published, head {head}; lost (gaps) {lost}; clients not at the head {behind}");
    // What reached the new process: what was sent on connections welcomed
    // after the kill.
    let after: Vec<_> = published
        .connections
        .iter()
        .filter(|c| c.welcomed >= killed)
        .collect();
    let expect = Expect::AfterRestart {
        received: after.iter().map(|c| c.sent).sum(),
        resent: after.iter().map(|c| c.resent).sum(),
    };
    let outcome = verify(&mut proxy, config, &[published.sent], expect).await?;
    results.completeness("storm (the publisher's outbox)", &outcome);
    results.rows.push(json!({
        "clients": clients, "resumed": resumed_at.len(), "all_resumed_s": all.as_secs_f64(),
        "median_resumed_s": median.as_secs_f64(), "attempts": attempts, "peak_attempts_1s": peak_1s,
        "peak_attempts_100ms": peak_100ms, "published": sent, "head": head, "lost": lost, "not_at_head": behind,
        "completeness": outcome.json(),
    }));
    if lost > 0 || behind > 0 || resumed_at.len() < clients {
        bail!("the storm lost events or left clients behind");
    }
    Ok(())
}
