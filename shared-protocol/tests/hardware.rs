//! The hardware link manager and the power monitor, with a fake clock.

use proptest::prelude::*;
use shared_protocol::link::*;
use shared_protocol::power::*;

struct Shell {
    link: LinkManager,
    now: u64,
    opens: Vec<(u64, u32, u64)>,
    closes: usize,
    events: Vec<LinkEvent>,
    port_open: bool,
    double_open: bool,
}

impl Shell {
    fn new(seed: u64) -> Self {
        Shell {
            link: LinkManager::new(LinkConfig::default(), seed),
            now: 0,
            opens: vec![],
            closes: 0,
            events: vec![],
            port_open: false,
            double_open: false,
        }
    }
    fn drain(&mut self) {
        while let Some(o) = self.link.poll_output() {
            match o {
                LinkOutput::Open {
                    attempt,
                    timeout_ms,
                } => {
                    self.double_open |= self.port_open;
                    self.port_open = true;
                    self.opens.push((self.now, attempt, timeout_ms));
                }
                LinkOutput::Close => {
                    self.port_open = false;
                    self.closes += 1;
                }
                LinkOutput::Event(e) => self.events.push(e),
            }
        }
    }
    fn advance_to(&mut self, t: u64) {
        while let Some(at) = self.link.poll_timeout() {
            if at > t {
                break;
            }
            self.now = at.max(self.now);
            self.link.handle_timeout(self.now);
            self.drain();
        }
        self.now = t;
    }
    fn kinds(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.kind.as_str()).collect()
    }
}

#[test]
fn warm_start_and_unplug_reconnect_with_hardware_backoff() {
    let mut s = Shell::new(1);
    s.link.start(0);
    s.drain();
    assert_eq!(s.opens, [(0, 1, 3_000)], "connect timeout 3 s");
    assert_eq!(s.link.state(), LinkState::Connecting);
    s.now = 50;
    s.link.opened(50);
    s.drain();
    assert_eq!(s.link.state(), LinkState::Connected);
    s.now = 1_000;
    s.link.lost(1_000, "EIO: unplugged");
    s.drain();
    assert_eq!(s.link.state(), LinkState::Reconnecting);
    let retry_at = s.link.poll_timeout().unwrap();
    assert!(
        (1_090..=1_110).contains(&retry_at),
        "first retry 100 ms +-10 %: {retry_at}"
    );
    s.advance_to(retry_at);
    s.link.opened(s.now);
    s.drain();
    assert!(s.kinds().contains(&"EVENT_RECONNECT_START"));
    assert!(s.kinds().contains(&"EVENT_RECONNECT_OK"));
    assert_eq!(s.link.reconnects(), 1);
}

#[test]
fn ten_failures_give_failed_and_max_retries_then_start_recovers() {
    let mut s = Shell::new(2);
    s.link.start(0);
    s.drain();
    s.link.opened(0);
    s.link.lost(0, "unplugged");
    s.drain();
    let mut delays = Vec::new();
    for _ in 0..20 {
        let Some(at) = s.link.poll_timeout() else {
            break;
        };
        delays.push(at - s.now);
        s.advance_to(at);
        if s.link.state() == LinkState::Reconnecting {
            s.now += 1;
            s.link.failed(s.now, "ENOENT");
            s.drain();
        }
    }
    assert_eq!(s.link.state(), LinkState::Failed);
    assert!(s.kinds().contains(&"EVENT_MAX_RETRIES_EXCEEDED"));
    assert_eq!(
        s.link.health_score(),
        0,
        "a failed link is not healthy, whatever its last checks said"
    );
    let retries = s
        .events
        .iter()
        .filter(|e| e.kind == LinkEventType::ReconnectStart)
        .count();
    assert_eq!(retries, 10, "10 retries");
    assert!(
        delays.iter().all(|d| *d <= 10_000),
        "never above 10 s: {delays:?}"
    );
    s.link.start(s.now);
    s.drain();
    s.link.opened(s.now);
    assert_eq!(
        s.link.state(),
        LinkState::Connected,
        "plugging back in recovers"
    );
}

