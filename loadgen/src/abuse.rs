//! `abuse`: what a hostile or broken LAN can throw at a proxy that runs
//! with its default limits, for minutes: publishes of many kinds with
//! payloads up to the frame limit, bursts of a whole publish window of
//! them, a new `client_id` every few milliseconds, subscribers that
//! reconnect all the time and some that never read, read-only and control
//! tokens. The proxy's RSS is sampled every second; the run fails unless
//! it stays under a bound derived from the configured limits (see
//! [`Bound`]) and reports whether it flattened.
//!
//! Run by hand (`docs/BENCHMARKS.md`), not in CI: the figure needs the
//! full ten minutes (retention is five, so trimming is in it).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use shared_protocol::frame::*;
use shared_protocol::receiver::Receiver;
use tokio_tungstenite::tungstenite::Message;

use crate::bench::{proxy_stats, start_proxy, Results};
use crate::wire::{connect, Ws};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Connections publishing reliable events of random kinds and sizes.
    #[arg(long, default_value_t = 4)]
    spammers: usize,
    /// Connections sending a whole publish window of big publishes at once.
    #[arg(long, default_value_t = 2)]
    bursters: usize,
    /// Connections that take a new client_id each time (one publish, gone).
    #[arg(long, default_value_t = 4)]
    churners: usize,
    /// Subscribers that read for 1 to 5 s, leave and resume.
    #[arg(long, default_value_t = 20)]
    subscribers: usize,
    /// Subscribers that never read (closed as too slow, and back).
    #[arg(long, default_value_t = 4)]
    stuck: usize,
}

const CONTROL: &str = "abuse-control-secret";
const READ: &str = "abuse-read-secret";

/// The proxy's limits for the run: its defaults, with tokens (so there are
/// read-only and control clients), a log small enough for the disk, and
/// the churners' `note` stateless (as an operator would have it), so their
/// publishes are applied and fill the publishers table, not refused
/// `state_full`.
fn config() -> String {
    format!(
        "max_events = 20000\nstateless_kinds = [\"note\"]\n[[tokens]]\nsecret = \"{CONTROL}\"\nrole = \"control\"\n[[tokens]]\nsecret = \"{READ}\"\nrole = \"read\"\n"
    )
}

/// What the configured limits allow the proxy to hold, over the RSS it
/// started with: the in-memory tail (`log_memory_bytes`), redb's page cache,
/// the station state twice (kept and being sent as a Snapshot), each
/// connection's unwritten bytes (`max_pending_bytes`) and its queue of
/// unanswered publishes (two publish windows of frames of `max_frame_bytes`)
/// for the connections that publish, and a fixed cost per connection.
struct Bound {
    base_kib: u64,
    terms: Vec<(&'static str, u64)>,
}

impl Bound {
    fn new(base_kib: u64, connections: u64, publishing: u64) -> Bound {
        const MIB: u64 = 1024 * 1024;
        // The proxy's defaults (edge-proxy/src/config.rs).
        let (log_memory, cache, state, pending, window, frame) = (
            64 * MIB,
            32 * MIB,
            256 * 1024,
            4 * MIB,
            1_024u64,
            64 * 1024u64,
        );
        Bound {
            base_kib,
            terms: vec![
                ("log_memory_bytes (tail)", log_memory),
                ("redb page cache", cache),
                ("station state x2", 2 * state),
                ("max_pending_bytes x connections", pending * connections),
                (
                    "2 windows x max_frame_bytes x publishing connections",
                    2 * window * frame * publishing,
                ),
                ("64 KiB x connections", 64 * 1024 * connections),
            ],
        }
    }

