//! The proxy's side of one connection as a sans-IO state machine: every
//! decision a session makes, none of its I/O.
//!
//! [`ServerSession`] takes inputs (a frame from the client, the log's head
//! moving, the answer to a read, the result of an append, how the outbound
//! queue is doing, the time) and returns outputs (frames to write, reads and
//! appends to make, reports for the registry, a close) through
//! [`ServerSession::poll_output`], and says when it next needs to be woken
//! with [`ServerSession::poll_timeout`]. It reads no clock, opens no socket
//! and never waits, so the shell in `session/mod.rs` stays a mover of bytes
//! and the rules below can be property-tested with a fake clock and a fake
//! log (`tests` at the bottom).
//!
//! The rules it owns:
//! - **Handshake**: the start plan ([`plan_start`]): resume, gap, snapshot.
//! - **Flow**: events go out a page at a time; at most `window` events are
//!   sent and unacknowledged. A `Gap` or a `Snapshot` never needs an ack: the
//!   stream continues after them by itself.
//! - **Jump-ahead**: a client more than `max_behind` behind gets a `Gap
//!   {too_far_behind}` and a `Snapshot`; coalescing of superseded volatile
//!   events for a hot client; retention gaps when the log was trimmed.
//! - **Publishes**: read at once, always (control frames are never stuck
//!   behind them), queued in arrival order up to `publish_window`, admitted
//!   and rate-limited at the head of the queue, handed to the log one after
//!   the other in that order, and answered in that order: `Accepted{upto}`
//!   never covers a publish that is not applied or already `Rejected`.
//! - **Liveness**: pings on the heartbeat; a client silent for
//!   `stale_after_ms` is stale; so is one whose outbound queue makes no
//!   progress for `stale_after_ms` (it stopped reading), or holds more than
//!   `max_pending_bytes` — judged from the queue's state, never by waiting
//!   on a write.

use std::collections::{HashSet, VecDeque};

use bytes::{Bytes, BytesMut};
use shared_protocol::frame::{
    ClientFrame, Delivery, ErrorCode, Gap, GapReason, Hello, Ping, Publish, RejectReason, Rejected,
    ServerFrame, Snapshot, State, Welcome,
};
use shared_protocol::heartbeat::{Heartbeat, HeartbeatAction, HeartbeatConfig};
use shared_protocol::peerclock::PeerClock;
use shared_protocol::Millis;

use crate::auth::Role;
use crate::eventlog::{Logged, NewEvent, Published};
use crate::policy::{admit, plan_start, Clocks, RateBucket, Start};
use crate::registry::Progress;

/// Every integer on the wire stays below 2^53 (a JavaScript number).
pub const MAX_CLIENT_SEQ: u64 = (1 << 53) - 1;

/// How long a clock sample counts (see `shared_protocol::peerclock`).
const CLOCK_WINDOW_MS: u64 = 60_000;

/// Most bytes of frames in one message to a client that reads batches
/// (`Hello{batch}`); a frame this large or larger goes in a message alone.
/// Small enough that a flow window (512 events of about 100 bytes) spans
/// several messages: a client that acknowledges once per message it has
/// read (loadgen's) would otherwise leave the proxy waiting for the ack of
/// the whole window before sending more (stop-and-wait; 64 KiB lost a
/// fifth of the throughput in `loadgen throughput`).
pub const BATCH_BYTES: usize = 16 * 1024;
/// The buffer a batch starts in while it is small; a larger batch gets a
/// buffer of `BATCH_BYTES`. Consecutive messages share a buffer, so what a
/// session keeps besides what is queued is one buffer: 4 KiB, or 16 KiB
/// after a burst.
const BATCH_CHUNK: usize = 4 * 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionConfig {
    pub heartbeat_ms: u64,
    pub stale_after_ms: u64,
    pub max_behind: u32,
    pub replay_page: u32,
    pub cool_above_lag: u32,
    pub max_publish_per_sec: u32,
    /// Reliable publishes a client may have sent and not yet had answered
    /// (volatile ones beyond it are refused).
    pub publish_window: u32,
    /// Outbound bytes queued and not yet written: above a quarter of this no
    /// more events are queued; above all of it the client is too slow and
    /// is closed.
    pub max_pending_bytes: u64,
    /// How long a client resuming past this proxy's head waits for it (a
    /// shared log's mirror catching up) before it is sent away with a
    /// `Drain`; 0: no waiting (the embedded log, whose head is the log's).
    pub mirror_wait_ms: u64,
}

