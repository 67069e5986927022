//! Secure by default: DNS rebinding refused by the Host check, no
//! anonymous control off loopback, a `client_id` bound to the credential
//! that first used it, the operator's view behind a token, printable names.

use std::time::Duration;

use e2e::client::{key_ptt, numbered, set_freq};
use e2e::proxy::http_get;
use e2e::{Proxy, TestClient};
use shared_protocol::frame::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECS: Duration = Duration::from_secs(20);
const TOKENS: &str = "[[tokens]]\nsecret = \"operator-secret\"\nrole = \"control\"\n[[tokens]]\nsecret = \"watcher-secret\"\nrole = \"read\"\n";

/// The status of a WebSocket upgrade carrying these `Host` and `Origin`.
async fn upgrade_status(proxy: &Proxy, host: &str, origin: Option<&str>) -> u16 {
    let mut request = proxy.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed oddly: {e}"),
    }
}

#[tokio::test]
async fn a_rebinding_page_is_refused_and_allowed_hosts_pass() {
    let proxy = Proxy::start("allowed_hosts = [\"shack.example.org\"]\n");
    let port = proxy.addr.rsplit(':').next().unwrap().to_string();
    // The attack: a foreign name resolved to the proxy, Host and Origin both its own.
    let evil = format!("evil.test:{port}");
    assert_eq!(
        upgrade_status(&proxy, &evil, Some(&format!("http://{evil}"))).await,
        403
    );
    // Its dashboard and /stats are refused too.
    let (status, body) = http_get(&proxy.addr, "/stats", &[("Host", &evil)]);
    assert_eq!(status, 403, "{body}");
    // Our own names pass: IP literals, localhost, the listed host.
    for host in [
        proxy.addr.clone(),
        format!("localhost:{port}"),
        format!("shack.example.org:{port}"),
    ] {
        assert_eq!(
            upgrade_status(&proxy, &host, Some(&format!("http://{host}"))).await,
            101,
            "{host}"
        );
    }
    // A foreign origin on our own host is refused as before.
    assert_eq!(
        upgrade_status(&proxy, &proxy.addr, Some("http://evil.test")).await,
        403
    );
}

#[tokio::test]
async fn without_tokens_off_loopback_clients_may_watch_but_not_command() {
    let proxy = Proxy::start_listening("", "0.0.0.0:0");
    let mut client = TestClient::new("lan-visitor");
    let welcome = client.connect(&proxy.ws_url()).await.unwrap().clone();
    assert_eq!(welcome.access, Some(Access::Read));
    key_ptt(&mut client, true).await;
    assert!(client
        .pump_until(SECS, |c| !c.rejected.is_empty())
        .await
        .unwrap());
    assert_eq!(client.rejected[0].reason, RejectReason::Forbidden);
    // On loopback, the zero-config demo keeps control.
    let local = Proxy::start("");
    let mut operator = TestClient::new("operator");
    let welcome = operator.connect(&local.ws_url()).await.unwrap().clone();
    assert_eq!(welcome.access, Some(Access::Control));
}

