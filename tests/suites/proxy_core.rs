//! The proxy's delivery guarantees, against a real process, real sockets and
//! a real database on disk. Each test starts its own proxy.

use std::time::Duration;

use e2e::client::{assert_in_order_once, key_ptt, n_of, numbered};
use e2e::{Proxy, TestClient};
use shared_protocol::frame::*;
use shared_protocol::receiver::Delivered;

const SECS: Duration = Duration::from_secs(20);

/// Publishes `count` numbered reliable events from `publisher` and waits
/// until the proxy has accepted all of them.
async fn publish_numbered(publisher: &mut TestClient, from: u64, count: u64) {
    let mut last = 0;
    for n in from..from + count {
        last = publisher
            .publish("note", numbered(n), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    assert!(
        publisher
            .pump_until(SECS, |c| c.accepted_upto >= last)
            .await
            .unwrap(),
        "publisher's events were not all accepted (accepted {} of {last})",
        publisher.accepted_upto
    );
}

fn numbers(client: &TestClient) -> Vec<u64> {
    client
        .events()
        .iter()
        .filter(|e| e.kind == "note")
        .filter_map(|e| n_of(e))
        .collect()
}

#[tokio::test]
async fn replay_after_a_cut_delivers_the_rest_exactly_once() {
    let proxy = Proxy::start("");
    let mut publisher = TestClient::new("publisher");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    let mut watcher = TestClient::new("watcher");
    watcher.connect(&proxy.ws_url()).await.unwrap();

    publish_numbered(&mut publisher, 1, 100).await;
    assert!(watcher
        .pump_until(SECS, |c| numbers(c).len() >= 40)
        .await
        .unwrap());
    watcher.cut();
    publish_numbered(&mut publisher, 101, 100).await;

    let welcome = watcher.connect(&proxy.ws_url()).await.unwrap().clone();
    assert!(welcome.resumed, "a client with a known last_seq resumes");
    let head = welcome.head_seq;
    assert!(watcher.pump_to(head, SECS).await.unwrap());
    assert_eq!(numbers(&watcher), (1..=200).collect::<Vec<_>>());
    assert_in_order_once(&watcher.event_seqs());
    // A clean resume starts exactly after last_seq: no duplicates even on the wire.
    let mut wire = watcher.wire_seqs.clone();
    wire.dedup();
    assert_eq!(wire.len(), watcher.wire_seqs.len());
}

#[tokio::test]
async fn a_reload_resumes_with_a_new_connection_and_the_old_one_is_replaced() {
    let proxy = Proxy::start("");
    let mut publisher = TestClient::new("publisher");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    let mut tab = TestClient::new("dashboard-1");
    tab.connect(&proxy.ws_url()).await.unwrap();
    publish_numbered(&mut publisher, 1, 30).await;
    assert!(tab
        .pump_until(SECS, |c| numbers(c).len() == 30)
        .await
        .unwrap());

    // The reloaded page restores (epoch, last_seq) from storage into a new
    // client while the old socket is still open.
    let mut reloaded = TestClient::new("dashboard-1");
    reloaded.receiver = tab.receiver.clone();
    reloaded.connect(&proxy.ws_url()).await.unwrap();
    publish_numbered(&mut publisher, 31, 30).await;
    assert!(reloaded
        .pump_until(SECS, |c| numbers(c).len() == 30)
        .await
        .unwrap());
    assert_eq!(
        numbers(&reloaded),
        (31..=60).collect::<Vec<_>>(),
        "no loss, no repeat of 1..=30"
    );

    assert!(tab.pump_until(SECS, |c| !c.is_connected()).await.unwrap());
    assert!(
        tab.errors.iter().any(|e| e.code == ErrorCode::Replaced),
        "{:?}",
        tab.errors
    );
    assert_eq!(tab.close_code, Some(4009));
}

/// Sends notes 1..=n (again), as an outbox does after a reconnect, and
/// waits until the proxy has accepted them all.
async fn resend_all(publisher: &mut TestClient, n: u64) {
    for k in 1..=n {
        publisher
            .publish_as(k, "note", numbered(k), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    assert!(publisher
        .pump_until(SECS, |c| c.accepted_upto >= n)
        .await
        .unwrap());
}

#[tokio::test]
async fn publishes_resent_after_cuts_and_restarts_apply_once() {
    let mut proxy = Proxy::start("");
    let mut publisher = TestClient::new("publisher");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    for n in 1..=20 {
        publisher
            .publish_as(n, "note", numbered(n), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    // Cut before reading any Accepted, then resend everything (the outbox does).
    publisher.cut();
    publisher.connect(&proxy.ws_url()).await.unwrap();
    resend_all(&mut publisher, 20).await;
    // And again after a kill -9 and restart.
    proxy.restart();
    publisher.cut();
    publisher.connect(&proxy.ws_url()).await.unwrap();
    resend_all(&mut publisher, 20).await;

    let mut watcher = TestClient::new("watcher");
    watcher.receiver = shared_protocol::receiver::Receiver::new(
        Some(Resume {
            epoch: publisher.welcome.as_ref().unwrap().epoch,
            last_seq: 0,
        }),
        10_000,
    );
    let head = watcher.connect(&proxy.ws_url()).await.unwrap().head_seq;
    assert!(watcher.pump_to(head, SECS).await.unwrap());
    assert_eq!(
        numbers(&watcher),
        (1..=20).collect::<Vec<_>>(),
        "each publish applied exactly once"
    );
}

#[tokio::test]
async fn kill_9_loses_nothing_acknowledged_and_everyone_resumes() {
    let mut proxy = Proxy::start("");
    let mut publisher = TestClient::new("publisher");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    let mut watchers = Vec::new();
    for i in 0..5 {
        let mut w = TestClient::new(&format!("watcher-{i}"));
        w.connect(&proxy.ws_url()).await.unwrap();
        watchers.push(w);
    }
    publish_numbered(&mut publisher, 1, 50).await;
    // Fire 50 more without waiting, then kill -9 in the middle of it.
    for n in 51..=100 {
        publisher
            .publish_as(n, "note", numbered(n), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    proxy.kill9();
    let accepted_before_kill = {
        // Whatever Accepted frames made it out before the kill.
        let _ = publisher
            .pump_until(Duration::from_millis(500), |c| !c.is_connected())
            .await;
        publisher.accepted_upto
    };
    assert!(accepted_before_kill >= 50);
    proxy.restart();

    // The publisher's outbox resends everything not accepted.
    publisher.connect(&proxy.ws_url()).await.unwrap();
    for n in accepted_before_kill + 1..=100 {
        publisher
            .publish_as(n, "note", numbered(n), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    assert!(publisher
        .pump_until(SECS, |c| c.accepted_upto >= 100)
        .await
        .unwrap());

    for w in &mut watchers {
        let head = w.connect(&proxy.ws_url()).await.unwrap().head_seq;
        assert!(w.pump_to(head, SECS).await.unwrap());
        assert_eq!(
            numbers(w),
            (1..=100).collect::<Vec<_>>(),
            "{}: loss or duplicate",
            w.client_id
        );
        assert_in_order_once(&w.event_seqs());
    }
}

/// The station's readings reach clients before they are on disk (one
/// write a minute, for an SD card). Killed while some are unwritten, the
/// proxy never gives their numbers to other events: a watcher that saw
/// them resumes across the kill with a gap, then gets the next note, and
/// every `seq` once, in order.
#[tokio::test]
async fn kill_9_with_readings_unwritten_never_reuses_their_numbers() {
    let mut proxy = Proxy::start("demo = true\n");
    let mut watcher = TestClient::new("watcher");
    watcher.connect(&proxy.ws_url()).await.unwrap();
    let deadline = std::time::Instant::now() + SECS;
    loop {
        let (_, stats) = proxy.get("/stats");
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
        if stats["events"]["unwritten"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no readings held back: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let head = proxy.get("/stats").1;
    let head: serde_json::Value = serde_json::from_str(&head).unwrap();
    let head = head["global_seq"].as_u64().unwrap();
    assert!(watcher.pump_to(head, SECS).await.unwrap());
    let seen = watcher.event_seqs().last().copied().unwrap();
    let before: Vec<Event> = watcher.events().into_iter().cloned().collect();
    proxy.kill9();
    proxy.restart();

    watcher.connect(&proxy.ws_url()).await.unwrap();
    let mut publisher = TestClient::new("publisher");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    publish_numbered(&mut publisher, 1, 1).await;
    assert!(
        watcher
            .pump_until(SECS, |c| !numbers(c).is_empty())
            .await
            .unwrap(),
        "the note after the restart never came (its seq was one the watcher had seen?): seen {seen}, then gaps {:?}, events {:?}",
        watcher.gaps(),
        watcher.event_seqs().iter().rev().take(10).collect::<Vec<_>>()
    );
    let note = watcher
        .events()
        .into_iter()
        .find(|e| e.kind == "note")
        .unwrap()
        .seq;
    assert!(
        note > seen,
        "note {note} numbered at or before {seen}, already seen"
    );
    assert_in_order_once(&watcher.event_seqs());
    // No number the watcher saw went to another event after the restart.
    let first = before[0].seq;
    for event in e2e::client::read_whole_log(&proxy.ws_url(), SECS)
        .await
        .unwrap()
    {
        if (first..=seen).contains(&event.seq) {
            let saw = before.iter().find(|b| b.seq == event.seq);
            assert_eq!(
                saw,
                Some(&event),
                "seq {} given to another event after the kill",
                event.seq
            );
        }
    }
}

#[tokio::test]
async fn a_lost_log_gives_a_new_epoch_with_gap_and_snapshot() {
    let mut proxy = Proxy::start("");
    let mut publisher = TestClient::new("publisher");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    publish_numbered(&mut publisher, 1, 10).await;
    let mut watcher = TestClient::new("watcher");
    watcher.connect(&proxy.ws_url()).await.unwrap();
    let old_epoch = watcher.welcome.as_ref().unwrap().epoch;

    proxy.wipe();
    proxy.restart();
    let mut publisher = TestClient::new("publisher-2");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    publish_numbered(&mut publisher, 1, 3).await;

    watcher.cut();
    let welcome = watcher.connect(&proxy.ws_url()).await.unwrap().clone();
    assert_ne!(welcome.epoch, old_epoch);
    assert!(!welcome.resumed);
    assert!(watcher
        .pump_until(SECS, |c| !c.snapshots().is_empty())
        .await
        .unwrap());
    let gap = watcher
        .gaps()
        .last()
        .copied()
        .cloned()
        .expect("a gap is never silent");
    assert_eq!(gap.reason, GapReason::EpochChanged);
    let snapshot = watcher.snapshots()[0].clone();
    assert_eq!(snapshot.upto, welcome.head_seq);
    assert_eq!(
        snapshot
            .state
            .get("note")
            .map(|note| &note["n"])
            .and_then(|n| n.as_u64()),
        Some(3),
        "the snapshot holds the last value"
    );
}

#[tokio::test]
async fn retention_and_distance_limits_give_gaps_never_silence() {
    let proxy = Proxy::start("retention_ms = 400\nmax_behind = 50\n");
    let mut publisher = TestClient::new("publisher");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    let mut late = TestClient::new("late");
    late.connect(&proxy.ws_url()).await.unwrap();
    let mut far = TestClient::new("far");
    far.connect(&proxy.ws_url()).await.unwrap();
    late.cut();
    far.cut();

    publish_numbered(&mut publisher, 1, 10).await;
    // Wait past retention (the proxy trims once a second), then add more.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    publish_numbered(&mut publisher, 11, 5).await;
    let welcome = late.connect(&proxy.ws_url()).await.unwrap().clone();
    assert!(late.pump_to(welcome.head_seq, SECS).await.unwrap());
    let gap = late.gaps()[0].clone();
    assert_eq!((gap.from, gap.reason), (1, GapReason::Retention));
    assert_eq!(numbers(&late), (11..=15).collect::<Vec<_>>());

    publish_numbered(&mut publisher, 16, 60).await;
    let welcome = far.connect(&proxy.ws_url()).await.unwrap().clone();
    assert!(!welcome.resumed);
    assert!(far
        .pump_until(SECS, |c| !c.snapshots().is_empty())
        .await
        .unwrap());
    assert!(matches!(
        far.delivered[0],
        Delivered::Gap(Gap {
            reason: GapReason::TooFarBehind,
            ..
        })
    ));
    assert!(
        matches!(far.delivered[1], Delivered::Snapshot(_)),
        "gap first, then the snapshot"
    );
}

#[tokio::test]
async fn a_hot_client_gets_coalesced_volatile_events_and_every_reliable_one() {
    let proxy =
        Proxy::start("cool_above_lag = 20\nmax_behind = 1000\nmax_publish_per_sec = 100000\n");
    let mut publisher = TestClient::new("publisher");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    let mut slow = TestClient::new("slow");
    slow.connect(&proxy.ws_url()).await.unwrap();
    slow.cut();
    for n in 1..=200 {
        publisher
            .publish("sensor.reading", numbered(n), Delivery::Volatile, None)
            .await
            .unwrap();
        if n % 10 == 0 {
            publisher
                .publish("note", numbered(n), Delivery::Reliable, None)
                .await
                .unwrap();
        }
    }
    assert!(publisher
        .pump_until(SECS, |c| c.accepted_upto >= 220)
        .await
        .unwrap());
    let head = slow.connect(&proxy.ws_url()).await.unwrap().head_seq;
    assert!(slow.pump_to(head, SECS).await.unwrap());
    assert_eq!(
        numbers(&slow),
        (1..=20).map(|n| n * 10).collect::<Vec<_>>(),
        "every reliable event"
    );
    let meter: Vec<u64> = slow
        .events()
        .iter()
        .filter(|e| e.kind == "sensor.reading")
        .filter_map(|e| n_of(e))
        .collect();
    assert!(
        meter.len() < 200,
        "volatile readings were coalesced ({} kept)",
        meter.len()
    );
    assert_eq!(
        meter.last(),
        Some(&200),
        "the newest reading is always delivered"
    );
    assert!(slow.gaps().iter().all(|g| g.reason == GapReason::Coalesced));
    assert_in_order_once(&slow.event_seqs());
    let (_, stats) = proxy.get("/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(stats["events"]["dropped"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_disturbs_no_one() {
    let proxy = Proxy::start(
        "max_frame_bytes = 1024\n[[tokens]]\nsecret = \"operator-secret\"\nrole = \"control\"\n[[tokens]]\nsecret = \"watcher-secret\"\nrole = \"read\"\n",
    );
    let mut good = TestClient::new("good").with_token("operator-secret");
    good.connect(&proxy.ws_url()).await.unwrap();

    let mut bad_token = TestClient::new("intruder").with_token("guess-guess");
    assert!(bad_token.connect(&proxy.ws_url()).await.is_err());
    assert_eq!(bad_token.errors[0].code, ErrorCode::Unauthorized);

    let mut no_token = TestClient::new("anonymous");
    assert!(no_token.connect(&proxy.ws_url()).await.is_err());

    // Each case: (what is sent after a valid Hello, expected code, close code).
    let mut hello_frame = ClientFrame::Ack { upto: 0 }.encode().unwrap();
    hello_frame[1] = 99;
    let cases: Vec<(&str, Vec<u8>, ErrorCode, u16)> = vec![
        (
            "garbage",
            vec![0xc1, 0xff, 0x00, 0x13],
            ErrorCode::Malformed,
            1002,
        ),
        (
            "truncated",
            ClientFrame::Ack { upto: 5 }.encode().unwrap()[..3].to_vec(),
            ErrorCode::Malformed,
            1002,
        ),
        (
            "wrong version",
            hello_frame,
            ErrorCode::UnsupportedVersion,
            1002,
        ),
        (
            "oversized",
            ClientFrame::Publish(Publish {
                client_seq: 1,
                kind: "note".into(),
                payload: Payload::from("x".repeat(1_500)),
                delivery: Delivery::Reliable,
                expires_at_ms: None,
                ttl_ms: None,
            })
            .encode()
            .unwrap(),
            ErrorCode::TooLarge,
            1009,
        ),
        (
            "second hello",
            ClientFrame::Hello(Hello {
                client_id: "x".into(),
                token: None,
                resume: None,
                t: None,
                batch: false,
            })
            .encode()
            .unwrap(),
            ErrorCode::ProtocolViolation,
            1002,
        ),
    ];
    for (name, bytes, code, close) in cases {
        let mut c = TestClient::new(&format!("bad-{name}")).with_token("watcher-secret");
        c.connect(&proxy.ws_url()).await.unwrap();
        c.send_raw(bytes).await.unwrap();
        assert!(
            c.pump_until(SECS, |c| !c.is_connected()).await.unwrap(),
            "{name}: not closed"
        );
        assert_eq!(c.errors.last().map(|e| e.code), Some(code), "{name}");
        assert_eq!(c.close_code, Some(close), "{name}");
    }
    let mut text = TestClient::new("bad-text").with_token("watcher-secret");
    text.connect(&proxy.ws_url()).await.unwrap();
    text.send_text("{\"hello\": 1}").await.unwrap();
    assert!(text.pump_until(SECS, |c| !c.is_connected()).await.unwrap());
    assert_eq!(
        text.errors.last().map(|e| e.code),
        Some(ErrorCode::Malformed)
    );

    // Read-only tokens may not command; expired commands are never applied.
    let mut reader = TestClient::new("reader").with_token("watcher-secret");
    reader.connect(&proxy.ws_url()).await.unwrap();
    let seq = reader
        .publish("radio.set_freq", numbered(7), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(reader
        .pump_until(SECS, |c| !c.rejected.is_empty())
        .await
        .unwrap());
    assert_eq!(
        reader.rejected[0],
        Rejected {
            client_seq: seq,
            reason: RejectReason::Forbidden
        }
    );
    let past = 1_000;
    let seq = good
        .publish(
            "radio.ptt",
            e2e::client::map(&[("on", true.into())]),
            Delivery::Volatile,
            Some(past),
        )
        .await
        .unwrap();
    assert!(good
        .pump_until(SECS, |c| !c.rejected.is_empty())
        .await
        .unwrap());
    assert_eq!(
        good.rejected[0],
        Rejected {
            client_seq: seq,
            reason: RejectReason::Expired
        }
    );

    // The good session never noticed any of it.
    good.publish("note", numbered(1), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(good.pump_until(SECS, |c| numbers(c) == [1]).await.unwrap());
    assert!(good.is_connected());
    assert!(
        good.events().iter().all(|e| e.kind == "note"),
        "rejected commands never reached the log"
    );

    let (_, metrics) = proxy.get("/metrics?token=watcher-secret");
    for reason in [
        "malformed",
        "too_large",
        "unsupported_version",
        "protocol_violation",
        "unauthorized",
    ] {
        assert!(
            metrics.contains(&format!("proxy_bad_input_total{{reason=\"{reason}\"}}")),
            "metrics lack {reason}"
        );
    }
}

#[tokio::test]
async fn foreign_origins_are_refused_on_upgrade() {
    let proxy = Proxy::start("allowed_origins = [\"https://shack.example\"]\n");
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let with_origin = |origin: &'static str| {
        let mut h = upgrade.to_vec();
        h.push(("Origin", origin));
        h
    };
    let (status, _) =
        e2e::proxy::http_get(&proxy.addr, "/ws", &with_origin("https://evil.example"));
    assert_eq!(status, 403);
    let (status, _) =
        e2e::proxy::http_get(&proxy.addr, "/ws", &with_origin("https://shack.example"));
    assert_eq!(status, 101);
}

#[tokio::test]
async fn silent_clients_go_stale_and_are_closed() {
    let proxy = Proxy::start("heartbeat_ms = 200\nstale_after_ms = 700\n");
    let mut silent = TestClient::new("silent");
    silent.connect(&proxy.ws_url()).await.unwrap();
    // Read frames but never answer pings: the proxy must give up on us.
    let started = std::time::Instant::now();
    let mut pings = 0;
    while silent.is_connected() && started.elapsed() < SECS {
        if let Some(ServerFrame::Ping(_)) = silent.recv(Duration::from_millis(100)).await.unwrap() {
            pings += 1;
        }
    }
    assert!(
        !silent.is_connected(),
        "still connected after {:?}",
        started.elapsed()
    );
    assert!(pings >= 2, "the proxy pings on schedule ({pings})");
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(silent.close_code, Some(4008));

    // A client that answers stays connected past the stale time.
    let mut alive = TestClient::new("alive");
    alive.connect(&proxy.ws_url()).await.unwrap();
    alive
        .pump_until(Duration::from_millis(1_500), |_| false)
        .await
        .unwrap();
    assert!(alive.is_connected());
    let (_, stats) = proxy.get("/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let sessions = stats["sessions"].as_array().unwrap();
    let state_of = |id: &str| {
        sessions
            .iter()
            .find(|s| s["client_id"] == id)
            .map(|s| s["state"].clone())
    };
    assert_eq!(state_of("alive"), Some("connected".into()));
    assert_eq!(state_of("silent"), Some("disconnected".into()));
    let alive_rtt = sessions.iter().find(|s| s["client_id"] == "alive").unwrap()["rtt_ms"].as_f64();
    assert!(alive_rtt.is_some(), "pongs measure the RTT");
}

#[tokio::test]
async fn graceful_shutdown_closes_sessions_with_a_restart_code() {
    let mut proxy = Proxy::start("");
    let mut client = TestClient::new("c");
    client.connect(&proxy.ws_url()).await.unwrap();
    let mut publisher = TestClient::new("publisher");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    publish_numbered(&mut publisher, 1, 5).await;
    let terminated = tokio::task::spawn_blocking(move || {
        let ok = proxy.terminate();
        (ok, proxy)
    });
    assert!(client
        .pump_until(SECS, |c| !c.is_connected())
        .await
        .unwrap());
    assert_eq!(
        client.errors.last().map(|e| e.code),
        Some(ErrorCode::ShuttingDown)
    );
    assert_eq!(client.close_code, Some(1012));
    let (ok, mut proxy) = terminated.await.unwrap();
    assert!(ok, "SIGTERM gives a clean exit");
    proxy.restart();
    let head = client.connect(&proxy.ws_url()).await.unwrap().head_seq;
    assert_eq!(head, 5, "the log is intact after a graceful restart");
}

#[tokio::test]
async fn stats_and_metrics_describe_the_proxy() {
    let proxy = Proxy::start("");
    let mut client = TestClient::new("observer");
    client.connect(&proxy.ws_url()).await.unwrap();
    client
        .publish("note", numbered(1), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(client
        .pump_until(SECS, |c| numbers(c) == [1])
        .await
        .unwrap());
    let (status, stats) = proxy.get("/stats");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    for key in ["total", "active"] {
        assert!(stats["connections"][key].is_u64(), "connections.{key}");
    }
    for key in ["sent", "acknowledged", "buffered", "dropped"] {
        assert!(stats["events"][key].is_u64(), "events.{key}");
    }
    assert!(stats["average_quality"].is_f64());
    assert_eq!(stats["global_seq"], 1);
    let session = &stats["sessions"][0];
    for key in [
        "client_id",
        "state",
        "quality",
        "health",
        "temperature",
        "reconnects",
        "uptime_ms",
    ] {
        assert!(!session[key].is_null(), "session.{key}");
    }
    let (status, metrics) = proxy.get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "proxy_connections_total",
        "proxy_events_sent_total",
        "connection_temperature",
        "proxy_global_seq",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}");
    }
    promtool_check_metrics(&metrics);
}

/// `promtool check metrics` accepts `metrics` (every metric has HELP and
/// TYPE, names and labels are well formed).
fn promtool_check_metrics(metrics: &str) {
    assert!(
        std::path::Path::new("/usr/bin/promtool").exists(),
        "promtool is missing: `cargo xtask setup` installs it (Debian package prometheus)"
    );
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With the demo hardware (a simulated radio and power meter on
/// pseudo-terminals), `/metrics` still passes promtool, and the counters
/// alerts are written on exist at zero before anything happened.
#[tokio::test]
async fn metrics_with_demo_hardware_pass_promtool_and_start_at_zero() {
    let proxy = Proxy::start("demo = true\n");
    let mut client = TestClient::new("observer");
    client.connect(&proxy.ws_url()).await.unwrap();
    let deadline = std::time::Instant::now() + SECS;
    let metrics = loop {
        let (status, metrics) = proxy.get("/metrics");
        assert_eq!(status, 200);
        if metrics.contains(r#"link_state{link="radio",state="connected"} 1"#)
            && metrics.contains(r#"link_state{link="meter",state="connected"} 1"#)
        {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo links did not connect:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    promtool_check_metrics(&metrics);
    for line in [
        r#"proxy_tx_watchdog_unkeys_total{reason="max_tx_time"} 0"#,
        r#"link_events_total{link="radio",type="EVENT_MAX_RETRIES_EXCEEDED"} 0"#,
        r#"link_events_total{link="meter",type="EVENT_POWER_CRITICAL"} 0"#,
        r#"proxy_bad_input_total{reason="malformed"} 0"#,
        r#"proxy_connections_refused_total{reason="max_connections"} 0"#,
        "proxy_log_commit_failures_total 0",
        "bridge_log_dropped_total 0",
        "proxy_log_writable 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "metrics lack `{line}`:\n{metrics}"
        );
    }
    for name in ["power_forward_watts", "power_swr", "power_alarm_level"] {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
}

#[tokio::test]
async fn over_the_rate_volatile_publishes_are_refused_and_reliable_ones_wait() {
    let proxy = Proxy::start("max_publish_per_sec = 20\n");
    let mut client = TestClient::new("eager");
    client.connect(&proxy.ws_url()).await.unwrap();
    let started = std::time::Instant::now();
    for n in 1..=60 {
        client
            .publish("note", numbered(n), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    assert!(client
        .pump_until(SECS, |c| c.accepted_upto >= 60)
        .await
        .unwrap());
    assert!(
        client.rejected.is_empty(),
        "reliable publishes are slowed down, never refused"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "60 at 20/s take about 2 s"
    );
    for n in 61..=120 {
        client
            .publish("sensor.reading", numbered(n), Delivery::Volatile, None)
            .await
            .unwrap();
    }
    assert!(client
        .pump_until(SECS, |c| c.rejected.len() >= 30)
        .await
        .unwrap());
    assert!(client
        .rejected
        .iter()
        .all(|r| r.reason == RejectReason::RateLimited));
    assert!(client
        .pump_until(SECS, |c| numbers(c).len() == 60)
        .await
        .unwrap());
    assert_eq!(numbers(&client), (1..=60).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_tx_watchdog_unkeys_a_silent_or_vanished_keyer() {
    let proxy = Proxy::start("tx_keepalive_ms = 600\ntx_max_ms = 60000\n");
    let mut watcher = TestClient::new("watcher");
    watcher.connect(&proxy.ws_url()).await.unwrap();
    let unkeys = |c: &TestClient| -> Vec<String> {
        c.events()
            .iter()
            .filter(|e| e.kind == "watchdog.unkeyed")
            .map(|e| e.payload["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    };

    // 1. A keyer that keeps refreshing stays on the air...
    let mut op = TestClient::new("operator");
    op.connect(&proxy.ws_url()).await.unwrap();
    let keyed_at = std::time::Instant::now();
    let mut last_refresh = keyed_at;
    for _ in 0..6 {
        key_ptt(&mut op, true).await;
        last_refresh = std::time::Instant::now();
        op.pump_until(Duration::from_millis(200), |_| false)
            .await
            .unwrap();
    }
    assert!(
        keyed_at.elapsed() > Duration::from_millis(1_000),
        "refreshed past the keep-alive"
    );
    watcher
        .pump_until(Duration::from_millis(50), |_| false)
        .await
        .unwrap();
    assert!(
        unkeys(&watcher).is_empty(),
        "refreshed for {:?}: must stay keyed",
        keyed_at.elapsed()
    );
    // ...then goes silent (still connected): unkeyed after the keep-alive.
    assert!(watcher
        .pump_until(SECS, |c| !unkeys(c).is_empty())
        .await
        .unwrap());
    let waited = last_refresh.elapsed();
    assert_eq!(unkeys(&watcher), ["silent"]);
    assert!(
        waited >= Duration::from_millis(550) && waited < Duration::from_secs(3),
        "unkeyed {waited:?} after the last refresh"
    );
    let off = watcher
        .events()
        .iter()
        .rev()
        .find(|e| e.kind == "radio.ptt")
        .map(|e| e.payload.clone());
    assert_eq!(
        off.as_ref().and_then(|p| p["on"].as_bool()),
        Some(false),
        "an unkey command was logged"
    );

    // 2. A keyer whose connection drops is unkeyed at once.
    key_ptt(&mut op, true).await;
    op.pump_until(Duration::from_millis(200), |_| false)
        .await
        .unwrap();
    op.cut();
    assert!(watcher
        .pump_until(SECS, |c| unkeys(c).len() == 2)
        .await
        .unwrap());
    assert_eq!(unkeys(&watcher)[1], "session_ended");
}

#[tokio::test]
async fn a_client_far_behind_is_replayed_in_pages_it_acknowledges() {
    let proxy =
        Proxy::start("max_behind = 100000\nreplay_page = 100\nmax_publish_per_sec = 100000\n");
    // A brand-new session: welcomed, never received an event.
    let mut late = TestClient::new("late");
    late.connect(&proxy.ws_url()).await.unwrap();
    assert_eq!(late.receiver.last_seq(), 0);
    late.cut();
    let mut publisher = TestClient::new("publisher");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    for n in 1..=3_000 {
        publisher
            .publish("note", numbered(n), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    assert!(publisher
        .pump_until(SECS, |c| c.accepted_upto >= 3_000)
        .await
        .unwrap());

    // It resumes from last_seq = 0 and, acking nothing, gets two pages.
    late.auto_ack = false;
    let welcome = late.connect(&proxy.ws_url()).await.unwrap();
    assert!(welcome.resumed, "a replay from 1, not a snapshot");
    late.pump_until(Duration::from_millis(800), |c| c.wire_seqs.len() > 200)
        .await
        .unwrap();
    assert_eq!(
        late.wire_seqs,
        (1..=200).collect::<Vec<u64>>(),
        "two pages unacknowledged, no more"
    );
    // Acknowledging the first page releases exactly one more.
    late.ack_upto(100).await.unwrap();
    late.pump_until(Duration::from_millis(800), |c| c.wire_seqs.len() > 300)
        .await
        .unwrap();
    assert_eq!(late.wire_seqs.len(), 300);
    // Acking as it goes, it catches up: every event once, in order, no gap.
    late.auto_ack = true;
    assert!(late.pump_to(3_000, SECS).await.unwrap());
    assert_eq!(numbers(&late), (1..=3_000).collect::<Vec<_>>());
    assert!(late.gaps().is_empty());
}
