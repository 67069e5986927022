//! The browser's `ClientSession` and the proxy's `ServerSession`, end to
//! end in memory (no sockets): a world that grows the log, publishes from
//! the application, cuts the connection, trims the log, answers appends
//! late and lets time pass, for millions of steps. The application must see
//! every `seq` once, in order, or an explicit gap; every reliable publish it
//! made must be applied exactly once, in order; and once the world calms
//! down, the client must be connected, caught up, with an empty outbox.

use std::collections::VecDeque;

use shared_protocol::backoff::BackoffConfig;
use shared_protocol::client::{
    ClientConfig, ClientSession, Input, LinkState, Notice, Output as ClientOutput, Persisted,
};
use shared_protocol::frame::{ClientFrame, Delivery, ErrorCode, Limits, Payload, State, Welcome};
use shared_protocol::heartbeat::HeartbeatConfig;
use shared_protocol::receiver::Delivered;
use shared_protocol::Millis;

use super::machine::*;
use crate::auth::Role;
use crate::eventlog::{Logged, NewEvent, Published};

const SERVER: SessionConfig = SessionConfig {
    heartbeat_ms: 2_000,
    stale_after_ms: 6_000,
    max_behind: 300,
    replay_page: 16,
    cool_above_lag: 64,
    max_publish_per_sec: 40,
    publish_window: 64,
    max_pending_bytes: 1 << 20,
    mirror_wait_ms: 0,
};

struct Open;

impl Admission for Open {
    fn wall_ms(&self) -> u64 {
        0
    }
    fn ptt_on_allowed(&mut self, _: &str) -> bool {
        true
    }
    fn state_fits(&self, _: &str, _: &Payload) -> bool {
        true
    }
}

struct Log {
    events: VecDeque<Logged>,
    head: u64,
    state: State,
    applied_seq: u64,
    /// The application's note numbers, as applied.
    applied_notes: Vec<u64>,
}

impl Log {
    fn append(&mut self, event: NewEvent) {
        self.head += 1;
        self.state.insert(event.kind.clone(), event.payload.clone());
        self.events
            .push_back(Logged::build(self.head, 0, &event).expect("encodes"));
    }
}

struct World {
    rng: fastrand::Rng,
    now: Millis,
    log: Log,
    client: ClientSession,
    /// The socket the client has open, and the server session behind it
    /// (once its Hello arrived).
    socket: Option<u32>,
    server: Option<ServerSession>,
    /// Appends the log has not answered yet.
    appends: VecDeque<Append>,
    /// What the application saw: the next `seq` it is owed.
    next_seq: u64,
    published: u64,
    overflowed: Vec<u64>,
    rejected: Vec<u64>,
}

impl World {
    fn new(seed: u64) -> World {
        let config = ClientConfig {
            backoff: BackoffConfig {
                base_ms: 200,
                max_ms: 2_000,
                max_attempts: None,
                jitter: 0.3,
            },
            heartbeat: HeartbeatConfig::every(1_000),
            outbox_capacity: 100_000,
            ..ClientConfig::default()
        };
        let restored = Persisted {
            client_id: "c".into(),
            next_client_seq: 1,
            ..Persisted::default()
        };
        let mut world = World {
            rng: fastrand::Rng::with_seed(seed),
            now: 0,
            log: Log {
                events: VecDeque::new(),
                head: 0,
                state: State::new(),
                applied_seq: 0,
                applied_notes: Vec::new(),
            },
            client: ClientSession::new(config, restored, 0, 1_700_000_000_000, seed),
            socket: None,
            server: None,
            appends: VecDeque::new(),
            next_seq: 1,
            published: 0,
            overflowed: Vec::new(),
            rejected: Vec::new(),
        };
        world.client.handle_input(Input::Connect, 0);
        world.settle();
        world
    }

    fn open_server(&mut self, frame: ClientFrame) {
        let ClientFrame::Hello(hello) = frame else {
            panic!("first frame not Hello: {frame:?}");
        };
        let opening = Opening {
            client_id: hello.client_id.clone(),
            role: Role::Control,
            hello,
            epoch: 11,
            head: self.log.head,
            oldest: self.log.events.front().map_or(self.log.head + 1, |e| e.seq),
            welcome: Welcome {
                session: "s".into(),
                epoch: 0,
                head_seq: 0,
                resumed: false,
                heartbeat_ms: SERVER.heartbeat_ms as u32,
                limits: Limits {
                    max_frame_bytes: 65_536,
                    max_publish_per_sec: SERVER.max_publish_per_sec,
                    max_behind: SERVER.max_behind,
                    retention_ms: 60_000,
                    publish_window: Some(SERVER.publish_window),
                },
                access: None,
            },
        };
        self.server = Some(ServerSession::new(SERVER, opening, self.now));
    }

