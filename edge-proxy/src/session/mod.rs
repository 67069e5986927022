//! One task per WebSocket connection: handshake, replay, live fan-out from
//! the log, acks, publishes and heartbeat.
//!
//! The session never talks to hardware; it reads the log from its cursor and
//! writes publishes into it. Its decisions come from [`crate::policy`] and
//! `shared-protocol`; this file is the I/O around them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use shared_protocol::frame::{
    Access, ClientFrame, DecodeError, Delivery, Drain, DrainReason, ErrorCode, ErrorFrame, Gap,
    GapReason, Hello, Limits, Ping, Publish, RejectReason, Rejected, ServerFrame, Snapshot,
    Welcome,
};
use shared_protocol::heartbeat::{Heartbeat, HeartbeatAction, HeartbeatConfig};
use shared_protocol::peerclock::PeerClock;
use shared_protocol::Millis;
use tokio::time::{sleep_until, timeout};

use crate::app::AppState;
use crate::auth::{role_for, Role};
use crate::eventlog::{now_ms, Logged, NewEvent, Published};
use crate::policy::{admit, plan_start, Clocks, RateBucket, Start};
use crate::registry::Progress;

/// A client must say `Hello` within this long of connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Publishes in flight per session before the session stops reading.
const MAX_PENDING_PUBLISHES: usize = 256;

type Sink = SplitSink<WebSocket, Message>;

/// What came of one publish, in the order the client sent them.
enum PublishDone {
    Accepted(u64),
    Rejected(u64, RejectReason),
    /// The log could not store it: close without acknowledging.
    StorageFailed(String),
}

pub async fn run(socket: WebSocket, state: Arc<AppState>, remote: SocketAddr) {
    let (mut sink, mut stream) = socket.split();
    let max = state.config.max_frame_bytes as usize;
    let hello = match timeout(HELLO_TIMEOUT, next_frame(&mut stream, max)).await {
        Err(_) => {
            return close(
                &mut sink,
                ErrorCode::ProtocolViolation,
                "no Hello within 10 s",
            )
            .await;
        }
        Ok(Incoming::Frame(ClientFrame::Hello(hello))) => hello,
        Ok(Incoming::Frame(_)) => {
            state.bad_input(ErrorCode::ProtocolViolation);
            return close(
                &mut sink,
                ErrorCode::ProtocolViolation,
                "the first frame must be Hello",
            )
            .await;
        }
        Ok(Incoming::Bad(code, message)) => {
            state.bad_input(code);
            return close(&mut sink, code, &message).await;
        }
        Ok(Incoming::Closed) => return,
    };
    if hello.client_id.is_empty() || hello.client_id.len() > 128 {
        state.bad_input(ErrorCode::ProtocolViolation);
        return close(
            &mut sink,
            ErrorCode::ProtocolViolation,
            "client_id must be 1 to 128 bytes",
        )
        .await;
    }
    let Some(role) = role_for(&state.config.tokens, hello.token.as_deref()) else {
        state.bad_input(ErrorCode::Unauthorized);
        tracing::warn!(client_id = %hello.client_id, %remote, "EVENT_AUTH_FAILED: bad or missing token");
        return close(&mut sink, ErrorCode::Unauthorized, "bad or missing token").await;
    };
    let session = Session::new(state, hello, role, remote);
    session.serve(sink, stream).await;
}

struct Session {
    state: Arc<AppState>,
    client_id: String,
    connection: u64,
    role: Role,
    hello: Hello,
    cursor: u64,
    acked: u64,
    last_rx: Millis,
    heartbeat: Heartbeat,
    bucket: RateBucket,
    /// What the client's timestamps say of its clock (deadlines).
    peer_clock: PeerClock,
    replaced: tokio::sync::watch::Receiver<bool>,
    welcomed: bool,
}

/// How long a clock sample counts (see `shared_protocol::peerclock`).
const CLOCK_WINDOW_MS: u64 = 60_000;

enum Incoming {
    Frame(ClientFrame),
    Bad(ErrorCode, String),
    Closed,
}

