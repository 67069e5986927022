//! One task per WebSocket connection: the I/O shell around
//! [`machine::ServerSession`].
//!
//! Every decision (start plan, flow window, paging, coalescing, gaps,
//! publish admission and order, heartbeat, stale) is the machine's; this
//! file moves bytes: frames from the socket into it, its reads and appends
//! to the log and their answers back, its frames to a writer task, and its
//! timer. The writer is a task of its own with an explicit outbound state
//! (bytes pending, time of the last finished write), so the session keeps
//! reading acks, pings and publishes while a write is stuck, and a client
//! that stopped reading is closed on time instead of holding the session.

pub mod machine;
#[cfg(test)]
mod pairing_tests;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use shared_protocol::frame::{
    Access, ClientFrame, DecodeError, Drain, DrainReason, ErrorCode, ErrorFrame, Limits,
    ServerFrame, Welcome,
};
use tokio::sync::{mpsc, Notify};
use tokio::time::timeout;

use crate::app::AppState;
use crate::auth::{role_for, Role};
use crate::eventlog::{now_ms, PublishRequest, PublishResult};
use crate::watchdog::Input;
use machine::{Admission, Opening, Output, PublishReport, Report, ServerSession, SessionConfig};

/// A client must say `Hello` within this long of connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing session waits for its last frames to go out; a
/// stale one (its writes are stuck) waits less.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
const STALE_CLOSE_GRACE: Duration = Duration::from_millis(300);
/// Bytes the writer gathers before one flush.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Frames (or log answers) taken in one wake-up when more are ready, before
/// the machine's outputs are carried out.
const READ_BATCH: usize = 64;

type Sink = SplitSink<WebSocket, Message>;

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
    if hello.client_id.is_empty()
        || hello.client_id.len() > 128
        || !crate::auth::printable(&hello.client_id)
    {
        state.bad_input(ErrorCode::ProtocolViolation);
        return close(
            &mut sink,
            ErrorCode::ProtocolViolation,
            "client_id must be 1 to 128 bytes of printable characters",
        )
        .await;
    }
    let Some((role, credential)) = role_for(
        &state.config.tokens,
        hello.token.as_deref(),
        state.anonymous_role,
    ) else {
        state.bad_input(ErrorCode::Unauthorized);
        tracing::warn!(client_id = %hello.client_id, %remote, "EVENT_AUTH_FAILED: bad or missing token");
        return close(&mut sink, ErrorCode::Unauthorized, "bad or missing token").await;
    };
    let now = state.clock.now();
    let Some(claim) =
        state
            .registry
            .connect(&hello.client_id, role, credential, &remote.to_string(), now)
    else {
        state.bad_input(ErrorCode::Unauthorized);
        tracing::warn!(client_id = ?hello.client_id, %remote, "EVENT_CLIENT_ID_TAKEN: another credential owns this client_id");
        return close(
            &mut sink,
            ErrorCode::Unauthorized,
            "this client_id belongs to another credential; use your own",
        )
        .await;
    };
    {
        // On a shared log: tell the other proxies, so a half-open copy of
        // this session on one of them ends now (see `eventlog::sessions`).
        let (state, client_id, connection) =
            (state.clone(), hello.client_id.clone(), claim.connection);
        let dedup_id = credential.dedup_id(&client_id);
        tokio::spawn(async move {
            if let Some(revision) = state.log.claim_session(&client_id, &dedup_id).await {
                state.registry.claimed(&client_id, connection, revision);
            }
        });
    }
    let shell = Shell {
        client_id: hello.client_id.clone(),
        dedup_id: credential.dedup_id(&hello.client_id),
        connection: claim.connection,
        replaced: claim.replaced,
        role,
        hello,
        welcomed: false,
        cursor: 0,
        state,
    };
    shell.serve(sink, stream).await;
}

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

/// An `Error` frame and a close frame with the matching code.
fn closing(code: ErrorCode, message: &str) -> [Message; 2] {
    let error = encode(&ServerFrame::Error(ErrorFrame {
        code,
        message: message.to_string(),
    }));
    let reason: String = message.chars().take(100).collect();
    let close = Message::Close(Some(CloseFrame {
        code: close_code(code),
        reason: reason.into(),
    }));
    [error, close]
}