    /// Cuts the connection (both ends learn it).
    fn cut(&mut self, code: u16) {
        if let Some(socket) = self.socket.take() {
            self.server = None;
            self.client.handle_input(
                Input::SocketClosed {
                    socket,
                    code,
                    reason: "cut".into(),
                },
                self.now,
            );
        }
    }

    /// Runs both machines' outputs until neither has any.
    fn settle(&mut self) {
        loop {
            let mut busy = false;
            while let Some(out) = self.client.poll_output() {
                busy = true;
                self.client_output(out);
            }
            if let Some(server) = self.server.as_mut() {
                server.handle_write_progress(0, self.now);
            }
            while let Some(out) = self.server.as_mut().and_then(|s| s.poll_output()) {
                busy = true;
                self.server_output(out);
            }
            if !busy {
                return;
            }
        }
    }

    fn client_output(&mut self, out: ClientOutput) {
        match out {
            ClientOutput::OpenSocket { socket } => {
                self.server = None;
                self.socket = Some(socket);
                self.client
                    .handle_input(Input::SocketOpened { socket }, self.now);
            }
            ClientOutput::CloseSocket { socket, .. } => {
                if self.socket == Some(socket) {
                    self.socket = None;
                    self.server = None;
                }
            }
            ClientOutput::Transmit { socket, bytes } => {
                if self.socket != Some(socket) {
                    return;
                }
                let frame = ClientFrame::decode(&bytes, usize::MAX).expect("client frames decode");
                match self.server.as_mut() {
                    None => self.open_server(frame),
                    Some(server) => server.handle_frame(frame, self.now, &mut Open),
                }
            }
            ClientOutput::Deliver(d) => match d {
                Delivered::Event(e) => {
                    assert_eq!(e.seq, self.next_seq, "delivered out of order or twice");
                    self.next_seq += 1;
                }
                Delivered::Gap(g) => {
                    assert!(
                        g.from <= self.next_seq && g.to + 1 >= self.next_seq,
                        "{g:?} at {}",
                        self.next_seq
                    );
                    self.next_seq = g.to + 1;
                }
                Delivered::Snapshot(s) => {
                    assert!(s.upto + 1 >= self.next_seq, "snapshot behind");
                    self.next_seq = s.upto + 1;
                }
            },
            ClientOutput::Notify(Notice::OutboxOverflow { client_seq, .. }) => {
                self.overflowed.push(client_seq)
            }
            ClientOutput::Notify(Notice::Rejected { client_seq, .. }) => {
                self.rejected.push(client_seq)
            }
            ClientOutput::Notify(_)
            | ClientOutput::PersistCursor { .. }
            | ClientOutput::PersistOutbox { .. } => {}
        }
    }

    fn server_output(&mut self, out: Output) {
        let socket = self.socket;
        let Some(server) = self.server.as_mut() else {
            return;
        };
        match out {
            Output::Send(bytes) => {
                if let Some(socket) = socket {
                    self.client.handle_input(
                        Input::Received {
                            socket,
                            bytes: bytes.to_vec(),
                        },
                        self.now,
                    );
                }
            }
            Output::ReadEvents { from, limit } => {
                let events = self
                    .log
                    .events
                    .iter()
                    .filter(|e| e.seq >= from)
                    .take(limit)
                    .cloned()
                    .collect();
                server.handle_events(Ok(events));
            }
            Output::ReadSnapshot => {
                server.handle_snapshot(Ok((self.log.head, self.log.state.clone())));
            }
            Output::Append(append) => self.appends.push_back(append),
            Output::Report(_) => {}
            Output::Close { code, message } => {
                assert!(
                    matches!(code, ErrorCode::Stale),
                    "closed with {code:?}: {message}"
                );
                self.cut(4008);
            }
        }
    }

    /// The log answers the oldest append.
    fn answer_append(&mut self) {
        let Some(append) = self.appends.pop_front() else {
            return;
        };
        let result = if append.client_seq <= self.log.applied_seq {
            Published::Duplicate
        } else if append.after.is_some_and(|a| a > self.log.applied_seq) {
            Published::OutOfOrder
        } else {
            self.log.applied_seq = append.client_seq;
            if let Payload::Integer(n) = &append.event.payload {
                let n = n.as_u64().expect("note numbers");
                assert_eq!(n, append.client_seq, "client_seq follows the notes");
                self.log.applied_notes.push(n);
            }
            self.log.append(append.event.clone());
            Published::Applied(self.log.head)
        };
        let head = self.log.head;
        if let Some(server) = self.server.as_mut() {
            // A session cut meanwhile never hears back: its client resends.
            server.handle_published(append.client_seq, Ok(result), self.now, &mut Open);
            server.handle_head(head);
        }
    }

