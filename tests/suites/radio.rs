//! The radio bridge against a simulated TS-2000 on a real pseudo-terminal
//! (the same CAT backend a real radio gets): state reaches dashboards,
//! commands reach the radio, an unplugged cable is survived, and the TX
//! watchdog unkeys the radio itself.

use std::time::Duration;

use e2e::client::{key_ptt, map, set_freq};
use e2e::{Proxy, TestClient};
use shared_protocol::frame::{Delivery, Payload};
use station_sim::hamlib::DummyRig;
use station_sim::kenwood::Radio;
use station_sim::pty::{PtyMeter, PtyRadio};

const SECS: Duration = Duration::from_secs(20);

/// The newest radio state the client knows, from events or the snapshot.
fn radio_state(c: &TestClient) -> Option<Payload> {
    c.latest("radio.state")
}

/// The `EVENT_*` types of the radio link's events, in order.
fn link_events(c: &TestClient) -> Vec<String> {
    events_of(c, "link.radio")
        .iter()
        .filter_map(|p| p["type"].as_str().map(str::to_string))
        .collect()
}

fn events_of(c: &TestClient, kind: &str) -> Vec<Payload> {
    c.events()
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.payload.clone())
        .collect()
}

/// Plugs a simulated radio in behind a stable path (a symlink), as udev does.
fn plug(link: &std::path::Path) -> PtyRadio {
    let radio = PtyRadio::start(Radio::default()).unwrap();
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&radio.path, link).unwrap();
    radio
}

/// A simulated radio behind a stable path, an LP-100A reading its output,
/// a proxy bridging to them with `config` added (`{meter}` in it is the
/// meter's path), and a connected operator.
struct Station {
    _dir: tempfile::TempDir,
    link: std::path::PathBuf,
    sim: PtyRadio,
    _meter: PtyMeter,
    proxy: Proxy,
    op: TestClient,
}

