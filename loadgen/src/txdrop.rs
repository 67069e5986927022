//! The TX-drop scenario: a simulated TS-2000 on a real pseudo-terminal
//! behind the proxy; an operator keys it through the proxy, the transmitter
//! trips mid-frame (the radio falls back to receive and its answer on the
//! wire is cut in half), and we time how long until the operator's dashboard
//! hears `EVENT_RECONNECT_OK` for the radio link. Repeated; the median is
//! the figure (target < 200 ms, requirement 0.5 s).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use shared_protocol::frame::*;
use tokio_tungstenite::tungstenite::Message;

use station_sim::pty::PtyRadio;

use crate::bench::{start_proxy, Results};
use crate::complete::{verify, Expect, Sent};
use crate::wire::{next_publisher_tag, window_for, Ws};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

/// One run's times: (from the fault to the dashboard hearing the link is
/// back, from the proxy's detection to its reconnect on the proxy's clock).
pub type Run = (Duration, u64);

pub async fn run(bin: &Path, args: Args, results: &mut Results) -> Result<()> {
    let runs = args.runs.max(1);
    let sim = PtyRadio::start(station_sim::kenwood::Radio::default())?;
    // Defaults otherwise (radio_poll_ms 500, radio_poll_tx_ms 50): the real thing.
    let config = format!(
        "radio_port = \"{}\"\nmeter = \"none\"\ntx_keepalive_ms = 60000\n",
        sim.path.display()
    );
    let mut proxy = start_proxy(bin, &config)?;
    println!(
        "tx drop: TS-2000 simulator on {}, {runs} runs",
        sim.path.display()
    );
    let (mut times, sent) = drop_runs(&proxy.ws_url(), &sim, runs).await?;
    times.sort();
    let heard: Vec<f64> = times.iter().map(|r| r.0.as_secs_f64() * 1e3).collect();
    let mut proxy_side: Vec<u64> = times.iter().map(|r| r.1).collect();
    proxy_side.sort_unstable();
    let pick = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let (median, p90, max) = (pick(&heard, 0.5), pick(&heard, 0.9), pick(&heard, 1.0));
    let detect_to_ok = proxy_side[proxy_side.len() / 2];
    println!("  fault -> dashboard hears EVENT_RECONNECT_OK: median {median:.1} ms, p90 {p90:.1} ms, max {max:.1} ms (target < 200 ms)");
    println!("  detection -> reconnected, on the proxy's clock: median {detect_to_ok} ms");
    // Every PTT-on the operator sent is a publish too.
    let outcome = verify(&mut proxy, &config, &[sent], Expect::Exact).await?;
    results.completeness("tx-drop (the PTT-on commands)", &outcome);
    results.rows.push(
        json!({"runs": heard.len(), "median_ms": median, "p90_ms": p90, "max_ms": max,
        "detect_to_reconnected_median_ms": detect_to_ok, "completeness": outcome.json()}),
    );
    Ok(())
}

/// The operator's connection: what it published and what was answered.
struct Operator {
    ws: Ws,
    tag: u64,
    accepted: u64,
}

async fn drop_runs(url: &str, sim: &PtyRadio, runs: usize) -> Result<(Vec<Run>, Sent)> {
    let (ws, welcome) = crate::wire::hello_from(url, "txdrop-operator", None).await?;
    let window = window_for(usize::MAX, &welcome) as u64;
    let mut op = Operator {
        ws,
        tag: next_publisher_tag(),
        accepted: 0,
    };
    let mut results = Vec::new();
    for client_seq in 1..=runs as u64 {
        // Each PTT-on is answered long before the next run; this only
        // keeps the rule should it ever not be.
        if client_seq - 1 - op.accepted >= window {
            wait_for(&mut op, |_| false, Some(client_seq - window)).await?;
        }
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64
            + 2_000;
        let payload = Payload::Map(vec![
            ("on".into(), true.into()),
            ("p".into(), op.tag.into()),
            ("n".into(), client_seq.into()),
        ]);
        send(
            &mut op.ws,
            ClientFrame::Publish(Publish {
                client_seq,
                kind: "radio.ptt".into(),
                payload,
                delivery: Delivery::Volatile,
                expires_at_ms: Some(expires),
                ttl_ms: Some(2_000),
            }),
        )
        .await?;
        wait_for(
            &mut op,
            |e| e.kind == "radio.state" && e.payload["ptt"].as_bool() == Some(true),
            None,
        )
        .await?;
        let fault = Instant::now();
        sim.drop_tx_mid_frame();
        let detected = wait_for(&mut op, |e| link_event(e, "EVENT_TX_DROP_DETECTED"), None).await?;
        let ok = wait_for(&mut op, |e| link_event(e, "EVENT_RECONNECT_OK"), None).await?;
        let heard = fault.elapsed();
        let at = |e: &Option<Event>| {
            e.as_ref()
                .and_then(|e| e.payload["at_ms"].as_u64())
                .unwrap_or(0)
        };
        results.push((heard, at(&ok).saturating_sub(at(&detected))));
        wait_for(
            &mut op,
            |e| e.kind == "radio.state" && e.payload["ptt"].as_bool() == Some(false),
            None,
        )
        .await?;
    }
    // Every PTT-on answered before the check.
    wait_for(&mut op, |_| false, Some(runs as u64)).await?;
    let sent = Sent {
        tag: op.tag,
        who: "txdrop-operator".into(),
        count: runs as u64,
        rejected: BTreeSet::new(),
    };
    Ok((results, sent))
}

fn link_event(e: &Event, kind: &str) -> bool {
    e.kind == "link.radio" && e.payload["type"].as_str() == Some(kind)
}

async fn send(ws: &mut Ws, frame: ClientFrame) -> Result<()> {
    ws.send(Message::Binary(frame.encode()?.into())).await?;
    Ok(())
}

/// Reads events (acking them) until one matches, or, with `accepted`, until
/// `Accepted` covers that `client_seq` (then returns `None`).
async fn wait_for(
    op: &mut Operator,
    want: impl Fn(&Event) -> bool,
    accepted: Option<u64>,
) -> Result<Option<Event>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if accepted.is_some_and(|upto| op.accepted >= upto) {
            return Ok(None);
        }
        let msg = tokio::time::timeout_at(deadline, op.ws.next())
            .await
            .map_err(|_| anyhow!("no matching event or answer within 10 s"))?
            .ok_or_else(|| anyhow!("the proxy closed the connection"))??;
        let Message::Binary(bytes) = msg else {
            continue;
        };
        match ServerFrame::decode(&bytes, usize::MAX)? {
            ServerFrame::Event(e) => {
                send(&mut op.ws, ClientFrame::Ack { upto: e.seq }).await?;
                if want(&e) {
                    return Ok(Some(e));
                }
            }
            ServerFrame::Accepted { upto } => op.accepted = op.accepted.max(upto),
            ServerFrame::Ping(p) => send(&mut op.ws, ClientFrame::Pong(p)).await?,
            ServerFrame::Rejected(r) => bail!("the proxy rejected PTT: {r:?}"),
            ServerFrame::Error(e) => bail!("proxy error: {e:?}"),
            _ => {}
        }
    }
}
