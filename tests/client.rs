//! A native protocol client for the tests, built on the same sans-IO
//! `Receiver` the browser uses, so "exactly once, in order" is checked on
//! what the application would see, while the raw wire is recorded too.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use shared_protocol::frame::*;
use shared_protocol::receiver::{Delivered, Receiver};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct TestClient {
    ws: Option<Ws>,
    pub client_id: String,
    pub token: Option<String>,
    pub receiver: Receiver,
    pub welcome: Option<Welcome>,
    /// What the application got, in order.
    pub delivered: Vec<Delivered>,
    /// Every event seq as it came off the wire, duplicates included.
    pub wire_seqs: Vec<u64>,
    pub accepted_upto: u64,
    pub rejected: Vec<Rejected>,
    /// Publishes sent on this connection and not yet answered: an honest
    /// client keeps them under `Welcome.limits.publish_window`.
    unanswered: std::collections::BTreeSet<u64>,
    pub errors: Vec<ErrorFrame>,
    /// Answers to this client's own pings: nonce and arrival.
    pub pongs: Vec<(u32, std::time::Instant)>,
    /// `Drain` frames: when the proxy asked this client to come back.
    pub drains: Vec<Drain>,
    pub close_code: Option<u16>,
    /// Ack as an application would (every 32 events, and when idle). Off:
    /// only `ack_upto` acks, to watch the proxy's flow control.
    pub auto_ack: bool,
    next_client_seq: u64,
    acked: u64,
    /// How far this client's wall clock is ahead of the machine's.
    clock_skew_ms: i64,
}

impl TestClient {
    pub fn new(client_id: &str) -> Self {
        TestClient {
            ws: None,
            client_id: client_id.to_string(),
            token: None,
            receiver: Receiver::new(None, 100_000),
            welcome: None,
            delivered: Vec::new(),
            wire_seqs: Vec::new(),
            accepted_upto: 0,
            rejected: Vec::new(),
            unanswered: Default::default(),
            errors: Vec::new(),
            pongs: Vec::new(),
            drains: Vec::new(),
            close_code: None,
            auto_ack: true,
            next_client_seq: 1,
            acked: 0,
            clock_skew_ms: 0,
        }
    }

    /// A client whose wall clock is `skew_ms` ahead of the machine's
    /// (behind when negative), as a laptop or a Pi without a clock can be.
    pub fn with_clock_skew(mut self, skew_ms: i64) -> Self {
        self.clock_skew_ms = skew_ms;
        self
    }

