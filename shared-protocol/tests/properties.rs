//! Property tests: every frame round-trips, the decoder never panics, and
//! every policy keeps its promises for any input sequence.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use shared_protocol::backoff::{Backoff, BackoffConfig, Retry};
use shared_protocol::frame::*;
use shared_protocol::health::{Band, Check, HealthConfig, HealthTracker};
use shared_protocol::heartbeat::{Heartbeat, HeartbeatAction, HeartbeatConfig};
use shared_protocol::outbox::{Outbox, Queued};
use shared_protocol::quality::{QualityConfig, QualityTracker};
use shared_protocol::receiver::{Delivered, Receiver};

// ------------------------------------------------------------------ strategies

fn payload() -> impl Strategy<Value = Payload> {
    let leaf = prop_oneof![
        Just(Payload::Nil),
        any::<bool>().prop_map(Payload::from),
        any::<i64>().prop_map(Payload::from),
        any::<u64>().prop_map(Payload::from),
        any::<f64>()
            .prop_filter("NaN never equals itself", |f| !f.is_nan())
            .prop_map(Payload::from),
        any::<f32>()
            .prop_filter("NaN never equals itself", |f| !f.is_nan())
            .prop_map(Payload::F32),
        ".{0,12}".prop_map(Payload::from),
        vec(any::<u8>(), 0..12).prop_map(Payload::Binary),
        (any::<i8>(), vec(any::<u8>(), 0..20)).prop_map(|(ty, data)| Payload::Ext(ty, data)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Payload::Array),
            vec(("[a-z]{1,6}".prop_map(Payload::from), inner), 0..6).prop_map(Payload::Map),
        ]
    })
}

fn delivery() -> impl Strategy<Value = Delivery> {
    prop_oneof![Just(Delivery::Reliable), Just(Delivery::Volatile)]
}

fn ping() -> impl Strategy<Value = Ping> {
    (any::<u32>(), any::<u64>()).prop_map(|(nonce, t)| Ping { nonce, t })
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        (
            ".{0,40}",
            proptest::option::of(".{0,40}"),
            proptest::option::of((any::<u64>(), any::<u64>())),
            proptest::option::of(any::<u64>()),
            any::<bool>(),
        )
            .prop_map(
                |(client_id, token, resume, t, batch)| ClientFrame::Hello(Hello {
                    client_id,
                    token,
                    resume: resume.map(|(epoch, last_seq)| Resume { epoch, last_seq }),
                    t,
                    batch,
                })
            ),
        (
            any::<u64>(),
            "[a-z.]{1,20}",
            payload(),
            delivery(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(
                |(client_seq, kind, payload, delivery, expires_at_ms, ttl_ms)| {
                    ClientFrame::Publish(Publish {
                        client_seq,
                        kind,
                        payload,
                        delivery,
                        expires_at_ms,
                        ttl_ms,
                    })
                }
            ),
        any::<u64>().prop_map(|upto| ClientFrame::Ack { upto }),
        ping().prop_map(ClientFrame::Ping),
        ping().prop_map(ClientFrame::Pong),
    ]
}

fn gap_reason() -> impl Strategy<Value = GapReason> {
    prop_oneof![
        Just(GapReason::Retention),
        Just(GapReason::EpochChanged),
        Just(GapReason::TooFarBehind),
        Just(GapReason::Coalesced)
    ]
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        (
            ".{0,20}",
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            any::<u32>(),
            any::<(u32, u32, u32, u64, Option<u32>)>(),
            prop_oneof![
                Just(None),
                Just(Some(Access::Read)),
                Just(Some(Access::Control))
            ]
        )
            .prop_map(
                |(session, epoch, head_seq, resumed, heartbeat_ms, l, access)| {
                    ServerFrame::Welcome(Welcome {
                        session,
                        epoch,
                        head_seq,
                        resumed,
                        heartbeat_ms,
                        limits: Limits {
                            max_frame_bytes: l.0,
                            max_publish_per_sec: l.1,
                            max_behind: l.2,
                            retention_ms: l.3,
                            publish_window: l.4,
                        },
                        access,
                    })
                }
            ),
        (any::<u64>(), "[a-z.]{1,20}", any::<u64>(), payload()).prop_map(
            |(seq, kind, ts_ms, payload)| ServerFrame::Event(Event {
                seq,
                kind,
                ts_ms,
                payload
            })
        ),
        (any::<u64>(), btree_map("[a-z.]{1,10}", payload(), 0..5)).prop_map(|(upto, state)| {
            ServerFrame::Snapshot(Snapshot {
                upto,
                state: state.into_iter().collect(),
            })
        }),
        (any::<u64>(), any::<u64>(), gap_reason())
            .prop_map(|(from, to, reason)| ServerFrame::Gap(Gap { from, to, reason })),
        any::<u64>().prop_map(|upto| ServerFrame::Accepted { upto }),
        (
            any::<u64>(),
            prop_oneof![
                Just(RejectReason::Expired),
                Just(RejectReason::Forbidden),
                Just(RejectReason::RateLimited),
                Just(RejectReason::Invalid),
                Just(RejectReason::Unavailable),
                Just(RejectReason::TxTimeout)
            ]
        )
            .prop_map(|(client_seq, reason)| ServerFrame::Rejected(Rejected {
                client_seq,
                reason
            })),
        ping().prop_map(ServerFrame::Ping),
        ping().prop_map(ServerFrame::Pong),
        (
            prop_oneof![
                Just(ErrorCode::Malformed),
                Just(ErrorCode::TooLarge),
                Just(ErrorCode::UnsupportedVersion),
                Just(ErrorCode::ProtocolViolation),
                Just(ErrorCode::Unauthorized),
                Just(ErrorCode::Stale),
                Just(ErrorCode::Replaced),
                Just(ErrorCode::ShuttingDown),
                Just(ErrorCode::Unavailable)
            ],
            ".{0,30}"
        )
            .prop_map(|(code, message)| ServerFrame::Error(ErrorFrame { code, message })),
        (
            any::<u64>(),
            any::<u64>(),
            prop_oneof![Just(DrainReason::Shutdown), Just(DrainReason::Overload)]
        )
            .prop_map(
                |(retry_after_ms, jitter_ms, reason)| ServerFrame::Drain(Drain {
                    retry_after_ms,
                    jitter_ms,
                    reason
                })
            ),
    ]
}