async fn next_frame(stream: &mut SplitStream<WebSocket>, max: usize) -> Incoming {
    loop {
        match stream.next().await {
            None | Some(Ok(Message::Close(_))) => return Incoming::Closed,
            Some(Err(e)) => {
                let text = e.to_string();
                return if text.contains("too long")
                    || text.contains("Space limit")
                    || text.contains("size")
                {
                    Incoming::Bad(ErrorCode::TooLarge, text)
                } else {
                    Incoming::Closed
                };
            }
            Some(Ok(Message::Binary(bytes))) => {
                return match ClientFrame::decode(&bytes, max) {
                    Ok(frame) => Incoming::Frame(frame),
                    Err(e) => Incoming::Bad(e.code(), e.to_string()),
                }
            }
            Some(Ok(Message::Text(_))) => {
                return Incoming::Bad(
                    ErrorCode::Malformed,
                    DecodeError::Malformed("text message; frames are binary MessagePack".into())
                        .to_string(),
                )
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
        }
    }
}

fn close_code(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::TooLarge => 1009,
        ErrorCode::Unauthorized => 1008,
        ErrorCode::ShuttingDown => 1012,
        ErrorCode::Unavailable => 1011,
        ErrorCode::Stale => 4008,
        ErrorCode::Replaced => 4009,
        ErrorCode::Malformed | ErrorCode::UnsupportedVersion | ErrorCode::ProtocolViolation => 1002,
    }
}

/// Over the handshake budget: no session, just a `Drain` saying when to come
/// back, and close code 1013 (try again later).
pub async fn turn_away(socket: WebSocket, drain: Drain) {
    let (mut sink, _stream) = socket.split();
    let _ = sink.feed(encode(&ServerFrame::Drain(drain))).await;
    let _ = sink
        .feed(Message::Close(Some(CloseFrame {
            code: 1013,
            reason: "too many new connections; come back as the Drain frame says".into(),
        })))
        .await;
    let _ = timeout(Duration::from_secs(2), sink.flush()).await;
}

/// Sends an `Error` frame and a close frame with the matching code.
async fn close(sink: &mut Sink, code: ErrorCode, message: &str) {
    let frame = ServerFrame::Error(ErrorFrame {
        code,
        message: message.to_string(),
    });
    if let Ok(bytes) = frame.encode() {
        let _ = sink.feed(Message::Binary(Bytes::from(bytes))).await;
    }
    let reason: String = message.chars().take(100).collect();
    let _ = sink
        .feed(Message::Close(Some(CloseFrame {
            code: close_code(code),
            reason: reason.into(),
        })))
        .await;
    let _ = timeout(Duration::from_secs(2), sink.flush()).await;
}

fn encode(frame: &ServerFrame) -> Message {
    // The frame types always encode; an empty message would be decoded as
    // truncated by the client, which is the honest outcome if they ever do not.
    Message::Binary(Bytes::from(frame.encode().unwrap_or_default()))
}

impl Session {
    fn new(state: Arc<AppState>, hello: Hello, role: Role, remote: SocketAddr) -> Self {
        let now = state.clock.now();
        let claim = state
            .registry
            .connect(&hello.client_id, role, &remote.to_string(), now);
        let heartbeat = Heartbeat::new(
            HeartbeatConfig {
                interval_ms: state.config.heartbeat_ms,
                timeout_ms: state.config.heartbeat_ms,
            },
            now,
        );
        let bucket = RateBucket::new(state.config.max_publish_per_sec, now);
        let mut peer_clock = PeerClock::new(CLOCK_WINDOW_MS);
        if let Some(t) = hello.t {
            peer_clock.sample(t, now);
        }
        Session {
            peer_clock,
            client_id: hello.client_id.clone(),
            connection: claim.connection,
            role,
            hello,
            cursor: 1,
            acked: 0,
            last_rx: now,
            heartbeat,
            bucket,
            replaced: claim.replaced,
            welcomed: false,
            state,
        }
    }

    async fn serve(mut self, mut sink: Sink, mut stream: SplitStream<WebSocket>) {
        let ended = match self.welcome(&mut sink).await {
            Ok(()) => self.main_loop(&mut sink, &mut stream).await,
            Err(e) => Err((ErrorCode::Unavailable, e)),
        };
        if let Err((code, message)) = ended {
            if code == ErrorCode::ShuttingDown {
                // Tell the client when to come back, spread so the whole
                // crowd returns under the admission bound.
                let drain = self.state.drain(DrainReason::Shutdown, 0);
                let _ = sink.feed(encode(&ServerFrame::Drain(drain))).await;
            }
            close(&mut sink, code, &message).await;
        }
        let now = self.state.clock.now();
        self.state
            .registry
            .disconnected(&self.client_id, self.connection, self.welcomed, now);
        self.state
            .watchdog
            .report(crate::watchdog::Input::SessionEnded(self.client_id.clone()));
        tracing::info!(client_id = %self.client_id, connection = self.connection, cursor = self.cursor, "EVENT_CLIENT_DISCONNECTED");
    }