/// Before a session exists: sends [`closing`] frames, for at most
/// [`CLOSE_GRACE`], whatever the peer does.
async fn close(sink: &mut Sink, code: ErrorCode, message: &str) {
    let send = async {
        for m in closing(code, message) {
            sink.feed(m).await?;
        }
        sink.flush().await
    };
    let _ = timeout(CLOSE_GRACE, send).await;
}

fn encode(frame: &ServerFrame) -> Message {
    // The frame types always encode; an empty message would be decoded as
    // truncated by the client, which is the honest outcome if they ever do not.
    Message::Binary(Bytes::from(frame.encode().unwrap_or_default()))
}

/// The writer task's side of the outbound queue, shared with the session.
struct Outbound {
    pending_bytes: AtomicU64,
    last_progress: AtomicU64,
    /// Set by the session while its machine waits on the writer (see
    /// `ServerSession::waits_on_writer`): only then does a finished write
    /// wake it.
    wanted: AtomicBool,
    progressed: Notify,
}

/// Writes what the session queues (the frames of one wake-up come as one
/// batch), one flush for everything queued by then, and records its
/// progress. Ends when the queue's sender is dropped and all is written,
/// or at the first write error.
async fn writer(
    mut sink: Sink,
    mut queue: mpsc::UnboundedReceiver<Vec<Message>>,
    outbound: Arc<Outbound>,
    clock: crate::clock::Clock,
) {
    while let Some(first) = queue.recv().await {
        let mut bytes = 0;
        let mut batch = Some(first);
        while let Some(messages) = batch.take() {
            for message in messages {
                bytes += message_len(&message);
                if sink.feed(message).await.is_err() {
                    return;
                }
            }
            if bytes < WRITE_BATCH_BYTES {
                batch = queue.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
        outbound
            .pending_bytes
            .fetch_sub(bytes as u64, Ordering::SeqCst);
        outbound.last_progress.store(clock.now(), Ordering::SeqCst);
        if outbound.wanted.swap(false, Ordering::SeqCst) {
            outbound.progressed.notify_one();
        }
    }
    let _ = sink.close().await;
}

fn message_len(message: &Message) -> usize {
    match message {
        Message::Binary(b) => b.len(),
        Message::Text(t) => t.len(),
        Message::Close(Some(c)) => c.reason.len() + 2,
        _ => 2,
    }
}

/// The TX watchdog's lock-out and the wall clock, for admission.
struct Env<'a> {
    state: &'a AppState,
}

impl Admission for Env<'_> {
    fn wall_ms(&self) -> u64 {
        now_ms()
    }

    fn ptt_on_allowed(&mut self, client_id: &str) -> bool {
        self.state.watchdog.admit_ptt_on(client_id)
    }

    fn state_fits(&self, kind: &str, payload: &shared_protocol::frame::Payload) -> bool {
        if self.state.stateless.matches(kind) {
            return true;
        }
        let config = &self.state.config;
        let limits = crate::eventlog::StateLimits {
            kinds: config.max_state_kinds,
            bytes: config.max_state_bytes,
        };
        // Reserved at once (its commit sets the exact size), so a burst of
        // publishes cannot all pass before the first is stored.
        let size = kind.len() as u64 + 32 + crate::eventlog::payload_size(payload);
        self.state.log.state_reserve(kind, size, limits)
    }
}

/// How a session ended: with the code to tell the client, or `None` when
/// the client closed it.
struct Ending {
    code: Option<ErrorCode>,
    message: String,
}

struct Shell {
    state: Arc<AppState>,
    client_id: String,
    /// What its publishes are deduplicated under (see `auth::Credential`).
    dedup_id: String,
    connection: u64,
    role: Role,
    hello: shared_protocol::frame::Hello,
    replaced: tokio::sync::watch::Receiver<bool>,
    welcomed: bool,
    cursor: u64,
}

impl Shell {
    fn session_config(&self) -> SessionConfig {
        let c = &self.state.config;
        SessionConfig {
            heartbeat_ms: c.heartbeat_ms,
            stale_after_ms: c.stale_after_ms,
            max_behind: c.max_behind,
            replay_page: c.replay_page,
            cool_above_lag: c.cool_above_lag,
            max_publish_per_sec: c.max_publish_per_sec,
            publish_window: c.publish_window,
            max_pending_bytes: c.max_pending_bytes,
            mirror_wait_ms: match self.state.log.backend() {
                "jetstream" => c.mirror_wait_ms,
                _ => 0,
            },
        }
    }