    fn kib(&self) -> u64 {
        self.base_kib + self.terms.iter().map(|(_, b)| b / 1024).sum::<u64>()
    }
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    rejected: AtomicU64,
    connections: AtomicU64,
    closed_by_proxy: AtomicU64,
    events_read: AtomicU64,
}

pub async fn run(bin: &Path, args: Args, results: &mut Results) -> Result<()> {
    let config = config();
    let proxy = start_proxy(bin, &config)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = proxy.pid().unwrap_or(0);
    let base = proxy_stats(&proxy).rss_kib;
    let url = proxy.ws_url();
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    let spawn = |tasks: &mut Vec<tokio::task::JoinHandle<()>>, actor: Actor| {
        let (url, stop, counters) = (url.clone(), stop.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Every actor comes back after whatever ended its connection.
                let _ = actor.run(&url, &stop, &counters).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    };
    for i in 0..args.spammers {
        spawn(&mut tasks, Actor::Spammer(i));
    }
    for i in 0..args.bursters {
        spawn(&mut tasks, Actor::Burster(i));
    }
    for i in 0..args.churners {
        spawn(&mut tasks, Actor::Churner(i));
    }
    for i in 0..args.subscribers {
        spawn(&mut tasks, Actor::Subscriber(i));
    }
    for i in 0..args.stuck {
        spawn(&mut tasks, Actor::Stuck(i));
    }
    spawn(&mut tasks, Actor::Control);
    let connections =
        (args.spammers + args.bursters + args.churners + args.subscribers + args.stuck + 1) as u64;
    let publishing = (args.spammers + args.bursters + args.churners + 1) as u64;
    let bound = Bound::new(base, connections, publishing);
    println!(
        "abuse: {} s; {} spammers, {} bursters, {} churners, {} subscribers, {} stuck, 1 control; proxy RSS at start {:.1} MiB, bound {:.1} MiB",
        args.seconds, args.spammers, args.bursters, args.churners, args.subscribers, args.stuck,
        base as f64 / 1024.0, bound.kib() as f64 / 1024.0
    );
    for (what, bytes) in &bound.terms {
        println!("{:>10.1} MiB  {what}", *bytes as f64 / (1024.0 * 1024.0));
    }
    let started = Instant::now();
    let mut samples: Vec<u64> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tick.tick().await;
        let rss = crate::proc_stats::ProcStats::of(pid).rss_kib;
        if rss == 0 {
            bail!(
                "the proxy is gone (crashed?) after {} s",
                started.elapsed().as_secs()
            );
        }
        samples.push(rss);
        let t = samples.len();
        if t % 30 == 0 {
            let (_, body) = proxy
                .try_get("/stats?token=abuse-read-secret")
                .unwrap_or_default();
            let s: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            println!(
                "{t:>5} s  rss {:>7.1} MiB  max {:>7.1} MiB  published {:>8}  rejected {:>7}  connections {:>7}  closed {:>5}  state {}/{} B  publishers {}  retained {}",
                rss as f64 / 1024.0,
                samples.iter().max().copied().unwrap_or(0) as f64 / 1024.0,
                counters.published.load(Ordering::Relaxed),
                counters.rejected.load(Ordering::Relaxed),
                counters.connections.load(Ordering::Relaxed),
                counters.closed_by_proxy.load(Ordering::Relaxed),
                s["state"]["kinds"], s["state"]["bytes"],
                s["publishers"]["entries"],
                s["log"]["retained"],
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    let ceiling = samples.iter().max().copied().unwrap_or(0);
    let third = samples.len() / 3;
    let max_of = |s: &[u64]| s.iter().max().copied().unwrap_or(0);
    let (middle, last) = (
        max_of(&samples[third..2 * third]),
        max_of(&samples[2 * third..]),
    );
    let flattened = last as f64 <= middle as f64 * 1.10;
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "RSS: start {:.1} MiB, ceiling {:.1} MiB, max of the middle third {:.1} MiB, of the last third {:.1} MiB: {}; bound {:.1} MiB",
        mib(base), mib(ceiling), mib(middle), mib(last),
        if flattened { "flat (last third within 10 % of the middle)" } else { "STILL GROWING" },
        mib(bound.kib())
    );
    println!(
        "published {} ({} rejected), {} connections, {} closed by the proxy, {} events read",
        counters.published.load(Ordering::Relaxed),
        counters.rejected.load(Ordering::Relaxed),
        counters.connections.load(Ordering::Relaxed),
        counters.closed_by_proxy.load(Ordering::Relaxed),
        counters.events_read.load(Ordering::Relaxed),
    );
    results.rows.push(json!({
        "seconds": args.seconds, "rss_start_kib": base, "rss_ceiling_kib": ceiling,
        "rss_middle_third_max_kib": middle, "rss_last_third_max_kib": last,
        "flattened": flattened, "bound_kib": bound.kib(), "rss_samples_kib": samples,
        "published": counters.published.load(Ordering::Relaxed),
        "rejected": counters.rejected.load(Ordering::Relaxed),
        "connections": counters.connections.load(Ordering::Relaxed),
    }));
    if ceiling > bound.kib() {
        bail!(
            "the proxy's RSS reached {:.1} MiB, over the bound of {:.1} MiB",
            mib(ceiling),
            mib(bound.kib())
        );
    }
    if !flattened && args.seconds >= 60 {
        bail!("the proxy's RSS was still growing in the last third of the run");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Actor {
    Spammer(usize),
    Burster(usize),
    Churner(usize),
    Subscriber(usize),
    Stuck(usize),
    Control,
}

/// A connection welcomed by the proxy.
struct Conn {
    ws: Ws,
    welcome: Welcome,
    next_seq: u64,
}

async fn open(
    url: &str,
    id: &str,
    token: &str,
    resume: Option<Resume>,
    counters: &Counters,
) -> Result<Conn> {
    counters.connections.fetch_add(1, Ordering::Relaxed);
    let mut ws = connect(url).await?;
    let hello = ClientFrame::Hello(Hello {
        client_id: id.into(),
        token: Some(token.into()),
        resume,
        t: None,
        batch: false,
    });
    ws.send(Message::Binary(hello.encode()?.into())).await?;
    while let Some(msg) = ws.next().await {
        if let Message::Binary(b) = msg? {
            match ServerFrame::decode(&b, usize::MAX)? {
                ServerFrame::Welcome(welcome) => {
                    return Ok(Conn {
                        ws,
                        welcome,
                        next_seq: 1,
                    })
                }
                ServerFrame::Error(e) => bail!("refused: {e:?}"),
                _ => {}
            }
        }
    }
    bail!("closed before Welcome")
}

/// A payload of about `bytes`, kept under the frame limit.
fn blob(bytes: usize) -> Payload {
    Payload::Binary(vec![0x5a; bytes.min(60_000)])
}

impl Conn {
    async fn publish(&mut self, kind: &str, payload: Payload) -> Result<u64> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = ClientFrame::Publish(Publish {
            client_seq: seq,
            kind: kind.into(),
            payload,
            delivery: Delivery::Reliable,
            expires_at_ms: None,
            ttl_ms: None,
        });
        self.ws
            .feed(Message::Binary(frame.encode()?.into()))
            .await?;
        Ok(seq)
    }

    /// Reads until publish `upto` is answered; counts rejections.
    async fn answered(&mut self, upto: u64, counters: &Counters) -> Result<()> {
        self.ws.flush().await?;
        let mut done = 0;
        while done < upto {
            let msg = tokio::time::timeout(Duration::from_secs(60), self.ws.next()).await?;
            let Some(msg) = msg else {
                counters.closed_by_proxy.fetch_add(1, Ordering::Relaxed);
                bail!("closed");
            };
            let Message::Binary(b) = msg? else { continue };
            match ServerFrame::decode(&b, usize::MAX)? {
                ServerFrame::Accepted { upto } => done = done.max(upto),
                ServerFrame::Rejected(r) => {
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                    done = done.max(r.client_seq);
                }
                ServerFrame::Ping(p) => {
                    self.ws
                        .send(Message::Binary(ClientFrame::Pong(p).encode()?.into()))
                        .await?
                }
                ServerFrame::Error(e) => bail!("proxy error: {e:?}"),
                _ => {}
            }
        }
        Ok(())
    }
}

impl Actor {
    async fn run(self, url: &str, stop: &AtomicBool, counters: &Counters) -> Result<()> {
        match self {
            Actor::Spammer(i) => {
                // Reliable publishes of new kinds, sizes up to the frame
                // limit: most are refused state_full once the state is full.
                let mut c = open(url, &format!("spam-{i}"), READ, None, counters).await?;
                c.next_seq = crate::wire::unix_ms();
                while !stop.load(Ordering::Relaxed) {
                    let size = if fastrand::u8(..) < 64 {
                        60_000
                    } else {
                        fastrand::usize(10..8_000)
                    };
                    let seq = c
                        .publish(&format!("junk.{}", fastrand::u32(..)), blob(size))
                        .await?;
                    counters.published.fetch_add(1, Ordering::Relaxed);
                    c.answered(seq, counters).await?;
                }
            }
            Actor::Burster(i) => {
                // A whole publish window of 60 KB publishes at once, again
                // and again: the proxy queues them (rate limited).
                let mut c = open(url, &format!("burst-{i}"), READ, None, counters).await?;
                c.next_seq = crate::wire::unix_ms();
                let window = c.welcome.limits.publish_window.unwrap_or(1) as u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut last = 0;
                    for _ in 0..window {
                        last = c.publish(&format!("burst.{i}"), blob(60_000)).await?;
                    }
                    counters.published.fetch_add(window, Ordering::Relaxed);
                    c.answered(last, counters).await?;
                }
            }
            Actor::Churner(i) => {
                // A new client_id each time: one publish, then gone (the
                // publishers table and the registry see them all).
                let n = counters.connections.load(Ordering::Relaxed);
                let mut c = open(url, &format!("churn-{i}-{n}"), READ, None, counters).await?;
                let seq = c.publish("note", blob(fastrand::usize(10..2_000))).await?;
                counters.published.fetch_add(1, Ordering::Relaxed);
                c.answered(seq, counters).await?;
                let _ = c.ws.close(None).await;
            }
            Actor::Subscriber(i) => {
                let mut receiver = Receiver::new(None, 1_000_000);
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let mut c =
                        open(url, &format!("sub-{i}"), READ, receiver.resume(), counters).await?;
                    receiver.on_welcome(&c.welcome);
                    let until = Instant::now() + Duration::from_millis(fastrand::u64(1_000..5_000));
                    let mut out = Vec::new();
                    while Instant::now() < until {
                        let Ok(msg) =
                            tokio::time::timeout(Duration::from_millis(200), c.ws.next()).await
                        else {
                            continue;
                        };
                        let Some(msg) = msg else { break };
                        let Message::Binary(b) = msg? else { continue };
                        out.clear();
                        match ServerFrame::decode(&b, usize::MAX)? {
                            ServerFrame::Event(e) => {
                                counters.events_read.fetch_add(1, Ordering::Relaxed);
                                let _ = receiver.on_event(e, &mut out);
                            }
                            ServerFrame::Snapshot(s) => receiver.on_snapshot(s, &mut out),
                            ServerFrame::Gap(g) => receiver.on_gap(g, &mut out),
                            ServerFrame::Ping(p) => {
                                c.ws.send(Message::Binary(ClientFrame::Pong(p).encode()?.into()))
                                    .await?
                            }
                            _ => {}
                        }
                        let upto = receiver.last_seq();
                        c.ws.send(Message::Binary(ClientFrame::Ack { upto }.encode()?.into()))
                            .await?;
                    }
                    let _ = c.ws.close(None).await;
                }
            }
            Actor::Stuck(i) => {
                // Connects and never reads: its unwritten bytes pile up to
                // max_pending_bytes and the proxy closes it.
                let mut c = open(url, &format!("stuck-{i}"), READ, None, counters).await?;
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    // Only to notice the close: one ping every second.
                    if c.ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                        counters.closed_by_proxy.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                }
            }
            Actor::Control => {
                // The operator: tunes (a station kind, always in the state)
                // every 200 ms.
                let mut c = open(url, "operator", CONTROL, None, counters).await?;
                c.next_seq = crate::wire::unix_ms();
                while !stop.load(Ordering::Relaxed) {
                    let hz = 7_000_000 + fastrand::u64(..300_000);
                    let payload = Payload::Map(vec![("hz".into(), hz.into())]);
                    let seq = c.publish("radio.set_freq", payload).await?;
                    counters.published.fetch_add(1, Ordering::Relaxed);
                    c.answered(seq, counters).await?;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Ok(())
    }
}
