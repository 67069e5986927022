//! Property tests of [`ServerSession`] against a fake log and a fake
//! client, with a fake clock: arbitrary interleavings of client frames, log
//! growth, trims, write stalls, slow log answers and time.
//!
//! What must hold for every interleaving:
//! - the client-visible stream is gap-free or explicitly gapped: every
//!   `seq` is an `Event`, inside a `Gap`, or covered by a `Snapshot`, in
//!   order, never twice;
//! - never more events unacknowledged than the window;
//! - publishes reach the log in `client_seq` order, each applied once, and
//!   `Accepted{upto}` covers only publishes applied or already `Rejected`;
//!   in the end every valid publish is answered;
//! - every `Ping` is answered at once, while publishes wait for the rate;
//! - a client whose socket takes nothing for `stale_after_ms` is closed by
//!   then, and no event goes out while the outbound queue is over its limit.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;
use shared_protocol::frame::{
    ClientFrame, Delivery, ErrorCode, Hello, Limits, Payload, Ping, Publish, ServerFrame, State,
    Welcome,
};
use shared_protocol::Millis;

use super::machine::*;
use crate::auth::Role;
use crate::eventlog::{Logged, NewEvent, Published};

const CONFIG: SessionConfig = SessionConfig {
    heartbeat_ms: 1_000,
    stale_after_ms: 3_000,
    max_behind: 40,
    replay_page: 8,
    cool_above_lag: 12,
    max_publish_per_sec: 5,
    publish_window: 16,
    max_pending_bytes: 4_000,
    mirror_wait_ms: 0,
};

#[derive(Debug, Clone)]
enum Action {
    /// Other publishers' events reach the log.
    LogGrows {
        n: u8,
        volatile: bool,
    },
    /// Retention drops the oldest events.
    Trim(u8),
    /// The numbering jumps: `seq`s a proxy reserved for readings it never
    /// wrote before it stopped (eventlog/embedded.rs).
    LogSkips(u8),
    /// The client publishes (a new `client_seq`, or a resend of an old one).
    Publish {
        volatile: bool,
        resend: bool,
    },
    /// A publish with an invalid `client_seq`.
    BadSeq(u64),
    /// The client acknowledges everything it has.
    Ack,
    Ping,
    /// The log answers this many appends (in order).
    LogAnswers(u8),
    /// The log answers this many appends in one commit (given to the
    /// session together, the way the shell takes one commit's answers).
    LogCommits(u8),
    /// The socket stops taking data, or takes everything again.
    Stall(bool),
    /// Time passes (the client says nothing meanwhile).
    Wait(u16),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (1..20u8, any::<bool>()).prop_map(|(n, volatile)| Action::LogGrows { n, volatile }),
        1 => (1..30u8).prop_map(Action::Trim),
        1 => (1..30u8).prop_map(Action::LogSkips),
        4 => (any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(volatile, resend)| Action::Publish { volatile, resend }),
        1 => prop_oneof![Just(0u64), Just(1u64 << 53), Just(u64::MAX)].prop_map(Action::BadSeq),
        4 => Just(Action::Ack),
        2 => Just(Action::Ping),
        3 => (1..40u8).prop_map(Action::LogAnswers),
        2 => (1..40u8).prop_map(Action::LogCommits),
        1 => any::<bool>().prop_map(Action::Stall),
        3 => (1..2_500u16).prop_map(Action::Wait),
    ]
}

struct NoLockout;

impl Admission for NoLockout {
    fn wall_ms(&self) -> u64 {
        1_700_000_000_000
    }
    fn ptt_on_allowed(&mut self, _: &str) -> bool {
        true
    }
    fn state_fits(&self, _: &str, _: &Payload) -> bool {
        true
    }
}

/// The log: events from `oldest` to `head`, last values, and the store's
/// dedup rule for the one client.
struct FakeLog {
    events: VecDeque<Logged>,
    head: u64,
    state: State,
    applied_seq: u64,
    /// `client_seq`s applied, in the order they were applied.
    applied: Vec<u64>,
    appends: VecDeque<Append>,
}

impl FakeLog {
    fn empty() -> Self {
        FakeLog {
            events: VecDeque::new(),
            head: 0,
            state: State::new(),
            applied_seq: 0,
            applied: Vec::new(),
            appends: VecDeque::new(),
        }
    }

