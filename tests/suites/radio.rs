//! The radio bridge against a simulated TS-2000 on a real pseudo-terminal
//! (the same CAT backend a real radio gets): state reaches dashboards,
//! commands reach the radio, an unplugged cable is survived, and the TX
//! watchdog unkeys the radio itself.

use std::sync::atomic::Ordering;
use std::time::Duration;

use e2e::client::now_ms;
use e2e::{Proxy, TestClient};
use shared_protocol::frame::{Delivery, Payload};
use station_sim::kenwood::Radio;
use station_sim::pty::PtyRadio;

const SECS: Duration = Duration::from_secs(20);

fn map(pairs: &[(&str, Payload)]) -> Payload {
    Payload::Map(
        pairs
            .iter()
            .map(|(k, v)| (Payload::from(*k), v.clone()))
            .collect(),
    )
}

/// The newest radio state the client knows, from events or the snapshot.
fn radio_state(c: &TestClient) -> Option<Payload> {
    let from_events = c
        .events()
        .iter()
        .rev()
        .find(|e| e.kind == "radio.state")
        .map(|e| e.payload.clone());
    from_events.or_else(|| {
        c.snapshots()
            .last()
            .and_then(|s| s.state.get("radio.state").cloned())
    })
}

fn link_events(c: &TestClient) -> Vec<String> {
    c.events()
        .iter()
        .filter(|e| e.kind == "link.radio")
        .filter_map(|e| e.payload["type"].as_str().map(str::to_string))
        .collect()
}

/// Plugs a simulated radio in behind a stable path (a symlink), as udev does.
fn plug(link: &std::path::Path) -> PtyRadio {
    let radio = PtyRadio::start(Radio::default()).unwrap();
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&radio.path, link).unwrap();
    radio
}

/// A simulated radio behind a stable path, a proxy bridging to it with
/// `config` added, and a connected operator.
struct Station {
    _dir: tempfile::TempDir,
    link: std::path::PathBuf,
    sim: PtyRadio,
    proxy: Proxy,
    op: TestClient,
}

async fn station(config: &str) -> Station {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("radio");
    let sim = plug(&link);
    let proxy = Proxy::start(&format!("radio_port = \"{}\"\n{config}", link.display()));
    let mut op = TestClient::new("operator");
    op.connect(&proxy.ws_url()).await.unwrap();
    Station {
        _dir: dir,
        link,
        sim,
        proxy,
        op,
    }
}

#[tokio::test]
async fn the_bridge_drives_a_real_pty_radio_and_survives_an_unplug() {
    let Station {
        _dir,
        link,
        sim,
        proxy,
        mut op,
    } = station("radio_poll_ms = 100\ntx_keepalive_ms = 800\n").await;

    // The radio's state reaches the dashboard.
    let freq = |c: &TestClient| radio_state(c).and_then(|s| s["freq_hz"].as_u64());
    assert!(
        op.pump_until(SECS, |c| freq(c) == Some(14_074_000))
            .await
            .unwrap(),
        "no radio.state"
    );

    // A command goes through the log to the radio, and the change comes back.
    op.publish(
        "radio.set_freq",
        map(&[("hz", Payload::from(7_074_000))]),
        Delivery::Reliable,
        None,
    )
    .await
    .unwrap();
    assert!(op
        .pump_until(SECS, |c| freq(c) == Some(7_074_000))
        .await
        .unwrap());
    assert_eq!(sim.radio.lock().unwrap().vfo_a_hz, 7_074_000);

    // The TX watchdog unkeys the radio itself when the keyer goes silent.
    let on = map(&[("on", Payload::from(true))]);
    op.publish("radio.ptt", on, Delivery::Volatile, Some(now_ms() + 2_000))
        .await
        .unwrap();
    assert!(op
        .pump_until(SECS, |c| radio_state(c).and_then(|s| s["ptt"].as_bool())
            == Some(true))
        .await
        .unwrap());
    assert!(sim.radio.lock().unwrap().tx, "keyed");
    assert!(op
        .pump_until(SECS, |c| radio_state(c).and_then(|s| s["ptt"].as_bool())
            == Some(false))
        .await
        .unwrap());
    assert!(
        !sim.radio.lock().unwrap().tx,
        "the watchdog unkeyed the radio"
    );

    // Unplug: the link notices and retries with backoff...
    sim.faults.unplugged.store(true, Ordering::Relaxed);
    drop(sim);
    assert!(op
        .pump_until(SECS, |c| link_events(c)
            .iter()
            .any(|e| e == "EVENT_RECONNECT_START"))
        .await
        .unwrap());
    // ...and plugging back in recovers, with the state re-read.
    let sim = plug(&link);
    assert!(op
        .pump_until(SECS, |c| link_events(c)
            .iter()
            .any(|e| e == "EVENT_RECONNECT_OK"))
        .await
        .unwrap());
    assert!(
        op.pump_until(SECS, |c| freq(c) == Some(14_074_000))
            .await
            .unwrap(),
        "state re-read from the new radio"
    );
    let (_, stats) = proxy.get("/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["links"]["radio"]["state"], "connected", "{stats}");
    assert!(stats["links"]["radio"]["reconnects"].as_u64().unwrap() >= 1);
    drop(sim);
}

#[tokio::test]
async fn a_tx_drop_is_detected_and_takes_the_fast_path() {
    // Bound whole: the proxy and the temp dir must live to the end.
    let mut station = station("radio_poll_ms = 50\n").await;
    let (sim, op) = (&station.sim, &mut station.op);
    let ptt = |c: &TestClient| radio_state(c).and_then(|s| s["ptt"].as_bool());
    op.publish(
        "radio.ptt",
        map(&[("on", Payload::from(true))]),
        Delivery::Volatile,
        Some(now_ms() + 2_000),
    )
    .await
    .unwrap();
    assert!(op.pump_until(SECS, |c| ptt(c) == Some(true)).await.unwrap());
    // The transmitter drops out on its own (the radio falls back to RX).
    sim.radio.lock().unwrap().tx = false;
    let dropped = std::time::Instant::now();
    assert!(op
        .pump_until(SECS, |c| link_events(c)
            .iter()
            .any(|e| e == "EVENT_RECONNECT_OK"))
        .await
        .unwrap());
    let events = link_events(op);
    let at = |name: &str| {
        events
            .iter()
            .position(|e| e == name)
            .unwrap_or_else(|| panic!("no {name} in {events:?}"))
    };
    assert!(at("EVENT_TX_DROP_DETECTED") < at("EVENT_FAST_PATH_ACTIVE"));
    assert!(at("EVENT_FAST_PATH_ACTIVE") < at("EVENT_RECONNECT_OK"));
    assert!(
        dropped.elapsed() < Duration::from_secs(2),
        "fast path took {:?}",
        dropped.elapsed()
    );
    assert!(
        !sim.radio.lock().unwrap().tx,
        "the bridge never re-keys on its own"
    );
}
