//! The browser client's behaviour, driven with a fake clock and a scripted
//! proxy: no browser, no sockets, milliseconds per test.

use proptest::prelude::*;
use shared_protocol::backoff::BackoffConfig;
use shared_protocol::client::*;
use shared_protocol::frame::*;
use shared_protocol::receiver::Delivered;

struct Harness {
    session: ClientSession,
    now: u64,
    socket: Option<u32>,
    sent: Vec<ClientFrame>,
    delivered: Vec<Delivered>,
    notices: Vec<Notice>,
    persisted_outbox: Vec<Publish>,
    opened: Vec<u32>,
    closed: Vec<u32>,
}

impl Harness {
    fn new(config: ClientConfig, restored: Persisted) -> Self {
        Self::with_seed(config, restored, 7)
    }

    fn with_seed(config: ClientConfig, restored: Persisted, seed: u64) -> Self {
        Harness {
            session: ClientSession::new(config, restored, 0, 1_700_000_000_000, seed),
            now: 0,
            socket: None,
            sent: Vec::new(),
            delivered: Vec::new(),
            notices: Vec::new(),
            persisted_outbox: Vec::new(),
            opened: Vec::new(),
            closed: Vec::new(),
        }
    }

    fn fresh() -> Self {
        Self::new(
            ClientConfig::default(),
            Persisted {
                client_id: "dash".into(),
                ..Default::default()
            },
        )
    }

    fn drain(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::OpenSocket { socket } => {
                    self.opened.push(socket);
                    self.socket = Some(socket);
                }
                Output::CloseSocket { socket, .. } => {
                    self.closed.push(socket);
                    if self.socket == Some(socket) {
                        self.socket = None;
                    }
                }
                Output::Transmit { bytes, .. } => {
                    self.sent
                        .push(ClientFrame::decode(&bytes, usize::MAX).unwrap());
                }
                Output::Deliver(d) => self.delivered.push(d),
                Output::PersistOutbox { outbox, .. } => self.persisted_outbox = outbox,
                Output::PersistCursor { .. } => {}
                Output::Notify(n) => self.notices.push(n),
            }
        }
    }

    fn input(&mut self, input: Input) {
        self.session.handle_input(input, self.now);
        self.drain();
    }

    fn advance_to(&mut self, t: u64) {
        while let Some(at) = self.session.poll_timeout() {
            if at > t {
                break;
            }
            self.now = at.max(self.now);
            self.session.handle_timeout(self.now);
            self.drain();
        }
        self.now = t;
    }

    fn server(&mut self, frame: ServerFrame) {
        let socket = self.socket.expect("a socket");
        self.input(Input::Received {
            socket,
            bytes: frame.encode().unwrap(),
        });
    }

    fn open_and_welcome(&mut self, epoch: u64, head: u64) {
        let socket = self.socket.expect("asked to open");
        self.input(Input::SocketOpened { socket });
        self.server(welcome(epoch, head));
    }

    fn states(&self) -> Vec<LinkState> {
        self.notices
            .iter()
            .filter_map(|n| match n {
                Notice::State { state, .. } => Some(*state),
                _ => None,
            })
            .collect()
    }
}

fn welcome(epoch: u64, head: u64) -> ServerFrame {
    ServerFrame::Welcome(Welcome {
        session: "s".into(),
        epoch,
        head_seq: head,
        resumed: true,
        heartbeat_ms: 30_000,
        limits: Limits {
            max_frame_bytes: 65_536,
            max_publish_per_sec: 50,
            max_behind: 1_000,
            retention_ms: 300_000,
            publish_window: None,
        },
        access: Some(Access::Control),
    })
}

fn event(seq: u64) -> ServerFrame {
    ServerFrame::Event(Event {
        seq,
        kind: "note".into(),
        ts_ms: 0,
        payload: Payload::from(seq),
    })
}

#[test]
fn connects_says_hello_and_welcomes() {
    let mut h = Harness::fresh();
    h.input(Input::Connect);
    assert_eq!(h.opened, [1]);
    h.open_and_welcome(9, 0);
    assert!(
        matches!(&h.sent[0], ClientFrame::Hello(Hello { client_id, resume: None, .. }) if client_id == "dash")
    );
    assert_eq!(h.states(), [LinkState::Connecting, LinkState::Connected]);
    assert_eq!(h.session.state(), LinkState::Connected);
}