    fn append(&mut self, event: NewEvent) {
        self.head += 1;
        self.state.insert(event.kind.clone(), event.payload.clone());
        self.events
            .push_back(Logged::build(self.head, 0, &event).expect("encodes"));
    }

    fn apply(&mut self, append: Append) -> Published {
        if append.client_seq <= self.applied_seq {
            return Published::Duplicate;
        }
        if append.after.is_some_and(|a| a > self.applied_seq) {
            return Published::OutOfOrder;
        }
        self.applied_seq = append.client_seq;
        self.applied.push(append.client_seq);
        self.append(append.event);
        Published::Applied(self.head)
    }
}

/// What the client saw, checked as it arrives.
#[derive(Default)]
struct Seen {
    /// The next `seq` the stream owes the client.
    next: u64,
    welcomed: bool,
    acked: u64,
    /// Event seqs received and not acknowledged.
    unacked: u64,
    pongs: u32,
    accepted_upto: u64,
    /// `Accepted` frames received.
    accepted_frames: u32,
    rejected: BTreeSet<u64>,
    closed: Option<ErrorCode>,
    /// Messages and the frames in them.
    messages: u32,
    frames: u32,
}

struct Sim {
    session: ServerSession,
    log: FakeLog,
    seen: Seen,
    now: Millis,
    stalled: bool,
    /// Bytes the socket has not taken, and since when nothing was written.
    wire: u64,
    stalled_since: Option<Millis>,
    next_seq: u64,
    /// Valid `client_seq`s sent, and their delivery.
    sent: BTreeMap<u64, Delivery>,
    /// The test makes the log refuse an append (a close is then right).
    log_may_refuse: bool,
    /// The client reads several frames from one message.
    batch: bool,
}

impl Sim {
    fn new(preloaded: u64) -> Self {
        Sim::reading(preloaded, false)
    }

    fn reading(preloaded: u64, batch: bool) -> Self {
        let mut log = FakeLog::empty();
        for n in 0..preloaded {
            log.append(NewEvent::reliable("note", Payload::from(n)));
        }
        let opening = Opening {
            client_id: "c".into(),
            role: Role::Control,
            hello: Hello {
                client_id: "c".into(),
                token: None,
                resume: None,
                t: None,
                batch,
            },
            epoch: 7,
            head: log.head,
            oldest: log.events.front().map_or(log.head + 1, |e| e.seq),
            welcome: Welcome {
                session: "s".into(),
                epoch: 0,
                head_seq: 0,
                resumed: false,
                heartbeat_ms: 1_000,
                limits: Limits {
                    max_frame_bytes: 1_000,
                    max_publish_per_sec: 20,
                    max_behind: 40,
                    retention_ms: 1,
                    publish_window: Some(CONFIG.publish_window),
                },
                access: None,
            },
        };
        let mut sim = Sim {
            session: ServerSession::new(CONFIG, opening, 0),
            log,
            seen: Seen::default(),
            now: 0,
            stalled: false,
            wire: 0,
            stalled_since: None,
            next_seq: 1,
            sent: BTreeMap::new(),
            log_may_refuse: false,
            batch,
        };
        sim.run_outputs();
        sim
    }

    /// Carries out everything the session asked for, until it asks for
    /// nothing more.
    fn run_outputs(&mut self) {
        loop {
            let Some(output) = self.session.poll_output() else {
                // As the shell does: the queue's state once every output
                // is carried out.
                self.session
                    .handle_write_progress(self.wire, self.stalled_since.unwrap_or(self.now));
                if self.session.poll_output_pending() {
                    continue;
                }
                assert!(
                    self.wire <= CONFIG.max_pending_bytes || self.seen.closed.is_some(),
                    "{} bytes unwritten and still open",
                    self.wire
                );
                return;
            };
            assert!(self.seen.closed.is_none(), "output after Close: {output:?}");
            match output {
                Output::Send(out) => self.deliver(out),
                Output::ReadEvents { from, limit } => {
                    assert!(
                        self.wire < CONFIG.max_pending_bytes / 4,
                        "events read while {} bytes were unwritten",
                        self.wire
                    );
                    let events = self
                        .log
                        .events
                        .iter()
                        .filter(|e| e.seq >= from)
                        .take(limit)
                        .cloned()
                        .collect();
                    self.session.handle_events(Ok(events));
                }
                Output::ReadSnapshot => {
                    let snapshot = (self.log.head, self.log.state.clone());
                    self.session.handle_snapshot(Ok(snapshot));
                }
                Output::Append(append) => self.log.appends.push_back(append),
                Output::Report(_) => {}
                Output::Close { code, message } => {
                    // The fake log never fails, and an honest client breaks
                    // no rule: only staleness may close the session.
                    assert!(
                        code == ErrorCode::Stale || self.log_may_refuse,
                        "closed: {message}"
                    );
                    self.seen.closed = Some(code);
                }
            }
        }
    }