    /// Sends `Welcome`, then the gap and snapshot the plan asks for.
    async fn welcome(&mut self, sink: &mut Sink) -> Result<(), String> {
        let log = &self.state.log;
        let config = &self.state.config;
        let head = log.head();
        let oldest = log.oldest().map_err(|e| e.to_string())?;
        let start = plan_start(
            self.hello.resume,
            log.epoch(),
            head,
            oldest,
            u64::from(config.max_behind),
        );
        let resumed = matches!(start, Start::Replay { .. });
        let welcome = ServerFrame::Welcome(Welcome {
            session: format!("{}-{}", self.state.instance, self.connection),
            epoch: log.epoch(),
            head_seq: head,
            resumed,
            heartbeat_ms: config.heartbeat_ms.min(u64::from(u32::MAX)) as u32,
            limits: Limits {
                max_frame_bytes: config.max_frame_bytes,
                max_publish_per_sec: config.max_publish_per_sec,
                max_behind: config.max_behind,
                retention_ms: config.retention_ms,
            },
            access: Some(match self.role {
                Role::Read => Access::Read,
                Role::Control => Access::Control,
            }),
        });
        sink.feed(encode(&welcome))
            .await
            .map_err(|e| e.to_string())?;
        let has_upto = match start {
            Start::Replay { from, gap } => {
                if let Some(gap) = gap {
                    sink.feed(encode(&ServerFrame::Gap(gap)))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                self.cursor = from;
                from - 1
            }
            Start::Snapshot { gap } => {
                if let Some(gap) = gap {
                    sink.feed(encode(&ServerFrame::Gap(gap)))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                let upto = self.send_snapshot(sink).await?;
                self.cursor = upto + 1;
                upto
            }
        };
        sink.flush().await.map_err(|e| e.to_string())?;
        self.acked = has_upto;
        self.welcomed = true;
        let now = self.state.clock.now();
        self.state
            .registry
            .welcomed(&self.client_id, self.connection, has_upto, now);
        tracing::info!(
            client_id = %self.client_id, connection = self.connection, resumed, from = self.cursor, head,
            role = ?self.role, "EVENT_CLIENT_CONNECTED"
        );
        Ok(())
    }

    async fn send_snapshot(&self, sink: &mut Sink) -> Result<u64, String> {
        let (upto, state) = self.state.log.snapshot().map_err(|e| e.to_string())?;
        sink.feed(encode(&ServerFrame::Snapshot(Snapshot { upto, state })))
            .await
            .map_err(|e| e.to_string())?;
        Ok(upto)
    }

    async fn main_loop(
        &mut self,
        sink: &mut Sink,
        stream: &mut SplitStream<WebSocket>,
    ) -> Result<(), (ErrorCode, String)> {
        let mut head_rx = self.state.log.subscribe();
        let mut shutdown = self.state.shutdown.clone();
        let mut publishes: FuturesOrdered<BoxFuture<'static, PublishDone>> = FuturesOrdered::new();
        // A reliable publish over the rate waits here (and the session stops
        // reading) instead of being refused: backpressure, not loss.
        let mut throttled: Option<(Publish, tokio::time::Instant)> = None;
        let (_, window) = self.flow();
        let max = self.state.config.max_frame_bytes as usize;
        loop {
            let head = self.state.log.head();
            let can_send = self.cursor <= head && self.in_flight() < window;
            let now = self.state.clock.now();
            let stale_at = self.last_rx + self.state.config.stale_after_ms;
            let wake = self.heartbeat.poll_timeout().min(stale_at);
            let wake_at = self.state.clock.instant_at(wake);
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    return Err((ErrorCode::ShuttingDown, "the proxy is restarting; reconnect shortly".into()));
                }
                _ = self.replaced.changed() => {
                    return Err((ErrorCode::Replaced, "another connection with this client_id took over".into()));
                }
                Some(done) = publishes.next(), if !publishes.is_empty() => {
                    let frame = match done {
                        PublishDone::Accepted(upto) => ServerFrame::Accepted { upto },
                        PublishDone::Rejected(client_seq, reason) => {
                            ServerFrame::Rejected(Rejected { client_seq, reason })
                        }
                        PublishDone::StorageFailed(e) => {
                            return Err((ErrorCode::Unavailable, format!("cannot store events now: {e}")));
                        }
                    };
                    self.send_now(sink, frame).await?;
                }
                _ = async { sleep_until(throttled.as_ref().map_or(wake_at, |t| t.1)).await }, if throttled.is_some() => {
                    if let Some((publish, _)) = throttled.take() {
                        throttled = self.publish(publish, &mut publishes);
                    }
                }
                incoming = next_frame(stream, max), if throttled.is_none() && publishes.len() < MAX_PENDING_PUBLISHES => {
                    let frame = match incoming {
                        Incoming::Frame(frame) => frame,
                        Incoming::Bad(code, message) => {
                            self.state.bad_input(code);
                            tracing::warn!(client_id = %self.client_id, ?code, %message, "EVENT_BAD_FRAME");
                            return Err((code, message));
                        }
                        Incoming::Closed => return Ok(()),
                    };
                    self.last_rx = self.state.clock.now();
                    self.heartbeat.on_traffic(self.last_rx);
                    self.state.registry.activity(&self.client_id, self.connection, self.last_rx);
                    match frame {
                        ClientFrame::Hello(_) => {
                            self.state.bad_input(ErrorCode::ProtocolViolation);
                            return Err((ErrorCode::ProtocolViolation, "Hello may only be sent once".into()));
                        }
                        ClientFrame::Ack { upto } => {
                            let upto = upto.min(self.cursor.saturating_sub(1));
                            if upto > self.acked {
                                self.acked = upto;
                                self.state.registry.acked(&self.client_id, self.connection, upto);
                            }
                        }
                        ClientFrame::Ping(ping) => self.send_now(sink, ServerFrame::Pong(ping)).await?,
                        ClientFrame::Pong(pong) => {
                            if let Some(rtt) = self.heartbeat.on_pong(pong.nonce, self.last_rx) {
                                self.state.registry.health_check(&self.client_id, self.connection, Some(rtt), self.last_rx);
                            }
                        }
                        ClientFrame::Publish(publish) => throttled = self.publish(publish, &mut publishes),
                    }
                }
                _ = std::future::ready(()), if can_send => {
                    self.send_batch(sink).await?;
                }
                _ = head_rx.changed(), if !can_send => {}
                _ = sleep_until(wake_at), if throttled.is_none() => {
                    if now >= stale_at {
                        self.state.registry.stale(&self.client_id, self.connection);
                        tracing::warn!(client_id = %self.client_id, silent_ms = now - self.last_rx, "EVENT_CLIENT_STALE");
                        return Err((ErrorCode::Stale, format!("no traffic for {} ms", now - self.last_rx)));
                    }
                    match self.heartbeat.handle_timeout(now) {
                        Some(HeartbeatAction::SendPing { nonce }) => {
                            self.send_now(sink, ServerFrame::Ping(Ping { nonce, t: now })).await?;
                        }
                        Some(HeartbeatAction::Stale { .. }) => {
                            // No pong within an interval: a failed health check.
                            // The connection closes only after stale_after_ms of silence.
                            self.state.registry.health_check(&self.client_id, self.connection, None, now);
                            self.heartbeat.restart(now);
                        }
                        None => {}
                    }
                }
            }
        }
    }