    /// This client's wall clock (Unix ms): the machine's plus its skew.
    pub fn now_ms(&self) -> u64 {
        now_ms().saturating_add_signed(self.clock_skew_ms)
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Opens a connection and says Hello with where the receiver stands
    /// (like a page reload that restored `(epoch, last_seq)`); waits for Welcome.
    pub async fn connect(&mut self, url: &str) -> Result<&Welcome> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        self.ws = Some(ws);
        self.acked = self.receiver.last_seq();
        self.unanswered.clear();
        let hello = ClientFrame::Hello(Hello {
            client_id: self.client_id.clone(),
            token: self.token.clone(),
            resume: self.receiver.resume(),
            t: Some(self.now_ms()),
            batch: false,
        });
        self.send(&hello).await?;
        match self.recv(Duration::from_secs(10)).await? {
            Some(ServerFrame::Welcome(welcome)) => {
                self.receiver.on_welcome(&welcome);
                self.welcome = Some(welcome);
                Ok(self.welcome.as_ref().ok_or_else(|| anyhow!("no welcome"))?)
            }
            Some(ServerFrame::Error(e)) => {
                self.errors.push(e.clone());
                bail!("refused: {:?} {}", e.code, e.message)
            }
            other => bail!("expected Welcome, got {other:?}"),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.ws.is_some()
    }

    /// Drops the TCP connection without a close handshake (a cut).
    pub fn cut(&mut self) {
        self.ws = None;
    }

    pub async fn send(&mut self, frame: &ClientFrame) -> Result<()> {
        self.send_raw(frame.encode()?).await
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<()> {
        let ws = self.ws.as_mut().ok_or_else(|| anyhow!("not connected"))?;
        ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        let ws = self.ws.as_mut().ok_or_else(|| anyhow!("not connected"))?;
        ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Publishes with the next client_seq; returns it.
    pub async fn publish(
        &mut self,
        kind: &str,
        payload: Payload,
        delivery: Delivery,
        expires_at_ms: Option<u64>,
    ) -> Result<u64> {
        let client_seq = self.next_client_seq;
        self.next_client_seq += 1;
        self.publish_as(client_seq, kind, payload, delivery, expires_at_ms)
            .await?;
        Ok(client_seq)
    }

    /// Publishes with an explicit client_seq (for resends).
    pub async fn publish_as(
        &mut self,
        client_seq: u64,
        kind: &str,
        payload: Payload,
        delivery: Delivery,
        expires_at_ms: Option<u64>,
    ) -> Result<()> {
        // Within the publish window, as the protocol asks: wait for answers.
        let window = self
            .welcome
            .as_ref()
            .and_then(|w| w.limits.publish_window)
            .map_or(usize::MAX, |w| w as usize);
        if self.unanswered.len() >= window
            && !self
                .pump_until(Duration::from_secs(60), |c| c.unanswered.len() < window)
                .await?
        {
            bail!("no publish answered within 60 s");
        }
        self.unanswered.insert(client_seq);
        let frame = ClientFrame::Publish(Publish {
            client_seq,
            kind: kind.into(),
            payload,
            delivery,
            expires_at_ms,
            // As a real client: the lifetime left at the moment of sending,
            // on this client's own (possibly skewed) clock.
            ttl_ms: expires_at_ms.map(|at| at.saturating_sub(self.now_ms())),
        });
        self.send(&frame).await
    }

    /// Next raw frame, or `None` when the connection closed or `wait` passed.
    pub async fn recv(&mut self, wait: Duration) -> Result<Option<ServerFrame>> {
        loop {
            let Some(ws) = self.ws.as_mut() else {
                return Ok(None);
            };
            let message = match tokio::time::timeout(wait, ws.next()).await {
                Err(_) => return Ok(None),
                Ok(None) | Ok(Some(Err(_))) => {
                    self.ws = None;
                    return Ok(None);
                }
                Ok(Some(Ok(m))) => m,
            };
            match message {
                Message::Binary(bytes) => {
                    return Ok(Some(ServerFrame::decode(&bytes, usize::MAX)?))
                }
                Message::Close(frame) => {
                    self.close_code = frame.map(|f| u16::from(f.code));
                    self.ws = None;
                    return Ok(None);
                }
                _ => continue,
            }
        }
    }

    /// Handles one frame as an application client would.
    async fn handle(&mut self, frame: ServerFrame) -> Result<()> {
        let mut out = Vec::new();
        match frame {
            ServerFrame::Event(event) => {
                self.wire_seqs.push(event.seq);
                if self.receiver.on_event(event, &mut out).is_err() {
                    bail!("receiver hole never filled");
                }
            }
            ServerFrame::Gap(gap) => self.receiver.on_gap(gap, &mut out),
            ServerFrame::Snapshot(snapshot) => self.receiver.on_snapshot(snapshot, &mut out),
            ServerFrame::Ping(ping) => self.send(&ClientFrame::Pong(ping)).await?,
            ServerFrame::Accepted { upto } => {
                self.accepted_upto = self.accepted_upto.max(upto);
                self.unanswered = self.unanswered.split_off(&(upto + 1));
            }
            ServerFrame::Rejected(r) => {
                self.unanswered.remove(&r.client_seq);
                self.rejected.push(r);
            }
            ServerFrame::Error(e) => self.errors.push(e),
            ServerFrame::Drain(d) => self.drains.push(d),
            ServerFrame::Pong(p) => self.pongs.push((p.nonce, std::time::Instant::now())),
            ServerFrame::Welcome(_) => {}
        }
        self.delivered.extend(out);
        if self.receiver.last_seq() >= self.acked + 32 {
            self.ack().await?;
        }
        Ok(())
    }

    /// Acks what the application has, if `auto_ack` is on.
    pub async fn ack(&mut self) -> Result<()> {
        if self.auto_ack {
            self.ack_upto(self.receiver.last_seq()).await?;
        }
        Ok(())
    }

    /// Acks up to `upto` (at most what the application has).
    pub async fn ack_upto(&mut self, upto: u64) -> Result<()> {
        let upto = upto.min(self.receiver.last_seq());
        if upto > self.acked && self.ws.is_some() {
            self.acked = upto;
            self.send(&ClientFrame::Ack { upto }).await?;
        }
        Ok(())
    }

    /// Reads and handles frames until `done` holds, the connection closes, or
    /// `within` passes. Returns whether `done` held.
    pub async fn pump_until(
        &mut self,
        within: Duration,
        done: impl Fn(&TestClient) -> bool,
    ) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + within;
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            match self.recv(left.min(Duration::from_millis(100))).await? {
                Some(frame) => self.handle(frame).await?,
                None if self.ws.is_none() => return Ok(done(self)),
                None => self.ack().await?,
            }
        }
        self.ack().await?;
        Ok(true)
    }

    /// Pumps until the application has everything up to `seq`.
    pub async fn pump_to(&mut self, seq: u64, within: Duration) -> Result<bool> {
        self.pump_until(within, |c| c.receiver.last_seq() >= seq)
            .await
    }

    /// Seqs of events the application got, in delivery order.
    pub fn event_seqs(&self) -> Vec<u64> {
        self.delivered
            .iter()
            .filter_map(|d| match d {
                Delivered::Event(e) => Some(e.seq),
                _ => None,
            })
            .collect()
    }

    pub fn events(&self) -> Vec<&Event> {
        self.delivered
            .iter()
            .filter_map(|d| match d {
                Delivered::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    pub fn gaps(&self) -> Vec<&Gap> {
        self.delivered
            .iter()
            .filter_map(|d| match d {
                Delivered::Gap(g) => Some(g),
                _ => None,
            })
            .collect()
    }

    pub fn snapshots(&self) -> Vec<&Snapshot> {
        self.delivered
            .iter()
            .filter_map(|d| match d {
                Delivered::Snapshot(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// The newest value of `kind` the application knows, from events or,
    /// failing those, the last snapshot.
    pub fn latest(&self, kind: &str) -> Option<Payload> {
        let from_events = self
            .events()
            .iter()
            .rev()
            .find(|e| e.kind == kind)
            .map(|e| e.payload.clone());
        from_events.or_else(|| {
            self.snapshots()
                .last()
                .and_then(|s| s.state.get(kind).cloned())
        })
    }
}

/// Every event the log at `url` retains, in order: connects once to learn
/// the epoch and head, then again as a client resuming from `seq` 0.
pub async fn read_whole_log(url: &str, within: Duration) -> Result<Vec<Event>> {
    let mut reader = TestClient::new("whole-log-reader");
    let welcome = reader.connect(url).await?.clone();
    reader.cut();
    reader.receiver = Receiver::new(
        Some(Resume {
            epoch: welcome.epoch,
            last_seq: 0,
        }),
        usize::MAX,
    );
    reader.connect(url).await?;
    if !reader.pump_to(welcome.head_seq, within).await? {
        bail!(
            "read only to {} of {}",
            reader.receiver.last_seq(),
            welcome.head_seq
        );
    }
    Ok(reader.events().into_iter().cloned().collect())
}

/// Asserts the application saw strictly increasing seqs with no repeats.
pub fn assert_in_order_once(seqs: &[u64]) {
    for w in seqs.windows(2) {
        assert!(
            w[0] < w[1],
            "out of order or duplicated: {} then {}",
            w[0],
            w[1]
        );
    }
}

/// The `n` of a `{"n": n}` payload, as the tests' publishers send.
pub fn n_of(event: &Event) -> Option<u64> {
    event.payload["n"].as_u64()
}

pub fn numbered(n: u64) -> Payload {
    map(&[("n", Payload::from(n))])
}

/// A map payload with string keys, e.g. `map(&[("hz", 7_074_000.into())])`.
pub fn map(pairs: &[(&str, Payload)]) -> Payload {
    Payload::Map(
        pairs
            .iter()
            .map(|(k, v)| (Payload::from(*k), v.clone()))
            .collect(),
    )
}

/// Keys or unkeys through the proxy, as the dashboard does: volatile, with
/// a 2 s expiry.
pub async fn key_ptt(op: &mut TestClient, on: bool) {
    let payload = map(&[("on", Payload::from(on))]);
    op.publish(
        "radio.ptt",
        payload,
        Delivery::Volatile,
        Some(op.now_ms() + 2_000),
    )
    .await
    .unwrap();
}

/// Tunes the radio through the proxy, as the dashboard does: a reliable
/// `radio.set_freq`.
pub async fn set_freq(op: &mut TestClient, hz: u64) {
    let payload = map(&[("hz", Payload::from(hz))]);
    op.publish("radio.set_freq", payload, Delivery::Reliable, None)
        .await
        .unwrap();
}

/// Wall-clock Unix ms (for `expires_at_ms`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