    fn deliver(&mut self, bytes: bytes::Bytes) {
        let frames: Vec<ServerFrame> = ServerFrame::decode_each(&bytes, usize::MAX)
            .collect::<Result<_, _>>()
            .expect("frames decode");
        if self.batch {
            assert!(
                frames.len() == 1 || bytes.len() <= BATCH_BYTES,
                "a batch of {} bytes",
                bytes.len()
            );
        } else {
            assert_eq!(frames.len(), 1, "a batch to a client that did not ask");
        }
        let len = bytes.len() as u64;
        if self.stalled {
            self.wire += len;
            self.stalled_since.get_or_insert(self.now);
        }
        self.seen.messages += 1;
        for frame in frames {
            self.seen.frames += 1;
            self.receive(frame);
        }
    }

    fn receive(&mut self, frame: ServerFrame) {
        let seen = &mut self.seen;
        match frame {
            ServerFrame::Welcome(w) => {
                seen.welcomed = true;
                seen.next = w.head_seq + 1;
            }
            ServerFrame::Event(e) => {
                assert!(seen.welcomed);
                assert_eq!(e.seq, seen.next, "event out of order or a silent hole");
                seen.next = e.seq + 1;
                seen.unacked += 1;
                let (_, window) = CONFIG.flow();
                assert!(seen.unacked <= window, "{} unacknowledged", seen.unacked);
            }
            ServerFrame::Gap(g) => {
                assert!(g.from <= g.to, "empty gap {g:?}");
                assert_eq!(
                    g.from, seen.next,
                    "gap {g:?} does not start where the stream is"
                );
                seen.next = g.to + 1;
            }
            ServerFrame::Snapshot(s) => {
                assert!(s.upto + 1 >= seen.next, "snapshot behind the stream");
                seen.next = s.upto + 1;
                // The client has the state: nothing before it waits for an ack.
                seen.unacked = 0;
                seen.acked = s.upto;
            }
            ServerFrame::Accepted { upto } => {
                for (&seq, _) in self.sent.range(..=upto) {
                    assert!(
                        self.log.applied.contains(&seq)
                            || self.log.applied_seq >= seq
                            || seen.rejected.contains(&seq),
                        "Accepted{{{upto}}} covers {seq}, neither applied nor rejected"
                    );
                }
                seen.accepted_upto = seen.accepted_upto.max(upto);
                seen.accepted_frames += 1;
            }
            ServerFrame::Rejected(r) => {
                seen.rejected.insert(r.client_seq);
            }
            ServerFrame::Pong(_) => seen.pongs += 1,
            ServerFrame::Ping(p) => {
                // The client answers pings (as any client does).
                self.session
                    .handle_frame(ClientFrame::Pong(p), self.now, &mut NoLockout);
            }
            ServerFrame::Error(_) | ServerFrame::Drain(_) => {}
        }
    }

    fn frame(&mut self, frame: ClientFrame) {
        self.session.handle_frame(frame, self.now, &mut NoLockout);
        self.run_outputs();
    }

    /// Lets time pass to `until`, waking the session when it asked.
    fn advance(&mut self, until: Millis) {
        while self.seen.closed.is_none() {
            let at = self.session.poll_timeout().max(self.now);
            if at > until {
                break;
            }
            self.now = at;
            self.session.handle_timeout(self.now, &mut NoLockout);
            self.run_outputs();
            self.check_stall();
        }
        self.now = self.now.max(until);
        self.check_stall();
    }

    fn check_stall(&self) {
        if let Some(since) = self.stalled_since {
            if self.seen.closed.is_none() {
                assert!(
                    self.now < since + CONFIG.stale_after_ms,
                    "stalled since {since}, still open at {}",
                    self.now
                );
            }
        }
    }

