//! Minimal protocol clients for load: a publisher that pipelines reliable
//! publishes and a subscriber that checks order, acks, and measures latency.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use shared_protocol::frame::*;
use shared_protocol::receiver::{Delivered, Receiver};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::complete::Sent;

/// Wall-clock Unix ms: a `client_seq` base that keeps growing across
/// reconnects of one `client_id`.
pub fn unix_ms() -> u64 {
    unix_us() / 1_000
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A connection's byte stream: plain TCP or TLS over it (`wss://`), behind
/// one type so every scenario can run over either.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

pub type Ws = WebSocketStream<Box<dyn Io>>;

/// Opens a WebSocket to `url` (`ws://` or `wss://`, the latter trusting
/// the certificate of `tls::TestCert::trust`), with TCP_NODELAY.
pub async fn connect(url: &str) -> Result<Ws> {
    let request = url.into_client_request()?;
    let uri = request.uri().clone();
    let host = uri.host().ok_or_else(|| anyhow!("{url}: no host"))?;
    let tls = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Io> = if tls {
        let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config()?);
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())?;
        Box::new(connector.connect(name, tcp).await?)
    } else {
        Box::new(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, None).await?;
    Ok(ws)
}

pub async fn hello(url: &str, client_id: &str) -> Result<(Ws, Welcome)> {
    hello_from(url, client_id, None).await
}

/// Connects, says Hello (resuming from `resume` if given), waits for
/// Welcome. One frame per message.
pub async fn hello_from(
    url: &str,
    client_id: &str,
    resume: Option<Resume>,
) -> Result<(Ws, Welcome)> {
    let (ws, welcome, _) = say_hello(url, client_id, resume, false).await?;
    Ok((ws, welcome))
}

/// As [`hello`], for a client that reads batches (`Hello{batch}`): also
/// the frames that came after the Welcome in its message.
pub async fn hello_batched(url: &str, client_id: &str) -> Result<(Ws, Welcome, Vec<ServerFrame>)> {
    say_hello(url, client_id, None, true).await
}

async fn say_hello(
    url: &str,
    client_id: &str,
    resume: Option<Resume>,
    batch: bool,
) -> Result<(Ws, Welcome, Vec<ServerFrame>)> {
    let mut ws = connect(url).await?;
    let hello = ClientFrame::Hello(Hello {
        client_id: client_id.into(),
        token: None,
        resume,
        t: None,
        batch,
    });
    ws.send(Message::Binary(hello.encode()?.into())).await?;
    while let Some(msg) = ws.next().await {
        if let Message::Binary(b) = msg? {
            let mut frames = frames(&b)?.into_iter();
            if let Some(ServerFrame::Welcome(w)) = frames.next() {
                return Ok((ws, w, frames.collect()));
            }
        }
    }
    bail!("closed before Welcome")
}

/// The frames of one message: one, or several for a client that said
/// `Hello{batch}`.
pub fn frames(bytes: &[u8]) -> Result<Vec<ServerFrame>> {
    Ok(ServerFrame::decode_each(bytes, usize::MAX).collect::<Result<_, _>>()?)
}

/// A number per publisher in this process, carried in every payload as
/// `p` (beside the publish's own number `n`), so the completeness check can
/// tell one publisher's events from another's in a log they share.
pub fn next_publisher_tag() -> u64 {
    static TAGS: AtomicU64 = AtomicU64::new(1);
    TAGS.fetch_add(1, Ordering::Relaxed)
}

/// The payload of publish `n` of publisher `tag`: the send time for the
/// latency, `p` and `n` for the completeness check, padding for the size.
pub fn numbered_payload(tag: u64, n: u64, pad: usize) -> Payload {
    let mut fields = vec![
        ("t".into(), unix_us().into()),
        ("p".into(), tag.into()),
        ("n".into(), n.into()),
    ];
    if pad > 0 {
        fields.push(("pad".into(), Payload::Binary(vec![0u8; pad])));
    }
    Payload::Map(fields)
}

/// The window a publisher keeps to: what it was asked for, and never more
/// than the proxy announced (a reliable publish over the proxy's window
/// closes the connection with `protocol_violation`). A proxy that announces
/// none predates the window and had no such limit.
pub fn window_for(asked: usize, welcome: &Welcome) -> usize {
    let announced = welcome
        .limits
        .publish_window
        .map_or(usize::MAX, |w| w as usize);
    asked.min(announced).max(1)
}

