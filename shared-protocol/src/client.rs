//! The client session: every decision the browser client makes, as one
//! sans-IO state machine (the shape of str0m's `handle_input`/`poll_output`
//! and quinn-proto's `handle_timeout`/`poll_timeout`).
//!
//! The shell feeds it socket events, received bytes, browser signals and user
//! calls with the current time, performs the [`Output`]s it returns (open or
//! close the one socket, send bytes, deliver to the application, persist), and
//! keeps one timer set to [`ClientSession::poll_timeout`].
//!
//! Sockets carry a generation number: events from a socket the session has
//! already given up on are ignored, so there are never two live sockets.

use crate::backoff::{Backoff, BackoffConfig, Retry};
use crate::frame::{
    Access, ClientFrame, Delivery, ErrorCode, Hello, Payload, Publish, RejectReason, ServerFrame,
    MAX_FRAME_BYTES,
};
use crate::heartbeat::{Heartbeat, HeartbeatAction, HeartbeatConfig, HeartbeatStats, RttSummary};
use crate::outbox::{Outbox, Queued};
use crate::quality::{QualityConfig, QualityReport, QualityTracker};
use crate::receiver::{Delivered, Receiver};
use crate::{is_transmit_kind, Millis};

/// The six states a dashboard shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Connecting,
    Connected,
    Reconnecting,
    Disconnected,
    Stale,
    Failed,
}

impl LinkState {
    /// The name the JS API and the history use (what serde writes).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Reconnecting => "reconnecting",
            LinkState::Disconnected => "disconnected",
            LinkState::Stale => "stale",
            LinkState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Shared-secret token sent in `Hello`, if the proxy wants one.
    pub token: Option<String>,
    pub backoff: BackoffConfig,
    pub heartbeat: HeartbeatConfig,
    pub quality: QualityConfig,
    pub outbox_capacity: usize,
    /// Socket open plus `Welcome` must take less than this.
    pub connect_timeout_ms: u64,
    /// Ack at once after this many new events ...
    pub ack_every: u64,
    /// ... or after this long.
    pub ack_delay_ms: u64,
    /// Lifecycle history entries kept.
    pub history_capacity: usize,
    /// Events held while waiting for a hole to fill before resuming.
    pub max_pending: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            token: None,
            backoff: BackoffConfig::DASHBOARD,
            heartbeat: HeartbeatConfig::CLIENT,
            quality: QualityConfig::default(),
            outbox_capacity: crate::outbox::DEFAULT_CAPACITY,
            connect_timeout_ms: 15_000,
            ack_every: 32,
            ack_delay_ms: 100,
            history_capacity: 100,
            max_pending: 10_000,
        }
    }
}

/// What survives a page reload.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Persisted {
    pub client_id: String,
    pub epoch: Option<u64>,
    pub last_seq: u64,
    pub next_client_seq: u64,
    pub outbox: Vec<Publish>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The user asked to connect (also after `Close`).
    Connect,
    /// The user closed the link; no reconnects until `Connect`.
    Close,
    SocketOpened {
        socket: u32,
    },
    SocketClosed {
        socket: u32,
        code: u16,
        reason: String,
    },
    Received {
        socket: u32,
        bytes: Vec<u8>,
    },
    /// The browser reports the network is back (`online`).
    NetworkUp,
    /// The browser reports the network is gone (`offline`).
    NetworkDown,
    /// The page became visible again.
    Visible,
    ForceReconnect,
    /// Drop the connection and stay away for `ms`.
    SimulateDisconnect {
        ms: u64,
    },
    /// Measure the round trip now.
    LatencyTest,
    Publish {
        kind: String,
        payload: Payload,
        delivery: Delivery,
        ttl_ms: Option<u64>,
    },
    ClearBuffer,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    OpenSocket {
        socket: u32,
    },
    CloseSocket {
        socket: u32,
        code: u16,
        reason: String,
    },
    Transmit {
        socket: u32,
        bytes: Vec<u8>,
    },
    /// For the application, exactly once and in order.
    Deliver(Delivered),
    /// Save `(epoch, last_seq)`: small and frequent.
    PersistCursor {
        epoch: u64,
        last_seq: u64,
    },
    /// Save the outbox and the next `client_seq`: when they change.
    PersistOutbox {
        next_client_seq: u64,
        outbox: Vec<Publish>,
    },
    Notify(Notice),
}