// ------------------------------------------------------------------ frames

proptest! {
    #[test]
    fn client_frames_round_trip(frame in client_frame()) {
        let bytes = frame.encode().unwrap();
        prop_assert_eq!(ClientFrame::decode(&bytes, usize::MAX).unwrap(), frame);
    }

    #[test]
    fn server_frames_round_trip(frame in server_frame()) {
        let bytes = frame.encode().unwrap();
        prop_assert_eq!(ServerFrame::decode(&bytes, usize::MAX).unwrap(), frame);
    }

    /// A batched message (frames back to back) reads as the same frames, in
    /// order; cut anywhere inside its last frame, it reads as the frames
    /// before the cut and then one error, never a panic or a made-up frame.
    #[test]
    fn batched_frames_read_back_in_order(frames in vec(server_frame(), 1..6), cut in any::<usize>()) {
        let mut message = Vec::new();
        for frame in &frames {
            message.extend(frame.encode().unwrap());
        }
        let read: Vec<ServerFrame> = ServerFrame::decode_each(&message, usize::MAX)
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(&read, &frames);
        let last = frames.last().unwrap().encode().unwrap().len();
        let cut = message.len() - 1 - cut % (last - 1);
        let read: Vec<_> = ServerFrame::decode_each(&message[..cut], usize::MAX).collect();
        prop_assert_eq!(read.len(), frames.len());
        for (got, want) in read.iter().zip(&frames[..frames.len() - 1]) {
            prop_assert_eq!(got.as_ref().unwrap(), want);
        }
        prop_assert!(read.last().unwrap().is_err());
    }

    /// The hand-written codec writes exactly what rmp_serde writes for the
    /// same types, and reads rmp_serde's bytes: the wire format in
    /// docs/PROTOCOL.md is serde's, byte for byte.
    #[test]
    fn hand_codec_matches_rmp_serde(client in client_frame(), server in server_frame()) {
        fn serde_bytes<T: serde::Serialize>(body: &T) -> Vec<u8> {
            let mut out = vec![0x92, PROTOCOL_VERSION as u8];
            body.serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map()).unwrap();
            out
        }
        prop_assert_eq!(client.encode().unwrap(), serde_bytes(&client));
        prop_assert_eq!(server.encode().unwrap(), serde_bytes(&server));
        prop_assert_eq!(ClientFrame::decode(&serde_bytes(&client), usize::MAX).unwrap(), client);
        prop_assert_eq!(ServerFrame::decode(&serde_bytes(&server), usize::MAX).unwrap(), server);
    }

    /// The codec's own MessagePack reader reads a payload exactly as
    /// `rmpv` does, including damaged ones: same value, or an error where
    /// rmpv fails. Two refusals are ours: a string that is not UTF-8, and
    /// the reserved byte 0xc1 (which rmpv reads as nil).
    #[test]
    fn payload_reader_agrees_with_rmpv(value in payload(), edits in vec((any::<usize>(), any::<u8>()), 0..4)) {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        for (at, byte) in edits {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        // An event whose payload (its last field) is `bytes`.
        let mut frame = ServerFrame::Event(Event { seq: 1, kind: "k".into(), ts_ms: 2, payload: Payload::Nil })
            .encode()
            .unwrap();
        frame.pop();
        frame.extend_from_slice(&bytes);
        let ours = ServerFrame::decode(&frame, usize::MAX);
        let mut rest = &bytes[..];
        match rmpv::decode::read_value(&mut rest) {
            Ok(theirs) if rest.is_empty() && all_utf8(&theirs) => {
                if let Err(DecodeError::Malformed(m)) = &ours {
                    if m.contains("0xc1") && bytes.contains(&0xc1) {
                        return Ok(());
                    }
                }
                let Ok(ServerFrame::Event(e)) = ours else {
                    return Err(TestCaseError::fail(format!("rmpv read {theirs:?}, we failed: {ours:?}")));
                };
                // Compared as bytes: a NaN made by an edit equals itself there.
                let (mut a, mut b) = (Vec::new(), Vec::new());
                rmpv::encode::write_value(&mut a, &e.payload).unwrap();
                rmpv::encode::write_value(&mut b, &theirs).unwrap();
                prop_assert_eq!(a, b);
            }
            _ => prop_assert!(ours.is_err(), "rmpv failed or left bytes, we read {:?}", ours),
        }
    }

    #[test]
    fn mutated_frames_never_panic(frame in server_frame(), edits in vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = frame.encode().unwrap();
        for (at, byte) in edits {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        let _ = ServerFrame::decode(&bytes, MAX_FRAME_BYTES);
        let _ = ClientFrame::decode(&bytes, MAX_FRAME_BYTES);
    }
}

fn all_utf8(v: &Payload) -> bool {
    match v {
        Payload::String(s) => s.is_str(),
        Payload::Array(items) => items.iter().all(all_utf8),
        Payload::Map(entries) => entries.iter().all(|(k, v)| all_utf8(k) && all_utf8(v)),
        _ => true,
    }
}

/// The acceptance bar of the foundation issue: a million random byte strings,
/// half of them starting with a valid envelope so the body parser is reached.
#[test]
fn a_million_random_inputs_never_panic() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut buf = Vec::with_capacity(256);
    let mut errors = 0u64;
    for i in 0..1_000_000u32 {
        buf.clear();
        if i % 2 == 0 {
            buf.extend_from_slice(&[0x92, 0x01]);
        }
        let len = rng.usize(0..96);
        buf.extend((0..len).map(|_| rng.u8(..)));
        if ClientFrame::decode(&buf, MAX_FRAME_BYTES).is_err() {
            errors += 1;
        }
        let _ = ServerFrame::decode(&buf, MAX_FRAME_BYTES);
    }
    assert!(errors > 900_000, "random bytes are almost never frames");
}

