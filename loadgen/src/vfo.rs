//! `vfo`: knob to dashboard. A simulated TS-2000 on a real pseudo-terminal
//! behind the proxy; its VFO knob is turned one step at a random moment
//! (the simulator's front panel, `PtyRadio::turn_vfo`), and we time until a
//! dashboard connected to the proxy receives the `radio.state` with that
//! frequency. Per mode, p50, p90, p99 and max over `--runs` steps:
//!
//! - `auto-info`: the proxy's defaults; the radio reports the turn itself
//!   (`AI2;`, `FA...;`). Against a proxy without auto information this is
//!   its plain polling at `radio_poll_ms` (how "before" was measured).
//! - `polling`: `radio_auto_info = false`: the proxy polls, every
//!   `radio_poll_ms` when idle and every 100 ms for 3 s after a change, so
//!   the gap between steps decides which of the two is measured.
//!
//! Steps are `--gap-ms` apart on average (uniform from half to one and a
//! half times it), so they fall at every phase of the poll.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use shared_protocol::frame::*;
use station_sim::pty::PtyRadio;
use tokio_tungstenite::tungstenite::Message;

use crate::bench::{start_proxy, Results};
use crate::wire::Ws;

#[derive(clap::Args)]
pub struct Args {
    /// Knob steps timed per mode.
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Mean gap between steps, ms.
    #[arg(long, default_value_t = 300)]
    gap_ms: u64,
    /// Modes to run, in order: auto-info, polling.
    #[arg(long, value_delimiter = ',', default_value = "polling,auto-info")]
    modes: Vec<Mode>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Mode {
    AutoInfo,
    Polling,
}

pub async fn run(bin: &Path, args: Args, results: &mut Results) -> Result<()> {
    let runs = args.runs.max(1);
    for mode in &args.modes {
        let sim = PtyRadio::start(station_sim::kenwood::Radio::default())?;
        // The real defaults otherwise (radio_poll_ms 500).
        let mut config = format!(
            "radio_port = \"{}\"\nmeter = \"none\"\n",
            sim.path.display()
        );
        if let Mode::Polling = mode {
            config.push_str("radio_auto_info = false\n");
        }
        let proxy = start_proxy(bin, &config)?;
        println!(
            "vfo ({mode:?}): TS-2000 simulator on {}, {runs} knob steps {} ms apart on average",
            sim.path.display(),
            args.gap_ms
        );
        let mut times = knob_runs(&proxy.ws_url(), &sim, runs, args.gap_ms).await?;
        times.sort_by(f64::total_cmp);
        let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        let (p50, p90, p99, max) = (pick(0.5), pick(0.9), pick(0.99), pick(1.0));
        println!(
            "  knob -> dashboard: p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
        );
        results.rows.push(json!({
            "mode": format!("{mode:?}"), "runs": times.len(), "gap_ms": args.gap_ms,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max,
        }));
        drop(proxy);
    }
    Ok(())
}

/// Turns the knob `runs` times; the time from each turn to the dashboard
/// receiving it, in ms.
async fn knob_runs(url: &str, sim: &PtyRadio, runs: usize, gap_ms: u64) -> Result<Vec<f64>> {
    let (mut ws, _) = crate::wire::hello_from(url, "vfo-dashboard", None).await?;
    let start = sim.radio.lock().map(|r| r.vfo_a_hz).unwrap_or(14_074_000);
    // The first state (the open), before anything is timed.
    wait_for(&mut ws, start, Duration::from_secs(20)).await?;
    let mut times = Vec::with_capacity(runs);
    for step in 1..=runs as u64 {
        let gap = gap_ms / 2 + fastrand::u64(0..=gap_ms.max(1));
        // Keep reading (and acking) while waiting, as a dashboard does.
        let _ = tokio::time::timeout(Duration::from_millis(gap), drain(&mut ws)).await;
        let hz = start + step * 10;
        let turned = Instant::now();
        sim.turn_vfo(hz);
        wait_for(&mut ws, hz, Duration::from_secs(10)).await?;
        times.push(turned.elapsed().as_secs_f64() * 1e3);
    }
    Ok(times)
}

/// Reads frames until the connection ends (the caller bounds it).
async fn drain(ws: &mut Ws) -> Result<()> {
    loop {
        next_event(ws).await?;
    }
}

/// Reads until a `radio.state` with `hz` arrives.
async fn wait_for(ws: &mut Ws, hz: u64, within: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let event = tokio::time::timeout_at(deadline, next_event(ws))
            .await
            .map_err(|_| anyhow!("no radio.state with {hz} Hz within {within:?}"))??;
        if event == Some(hz) {
            return Ok(());
        }
    }
}

/// One frame; the frequency if it tells a `radio.state` (an event, acked
/// at once, or a snapshot's).
async fn next_event(ws: &mut Ws) -> Result<Option<u64>> {
    let msg = ws
        .next()
        .await
        .ok_or_else(|| anyhow!("the proxy closed the connection"))??;
    let Message::Binary(bytes) = msg else {
        return Ok(None);
    };
    match ServerFrame::decode(&bytes, usize::MAX)? {
        ServerFrame::Event(e) => {
            send(ws, ClientFrame::Ack { upto: e.seq }).await?;
            Ok((e.kind == "radio.state")
                .then(|| e.payload["freq_hz"].as_u64())
                .flatten())
        }
        ServerFrame::Snapshot(s) => Ok(s
            .state
            .get("radio.state")
            .and_then(|p| p["freq_hz"].as_u64())),
        ServerFrame::Ping(p) => {
            send(ws, ClientFrame::Pong(p)).await?;
            Ok(None)
        }
        ServerFrame::Error(e) => bail!("proxy error: {e:?}"),
        _ => Ok(None),
    }
}

async fn send(ws: &mut Ws, frame: ClientFrame) -> Result<()> {
    ws.send(Message::Binary(frame.encode()?.into())).await?;
    Ok(())
}
