//! The throughput workload that several scenarios run: one publisher and
//! N subscribers for a while, measured from the subscribers' side.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use e2e::Proxy;
use hdrhistogram::Histogram;

use crate::bench::{progress, proxy_stats};
use crate::complete::Sent;
use crate::wire::{Publisher, Subscriber};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Subscribers that read, ack and measure latency.
    pub clients: usize,
    /// Subscribers that connect and then never read.
    pub slow: usize,
    /// Publishes per second (0: as fast as the window allows).
    pub rate: u64,
    pub seconds: u64,
    pub payload_bytes: usize,
    /// The publisher's most unanswered publishes.
    pub window: usize,
}

pub struct RunResult {
    pub delivered: u64,
    pub seconds: f64,
    pub latency: Histogram<u64>,
    pub duplicates: u64,
    pub cpu_percent: f64,
    pub rss_kib: u64,
    pub published: u64,
    /// Publishes answered by `Accepted` within the measured window.
    pub accepted: u64,
    /// Publish to its `Accepted`, at the publisher, in µs.
    pub accept_latency: Histogram<u64>,
    /// The proxy's CPU seconds (user + system) over the measured window.
    pub cpu_seconds: f64,
    /// What the publisher sent, for the completeness check.
    pub sent: Sent,
}

impl RunResult {
    pub fn delivered_per_sec(&self) -> f64 {
        self.delivered as f64 / self.seconds
    }

    pub fn published_per_sec(&self) -> f64 {
        self.published as f64 / self.seconds
    }

    pub fn accepted_per_sec(&self) -> f64 {
        self.accepted as f64 / self.seconds
    }

    /// The proxy's CPU time per event delivered, in µs.
    pub fn cpu_us_per_delivery(&self) -> f64 {
        self.cpu_seconds * 1e6 / (self.delivered.max(1) as f64)
    }

    /// A quantile of publish-to-`Accepted`, in milliseconds.
    pub fn accept_ms(&self, q: f64) -> f64 {
        crate::bench::ms(self.accept_latency.value_at_quantile(q))
    }

    /// A latency quantile in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        crate::bench::ms(self.latency.value_at_quantile(q))
    }
}

/// One publisher and `w.clients` subscribers for `w.seconds`; afterwards
/// waits until every publish is answered.
pub async fn run_throughput(proxy: &Proxy, w: Workload) -> Result<RunResult> {
    run_throughput_at(proxy, &proxy.ws_url(), w).await
}

/// [`run_throughput`] with the clients connecting to `url` (`wss://` too).
pub async fn run_throughput_at(proxy: &Proxy, url: &str, w: Workload) -> Result<RunResult> {
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
    for i in 0..w.clients {
        let mut sub = Subscriber::connect(url, &format!("sub-{run}-{i}")).await?;
        let (stop, delivered, latency) = (stop.clone(), delivered.clone(), latency.clone());
        tasks.push(tokio::spawn(async move {
            sub.run(stop, delivered, latency).await
        }));
    }
    // Subscribers that connect and then never read: their socket backs up.
    let mut slow_sockets = Vec::new();
    for i in 0..w.slow {
        slow_sockets.push(Subscriber::connect(url, &format!("slow-{run}-{i}")).await?);
    }
    let mut publisher = Publisher::connect(url, &format!("publisher-{run}"), w.window).await?;
    let before = proxy_stats(proxy);
    let started = Instant::now();
    let bar = progress(
        &format!(
            "{} clients{}",
            w.clients,
            if w.slow > 0 { " + slow" } else { "" }
        ),
        w.seconds,
    );
    let deadline = started + Duration::from_secs(w.seconds);
    let mut next_tick = started;
    // Never more at once than the window: a batch larger than it would
    // only wait half-way.
    let batch = 64.min(publisher.window());
    while Instant::now() < deadline {
        if w.rate == 0 {
            // The window keeps the publisher's in-flight publishes bounded.
            publisher.publish_batch(batch, w.payload_bytes).await?;
        } else {
            next_tick += Duration::from_millis(10);
            let per_tick = (w.rate / 100).max(1);
            publisher
                .publish_batch(per_tick as usize, w.payload_bytes)
                .await?;
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
    let published = publisher.sent();
    let accepted = publisher.accepted();
    let accept_latency = publisher.answer_latency.clone();
    let after = proxy_stats(proxy);
    stop.store(true, Ordering::Relaxed);
    bar.finish_and_clear();
    let sent = publisher.finish().await?;
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
        cpu_seconds: after.cpu_seconds_since(&before),
        accepted,
        accept_latency,
        rss_kib: after.rss_kib,
        published,
        sent,
    })
}