/// Things the application may want to show.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    State {
        state: LinkState,
        reason: String,
    },
    Reconnected {
        attempts: u32,
        downtime_ms: u64,
    },
    MaxAttemptsReached {
        attempts: u32,
    },
    Latency {
        rtt_ms: u64,
        summary: RttSummary,
    },
    Quality(QualityReport),
    Accepted {
        upto: u64,
    },
    Rejected {
        client_seq: u64,
        reason: RejectReason,
    },
    /// A reliable publish was dropped from a full outbox.
    OutboxOverflow {
        client_seq: u64,
        kind: String,
    },
    /// A publish could not be sent (offline and not storable).
    NotSent {
        kind: String,
        reason: String,
    },
    Error {
        kind: String,
        message: String,
    },
}

/// One line of the lifecycle history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryEntry {
    /// Wall-clock time, Unix ms.
    pub at_ms: u64,
    pub event: &'static str,
    pub detail: String,
}

/// A point-in-time view for `metrics()`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub state: LinkState,
    pub client_id: String,
    pub epoch: Option<u64>,
    pub last_seq: u64,
    pub attempt: u32,
    pub reconnects: u64,
    pub connected_for_ms: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub outbox: usize,
    pub outbox_capacity: usize,
    pub outbox_evicted: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub pings_sent: u64,
    pub pongs_received: u64,
    pub healthy: bool,
    pub rtt_last_ms: Option<u64>,
    pub rtt_smoothed_ms: Option<f64>,
    pub rtt_p50_ms: Option<u64>,
    pub rtt_p95_ms: Option<u64>,
    pub quality: f64,
    pub quality_stability: f64,
    pub quality_ack_rate: f64,
    pub quality_uptime: f64,
    pub quality_activity: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No socket and no plan to open one.
    Idle,
    /// Waiting to retry at this time.
    Waiting(Millis),
    /// Socket requested, not welcomed yet; give up at this time.
    Opening {
        socket: u32,
        deadline: Millis,
    },
    Open {
        socket: u32,
    },
}

pub struct ClientSession {
    config: ClientConfig,
    client_id: String,
    wall_offset_ms: u64,
    state: LinkState,
    phase: Phase,
    user_closed: bool,
    offline: bool,
    /// The proxy said not to come back from this connection (replaced, unauthorized).
    terminal: Option<ErrorCode>,
    next_socket: u32,
    backoff: Backoff,
    /// What the proxy said this client's token allows.
    access: Option<Access>,
    /// The proxy's `Drain`: come back after this long instead of backing off.
    drain_delay_ms: Option<u64>,
    /// The attempt limit was reached (and announced) since the last success:
    /// the link now probes at the maximum delay.
    gave_up: bool,
    rng: fastrand::Rng,
    heartbeat: Heartbeat,
    quality: QualityTracker,
    receiver: Receiver,
    outbox: Outbox,
    /// The proxy's `Welcome.limits.publish_window`: reliable publishes sent
    /// and unanswered stay under it; the rest wait in the outbox.
    publish_window: usize,
    /// Reliable publishes sent on this connection and not yet answered
    /// (ascending: they go out in order), and the highest sent. A plain
    /// `Vec`: a B-tree would cost the browser package kilobytes.
    unanswered: Vec<u64>,
    sent_upto: u64,
    acked: u64,
    ack_at: Option<Millis>,
    disconnected_at: Option<Millis>,
    connected_at: Option<Millis>,
    ever_connected: bool,
    reconnects: u64,
    gaps: u64,
    frames_in: u64,
    frames_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    last_error: Option<ErrorCode>,
    history: Vec<HistoryEntry>,
    /// Oldest first; a handful at a time, so `remove(0)` is cheap.
    outputs: Vec<Output>,
    cursor_dirty: bool,
    outbox_dirty: bool,
}