    fn opening(&self) -> Result<Opening, String> {
        let log = &self.state.log;
        let config = &self.state.config;
        Ok(Opening {
            client_id: self.client_id.clone(),
            role: self.role,
            hello: self.hello.clone(),
            epoch: log.epoch(),
            head: log.head(),
            oldest: log.oldest().map_err(|e| e.to_string())?,
            welcome: Welcome {
                session: format!("{}-{}", self.state.instance, self.connection),
                epoch: 0,
                head_seq: 0,
                resumed: false,
                heartbeat_ms: config.heartbeat_ms.min(u64::from(u32::MAX)) as u32,
                limits: Limits {
                    max_frame_bytes: config.max_frame_bytes,
                    max_publish_per_sec: config.max_publish_per_sec,
                    max_behind: config.max_behind,
                    retention_ms: config.retention_ms,
                    publish_window: Some(config.publish_window),
                },
                access: Some(match self.role {
                    Role::Read => Access::Read,
                    Role::Control => Access::Control,
                }),
            },
        })
    }

    async fn serve(mut self, sink: Sink, mut stream: SplitStream<WebSocket>) {
        let clock = self.state.clock;
        let outbound = Arc::new(Outbound {
            pending_bytes: AtomicU64::new(0),
            last_progress: AtomicU64::new(clock.now()),
            wanted: AtomicBool::new(false),
            progressed: Notify::new(),
        });
        let (queue, queue_rx) = mpsc::unbounded_channel();
        let mut writer = tokio::spawn(writer(sink, queue_rx, outbound.clone(), clock));
        let ending = match self.opening() {
            Ok(opening) => {
                let mut session = ServerSession::new(self.session_config(), opening, clock.now());
                self.drive(&mut session, &mut stream, &queue, &outbound)
                    .await
            }
            Err(e) => Ending {
                code: Some(ErrorCode::Unavailable),
                message: e,
            },
        };
        let grace = if ending.code == Some(ErrorCode::Stale) {
            STALE_CLOSE_GRACE
        } else {
            CLOSE_GRACE
        };
        if ending.code == Some(ErrorCode::ShuttingDown) {
            // Tell the client when to come back, spread so the whole crowd
            // returns under the admission bound.
            let drain = self.state.drain(DrainReason::Shutdown, 0);
            let _ = queue.send(vec![encode(&ServerFrame::Drain(drain))]);
        }
        if let Some(code) = ending.code {
            let _ = queue.send(closing(code, &ending.message).into());
        }
        drop(queue);
        if timeout(grace, &mut writer).await.is_err() {
            // Its writes are stuck: drop the socket.
            writer.abort();
        }
        drop(stream);
        let now = clock.now();
        self.state
            .registry
            .disconnected(&self.client_id, self.connection, self.welcomed, now);
        self.state
            .watchdog
            .report(Input::SessionEnded(self.client_id.clone()));
        tracing::info!(client_id = %self.client_id, connection = self.connection, cursor = self.cursor, code = ending.code.map_or("closed_by_client", |c| c.as_str()), reason = %ending.message, "EVENT_CLIENT_DISCONNECTED");
    }

    /// Registry, counters, the TX watchdog and logs: what the machine reports.
    fn report(&mut self, report: Report) {
        let state = &self.state;
        let (id, connection) = (self.client_id.as_str(), self.connection);
        match report {
            Report::Welcomed {
                has_upto,
                resumed,
                from,
            } => {
                self.welcomed = true;
                state
                    .registry
                    .welcomed(id, connection, has_upto, state.clock.now());
                tracing::info!(client_id = %id, connection, resumed, from, head = state.log.head(), role = ?self.role, "EVENT_CLIENT_CONNECTED");
            }
            Report::Activity(now) => state.registry.activity(id, connection, now),
            Report::Acked(upto) => state.registry.acked(id, connection, upto),
            Report::Health(rtt, now) => state.registry.health_check(id, connection, rtt, now),
            Report::Progress(progress) => state.registry.progress(id, connection, progress),
            Report::MirrorBehind { head, last_seq } => {
                tracing::warn!(client_id = %id, head, last_seq, "EVENT_MIRROR_BEHIND: the client resumed past this proxy's copy of the shared log, which did not catch up; sent it a Drain");
            }
            Report::TooFarBehind { from, upto } => {
                tracing::warn!(client_id = %id, from, upto, "EVENT_CLIENT_TOO_FAR_BEHIND: sent gap and snapshot");
            }
            Report::Stale { why } => {
                state.registry.stale(id, connection);
                tracing::warn!(client_id = %id, %why, "EVENT_CLIENT_STALE");
            }
            Report::Publish(PublishReport::Applied { ptt, .. }) => {
                match ptt {
                    Some(true) => state.watchdog.report(Input::PttOn(id.to_string())),
                    Some(false) => state.watchdog.report(Input::PttOff(id.to_string())),
                    None => {}
                }
                state
                    .totals()
                    .publishes_applied
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!("proxy_publishes_total", "result" => "applied").increment(1);
            }
            Report::Publish(PublishReport::Duplicate { .. }) => {
                state
                    .totals()
                    .publishes_duplicate
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!("proxy_publishes_total", "result" => "duplicate").increment(1);
            }
            Report::Publish(PublishReport::Rejected {
                client_seq,
                kind,
                reason,
            }) => {
                state
                    .totals()
                    .publishes_rejected
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!("proxy_publishes_total", "result" => reject_label(reason))
                    .increment(1);
                tracing::info!(client_id = %id, client_seq, %kind, ?reason, "EVENT_PUBLISH_REJECTED");
            }
        }
    }

