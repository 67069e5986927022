//! The catch-up client: comes back `backlog` events behind (resuming from
//! `last_seq = 0` of a session that was welcomed and never got an event) and
//! reads the replay as fast as the proxy's pages allow, acking each page.
//! Checks every event arrives once, in order.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use shared_protocol::frame::*;
use tokio_tungstenite::tungstenite::Message;

use crate::wire::Ws;

async fn hello(url: &str, resume: Option<Resume>) -> Result<(Ws, Welcome)> {
    crate::wire::hello_from(url, "catch-up", resume).await
}

/// Connects once to be welcomed (learns the epoch), then leaves.
pub async fn register(url: &str) -> Result<u64> {
    let (mut ws, welcome) = hello(url, None).await?;
    let _ = ws.close(None).await;
    Ok(welcome.epoch)
}

/// Resumes from 0 and reads until `upto`; returns how long it took.
pub async fn catch_up(url: &str, epoch: u64, upto: u64) -> Result<Duration> {
    let started = Instant::now();
    let (mut ws, welcome) = hello(url, Some(Resume { epoch, last_seq: 0 })).await?;
    if !welcome.resumed {
        bail!("the proxy did not replay (raise max_behind)");
    }
    let mut last = 0;
    while last < upto {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| anyhow!("replay stalled at {last}"))?
            .ok_or_else(|| anyhow!("closed at {last}"))??;
        let Message::Binary(b) = msg else { continue };
        match ServerFrame::decode(&b, usize::MAX)? {
            ServerFrame::Event(e) => {
                if e.seq != last + 1 {
                    bail!("expected seq {}, got {}", last + 1, e.seq);
                }
                last = e.seq;
                if last % 100 == 0 {
                    ws.send(Message::Binary(
                        ClientFrame::Ack { upto: last }.encode()?.into(),
                    ))
                    .await?;
                }
            }
            ServerFrame::Gap(g) => bail!("gap in the replay: {g:?}"),
            ServerFrame::Ping(p) => {
                ws.send(Message::Binary(ClientFrame::Pong(p).encode()?.into()))
                    .await?
            }
            _ => {}
        }
    }
    Ok(started.elapsed())
}
