//! Server-driven reconnect control. A graceful restart of a proxy with 1000
//! dashboards must not become a reconnect storm: every session gets a
//! `Drain` (come back after a wait, at a random moment of a window sized to
//! the handshake budget), and the clients, running the browser client's own
//! state machine, follow it. Over-budget handshakes get a `Drain` instead of
//! a session.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::client::numbered;
use e2e::session_client::{self, peak_in_window, Record};
use e2e::{Proxy, TestClient};
use shared_protocol::frame::{Delivery, DrainReason};

const CLIENTS: usize = 1_000;
const BUDGET: usize = 400;

async fn publish(publisher: &mut TestClient, range: std::ops::RangeInclusive<u64>) {
    let last = publisher.accepted_upto + (range.end() - range.start() + 1);
    for n in range {
        publisher
            .publish("note", numbered(n), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    let done = publisher
        .pump_until(Duration::from_secs(30), |c| c.accepted_upto >= last)
        .await;
    assert!(
        matches!(done, Ok(true)),
        "publishes up to client_seq {last} not accepted: {done:?}, accepted {}, rejected {:?}, errors {:?}",
        publisher.accepted_upto,
        publisher.rejected,
        publisher.errors
    );
}

/// Waits until every client's application is at event `n`.
async fn all_have(records: &[Arc<Mutex<Record>>], n: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if records.iter().all(|r| r.lock().unwrap().position() >= n) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let behind: Vec<(usize, u64, usize)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let r = r.lock().unwrap();
            (r.position() < n).then_some((i, r.position(), r.attempts.len()))
        })
        .collect();
    println!(
        "{} clients short of event {n}; first (client, at, attempts): {:?}",
        behind.len(),
        &behind[..behind.len().min(10)]
    );
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_with_1000_clients_stays_under_the_handshake_budget() {
    let mut proxy = Proxy::start(&format!(
        "max_handshakes_per_sec = {BUDGET}\nmax_publish_per_sec = 100000\n"
    ));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let records: Vec<Arc<Mutex<Record>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (i, record) in records.iter().enumerate() {
        tasks.push(tokio::spawn(session_client::run(
            vec![proxy.ws_url()],
            format!("dash-{i}"),
            i as u64 + 1,
            stop.clone(),
            record.clone(),
        )));
    }
    // 1000 at once against a budget of 400/s: the excess is turned away
    // with a Drain and comes back spread out; everyone gets in.
    let mut publisher = TestClient::new("publisher");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    publish(&mut publisher, 1..=50).await;
    assert!(
        all_have(&records, 50, Duration::from_secs(60)).await,
        "every client connected and caught up"
    );

    // Graceful restart (SIGTERM, then the same binary again).
    let restarted = tokio::task::block_in_place(|| {
        assert!(proxy.terminate(), "clean exit on SIGTERM");
        proxy.restart();
        Instant::now()
    });
    // A second publisher (its own client_seq space), let in between the
    // returning crowd like anyone else.
    let mut publisher = TestClient::new("publisher-2");
    while publisher.connect(&proxy.ws_url()).await.is_err() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    publish(&mut publisher, 51..=100).await;
    assert!(
        all_have(&records, 100, Duration::from_secs(60)).await,
        "every client resumed and caught up"
    );
    stop_tx.send_replace(true);
    for t in tasks {
        let _ = t.await;
    }

    let mut after: Vec<Instant> = records
        .iter()
        .flat_map(|r| r.lock().unwrap().attempts.clone())
        .filter(|t| *t >= restarted)
        .collect();
    after.sort();
    let peak = peak_in_window(&after, Duration::from_secs(1));
    let (_, metrics) = proxy.get("/metrics");
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("proxy_handshakes_refused_total "))
        .map_or(0.0, |v| v.trim().parse::<f64>().unwrap_or(0.0));
    println!(
        "graceful restart: {CLIENTS} clients, {} attempts after the restart, peak {peak} in any second (budget {BUDGET}), {refused} refused",
        after.len()
    );
    assert!(
        peak <= BUDGET,
        "peak {peak} handshakes in a second, over the budget of {BUDGET}"
    );
    for (i, r) in records.iter().enumerate() {
        let r = r.lock().unwrap();
        let first = r.seqs.first().copied().unwrap_or(101);
        assert!(first <= 51, "client {i} was connected before the restart");
        assert_eq!(
            r.seqs,
            (first..=100).collect::<Vec<u64>>(),
            "client {i}: every event once, in order, across the restart"
        );
        assert_eq!(r.gaps, 0, "client {i}: nothing lost");
    }
}

#[tokio::test]
async fn over_budget_handshakes_get_a_drain_instead_of_a_session() {
    let proxy = Proxy::start("max_handshakes_per_sec = 2\n");
    let mut turned_away = 0;
    for i in 0..6 {
        let mut c = TestClient::new(&format!("c{i}"));
        if c.connect(&proxy.ws_url()).await.is_err() {
            // The Drain arrived instead of a Welcome.
            let _ = c.recv(Duration::from_millis(200)).await;
            turned_away += 1;
        }
    }
    assert!(turned_away >= 3, "only {turned_away} turned away");
    let (_, metrics) = proxy.get("/metrics");
    assert!(
        metrics.contains("proxy_handshakes_refused_total"),
        "counted in /metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_every_client_when_to_come_back() {
    let mut proxy = Proxy::start("drain_retry_after_ms = 1500\nmax_handshakes_per_sec = 100\n");
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = TestClient::new(&format!("c{i}"));
        c.connect(&proxy.ws_url()).await.unwrap();
        clients.push(c);
    }
    tokio::task::block_in_place(|| assert!(proxy.terminate()));
    for c in &mut clients {
        assert!(c
            .pump_until(Duration::from_secs(5), |c| !c.drains.is_empty())
            .await
            .unwrap_or(false));
        let d = c.drains[0];
        assert_eq!(d.reason, DrainReason::Shutdown);
        assert_eq!(d.retry_after_ms, 1_500);
        assert!(d.jitter_ms >= 1_000, "spread over at least a second");
    }
}