    /// Events per page, and how many may be unacknowledged: two pages, so
    /// the next page goes out only once the client has acknowledged the one
    /// before (a client far behind is replayed at the pace it confirms, in
    /// bounded memory), and never more than `max_behind`.
    fn flow(&self) -> (u64, u64) {
        let page = u64::from(self.state.config.replay_page.max(1));
        (page, u64::from(self.state.config.max_behind).min(2 * page))
    }

    /// Events sent and not yet acknowledged.
    fn in_flight(&self) -> u64 {
        self.cursor.saturating_sub(1 + self.acked)
    }

    async fn send_now(
        &self,
        sink: &mut Sink,
        frame: ServerFrame,
    ) -> Result<(), (ErrorCode, String)> {
        let write = async {
            sink.feed(encode(&frame)).await?;
            sink.flush().await
        };
        match timeout(
            Duration::from_millis(self.state.config.stale_after_ms),
            write,
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err((ErrorCode::Stale, format!("write failed: {e}"))),
            Err(_) => Err((ErrorCode::Stale, "the client stopped reading".into())),
        }
    }

    /// Checks a publish and queues it for the log; returns it back if it
    /// must wait for the rate bucket.
    fn publish(
        &mut self,
        publish: Publish,
        publishes: &mut FuturesOrdered<BoxFuture<'static, PublishDone>>,
    ) -> Option<(Publish, tokio::time::Instant)> {
        let client_seq = publish.client_seq;
        let reject = |reason| {
            metrics::counter!("proxy_publishes_total", "result" => reject_label(reason))
                .increment(1);
            futures_util::future::ready(PublishDone::Rejected(client_seq, reason)).boxed()
        };
        let now = self.state.clock.now();
        if let (Some(deadline), Some(ttl)) = (publish.expires_at_ms, publish.ttl_ms) {
            // When the client created it, on its clock: a sample.
            self.peer_clock.sample(deadline.saturating_sub(ttl), now);
        }
        let clocks = Clocks {
            now,
            peer: &self.peer_clock,
            now_wall_ms: now_ms(),
        };
        let keys = shared_protocol::keys_transmitter(&publish.kind, &publish.payload);
        let admitted = admit(&publish, self.role, &clocks).and_then(|()| {
            // The time-out timer's lock-out, where the command enters.
            if keys && !self.state.watchdog.admit_ptt_on(&self.client_id) {
                return Err(RejectReason::TxTimeout);
            }
            Ok(())
        });
        if let Err(reason) = admitted {
            self.state
                .totals()
                .publishes_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(client_id = %self.client_id, client_seq, kind = %publish.kind, ?reason, "EVENT_PUBLISH_REJECTED");
            publishes.push_back(reject(reason));
            return None;
        }
        if let Err(wait_ms) = self.bucket.take(now) {
            if publish.delivery == Delivery::Volatile {
                publishes.push_back(reject(RejectReason::RateLimited));
                return None;
            }
            return Some((
                publish,
                tokio::time::Instant::now() + Duration::from_millis(wait_ms),
            ));
        }
        let log = self.state.log.clone();
        let client_id = self.client_id.clone();
        let state = self.state.clone();
        // A PTT command that gets applied feeds the TX watchdog.
        let ptt = shared_protocol::is_transmit_kind(&publish.kind).then_some(keys);
        let event = NewEvent {
            kind: publish.kind,
            payload: publish.payload,
            volatile: publish.delivery == Delivery::Volatile,
        };
        publishes.push_back(
            async move {
                match log.publish(&client_id, client_seq, event).await {
                    Ok(Published::Applied(_)) => {
                        use crate::watchdog::Input;
                        match ptt {
                            Some(true) => state.watchdog.report(Input::PttOn(client_id.clone())),
                            Some(false) => state.watchdog.report(Input::PttOff(client_id.clone())),
                            None => {}
                        }
                        state
                            .totals()
                            .publishes_applied
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        metrics::counter!("proxy_publishes_total", "result" => "applied")
                            .increment(1);
                        PublishDone::Accepted(client_seq)
                    }
                    Ok(Published::Duplicate) => {
                        state
                            .totals()
                            .publishes_duplicate
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        metrics::counter!("proxy_publishes_total", "result" => "duplicate")
                            .increment(1);
                        PublishDone::Accepted(client_seq)
                    }
                    Err(e) => PublishDone::StorageFailed(e.to_string()),
                }
            }
            .boxed(),
        );
        None
    }

