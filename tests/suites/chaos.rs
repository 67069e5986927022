//! Chaos: 50 clients and a publisher behind a relay that delays, stalls and
//! cuts connections at random, while the proxy is `kill -9`'d and restarted
//! three times. At the end every client has every event exactly once and in
//! order, or an explicit gap; the log holds every published number once.
//! Run twice: on the embedded log, and on a shared JetStream log (a real
//! `nats-server -js`), whose stream outlives the killed proxy.
//!
//! Bounded for CI (about a minute). The seed is printed; replay a run with
//! `CHAOS_SEED=<seed>`. The long variant (100,000 events, about ten minutes):
//!
//!     CHAOS_EVENTS=100000 CHAOS_RATE=170 cargo test --release -p e2e --test chaos -- --nocapture

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::client::{n_of, numbered, read_whole_log};
use e2e::relay::{Faults, Relay};
use e2e::{Proxy, TestClient};
use shared_protocol::frame::Delivery;
use shared_protocol::receiver::Delivered;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A subscriber that keeps reconnecting through the relay until it has
/// everything up to the final head (once that is known).
async fn subscriber(
    id: usize,
    url: String,
    target: Arc<AtomicU64>,
    deadline: Instant,
    seed: u64,
) -> TestClient {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut c = TestClient::new(&format!("chaos-{id}"));
    loop {
        let goal = target.load(Ordering::Relaxed);
        if (goal > 0 && c.receiver.last_seq() >= goal) || Instant::now() > deadline {
            return c;
        }
        if !c.is_connected() && c.connect(&url).await.is_err() {
            c.cut();
            tokio::time::sleep(Duration::from_millis(rng.u64(20..200))).await;
            continue;
        }
        if c.pump_until(Duration::from_millis(200), |_| false)
            .await
            .is_err()
        {
            c.cut();
        }
    }
}

/// Checks one client's view: in order, each seq at most once, and every seq
/// from its first snapshot to the end covered by an event or a gap.
fn check(c: &TestClient, head: u64) -> Result<(u64, u64), String> {
    let mut cursor: Option<u64> = None;
    let (mut events, mut gapped) = (0, 0);
    let mut last_n = 0;
    for d in &c.delivered {
        match d {
            Delivered::Snapshot(s) => {
                if let Some(at) = cursor {
                    if s.upto + 1 < at {
                        return Err(format!(
                            "{}: snapshot {} behind cursor {at}",
                            c.client_id, s.upto
                        ));
                    }
                }
                cursor = Some(s.upto + 1);
            }
            Delivered::Gap(g) => {
                let at = cursor.ok_or(format!("{}: gap before any snapshot", c.client_id))?;
                if g.from != at {
                    return Err(format!(
                        "{}: gap {}..{} does not start at {at}",
                        c.client_id, g.from, g.to
                    ));
                }
                gapped += g.to - g.from + 1;
                cursor = Some(g.to + 1);
            }
            Delivered::Event(e) => {
                let at = cursor.ok_or(format!("{}: event before any snapshot", c.client_id))?;
                if e.seq != at {
                    return Err(format!(
                        "{}: event {} where {at} was due (loss, duplicate or reordering)",
                        c.client_id, e.seq
                    ));
                }
                if let Some(n) = n_of(e) {
                    if n <= last_n {
                        return Err(format!("{}: number {n} after {last_n}", c.client_id));
                    }
                    last_n = n;
                }
                events += 1;
                cursor = Some(at + 1);
            }
        }
    }
    if cursor != Some(head + 1) {
        return Err(format!(
            "{}: ended at {cursor:?}, head is {head}",
            c.client_id
        ));
    }
    Ok((events, gapped))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_duplicated_or_reordered_under_chaos() {
    chaos("", 2_000).await;
}

/// The same on the shared JetStream log: the proxy killed under the relay
/// is one of several readers of the stream, which outlives it, and its own
/// link to NATS goes through a second fault relay (delays, stalls, cuts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_duplicated_or_reordered_under_chaos_on_a_jetstream_log() {
    let nats = e2e::Nats::start();
    let faults = Faults {
        delay: 0.02,
        stall: 0.002,
        cut: 0.001,
    };
    let seed = env_u64("CHAOS_NATS_SEED", fastrand::u64(..));
    println!("NATS link relay seed: {seed} (replay with CHAOS_NATS_SEED={seed})");
    let link = Relay::start(
        nats.url().trim_start_matches("nats://").to_string(),
        seed,
        faults,
    )
    .await
    .unwrap();
    chaos(
        &format!("log = \"nats://{}\"\nproxy_name = \"chaos\"\n", link.addr),
        1_000,
    )
    .await;
    let counts = &link.counts;
    println!(
        "NATS link: {} connections, {} delays, {} stalls, {} cuts",
        counts.connections.load(Ordering::Relaxed),
        counts.delays.load(Ordering::Relaxed),
        counts.stalls.load(Ordering::Relaxed),
        counts.cuts.load(Ordering::Relaxed)
    );
}

