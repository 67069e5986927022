//! Several proxies on one NATS JetStream log (a real `nats-server -js` on
//! loopback): a dashboard fails over between proxies and misses nothing, a
//! command sent through one proxy reaches the radio owned by another, and a
//! NATS restart mid-stream loses no acknowledged event.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::client::{assert_in_order_once, key_ptt, n_of, numbered, read_whole_log, set_freq};
use e2e::session_client::{self, Record};
use e2e::{Nats, Proxy, TestClient};
use shared_protocol::frame::Delivery;
use station_sim::kenwood::Radio;
use station_sim::pty::PtyRadio;

const SECS: Duration = Duration::from_secs(30);

fn on_nats(nats: &Nats, name: &str, extra: &str) -> String {
    format!(
        "log = \"{}\"\nproxy_name = \"{name}\"\nmax_publish_per_sec = 100000\n{extra}",
        nats.url()
    )
}

/// The configuration of the site that owns `sim`'s radio (no meter).
fn radio_site(sim: &PtyRadio, extra: &str) -> String {
    format!(
        "radio_port = \"{}\"\nradio_poll_ms = 100\nmeter = \"none\"\n{extra}",
        sim.path.display()
    )
}

fn stats(proxy: &Proxy) -> serde_json::Value {
    let (status, body) = proxy.get("/stats");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Publishes notes `from..=to` through `client`, `pace` apart.
async fn notes(client: &mut TestClient, from: u64, to: u64, pace: Duration) {
    for n in from..=to {
        client
            .publish("note", numbered(n), Delivery::Reliable, None)
            .await
            .unwrap();
        // Read what comes back (acks, pings) so nothing backs up.
        client.pump_until(pace, |_| false).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_fails_over_to_another_proxy_and_gets_every_event_once_in_order() {
    let nats = Nats::start();
    let mut a = Proxy::start(&on_nats(&nats, "site-a", ""));
    let b = Proxy::start(&on_nats(&nats, "site-b", ""));
    assert_eq!(
        stats(&a)["epoch"],
        stats(&b)["epoch"],
        "one stream, one epoch"
    );
    assert_eq!(stats(&a)["log"]["backend"], "jetstream");
    assert_eq!(stats(&a)["log"]["nats_connected"], true);

    // The browser client's own session logic, on A with B as its fallback.
    let record: Arc<Mutex<Record>> = Arc::default();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let dashboard = tokio::spawn(session_client::run(
        vec![a.ws_url(), b.ws_url()],
        "dashboard".into(),
        7,
        stop,
        record.clone(),
    ));
    let seen = || record.lock().unwrap().seqs.len();

    // Notes are written through B while the dashboard reads through A ...
    let mut writer = TestClient::new("writer");
    writer.connect(&b.ws_url()).await.unwrap();
    notes(&mut writer, 1, 150, Duration::from_millis(2)).await;
    let deadline = tokio::time::Instant::now() + SECS;
    while seen() < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dashboard got nothing through A"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ... A dies mid-stream, the writing goes on.
    a.kill9();
    notes(&mut writer, 151, 400, Duration::from_millis(2)).await;
    assert!(writer
        .pump_until(SECS, |c| c.accepted_upto >= 400)
        .await
        .unwrap());

    // B's mirror follows the stream: acknowledged is durable, not yet mirrored.
    let deadline = tokio::time::Instant::now() + SECS;
    let head = loop {
        let head = stats(&b)["global_seq"].as_u64().unwrap();
        if head >= 400 {
            break head;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B's mirror stuck at {head}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let deadline = tokio::time::Instant::now() + SECS;
    while record.lock().unwrap().position() < head {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dashboard did not catch up through B: at {} of {head}",
            record.lock().unwrap().position()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    dashboard.await.unwrap();
    let record = record.lock().unwrap();
    assert_in_order_once(&record.seqs);
    assert_eq!(
        record.gaps, 0,
        "no gap: B resumed the client where A left it"
    );
    assert_eq!(
        record.seqs,
        (record.snapshot_upto + 1..=head).collect::<Vec<_>>(),
        "every event exactly once, in order, across the failover"
    );
    assert!(
        record.attempts.len() >= 2,
        "the dashboard reconnected (to B)"
    );
    // B saw a resume from A's position, not a new client.
    assert!(stats(&b)["sessions"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["client_id"] == "dashboard")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sent_through_one_proxy_reaches_the_radio_owned_by_another() {
    let nats = Nats::start();
    let sim = PtyRadio::start(Radio::default()).unwrap();
    // A owns the radio (its site); B has none.
    let a = Proxy::start(&on_nats(&nats, "site-a", &radio_site(&sim, "")));
    let b = Proxy::start(&on_nats(&nats, "site-b", ""));
    let mut on_a = TestClient::new("dash-a");
    on_a.connect(&a.ws_url()).await.unwrap();
    let mut on_b = TestClient::new("dash-b");
    on_b.connect(&b.ws_url()).await.unwrap();

    let freq = |c: &TestClient| c.latest("radio.state").and_then(|s| s["freq_hz"].as_u64());
    assert!(
        on_b.pump_until(SECS, |c| freq(c) == Some(14_074_000))
            .await
            .unwrap(),
        "B's dashboard sees the radio A owns"
    );

    set_freq(&mut on_b, 7_074_000).await;
    assert!(
        on_b.pump_until(SECS, |c| freq(c) == Some(7_074_000))
            .await
            .unwrap(),
        "the change comes back to B"
    );
    assert!(
        on_a.pump_until(SECS, |c| freq(c) == Some(7_074_000))
            .await
            .unwrap(),
        "and to A"
    );
    assert_eq!(
        sim.radio.lock().unwrap().vfo_a_hz,
        7_074_000,
        "the radio itself was tuned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_mid_stream_loses_no_acknowledged_event() {
    let mut nats = Nats::start();
    let proxy = Proxy::start(&on_nats(&nats, "site-a", ""));
    let mut writer = TestClient::new("writer");
    writer.connect(&proxy.ws_url()).await.unwrap();
    notes(&mut writer, 1, 100, Duration::from_millis(2)).await;
    assert!(writer
        .pump_until(SECS, |c| c.accepted_upto >= 100)
        .await
        .unwrap());

    // NATS is killed mid-stream (`kill -9`) and comes back half a second
    // later; the writer keeps writing meanwhile.
    let restart = tokio::task::spawn_blocking(move || {
        nats.kill9();
        std::thread::sleep(Duration::from_millis(500));
        nats.start_again();
        nats
    });
    notes(&mut writer, 101, 300, Duration::from_millis(5)).await;
    let nats = restart.await.unwrap();
    assert!(
        writer.is_connected(),
        "the session kept its place through the outage"
    );
    assert!(
        writer
            .pump_until(Duration::from_secs(60), |c| c.accepted_upto >= 300)
            .await
            .unwrap(),
        "every note acknowledged after the restart (accepted up to {}; errors {:?})",
        writer.accepted_upto,
        writer.errors
    );

    // A proxy started now, with nothing but the stream, has every note
    // once, in order; so does the one that lived through the outage.
    let fresh = Proxy::start(&on_nats(&nats, "site-b", ""));
    for proxy in [&fresh, &proxy] {
        let log = read_whole_log(&proxy.ws_url(), SECS).await.unwrap();
        let notes: Vec<u64> = log.iter().filter_map(n_of).collect();
        assert_eq!(notes, (1..=300).collect::<Vec<_>>());
    }
}

/// Pumps `client` for `window`, noting when each of its publishes (by
/// `client_seq`, from 1) was first answered `Accepted`.
async fn pump_noting_accepts(
    client: &mut TestClient,
    window: Duration,
    accepted_at: &mut [Option<Instant>],
) {
    let until = Instant::now() + window;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let seen = client.accepted_upto;
        client
            .pump_until(left, |c| c.accepted_upto > seen)
            .await
            .unwrap();
        let now = Instant::now();
        let upto = (client.accepted_upto as usize).min(accepted_at.len());
        for slot in accepted_at[..upto].iter_mut().filter(|s| s.is_none()) {
            *slot = Some(now);
        }
    }
}

/// A steady publisher through a 0.5 s NATS outage (frozen, then killed and
/// restarted): once NATS listens again
/// every publish is accepted within a second, the one in flight included
/// (it is not left waiting for the JetStream ack timeout, 5 s), and the
/// notes are in the log once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_are_accepted_within_a_second_of_nats_coming_back_in_order() {
    const TOTAL: usize = 150;
    let nats = Nats::start();
    let proxy = Proxy::start(&on_nats(&nats, "site-a", ""));
    let mut writer = TestClient::new("writer");
    writer.connect(&proxy.ws_url()).await.unwrap();
    let mut sent_at = Vec::with_capacity(TOTAL);
    let mut accepted_at = vec![None; TOTAL];
    let mut nats = Some(nats);
    let mut outage = None;
    for n in 1..=TOTAL as u64 {
        if n == 50 {
            let mut nats = nats.take().unwrap();
            // Frozen, then killed: what was published meanwhile is in
            // flight and lost with the connection, as in a crash under load.
            outage = Some(tokio::task::spawn_blocking(move || {
                nats.pause();
                std::thread::sleep(Duration::from_millis(250));
                nats.kill9();
                std::thread::sleep(Duration::from_millis(250));
                nats.start_again();
                (nats, Instant::now())
            }));
        }
        sent_at.push(Instant::now());
        writer
            .publish("note", numbered(n), Delivery::Reliable, None)
            .await
            .unwrap();
        pump_noting_accepts(&mut writer, Duration::from_millis(20), &mut accepted_at).await;
    }
    let (nats, back) = outage.unwrap().await.unwrap();
    let deadline = Instant::now() + SECS;
    while writer.accepted_upto < TOTAL as u64 && Instant::now() < deadline {
        pump_noting_accepts(&mut writer, Duration::from_millis(100), &mut accepted_at).await;
    }
    assert!(writer.is_connected(), "the session kept its place");
    assert_eq!(writer.accepted_upto, TOTAL as u64, "{:?}", writer.errors);
    let mut waits: Vec<Duration> = sent_at
        .iter()
        .zip(&accepted_at)
        .map(|(sent, accepted)| {
            accepted
                .unwrap()
                .saturating_duration_since((*sent).max(back))
        })
        .collect();
    waits.sort();
    let p50 = waits[TOTAL / 2];
    let p99 = waits[TOTAL * 99 / 100];
    let max = waits[TOTAL - 1];
    eprintln!("# Accepted after NATS came back: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?} (max {max:?})");
    let log = read_whole_log(&proxy.ws_url(), SECS).await.unwrap();
    let notes: Vec<u64> = log.iter().filter_map(n_of).collect();
    assert_eq!(notes, (1..=TOTAL as u64).collect::<Vec<_>>());
    drop(nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_stream_is_announced_a_restart_takes_the_new_epoch() {
    let mut nats = Nats::start();
    let mut proxy = Proxy::start(&on_nats(&nats, "site-a", ""));
    let mut writer = TestClient::new("writer");
    writer.connect(&proxy.ws_url()).await.unwrap();
    notes(&mut writer, 1, 20, Duration::ZERO).await;
    assert!(writer
        .pump_until(SECS, |c| c.accepted_upto >= 20)
        .await
        .unwrap());
    let old_epoch = stats(&proxy)["epoch"].as_u64().unwrap();

    // NATS comes back with an empty store: the stream and its history are gone.
    nats.wipe();
    nats.start_again();
    let deadline = std::time::Instant::now() + SECS;
    while proxy.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy must not go on serving a history that no longer exists"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Restarted, it is on a new stream (a new epoch), and a client that was
    // at 20 of the old one is told: a Gap and a Snapshot, not a wrong replay.
    proxy.restart();
    let new_epoch = stats(&proxy)["epoch"].as_u64().unwrap();
    assert_ne!(new_epoch, old_epoch);
    let mut writer = TestClient::new("writer-2");
    writer.connect(&proxy.ws_url()).await.unwrap();
    notes(&mut writer, 1, 5, Duration::ZERO).await;
    assert!(writer
        .pump_until(SECS, |c| c.accepted_upto >= 5)
        .await
        .unwrap());
    let mut back = TestClient::new("reader");
    back.receiver = shared_protocol::receiver::Receiver::new(
        Some(shared_protocol::frame::Resume {
            epoch: old_epoch,
            last_seq: 20,
        }),
        100_000,
    );
    back.connect(&proxy.ws_url()).await.unwrap();
    assert!(back
        .pump_until(SECS, |c| !c.snapshots().is_empty())
        .await
        .unwrap());
    assert!(
        back.gaps()
            .iter()
            .any(|g| g.reason == shared_protocol::frame::GapReason::EpochChanged),
        "gaps: {:?}",
        back.gaps()
    );
}

/// Starts the proxy binary with `config` in a fresh directory (kept alive by
/// the returned guard), logging warnings to a piped stderr.
fn spawn_with(config: &str) -> (tempfile::TempDir, std::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    let child = std::process::Command::new(e2e::proxy::binary())
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("EDGE_PROXY_LOG", "warn")
        .env("EDGE_PROXY_LOG_FORMAT", "human")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (dir, child)
}

/// Runs the proxy binary with `config` until it exits or `within` passes
/// (then kills it); returns whether it was still running, and its stderr.
fn run_briefly(config: &str, within: Duration) -> (bool, String) {
    let (_dir, mut child) = spawn_with(config);
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (running, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_radio_belongs_to_one_proxy_a_second_claim_is_refused() {
    let nats = Nats::start();
    let sim = PtyRadio::start(Radio::default()).unwrap();
    let radio = radio_site(&sim, "");
    let mut a = Proxy::start(&on_nats(&nats, "site-a", &radio));
    let (running, stderr) = run_briefly(&on_nats(&nats, "site-b", &radio), SECS);
    assert!(!running, "a second owner must not start: {stderr}");
    assert!(
        stderr.contains("belongs to proxy \"site-a\""),
        "and says who owns it: {stderr}"
    );
    // The owner itself, restarted at once (its claim not yet lapsed), gets it back.
    a.restart();
    assert!(a.is_running());
}

#[test]
fn an_unreachable_nats_is_a_clear_error_or_a_loud_fallback() {
    let config = |fallback: bool| {
        format!(
            "log = \"nats://127.0.0.1:1\"\nnats_connect_timeout_ms = 500\nlog_fallback_embedded = {fallback}\n"
        )
    };

    let (_dir, child) = spawn_with(&config(false));
    let refused = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "it must not start: {stderr}");
    assert!(
        stderr.contains("nats://127.0.0.1:1") && stderr.contains("nats-server"),
        "the error names the address and what to do: {stderr}"
    );

    let (running, stderr) = run_briefly(&config(true), Duration::from_secs(3));
    assert!(running, "with the fallback it runs: {stderr}");
    assert!(
        stderr.contains("FALLING BACK TO THE EMBEDDED LOG"),
        "loudly: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_radio_owner_unkeys_a_transmitter_keyed_through_a_proxy_that_died() {
    let nats = Nats::start();
    let sim = PtyRadio::start(Radio::default()).unwrap();
    let a = Proxy::start(&on_nats(
        &nats,
        "site-a",
        &radio_site(&sim, "tx_keepalive_ms = 500\n"),
    ));
    let mut b = Proxy::start(&on_nats(&nats, "site-b", "tx_keepalive_ms = 500\n"));
    let mut on_a = TestClient::new("dash-a");
    on_a.connect(&a.ws_url()).await.unwrap();
    let mut keyer = TestClient::new("keyer");
    keyer.connect(&b.ws_url()).await.unwrap();
    key_ptt(&mut keyer, true).await;
    assert!(keyer
        .pump_until(SECS, |c| c.accepted_upto >= 1)
        .await
        .unwrap());
    let deadline = tokio::time::Instant::now() + SECS;
    while !sim.radio.lock().unwrap().tx {
        assert!(
            tokio::time::Instant::now() < deadline,
            "keyed through B, the radio on A transmits"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // B dies with the transmitter keyed: its own watchdog dies with it.
    b.kill9();
    let keyed_off = std::time::Instant::now();
    assert!(
        on_a.pump_until(SECS, |c| c
            .events()
            .iter()
            .any(|e| e.kind == "watchdog.unkeyed"
                && e.payload["reason"].as_str() == Some("keepalive_lost")))
            .await
            .unwrap(),
        "the owner's backstop unkeys and says so"
    );
    // The notice is logged as the unkey goes to the radio: ask the radio.
    assert!(
        on_a.pump_until(SECS, |_| !sim.radio.lock().unwrap().tx)
            .await
            .unwrap(),
        "the radio is back on receive"
    );
    assert!(
        keyed_off.elapsed() < Duration::from_secs(5),
        "within twice the keepalive (plus polling), not {:?}",
        keyed_off.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_count_maps_onto_the_stream_and_the_rest_is_a_gap() {
    let nats = Nats::start();
    let proxy = Proxy::start(&on_nats(&nats, "site-a", "max_events = 50\n"));
    let mut writer = TestClient::new("writer");
    writer.connect(&proxy.ws_url()).await.unwrap();
    notes(&mut writer, 1, 120, Duration::ZERO).await;
    assert!(writer
        .pump_until(SECS, |c| c.accepted_upto >= 120)
        .await
        .unwrap());

    // A proxy that joins now finds only what the stream kept: its limit.
    let late = Proxy::start(&on_nats(&nats, "site-b", "max_events = 50\n"));
    let log = read_whole_log(&late.ws_url(), SECS).await.unwrap();
    let kept: Vec<u64> = log.iter().filter_map(n_of).collect();
    assert_eq!(kept, (71..=120).collect::<Vec<_>>());
    assert_eq!(stats(&late)["events"]["retained"], 50);

    // A client resuming from before that is told, with a Gap.
    let mut behind = TestClient::new("behind");
    behind.receiver = shared_protocol::receiver::Receiver::new(
        Some(shared_protocol::frame::Resume {
            epoch: stats(&late)["epoch"].as_u64().unwrap(),
            last_seq: 10,
        }),
        100_000,
    );
    behind.connect(&late.ws_url()).await.unwrap();
    assert!(behind.pump_to(120, SECS).await.unwrap());
    assert!(
        behind.gaps().iter().any(|g| g.from == 11 && g.to == 70),
        "gaps: {:?}",
        behind.gaps()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ptt_on_held_up_by_a_nats_outage_is_not_keyed_when_it_arrives() {
    let mut nats = Nats::start();
    let sim = PtyRadio::start(Radio::default()).unwrap();
    let a = Proxy::start(&on_nats(
        &nats,
        "site-a",
        &radio_site(&sim, "tx_keepalive_ms = 500\n"),
    ));
    let b = Proxy::start(&on_nats(&nats, "site-b", "tx_keepalive_ms = 500\n"));
    let mut on_a = TestClient::new("dash-a");
    on_a.connect(&a.ws_url()).await.unwrap();
    let mut keyer = TestClient::new("keyer");
    keyer.connect(&b.ws_url()).await.unwrap();

    // NATS is away when the PTT-on is sent, and back 1.5 s later.
    nats.kill9();
    key_ptt(&mut keyer, true).await;
    keyer
        .pump_until(Duration::from_millis(1_500), |_| false)
        .await
        .unwrap();
    nats.start_again();

    // It does reach the stream (and A) ...
    assert!(keyer
        .pump_until(SECS, |c| c.accepted_upto >= 1)
        .await
        .unwrap());
    assert!(
        on_a.pump_until(SECS, |c| c.events().iter().any(|e| e.kind == "radio.ptt"))
            .await
            .unwrap(),
        "the PTT-on reached the radio's proxy"
    );
    // ... but the radio, told 1.5 s late, stays on receive: never reported
    // transmitting, and the owner's backstop never had to unkey it. (B's own
    // watchdog does write an unkey for its silent keyer: that one is fine.)
    on_a.pump_until(Duration::from_secs(2), |_| false)
        .await
        .unwrap();
    assert!(!sim.radio.lock().unwrap().tx, "a late PTT-on must not key");
    let keyed: Vec<_> = on_a
        .events()
        .iter()
        .filter(|e| {
            (e.kind == "radio.state" && e.payload["ptt"].as_bool() == Some(true))
                || (e.kind == "watchdog.unkeyed" && e.payload["client_id"].as_str() == Some(""))
        })
        .map(|e| (e.kind.clone(), e.payload.clone()))
        .collect();
    assert!(
        keyed.is_empty(),
        "the radio was keyed, if briefly: {keyed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moving_to_a_proxy_whose_mirror_lags_is_replayed_never_told_its_history_is_lost() {
    use e2e::relay::{Faults, Relay};
    let nats = Nats::start();
    let nats_addr = nats.url().trim_start_matches("nats://").to_string();
    let link_b = Relay::start(nats_addr, 3, Faults::NONE).await.unwrap();
    let a = Proxy::start(&on_nats(&nats, "site-a", ""));
    let b = Proxy::start(&format!(
        "log = \"nats://{}\"\nproxy_name = \"site-b\"\nmax_publish_per_sec = 100000\n",
        link_b.addr
    ));
    let mut writer = TestClient::new("writer");
    writer.connect(&a.ws_url()).await.unwrap();
    notes(&mut writer, 1, 3, Duration::ZERO).await;
    let deadline = tokio::time::Instant::now() + SECS;
    while stats(&b)["global_seq"].as_u64() < Some(3) {
        assert!(tokio::time::Instant::now() < deadline, "B never followed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // B's link to NATS stalls: its mirror stays at 3 while A goes to 8.
    link_b.hold_downstream(true);
    notes(&mut writer, 4, 8, Duration::ZERO).await;
    assert!(writer
        .pump_until(SECS, |c| c.accepted_upto >= 8)
        .await
        .unwrap());
    let mut reader = TestClient::new("mover");
    reader.connect(&a.ws_url()).await.unwrap();
    // The reader has everything up to 8 from A; it moves to B, ahead of it.
    assert!(reader.pump_to(8, SECS).await.unwrap());
    reader.cut();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        link_b.hold_downstream(false);
        link_b
    });
    let welcome = reader.connect(&b.ws_url()).await.unwrap().clone();
    assert!(welcome.resumed, "{welcome:?}");
    assert!(welcome.head_seq >= 8, "{welcome:?}");
    notes(&mut writer, 9, 9, Duration::ZERO).await;
    assert!(reader.pump_to(9, SECS).await.unwrap());
    assert!(
        reader
            .gaps()
            .iter()
            .all(|g| g.reason != shared_protocol::frame::GapReason::EpochChanged),
        "{:?}",
        reader.gaps()
    );
    assert_in_order_once(&reader.wire_seqs);
    drop(release.await);
}

/// The state of `client_id`'s session in `proxy`'s `/stats`.
fn session_state(proxy: &Proxy, client_id: &str) -> Option<String> {
    stats(proxy)["sessions"]
        .as_array()?
        .iter()
        .find(|s| s["client_id"] == client_id)?["state"]
        .as_str()
        .map(str::to_string)
}

/// A client that moves from A to B leaves a half-open session on A (its
/// link to A hangs, nothing is closed): A ends it as soon as B has the
/// client, well before its stale rule would (15 s). Moving back to A
/// ends B's session and keeps A's new one: the newer session wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_unique_across_the_proxies_of_a_stream() {
    use e2e::relay::{Faults, Relay};
    let nats = Nats::start();
    let a = Proxy::start(&on_nats(&nats, "site-a", ""));
    let b = Proxy::start(&on_nats(&nats, "site-b", ""));
    let to_a = Relay::start(a.addr.clone(), 5, Faults::NONE).await.unwrap();
    let mut old = TestClient::new("mover");
    old.connect(&to_a.ws_url()).await.unwrap();
    assert_eq!(session_state(&a, "mover").as_deref(), Some("connected"));
    // The link to A hangs both ways: A cannot tell the client is gone.
    to_a.hold_upstream(true);
    to_a.hold_downstream(true);

    let mut moved = TestClient::new("mover");
    moved.connect(&b.ws_url()).await.unwrap();
    let within = tokio::time::Instant::now() + Duration::from_secs(5);
    while session_state(&a, "mover").as_deref() != Some("disconnected") {
        assert!(
            tokio::time::Instant::now() < within,
            "A still holds the session: {:?}",
            session_state(&a, "mover")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // And back to A: B's session ends, A's new one lives on.
    let mut back = TestClient::new("mover");
    back.connect(&a.ws_url()).await.unwrap();
    assert!(
        moved.pump_until(SECS, |c| !c.is_connected()).await.unwrap(),
        "B's session was replaced"
    );
    assert!(
        moved
            .errors
            .iter()
            .any(|e| e.code == shared_protocol::frame::ErrorCode::Replaced),
        "closed as replaced: {:?}",
        moved.errors
    );
    // Whatever A's watcher still hears of B's older claim comes now.
    back.pump_until(Duration::from_millis(300), |c| !c.is_connected())
        .await
        .unwrap();
    assert!(back.is_connected(), "the newest session stays");
    assert_eq!(session_state(&a, "mover").as_deref(), Some("connected"));
    drop(old);
}

/// A quiet radio logs its state once: after the stream trimmed that event
/// (here by count), a proxy that starts later still has the radio's state
/// in its snapshots, as the proxy that never stopped does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_values_survive_the_streams_trims_for_a_proxy_that_starts_later() {
    let nats = Nats::start();
    let sim = PtyRadio::start(Radio::default()).unwrap();
    let a = Proxy::start(&on_nats(
        &nats,
        "site-a",
        &radio_site(&sim, "max_events = 20\n"),
    ));
    let mut writer = TestClient::new("writer");
    writer.connect(&a.ws_url()).await.unwrap();
    assert!(
        writer
            .pump_until(SECS, |c| c.latest("radio.state").is_some())
            .await
            .unwrap(),
        "the radio's state reached the log"
    );
    notes(&mut writer, 1, 60, Duration::ZERO).await;
    assert!(writer
        .pump_until(SECS, |c| c.accepted_upto >= 60)
        .await
        .unwrap());

    let late = Proxy::start(&on_nats(&nats, "site-b", "max_events = 20\n"));
    let log = read_whole_log(&late.ws_url(), SECS).await.unwrap();
    assert!(
        log.iter().all(|e| e.kind != "radio.state"),
        "the stream no longer holds the radio's state"
    );
    for proxy in [&a, &late] {
        let mut dash = TestClient::new("dash");
        dash.connect(&proxy.ws_url()).await.unwrap();
        assert!(
            dash.pump_until(SECS, |c| !c.snapshots().is_empty())
                .await
                .unwrap(),
            "a snapshot"
        );
        let state = dash
            .latest("radio.state")
            .expect("the radio's state in the snapshot");
        assert_eq!(state["freq_hz"].as_u64(), Some(14_074_000), "{state:?}");
    }
}

/// Benchmark (run by hand, docs/BENCHMARKS.md): failover time, from the
/// connection to A lost to the first replayed event on B, with B's mirror
/// current and with B's mirror 300 ms behind (its NATS link held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it by hand (see docs/BENCHMARKS.md)"]
async fn benchmark_failover_time() {
    use e2e::relay::{Faults, Relay};
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20usize);
    let nats = Nats::start();
    let link_b = Relay::start(
        nats.url().trim_start_matches("nats://").to_string(),
        1,
        Faults::NONE,
    )
    .await
    .unwrap();
    let a = Proxy::start(&on_nats(&nats, "site-a", ""));
    let b = Proxy::start(&format!(
        "log = \"nats://{}\"\nproxy_name = \"site-b\"\nmax_publish_per_sec = 100000\n",
        link_b.addr
    ));
    let mut writer = TestClient::new("writer");
    writer.connect(&a.ws_url()).await.unwrap();
    let mut n = 0;
    for lagging in [false, true] {
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let mut mover = TestClient::new("mover");
            mover.connect(&a.ws_url()).await.unwrap();
            n += 1;
            notes(&mut writer, n, n, Duration::ZERO).await;
            let head = mover.receiver.last_seq() + 1;
            assert!(mover.pump_to(head, SECS).await.unwrap());
            if lagging {
                link_b.hold_downstream(true);
            }
            // A's connection is lost; an event is published meanwhile.
            mover.cut();
            let lost = Instant::now();
            n += 1;
            notes(&mut writer, n, n, Duration::ZERO).await;
            let release = lagging.then(|| {
                let link = &link_b;
                async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    link.hold_downstream(false);
                }
            });
            let connect = async {
                mover.connect(&b.ws_url()).await.unwrap();
                let want = head + 1;
                assert!(mover.pump_to(want, SECS).await.unwrap());
            };
            match release {
                Some(release) => {
                    tokio::join!(release, connect);
                }
                None => connect.await,
            }
            times.push(lost.elapsed());
        }
        times.sort();
        eprintln!(
            "# failover, B's mirror {}: p50 {:?}, p99 {:?}, max {:?} ({rounds} rounds)",
            if lagging { "300 ms behind" } else { "current" },
            times[rounds / 2],
            times[(rounds * 99 / 100).min(rounds - 1)],
            times[rounds - 1]
        );
    }
}

/// A proxy whose wall clock is 10 s ahead (libfaketime) relays a keyer's
/// first PTT-on to the radio's owner. Compared by wall clocks it would look
/// 10 s stale and be refused; judged by that proxy's clock ticks it keys,
/// and the radio unkeys on the PTT-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_ptt_through_a_proxy_whose_clock_is_wrong_is_judged_by_its_ticks() {
    let nats = Nats::start();
    let sim = PtyRadio::start(Radio::default()).unwrap();
    let a = Proxy::start(&on_nats(
        &nats,
        "site-a",
        &radio_site(&sim, "tx_keepalive_ms = 1000\n"),
    ));
    let Some(b) = Proxy::start_with_clock_offset(
        &on_nats(&nats, "site-b", "tx_keepalive_ms = 1000\n"),
        "+10s",
    ) else {
        eprintln!("skipped: Debian's faketime is missing (cargo xtask setup installs it)");
        return;
    };
    // The owner has B's clock from its ticks: about 10 s ahead. (A first
    // run of B with a true clock may be listed too.)
    let offsets_of_b = || -> Vec<i64> {
        stats(&a)["log"]["peer_clock_offsets_ms"]
            .as_object()
            .map(|peers| {
                peers
                    .iter()
                    .filter(|(origin, _)| origin.starts_with("p:site-b:"))
                    .filter_map(|(_, offset)| offset.as_i64())
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = Instant::now() + SECS;
    while !offsets_of_b().iter().any(|o| (9_000..11_000).contains(o)) {
        assert!(
            Instant::now() < deadline,
            "B's clock never heard: {:?}",
            offsets_of_b()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut keyer = TestClient::new("keyer");
    keyer.connect(&b.ws_url()).await.unwrap();
    key_ptt(&mut keyer, true).await;
    let tx = || sim.radio.lock().unwrap().tx;
    assert!(
        keyer.pump_until(SECS, |_| tx()).await.unwrap(),
        "keyed through a proxy 10 s ahead (rejected: {:?})",
        keyer.rejected
    );
    key_ptt(&mut keyer, false).await;
    assert!(keyer.pump_until(SECS, |_| !tx()).await.unwrap(), "unkeyed");
}