    /// Runs the machine until it closes, or the proxy or a newer
    /// connection of the same client ends it.
    async fn drive(
        &mut self,
        session: &mut ServerSession,
        stream: &mut SplitStream<WebSocket>,
        queue: &mpsc::UnboundedSender<Vec<Message>>,
        outbound: &Outbound,
    ) -> Ending {
        let state = self.state.clone();
        let clock = state.clock;
        let mut shutdown = state.shutdown.clone();
        let mut replaced = self.replaced.clone();
        // Made once, not once a wake-up: each of these registers with a
        // structure every session shares (the watches' waiter lists, the
        // timer wheel), and re-registering on every pass is contention.
        let mut shutdown_changed = std::pin::pin!(shutdown.changed());
        let mut replaced_changed = std::pin::pin!(replaced.changed());
        let mut head_changed = head_change(state.log.subscribe());
        // A commit between the opening and the subscription moved no watch
        // for this session.
        session.handle_head(state.log.head());
        let sleep = tokio::time::sleep_until(clock.instant_at(session.poll_timeout()));
        let mut sleep = std::pin::pin!(sleep);
        let (publish_tx, mut published) = state.log.publisher(self.dedup_id.clone());
        let max = state.config.max_frame_bytes as usize;
        let mut answers: Vec<(u64, Result<crate::eventlog::Published, String>)> = Vec::new();
        loop {
            session.handle_write_progress(
                outbound.pending_bytes.load(Ordering::SeqCst),
                outbound.last_progress.load(Ordering::SeqCst),
            );
            // (Everything it asked for before is carried out by now.) The
            // frames go to the writer as one batch: one wake-up, one write.
            let mut frames: Vec<Message> = Vec::new();
            let mut frame_bytes = 0;
            while let Some(output) = session.poll_output() {
                match output {
                    Output::Send(bytes) => {
                        frame_bytes += bytes.len();
                        frames.push(Message::Binary(bytes));
                    }
                    Output::ReadEvents { from, limit } => {
                        state.log.read_with(from, limit, |events| {
                            session.handle_events_lent(events.map_err(|e| e.to_string()))
                        });
                    }
                    Output::ReadSnapshot => {
                        session.handle_snapshot(state.log.snapshot().map_err(|e| e.to_string()));
                    }
                    Output::Append(mut append) => {
                        append.event.stateless = self.state.stateless.matches(&append.event.kind);
                        let request = PublishRequest {
                            client_seq: append.client_seq,
                            after: append.after,
                            event: append.event,
                        };
                        if publish_tx.send(request).is_err() {
                            // The machine closes: what it said before goes
                            // out first, then its `Close` ends the loop.
                            session.handle_log_closed();
                        }
                    }
                    Output::Report(report) => self.report(report),
                    Output::Close { code, message } => {
                        enqueue(queue, outbound, frames, frame_bytes);
                        if code == ErrorCode::ProtocolViolation {
                            state.bad_input(code);
                        }
                        return Ending {
                            code: Some(code),
                            message,
                        };
                    }
                }
            }
            enqueue(queue, outbound, frames, frame_bytes);
            let waits_on_writer = session.waits_on_writer();
            if waits_on_writer {
                outbound.wanted.store(true, Ordering::SeqCst);
                // A write that finished before the flag was up woke nobody:
                // look again now that it is.
                session.handle_write_progress(
                    outbound.pending_bytes.load(Ordering::SeqCst),
                    outbound.last_progress.load(Ordering::SeqCst),
                );
                if !session.waits_on_writer() {
                    continue;
                }
            }
            self.cursor = session.cursor();
            let wake = clock.instant_at(session.poll_timeout());
            if sleep.deadline() != wake {
                sleep.as_mut().reset(wake);
            }
            let mut env = Env { state: &state };
            tokio::select! {
                biased;
                _ = &mut shutdown_changed => {
                    return Ending { code: Some(ErrorCode::ShuttingDown), message: "the proxy is restarting; reconnect shortly".into() };
                }
                _ = &mut replaced_changed => {
                    return Ending { code: Some(ErrorCode::Replaced), message: "another connection with this client_id took over".into() };
                }
                Some(first) = published.recv() => {
                    // One commit answers many publishes: take all that are
                    // in, so one `Accepted` covers them.
                    answers.clear();
                    answers.push(answer(first));
                    while answers.len() < READ_BATCH {
                        let Ok(next) = published.try_recv() else { break };
                        answers.push(answer(next));
                    }
                    session.handle_published_all(answers.drain(..), clock.now(), &mut env);
                }
                incoming = next_frame(stream, max) => {
                    // Frames already read are taken too, so a window of
                    // publishes reaches the log together.
                    let mut incoming = incoming;
                    let mut taken = 0;
                    loop {
                        match incoming {
                            Incoming::Frame(frame) => session.handle_frame(frame, clock.now(), &mut env),
                            Incoming::Bad(code, message) => {
                                state.bad_input(code);
                                tracing::warn!(client_id = %self.client_id, ?code, %message, "EVENT_BAD_FRAME");
                                return Ending { code: Some(code), message };
                            }
                            Incoming::Closed => {
                                return Ending { code: None, message: "the client closed the connection".into() };
                            }
                        }
                        taken += 1;
                        if taken >= READ_BATCH {
                            break;
                        }
                        match next_frame(stream, max).now_or_never() {
                            Some(next) => incoming = next,
                            None => break,
                        }
                    }
                }
                (rx, head) = &mut head_changed => {
                    session.handle_head(head);
                    head_changed = head_change(rx);
                }
                _ = outbound.progressed.notified(), if waits_on_writer => {}
                _ = &mut sleep => {
                    // The writer reports progress only when asked: the
                    // machine judges staleness from the latest.
                    session.handle_write_progress(
                        outbound.pending_bytes.load(Ordering::SeqCst),
                        outbound.last_progress.load(Ordering::SeqCst),
                    );
                    session.handle_timeout(clock.now(), &mut env);
                }
            }
        }
    }
}

