//! A full disk: the proxy says so (`unavailable`, `/healthz` 503),
//! acknowledges nothing it could not store, keeps running, and once the disk
//! has room again it stores by itself, without a restart: every
//! acknowledged publish is in the log exactly once and the next one applies.
//!
//! Needs root (it mounts a 512 KiB tmpfs). Without root the test fails with
//! an explanation unless `E2E_ALLOW_NO_MOUNT=1` (which `cargo xtask test` sets
//! when it is not run as root).

use std::time::Duration;

use e2e::client::{n_of, numbered};
use e2e::mount::Mount;
use e2e::{Proxy, TestClient};
use shared_protocol::frame::{Delivery, ErrorCode, Payload, Resume};

#[tokio::test]
async fn a_full_disk_is_reported_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(&dir.path().join("small"), "512k") else {
        if std::env::var("E2E_ALLOW_NO_MOUNT").is_ok() {
            eprintln!("disk-full test not run: mounting a tmpfs needs root");
            return;
        }
        panic!("mounting a tmpfs failed (needs root); set E2E_ALLOW_NO_MOUNT=1 to accept not running this test");
    };
    let data = mount.path().join("data");
    let mut proxy = Proxy::start_in("max_publish_per_sec = 100000\n", Some(data));
    let mut publisher = TestClient::new("writer");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    let big = Payload::from("x".repeat(4_000));
    let mut sent = 0;
    while publisher.is_connected() && sent < 2_000 {
        sent += 1;
        let payload = Payload::Map(vec![
            (Payload::from("n"), Payload::from(sent)),
            (Payload::from("pad"), big.clone()),
        ]);
        if publisher
            .publish_as(sent, "note", payload, Delivery::Reliable, None)
            .await
            .is_err()
        {
            break;
        }
        if sent % 16 == 0 {
            let _ = publisher
                .pump_until(Duration::from_millis(20), |_| false)
                .await;
        }
    }
    let _ = publisher
        .pump_until(Duration::from_secs(10), |c| !c.is_connected())
        .await;
    assert!(
        !publisher.is_connected(),
        "the disk never filled ({sent} publishes of 4 KB on 512 KiB)"
    );
    assert_eq!(
        publisher.errors.last().map(|e| e.code),
        Some(ErrorCode::Unavailable),
        "{:?}",
        publisher.errors
    );
    assert_eq!(publisher.close_code, Some(1011));
    let accepted = publisher.accepted_upto;
    assert!(
        accepted > 0 && accepted < sent,
        "accepted {accepted} of {sent}"
    );
    assert!(proxy.is_running(), "a full disk must not crash the proxy");
    // /stats says the same (read first: a probe that fits in the file's
    // free pages may briefly succeed while the disk is still full).
    let stats: serde_json::Value = serde_json::from_str(&proxy.get("/stats").1).unwrap();
    let (status, body) = proxy.get("/healthz");
    assert_eq!(status, 503, "healthz while the disk is full: {body}");
    assert!(stats["log"]["writable"].is_boolean());
    if stats["log"]["writable"] == false {
        assert!(stats["log"]["problem"].is_string());
    }

    // Room again, no restart: the log stores by itself within seconds.
    mount.resize("16m");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.get("/healthz").0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the log did not recover by itself"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(proxy.is_running());
    let mut reader = TestClient::new("reader");
    let epoch = reader.connect(&proxy.ws_url()).await.unwrap().epoch;
    reader.cut();
    reader.receiver =
        shared_protocol::receiver::Receiver::new(Some(Resume { epoch, last_seq: 0 }), 100_000);
    let head = reader.connect(&proxy.ws_url()).await.unwrap().head_seq;
    assert!(reader.pump_to(head, Duration::from_secs(20)).await.unwrap());
    let logged: Vec<u64> = reader.events().iter().filter_map(|e| n_of(e)).collect();
    assert!(
        logged.len() as u64 >= accepted,
        "acknowledged publishes lost: {} logged, {accepted} acknowledged",
        logged.len()
    );
    assert_eq!(
        logged,
        (1..=logged.len() as u64).collect::<Vec<_>>(),
        "in order, once each"
    );

    // And the publisher's outbox goes through now.
    let mut publisher = TestClient::new("writer");
    publisher.connect(&proxy.ws_url()).await.unwrap();
    for n in accepted + 1..=accepted + 5 {
        publisher
            .publish_as(n, "note", numbered(n), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    assert!(publisher
        .pump_until(Duration::from_secs(10), |c| c.accepted_upto >= accepted + 5)
        .await
        .unwrap());
    drop(proxy);
}
