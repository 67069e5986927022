//! A fault-injecting TCP relay for chaos tests: it sits between clients and
//! the proxy and, from a seeded random source, delays bytes, stalls
//! connections and cuts them. Same seed, same decisions per connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Per chunk of bytes forwarded, the chances of each fault.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Delay the chunk by 1..20 ms.
    pub delay: f64,
    /// Stall the connection for 100..800 ms.
    pub stall: f64,
    /// Cut both directions.
    pub cut: f64,
}

impl Faults {
    /// A plain relay: faults only when a test holds a direction.
    pub const NONE: Faults = Faults {
        delay: 0.0,
        stall: 0.0,
        cut: 0.0,
    };
}

#[derive(Debug, Default)]
pub struct RelayCounts {
    pub connections: AtomicU64,
    pub delays: AtomicU64,
    pub stalls: AtomicU64,
    pub cuts: AtomicU64,
    pub upstream_refused: AtomicU64,
}

pub struct Relay {
    pub addr: String,
    pub counts: Arc<RelayCounts>,
    task: tokio::task::JoinHandle<()>,
    hold: tokio::sync::watch::Sender<bool>,
    hold_down: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: String, seed: u64, faults: Faults) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let counts = Arc::new(RelayCounts::default());
        let c = counts.clone();
        let (hold, held) = tokio::sync::watch::channel(false);
        let (hold_down, held_down) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok((client, _)) = listener.accept().await {
                n += 1;
                c.connections.fetch_add(1, Ordering::Relaxed);
                let (upstream, counts, held) = (upstream.clone(), c.clone(), held.clone());
                let held_down = held_down.clone();
                let conn_seed = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        counts.upstream_refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let cut = Arc::new(tokio::sync::Notify::new());
                    let a = pump(
                        cr,
                        sw,
                        conn_seed,
                        faults,
                        counts.clone(),
                        cut.clone(),
                        Some(held),
                    );
                    let b = pump(
                        sr,
                        cw,
                        conn_seed.rotate_left(17),
                        faults,
                        counts,
                        cut,
                        Some(held_down),
                    );
                    // Either direction ending (or a cut) ends both.
                    tokio::select! { _ = a => {}, _ = b => {} }
                });
            }
        });
        Ok(Relay {
            addr,
            counts,
            task,
            hold,
            hold_down,
        })
    }

    /// While on, bytes from clients to the proxy are held back (a frame
    /// delayed in transit); turned off, they go on in order.
    pub fn hold_upstream(&self, on: bool) {
        self.hold.send_replace(on);
    }

    /// The same for bytes from the server to its clients (a proxy whose
    /// link to NATS stalls: its mirror falls behind).
    pub fn hold_downstream(&self, on: bool) {
        self.hold_down.send_replace(on);
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seed: u64,
    faults: Faults,
    counts: Arc<RelayCounts>,
    cut: Arc<tokio::sync::Notify>,
    mut held: Option<tokio::sync::watch::Receiver<bool>>,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = cut.notified() => return,
        };
        let roll = rng.f64();
        if roll < faults.cut {
            counts.cuts.fetch_add(1, Ordering::Relaxed);
            cut.notify_waiters();
            return;
        } else if roll < faults.cut + faults.stall {
            counts.stalls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100 + (rng.f64() * 700.0) as u64)).await;
        } else if roll < faults.cut + faults.stall + faults.delay {
            counts.delays.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1 + (rng.f64() * 19.0) as u64)).await;
        }
        if let Some(held) = held.as_mut() {
            if held.wait_for(|on| !on).await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
