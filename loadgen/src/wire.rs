//! Minimal protocol clients for load: a publisher that pipelines reliable
//! publishes and a subscriber that checks order, acks, and measures latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use shared_protocol::frame::*;
use shared_protocol::receiver::{Delivered, Receiver};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn hello(url: &str, client_id: &str) -> Result<(Ws, Welcome)> {
    hello_from(url, client_id, None).await
}

/// Connects, says Hello (resuming from `resume` if given), waits for Welcome.
pub async fn hello_from(
    url: &str,
    client_id: &str,
    resume: Option<Resume>,
) -> Result<(Ws, Welcome)> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let hello = ClientFrame::Hello(Hello {
        client_id: client_id.into(),
        token: None,
        resume,
        t: None,
    });
    ws.send(Message::Binary(hello.encode()?.into())).await?;
    while let Some(msg) = ws.next().await {
        if let Message::Binary(b) = msg? {
            if let ServerFrame::Welcome(w) = ServerFrame::decode(&b, usize::MAX)? {
                return Ok((ws, w));
            }
        }
    }
    bail!("closed before Welcome")
}

pub struct Publisher {
    ws: Ws,
    next: u64,
    accepted: u64,
}

impl Publisher {
    pub async fn connect(url: &str, id: &str) -> Result<Publisher> {
        let (ws, _) = hello(url, id).await?;
        Ok(Publisher {
            ws,
            next: 1,
            accepted: 0,
        })
    }

    /// Sends `n` reliable events carrying their send time; one flush.
    pub async fn publish_batch(&mut self, n: usize, payload_bytes: usize) -> Result<()> {
        for _ in 0..n {
            let payload = Payload::Map(vec![
                ("t".into(), unix_us().into()),
                ("pad".into(), Payload::Binary(vec![0u8; payload_bytes])),
            ]);
            let frame = ClientFrame::Publish(Publish {
                client_seq: self.next,
                kind: "bench".into(),
                payload,
                delivery: Delivery::Reliable,
                expires_at_ms: None,
                ttl_ms: None,
            });
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
            self.handle(msg?)?;
        }
        Ok(())
    }

    fn handle(&mut self, msg: Message) -> Result<()> {
        if let Message::Binary(b) = msg {
            match ServerFrame::decode(&b, usize::MAX)? {
                ServerFrame::Accepted { upto } => self.accepted = self.accepted.max(upto),
                ServerFrame::Rejected(r) => bail!("publish rejected: {r:?}"),
                ServerFrame::Error(e) => bail!("proxy error: {e:?}"),
                _ => {}
            }
        }
        Ok(())
    }

    /// Waits until the proxy has accepted everything up to `upto`.
    pub async fn wait_accepted(&mut self, upto: u64) -> Result<()> {
        while self.accepted < upto {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .map_err(|_| anyhow!("no Accepted within 30 s"))?
                .ok_or_else(|| anyhow!("publisher closed"))??;
            self.handle(msg)?;
        }
        Ok(())
    }
}

pub struct Subscriber {
    ws: Ws,
    receiver: Receiver,
    head: u64,
}

impl Subscriber {
    pub async fn connect(url: &str, id: &str) -> Result<Subscriber> {
        let (ws, welcome) = hello(url, id).await?;
        let mut receiver = Receiver::new(None, 100_000);
        receiver.on_welcome(&welcome);
        Ok(Subscriber {
            ws,
            receiver,
            head: welcome.head_seq,
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
        while !stop.load(Ordering::Relaxed) {
            let Ok(msg) = tokio::time::timeout(Duration::from_millis(100), self.ws.next()).await
            else {
                flush(&local, &delivered, &latency);
                local.clear();
                continue;
            };
            let Some(msg) = msg else { break };
            let Message::Binary(b) = msg? else { continue };
            out.clear();
            match ServerFrame::decode(&b, usize::MAX)? {
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
            });
            let connected = async {
                let (mut ws, _) =
                    tokio_tungstenite::connect_async_with_config(&url, None, true).await?;
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

/// Publishes numbered reliable events at `rate`/s until `stop`, through
/// disconnects: unaccepted ones are resent after reconnecting (an outbox).
/// Counts accepted publishes in `published`.
pub async fn publish_resilient(
    url: String,
    rate: u64,
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
) {
    let mut next = 1u64;
    let mut accepted = 0u64;
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut ws, _)) = hello(&url, "storm-publisher").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Resend what was not accepted, in order.
        let mut ok = true;
        for seq in accepted + 1..next {
            ok &= send_numbered(&mut ws, seq).await.is_ok();
        }
        while ok && !stop.load(Ordering::Relaxed) {
            for _ in 0..per_tick {
                ok &= send_numbered(&mut ws, next).await.is_ok();
                next += 1;
            }
            let until = tokio::time::Instant::now() + tick;
            while let Ok(Some(msg)) = tokio::time::timeout_at(until, ws.next()).await {
                match msg {
                    Ok(Message::Binary(b)) => {
                        if let Ok(ServerFrame::Accepted { upto }) =
                            ServerFrame::decode(&b, usize::MAX)
                        {
                            accepted = accepted.max(upto);
                            published.store(accepted, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
        }
    }
}

async fn send_numbered(ws: &mut Ws, n: u64) -> Result<()> {
    let payload = Payload::Map(vec![("n".into(), n.into()), ("t".into(), unix_us().into())]);
    let frame = ClientFrame::Publish(Publish {
        client_seq: n,
        kind: "bench".into(),
        payload,
        delivery: Delivery::Reliable,
        expires_at_ms: None,
        ttl_ms: None,
    });
    ws.send(Message::Binary(frame.encode()?.into())).await?;
    Ok(())
}