    /// Sends the next batch of events from the cursor: a jump (gap and
    /// snapshot) when too far behind, a retention gap when the log was
    /// trimmed under the cursor, coalescing when the client is hot.
    async fn send_batch(&mut self, sink: &mut Sink) -> Result<(), (ErrorCode, String)> {
        let config = &self.state.config;
        let head = self.state.log.head();
        let lag = head.saturating_sub(self.cursor.saturating_sub(1));
        let mut progress = Progress {
            temperature: (lag as f64 / f64::from(config.max_behind)).min(1.0),
            ..Progress::default()
        };
        let write_err = |e: axum::Error| (ErrorCode::Stale, format!("write failed: {e}"));
        if lag > u64::from(config.max_behind) {
            let from = self.cursor;
            let upto = self
                .state
                .log
                .snapshot()
                .map_err(|e| (ErrorCode::Unavailable, e.to_string()))?
                .0;
            sink.feed(encode(&ServerFrame::Gap(Gap {
                from,
                to: upto,
                reason: GapReason::TooFarBehind,
            })))
            .await
            .map_err(write_err)?;
            let upto = self
                .send_snapshot(sink)
                .await
                .map_err(|e| (ErrorCode::Unavailable, e))?;
            tracing::warn!(client_id = %self.client_id, from, upto, "EVENT_CLIENT_TOO_FAR_BEHIND: sent gap and snapshot");
            self.cursor = upto + 1;
            // The client has the state up to here; its acks continue from it.
            self.acked = self.acked.max(from.saturating_sub(1));
            progress.cooled = true;
        } else {
            let (page, window) = self.flow();
            let room = page.min(window.saturating_sub(self.in_flight())).max(1);
            let events = self
                .state
                .log
                .read(self.cursor, room as usize)
                .map_err(|e| (ErrorCode::Unavailable, e.to_string()))?;
            if let Some(first) = events.first() {
                if first.seq > self.cursor {
                    let gap = Gap {
                        from: self.cursor,
                        to: first.seq - 1,
                        reason: GapReason::Retention,
                    };
                    sink.feed(encode(&ServerFrame::Gap(gap)))
                        .await
                        .map_err(write_err)?;
                }
            } else {
                // Everything from the cursor was trimmed: skip to the head.
                let gap = Gap {
                    from: self.cursor,
                    to: head,
                    reason: GapReason::Retention,
                };
                sink.feed(encode(&ServerFrame::Gap(gap)))
                    .await
                    .map_err(write_err)?;
                self.cursor = head + 1;
            }
            let hot = lag > u64::from(config.cool_above_lag);
            let skip = if hot {
                superseded(&events)
            } else {
                HashSet::new()
            };
            progress.cooled = hot && !skip.is_empty();
            // Frames are built first, then fed: one flush for the batch.
            let mut out = Vec::with_capacity(events.len() + 1);
            let mut run: Option<(u64, u64)> = None;
            let end_run = |run: &mut Option<(u64, u64)>, out: &mut Vec<Message>| {
                if let Some((from, to)) = run.take() {
                    let gap = Gap {
                        from,
                        to,
                        reason: GapReason::Coalesced,
                    };
                    out.push(encode(&ServerFrame::Gap(gap)));
                }
            };
            for event in &events {
                if skip.contains(&event.seq) {
                    run = Some(run.map_or((event.seq, event.seq), |(from, _)| (from, event.seq)));
                    progress.coalesced += 1;
                    continue;
                }
                end_run(&mut run, &mut out);
                out.push(Message::Binary(event.frame.clone()));
                progress.sent += 1;
            }
            end_run(&mut run, &mut out);
            for message in out {
                sink.feed(message).await.map_err(write_err)?;
            }
            if let Some(last) = events.last() {
                self.cursor = last.seq + 1;
            }
        }
        match timeout(Duration::from_millis(config.stale_after_ms), sink.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(write_err(e)),
            Err(_) => return Err((ErrorCode::Stale, "the client stopped reading".into())),
        }
        progress.cursor = self.cursor;
        self.state
            .registry
            .progress(&self.client_id, self.connection, progress);
        Ok(())
    }
}