    fn step(&mut self, action: Action) {
        if self.seen.closed.is_some() {
            return;
        }
        match action {
            Action::LogGrows { n, volatile } => {
                for i in 0..n {
                    let kind = if volatile { "meter.power" } else { "note" };
                    let event = NewEvent {
                        kind: kind.into(),
                        payload: Payload::from(u64::from(i)),
                        volatile,
                        stateless: false,
                    };
                    self.log.append(event);
                }
                self.session.handle_head(self.log.head);
                self.run_outputs();
            }
            Action::LogSkips(n) => self.log.head += u64::from(n),
            Action::Trim(n) => {
                for _ in 0..n {
                    self.log.events.pop_front();
                }
            }
            Action::Publish { volatile, resend } => {
                let client_seq = match self.sent.keys().next() {
                    Some(&old) if resend => old,
                    _ => {
                        let s = self.next_seq;
                        self.next_seq += 1 + u64::from(volatile); // holes too
                        s
                    }
                };
                let delivery = if volatile {
                    Delivery::Volatile
                } else {
                    Delivery::Reliable
                };
                let unanswered = self
                    .sent
                    .keys()
                    .filter(|&&s| s > self.seen.accepted_upto && !self.seen.rejected.contains(&s))
                    .count();
                if unanswered >= CONFIG.publish_window as usize {
                    return; // an honest client waits
                }
                self.sent.entry(client_seq).or_insert(delivery);
                self.frame(ClientFrame::Publish(Publish {
                    client_seq,
                    kind: "note".into(),
                    payload: Payload::from(client_seq),
                    delivery,
                    expires_at_ms: None,
                    ttl_ms: None,
                }));
            }
            Action::BadSeq(client_seq) => {
                self.frame(ClientFrame::Publish(Publish {
                    client_seq,
                    kind: "note".into(),
                    payload: Payload::Nil,
                    delivery: Delivery::Reliable,
                    expires_at_ms: None,
                    ttl_ms: None,
                }));
                if self.seen.closed.is_none() {
                    // Answered, possibly after what is ahead of it.
                    for _ in 0..20 {
                        if self.seen.rejected.contains(&client_seq) || self.seen.closed.is_some() {
                            break;
                        }
                        self.drain_log();
                        let next = self.session.poll_timeout();
                        self.advance(next);
                        self.frame(ClientFrame::Ping(Ping {
                            nonce: 3,
                            t: self.now,
                        }));
                    }
                    assert!(self.seen.rejected.contains(&client_seq) || self.seen.closed.is_some());
                    assert!(!self.log.applied.contains(&client_seq));
                }
            }
            Action::Ack => {
                let upto = self.seen.next.saturating_sub(1);
                self.seen.acked = self.seen.acked.max(upto);
                self.seen.unacked = 0;
                self.frame(ClientFrame::Ack { upto });
            }
            Action::Ping => {
                let before = self.seen.pongs;
                self.frame(ClientFrame::Ping(Ping {
                    nonce: 1,
                    t: self.now,
                }));
                assert_eq!(self.seen.pongs, before + 1, "a ping not answered at once");
            }
            Action::LogAnswers(n) => {
                for _ in 0..n {
                    let Some(append) = self.log.appends.pop_front() else {
                        break;
                    };
                    let client_seq = append.client_seq;
                    let result = self.log.apply(append);
                    self.session
                        .handle_published(client_seq, Ok(result), self.now, &mut NoLockout);
                    self.session.handle_head(self.log.head);
                    self.run_outputs();
                }
            }
            Action::LogCommits(n) => {
                let mut answers = Vec::new();
                for _ in 0..n {
                    let Some(append) = self.log.appends.pop_front() else {
                        break;
                    };
                    let client_seq = append.client_seq;
                    answers.push((client_seq, Ok(self.log.apply(append))));
                }
                self.session
                    .handle_published_all(answers, self.now, &mut NoLockout);
                self.session.handle_head(self.log.head);
                self.run_outputs();
            }
            Action::Stall(on) => {
                self.stalled = on;
                if !on {
                    self.wire = 0;
                    self.stalled_since = None;
                    self.run_outputs();
                }
            }
            Action::Wait(ms) => self.advance(self.now + u64::from(ms)),
        }
    }