impl SessionConfig {
    /// Events per page, and how many may be unacknowledged: two pages, so
    /// the next page goes out only once the client has acknowledged the one
    /// before (a client far behind is replayed at the pace it confirms, in
    /// bounded memory), and never more than `max_behind`.
    pub fn flow(&self) -> (u64, u64) {
        let page = u64::from(self.replay_page.max(1));
        (page, u64::from(self.max_behind.max(1)).min(2 * page))
    }
}

/// What the session knows when it starts, besides the configuration.
pub struct Opening {
    pub client_id: String,
    pub role: Role,
    pub hello: Hello,
    /// The log as it is now.
    pub epoch: u64,
    pub head: u64,
    pub oldest: u64,
    /// The `Welcome` to send, with `epoch`, `head_seq` and `resumed` filled
    /// in here.
    pub welcome: Welcome,
}

/// What the shell provides for admission that is not the session's own:
/// the wall clock (for clients that never said what theirs reads) and the
/// TX watchdog's time-out lock-out, which spans sessions.
pub trait Admission {
    fn wall_ms(&self) -> u64;
    /// May this client key the transmitter now?
    fn ptt_on_allowed(&mut self, client_id: &str) -> bool;
    /// Does the station state have room for `kind` taking this value?
    fn state_fits(&self, kind: &str, payload: &shared_protocol::frame::Payload) -> bool;
}

/// A publish admitted, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Append {
    pub client_seq: u64,
    /// The `client_seq` this session handed to the log just before, if
    /// any: the log applies this one only after that one, so an append that
    /// overtook its predecessor anywhere on the way is refused, not taken
    /// for a duplicate (see `eventlog::store`).
    pub after: Option<u64>,
    pub event: NewEvent,
    /// `Some(on)` for a PTT command: it feeds the TX watchdog once applied.
    pub ptt: Option<bool>,
}

/// How a publish ended, for counters, logs and the watchdog.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishReport {
    Applied {
        client_seq: u64,
        ptt: Option<bool>,
    },
    Duplicate {
        client_seq: u64,
    },
    Rejected {
        client_seq: u64,
        kind: String,
        reason: RejectReason,
    },
}

/// Things the registry, metrics and logs want to know.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// The start plan is done: the client has everything up to `has_upto`.
    Welcomed {
        has_upto: u64,
        resumed: bool,
        from: u64,
    },
    /// A frame arrived.
    Activity(Millis),
    Acked(u64),
    /// A heartbeat round: its round-trip time, or `None` for no answer.
    Health(Option<u64>, Millis),
    Progress(Progress),
    Publish(PublishReport),
    TooFarBehind {
        from: u64,
        upto: u64,
    },
    /// The client resumed past this proxy's mirror, which did not catch up.
    MirrorBehind {
        head: u64,
        last_seq: u64,
    },
    Stale {
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An encoded frame to write (events as the log stored them).
    Send(Bytes),
    /// Read up to `limit` events from `from` on and give them to
    /// [`ServerSession::handle_events`].
    ReadEvents {
        from: u64,
        limit: usize,
    },
    /// Read the log's snapshot and give it to [`ServerSession::handle_snapshot`].
    ReadSnapshot,
    Append(Append),
    Report(Report),
    /// Send an `Error` frame with this code if the socket still takes
    /// data, close, and stop. Nothing else follows.
    Close {
        code: ErrorCode,
        message: String,
    },
}

/// One publish between arrival and answer.
#[derive(Debug)]
enum Pending {
    /// Not yet admitted (waits its turn, or for the rate bucket).
    Queued(Publish),
    /// Handed to the log; waiting for its result.
    InLog {
        client_seq: u64,
        ptt: Option<bool>,
        reliable: bool,
    },
    /// Answered by the log or refused; waits for everything before it.
    Done {
        client_seq: u64,
        refused: Option<RejectReason>,
        reliable: bool,
    },
}

/// Why a snapshot was asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SnapshotFor {
    Start,
    Jump { from: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    Idle,
    Events,
    Snapshot(SnapshotFor),
}

pub struct ServerSession {
    config: SessionConfig,
    client_id: String,
    role: Role,
    /// Next event to send.
    cursor: u64,
    /// Everything up to here the client has (acknowledged, or skipped by a
    /// gap or snapshot it was sent).
    acked: u64,
    /// Events sent and not yet acknowledged, oldest first.
    unacked: VecDeque<u64>,
    head: u64,
    reading: Reading,
    started: bool,
    last_rx: Millis,
    heartbeat: Heartbeat,
    bucket: RateBucket,
    /// When the reliable publish at the head of the queue may have a token.
    bucket_wait_until: Option<Millis>,
    peer_clock: PeerClock,
    pending: VecDeque<Pending>,
    /// `pending[..first_queued]` are all handed to the log or done: admission
    /// resumes here instead of walking the whole window on every publish.
    first_queued: usize,
    /// How many of `pending` are reliable (the publish window counts them).
    reliable_pending: usize,
    last_forwarded: Option<u64>,
    /// Outbound bytes queued and not yet written, and when the writer last
    /// finished a write (or the queue was last empty).
    pending_bytes: u64,
    last_write_progress: Millis,
    outputs: VecDeque<Output>,
    /// The client reads several frames from one message (`Hello{batch}`).
    batch: bool,
    /// For such a client, the frames since the last `Output::Send`, back
    /// to back: one message, handed out when `outputs` runs dry, before a
    /// close, or at `BATCH_BYTES`.
    gathered: BytesMut,
    closed: bool,
    /// Not welcomed yet: the client resumes past this proxy's head.
    waiting: Option<Waiting>,
}