/// Runs the chaos scenario on a proxy with `log_config` added to its
/// configuration; `CHAOS_EVENTS` overrides `default_events`.
async fn chaos(log_config: &str, default_events: u64) {
    let seed = env_u64(
        "CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    let events = env_u64("CHAOS_EVENTS", default_events);
    let rate = env_u64("CHAOS_RATE", 100).max(1);
    let clients = env_u64("CHAOS_CLIENTS", 50) as usize;
    println!("chaos seed: {seed} (replay with CHAOS_SEED={seed}); {events} events at {rate}/s, {clients} clients, 3 kill -9");
    let mut rng = fastrand::Rng::with_seed(seed);

    // max_behind and retention are raised so the final check can replay the
    // whole log (the long variant runs past the default 5 minutes).
    let mut proxy = Proxy::start(&format!(
        "max_publish_per_sec = 100000\nmax_handshakes_per_sec = 100000\nmax_behind = 1000000\n\
         retention_ms = 86400000\nmax_events = 10000000\n{log_config}"
    ));
    let faults = Faults {
        delay: 0.05,
        stall: 0.005,
        cut: 0.003,
    };
    let relay = Relay::start(proxy.addr.clone(), seed, faults)
        .await
        .unwrap();

    let publish_secs = events / rate;
    let deadline = Instant::now() + Duration::from_secs(publish_secs + 120);
    let target = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::new();
    for id in 0..clients {
        subs.push(tokio::spawn(subscriber(
            id,
            relay.ws_url(),
            target.clone(),
            deadline,
            seed.wrapping_add(id as u64),
        )));
    }

    // The proxy is killed three times at random moments while publishing.
    let kills: Vec<Duration> = (1..=3)
        .map(|k| {
            Duration::from_millis(publish_secs * 1000 * k / 4 + rng.u64(0..publish_secs * 150 + 1))
        })
        .collect();
    let publishing_done = Arc::new(AtomicBool::new(false));
    let (killer_done, done) = (publishing_done.clone(), Instant::now());
    let killer = tokio::task::spawn_blocking(move || {
        let mut n = 0;
        for at in kills {
            while done.elapsed() < at && !killer_done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            proxy.kill9();
            std::thread::sleep(Duration::from_millis(300));
            proxy.restart();
            n += 1;
        }
        (proxy, n)
    });

    // The publisher: an outbox of unaccepted numbers, resent in order after
    // every reconnect, exactly as the browser client's outbox works.
    let mut publisher = TestClient::new("chaos-publisher");
    let mut next = 1u64;
    let started = Instant::now();
    let mut resend_from = 1u64;
    while publisher.accepted_upto < events && Instant::now() < deadline {
        if !publisher.is_connected() {
            if publisher.connect(&relay.ws_url()).await.is_err() {
                publisher.cut();
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            resend_from = publisher.accepted_upto + 1;
        }
        // Resend what the proxy has not accepted, then the numbers now due.
        let due = (started.elapsed().as_millis() as u64 * rate / 1000).clamp(1, events);
        let mut failed = false;
        while resend_from < next && !failed {
            failed = publisher
                .publish_as(
                    resend_from,
                    "note",
                    numbered(resend_from),
                    Delivery::Reliable,
                    None,
                )
                .await
                .is_err();
            resend_from += 1;
        }
        while next <= due && !failed {
            failed = publisher
                .publish_as(next, "note", numbered(next), Delivery::Reliable, None)
                .await
                .is_err();
            next += 1;
            resend_from = next;
        }
        if failed
            || publisher
                .pump_until(Duration::from_millis(20), |_| false)
                .await
                .is_err()
        {
            publisher.cut();
        }
    }
    publishing_done.store(true, Ordering::Relaxed);
    let (proxy, kills) = killer.await.unwrap();
    assert_eq!(
        publisher.accepted_upto, events,
        "the publisher's stream was not fully accepted in time"
    );

    // The log holds every number exactly once, in order (no publish applied
    // twice), read directly (not through the relay).
    // On the JetStream log the proxy reads the stream through its mirror,
    // which may still trail the stream after its own NATS link stalled: the
    // whole log is read again until it holds the last acknowledged number,
    // for at most a minute (a lost publish never shows up, and fails below).
    let read_until = Instant::now() + Duration::from_secs(60);
    let mut reads = 0;
    let log = loop {
        let log = read_whole_log(&proxy.ws_url(), Duration::from_secs(60))
            .await
            .unwrap();
        reads += 1;
        if log.iter().filter_map(n_of).any(|n| n == events) || Instant::now() >= read_until {
            println!("the whole log read {reads} time(s)");
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let head = log.last().map_or(0, |e| e.seq);
    target.store(head, Ordering::Relaxed);
    let logged: Vec<u64> = log.iter().filter_map(n_of).collect();
    let mut seen = std::collections::BTreeSet::new();
    let repeated = logged.iter().filter(|n| !seen.insert(**n)).count();
    let missing: Vec<u64> = (1..=events).filter(|n| !seen.contains(n)).collect();
    let in_order = logged.windows(2).all(|w| w[0] < w[1]);
    assert!(
        repeated == 0 && missing.is_empty() && in_order,
        "the log must hold each number once, in order: {} logged, {repeated} repeated, {} missing (first {:?}, last {:?}), in order: {in_order}",
        logged.len(),
        missing.len(),
        missing.first(),
        missing.last()
    );

    let (mut delivered, mut gapped, mut wire_dups, mut failures) = (0, 0, 0, Vec::new());
    for s in subs {
        let c = s.await.unwrap();
        wire_dups += c.receiver.duplicates;
        match check(&c, head) {
            Ok((e, g)) => {
                delivered += e;
                gapped += g;
            }
            Err(e) => failures.push(e),
        }
    }
    let counts = &relay.counts;
    println!(
        "chaos result: head {head}, {clients} clients, {delivered} events delivered, {gapped} covered by gaps, \
         {wire_dups} wire duplicates dropped, relay: {} connections, {} cuts, {} stalls, {} delays; {kills} kill -9",
        counts.connections.load(Ordering::Relaxed),
        counts.cuts.load(Ordering::Relaxed),
        counts.stalls.load(Ordering::Relaxed),
        counts.delays.load(Ordering::Relaxed),
    );
    assert!(
        failures.is_empty(),
        "{} clients saw loss, duplicates or reordering:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(kills, 3);
    assert!(
        counts.cuts.load(Ordering::Relaxed) > 0,
        "the relay must actually cut connections"
    );
}