#[test]
fn delivers_in_order_and_acks_in_batches() {
    let mut h = Harness::fresh();
    h.input(Input::Connect);
    h.open_and_welcome(9, 0);
    for seq in [2, 1, 1, 3] {
        h.server(event(seq));
    }
    let seqs: Vec<u64> = h
        .delivered
        .iter()
        .filter_map(|d| {
            if let Delivered::Event(e) = d {
                Some(e.seq)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert!(
        !h.sent.iter().any(|f| matches!(f, ClientFrame::Ack { .. })),
        "acks wait for a batch"
    );
    h.advance_to(100);
    assert!(
        h.sent
            .iter()
            .any(|f| matches!(f, ClientFrame::Ack { upto: 3 })),
        "or 100 ms"
    );
    for seq in 4..=40 {
        h.server(event(seq));
    }
    assert!(
        h.sent
            .iter()
            .any(|f| matches!(f, ClientFrame::Ack { upto: 35 })),
        "or 32 events"
    );
}

#[test]
fn reconnects_with_backoff_and_resumes_where_it_stopped() {
    let mut h = Harness::fresh();
    h.input(Input::Connect);
    h.open_and_welcome(9, 0);
    h.server(event(1));
    let old = h.socket.unwrap();
    h.input(Input::SocketClosed {
        socket: old,
        code: 1006,
        reason: String::new(),
    });
    assert_eq!(h.session.state(), LinkState::Reconnecting);
    let retry_at = h.session.poll_timeout().unwrap();
    let (lo, hi) = BackoffConfig::DASHBOARD.band_ms(1);
    assert!(
        (lo..=hi).contains(&retry_at),
        "first retry within the jitter band: {retry_at}"
    );
    h.advance_to(retry_at);
    assert_eq!(h.opened.len(), 2);
    // A late event from the old socket is ignored.
    h.input(Input::Received {
        socket: old,
        bytes: event(2).encode().unwrap(),
    });
    assert_eq!(h.delivered.len(), 1);
    h.sent.clear();
    h.open_and_welcome(9, 1);
    assert!(matches!(
        &h.sent[0],
        ClientFrame::Hello(Hello {
            resume: Some(Resume {
                epoch: 9,
                last_seq: 1
            }),
            ..
        })
    ));
    assert!(h
        .notices
        .iter()
        .any(|n| matches!(n, Notice::Reconnected { attempts: 1, .. })));
}

#[test]
fn announces_max_attempts_once_then_keeps_probing_slowly() {
    let mut config = ClientConfig::default();
    config.backoff.max_attempts = Some(3);
    let mut h = Harness::new(
        config,
        Persisted {
            client_id: "dash".into(),
            ..Default::default()
        },
    );
    h.input(Input::Connect);
    for _ in 0..4 {
        let socket = h.socket.unwrap();
        h.input(Input::SocketClosed {
            socket,
            code: 1006,
            reason: String::new(),
        });
        if h.session.state() == LinkState::Failed {
            break;
        }
        if let Some(at) = h.session.poll_timeout() {
            h.advance_to(at);
        }
    }
    assert_eq!(h.session.state(), LinkState::Failed);
    assert!(h
        .notices
        .iter()
        .any(|n| matches!(n, Notice::MaxAttemptsReached { attempts: 3 })));
    // It keeps probing at the maximum delay, without announcing it again.
    let probe = h.session.poll_timeout().expect("a probe is planned");
    let max = BackoffConfig::DASHBOARD.max_ms;
    assert!(
        probe >= h.now + max * 7 / 10,
        "slow probe: in {} ms",
        probe - h.now
    );
    for _ in 0..3 {
        let at = h.session.poll_timeout().expect("still probing");
        h.advance_to(at);
        let socket = h.socket.expect("the probe opened a socket");
        h.input(Input::SocketClosed {
            socket,
            code: 1006,
            reason: String::new(),
        });
        assert_eq!(h.session.state(), LinkState::Failed);
    }
    let announced = h
        .notices
        .iter()
        .filter(|n| matches!(n, Notice::MaxAttemptsReached { .. }))
        .count();
    assert_eq!(announced, 1, "the limit is announced once");
    // A probe that gets through is an ordinary reconnect.
    let at = h.session.poll_timeout().expect("still probing");
    h.advance_to(at);
    h.open_and_welcome(1, 0);
    assert_eq!(h.session.state(), LinkState::Connected);
    h.input(Input::ForceReconnect);
    assert_eq!(
        h.session.state(),
        LinkState::Reconnecting,
        "the user can try again at once"
    );
}

#[test]
fn offline_pauses_and_online_retries_at_once() {
    let mut h = Harness::fresh();
    h.input(Input::Connect);
    h.open_and_welcome(9, 0);
    h.input(Input::NetworkDown);
    let socket = h.socket.unwrap();
    h.input(Input::SocketClosed {
        socket,
        code: 1006,
        reason: String::new(),
    });
    assert_eq!(h.session.state(), LinkState::Disconnected);
    assert_eq!(h.session.poll_timeout(), None, "no attempts while offline");
    let opened = h.opened.len();
    h.now = 60_000;
    h.input(Input::NetworkUp);
    assert_eq!(h.opened.len(), opened + 1, "online: an immediate attempt");
}

#[test]
fn reliable_publishes_survive_until_accepted_and_ptt_never_waits() {
    let mut h = Harness::fresh();
    h.input(Input::Publish {
        kind: "note".into(),
        payload: Payload::from(1),
        delivery: Delivery::Reliable,
        ttl_ms: None,
    });
    h.input(Input::Publish {
        kind: "meter".into(),
        payload: Payload::from(2),
        delivery: Delivery::Volatile,
        ttl_ms: None,
    });
    h.input(Input::Publish {
        kind: "radio.ptt".into(),
        payload: Payload::from(true),
        delivery: Delivery::Reliable,
        ttl_ms: Some(2_000),
    });
    assert_eq!(
        h.persisted_outbox.len(),
        1,
        "only the reliable note is stored"
    );
    let not_sent = h
        .notices
        .iter()
        .filter(|n| matches!(n, Notice::NotSent { .. }))
        .count();
    assert_eq!(
        not_sent, 2,
        "volatile and PTT offline are reported, not queued"
    );

    // A reload restores the outbox; the flush happens after Welcome.
    let restored = h.session.persisted();
    let mut h = Harness::new(ClientConfig::default(), restored);
    h.input(Input::Connect);
    h.open_and_welcome(9, 0);
    let published: Vec<u64> = h
        .sent
        .iter()
        .filter_map(|f| {
            if let ClientFrame::Publish(p) = f {
                Some(p.client_seq)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(published, [1]);
    h.input(Input::Publish {
        kind: "note".into(),
        payload: Payload::from(3),
        delivery: Delivery::Reliable,
        ttl_ms: None,
    });
    let last = h.sent.last().unwrap().clone();
    assert!(
        matches!(last, ClientFrame::Publish(Publish { client_seq: 4, .. })),
        "numbering continues after the reload"
    );
    h.server(ServerFrame::Accepted { upto: 4 });
    assert!(h.persisted_outbox.is_empty());
}

#[test]
fn ptt_carries_a_wall_clock_deadline() {
    let mut h = Harness::fresh();
    h.input(Input::Connect);
    h.open_and_welcome(9, 0);
    h.now = 5_000;
    h.input(Input::Publish {
        kind: "radio.ptt".into(),
        payload: Payload::from(true),
        delivery: Delivery::Volatile,
        ttl_ms: Some(2_000),
    });
    let Some(ClientFrame::Publish(p)) = h.sent.last() else {
        panic!("not sent")
    };
    assert_eq!(p.expires_at_ms, Some(1_700_000_000_000 + 5_000 + 2_000));
}

/// A held PTT (volatile, repeated every second) on a perfect link keeps
/// the quality's ack rate at 1: no outbox entry waits for its `Accepted`.
#[test]
fn volatile_publishes_do_not_sink_the_ack_rate() {
    let mut h = Harness::fresh();
    h.input(Input::Connect);
    h.open_and_welcome(9, 0);
    for _ in 0..5 {
        h.input(Input::Publish {
            kind: "radio.ptt".into(),
            payload: Payload::from(true),
            delivery: Delivery::Volatile,
            ttl_ms: Some(2_000),
        });
    }
    let upto = match h.sent.last() {
        Some(ClientFrame::Publish(p)) => p.client_seq,
        other => panic!("not sent: {other:?}"),
    };
    h.server(ServerFrame::Accepted { upto });
    let m = h.session.metrics(h.now);
    assert_eq!(m.quality_ack_rate, 1.0, "{m:?}");
}

#[test]
fn missing_pongs_make_the_link_stale_and_reconnect() {
    let mut h = Harness::fresh();
    h.input(Input::Connect);
    h.open_and_welcome(9, 0);
    h.advance_to(10_000);
    assert!(
        h.sent.iter().any(|f| matches!(f, ClientFrame::Ping(_))),
        "latency ping every 10 s"
    );
    h.advance_to(25_000);
    assert!(h.states().contains(&LinkState::Stale), "{:?}", h.states());
    assert_eq!(h.session.state(), LinkState::Reconnecting);
}

#[test]
fn pongs_measure_latency_and_never_reach_the_application() {
    let mut h = Harness::fresh();
    h.input(Input::Connect);
    h.open_and_welcome(9, 0);
    h.advance_to(10_000);
    let Some(ClientFrame::Ping(ping)) = h
        .sent
        .iter()
        .rev()
        .find(|f| matches!(f, ClientFrame::Ping(_)))
        .cloned()
    else {
        panic!()
    };
    h.now = 10_040;
    h.server(ServerFrame::Pong(ping));
    assert!(h
        .notices
        .iter()
        .any(|n| matches!(n, Notice::Latency { rtt_ms: 40, .. })));
    assert!(h.delivered.is_empty());
}

#[test]
fn replaced_and_unauthorized_stop_reconnecting() {
    let mut h = Harness::fresh();
    h.input(Input::Connect);
    h.open_and_welcome(9, 0);
    h.server(ServerFrame::Error(ErrorFrame {
        code: ErrorCode::Unauthorized,
        message: "bad token".into(),
    }));
    let socket = h.socket.unwrap();
    h.input(Input::SocketClosed {
        socket,
        code: 1008,
        reason: String::new(),
    });
    assert_eq!(h.session.state(), LinkState::Failed);
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn a_drain_replaces_the_backoff_with_the_proxys_spread() {
    // Many clients with different seeds: each waits retry_after plus its own
    // share of the jitter, so together they spread over the whole window.
    let mut delays = Vec::new();
    for seed in 0..200 {
        let restored = Persisted {
            client_id: format!("dash-{seed}"),
            ..Default::default()
        };
        let mut h = Harness::with_seed(ClientConfig::default(), restored, seed);
        h.input(Input::Connect);
        h.open_and_welcome(9, 0);
        h.server(ServerFrame::Drain(Drain {
            retry_after_ms: 1_000,
            jitter_ms: 4_000,
            reason: DrainReason::Shutdown,
        }));
        let socket = h.socket.unwrap();
        h.input(Input::SocketClosed {
            socket,
            code: 1012,
            reason: String::new(),
        });
        assert_eq!(h.session.state(), LinkState::Reconnecting);
        let at = h.session.poll_timeout().expect("a retry is planned");
        assert!((1_000..=5_000).contains(&at), "retry at {at}");
        h.advance_to(at);
        assert_eq!(h.opened.len(), 2, "reconnects at the chosen time");
        h.open_and_welcome(9, 0);
        assert_eq!(
            h.session.metrics(at).attempt,
            0,
            "a drain uses no backoff attempt"
        );
        delays.push(at);
    }
    delays.sort_unstable();
    let (low, high) = (delays[20], delays[180]);
    assert!(
        low < 1_800 && high > 4_200,
        "spread over the window: 10th {low}, 90th {high}"
    );
}

#[test]
fn simulate_disconnect_stays_away_then_returns() {
    let mut h = Harness::fresh();
    h.input(Input::Connect);
    h.open_and_welcome(9, 0);
    h.input(Input::SimulateDisconnect { ms: 3_000 });
    assert_eq!(h.socket, None);
    h.advance_to(2_999);
    assert_eq!(h.opened.len(), 1);
    h.advance_to(3_000);
    assert_eq!(h.opened.len(), 2);
}

#[derive(Debug, Clone)]
enum Step {
    Input(u8),
    Advance(u64),
    Opened,
    Closed,
    Welcome,
}

proptest! {
    /// Whatever the user, the browser and the network do, the session never
    /// has two sockets open, and it always knows when to wake up next unless
    /// it is idle on purpose.
    #[test]
    fn never_two_sockets(steps in proptest::collection::vec(prop_oneof![
        (0u8..9).prop_map(Step::Input),
        (1u64..40_000).prop_map(Step::Advance),
        Just(Step::Opened),
        Just(Step::Closed),
        Just(Step::Welcome),
    ], 1..80)) {
        let mut h = Harness::fresh();
        let mut live: Vec<u32> = Vec::new();
        for step in steps {
            match step {
                Step::Input(n) => h.input(match n {
                    0 => Input::Connect,
                    1 => Input::Close,
                    2 => Input::NetworkUp,
                    3 => Input::NetworkDown,
                    4 => Input::Visible,
                    5 => Input::ForceReconnect,
                    6 => Input::SimulateDisconnect { ms: 1_000 },
                    7 => Input::LatencyTest,
                    _ => Input::Publish { kind: "note".into(), payload: Payload::Nil, delivery: Delivery::Reliable, ttl_ms: None },
                }),
                Step::Advance(d) => { let t = h.now + d; h.advance_to(t) }
                Step::Opened => if let Some(s) = h.socket { h.input(Input::SocketOpened { socket: s }) },
                Step::Closed => if let Some(s) = h.socket { h.input(Input::SocketClosed { socket: s, code: 1006, reason: String::new() }) },
                Step::Welcome => if h.socket.is_some() { h.server(welcome(1, 0)) },
            }
            // Track sockets the shell would hold open.
            for s in h.opened.drain(..) { live.push(s); }
            for s in h.closed.drain(..) { live.retain(|x| *x != s); }
            if let Some(s) = h.socket { live.retain(|x| *x == s); } else { live.clear(); }
            prop_assert!(live.len() <= 1, "two sockets: {:?}", live);
            let state = h.session.state();
            if matches!(state, LinkState::Reconnecting | LinkState::Connecting | LinkState::Connected | LinkState::Stale) {
                prop_assert!(h.session.poll_timeout().is_some(), "{:?} with no timer", state);
            }
        }
    }
}