    /// The log answers everything and the rate bucket refills.
    fn drain_log(&mut self) {
        for _ in 0..1_000 {
            if self.seen.closed.is_some() {
                return;
            }
            if self.log.appends.is_empty() {
                // Reliable publishes waiting for the rate: let time pass
                // while the client stays in touch.
                let before = self.log.appends.len();
                let next = self.session.poll_timeout();
                self.advance(next);
                self.frame(ClientFrame::Ping(Ping {
                    nonce: 2,
                    t: self.now,
                }));
                if self.log.appends.len() == before && self.all_answered() {
                    return;
                }
                continue;
            }
            self.step(Action::LogAnswers(u8::MAX));
        }
    }

    fn all_answered(&self) -> bool {
        self.sent
            .keys()
            .all(|s| *s <= self.seen.accepted_upto || self.seen.rejected.contains(s))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_rule_holds_for_any_interleaving(
        preloaded in 0..60u64,
        actions in prop::collection::vec(action(), 1..250),
        batch in any::<bool>(),
    ) {
        let mut sim = Sim::reading(preloaded, batch);
        for action in actions {
            sim.step(action);
        }
        // In the end: unstalled, the log answers everything, every valid
        // publish is answered, applied ones in order and once each.
        sim.step(Action::Stall(false));
        sim.drain_log();
        if sim.seen.closed.is_none() {
            prop_assert!(sim.all_answered(), "unanswered publishes remain");
        }
        let applied = &sim.log.applied;
        prop_assert!(applied.windows(2).all(|w| w[0] < w[1]), "applied out of order or twice: {applied:?}");
        for seq in applied {
            prop_assert!(sim.sent.contains_key(seq));
        }
        if sim.seen.closed.is_none() {
            // Every reliable publish answered Accepted was applied.
            for (&seq, &delivery) in &sim.sent {
                if delivery == Delivery::Reliable && !sim.seen.rejected.contains(&seq) {
                    prop_assert!(applied.contains(&seq), "reliable {seq} accepted, never applied");
                }
            }
        }
    }
}

#[test]
fn a_client_that_stops_reading_is_closed_on_time_while_it_keeps_talking() {
    let mut sim = Sim::new(0);
    sim.step(Action::Stall(true));
    for _ in 0..100 {
        sim.step(Action::LogGrows {
            n: 10,
            volatile: false,
        });
        sim.step(Action::Ping);
        if sim.seen.closed.is_some() {
            break;
        }
        sim.step(Action::Wait(100));
    }
    assert_eq!(sim.seen.closed, Some(ErrorCode::Stale));
    assert!(sim.now <= CONFIG.stale_after_ms + 100);
}

/// A client that reads batches gets the frames of one wake-up in one
/// message, in order (`Seen` checks every frame); one that did not ask gets
/// one message per frame.
#[test]
fn a_client_that_reads_batches_gets_a_wake_ups_frames_in_one_message() {
    for batch in [true, false] {
        let mut sim = Sim::reading(0, batch);
        // Welcome and Snapshot.
        assert_eq!(sim.seen.frames, 2);
        for n in 0..10 {
            sim.log.append(NewEvent::reliable("note", Payload::from(n)));
        }
        sim.session.handle_head(sim.log.head);
        sim.run_outputs();
        assert_eq!(sim.seen.next, 11);
        assert_eq!(sim.seen.frames, 12);
        let messages = if batch { 2 } else { 12 };
        assert_eq!(sim.seen.messages, messages, "batch: {batch}");
    }
}

/// A batch stops at `BATCH_BYTES`; a frame that large goes alone.
#[test]
fn a_batch_is_bounded_and_a_large_frame_goes_alone() {
    let config = SessionConfig {
        max_pending_bytes: 1 << 30,
        ..CONFIG
    };
    let mut log = FakeLog::empty();
    let mut session = ServerSession::new(config, opening(None, true, 0), 0);
    let mut messages = Vec::new();
    let mut run = |session: &mut ServerSession, log: &FakeLog| {
        while let Some(output) = session.poll_output() {
            match output {
                Output::Send(bytes) => {
                    let frames = ServerFrame::decode_each(&bytes, usize::MAX).count();
                    assert!(frames == 1 || bytes.len() <= BATCH_BYTES);
                    messages.push(frames);
                }
                Output::ReadSnapshot => session.handle_snapshot(Ok((log.head, State::new()))),
                Output::ReadEvents { from, limit } => {
                    let events = log.events.iter().filter(|e| e.seq >= from).take(limit);
                    session.handle_events(Ok(events.cloned().collect()));
                }
                _ => {}
            }
        }
    };
    run(&mut session, &log);
    let big = Payload::Binary(vec![7; BATCH_BYTES]);
    let small = Payload::Binary(vec![7; BATCH_BYTES / 3]);
    for payload in [small.clone(), small.clone(), small.clone(), big, small] {
        log.append(NewEvent::reliable("note", payload));
    }
    session.handle_head(log.head);
    run(&mut session, &log);
    // [Welcome, Snapshot], then events 1 to 5: [small, small], [small],
    // [big], [small].
    assert_eq!(messages, [2, 2, 1, 1, 1]);
}

/// Numbers reserved and never used (a stop with readings unwritten) reach
/// the client as a gap between the events around them, never as a silent
/// jump (`Seen` checks every frame).
#[test]
fn a_hole_in_the_numbering_is_a_gap() {
    let mut sim = Sim::new(0);
    // One read finds events on both sides of the hole.
    for n in 0..2 {
        sim.log.append(NewEvent::reliable("note", Payload::from(n)));
    }
    sim.log.head += 5;
    for n in 0..2 {
        sim.log.append(NewEvent::reliable("note", Payload::from(n)));
    }
    sim.session.handle_head(sim.log.head);
    sim.run_outputs();
    assert_eq!(
        sim.seen.next,
        sim.log.head + 1,
        "the stream went on past the hole"
    );
}

#[test]
fn a_snapshot_needs_no_ack_for_the_stream_to_go_on() {
    let mut sim = Sim::new(200);
    // Started with a snapshot; never acks; events keep coming.
    sim.step(Action::LogGrows {
        n: 5,
        volatile: false,
    });
    assert_eq!(sim.seen.next, sim.log.head + 1, "live events continue");
}

#[test]
fn a_reordered_append_is_refused_and_the_session_closes_unacknowledged() {
    let mut sim = Sim::new(0);
    sim.step(Action::Publish {
        volatile: false,
        resend: false,
    });
    sim.step(Action::Publish {
        volatile: false,
        resend: false,
    });
    // The log sees 2 before 1.
    sim.log_may_refuse = true;
    let second = sim.log.appends.pop_back().expect("two appends");
    let result = sim.log.apply(second.clone());
    assert_eq!(result, Published::OutOfOrder);
    sim.session
        .handle_published(second.client_seq, Ok(result), sim.now, &mut NoLockout);
    sim.run_outputs();
    assert_eq!(sim.seen.closed, Some(ErrorCode::Unavailable));
    assert_eq!(sim.seen.accepted_upto, 0, "nothing acknowledged");
}

#[test]
fn one_commits_answers_are_acknowledged_by_one_accepted() {
    let mut sim = Sim::new(0);
    for _ in 0..5 {
        sim.step(Action::Publish {
            volatile: false,
            resend: false,
        });
    }
    assert_eq!(sim.log.appends.len(), 5);
    let before = sim.seen.accepted_frames;
    sim.step(Action::LogCommits(5));
    assert_eq!(
        sim.seen.accepted_frames,
        before + 1,
        "one Accepted for the commit"
    );
    assert_eq!(sim.seen.accepted_upto, 5);
}

/// A session opened with `resume` against a log at `head`, on a shared
/// log whose mirror may lag (`mirror_wait_ms` 2 s).
fn resuming(last_seq: u64, head: u64) -> ServerSession {
    let config = SessionConfig {
        mirror_wait_ms: 2_000,
        ..CONFIG
    };
    let resume = shared_protocol::frame::Resume { epoch: 7, last_seq };
    ServerSession::new(config, opening(Some(resume), false, head), 0)
}

fn opening(resume: Option<shared_protocol::frame::Resume>, batch: bool, head: u64) -> Opening {
    Opening {
        client_id: "c".into(),
        role: Role::Control,
        hello: Hello {
            client_id: "c".into(),
            token: None,
            resume,
            t: None,
            batch,
        },
        epoch: 7,
        head,
        oldest: 1,
        welcome: Welcome {
            session: "s".into(),
            epoch: 0,
            head_seq: 0,
            resumed: false,
            heartbeat_ms: 1_000,
            limits: Limits {
                max_frame_bytes: 1_000,
                max_publish_per_sec: 20,
                max_behind: 40,
                retention_ms: 1,
                publish_window: None,
            },
            access: None,
        },
    }
}

fn frames(session: &mut ServerSession) -> Vec<ServerFrame> {
    let mut out = Vec::new();
    while let Some(o) = session.poll_output() {
        match o {
            Output::Send(b) => out.push(ServerFrame::decode(&b, usize::MAX).unwrap()),
            Output::ReadEvents { .. } => session.handle_events(Ok(Vec::new())),
            _ => {}
        }
    }
    out
}

#[test]
fn a_client_ahead_of_a_lagging_mirror_waits_for_it_and_is_replayed_not_told_its_history_is_lost() {
    let mut session = resuming(8, 3);
    assert!(
        frames(&mut session).is_empty(),
        "no Welcome while the mirror is behind"
    );
    session.handle_head(8);
    let out = frames(&mut session);
    match &out[..] {
        [ServerFrame::Welcome(w)] => {
            assert!(w.resumed, "a replay from last_seq + 1, not epoch_changed");
            assert_eq!(w.head_seq, 8);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_mirror_that_does_not_catch_up_sends_the_client_away_with_a_drain() {
    // A client that reads batches gets the Drain before the close too.
    for batch in [false, true] {
        let config = SessionConfig {
            mirror_wait_ms: 2_000,
            ..CONFIG
        };
        let resume = shared_protocol::frame::Resume {
            epoch: 7,
            last_seq: 8,
        };
        let mut session = ServerSession::new(config, opening(Some(resume), batch, 3), 0);
        assert_eq!(session.poll_timeout(), 2_000);
        session.handle_timeout(2_000, &mut NoLockout);
        let mut drained = false;
        let mut closed = None;
        while let Some(o) = session.poll_output() {
            match o {
                Output::Send(b) => {
                    assert!(closed.is_none(), "a frame after the close");
                    let frame = ServerFrame::decode(&b, usize::MAX).unwrap();
                    assert!(!matches!(
                        frame,
                        ServerFrame::Gap(_) | ServerFrame::Welcome(_)
                    ));
                    drained |= matches!(frame, ServerFrame::Drain(_));
                }
                Output::Close { code, .. } => closed = Some(code),
                _ => {}
            }
        }
        assert!(drained, "batch: {batch}");
        assert_eq!(closed, Some(ErrorCode::Unavailable));
    }
}

/// A session on an empty log, past its Welcome and Snapshot.
fn started(batch: bool) -> ServerSession {
    let mut session = ServerSession::new(CONFIG, opening(None, batch, 0), 0);
    while let Some(output) = session.poll_output() {
        if let Output::ReadSnapshot = output {
            session.handle_snapshot(Ok((0, State::new())));
        }
    }
    session
}

/// A log that takes no more appends closes the session, after the frames
/// it already said (gathered for a client that reads batches).
#[test]
fn a_closed_log_closes_the_session_after_what_it_said() {
    let mut session = started(true);
    session.handle_frame(
        ClientFrame::Ping(Ping { nonce: 9, t: 1 }),
        1,
        &mut NoLockout,
    );
    session.handle_log_closed();
    let mut seen = Vec::new();
    while let Some(output) = session.poll_output() {
        match output {
            Output::Send(bytes) => {
                for frame in ServerFrame::decode_each(&bytes, usize::MAX) {
                    seen.push(format!("{:?}", frame.unwrap()));
                }
            }
            Output::Close { code, .. } => seen.push(format!("close {code:?}")),
            _ => {}
        }
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].starts_with("Pong"), "{seen:?}");
    assert_eq!(seen[1], "close Unavailable");
}

/// A read answered after the session closed sends nothing: no frame
/// follows a `Close`, whatever the shell does with the outputs.
#[test]
fn nothing_follows_a_close() {
    for batch in [true, false] {
        let mut session = started(batch);
        let mut log = FakeLog::empty();
        log.append(NewEvent::reliable("note", Payload::from(1)));
        session.handle_head(log.head);
        let read = session.poll_output();
        assert!(matches!(read, Some(Output::ReadEvents { .. })), "{read:?}");
        session.handle_log_closed();
        session.handle_events(Ok(log.events.iter().cloned().collect()));
        let mut closed = false;
        while let Some(output) = session.poll_output() {
            match output {
                Output::Close { .. } => closed = true,
                Output::Send(_) => assert!(!closed, "a frame after the close (batch: {batch})"),
                _ => {}
            }
        }
        assert!(closed);
    }
}