async fn station(config: &str) -> Station {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("radio");
    let sim = plug(&link);
    let meter = PtyMeter::start(sim.radio.clone()).unwrap();
    let config = config.replace("{meter}", &meter.path.display().to_string());
    let proxy = Proxy::start(&format!("radio_port = \"{}\"\n{config}", link.display()));
    let mut op = TestClient::new("operator");
    op.connect(&proxy.ws_url()).await.unwrap();
    Station {
        _dir: dir,
        link,
        sim,
        _meter: meter,
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
        ..
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
    set_freq(&mut op, 7_074_000).await;
    assert!(op
        .pump_until(SECS, |c| freq(c) == Some(7_074_000))
        .await
        .unwrap());
    assert_eq!(sim.radio.lock().unwrap().vfo_a_hz, 7_074_000);

    // The TX watchdog unkeys the radio itself when the keyer goes silent.
    key_ptt(&mut op, true).await;
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
    sim.faults.unplug();
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

/// The frequencies of the `radio.state` events from `from` on, in order.
fn frequencies(c: &TestClient, from: usize) -> Vec<u64> {
    c.events()[from..]
        .iter()
        .filter(|e| e.kind == "radio.state")
        .filter_map(|e| e.payload["freq_hz"].as_u64())
        .collect()
}

/// A fast hand on the simulator's knob: `steps` steps of 10 Hz up from
/// `base`, in threes back to back, 200 µs apart, so reports land at every
/// point of the proxy's polls (inside its wait for an answer too). Blocking:
/// nothing else in the test runs meanwhile, the proxy and the simulator
/// have their own threads.
fn turn_knob(sim: &PtyRadio, base: u64, steps: u64) {
    for step in 1..=steps {
        sim.turn_vfo(base + step * 10);
        if step % 3 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// The radio reports its knob itself (auto information, which the proxy
/// turns on) while the proxy polls it (keyed: every 20 ms): whatever
/// interleaving of reports and poll answers the line sees, a dashboard
/// gets the frequencies in the knob's order, never an older one after a
/// newer one, and ends at the last. At shutdown the radio's AI setting is
/// put back.
#[tokio::test]
async fn reports_and_polls_never_give_a_dashboard_a_stale_or_reordered_frequency() {
    let mut station = station(
        "radio_poll_ms = 100
radio_poll_tx_ms = 20
tx_keepalive_ms = 60000
",
    )
    .await;
    let (sim, op) = (&station.sim, &mut station.op);
    let freq = |c: &TestClient| radio_state(c).and_then(|s| s["freq_hz"].as_u64());
    assert!(op
        .pump_until(SECS, |c| freq(c) == Some(14_074_000))
        .await
        .unwrap());
    assert_eq!(sim.radio.lock().unwrap().ai, 2, "the proxy turned AI on");
    const STEPS: u64 = 3_000;
    for (keyed, base) in [(false, 14_100_000), (true, 14_200_000)] {
        if keyed {
            key_ptt(op, true).await;
            assert!(op
                .pump_until(SECS, |c| radio_state(c).and_then(|s| s["ptt"].as_bool())
                    == Some(true))
                .await
                .unwrap());
        }
        let from = op.events().len();
        turn_knob(sim, base, STEPS);
        let last = base + STEPS * 10;
        assert!(
            op.pump_until(SECS, |c| freq(c) == Some(last))
                .await
                .unwrap(),
            "the last step reached the dashboard"
        );
        let seen = frequencies(op, from);
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "keyed {keyed}: a frequency went back: {seen:?}"
        );
        assert_eq!(seen.last(), Some(&last), "keyed {keyed}: {seen:?}");
        assert!(seen.len() > 1, "the steps came as they were made: {seen:?}");
    }
    assert!(
        !link_events(op)
            .iter()
            .any(|e| e == "EVENT_TX_DROP_DETECTED"),
        "reports while keyed are no TX drop: {:?}",
        link_events(op)
    );
    key_ptt(op, false).await;
    assert!(op
        .pump_until(SECS, |c| radio_state(c).and_then(|s| s["ptt"].as_bool())
            == Some(false))
        .await
        .unwrap());
    assert!(station.proxy.terminate(), "a clean exit");
    // The simulator's thread reads the proxy's last words on its own time.
    let deadline = std::time::Instant::now() + SECS;
    while station.sim.radio.lock().unwrap().ai != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the radio's AI setting was not put back at shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_tx_drop_mid_frame_is_detected_and_takes_the_fast_path() {
    // Bound whole: the proxy and the temp dir must live to the end.
    let mut station = station("radio_poll_ms = 50\n").await;
    let (sim, op) = (&station.sim, &mut station.op);
    let ptt = |c: &TestClient| radio_state(c).and_then(|s| s["ptt"].as_bool());
    key_ptt(op, true).await;
    assert!(op.pump_until(SECS, |c| ptt(c) == Some(true)).await.unwrap());
    // The transmitter trips: the radio falls back to RX and the answer on
    // the wire is cut in half.
    sim.drop_tx_mid_frame();
    assert!(op
        .pump_until(SECS, |c| link_events(c)
            .iter()
            .any(|e| e == "EVENT_RECONNECT_OK"))
        .await
        .unwrap());
    let events = events_of(op, "link.radio");
    let at = |name: &str| {
        events
            .iter()
            .position(|e| e["type"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {events:?}"))
    };
    let (drop, fast, ok) = (
        at("EVENT_TX_DROP_DETECTED"),
        at("EVENT_FAST_PATH_ACTIVE"),
        at("EVENT_RECONNECT_OK"),
    );
    assert!(drop < fast && fast < ok, "{events:?}");
    assert!(
        events[drop..ok]
            .iter()
            .all(|e| e["type"].as_str() != Some("EVENT_RECONNECT_FAILED")),
        "the first fast-path attempt succeeds: {events:?}"
    );
    let took = events[ok]["at_ms"].as_u64().unwrap() - events[drop]["at_ms"].as_u64().unwrap();
    assert!(
        took <= 500,
        "reconnected within the fast-path timeout, not {took} ms"
    );
    assert!(op
        .pump_until(SECS, |c| ptt(c) == Some(false))
        .await
        .unwrap());
    assert!(
        !sim.radio.lock().unwrap().tx,
        "the bridge never re-keys on its own"
    );
}

#[tokio::test]
async fn zero_power_on_the_air_warns_goes_critical_drops_tx_and_clears() {
    let mut station = station(
        "radio_poll_ms = 100\nmeter = \"lp100\"\nmeter_port = \"{meter}\"\nmeter_poll_ms = 100\ntx_keepalive_ms = 20000\n",
    )
    .await;
    let (sim, op) = (&station.sim, &mut station.op);
    let power = |c: &TestClient| events_of(c, "meter.power");
    assert!(
        op.pump_until(SECS, |c| !power(c).is_empty()).await.unwrap(),
        "readings flow"
    );
    key_ptt(op, true).await;
    assert!(
        op.pump_until(SECS, |c| power(c)
            .last()
            .and_then(|p| p["watts"].as_f64())
            .is_some_and(|w| w > 90.0))
            .await
            .unwrap(),
        "about 100 W on the air"
    );
    // The amplifier fails: keyed, but nothing comes out.
    sim.radio.lock().unwrap().pa_failed = true;
    assert!(op
        .pump_until(SECS, |c| link_events(c)
            .iter()
            .any(|e| e == "EVENT_RECONNECT_OK")
            && link_events(c).iter().any(|e| e == "EVENT_TX_DROP_DETECTED"))
        .await
        .unwrap());
    let meter: Vec<String> = events_of(op, "link.meter")
        .iter()
        .filter_map(|p| p["type"].as_str().map(str::to_string))
        .filter(|t| t.starts_with("EVENT_POWER"))
        .collect();
    assert_eq!(
        meter,
        ["EVENT_POWER_WARNING", "EVENT_POWER_CRITICAL"],
        "one zero warns, three are critical"
    );
    let drop = events_of(op, "link.radio")
        .into_iter()
        .find(|p| p["type"].as_str() == Some("EVENT_TX_DROP_DETECTED"))
        .unwrap();
    assert!(
        drop["context"]
            .as_str()
            .unwrap()
            .contains("power collapsed"),
        "{drop:?}"
    );
    // The zero readings in between were all published, in order.
    let levels: Vec<String> = power(op)
        .iter()
        .filter_map(|p| p["level"].as_str().map(str::to_string))
        .collect();
    assert!(levels.iter().any(|l| l == "critical"), "{levels:?}");

    // The fast path reconnected to a radio still transmitting (keyed, no
    // RF): nobody keys that connection, so it was unkeyed.
    assert!(
        op.pump_until(SECS, |_| !sim.radio.lock().unwrap().tx)
            .await
            .unwrap(),
        "unkeyed after the TX drop"
    );
    // Repaired, and keyed again (a held button's next repeat): a good
    // reading clears the alarm.
    sim.radio.lock().unwrap().pa_failed = false;
    key_ptt(op, true).await;
    assert!(op
        .pump_until(SECS, |c| power(c)
            .last()
            .is_some_and(|p| p["level"].as_str() == Some("normal")
                && p["watts"].as_f64().is_some_and(|w| w > 90.0)))
        .await
        .unwrap());
    let (_, stats) = station.proxy.get("/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["links"]["meter"]["state"], "connected", "{stats}");
    assert_eq!(stats["links"]["meter"]["backend"], "lp100");
    assert_eq!(stats["power"]["level"], "normal");
    assert!(
        stats["power"]["history"].as_array().unwrap().len() <= 10,
        "bounded history"
    );
    let (_, metrics) = station.proxy.get("/metrics");
    for line in [
        "link_health_score{link=\"meter\"}",
        "link_events_total{link=\"meter\",type=\"EVENT_POWER_CRITICAL\"} 1",
        "power_forward_watts",
    ] {
        assert!(metrics.contains(line), "{line} in /metrics:\n{metrics}");
    }
    key_ptt(op, false).await;
}

#[tokio::test]
async fn the_bridge_drives_a_real_rigctld_and_reconnects_on_request() {
    let rig = DummyRig::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hook_out = dir.path().join("hook.txt");
    let proxy = Proxy::start(&format!(
        "radio_backend = \"rigctld\"\nradio_port = \"{}\"\nradio_poll_ms = 100\n\
         meter = \"radio\"\nmeter_poll_ms = 200\ntx_keepalive_ms = 20000\n\
         [[hooks]]\non = [\"EVENT_RECONNECT_OK\"]\ncommand = \"echo \\\"$STATION_LINK $STATION_EVENT\\\" >> {}\"\n",
        rig.addr,
        hook_out.display()
    ));
    let mut op = TestClient::new("operator");
    op.connect(&proxy.ws_url()).await.unwrap();
    let field = |c: &TestClient, f: &str| radio_state(c).map(|s| s[f].clone());
    assert!(
        op.pump_until(SECS, |c| field(c, "freq_hz").is_some())
            .await
            .unwrap(),
        "no radio.state from rigctld"
    );

    set_freq(&mut op, 14_074_000).await;
    op.publish(
        "radio.set_mode",
        map(&[("mode", Payload::from("CW"))]),
        Delivery::Reliable,
        None,
    )
    .await
    .unwrap();
    assert!(op
        .pump_until(SECS, |c| field(c, "freq_hz").and_then(|f| f.as_u64())
            == Some(14_074_000)
            && field(c, "mode").as_ref().and_then(|m| m.as_str()) == Some("CW"))
        .await
        .unwrap());

    // PTT through Hamlib, and the radio's own meter read while on the air.
    key_ptt(&mut op, true).await;
    assert!(op
        .pump_until(SECS, |c| events_of(c, "meter.power").iter().any(|p| p
            ["transmitting"]
            .as_bool()
            == Some(true)
            && p["watts"].as_f64().is_some()))
        .await
        .unwrap());
    key_ptt(&mut op, false).await;
    assert!(op
        .pump_until(SECS, |c| field(c, "ptt").and_then(|p| p.as_bool())
            == Some(false))
        .await
        .unwrap());

    // The operator's forced reconnect, with a hook on its success.
    let before = link_events(&op).len();
    op.publish(
        "link.reconnect",
        map(&[("link", Payload::from("radio"))]),
        Delivery::Reliable,
        None,
    )
    .await
    .unwrap();
    assert!(op
        .pump_until(SECS, |c| link_events(c)[before..]
            .iter()
            .any(|e| e == "EVENT_RECONNECT_OK"))
        .await
        .unwrap());
    let deadline = std::time::Instant::now() + SECS;
    while !std::fs::read_to_string(&hook_out).is_ok_and(|s| s.contains("radio EVENT_RECONNECT_OK"))
    {
        assert!(std::time::Instant::now() < deadline, "the hook did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, stats) = proxy.get("/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["links"]["radio"]["backend"], "rigctld", "{stats}");
    assert_eq!(stats["power"]["source"], "radio");
}

#[tokio::test]
async fn after_max_retries_the_link_fails_and_recovers_when_the_radio_is_plugged_back_in() {
    let Station {
        _dir,
        link,
        sim,
        proxy,
        mut op,
        ..
    } = station("radio_poll_ms = 100\nlink_retries = 3\nlink_backoff_base_ms = 50\nlink_backoff_max_ms = 200\n")
        .await;
    let link_state = |c: &TestClient| {
        events_of(c, "link.radio")
            .last()
            .and_then(|p| p["state"].as_str().map(str::to_string))
    };
    // Unplugged: the line goes dead and udev removes the device's link.
    sim.faults.unplug();
    drop(sim);
    std::fs::remove_file(&link).unwrap();
    assert!(
        op.pump_until(SECS, |c| link_events(c)
            .iter()
            .any(|e| e == "EVENT_MAX_RETRIES_EXCEEDED"))
            .await
            .unwrap(),
        "gives up after 3 retries: {:?}",
        link_events(&op)
    );
    assert_eq!(link_state(&op).as_deref(), Some("failed"));
    let failures = link_events(&op)
        .iter()
        .filter(|e| *e == "EVENT_RECONNECT_FAILED")
        .count();
    assert!(failures >= 3, "{:?}", link_events(&op));
    // Failed is not healthy: /stats, the event and the metric say 0.
    let (_, stats) = proxy.get("/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["links"]["radio"]["state"], "failed", "{stats}");
    assert_eq!(stats["links"]["radio"]["health"], 0, "{stats}");
    let gave_up = events_of(&op, "link.radio")
        .into_iter()
        .find(|p| p["type"].as_str() == Some("EVENT_MAX_RETRIES_EXCEEDED"))
        .unwrap();
    assert_eq!(gave_up["health"].as_u64(), Some(0), "{gave_up}");
    let (_, metrics) = proxy.get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"link_health_score{link="radio"} 0"#),
        "{metrics}"
    );

    // The cable goes back in (the udev path comes back): it recovers by itself.
    let _sim = plug(&link);
    assert!(
        op.pump_until(SECS, |c| link_state(c).as_deref() == Some("connected"))
            .await
            .unwrap(),
        "{:?}",
        events_of(&op, "link.radio")
            .iter()
            .map(|p| format!("{} {}", p["type"], p["context"]))
            .collect::<Vec<_>>()
    );
    let (_, stats) = proxy.get("/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["links"]["radio"]["state"], "connected", "{stats}");
}

/// An unplugged radio: the link's last event (what `/stats` and the log
/// show the operator) names the missing device and where to look for it.
#[tokio::test]
async fn a_missing_serial_port_is_named_with_where_to_look() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ttyUSB-unplugged");
    let proxy = Proxy::start(&format!("radio_port = \"{}\"\n", path.display()));
    let deadline = std::time::Instant::now() + SECS;
    loop {
        let (_, stats) = proxy.get("/stats");
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
        let last = stats["links"]["radio"]["last_event"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if last.contains("EVENT_RECONNECT_FAILED") || last.contains("cannot open") {
            assert!(
                last.contains(&path.display().to_string()) && last.contains("/dev/serial/by-id/"),
                "{last}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed open reported: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