#[test]
fn tx_drop_takes_the_fast_path() {
    let mut s = Shell::new(3);
    s.link.start(0);
    s.drain();
    s.link.opened(0);
    s.now = 5_000;
    s.link.tx_drop(5_000, "PTT on, power 0.0 W");
    s.drain();
    let kinds = s.kinds();
    let drop = kinds
        .iter()
        .position(|k| *k == "EVENT_TX_DROP_DETECTED")
        .unwrap();
    let fast = kinds
        .iter()
        .position(|k| *k == "EVENT_FAST_PATH_ACTIVE")
        .unwrap();
    assert!(drop < fast);
    assert_eq!(
        s.opens.last(),
        Some(&(5_000, 1, 500)),
        "reconnect at once, 0.5 s timeout, no backoff"
    );
    assert_eq!(s.link.poll_timeout(), Some(5_500));
    s.advance_to(5_500);
    assert_eq!(
        s.link.state(),
        LinkState::Reconnecting,
        "a fast path that times out falls back to backoff"
    );
}

#[test]
fn silence_degrades_health_and_stability_is_reported() {
    let mut s = Shell::new(4);
    s.link.start(0);
    s.drain();
    s.link.opened(0);
    s.advance_to(30_000);
    assert!(s.kinds().contains(&"EVENT_CONNECTION_STABLE"));
    let healthy = s.link.health_score();
    s.advance_to(200_000);
    assert!(
        s.link.health_score() < healthy,
        "no data for minutes must cost health"
    );
    assert!(s.link.degraded());
}

#[test]
fn adaptive_backoff_learns_from_hard_outages() {
    let mut s = Shell::new(5);
    s.link.start(0);
    s.drain();
    s.link.opened(0);
    assert_eq!(s.link.backoff_base_ms(), 100);
    s.link.lost(0, "x");
    for _ in 0..5 {
        let at = s.link.poll_timeout().unwrap();
        s.advance_to(at);
        s.link.failed(s.now, "x");
        s.drain();
    }
    let at = s.link.poll_timeout().unwrap();
    s.advance_to(at);
    s.link.opened(s.now);
    assert_eq!(
        s.link.backoff_base_ms(),
        200,
        "a hard outage doubles the base"
    );
    s.link.lost(s.now, "x");
    let at = s.link.poll_timeout().unwrap();
    s.advance_to(at);
    s.link.opened(s.now);
    assert_eq!(
        s.link.backoff_base_ms(),
        100,
        "a quick recovery brings it back"
    );
}

proptest! {
    /// For any sequence of device behaviour, the port is never opened while
    /// open, the link always knows its next wake-up unless idle on purpose,
    /// never waits past the longest delay, and events carry the current state.
    #[test]
    fn link_invariants(seed in any::<u64>(), steps in proptest::collection::vec((0u8..7, 1u64..20_000), 1..150)) {
        let mut s = Shell::new(seed);
        for (action, dt) in steps {
            match action {
                0 => s.link.start(s.now),
                1 => s.link.opened(s.now),
                2 => s.link.failed(s.now, "x"),
                3 => s.link.lost(s.now, "x"),
                4 => s.link.tx_drop(s.now, "x"),
                5 => s.link.force_reconnect(s.now),
                _ => { let t = s.now + dt; s.advance_to(t) }
            }
            s.drain();
            prop_assert!(!s.double_open, "Open while the port was open");
            match s.link.state() {
                LinkState::Disconnected | LinkState::Failed => prop_assert!(!s.port_open || s.link.poll_timeout().is_none()),
                LinkState::Connecting | LinkState::Reconnecting | LinkState::TxDropped | LinkState::Connected => {
                    prop_assert!(s.link.poll_timeout().is_some(), "{:?} with no timer", s.link.state());
                }
            }
            if let Some(at) = s.link.poll_timeout() {
                prop_assert!(at <= s.now + 30_000, "waits until {at} at {}", s.now);
            }
            if let Some(e) = s.events.last() {
                prop_assert_eq!(e.state, s.link.state());
            }
            prop_assert!(s.link.health_score() <= 100);
        }
    }

    #[test]
    fn power_alarms_follow_the_zero_count(readings in proptest::collection::vec((0.0f64..2.0, any::<bool>()), 1..100)) {
        let mut m = PowerMonitor::new(PowerConfig::default());
        let mut zeros = 0u32;
        for (i, (w, tx)) in readings.into_iter().enumerate() {
            let watts = if w < 0.5 { 0.0 } else { w * 50.0 };
            zeros = if tx && watts < 0.1 { zeros + 1 } else { 0 };
            m.reading(Reading { at: i as u64 * 1_000, watts, transmitting: tx });
            let expected = if zeros >= 3 { PowerLevel::Critical } else if zeros >= 1 { PowerLevel::Warning } else { PowerLevel::Normal };
            prop_assert_eq!(m.level(), expected);
            prop_assert!(m.history().count() <= 10);
        }
    }
}