#[tokio::test]
async fn another_credential_cannot_take_or_poison_a_client_id() {
    let proxy = Proxy::start(TOKENS);
    let mut operator = TestClient::new("operator-dash").with_token("operator-secret");
    operator.connect(&proxy.ws_url()).await.unwrap();
    set_freq(&mut operator, 14_074_000).await;
    assert!(operator
        .pump_until(SECS, |c| c.accepted_upto >= 1)
        .await
        .unwrap());
    // A watcher presents the operator's client_id, with a huge client_seq.
    let mut impostor = TestClient::new("operator-dash").with_token("watcher-secret");
    assert!(impostor.connect(&proxy.ws_url()).await.is_err());
    assert_eq!(impostor.errors[0].code, ErrorCode::Unauthorized);
    // The operator's session was not replaced, and its next command applies.
    assert!(operator
        .pump_until(Duration::from_millis(500), |c| !c.is_connected())
        .await
        .unwrap_or(false)
        .eq(&false));
    assert!(operator.is_connected(), "{:?}", operator.errors);
    operator
        .publish("note", numbered(2), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(operator
        .pump_until(SECS, |c| c
            .events()
            .iter()
            .any(|e| e.kind == "note" && e_client_n(e) == Some(2)))
        .await
        .unwrap());
    // With a client_id of its own, the watcher's huge client_seq poisons
    // nothing of anyone else's.
    let mut watcher = TestClient::new("watcher-dash").with_token("watcher-secret");
    watcher.connect(&proxy.ws_url()).await.unwrap();
    watcher
        .publish_as((1 << 53) - 1, "note", numbered(9), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(watcher
        .pump_until(SECS, |c| c.accepted_upto == (1 << 53) - 1)
        .await
        .unwrap());
    operator
        .publish("note", numbered(3), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(operator
        .pump_until(SECS, |c| c
            .events()
            .iter()
            .any(|e| e.kind == "note" && e_client_n(e) == Some(3)))
        .await
        .unwrap());
}

fn e_client_n(e: &Event) -> Option<u64> {
    e2e::client::n_of(e)
}

#[tokio::test]
async fn the_operators_view_needs_a_token_when_tokens_are_configured() {
    let proxy = Proxy::start(&format!("metrics_token = \"scraper\"\n{TOKENS}"));
    let (status, _) = proxy.get("/stats");
    assert_eq!(status, 401);
    let (status, _) = proxy.get("/metrics");
    assert_eq!(status, 401);
    let (status, body) = proxy.get("/stats?token=watcher-secret");
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_get(
        &proxy.addr,
        "/metrics",
        &[("Authorization", "Bearer scraper")],
    );
    assert_eq!(status, 200);
    let (status, _) = proxy.get("/healthz");
    assert_eq!(status, 200, "health stays open for supervisors");
}

#[tokio::test]
async fn names_with_control_characters_are_refused() {
    let proxy = Proxy::start("");
    let mut forger = TestClient::new("dash\nEVENT_RADIO_KEYED");
    assert!(forger.connect(&proxy.ws_url()).await.is_err());
    assert_eq!(forger.errors[0].code, ErrorCode::ProtocolViolation);
    let mut client = TestClient::new("dash");
    client.connect(&proxy.ws_url()).await.unwrap();
    client
        .publish("note\u{1b}[31m", numbered(1), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(client
        .pump_until(SECS, |c| !c.rejected.is_empty())
        .await
        .unwrap());
    assert_eq!(client.rejected[0].reason, RejectReason::Invalid);
}

#[tokio::test]
async fn the_station_state_is_bounded_and_every_new_client_gets_a_snapshot_it_can_read() {
    let proxy = Proxy::start("max_publish_per_sec = 1000\n");
    let mut abuser = TestClient::new("abuser");
    abuser.connect(&proxy.ws_url()).await.unwrap();
    let big = Payload::from("x".repeat(60_000));
    for i in 0..24 {
        abuser
            .publish(&format!("note.{i}"), big.clone(), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    assert!(abuser
        .pump_until(SECS, |c| c.accepted_upto + c.rejected.len() as u64 >= 24)
        .await
        .unwrap());
    assert!(
        !abuser.rejected.is_empty()
            && abuser
                .rejected
                .iter()
                .all(|r| r.reason == RejectReason::StateFull),
        "{:?}",
        abuser.rejected
    );
    // A new client's snapshot stays far below the browser's 1 MiB frames.
    let mut fresh = TestClient::new("fresh");
    fresh.connect(&proxy.ws_url()).await.unwrap();
    assert!(fresh
        .pump_until(SECS, |c| !c.snapshots().is_empty())
        .await
        .unwrap());
    let snapshot = ServerFrame::Snapshot(fresh.snapshots()[0].clone());
    let size = snapshot.encode().unwrap().len();
    assert!(size <= 300 * 1024, "snapshot of {size} bytes");
    let (_, body) = proxy.get("/stats");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(stats["state"]["bytes"].as_u64().unwrap() <= 256 * 1024);
    // Shrinking a kind is always allowed.
    abuser
        .publish("note.0", Payload::from("small"), Delivery::Reliable, None)
        .await
        .unwrap();
    let before = abuser.rejected.len();
    assert!(abuser
        .pump_until(SECS, |c| c.accepted_upto >= 25 || c.rejected.len() > before)
        .await
        .unwrap());
    assert_eq!(
        abuser.rejected.len(),
        before,
        "a smaller value for a kept kind is accepted"
    );
}

/// `/stats` as JSON.
fn stats(proxy: &Proxy) -> serde_json::Value {
    let (_, body) = proxy.get("/stats");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn stateless_kinds_are_delivered_but_never_fill_the_snapshot_and_station_kinds_always_do() {
    // "*" names every kind: the station's own still stay in the state.
    let proxy = Proxy::start(
        "max_publish_per_sec = 1000\nmax_state_kinds = 4\nstateless_kinds = [\"note.*\", \"*\"]\n",
    );
    let mut watcher = TestClient::new("watcher");
    watcher.connect(&proxy.ws_url()).await.unwrap();
    let mut abuser = TestClient::new("abuser");
    abuser.connect(&proxy.ws_url()).await.unwrap();
    set_freq(&mut abuser, 7_074_000).await;
    let big = Payload::from("x".repeat(60_000));
    for i in 0..24 {
        abuser
            .publish(&format!("note.{i}"), big.clone(), Delivery::Reliable, None)
            .await
            .unwrap();
    }
    assert!(abuser
        .pump_until(SECS, |c| c.accepted_upto + c.rejected.len() as u64 >= 25)
        .await
        .unwrap());
    assert!(abuser.rejected.is_empty(), "{:?}", abuser.rejected);
    // Delivered live, all of them.
    assert!(watcher
        .pump_until(SECS, |c| c
            .events()
            .iter()
            .filter(|e| e.kind.starts_with("note."))
            .count()
            == 24)
        .await
        .unwrap());
    let state = &stats(&proxy)["state"];
    assert_eq!(state["kinds"], 1, "only radio.set_freq: {state}");
    // A new client's snapshot has the station's kind and no note.
    let mut fresh = TestClient::new("fresh");
    fresh.connect(&proxy.ws_url()).await.unwrap();
    assert!(fresh
        .pump_until(SECS, |c| !c.snapshots().is_empty())
        .await
        .unwrap());
    let snapshot = &fresh.snapshots()[0].state;
    assert!(snapshot.get("radio.set_freq").is_some(), "{snapshot:?}");
    assert_eq!(snapshot.len(), 1, "{snapshot:?}");
}

#[tokio::test]
async fn the_publishers_table_stays_at_its_cap_and_a_forgotten_client_is_never_taken_for_a_duplicate(
) {
    let proxy = Proxy::start("max_publishers = 20\n");
    let total = |s: &serde_json::Value, what: &str| s["publishes"][what].as_u64().unwrap();
    for i in 0..60 {
        let mut client = TestClient::new(&format!("tab-{i}"));
        client.connect(&proxy.ws_url()).await.unwrap();
        client
            .publish("note", numbered(i), Delivery::Reliable, None)
            .await
            .unwrap();
        assert!(client
            .pump_until(SECS, |c| c.accepted_upto >= 1)
            .await
            .unwrap());
    }
    let s = stats(&proxy);
    assert_eq!(s["publishers"]["entries"], 20, "{}", s["publishers"]);
    assert_eq!(total(&s, "applied"), 60);
    let metrics = proxy.get("/metrics").1;
    assert!(
        metrics.lines().any(|l| l == "proxy_publishers 20"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("publishers"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The newest clients are remembered: a resend is a duplicate.
    let mut recent = TestClient::new("tab-59");
    recent.connect(&proxy.ws_url()).await.unwrap();
    recent
        .publish_as(1, "note", numbered(59), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(recent
        .pump_until(SECS, |c| c.accepted_upto >= 1)
        .await
        .unwrap());
    let s = stats(&proxy);
    assert_eq!((total(&s, "applied"), total(&s, "duplicate")), (60, 1));
    // The first was forgotten: its next publish applies (never taken for
    // a duplicate), and the table stays at the cap.
    let mut first = TestClient::new("tab-0");
    first.connect(&proxy.ws_url()).await.unwrap();
    first
        .publish_as(2, "note", numbered(100), Delivery::Reliable, None)
        .await
        .unwrap();
    assert!(first
        .pump_until(SECS, |c| c.accepted_upto >= 2)
        .await
        .unwrap());
    let s = stats(&proxy);
    assert_eq!((total(&s, "applied"), total(&s, "duplicate")), (61, 1));
    assert_eq!(s["publishers"]["entries"], 20);
}