/// Volatile events followed, in the same batch, by a newer event of the same
/// kind: a hot client can skip them and still end with every kind's newest value.
fn superseded(events: &[Logged]) -> HashSet<u64> {
    let mut seen_kinds = HashSet::new();
    let mut skip = HashSet::new();
    for event in events.iter().rev() {
        if !seen_kinds.insert(event.kind.clone()) && event.volatile {
            skip.insert(event.seq);
        }
    }
    skip
}

fn reject_label(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::Expired => "rejected_expired",
        RejectReason::Forbidden => "rejected_forbidden",
        RejectReason::RateLimited => "rejected_rate_limited",
        RejectReason::Invalid => "rejected_invalid",
        RejectReason::Unavailable => "rejected_unavailable",
        RejectReason::TxTimeout => "rejected_tx_timeout",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_superseded_volatile_events_are_skipped() {
        let ev = |seq, kind: &str, volatile| {
            let e = NewEvent {
                kind: kind.into(),
                payload: shared_protocol::frame::Payload::Nil,
                volatile,
            };
            Logged::build(seq, 0, &e).unwrap()
        };
        let batch = vec![
            ev(1, "meter.power", true),
            ev(2, "note", false),
            ev(3, "meter.power", true),
            ev(4, "note", false),
            ev(5, "meter.power", true),
            ev(6, "radio.state", true),
        ];
        let skip = superseded(&batch);
        let mut skip: Vec<u64> = skip.into_iter().collect();
        skip.sort();
        assert_eq!(
            skip,
            [1, 3],
            "reliable notes and each kind's newest value stay"
        );
    }
}