// ------------------------------------------------------------------ backoff

fn backoff_config() -> impl Strategy<Value = BackoffConfig> {
    (
        1u64..5_000,
        1u64..120_000,
        proptest::option::of(1u32..30),
        0.0f64..=1.0,
    )
        .prop_map(|(base_ms, max_ms, max_attempts, jitter)| BackoffConfig {
            base_ms,
            max_ms: max_ms.max(base_ms),
            max_attempts,
            jitter,
        })
}

proptest! {
    #[test]
    fn backoff_stays_in_band_and_under_max(config in backoff_config(), seed in any::<u64>(), steps in 1usize..60) {
        let mut b = Backoff::new(config, seed);
        for _ in 0..steps {
            match b.next_retry() {
                Retry::After { delay_ms, attempt } => {
                    let nominal = config.nominal_ms(attempt) as f64;
                    prop_assert!(delay_ms <= config.max_ms);
                    prop_assert!(delay_ms as f64 >= (nominal * (1.0 - config.jitter)).round() - 1.0);
                    prop_assert!(delay_ms as f64 <= (nominal * (1.0 + config.jitter)).round() + 1.0);
                    if let Some(max) = config.max_attempts {
                        prop_assert!(attempt <= max);
                    }
                }
                Retry::GiveUp { attempts } => {
                    prop_assert_eq!(Some(attempts), config.max_attempts);
                    prop_assert!(b.exhausted());
                }
            }
        }
    }

    #[test]
    fn backoff_is_deterministic_per_seed(config in backoff_config(), seed in any::<u64>()) {
        let mut a = Backoff::new(config, seed);
        let mut b = Backoff::new(config, seed);
        for _ in 0..20 {
            prop_assert_eq!(a.next_retry(), b.next_retry());
        }
    }
}