impl ClientSession {
    /// `restored` comes from storage; `wall_offset_ms` turns the monotonic
    /// `now` into Unix ms (for `expires_at_ms` and the history); `seed`
    /// drives the backoff jitter.
    pub fn new(
        config: ClientConfig,
        restored: Persisted,
        now: Millis,
        wall_offset_ms: u64,
        seed: u64,
    ) -> Self {
        let resume = restored.epoch.map(|epoch| crate::frame::Resume {
            epoch,
            last_seq: restored.last_seq,
        });
        let outbox = Outbox::restore(
            config.outbox_capacity,
            restored.next_client_seq,
            restored.outbox,
        );
        ClientSession {
            backoff: Backoff::new(config.backoff, seed),
            drain_delay_ms: None,
            gave_up: false,
            access: None,
            rng: fastrand::Rng::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15),
            heartbeat: Heartbeat::new(config.heartbeat, now),
            quality: QualityTracker::new(config.quality, now),
            receiver: Receiver::new(resume, config.max_pending),
            acked: restored.last_seq,
            outbox,
            publish_window: usize::MAX,
            unanswered: Vec::new(),
            sent_upto: 0,
            client_id: restored.client_id,
            wall_offset_ms,
            state: LinkState::Disconnected,
            phase: Phase::Idle,
            user_closed: true,
            offline: false,
            terminal: None,
            next_socket: 1,
            ack_at: None,
            disconnected_at: None,
            connected_at: None,
            ever_connected: false,
            reconnects: 0,
            gaps: 0,
            frames_in: 0,
            frames_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            last_error: None,
            history: Vec::new(),
            outputs: Vec::new(),
            cursor_dirty: false,
            outbox_dirty: false,
            config,
        }
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    pub fn history(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.history.iter()
    }

    pub fn outbox(&self) -> impl Iterator<Item = &Publish> {
        self.outbox.pending().iter()
    }

    /// What the token allows, as the last `Welcome` said.
    pub fn access(&self) -> Option<Access> {
        self.access
    }

    /// The proxy's epoch, once welcomed (or restored).
    pub fn epoch(&self) -> Option<u64> {
        self.receiver.epoch()
    }

    pub fn persisted(&self) -> Persisted {
        Persisted {
            client_id: self.client_id.clone(),
            epoch: self.receiver.epoch(),
            last_seq: self.receiver.last_seq(),
            next_client_seq: self.outbox.next_client_seq(),
            outbox: self.outbox.pending().to_vec(),
        }
    }