/// A client ahead of a lagging mirror, waiting for it to catch up.
struct Waiting {
    last_seq: u64,
    until: Millis,
    opening: Opening,
}

impl ServerSession {
    pub fn new(config: SessionConfig, opening: Opening, now: Millis) -> Self {
        let mut peer_clock = PeerClock::new(CLOCK_WINDOW_MS);
        if let Some(t) = opening.hello.t {
            peer_clock.sample(t, now);
        }
        let mut session = ServerSession {
            config,
            client_id: opening.client_id.clone(),
            role: opening.role,
            cursor: opening.head + 1,
            acked: opening.head,
            unacked: VecDeque::new(),
            head: opening.head,
            reading: Reading::Idle,
            started: false,
            last_rx: now,
            heartbeat: Heartbeat::new(
                HeartbeatConfig {
                    interval_ms: config.heartbeat_ms,
                    timeout_ms: config.heartbeat_ms,
                },
                now,
            ),
            bucket: RateBucket::new(config.max_publish_per_sec, now),
            bucket_wait_until: None,
            peer_clock,
            pending: VecDeque::new(),
            first_queued: 0,
            reliable_pending: 0,
            last_forwarded: None,
            pending_bytes: 0,
            last_write_progress: now,
            outputs: VecDeque::new(),
            batch: opening.hello.batch,
            gathered: BytesMut::new(),
            closed: false,
            waiting: None,
        };
        match opening.hello.resume {
            // The client is ahead of this proxy's copy of the same log (a
            // shared log's mirror that lags): its history exists, so wait
            // for the mirror instead of calling it lost.
            Some(r)
                if r.epoch == opening.epoch
                    && r.last_seq > opening.head
                    && config.mirror_wait_ms > 0 =>
            {
                session.waiting = Some(Waiting {
                    last_seq: r.last_seq,
                    until: now + config.mirror_wait_ms,
                    opening,
                });
            }
            _ => session.start(opening),
        }
        session
    }

    /// Welcome and the start plan, against the log's head as it is now.
    fn start(&mut self, opening: Opening) {
        let head = self.head.max(opening.head);
        let start = plan_start(
            opening.hello.resume,
            opening.epoch,
            head,
            opening.oldest,
            u64::from(self.config.max_behind),
        );
        let session = self;
        session.cursor = head + 1;
        session.acked = head;
        let resumed = matches!(start, Start::Replay { .. });
        let mut welcome = opening.welcome;
        welcome.epoch = opening.epoch;
        welcome.head_seq = head;
        welcome.resumed = resumed;
        session.send(ServerFrame::Welcome(welcome));
        match start {
            Start::Replay { from, gap } => {
                if let Some(gap) = gap {
                    session.send(ServerFrame::Gap(gap));
                }
                session.cursor = from;
                session.acked = from - 1;
                session.started = true;
                session.report(Report::Welcomed {
                    has_upto: from - 1,
                    resumed,
                    from,
                });
            }
            Start::Snapshot { gap } => {
                if let Some(gap) = gap {
                    session.send(ServerFrame::Gap(gap));
                }
                session.reading = Reading::Snapshot(SnapshotFor::Start);
                session.outputs.push_back(Output::ReadSnapshot);
            }
        }
        session.pump_events();
    }

