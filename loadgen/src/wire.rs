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

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn hello(url: &str, client_id: &str) -> Result<(Ws, Welcome)> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let hello = ClientFrame::Hello(Hello {
        client_id: client_id.into(),
        token: None,
        resume: None,
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
}

impl Subscriber {
    pub async fn connect(url: &str, id: &str) -> Result<Subscriber> {
        let (ws, welcome) = hello(url, id).await?;
        let mut receiver = Receiver::new(None, 100_000);
        receiver.on_welcome(&welcome);
        Ok(Subscriber { ws, receiver })
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