/// Jitter must actually spread clients out at the cap, not squash them onto it.
#[test]
fn jitter_spreads_retries_at_the_cap() {
    let config = BackoffConfig {
        max_attempts: None,
        ..BackoffConfig::DASHBOARD
    };
    let delays: std::collections::BTreeSet<u64> = (0..1_000)
        .map(|seed| {
            let mut b = Backoff::new(config, seed);
            let mut last = 0;
            for _ in 0..10 {
                if let Retry::After { delay_ms, .. } = b.next_retry() {
                    last = delay_ms;
                }
            }
            last
        })
        .collect();
    assert!(delays.len() > 500, "only {} distinct delays", delays.len());
    assert!(delays.iter().all(|d| (21_000..=30_000).contains(d)));
}

// ------------------------------------------------------------------ heartbeat

#[derive(Debug, Clone)]
enum HbStep {
    Advance(u64),
    AnswerPing { after_ms: u64 },
    Traffic,
}

proptest! {
    /// A peer that always answers within the timeout is never declared stale,
    /// and one that stops answering is declared stale within the timeout.
    #[test]
    fn heartbeat_stale_iff_pong_late(interval in 100u64..5_000, steps in vec(prop_oneof![
        (1u64..10_000).prop_map(HbStep::Advance),
        (0u64..20_000).prop_map(|after_ms| HbStep::AnswerPing { after_ms }),
        Just(HbStep::Traffic),
    ], 1..80)) {
        let config = HeartbeatConfig::every(interval);
        let mut hb = Heartbeat::new(config, 0);
        let mut now = 0u64;
        let mut outstanding: Option<(u32, u64)> = None;
        for step in steps {
            match step {
                HbStep::Advance(d) => {
                    let target = now + d;
                    // Wake exactly when the state machine asks, as a shell would.
                    loop {
                        let wake = hb.poll_timeout();
                        if wake > target { break; }
                        now = wake.max(now);
                        match hb.handle_timeout(now) {
                            Some(HeartbeatAction::SendPing { nonce }) => outstanding = Some((nonce, now)),
                            Some(HeartbeatAction::Stale { .. }) => {
                                let (_, sent) = outstanding.expect("stale only with a ping out");
                                prop_assert!(now >= sent + config.timeout_ms);
                                hb.restart(now);
                                outstanding = None;
                            }
                            None => {}
                        }
                    }
                    now = target;
                }
                HbStep::AnswerPing { after_ms } => {
                    if let Some((nonce, sent)) = outstanding {
                        if after_ms < config.timeout_ms && sent + after_ms >= now {
                            // Deliver the pong before the deadline: never stale.
                            let at = sent + after_ms;
                            prop_assert!(hb.handle_timeout(at).is_none() || !hb.is_stale());
                            prop_assert_eq!(hb.on_pong(nonce, at), Some(after_ms));
                            now = at;
                            outstanding = None;
                        }
                    }
                }
                HbStep::Traffic => hb.on_traffic(now),
            }
            prop_assert!(hb.rtt.summary().last_ms.is_none_or(|r| r < config.timeout_ms));
        }
    }
}

// ------------------------------------------------------------------ quality and health

#[derive(Debug, Clone)]
enum QStep {
    Advance(u64),
    Connected,
    Disconnected,
    Reconnect,
    Sent(u64),
    Acked(u64),
    Activity,
}