    /// The next event this session would send.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next output. The frames gathered for a client that reads
    /// batches come out as one `Send` once the other outputs are taken: the
    /// shell carries out reads as it takes them, so a wake-up's frames end
    /// up in one message.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            self.hand_out_gathered();
        }
        self.outputs.pop_front()
    }

    /// Whether [`ServerSession::poll_output`] has something.
    #[cfg(test)]
    pub fn poll_output_pending(&self) -> bool {
        !self.outputs.is_empty() || !self.gathered.is_empty()
    }

    /// When [`ServerSession::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Millis {
        if let Some(w) = &self.waiting {
            return w.until;
        }
        let mut at = self
            .heartbeat
            .poll_timeout()
            .min(self.last_rx + self.config.stale_after_ms);
        if self.pending_bytes > 0 {
            at = at.min(self.last_write_progress + self.config.stale_after_ms);
        }
        if let Some(wait) = self.bucket_wait_until {
            at = at.min(wait);
        }
        at
    }

    /// A frame from the client.
    pub fn handle_frame(&mut self, frame: ClientFrame, now: Millis, env: &mut dyn Admission) {
        if self.closed {
            return;
        }
        self.last_rx = self.last_rx.max(now);
        self.heartbeat.on_traffic(now);
        self.report(Report::Activity(now));
        match frame {
            ClientFrame::Hello(_) => {
                self.close(ErrorCode::ProtocolViolation, "Hello may only be sent once")
            }
            ClientFrame::Ack { upto } => self.on_ack(upto),
            ClientFrame::Ping(ping) => self.send(ServerFrame::Pong(ping)),
            ClientFrame::Pong(pong) => {
                if let Some(rtt) = self.heartbeat.on_pong(pong.nonce, now) {
                    self.report(Report::Health(Some(rtt), now));
                }
            }
            ClientFrame::Publish(publish) => self.on_publish(publish, now, env),
        }
    }

    /// The log's durable head moved.
    pub fn handle_head(&mut self, head: u64) {
        self.head = self.head.max(head);
        if self
            .waiting
            .as_ref()
            .is_some_and(|w| self.head >= w.last_seq)
        {
            if let Some(w) = self.waiting.take() {
                self.start(w.opening);
            }
        }
        self.pump_events();
    }

    /// The answer to [`Output::ReadEvents`] (the shell lends them instead:
    /// [`ServerSession::handle_events_lent`]).
    #[cfg(test)]
    pub fn handle_events(&mut self, events: Result<Vec<Logged>, String>) {
        match events {
            Ok(events) => self.handle_events_lent(Ok(&events.iter().collect::<Vec<_>>())),
            Err(e) => self.handle_events_lent(Err(e)),
        }
    }

    /// [`ServerSession::handle_events`] on events the log lends (its
    /// in-memory tail): only the frames to send are kept.
    pub fn handle_events_lent(&mut self, events: Result<&[&Logged], String>) {
        if self.reading != Reading::Events {
            return;
        }
        self.reading = Reading::Idle;
        match events {
            Ok(events) => self.send_batch(events),
            Err(e) => self.close(ErrorCode::Unavailable, &format!("cannot read the log: {e}")),
        }
        self.pump_events();
    }

    /// The answer to [`Output::ReadSnapshot`].
    pub fn handle_snapshot(&mut self, snapshot: Result<(u64, State), String>) {
        let Reading::Snapshot(purpose) = self.reading else {
            return;
        };
        self.reading = Reading::Idle;
        let (upto, state) = match snapshot {
            Ok(s) => s,
            Err(e) => {
                return self.close(ErrorCode::Unavailable, &format!("cannot read the log: {e}"));
            }
        };
        self.head = self.head.max(upto);
        match purpose {
            SnapshotFor::Start => {
                self.send(ServerFrame::Snapshot(Snapshot { upto, state }));
                self.started = true;
                self.report(Report::Welcomed {
                    has_upto: upto,
                    resumed: false,
                    from: upto + 1,
                });
            }
            SnapshotFor::Jump { from } => {
                self.send(ServerFrame::Gap(Gap {
                    from,
                    to: upto,
                    reason: GapReason::TooFarBehind,
                }));
                self.send(ServerFrame::Snapshot(Snapshot { upto, state }));
                self.report(Report::TooFarBehind { from, upto });
                self.report(Report::Progress(Progress {
                    cursor: upto + 1,
                    temperature: 1.0,
                    cooled: true,
                    ..Progress::default()
                }));
            }
        }
        // The client has the state up to here: nothing before it waits for
        // an ack, and the stream goes on at once.
        self.cursor = upto + 1;
        self.acked = self.acked.max(upto);
        self.unacked.clear();
        self.pump_events();
    }

    /// The log's answer to an [`Output::Append`], in the order they were made
    /// (the shell gives a commit's answers together:
    /// [`ServerSession::handle_published_all`]).
    #[cfg(test)]
    pub fn handle_published(
        &mut self,
        client_seq: u64,
        result: Result<Published, String>,
        now: Millis,
        env: &mut dyn Admission,
    ) {
        self.handle_published_all(std::iter::once((client_seq, result)), now, env);
    }

    /// Several answers of the log at once (one commit's), in the order the
    /// appends were made: one `Accepted` covers the whole run of applied ones.
    pub fn handle_published_all(
        &mut self,
        results: impl IntoIterator<Item = (u64, Result<Published, String>)>,
        now: Millis,
        env: &mut dyn Admission,
    ) {
        let mut any = false;
        // Answers come in the order of the queue: each search starts after
        // the last one found.
        let mut from = 0;
        for (client_seq, result) in results {
            match self.record_published(client_seq, result, from) {
                Some(Some(index)) => {
                    any = true;
                    from = index + 1;
                }
                Some(None) => {}
                None => return,
            }
        }
        if any {
            self.answer_publishes();
            self.pump_publishes(now, env);
        }
    }

    /// Marks one publish done: `Some(Some(index))` where it is in the
    /// queue, `Some(None)` if it was not waiting for the log, `None` if the
    /// session closed over it. The search starts at `from`.
    fn record_published(
        &mut self,
        client_seq: u64,
        result: Result<Published, String>,
        from: usize,
    ) -> Option<Option<usize>> {
        let find = |skip: usize| {
            self.pending
                .iter()
                .enumerate()
                .skip(skip)
                .find_map(|(i, p)| match p {
                    Pending::InLog {
                        client_seq: s,
                        ptt,
                        reliable,
                    } if *s == client_seq => Some((i, *ptt, *reliable)),
                    _ => None,
                })
        };
        let Some((index, ptt, reliable)) = find(from).or_else(|| find(0)) else {
            return Some(None);
        };
        match result {
            Ok(outcome @ (Published::Applied(_) | Published::Duplicate)) => {
                self.report(Report::Publish(match outcome {
                    Published::Applied(_) => PublishReport::Applied { client_seq, ptt },
                    _ => PublishReport::Duplicate { client_seq },
                }));
                self.pending[index] = Pending::Done {
                    client_seq,
                    refused: None,
                    reliable,
                };
                Some(Some(index))
            }
            Ok(Published::OutOfOrder) => {
                // Never acknowledged: the client sends it again on its next
                // connection, in order.
                self.close(
                    ErrorCode::Unavailable,
                    "a publish reached the log out of order; reconnect and send again",
                );
                None
            }
            Err(e) => {
                self.close(
                    ErrorCode::Unavailable,
                    &format!("cannot store events now: {e}"),
                );
                None
            }
        }
    }

    /// The outbound queue's state: bytes not yet written, and when the
    /// writer last finished a write. Call it once every output so far has
    /// been carried out (the bytes of the frames sent included).
    pub fn handle_write_progress(&mut self, pending_bytes: u64, last_progress: Millis) {
        let was_full = self.pending_bytes >= self.soft_pending_limit();
        self.pending_bytes = pending_bytes;
        self.last_write_progress = self.last_write_progress.max(last_progress);
        if pending_bytes > self.config.max_pending_bytes {
            let why = format!("the client is too slow: {pending_bytes} bytes unwritten");
            self.report(Report::Stale { why: why.clone() });
            return self.close(ErrorCode::Stale, &why);
        }
        if was_full && self.pending_bytes < self.soft_pending_limit() {
            self.pump_events();
        }
    }

    /// Whether the machine waits on the writer: events stay unqueued until
    /// the outbound queue drains below its soft limit, so the shell must
    /// report the writer's progress as soon as it is made. Otherwise the
    /// progress it reports with the next input is enough.
    pub fn waits_on_writer(&self) -> bool {
        !self.closed && self.pending_bytes >= self.soft_pending_limit()
    }

    /// The log took no more appends (the proxy is stopping, or its writer
    /// is gone): the session closes, after the frames it already said.
    pub fn handle_log_closed(&mut self) {
        self.close(ErrorCode::Unavailable, "the event log is closed");
    }

    pub fn handle_timeout(&mut self, now: Millis, env: &mut dyn Admission) {
        if self.closed {
            return;
        }
        if let Some(w) = &self.waiting {
            if now >= w.until {
                // Never "epoch changed" for a history that exists: tell the
                // client to come back (or try another proxy) instead.
                let message = format!(
                    "this proxy's copy of the log is at {}, behind your {}: try another proxy, or come back shortly",
                    self.head, w.last_seq
                );
                let (head, last_seq) = (self.head, w.last_seq);
                self.send(ServerFrame::Drain(shared_protocol::frame::Drain {
                    retry_after_ms: 1_000,
                    jitter_ms: 1_000,
                    reason: shared_protocol::frame::DrainReason::Overload,
                }));
                self.report(Report::MirrorBehind { head, last_seq });
                return self.close(ErrorCode::Unavailable, &message);
            }
            return;
        }
        if now >= self.last_rx + self.config.stale_after_ms {
            let why = format!("no traffic for {} ms", now - self.last_rx);
            self.report(Report::Stale { why: why.clone() });
            return self.close(ErrorCode::Stale, &why);
        }
        if self.pending_bytes > 0 && now >= self.last_write_progress + self.config.stale_after_ms {
            let why = format!(
                "the client stopped reading ({} bytes unwritten for {} ms)",
                self.pending_bytes,
                now - self.last_write_progress
            );
            self.report(Report::Stale { why: why.clone() });
            return self.close(ErrorCode::Stale, &why);
        }
        match self.heartbeat.handle_timeout(now) {
            Some(HeartbeatAction::SendPing { nonce }) => {
                self.send(ServerFrame::Ping(Ping { nonce, t: now }))
            }
            Some(HeartbeatAction::Stale { .. }) => {
                // No pong within an interval: a failed health check. The
                // connection closes only after stale_after_ms of silence.
                self.report(Report::Health(None, now));
                self.heartbeat.restart(now);
            }
            None => {}
        }
        if self.bucket_wait_until.is_some_and(|at| now >= at) {
            self.bucket_wait_until = None;
            self.pump_publishes(now, env);
        }
    }

    fn soft_pending_limit(&self) -> u64 {
        (self.config.max_pending_bytes / 4).max(1)
    }

    fn send(&mut self, frame: ServerFrame) {
        // The frame types always encode; an empty message would be decoded
        // as truncated by the client, the honest outcome if one ever does not.
        self.send_bytes(&Bytes::from(frame.encode().unwrap_or_default()));
    }

    /// Counted at once, so the flow rules see what is queued before the
    /// shell reports the writer's state again. For a client that reads
    /// batches the frame is copied into the message being gathered: copying
    /// a hundred bytes costs less than sharing the event's buffer, whose
    /// reference count every session on every core would touch, and the
    /// writer then frames one message instead of one per event.
    fn send_bytes(&mut self, bytes: &Bytes) {
        if self.closed {
            // Nothing follows a `Close` (a read answered after it, say).
            return;
        }
        self.pending_bytes += bytes.len() as u64;
        if !self.batch || bytes.len() >= BATCH_BYTES {
            self.hand_out_gathered();
            self.outputs.push_back(Output::Send(bytes.clone()));
            return;
        }
        if self.gathered.len() + bytes.len() > BATCH_BYTES {
            self.hand_out_gathered();
        }
        if self.gathered.capacity() - self.gathered.len() < bytes.len() {
            // A fresh buffer, not `reserve` (which may reclaim and double
            // the old one): buffers are never larger than `BATCH_BYTES`.
            let need = self.gathered.len() + bytes.len();
            let size = if need <= BATCH_CHUNK {
                BATCH_CHUNK
            } else {
                BATCH_BYTES
            };
            let mut fresh = BytesMut::with_capacity(size);
            fresh.extend_from_slice(&self.gathered);
            self.gathered = fresh;
        }
        self.gathered.extend_from_slice(bytes);
    }

    /// The frames gathered so far, as one message.
    fn hand_out_gathered(&mut self) {
        if !self.gathered.is_empty() {
            let message = self.gathered.split().freeze();
            self.outputs.push_back(Output::Send(message));
        }
    }

    fn report(&mut self, report: Report) {
        self.outputs.push_back(Output::Report(report));
    }

    fn close(&mut self, code: ErrorCode, message: &str) {
        if self.closed {
            return;
        }
        self.closed = true;
        // What was said before the close goes out before it.
        self.hand_out_gathered();
        self.outputs.push_back(Output::Close {
            code,
            message: message.to_string(),
        });
    }

    fn on_ack(&mut self, upto: u64) {
        let upto = upto.min(self.cursor.saturating_sub(1));
        if upto > self.acked {
            self.acked = upto;
            self.report(Report::Acked(upto));
        }
        while self.unacked.front().is_some_and(|&seq| seq <= upto) {
            self.unacked.pop_front();
        }
        self.pump_events();
    }

    fn on_publish(&mut self, publish: Publish, now: Millis, env: &mut dyn Admission) {
        let window = self.config.publish_window as usize;
        let reliable = publish.delivery == Delivery::Reliable;
        // The window is the client's to keep for reliable publishes; volatile
        // ones beyond it are refused (so the queue stays under two windows).
        if (self.pending.len() >= window && !reliable) || self.reliable_pending >= window {
            if !reliable {
                // Refused at once; it covers nothing queued before it.
                let (client_seq, reason) = (publish.client_seq, RejectReason::RateLimited);
                self.report(Report::Publish(PublishReport::Rejected {
                    client_seq,
                    kind: publish.kind,
                    reason,
                }));
                return self.send(ServerFrame::Rejected(Rejected { client_seq, reason }));
            }
            return self.close(
                ErrorCode::ProtocolViolation,
                &format!(
                    "more than {} publishes unanswered (Welcome.limits.publish_window)",
                    self.config.publish_window
                ),
            );
        }
        if let (Some(deadline), Some(ttl)) = (publish.expires_at_ms, publish.ttl_ms) {
            // When the client created it, on its clock: a sample.
            self.peer_clock.sample(deadline.saturating_sub(ttl), now);
        }
        if reliable {
            self.reliable_pending += 1;
        }
        self.pending.push_back(Pending::Queued(publish));
        self.pump_publishes(now, env);
    }

    /// Admits queued publishes in arrival order and hands them to the log,
    /// until one has to wait for the rate bucket.
    fn pump_publishes(&mut self, now: Millis, env: &mut dyn Admission) {
        if self.closed || self.bucket_wait_until.is_some() {
            return;
        }
        let mut index = self.first_queued.min(self.pending.len());
        while index < self.pending.len() {
            let Pending::Queued(publish) = &self.pending[index] else {
                index += 1;
                continue;
            };
            let client_seq = publish.client_seq;
            let reliable = publish.delivery == Delivery::Reliable;
            match self.admit(publish, now, env) {
                Err(reason) => {
                    let kind = publish.kind.clone();
                    self.report(Report::Publish(PublishReport::Rejected {
                        client_seq,
                        kind,
                        reason,
                    }));
                    self.pending[index] = Pending::Done {
                        client_seq,
                        refused: Some(reason),
                        reliable,
                    };
                }
                Ok(()) => match self.bucket.take(now) {
                    Err(wait_ms) if reliable => {
                        // Waits at the head of the queue: backpressure on
                        // publishes only; acks and pings are still read.
                        self.bucket_wait_until = Some(now + wait_ms.max(1));
                        break;
                    }
                    Err(_) => {
                        let kind = publish.kind.clone();
                        self.report(Report::Publish(PublishReport::Rejected {
                            client_seq,
                            kind,
                            reason: RejectReason::RateLimited,
                        }));
                        self.pending[index] = Pending::Done {
                            client_seq,
                            refused: Some(RejectReason::RateLimited),
                            reliable,
                        };
                    }
                    Ok(()) => {
                        let keys =
                            shared_protocol::keys_transmitter(&publish.kind, &publish.payload);
                        let ptt = shared_protocol::is_transmit_kind(&publish.kind).then_some(keys);
                        let Pending::Queued(publish) = std::mem::replace(
                            &mut self.pending[index],
                            Pending::InLog {
                                client_seq,
                                ptt,
                                reliable,
                            },
                        ) else {
                            unreachable!("checked above");
                        };
                        let append = Append {
                            client_seq,
                            after: self.last_forwarded,
                            event: NewEvent {
                                kind: publish.kind,
                                payload: publish.payload,
                                volatile: publish.delivery == Delivery::Volatile,
                                // The shell marks kinds of `stateless_kinds`.
                                stateless: false,
                            },
                            ptt,
                        };
                        self.last_forwarded = Some(client_seq);
                        self.outputs.push_back(Output::Append(append));
                    }
                },
            }
            index += 1;
        }
        // Everything before `index` is in the log or done (a publish waiting
        // for the bucket stays queued, and so does all after it).
        self.first_queued = index;
        self.answer_publishes();
    }

    fn admit(
        &self,
        publish: &Publish,
        now: Millis,
        env: &mut dyn Admission,
    ) -> Result<(), RejectReason> {
        if publish.client_seq == 0 || publish.client_seq > MAX_CLIENT_SEQ {
            return Err(RejectReason::Invalid);
        }
        let clocks = Clocks {
            now,
            peer: &self.peer_clock,
            now_wall_ms: env.wall_ms(),
        };
        admit(publish, self.role, &clocks)?;
        // The time-out timer's lock-out, where the command enters.
        if shared_protocol::keys_transmitter(&publish.kind, &publish.payload)
            && !env.ptt_on_allowed(&self.client_id)
        {
            return Err(RejectReason::TxTimeout);
        }
        if !env.state_fits(&publish.kind, &publish.payload) {
            return Err(RejectReason::StateFull);
        }
        Ok(())
    }

    /// Answers finished publishes from the front of the queue, in order: a
    /// `Rejected` before the `Accepted` that covers it, and one `Accepted`
    /// for each run of applied ones.
    fn answer_publishes(&mut self) {
        let mut upto: Option<u64> = None;
        while let Some(Pending::Done { .. }) = self.pending.front() {
            let Some(Pending::Done {
                client_seq,
                refused,
                reliable,
            }) = self.pending.pop_front()
            else {
                break;
            };
            self.first_queued = self.first_queued.saturating_sub(1);
            if reliable {
                self.reliable_pending -= 1;
            }
            match refused {
                None => upto = Some(upto.map_or(client_seq, |u| u.max(client_seq))),
                Some(reason) => {
                    if let Some(upto) = upto.take() {
                        self.send(ServerFrame::Accepted { upto });
                    }
                    self.send(ServerFrame::Rejected(Rejected { client_seq, reason }));
                }
            }
        }
        if let Some(upto) = upto {
            self.send(ServerFrame::Accepted { upto });
        }
    }

    /// Asks for the next batch when the client has room for it.
    fn pump_events(&mut self) {
        if self.closed || !self.started || self.reading != Reading::Idle {
            return;
        }
        if self.cursor > self.head || self.pending_bytes >= self.soft_pending_limit() {
            return;
        }
        let (page, window) = self.config.flow();
        let lag = self.head - (self.cursor - 1);
        if lag > u64::from(self.config.max_behind) {
            self.reading = Reading::Snapshot(SnapshotFor::Jump { from: self.cursor });
            self.outputs.push_back(Output::ReadSnapshot);
            return;
        }
        let in_flight = self.unacked.len() as u64;
        if in_flight >= window {
            return;
        }
        let room = page.min(window - in_flight);
        self.reading = Reading::Events;
        self.outputs.push_back(Output::ReadEvents {
            from: self.cursor,
            limit: room as usize,
        });
    }

    /// Sends a batch read from the cursor: a retention gap when the log was
    /// trimmed under the cursor, coalescing when the client is hot.
    fn send_batch(&mut self, events: &[&Logged]) {
        let lag = self.head.saturating_sub(self.cursor.saturating_sub(1));
        let mut progress = Progress {
            temperature: (lag as f64 / f64::from(self.config.max_behind.max(1))).min(1.0),
            ..Progress::default()
        };
        let skip_to = events.partition_point(|e| e.seq < self.cursor);
        let events = &events[skip_to..];
        match events.first() {
            Some(first) if first.seq > self.cursor => {
                self.send(ServerFrame::Gap(Gap {
                    from: self.cursor,
                    to: first.seq - 1,
                    reason: GapReason::Retention,
                }));
            }
            Some(_) => {}
            None => {
                // Everything from the cursor was trimmed: skip to the head.
                self.send(ServerFrame::Gap(Gap {
                    from: self.cursor,
                    to: self.head,
                    reason: GapReason::Retention,
                }));
                self.cursor = self.head + 1;
            }
        }
        let hot = lag > u64::from(self.config.cool_above_lag);
        let skip = if hot {
            superseded(events)
        } else {
            HashSet::new()
        };
        progress.cooled = hot && !skip.is_empty();
        let mut run: Option<(u64, u64)> = None;
        let mut last = None;
        for event in events {
            if self.pending_bytes >= self.soft_pending_limit() && progress.sent > 0 {
                // The rest of the batch waits for the writer; read again later.
                break;
            }
            // A hole in the numbers (readings a proxy handed out and never
            // wrote before it stopped: eventlog/embedded.rs) is told as a
            // coalesced gap, like superseded readings.
            if let Some(prev) = last.filter(|&prev| event.seq > prev + 1) {
                let to = event.seq - 1;
                run = Some(run.map_or((prev + 1, to), |(from, _)| (from, to)));
            }
            last = Some(event.seq);
            if skip.contains(&event.seq) {
                run = Some(run.map_or((event.seq, event.seq), |(from, _)| (from, event.seq)));
                progress.coalesced += 1;
                continue;
            }
            if let Some((from, to)) = run.take() {
                self.send(ServerFrame::Gap(Gap {
                    from,
                    to,
                    reason: GapReason::Coalesced,
                }));
            }
            self.send_bytes(&event.frame);
            self.unacked.push_back(event.seq);
            progress.sent += 1;
        }
        if let Some((from, to)) = run.take() {
            self.send(ServerFrame::Gap(Gap {
                from,
                to,
                reason: GapReason::Coalesced,
            }));
        }
        if let Some(last) = last {
            self.cursor = last + 1;
        }
        progress.cursor = self.cursor;
        self.report(Report::Progress(progress));
    }
}

/// Volatile events followed, in the same batch, by a newer event of the same
/// kind: a hot client can skip them and still end with every kind's newest value.
fn superseded(events: &[&Logged]) -> HashSet<u64> {
    let mut seen_kinds = HashSet::new();
    let mut skip = HashSet::new();
    for event in events.iter().rev() {
        if !seen_kinds.insert(event.kind.clone()) && event.volatile {
            skip.insert(event.seq);
        }
    }
    skip
}
