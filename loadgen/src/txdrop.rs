//! The TX-drop scenario: a simulated TS-2000 on a real pseudo-terminal
//! behind the proxy; an operator keys it through the proxy, the transmitter
//! trips mid-frame (the radio falls back to receive and its answer on the
//! wire is cut in half), and we time how long until the operator's dashboard
//! hears `EVENT_RECONNECT_OK` for the radio link. Repeated; the median is
//! the figure (target < 200 ms, requirement 0.5 s).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use shared_protocol::frame::*;
use tokio_tungstenite::tungstenite::Message;

use station_sim::pty::PtyRadio;

use crate::wire::Ws;

/// One run's times: (from the fault to the dashboard hearing the link is
/// back, from the proxy's detection to its reconnect on the proxy's clock).
pub type Run = (Duration, u64);

pub async fn run(url: &str, sim: &PtyRadio, runs: usize) -> Result<Vec<Run>> {
    let (mut ws, _) = crate::wire::hello_from(url, "txdrop-operator", None).await?;
    let mut results = Vec::new();
    for client_seq in 1..=runs as u64 {
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64
            + 2_000;
        send(
            &mut ws,
            ClientFrame::Publish(Publish {
                client_seq,
                kind: "radio.ptt".into(),
                payload: Payload::Map(vec![("on".into(), true.into())]),
                delivery: Delivery::Volatile,
                expires_at_ms: Some(expires),
                ttl_ms: Some(2_000),
            }),
        )
        .await?;
        wait_for(&mut ws, |e| {
            e.kind == "radio.state" && e.payload["ptt"].as_bool() == Some(true)
        })
        .await?;
        let fault = Instant::now();
        sim.drop_tx_mid_frame();
        let detected = wait_for(&mut ws, |e| link_event(e, "EVENT_TX_DROP_DETECTED")).await?;
        let ok = wait_for(&mut ws, |e| link_event(e, "EVENT_RECONNECT_OK")).await?;
        let heard = fault.elapsed();
        let at = |e: &Event| e.payload["at_ms"].as_u64().unwrap_or(0);
        results.push((heard, at(&ok).saturating_sub(at(&detected))));
        wait_for(&mut ws, |e| {
            e.kind == "radio.state" && e.payload["ptt"].as_bool() == Some(false)
        })
        .await?;
    }
    Ok(results)
}

fn link_event(e: &Event, kind: &str) -> bool {
    e.kind == "link.radio" && e.payload["type"].as_str() == Some(kind)
}

async fn send(ws: &mut Ws, frame: ClientFrame) -> Result<()> {
    ws.send(Message::Binary(frame.encode()?.into())).await?;
    Ok(())
}

/// Reads events (acking them) until one matches.
async fn wait_for(ws: &mut Ws, want: impl Fn(&Event) -> bool) -> Result<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("no matching event within 10 s"))?
            .ok_or_else(|| anyhow!("the proxy closed the connection"))??;
        let Message::Binary(bytes) = msg else {
            continue;
        };
        match ServerFrame::decode(&bytes, usize::MAX)? {
            ServerFrame::Event(e) => {
                send(ws, ClientFrame::Ack { upto: e.seq }).await?;
                if want(&e) {
                    return Ok(e);
                }
            }
            ServerFrame::Ping(p) => send(ws, ClientFrame::Pong(p)).await?,
            ServerFrame::Rejected(r) => bail!("the proxy rejected PTT: {r:?}"),
            ServerFrame::Error(e) => bail!("proxy error: {e:?}"),
            _ => {}
        }
    }
}