/// One connection that pipelines numbered reliable publishes (`client_seq`
/// = `n` = 1, 2, ...), with at most `window` unanswered: sent and neither
/// covered by an `Accepted{upto}` nor answered by a `Rejected`. Remembers
/// what it sent and what was refused, for the completeness check.
pub struct Publisher {
    ws: Ws,
    who: String,
    tag: u64,
    window: usize,
    next: u64,
    accepted: u64,
    /// Refused publishes above `accepted` are still answered; below it they
    /// are only kept for the report.
    rejected: BTreeSet<u64>,
    /// When each unanswered publish was sent, oldest first.
    sent_at: VecDeque<(u64, std::time::Instant)>,
    /// Send to the `Accepted` (or `Rejected`) that answered it, in µs.
    pub answer_latency: Histogram<u64>,
}

impl Publisher {
    /// Connects as `id`, keeping at most `window` publishes unanswered (or
    /// fewer, if the proxy's `Welcome` says so).
    pub async fn connect(url: &str, id: &str, window: usize) -> Result<Publisher> {
        // What follows the Welcome (a Snapshot) is nothing a publisher uses.
        let (ws, welcome, _) = hello_batched(url, id).await?;
        Ok(Publisher {
            ws,
            who: id.to_string(),
            tag: next_publisher_tag(),
            window: window_for(window, &welcome),
            next: 1,
            accepted: 0,
            rejected: BTreeSet::new(),
            sent_at: VecDeque::new(),
            answer_latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        })
    }

    /// Publishes answered so far (covered by `Accepted`).
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    fn answered(&mut self, upto: u64) {
        let now = std::time::Instant::now();
        while let Some(&(seq, at)) = self.sent_at.front() {
            if seq > upto {
                break;
            }
            self.sent_at.pop_front();
            let _ = self
                .answer_latency
                .record((now.duration_since(at).as_micros() as u64).max(1));
        }
    }

    /// The window this publisher keeps to.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Publishes sent so far.
    pub fn sent(&self) -> u64 {
        self.next - 1
    }

    fn unanswered(&self) -> usize {
        let above = self.rejected.range(self.accepted + 1..).count() as u64;
        (self.sent() - self.accepted - above) as usize
    }

    /// Sends `n` reliable events carrying their send time, waiting for
    /// answers whenever the window is full; one flush at the end.
    pub async fn publish_batch(&mut self, n: usize, payload_bytes: usize) -> Result<()> {
        for _ in 0..n {
            if self.unanswered() >= self.window {
                // What is fed but unflushed cannot be answered: send it first.
                self.ws.flush().await?;
                self.wait_until(|p| p.unanswered() < p.window).await?;
            }
            let frame = ClientFrame::Publish(Publish {
                client_seq: self.next,
                kind: "bench".into(),
                payload: numbered_payload(self.tag, self.next, payload_bytes),
                delivery: Delivery::Reliable,
                expires_at_ms: None,
                ttl_ms: None,
            });
            self.sent_at
                .push_back((self.next, std::time::Instant::now()));
            self.next += 1;
            self.ws
                .feed(Message::Binary(frame.encode()?.into()))
                .await?;
        }
        self.ws.flush().await?;
        self.drain_ready().await
    }