/// Hands one wake-up's frames to the writer, counted as pending first.
fn enqueue(
    queue: &mpsc::UnboundedSender<Vec<Message>>,
    outbound: &Outbound,
    frames: Vec<Message>,
    bytes: usize,
) {
    if frames.is_empty() {
        return;
    }
    outbound
        .pending_bytes
        .fetch_add(bytes as u64, Ordering::SeqCst);
    let _ = queue.send(frames);
}

fn answer(
    (client_seq, result): PublishResult,
) -> (u64, Result<crate::eventlog::Published, String>) {
    (client_seq, result.map_err(|e| e.to_string()))
}

/// The next move of the log's head, as a future made once per move (one
/// registration with the watch), handing the receiver back with the new
/// head; pending for good once the log is gone.
type HeadChange = std::pin::Pin<
    Box<dyn std::future::Future<Output = (tokio::sync::watch::Receiver<u64>, u64)> + Send>,
>;

fn head_change(mut rx: tokio::sync::watch::Receiver<u64>) -> HeadChange {
    Box::pin(async move {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let head = *rx.borrow_and_update();
        (rx, head)
    })
}

fn reject_label(reason: shared_protocol::frame::RejectReason) -> &'static str {
    use shared_protocol::frame::RejectReason;
    match reason {
        RejectReason::Expired => "rejected_expired",
        RejectReason::Forbidden => "rejected_forbidden",
        RejectReason::RateLimited => "rejected_rate_limited",
        RejectReason::Invalid => "rejected_invalid",
        RejectReason::Unavailable => "rejected_unavailable",
        RejectReason::TxTimeout => "rejected_tx_timeout",
        RejectReason::StateFull => "rejected_state_full",
    }
}