#[test]
fn power_warns_goes_critical_and_clears() {
    let mut m = PowerMonitor::new(PowerConfig::default());
    let r = |at, watts| Reading {
        at,
        watts,
        transmitting: true,
    };
    assert_eq!(m.reading(r(0, 100.0)), None);
    assert_eq!(
        m.reading(r(1_000, 0.0)).map(|a| a.to),
        Some(PowerLevel::Warning)
    );
    assert_eq!(m.reading(r(2_000, 0.05)), None);
    let critical = m.reading(r(3_000, 0.0)).unwrap();
    assert_eq!(
        (critical.to, critical.zero_readings),
        (PowerLevel::Critical, 3)
    );
    assert_eq!(
        PowerLevel::Critical.event_name(),
        Some("EVENT_POWER_CRITICAL")
    );
    assert_eq!(
        m.reading(r(4_000, 90.0)).map(|a| a.to),
        Some(PowerLevel::Normal),
        "a good reading clears"
    );
    // Zero while receiving is normal.
    assert_eq!(
        m.reading(Reading {
            at: 5_000,
            watts: 0.0,
            transmitting: false
        }),
        None
    );
}

#[test]
fn falling_power_predicts_the_drop() {
    let mut m = PowerMonitor::new(PowerConfig::default());
    for (i, w) in [100.0, 90.0, 80.0, 70.0].iter().enumerate() {
        m.reading(Reading {
            at: i as u64 * 1_000,
            watts: *w,
            transmitting: true,
        });
    }
    let slope = m.trend_w_per_s().unwrap();
    assert!((slope + 10.0).abs() < 1e-9, "{slope}");
    let eta = m.seconds_to_zero().unwrap();
    assert!((eta - 6.99).abs() < 0.01, "{eta}");
}

proptest! {
    /// Whatever noise comes first, split however the line delivers it, a
    /// whole LP-100A reply that follows is read exactly, and nothing the
    /// noise produced parses as a reading it was not.
    #[test]
    fn lp100_replies_survive_any_noise(
        noise in proptest::collection::vec(any::<u8>(), 0..200),
        watts in 0.0f64..2_000.0,
        swr in 1.0f64..9.0,
        chunk in 1usize..50,
    ) {
        use shared_protocol::meter::*;
        let reply = format_lp100(watts, swr);
        let mut stream = noise;
        stream.extend_from_slice(reply.as_bytes());
        let mut framer = Lp100Framer::default();
        let mut replies = Vec::new();
        for part in stream.chunks(chunk) {
            replies.extend(framer.push(part));
        }
        let good: Vec<MeterReading> = replies.iter().filter_map(|r| parse_lp100(r).ok()).collect();
        let expected = parse_lp100(reply.as_bytes()).unwrap();
        prop_assert_eq!(good.last(), Some(&expected), "the real reply is the last good one");
        prop_assert!((expected.watts - watts).abs() < 0.006);
    }

    /// Kenwood CAT: noise before a command never hides the command after it
    /// (the framer resynchronises on `;`), for any chunking.
    #[test]
    fn cat_frames_survive_any_noise(
        noise in proptest::collection::vec(any::<u8>(), 0..200),
        hz in 0u64..99_999_999_999,
        chunk in 1usize..50,
    ) {
        use shared_protocol::cat::Framer;
        let answer = format!("FA{hz:011};");
        let mut stream = noise;
        stream.push(b';'); // whatever the noise left half-open ends here
        stream.extend_from_slice(answer.as_bytes());
        let mut framer = Framer::default();
        let mut frames = Vec::new();
        for part in stream.chunks(chunk) {
            frames.extend(framer.push(part));
        }
        prop_assert_eq!(frames.last().map(String::as_str), Some(&answer[..answer.len() - 1]));
    }
}
