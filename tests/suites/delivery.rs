//! Delivery under pressure, against the real proxy: no acknowledged publish
//! lost under CPU contention with a wide window, an honest pipelining
//! publisher never gapped or declared stale, a Snapshot that needs no ack,
//! a client that stops reading closed on time, integers the document does
//! not allow refused without poisoning the client.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use e2e::client::{n_of, numbered, read_whole_log};
use e2e::{Nats, Proxy, TestClient};
use futures_util::SinkExt;
use shared_protocol::frame::*;
use tokio_tungstenite::tungstenite::Message;

const SECS: Duration = Duration::from_secs(30);

/// Two busy-looping processes beside the proxy, stopped when dropped.
struct CpuHogs(Vec<Child>);

impl CpuHogs {
    fn start() -> CpuHogs {
        CpuHogs(
            (0..2)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("start a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn stats(proxy: &Proxy) -> serde_json::Value {
    let (status, body) = proxy.get("/stats");
    assert_eq!(status, 200);
    serde_json::from_str(&body).expect("stats is JSON")
}

/// Publishes `1..=n` reliably with up to `window` in flight, beside CPU
/// hogs, then checks the log holds each exactly once, in order.
async fn wide_window_publisher(proxy: &Proxy, n: u64) {
    let hogs = CpuHogs::start();
    let mut publisher = TestClient::new("wide");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    let window = publisher
        .welcome
        .as_ref()
        .and_then(|w| w.limits.publish_window);
    assert_eq!(window, Some(4_096), "the proxy announces its window");
    for i in 1..=n {
        publisher
            .publish("note", numbered(i), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    assert!(publisher
        .pump_until(Duration::from_secs(120), |c| c.accepted_upto >= n)
        .await
        .unwrap());
    drop(hogs);
    assert!(
        publisher.rejected.is_empty(),
        "{:?}",
        &publisher.rejected[..1]
    );
    let s = stats(proxy);
    assert_eq!(
        s["publishes"]["duplicate"], 0,
        "nothing taken for a duplicate"
    );
    assert_eq!(s["publishes"]["applied"], n);
    let log = read_whole_log(&proxy.ws_url(), Duration::from_secs(120))
        .await
        .unwrap();
    let numbers: Vec<u64> = log
        .iter()
        .filter(|e| e.kind == "note")
        .filter_map(n_of)
        .collect();
    assert_eq!(numbers.len() as u64, n, "every publish applied");
    assert!(
        numbers.iter().zip(1..).all(|(&a, b)| a == b),
        "applied once each, in client_seq order"
    );
}

const WIDE: &str = "publish_window = 4096\nmax_publish_per_sec = 1000000\nmax_events = 1000000\nretention_ms = 3600000\nmax_behind = 1000000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_window_publisher_beside_cpu_hogs_loses_nothing_on_the_embedded_log() {
    let proxy = Proxy::start(WIDE);
    wide_window_publisher(&proxy, 200_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_window_publisher_beside_cpu_hogs_loses_nothing_on_jetstream() {
    let nats = Nats::start();
    let proxy = Proxy::start(&format!("log = \"{}\"\n{WIDE}", nats.url()));
    // One at a time per client on JetStream: fewer, for the suite's time.
    wide_window_publisher(&proxy, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_pipelining_publisher_is_never_gapped_or_stale() {
    let proxy = Proxy::start(
        "max_publish_per_sec = 250\nheartbeat_ms = 1000\nstale_after_ms = 3000\nmax_behind = 1000\n",
    );
    let mut publisher = TestClient::new("pipeliner");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    let total = 5_000;
    let mut pings: Vec<(u32, Instant)> = Vec::new();
    let mut last_ping = Instant::now();
    for i in 1..=total {
        // Waits inside for the publish window, reading (and acking) meanwhile.
        publisher
            .publish("note", numbered(i), Delivery::Reliable, None)
            .await
            .unwrap();
        if last_ping.elapsed() >= Duration::from_millis(200) {
            let nonce = pings.len() as u32;
            publisher
                .send(&ClientFrame::Ping(Ping { nonce, t: 0 }))
                .await
                .unwrap();
            pings.push((nonce, Instant::now()));
            last_ping = Instant::now();
        }
    }
    assert!(publisher
        .pump_until(SECS, |c| c.receiver.last_seq() >= total)
        .await
        .unwrap());
    assert!(publisher.is_connected(), "{:?}", publisher.errors);
    assert!(publisher.errors.is_empty(), "{:?}", publisher.errors);
    assert!(
        publisher.gaps().is_empty(),
        "gapped: {:?}",
        publisher.gaps()
    );
    let numbers: Vec<u64> = publisher.events().into_iter().filter_map(n_of).collect();
    assert_eq!(numbers, (1..=total).collect::<Vec<_>>());
    assert!(pings.len() > 50, "the run lasted ({} pings)", pings.len());
    for (nonce, sent) in &pings {
        let answered = publisher
            .pongs
            .iter()
            .find(|(n, _)| n == nonce)
            .map(|(_, at)| at.duration_since(*sent));
        assert!(
            answered.is_some_and(|d| d < Duration::from_secs(1)),
            "ping {nonce} answered after {answered:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_snapshot_live_events_continue_without_an_ack() {
    let proxy = Proxy::start("max_behind = 50\nreplay_page = 10\nmax_publish_per_sec = 100000\n");
    let mut reader = TestClient::new("no-acks");
    reader.auto_ack = false;
    reader.connect(&proxy.ws_url()).await.unwrap();
    let mut writer = TestClient::new("writer");
    writer.connect(&proxy.ws_url()).await.unwrap();
    for i in 1..=200 {
        writer
            .publish("note", numbered(i), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    assert!(writer
        .pump_until(SECS, |c| c.accepted_upto >= 200)
        .await
        .unwrap());
    // Never acking, the reader fills its window and falls behind: a gap
    // and a snapshot.
    assert!(reader
        .pump_until(SECS, |c| !c.snapshots().is_empty())
        .await
        .unwrap());
    let upto = reader.snapshots().last().map(|s| s.upto).unwrap();
    // Still without an ack: what is published next arrives.
    for i in 201..=205 {
        writer
            .publish("note", numbered(i), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    assert!(
        reader
            .pump_until(SECS, |c| c.receiver.last_seq() >= upto + 5)
            .await
            .unwrap(),
        "stuck at {} after a snapshot up to {upto}",
        reader.receiver.last_seq()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_within_stale_after() {
    let proxy = Proxy::start(
        "heartbeat_ms = 1000\nstale_after_ms = 3000\nmax_pending_bytes = 262144\nmax_publish_per_sec = 100000\n",
    );
    // A socket that takes almost nothing, and a client that never reads
    // but keeps talking (so only the write side can tell it is stuck).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let addr = proxy.ws_url()[5..].trim_end_matches("/ws").to_string();
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(proxy.ws_url(), stream)
        .await
        .unwrap();
    let hello = ClientFrame::Hello(Hello {
        client_id: "deaf".into(),
        token: None,
        resume: None,
        t: None,
        batch: false,
    });
    ws.send(Message::Binary(hello.encode().unwrap().into()))
        .await
        .unwrap();
    let talker = tokio::spawn(async move {
        for nonce in 0.. {
            let ping = ClientFrame::Ping(Ping { nonce, t: 0 });
            if ws
                .send(Message::Binary(ping.encode().unwrap().into()))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let deaf_state = |proxy: &Proxy| {
        stats(proxy)["sessions"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["client_id"] == "deaf").cloned())
            .map(|s| s["state"].as_str().unwrap_or_default().to_string())
    };
    let deadline = Instant::now() + SECS;
    while deaf_state(&proxy).as_deref() != Some("connected") {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A flood of 8 KB events it will not read.
    let mut writer = TestClient::new("writer");
    writer.connect(&proxy.ws_url()).await.unwrap();
    let big = Payload::from("x".repeat(8_000));
    let flood = Instant::now();
    for _ in 0..300 {
        writer
            .publish("blob", big.clone(), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    let closed = loop {
        let state = deaf_state(&proxy);
        if state.as_deref() != Some("connected") && state.as_deref() != Some("stale") {
            break flood.elapsed();
        }
        assert!(
            flood.elapsed() < Duration::from_secs(15),
            "still {state:?} 15 s after it stopped reading"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    talker.abort();
    assert!(
        closed < Duration::from_millis(3_000 + 1_500),
        "closed {closed:?} after the flood began (stale_after_ms 3000)"
    );
    // The writer, who reads, was never disturbed.
    assert!(writer.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_seqs_outside_the_document_are_refused_without_poisoning_the_client() {
    let proxy = Proxy::start("");
    let mut client = TestClient::new("numbers");
    client.connect(&proxy.ws_url()).await.unwrap();
    for bad in [0, 1 << 53, u64::MAX] {
        client
            .publish_as(bad, "note", numbered(bad), Delivery::Reliable, None)
            .await
            .unwrap();
        assert!(client
            .pump_until(SECS, |c| c.rejected.iter().any(|r| r.client_seq == bad))
            .await
            .unwrap());
        let refusal = client.rejected.last().unwrap();
        assert_eq!(refusal.reason, RejectReason::Invalid, "client_seq {bad}");
    }
    assert_eq!(client.accepted_upto, 0, "nothing accepted");
    // The client id still works.
    client
        .publish_as(1, "note", numbered(1), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(client
        .pump_until(SECS, |c| c.accepted_upto >= 1
            && c.events().iter().any(|e| n_of(e) == Some(1)))
        .await
        .unwrap());
    assert_eq!(stats(&proxy)["publishes"]["applied"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_nests_32_levels_and_no_more() {
    let proxy = Proxy::start("");
    let nested = |levels| {
        let mut p = Payload::from(1u64);
        for _ in 0..levels {
            p = Payload::Array(vec![p]);
        }
        p
    };
    let mut client = TestClient::new("deep");
    client.connect(&proxy.ws_url()).await.unwrap();
    client
        .publish("deep", nested(32), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(client
        .pump_until(SECS, |c| c.events().iter().any(|e| e.kind == "deep"))
        .await
        .unwrap());
    client
        .publish("deep", nested(33), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(client
        .pump_until(SECS, |c| !c.errors.is_empty())
        .await
        .unwrap());
    assert_eq!(
        client.errors[0].code,
        ErrorCode::Malformed,
        "{:?}",
        client.errors
    );
    assert_eq!(client.accepted_upto, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_is_closed_and_never_locks_a_dashboard_out() {
    // The test opens 2,000 sockets itself.
    let _ = rlimit::increase_nofile_limit(8_192);
    let proxy = Proxy::start_with_nofile("header_timeout_ms = 2000\n", 1024);
    let addr = proxy.addr.clone();
    let flood_started = Instant::now();
    let mut flood = Vec::new();
    let mut dashboards = 0;
    for i in 0..2_000 {
        if let Ok(tcp) = tokio::net::TcpStream::connect(&addr).await {
            // Half say nothing, half stop mid request line.
            if i % 2 == 0 {
                let _ = tcp.try_write(b"GET /ws HT");
            }
            flood.push(tcp);
        }
        if i % 200 == 0 {
            // A dashboard keeps connecting through the flood.
            let mut dashboard = TestClient::new(&format!("dash-{i}"));
            let welcome =
                tokio::time::timeout(Duration::from_secs(5), dashboard.connect(&proxy.ws_url()))
                    .await;
            assert!(
                matches!(welcome, Ok(Ok(_))),
                "a dashboard was locked out after {i} idle connections: {welcome:?}"
            );
            dashboards += 1;
        }
    }
    assert_eq!(dashboards, 10);
    // Every idle one is closed by the header timeout (or displaced).
    let mut buf = [0u8; 256];
    for tcp in &mut flood {
        use tokio::io::AsyncReadExt;
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "an idle connection was held open");
    }
    assert!(
        flood_started.elapsed() < Duration::from_secs(2 + 5 + 10),
        "closed after {:?}",
        flood_started.elapsed()
    );
    let (status, _) = proxy.get("/healthz");
    assert_eq!(status, 200);
}

/// A client that says `Hello{batch}` gets the frames of one wake-up in one
/// message (here its Welcome and the whole replay), each once and in
/// order; a client that does not gets one frame per message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_batches_gets_a_replay_in_one_message_in_order() {
    use futures_util::StreamExt;
    let proxy = Proxy::start("max_publish_per_sec = 100000\n");
    let mut writer = TestClient::new("writer");
    let epoch = writer.connect(&proxy.ws_url()).await.unwrap().epoch;
    for n in 0..50u64 {
        writer
            .publish("note", Payload::from(n), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    // All 50 in the log before the readers come.
    assert!(writer.pump_to(50, SECS).await.unwrap());
    for batch in [true, false] {
        let (mut ws, _) = tokio_tungstenite::connect_async(proxy.ws_url())
            .await
            .unwrap();
        let hello = ClientFrame::Hello(Hello {
            client_id: format!("reader-{batch}"),
            token: None,
            resume: Some(Resume { epoch, last_seq: 0 }),
            t: None,
            batch,
        });
        ws.send(Message::Binary(hello.encode().unwrap().into()))
            .await
            .unwrap();
        let (mut messages, mut next) = (Vec::new(), 1);
        while next <= 50 {
            let message = tokio::time::timeout(SECS, ws.next())
                .await
                .expect("the replay within 30 s")
                .expect("open")
                .unwrap();
            let Message::Binary(bytes) = message else {
                continue;
            };
            let frames: Vec<ServerFrame> = ServerFrame::decode_each(&bytes, usize::MAX)
                .collect::<Result<_, _>>()
                .unwrap();
            messages.push(frames.len());
            for frame in frames {
                if let ServerFrame::Event(e) = frame {
                    assert_eq!(e.seq, next, "batch: {batch}");
                    assert_eq!(e.payload, Payload::from(next - 1));
                    next += 1;
                }
            }
        }
        if batch {
            assert_eq!(messages, [51], "Welcome and 50 events in one message");
        } else {
            assert_eq!(messages, [1; 51]);
        }
    }
}