    async fn drain_ready(&mut self) -> Result<()> {
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::ZERO, self.ws.next()).await {
            self.handle(msg?).await?;
        }
        Ok(())
    }

    async fn handle(&mut self, msg: Message) -> Result<()> {
        let Message::Binary(b) = msg else {
            return Ok(());
        };
        for frame in frames(&b)? {
            match frame {
                ServerFrame::Accepted { upto } => {
                    self.accepted = self.accepted.max(upto);
                    self.answered(upto);
                }
                ServerFrame::Rejected(r) => {
                    self.rejected.insert(r.client_seq);
                    if self
                        .sent_at
                        .front()
                        .is_some_and(|&(seq, _)| seq == r.client_seq)
                    {
                        self.answered(r.client_seq);
                    }
                }
                ServerFrame::Ping(p) => {
                    self.ws
                        .send(Message::Binary(ClientFrame::Pong(p).encode()?.into()))
                        .await?
                }
                ServerFrame::Error(e) => bail!("proxy error: {e:?}"),
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads answers until `done` holds; 30 s without one is an error (a
    /// publish the proxy never answers is itself a failure worth seeing).
    async fn wait_until(&mut self, done: impl Fn(&Publisher) -> bool) -> Result<()> {
        while !done(self) {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .map_err(|_| {
                    anyhow!(
                        "{}: no answer within 30 s ({} sent, accepted up to {})",
                        self.who,
                        self.sent(),
                        self.accepted
                    )
                })?
                .ok_or_else(|| anyhow!("{}: the proxy closed the connection", self.who))??;
            self.handle(msg).await?;
        }
        Ok(())
    }

    /// Waits until every publish sent is answered, and says what was sent.
    pub async fn finish(&mut self) -> Result<Sent> {
        self.ws.flush().await?;
        self.wait_until(|p| p.unanswered() == 0).await?;
        Ok(Sent {
            tag: self.tag,
            who: self.who.clone(),
            count: self.sent(),
            rejected: self.rejected.clone(),
        })
    }
}

pub struct Subscriber {
    ws: Ws,
    receiver: Receiver,
    head: u64,
    /// Frames that came with the Welcome, not yet read.
    early: Vec<ServerFrame>,
}

impl Subscriber {
    pub async fn connect(url: &str, id: &str) -> Result<Subscriber> {
        let (ws, welcome, early) = hello_batched(url, id).await?;
        let mut receiver = Receiver::new(None, 100_000);
        receiver.on_welcome(&welcome);
        Ok(Subscriber {
            ws,
            receiver,
            head: welcome.head_seq,
            early,
        })
    }

    /// The head announced in this subscriber's `Welcome`.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Reads until `stop`, counting deliveries and recording latency;
    /// returns the duplicates seen on the wire.
    pub async fn run(
        &mut self,
        stop: Arc<AtomicBool>,
        delivered: Arc<AtomicU64>,
        latency: Arc<Mutex<Histogram<u64>>>,
    ) -> Result<u64> {
        let mut out = Vec::new();
        let mut acked = 0;
        let mut local = Vec::with_capacity(1024);
        let mut message = std::mem::take(&mut self.early);
        while !stop.load(Ordering::Relaxed) {
            if message.is_empty() {
                let Ok(msg) =
                    tokio::time::timeout(Duration::from_millis(100), self.ws.next()).await
                else {
                    flush(&local, &delivered, &latency);
                    local.clear();
                    continue;
                };
                let Some(msg) = msg else { break };
                let Message::Binary(b) = msg? else { continue };
                message = frames(&b)?;
            }
            out.clear();
            for frame in message.drain(..) {
                match frame {
                    ServerFrame::Event(e) => {
                        let _ = self.receiver.on_event(e, &mut out);
                    }
                    ServerFrame::Snapshot(s) => self.receiver.on_snapshot(s, &mut out),
                    ServerFrame::Gap(g) => self.receiver.on_gap(g, &mut out),
                    ServerFrame::Ping(p) => {
                        self.ws
                            .send(Message::Binary(ClientFrame::Pong(p).encode()?.into()))
                            .await?
                    }
                    _ => {}
                }
            }
            let now = unix_us();
            for d in &out {
                if let Delivered::Event(e) = d {
                    if let Some(t) = e.payload["t"].as_u64() {
                        local.push(now.saturating_sub(t).max(1));
                    }
                }
            }
            let last = self.receiver.last_seq();
            if last >= acked + 32 {
                acked = last;
                self.ws
                    .send(Message::Binary(
                        ClientFrame::Ack { upto: last }.encode()?.into(),
                    ))
                    .await?;
            }
            if local.len() >= 64 {
                flush(&local, &delivered, &latency);
                local.clear();
            }
        }
        flush(&local, &delivered, &latency);
        Ok(self.receiver.duplicates)
    }
}

fn flush(samples: &[u64], delivered: &AtomicU64, latency: &Mutex<Histogram<u64>>) {
    delivered.fetch_add(samples.len() as u64, Ordering::Relaxed);
    if let Ok(mut h) = latency.lock() {
        for s in samples {
            let _ = h.record(*s);
        }
    }
}

/// A subscriber that reconnects like the browser client: the dashboard's
/// backoff (1 s base, +-30 % jitter, from `shared_protocol::backoff`) and a
/// resume from where its receiver stands. Records every connection attempt.
pub struct Resilient {
    pub id: String,
    pub receiver: Receiver,
    pub attempts: Vec<std::time::Instant>,
    pub welcomes: Vec<std::time::Instant>,
    pub gaps: u64,
}

impl Resilient {
    pub fn new(id: String) -> Self {
        Resilient {
            id,
            receiver: Receiver::new(None, 1_000_000),
            attempts: Vec::new(),
            welcomes: Vec::new(),
            gaps: 0,
        }
    }

    /// Stays connected (reconnecting as needed) until the receiver has `target`
    /// (once `target` is non-zero) or `stop`.
    pub async fn run(
        mut self,
        url: String,
        target: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        seed: u64,
    ) -> Self {
        use shared_protocol::backoff::{Backoff, BackoffConfig, Retry};
        let mut backoff = Backoff::new(
            BackoffConfig {
                max_attempts: None,
                ..BackoffConfig::DASHBOARD
            },
            seed,
        );
        let mut out = Vec::new();
        loop {
            let goal = target.load(Ordering::Relaxed);
            if stop.load(Ordering::Relaxed) || (goal > 0 && self.receiver.last_seq() >= goal) {
                return self;
            }
            self.attempts.push(std::time::Instant::now());
            let hello = ClientFrame::Hello(Hello {
                client_id: self.id.clone(),
                token: None,
                resume: self.receiver.resume(),
                t: None,
                batch: false,
            });
            let connected = async {
                let mut ws = connect(&url).await?;
                ws.send(Message::Binary(hello.encode()?.into())).await?;
                anyhow::Ok(ws)
            }
            .await;
            let Ok(mut ws) = connected else {
                if let Retry::After { delay_ms, .. } = backoff.next_retry() {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                }
                continue;
            };
            let mut acked = self.receiver.last_seq();
            loop {
                let goal = target.load(Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) || (goal > 0 && self.receiver.last_seq() >= goal) {
                    return self;
                }
                let msg = match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                    Err(_) => continue,
                    Ok(Some(Ok(m))) => m,
                    Ok(_) => break,
                };
                let Message::Binary(b) = msg else { continue };
                let Ok(frame) = ServerFrame::decode(&b, usize::MAX) else {
                    break;
                };
                out.clear();
                match frame {
                    ServerFrame::Welcome(w) => {
                        self.receiver.on_welcome(&w);
                        self.welcomes.push(std::time::Instant::now());
                        backoff.reset();
                    }
                    ServerFrame::Event(e) => {
                        let _ = self.receiver.on_event(e, &mut out);
                    }
                    ServerFrame::Gap(g) => {
                        self.gaps += g.to.saturating_sub(g.from) + 1;
                        self.receiver.on_gap(g, &mut out);
                    }
                    ServerFrame::Snapshot(s) => self.receiver.on_snapshot(s, &mut out),
                    ServerFrame::Ping(p) => {
                        let _ = ws
                            .send(Message::Binary(
                                ClientFrame::Pong(p).encode().unwrap_or_default().into(),
                            ))
                            .await;
                    }
                    _ => {}
                }
                let last = self.receiver.last_seq();
                if last >= acked + 32 {
                    acked = last;
                    let _ = ws
                        .send(Message::Binary(
                            ClientFrame::Ack { upto: last }
                                .encode()
                                .unwrap_or_default()
                                .into(),
                        ))
                        .await;
                }
            }
            if let Retry::After { delay_ms, .. } = backoff.next_retry() {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
        }
    }
}

/// One connection of [`publish_resilient`]: when it was welcomed and what
/// was sent on it (`resent` of those again, after a reconnect).
pub struct Connection {
    pub welcomed: std::time::Instant,
    pub sent: u64,
    pub resent: u64,
}

/// What [`publish_resilient`] sent in all, and connection by connection.
pub struct ResilientSent {
    pub sent: Sent,
    pub connections: Vec<Connection>,
}

/// The resilient publisher's outbox: every number sent and not yet
/// answered is kept and resent, in order, on the next connection.
struct Outbox {
    tag: u64,
    next: u64,
    accepted: u64,
    rejected: BTreeSet<u64>,
}

impl Outbox {
    /// Publishes below `seq` not yet answered.
    fn unanswered_below(&self, seq: u64) -> u64 {
        if seq <= self.accepted + 1 {
            return 0;
        }
        let refused = self.rejected.range(self.accepted + 1..seq).count() as u64;
        seq - 1 - self.accepted - refused
    }

    fn unanswered(&self) -> u64 {
        self.unanswered_below(self.next)
    }
}

/// Reads the proxy's answers until `until`.
async fn read_answers(ws: &mut Ws, outbox: &mut Outbox, until: tokio::time::Instant) -> Result<()> {
    while let Ok(msg) = tokio::time::timeout_at(until, ws.next()).await {
        let msg = msg.ok_or_else(|| anyhow!("closed"))??;
        let Message::Binary(b) = msg else { continue };
        match ServerFrame::decode(&b, usize::MAX)? {
            ServerFrame::Accepted { upto } => outbox.accepted = outbox.accepted.max(upto),
            ServerFrame::Rejected(r) => {
                outbox.rejected.insert(r.client_seq);
            }
            ServerFrame::Ping(p) => {
                ws.send(Message::Binary(ClientFrame::Pong(p).encode()?.into()))
                    .await?
            }
            ServerFrame::Error(e) => bail!("proxy error: {e:?}"),
            _ => {}
        }
    }
    Ok(())
}

/// Publishes numbered reliable events at `rate`/s until `stop`, through
/// disconnects: unanswered ones are resent after reconnecting (an outbox),
/// within the publish window of each `Welcome`. After `stop` it keeps going
/// until every publish is answered (30 s at most), so that what it reports
/// can be checked against the log. `accepted` follows `Accepted` as it comes.
pub async fn publish_resilient(
    url: String,
    rate: u64,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
) -> ResilientSent {
    let id = "storm-publisher";
    let mut outbox = Outbox {
        tag: next_publisher_tag(),
        next: 1,
        accepted: 0,
        rejected: BTreeSet::new(),
    };
    let mut connections = Vec::new();
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let mut stopped_at: Option<std::time::Instant> = None;
    let give_up = Duration::from_secs(30);
    loop {
        if stop.load(Ordering::Relaxed) {
            let at = *stopped_at.get_or_insert_with(std::time::Instant::now);
            if outbox.unanswered() == 0 || at.elapsed() > give_up {
                break;
            }
        }
        let Ok((mut ws, welcome)) = hello(&url, id).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let window = window_for(usize::MAX, &welcome) as u64;
        let mut conn = Connection {
            welcomed: std::time::Instant::now(),
            sent: 0,
            resent: 0,
        };
        let result: Result<()> = async {
            // Resend what was not answered, in order, before anything new.
            let resends: Vec<u64> = (outbox.accepted + 1..outbox.next)
                .filter(|seq| !outbox.rejected.contains(seq))
                .collect();
            for seq in resends {
                while outbox.unanswered_below(seq) >= window {
                    read_answers(&mut ws, &mut outbox, tokio::time::Instant::now() + tick).await?;
                }
                conn.sent += 1;
                conn.resent += 1;
                send_numbered(&mut ws, outbox.tag, seq).await?;
            }
            loop {
                if stop.load(Ordering::Relaxed) {
                    let at = *stopped_at.get_or_insert_with(std::time::Instant::now);
                    if outbox.unanswered() == 0 || at.elapsed() > give_up {
                        return Ok(());
                    }
                } else {
                    for _ in 0..per_tick {
                        if outbox.unanswered() >= window {
                            break;
                        }
                        // In the outbox before it is sent: a send that fails
                        // half-way is resent on the next connection.
                        let seq = outbox.next;
                        outbox.next += 1;
                        conn.sent += 1;
                        send_numbered(&mut ws, outbox.tag, seq).await?;
                    }
                }
                read_answers(&mut ws, &mut outbox, tokio::time::Instant::now() + tick).await?;
                accepted.store(outbox.accepted, Ordering::Relaxed);
            }
        }
        .await;
        connections.push(conn);
        if result.is_ok() {
            break;
        }
    }
    accepted.store(outbox.accepted, Ordering::Relaxed);
    ResilientSent {
        sent: Sent {
            tag: outbox.tag,
            who: id.to_string(),
            count: outbox.next - 1,
            rejected: outbox.rejected,
        },
        connections,
    }
}

async fn send_numbered(ws: &mut Ws, tag: u64, n: u64) -> Result<()> {
    let frame = ClientFrame::Publish(Publish {
        client_seq: n,
        kind: "bench".into(),
        payload: numbered_payload(tag, n, 0),
        delivery: Delivery::Reliable,
        expires_at_ms: None,
        ttl_ms: None,
    });
    ws.send(Message::Binary(frame.encode()?.into())).await?;
    Ok(())
}
