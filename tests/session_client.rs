//! The browser client's own logic, natively: `shared_protocol::client::
//! ClientSession` (the state machine the wasm client wraps) driven by a
//! small tokio shell instead of web-sys. Backoff, `Drain` handling, resume
//! and dedup are exactly the browser's; only the socket and timers differ.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use shared_protocol::client::{ClientConfig, ClientSession, Input, Output, Persisted};
use shared_protocol::receiver::Delivered;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What one client saw, for the test to check.
#[derive(Debug, Default)]
pub struct Record {
    /// Every connection attempt (`OpenSocket`), on the test's clock.
    pub attempts: Vec<Instant>,
    /// Event seqs delivered to the application, in delivery order.
    pub seqs: Vec<u64>,
    pub gaps: u64,
    /// The newest snapshot's `upto` (a fresh client starts from one).
    pub snapshot_upto: u64,
}

impl Record {
    /// How far the application has got: events and snapshots.
    pub fn position(&self) -> u64 {
        self.seqs
            .last()
            .copied()
            .unwrap_or(0)
            .max(self.snapshot_upto)
    }
}

/// Runs one client until `stop` turns true; returns what it saw. `urls` are
/// the proxy and its fallbacks: as in the browser (`fallbackUrls`), every
/// closed or failed socket moves the next attempt to the next URL.
pub async fn run(
    urls: Vec<String>,
    client_id: String,
    seed: u64,
    mut stop: watch::Receiver<bool>,
    record: Arc<Mutex<Record>>,
) {
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let restored = Persisted {
        client_id,
        ..Default::default()
    };
    let mut session = ClientSession::new(ClientConfig::default(), restored, now(), wall, seed);
    session.handle_input(Input::Connect, now());
    let mut current = 0;
    let mut ws: Option<(u32, Ws)> = None;
    let mut connecting: Option<(u32, tokio::task::JoinHandle<Option<Ws>>)> = None;
    loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::OpenSocket { socket } => {
                    if let Ok(mut r) = record.lock() {
                        r.attempts.push(Instant::now());
                    }
                    let url = urls[current % urls.len()].clone();
                    connecting = Some((
                        socket,
                        tokio::spawn(async move {
                            tokio_tungstenite::connect_async(url)
                                .await
                                .ok()
                                .map(|(s, _)| s)
                        }),
                    ));
                }
                Output::CloseSocket { socket, .. } => {
                    if ws.as_ref().is_some_and(|(s, _)| *s == socket) {
                        if let Some((_, mut w)) = ws.take() {
                            let _ = w.close(None).await;
                        }
                    }
                }
                Output::Transmit { socket, bytes } => {
                    if let Some((s, w)) = ws.as_mut() {
                        if *s == socket {
                            let _ = w.send(Message::Binary(bytes.into())).await;
                        }
                    }
                }
                Output::Deliver(d) => {
                    if let Ok(mut r) = record.lock() {
                        match d {
                            Delivered::Event(e) => r.seqs.push(e.seq),
                            Delivered::Gap(_) => r.gaps += 1,
                            Delivered::Snapshot(s) => r.snapshot_upto = s.upto,
                        }
                    }
                }
                Output::PersistCursor { .. } | Output::PersistOutbox { .. } | Output::Notify(_) => {
                }
            }
        }
        let wake = session
            .poll_timeout()
            .map(|at| tokio::time::Instant::from_std(start + Duration::from_millis(at)));
        tokio::select! {
            _ = stop.changed() => return,
            _ = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await }, if wake.is_some() => {
                session.handle_timeout(now());
            }
            done = async { (&mut connecting.as_mut().unwrap().1).await }, if connecting.is_some() => {
                let Some((socket, _)) = connecting.take() else { continue };
                match done.ok().flatten() {
                    Some(w) => {
                        ws = Some((socket, w));
                        session.handle_input(Input::SocketOpened { socket }, now());
                    }
                    None => {
                        current += 1;
                        session.handle_input(
                            Input::SocketClosed { socket, code: 1006, reason: "connect failed".into() },
                            now(),
                        );
                    }
                }
            }
            msg = async { ws.as_mut().unwrap().1.next().await }, if ws.is_some() => {
                let Some((socket, _)) = ws.as_ref().map(|(s, _)| (*s, ())) else { continue };
                match msg {
                    Some(Ok(Message::Binary(bytes))) => {
                        session.handle_input(Input::Received { socket, bytes: bytes.to_vec() }, now());
                    }
                    Some(Ok(Message::Close(frame))) => {
                        ws = None;
                        current += 1;
                        let code = frame.map_or(1005, |f| u16::from(f.code));
                        session.handle_input(Input::SocketClosed { socket, code, reason: String::new() }, now());
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => {
                        ws = None;
                        current += 1;
                        session.handle_input(Input::SocketClosed { socket, code: 1006, reason: String::new() }, now());
                    }
                }
            }
        }
    }
}

/// The most attempts in any window of `width` among `attempts` (sorted).
pub fn peak_in_window(attempts: &[Instant], width: Duration) -> usize {
    let mut peak = 0;
    let mut lo = 0;
    for hi in 0..attempts.len() {
        while attempts[hi].duration_since(attempts[lo]) >= width {
            lo += 1;
        }
        peak = peak.max(hi - lo + 1);
    }
    peak
}