proptest! {
    #[test]
    fn quality_is_in_unit_range_and_reconnects_never_help(steps in vec(prop_oneof![
        (0u64..600_000).prop_map(QStep::Advance),
        Just(QStep::Connected),
        Just(QStep::Disconnected),
        Just(QStep::Reconnect),
        (0u64..50).prop_map(QStep::Sent),
        (0u64..50).prop_map(QStep::Acked),
        Just(QStep::Activity),
    ], 0..60)) {
        let mut q = QualityTracker::new(QualityConfig::default(), 0);
        let mut now = 0;
        for step in steps {
            match step {
                QStep::Advance(d) => now += d,
                QStep::Connected => q.on_connected(now),
                QStep::Disconnected => q.on_disconnected(now),
                QStep::Reconnect => q.on_reconnect(now),
                QStep::Sent(n) => q.on_sent(n),
                QStep::Acked(n) => q.on_acked(n),
                QStep::Activity => q.on_activity(now),
            }
            let r = q.report(now);
            for v in [r.score, r.stability, r.ack_rate, r.uptime, r.activity] {
                prop_assert!((0.0..=1.0).contains(&v), "{:?}", r);
            }
            let mut worse = q.clone();
            worse.on_reconnect(now);
            prop_assert!(worse.report(now).score <= r.score + 1e-12);
        }
    }

    #[test]
    fn health_score_in_range_and_bands_consistent(checks in vec(proptest::option::of(0u64..10_000), 0..60)) {
        let mut h = HealthTracker::new(HealthConfig::default());
        let mut streak = 0;
        for (t, c) in checks.into_iter().enumerate() {
            let check = c.map_or(Check::Failed, |latency_ms| Check::Ok { latency_ms });
            streak = if c.is_none() { streak + 1 } else { 0 };
            h.record(check, t as u64);
            let s = h.score();
            prop_assert!(s <= 100);
            prop_assert_eq!(h.band(), Band::of(s));
            prop_assert_eq!(h.degraded(), s < 70);
            prop_assert_eq!(h.unhealthy(), streak >= 3);
        }
    }
}

// ------------------------------------------------------------------ receiver

#[derive(Debug, Clone)]
enum NetStep {
    /// The proxy sends its next event (live).
    Live,
    /// The wire duplicates one of the last few events sent.
    Duplicate(usize),
    /// The wire swaps the next two deliveries (a reordering).
    Swap,
    /// The connection drops: undelivered frames are lost.
    Cut,
    /// Reconnect and resume: the proxy replays from last_seq + 1.
    Resume,
}

proptest! {
    /// Whatever the network does, the application sees each seq at most once,
    /// in strictly increasing, gap-free order, and after a final resume it has
    /// seen everything.
    #[test]
    fn receiver_delivers_exactly_once_in_order(total in 1u64..120, steps in vec(prop_oneof![
        6 => Just(NetStep::Live),
        2 => (0usize..8).prop_map(NetStep::Duplicate),
        2 => Just(NetStep::Swap),
        1 => Just(NetStep::Cut),
        1 => Just(NetStep::Resume),
    ], 0..300)) {
        let event = |seq: u64| Event { seq, kind: "k".into(), ts_ms: seq, payload: Payload::from(seq) };
        let mut rx = Receiver::new(None, 64);
        let mut delivered: Vec<u64> = Vec::new();
        let mut next_live = 1u64;
        let mut in_flight: Vec<u64> = Vec::new();
        let mut recent: Vec<u64> = Vec::new();
        let mut out = Vec::new();
        let mut feed = |rx: &mut Receiver, seq: u64, delivered: &mut Vec<u64>| -> bool {
            out.clear();
            let ok = rx.on_event(event(seq), &mut out).is_ok();
            delivered.extend(out.iter().filter_map(|d| match d { Delivered::Event(e) => Some(e.seq), _ => None }));
            ok
        };
        for step in steps {
            match step {
                NetStep::Live if next_live <= total => { in_flight.push(next_live); next_live += 1; }
                NetStep::Live => {}
                NetStep::Duplicate(k) => if let Some(s) = recent.iter().rev().nth(k) { in_flight.push(*s) },
                NetStep::Swap => { let n = in_flight.len(); if n >= 2 { in_flight.swap(n - 1, n - 2) } }
                NetStep::Cut => { in_flight.clear(); next_live = rx.last_seq() + 1; }
                NetStep::Resume => { in_flight.clear(); next_live = rx.last_seq() + 1; }
            }
            // The wire hands over what is in flight, oldest first.
            for seq in in_flight.drain(..) {
                recent.push(seq);
                if !feed(&mut rx, seq, &mut delivered) {
                    // The receiver asked to resume: the proxy replays from last_seq.
                    next_live = rx.last_seq() + 1;
                    break;
                }
            }
        }
        // Final resume: replay everything after last_seq.
        for seq in rx.last_seq() + 1..=total {
            feed(&mut rx, seq, &mut delivered);
        }
        let expected: Vec<u64> = (1..=total).collect();
        prop_assert_eq!(delivered, expected);
    }
}