    pub fn metrics(&mut self, now: Millis) -> Metrics {
        let q = self.quality.report(now);
        let rtt = self.heartbeat.rtt.summary();
        let HeartbeatStats {
            pings_sent,
            pongs_received,
            ..
        } = self.heartbeat.stats;
        Metrics {
            state: self.state,
            client_id: self.client_id.clone(),
            epoch: self.receiver.epoch(),
            last_seq: self.receiver.last_seq(),
            attempt: self.backoff.attempt(),
            reconnects: self.reconnects,
            connected_for_ms: self.connected_at.map_or(0, |t| now.saturating_sub(t)),
            delivered: self.receiver.delivered,
            duplicates: self.receiver.duplicates,
            gaps: self.gaps,
            outbox: self.outbox.len(),
            outbox_capacity: self.outbox.capacity(),
            outbox_evicted: self.outbox.evicted,
            frames_in: self.frames_in,
            frames_out: self.frames_out,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            pings_sent,
            pongs_received,
            healthy: self.heartbeat.healthy(),
            rtt_last_ms: rtt.last_ms,
            rtt_smoothed_ms: rtt.smoothed_ms,
            rtt_p50_ms: rtt.p50_ms,
            rtt_p95_ms: rtt.p95_ms,
            quality: q.score,
            quality_stability: q.stability,
            quality_ack_rate: q.ack_rate,
            quality_uptime: q.uptime,
            quality_activity: q.activity,
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        if !self.outputs.is_empty() {
            return Some(self.outputs.remove(0));
        }
        if self.cursor_dirty {
            self.cursor_dirty = false;
            if let Some(epoch) = self.receiver.epoch() {
                return Some(Output::PersistCursor {
                    epoch,
                    last_seq: self.receiver.last_seq(),
                });
            }
        }
        if self.outbox_dirty {
            self.outbox_dirty = false;
            return Some(Output::PersistOutbox {
                next_client_seq: self.outbox.next_client_seq(),
                outbox: self.outbox.pending().to_vec(),
            });
        }
        None
    }

    /// When the shell should call [`ClientSession::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.phase {
            Phase::Idle => None,
            Phase::Waiting(at) => Some(at),
            Phase::Opening { deadline, .. } => Some(deadline),
            Phase::Open { .. } => {
                let hb = self.heartbeat.poll_timeout();
                Some(self.ack_at.map_or(hb, |a| a.min(hb)))
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        match self.phase {
            Phase::Idle => {}
            Phase::Waiting(at) if now >= at => self.open(now),
            Phase::Waiting(_) => {}
            Phase::Opening { socket, deadline } if now >= deadline => {
                self.close_socket(socket, 4000, "connect timeout");
                self.lost(now, "connect timeout");
            }
            Phase::Opening { .. } => {}
            Phase::Open { socket } => {
                if self.ack_at.is_some_and(|at| now >= at) {
                    self.send_ack(socket);
                }
                match self.heartbeat.handle_timeout(now) {
                    Some(HeartbeatAction::SendPing { nonce }) => {
                        self.transmit(
                            socket,
                            &ClientFrame::Ping(crate::frame::Ping { nonce, t: now }),
                        );
                    }
                    Some(HeartbeatAction::Stale { silent_for_ms }) => {
                        self.set_state(LinkState::Stale, format!("no pong for {silent_for_ms} ms"));
                        self.close_socket(socket, 4008, "heartbeat timeout");
                        self.lost(now, "heartbeat timeout");
                    }
                    None => {}
                }
            }
        }
    }

    pub fn handle_input(&mut self, input: Input, now: Millis) {
        match input {
            Input::Connect => {
                if !self.ever_connected && self.user_closed {
                    // Quality measures the link from the first attempt on,
                    // not the time the page spent before asking for it.
                    self.quality = QualityTracker::new(self.config.quality, now);
                }
                self.user_closed = false;
                self.terminal = None;
                if matches!(self.phase, Phase::Idle | Phase::Waiting(_)) {
                    self.backoff.reset();
                    self.open(now);
                }
            }
            Input::Close => {
                self.user_closed = true;
                self.drop_socket("closed by the application", now);
                self.phase = Phase::Idle;
                self.set_state(LinkState::Disconnected, "closed by the application".into());
            }
            Input::SocketOpened { socket } => {
                if self.phase_socket() != Some(socket) {
                    return;
                }
                let hello = ClientFrame::Hello(Hello {
                    client_id: self.client_id.clone(),
                    token: self.config.token.clone(),
                    resume: self.receiver.resume(),
                    t: Some(now + self.wall_offset_ms),
                    // One frame per message: reading batches costs the
                    // browser's package about 200 B it does not have.
                    batch: false,
                });
                self.transmit(socket, &hello);
            }
            Input::SocketClosed {
                socket,
                code,
                reason,
            } => {
                if self.phase_socket() != Some(socket) {
                    return;
                }
                self.phase = Phase::Idle;
                let why = match self.last_error.take() {
                    Some(code) => code.as_str().to_string(),
                    None if reason.is_empty() => format!("closed ({code})"),
                    None => format!("closed ({code}): {reason}"),
                };
                self.lost(now, &why);
            }
            Input::Received { socket, bytes } => {
                if self.phase_socket() != Some(socket) {
                    return;
                }
                self.frames_in += 1;
                self.bytes_in += bytes.len() as u64;
                match ServerFrame::decode(&bytes, MAX_FRAME_BYTES * 16) {
                    Ok(frame) => self.on_frame(socket, frame, now),
                    Err(e) => {
                        self.notify(Notice::Error {
                            kind: "protocol".into(),
                            message: e.to_string(),
                        });
                        self.close_socket(socket, 1002, "undecodable frame");
                        self.lost(now, "undecodable frame");
                    }
                }
            }
            Input::NetworkUp => {
                self.offline = false;
                self.record(now, "network", "online".into());
                if !self.user_closed
                    && self.terminal.is_none()
                    && matches!(self.phase, Phase::Idle | Phase::Waiting(_))
                {
                    // Retry at once, with the attempt count restarted.
                    let _ = self.backoff.network_up();
                    self.open(now);
                }
            }
            Input::NetworkDown => {
                self.offline = true;
                self.record(now, "network", "offline".into());
                if let Phase::Waiting(_) = self.phase {
                    // Pause: retrying without a network only burns attempts.
                    self.phase = Phase::Idle;
                    self.set_state(
                        LinkState::Disconnected,
                        "offline; waiting for the network".into(),
                    );
                }
            }
            Input::Visible => {
                if let Phase::Open { socket } = self.phase {
                    // Laptops wake with dead sockets: check now.
                    if let Some(HeartbeatAction::SendPing { nonce }) = self.heartbeat.ping_now(now)
                    {
                        self.transmit(
                            socket,
                            &ClientFrame::Ping(crate::frame::Ping { nonce, t: now }),
                        );
                    }
                } else if let Phase::Waiting(_) = self.phase {
                    self.open(now);
                }
            }
            Input::ForceReconnect => {
                self.user_closed = false;
                self.terminal = None;
                self.drop_socket("forced reconnect", now);
                self.backoff.reset();
                self.record(now, "reconnecting", "forced by the user".into());
                self.open(now);
            }
            Input::SimulateDisconnect { ms } => {
                self.drop_socket("simulated disconnect", now);
                self.phase = Phase::Waiting(now + ms);
                self.set_state(
                    LinkState::Reconnecting,
                    format!("simulated disconnect for {ms} ms"),
                );
            }
            Input::LatencyTest => {
                if let Phase::Open { socket } = self.phase {
                    if let Some(HeartbeatAction::SendPing { nonce }) = self.heartbeat.ping_now(now)
                    {
                        self.transmit(
                            socket,
                            &ClientFrame::Ping(crate::frame::Ping { nonce, t: now }),
                        );
                    }
                }
            }
            Input::Publish {
                kind,
                payload,
                delivery,
                ttl_ms,
            } => {
                let expires_at_ms = ttl_ms.map(|ttl| now + self.wall_offset_ms + ttl);
                match self
                    .outbox
                    .publish(kind, payload, delivery, expires_at_ms, ttl_ms)
                {
                    Queued::Stored { evicted, .. } => {
                        self.outbox_dirty = true;
                        if let Some(old) = evicted {
                            self.notify(Notice::OutboxOverflow {
                                client_seq: old.client_seq,
                                kind: old.kind,
                            });
                        }
                        if let Phase::Open { socket } = self.phase {
                            self.send_outbox(socket);
                        }
                    }
                    Queued::SendOnly(publish) => {
                        // The numbering moved on; keep it across reloads.
                        self.outbox_dirty = true;
                        if let Phase::Open { socket } = self.phase {
                            // Not counted in the ack rate: no outbox entry
                            // waits for its `Accepted`, so it would count
                            // as never acknowledged (a held PTT sank the
                            // quality of a perfect link to "fair").
                            self.transmit(socket, &ClientFrame::Publish(publish));
                        } else {
                            let reason = if is_transmit_kind(&publish.kind) {
                                "not connected; transmit commands are never queued"
                            } else {
                                "not connected; volatile publishes are not queued"
                            };
                            self.notify(Notice::NotSent {
                                kind: publish.kind,
                                reason: reason.into(),
                            });
                        }
                    }
                }
            }
            Input::ClearBuffer => {
                let n = self.outbox.clear();
                self.outbox_dirty = true;
                self.record(now, "buffer", format!("cleared {n} queued publishes"));
            }
        }
    }

    fn phase_socket(&self) -> Option<u32> {
        match self.phase {
            Phase::Opening { socket, .. } | Phase::Open { socket } => Some(socket),
            _ => None,
        }
    }

    fn open(&mut self, now: Millis) {
        if self.offline && self.ever_connected {
            self.phase = Phase::Idle;
            self.set_state(
                LinkState::Disconnected,
                "offline; waiting for the network".into(),
            );
            return;
        }
        let socket = self.next_socket;
        self.next_socket = self.next_socket.wrapping_add(1).max(1);
        self.phase = Phase::Opening {
            socket,
            deadline: now + self.config.connect_timeout_ms,
        };
        let state = if self.ever_connected {
            LinkState::Reconnecting
        } else {
            LinkState::Connecting
        };
        let attempt = self.backoff.attempt();
        self.set_state(state, format!("attempt {}", attempt.max(1)));
        if self.ever_connected {
            self.quality.on_reconnect(now);
        }
        self.outputs.push(Output::OpenSocket { socket });
    }

    /// The connection is gone (or never came): plan the next attempt.
    fn lost(&mut self, now: Millis, why: &str) {
        self.phase = Phase::Idle;
        self.ack_at = None;
        if self.connected_at.take().is_some() {
            self.quality.on_disconnected(now);
            self.disconnected_at = Some(now);
            self.record(now, "disconnected", why.to_string());
        }
        if self.user_closed {
            self.set_state(LinkState::Disconnected, why.to_string());
            return;
        }
        if let Some(code) = self.terminal {
            let state = if code == ErrorCode::Unauthorized {
                LinkState::Failed
            } else {
                LinkState::Disconnected
            };
            self.set_state(
                state,
                format!("the proxy said {}; not reconnecting", code.as_str()),
            );
            return;
        }
        if self.offline {
            self.set_state(
                LinkState::Disconnected,
                "offline; waiting for the network".into(),
            );
            return;
        }
        if let Some(delay_ms) = self.drain_delay_ms.take() {
            // The proxy chose when: its spread keeps the return under its
            // admission bound. Not a failure, so no backoff attempt is used.
            self.phase = Phase::Waiting(now + delay_ms);
            self.record(
                now,
                "reconnecting",
                format!("in {delay_ms} ms, as the proxy asked ({why})"),
            );
            self.set_state(
                LinkState::Reconnecting,
                format!("the proxy asked to come back in {delay_ms} ms ({why})"),
            );
            return;
        }
        match self.backoff.next_retry() {
            Retry::After { delay_ms, attempt } => {
                self.phase = Phase::Waiting(now + delay_ms);
                self.record(
                    now,
                    "reconnecting",
                    format!("attempt {attempt} in {delay_ms} ms after: {why}"),
                );
                self.set_state(
                    LinkState::Reconnecting,
                    format!("retry {attempt} in {delay_ms} ms ({why})"),
                );
            }
            Retry::GiveUp { attempts } => {
                // A station display never gives up for good: past the limit
                // (announced once) it keeps probing at the maximum delay, so
                // a proxy that comes back after an hour is found again
                // without anyone at the page.
                let (lo, hi) = self.config.backoff.band_ms(u32::MAX);
                let delay_ms = if hi > lo { self.rng.u64(lo..=hi) } else { lo };
                self.phase = Phase::Waiting(now + delay_ms);
                self.set_state(
                    LinkState::Failed,
                    format!(
                        "gave up after {attempts} attempts ({why}); trying again every {} s",
                        hi.div_ceil(1000)
                    ),
                );
                if !self.gave_up {
                    self.gave_up = true;
                    self.notify(Notice::MaxAttemptsReached { attempts });
                    self.record(now, "error", format!("max attempts ({attempts}) reached"));
                }
            }
        }
    }

    fn on_frame(&mut self, socket: u32, frame: ServerFrame, now: Millis) {
        self.heartbeat.on_traffic(now);
        self.quality.on_activity(now);
        let mut delivered = Vec::new();
        match frame {
            ServerFrame::Welcome(welcome) => {
                self.access = welcome.access;
                self.receiver.on_welcome(&welcome);
                self.cursor_dirty = true;
                self.phase = Phase::Open { socket };
                self.connected_at = Some(now);
                self.heartbeat.restart(now);
                self.quality.on_connected(now);
                let attempts = self.backoff.attempt();
                self.backoff.reset();
                self.gave_up = false;
                let reconnect = self.ever_connected;
                self.ever_connected = true;
                self.set_state(LinkState::Connected, format!("session {}", welcome.session));
                if reconnect {
                    self.reconnects += 1;
                    let downtime_ms = self
                        .disconnected_at
                        .take()
                        .map_or(0, |t| now.saturating_sub(t));
                    self.notify(Notice::Reconnected {
                        attempts,
                        downtime_ms,
                    });
                    self.record(
                        now,
                        "reconnected",
                        format!("after {attempts} attempts, {downtime_ms} ms down"),
                    );
                } else {
                    self.record(now, "connected", format!("session {}", welcome.session));
                }
                // Flush the outbox, oldest first, before anything new, as
                // far as the publish window allows.
                self.publish_window = welcome
                    .limits
                    .publish_window
                    .map_or(usize::MAX, |w| w.max(1) as usize);
                self.unanswered.clear();
                self.sent_upto = 0;
                self.send_outbox(socket);
                let q = self.quality.report(now);
                self.notify(Notice::Quality(q));
            }
            ServerFrame::Event(event) => {
                if let Err(problem) = self.receiver.on_event(event, &mut delivered) {
                    self.notify(Notice::Error {
                        kind: "order".into(),
                        message: format!("{problem}; resuming"),
                    });
                    self.close_socket(socket, 4001, "resume to fill a hole");
                    self.lost(now, "hole in the stream");
                }
            }
            ServerFrame::Gap(gap) => self.receiver.on_gap(gap, &mut delivered),
            ServerFrame::Snapshot(snapshot) => self.receiver.on_snapshot(snapshot, &mut delivered),
            ServerFrame::Accepted { upto } => {
                self.unanswered.retain(|&s| s > upto);
                let released = self.outbox.on_accepted(upto);
                self.quality.on_acked(released as u64);
                if released > 0 {
                    self.outbox_dirty = true;
                }
                self.notify(Notice::Accepted { upto });
                self.send_outbox(socket);
            }
            ServerFrame::Rejected(r) => {
                self.unanswered.retain(|&s| s != r.client_seq);
                if self.outbox.on_rejected(r.client_seq).is_some() {
                    self.outbox_dirty = true;
                }
                self.notify(Notice::Rejected {
                    client_seq: r.client_seq,
                    reason: r.reason,
                });
                self.send_outbox(socket);
            }
            ServerFrame::Ping(ping) => self.transmit(socket, &ClientFrame::Pong(ping)),
            ServerFrame::Pong(pong) => {
                if let Some(rtt_ms) = self.heartbeat.on_pong(pong.nonce, now) {
                    let summary = self.heartbeat.rtt.summary();
                    self.notify(Notice::Latency { rtt_ms, summary });
                    let q = self.quality.report(now);
                    self.notify(Notice::Quality(q));
                }
            }
            ServerFrame::Drain(d) => {
                let share = if d.jitter_ms == 0 {
                    0
                } else {
                    self.rng.u64(0..=d.jitter_ms)
                };
                let delay = d.retry_after_ms.saturating_add(share);
                self.drain_delay_ms = Some(delay);
                self.record(
                    now,
                    "drain",
                    format!("{}: come back in {delay} ms", d.reason.as_str()),
                );
            }
            ServerFrame::Error(e) => {
                self.last_error = Some(e.code);
                if matches!(e.code, ErrorCode::Replaced | ErrorCode::Unauthorized) {
                    self.terminal = Some(e.code);
                }
                self.notify(Notice::Error {
                    kind: e.code.as_str().into(),
                    message: e.message,
                });
            }
        }
        for d in delivered {
            match &d {
                Delivered::Gap(_) => self.gaps += 1,
                Delivered::Snapshot(_) | Delivered::Event(_) => {}
            }
            self.cursor_dirty = true;
            self.outputs.push(Output::Deliver(d));
        }
        if let Phase::Open { socket } = self.phase {
            let behind = self.receiver.last_seq().saturating_sub(self.acked);
            if behind >= self.config.ack_every {
                self.send_ack(socket);
            } else if behind > 0 && self.ack_at.is_none() {
                self.ack_at = Some(now + self.config.ack_delay_ms);
            }
        }
    }

    /// Sends the outbox entries not sent on this connection yet, oldest
    /// first, while the publish window has room.
    fn send_outbox(&mut self, socket: u32) {
        let room = self.publish_window.saturating_sub(self.unanswered.len());
        let next: Vec<Publish> = self
            .outbox
            .pending()
            .iter()
            .filter(|p| p.client_seq > self.sent_upto)
            .take(room)
            .cloned()
            .collect();
        self.quality.on_sent(next.len() as u64);
        for publish in next {
            self.sent_upto = publish.client_seq;
            self.unanswered.push(publish.client_seq);
            self.transmit(socket, &ClientFrame::Publish(publish));
        }
    }

    fn send_ack(&mut self, socket: u32) {
        self.ack_at = None;
        let upto = self.receiver.last_seq();
        if upto > self.acked {
            self.acked = upto;
            self.transmit(socket, &ClientFrame::Ack { upto });
        }
    }

    fn transmit(&mut self, socket: u32, frame: &ClientFrame) {
        match frame.encode() {
            Ok(bytes) => {
                self.frames_out += 1;
                self.bytes_out += bytes.len() as u64;
                self.outputs.push(Output::Transmit { socket, bytes });
            }
            Err(e) => self.notify(Notice::Error {
                kind: "encode".into(),
                message: e.to_string(),
            }),
        }
    }

    fn close_socket(&mut self, socket: u32, code: u16, reason: &str) {
        self.outputs.push(Output::CloseSocket {
            socket,
            code,
            reason: reason.into(),
        });
        self.phase = Phase::Idle;
    }

    /// Closes whatever socket exists without planning a retry.
    fn drop_socket(&mut self, reason: &str, now: Millis) {
        if let Some(socket) = self.phase_socket() {
            self.close_socket(socket, 1000, reason);
        }
        self.ack_at = None;
        if self.connected_at.take().is_some() {
            self.quality.on_disconnected(now);
            self.disconnected_at = Some(now);
            self.record(now, "disconnected", reason.to_string());
        }
    }

    fn set_state(&mut self, state: LinkState, reason: String) {
        if self.state != state {
            self.state = state;
            self.notify(Notice::State { state, reason });
        }
    }

    fn record(&mut self, now: Millis, event: &'static str, detail: String) {
        let entry = HistoryEntry {
            at_ms: now + self.wall_offset_ms,
            event,
            detail,
        };
        crate::push_bounded(&mut self.history, self.config.history_capacity, entry);
    }

    fn notify(&mut self, notice: Notice) {
        self.outputs.push(Output::Notify(notice));
    }
}