    fn grow(&mut self, volatile: bool) {
        let event = if volatile {
            NewEvent::volatile("meter.power", Payload::from(self.rng.u64(0..100)))
        } else {
            NewEvent::reliable("radio.state", Payload::from(self.rng.u64(0..100)))
        };
        self.log.append(event);
        let head = self.log.head;
        if let Some(server) = self.server.as_mut() {
            server.handle_head(head);
        }
    }

    /// Time passes to `until`, waking each machine when it asked.
    fn advance(&mut self, until: Millis) {
        loop {
            let client_at = self.client.poll_timeout().unwrap_or(Millis::MAX);
            let server_at = self
                .server
                .as_ref()
                .map_or(Millis::MAX, |s| s.poll_timeout());
            let at = client_at.min(server_at).max(self.now);
            if at > until {
                break;
            }
            self.now = at;
            if client_at <= at {
                self.client.handle_timeout(self.now);
            }
            if let Some(server) = self.server.as_mut() {
                if server_at <= at {
                    server.handle_timeout(self.now, &mut Open);
                }
            }
            self.settle();
        }
        self.now = until;
    }

    fn step(&mut self, calm: bool) {
        match self.rng.u32(0..100) {
            0..=19 => {
                let volatile = self.rng.bool();
                self.grow(volatile)
            }
            20..=29 if !calm => {
                self.published += 1;
                self.client.handle_input(
                    Input::Publish {
                        kind: "note".into(),
                        payload: Payload::from(self.published),
                        delivery: Delivery::Reliable,
                        ttl_ms: None,
                    },
                    self.now,
                );
            }
            30 if !calm && self.rng.u32(0..5) == 0 => self.cut(1006),
            32 if !calm => {
                let n = self.rng.usize(0..50);
                for _ in 0..n.min(self.log.events.len()) {
                    self.log.events.pop_front();
                }
            }
            33..=59 => {
                // The log answers what a group commit would take.
                for _ in 0..self.rng.usize(1..=16) {
                    self.answer_append();
                }
            }
            _ => {
                let until = self.now + self.rng.u64(1..300);
                self.advance(until);
            }
        }
        self.settle();
    }
}

/// Steps per run: `SESSION_PAIRING_STEPS` (default 120,000, in two seeds;
/// docs/BENCHMARKS.md gives a run of millions).
fn steps() -> u64 {
    std::env::var("SESSION_PAIRING_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120_000)
}

#[test]
fn client_and_server_sessions_agree_for_millions_of_steps() {
    let seeds = 2;
    let started = std::time::Instant::now();
    for seed in 0..seeds {
        let mut world = World::new(seed);
        for _ in 0..steps() / seeds {
            world.step(false);
        }
        // Calm: no cuts, no new publishes; the log keeps answering.
        for _ in 0..100_000 {
            world.step(true);
        }
        while !world.appends.is_empty() {
            world.answer_append();
            world.settle();
        }
        let until = world.now + 30_000;
        world.advance(until);
        while !world.appends.is_empty() {
            world.answer_append();
            world.settle();
        }
        let until = world.now + 5_000;
        world.advance(until);
        assert_eq!(world.client.state(), LinkState::Connected, "seed {seed}");
        assert_eq!(world.next_seq, world.log.head + 1, "seed {seed}: caught up");
        let first = world.client.outbox().next().map(|p| p.client_seq);
        assert_eq!(
            world.client.outbox().count(),
            0,
            "seed {seed}: outbox drained (first {first:?}, applied up to {}, {} appends queued)",
            world.log.applied_seq,
            world.appends.len()
        );
        assert!(world.overflowed.is_empty() && world.rejected.is_empty());
        let expected: Vec<u64> = (1..=world.published).collect();
        assert_eq!(
            world.log.applied_notes, expected,
            "seed {seed}: every note applied once, in order"
        );
        assert!(
            world.published > 1_000,
            "the run published ({})",
            world.published
        );
    }
    eprintln!(
        "{} steps in {:.1} s ({:.0} steps/s)",
        steps(),
        started.elapsed().as_secs_f64(),
        steps() as f64 / started.elapsed().as_secs_f64()
    );
}