// ------------------------------------------------------------------ outbox

#[derive(Debug, Clone)]
enum OutStep {
    Publish(bool, Delivery),
    Accept(u64),
    Reject(u64),
}

proptest! {
    #[test]
    fn outbox_is_bounded_ordered_and_never_keeps_transmit(capacity in 1usize..20, steps in vec(prop_oneof![
        4 => (any::<bool>(), delivery()).prop_map(|(ptt, d)| OutStep::Publish(ptt, d)),
        1 => (0u64..80).prop_map(OutStep::Accept),
        1 => (0u64..80).prop_map(OutStep::Reject),
    ], 0..120)) {
        let mut o = Outbox::new(capacity);
        let mut last_seq = 0;
        for step in steps {
            match step {
                OutStep::Publish(ptt, d) => {
                    let kind = if ptt { "radio.ptt" } else { "note" };
                    match o.publish(kind.into(), Payload::Nil, d, None, None) {
                        Queued::Stored { publish, .. } => {
                            prop_assert!(!ptt && d == Delivery::Reliable);
                            prop_assert!(publish.client_seq > last_seq);
                            last_seq = publish.client_seq;
                        }
                        Queued::SendOnly(publish) => {
                            prop_assert!(ptt || d == Delivery::Volatile);
                            prop_assert!(publish.client_seq > last_seq);
                            last_seq = publish.client_seq;
                        }
                    }
                }
                OutStep::Accept(upto) => {
                    o.on_accepted(upto);
                    prop_assert!(o.pending().iter().all(|p| p.client_seq > upto));
                }
                OutStep::Reject(seq) => {
                    o.on_rejected(seq);
                    prop_assert!(o.pending().iter().all(|p| p.client_seq != seq));
                }
            }
            prop_assert!(o.len() <= capacity);
            let seqs: Vec<u64> = o.pending().iter().map(|p| p.client_seq).collect();
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(o.pending().iter().all(|p| p.kind != "radio.ptt"));
        }
    }
}

// ------------------------------------------------------------------ TX watchdog

proptest! {
    /// Whatever the clients do, a transmitter is never keyed longer than
    /// max_tx_ms, nor longer than keepalive_ms after its keyer's last refresh,
    /// when the shell wakes the watchdog when it asks to be woken.
    #[test]
    fn tx_is_never_left_keyed(steps in vec((0u8..4, 0u8..3, 1u64..5_000), 1..200)) {
        use shared_protocol::txwatchdog::{TxWatchdog, TxWatchdogConfig};
        let config = TxWatchdogConfig { keepalive_ms: 3_000, max_tx_ms: 20_000 };
        let mut w = TxWatchdog::new(config);
        let mut now = 0u64;
        // (keyer, keyed since, last refresh) as the test sees it.
        let mut keyed: Option<(u8, u64, u64)> = None;
        for (action, client, dt) in steps {
            let target = now + dt;
            while let Some(at) = w.poll_timeout() {
                if at > target { break; }
                now = at.max(now);
                if w.handle_timeout(now).is_some() { keyed = None; }
            }
            now = target;
            if let Some((_, since, refreshed)) = keyed {
                prop_assert!(now < since + config.max_tx_ms || w.keyed_by().is_none());
                prop_assert!(now < refreshed + config.keepalive_ms || w.keyed_by().is_none());
            }
            let id = format!("c{client}");
            match action {
                0 if w.admit_ptt_on(&id, now) => {
                    prop_assert!(w.on_ptt_on(&id, now).is_none(), "admitted, so not locked out");
                    keyed = match keyed {
                        Some((k, since, _)) if k == client => Some((k, since, now)),
                        _ => Some((client, now, now)),
                    };
                }
                1 => { w.on_ptt_off(&id); keyed = None; }
                2 if w.on_session_ended(&id, now).is_some() => keyed = None,
                _ => {}
            }
            prop_assert_eq!(w.keyed_by().map(str::to_string), keyed.map(|(k, _, _)| format!("c{k}")));
        }
    }
}
