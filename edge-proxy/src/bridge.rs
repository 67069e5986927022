//! The radio bridge: the one place the proxy talks to the radio.
//!
//! `shared_protocol::link::LinkManager` decides when to open, retry and give
//! up; this task carries it out with the Kenwood CAT backend on a serial port,
//! polls the radio's state into `radio.state` events, applies `radio.*`
//! commands read from the log (so every command is logged before it acts, and
//! sessions never touch hardware), and logs every link event as `link.radio`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_proxy::hardware::kenwood::{open_serial, CatError, Kenwood};
use rmpv::Value;
use serde::Serialize;
use shared_protocol::link::{LinkConfig, LinkEvent, LinkManager, LinkOutput};
use tokio::sync::watch;

use crate::eventlog::{EventLog, NewEvent};
use crate::server::Clock;

/// What `/stats` shows of the link.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkStatus {
    pub port: String,
    pub state: String,
    pub health: u8,
    pub reconnects: u64,
    pub last_event: Option<String>,
}

pub type SharedStatus = Arc<Mutex<LinkStatus>>;

#[derive(Debug, Clone, PartialEq)]
struct RadioState {
    freq_hz: u64,
    mode: &'static str,
    ptt: bool,
}

impl RadioState {
    fn event(&self) -> NewEvent {
        NewEvent::reliable(
            "radio.state",
            Value::Map(vec![
                ("freq_hz".into(), self.freq_hz.into()),
                ("mode".into(), self.mode.into()),
                ("ptt".into(), self.ptt.into()),
            ]),
        )
    }
}

pub fn start(
    port: String,
    baud: u32,
    poll: Duration,
    log: EventLog,
    clock: Clock,
    shutdown: watch::Receiver<bool>,
) -> SharedStatus {
    let status = Arc::new(Mutex::new(LinkStatus {
        port: port.clone(),
        ..Default::default()
    }));
    tokio::spawn(run(port, baud, poll, log, clock, shutdown, status.clone()));
    status
}

async fn run(
    port: String,
    baud: u32,
    poll: Duration,
    log: EventLog,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
    status: SharedStatus,
) {
    let mut link = LinkManager::new(LinkConfig::default(), fastrand::u64(..));
    let mut cat: Option<Kenwood<tokio_serial::SerialStream>> = None;
    let mut last: Option<RadioState> = None;
    // A transmission the bridge keyed and nobody has released yet.
    let mut keyed = false;
    let mut cursor = log.head() + 1;
    let mut head = log.subscribe();
    let mut poll_tick = tokio::time::interval(poll);
    poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    link.start(clock.now());
    loop {
        // Carry out what the link manager decided.
        while let Some(out) = link.poll_output() {
            match out {
                LinkOutput::Open { timeout_ms, .. } => {
                    cat = None;
                    let opened =
                        tokio::time::timeout(Duration::from_millis(timeout_ms), open(&port, baud))
                            .await;
                    match opened {
                        Ok(Ok(k)) => {
                            cat = Some(k);
                            last = None;
                            link.opened(clock.now());
                        }
                        Ok(Err(e)) => link.failed(clock.now(), &e.to_string()),
                        Err(_) => {
                            link.failed(clock.now(), &format!("no answer within {timeout_ms} ms"))
                        }
                    }
                }
                LinkOutput::Close => cat = None,
                LinkOutput::Event(event) => record(&log, &status, &link, event).await,
            }
        }
        if let Ok(mut s) = status.lock() {
            s.state = link.state().as_str().to_string();
            s.health = link.health_score();
            s.reconnects = link.reconnects();
        }
        let wake = link.poll_timeout().map(|at| clock.instant_at(at));
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await }, if wake.is_some() => {
                link.handle_timeout(clock.now());
            }
            _ = poll_tick.tick(), if cat.is_some() => {
                let Some(k) = cat.as_mut() else { continue };
                match poll_state(k).await {
                    Ok(state) if keyed && !state.ptt => {
                        // The radio reports RX in the middle of a transmission:
                        // a TX drop. Fast-path reconnect; never re-key by itself.
                        keyed = false;
                        link.tx_drop(clock.now(), "the radio reports RX while keyed");
                        if log.append(vec![state.event()]).await.is_err() {
                            tracing::warn!("could not log radio.state");
                        }
                        last = Some(state);
                    }
                    Ok(state) => {
                        link.data(clock.now());
                        if last.as_ref() != Some(&state) {
                            if log.append(vec![state.event()]).await.is_err() {
                                tracing::warn!("could not log radio.state");
                            }
                            last = Some(state);
                        }
                    }
                    Err(e) => link.lost(clock.now(), &e.to_string()),
                }
            }
            _ = head.changed() => {
                let Ok(events) = log.read(cursor, 256) else { continue };
                for event in &events {
                    cursor = event.seq + 1;
                    if !event.kind.starts_with("radio.") || &*event.kind == "radio.state" {
                        continue;
                    }
                    let Ok(shared_protocol::ServerFrame::Event(e)) = shared_protocol::ServerFrame::decode(&event.frame, usize::MAX) else { continue };
                    let Some(k) = cat.as_mut() else {
                        tracing::warn!(kind = %e.kind, "radio command while the radio link is down: not applied");
                        continue;
                    };
                    if e.kind == "radio.ptt" {
                        keyed = e.payload["on"].as_bool() == Some(true);
                    }
                    if let Err(err) = apply(k, &e.kind, &e.payload).await {
                        tracing::warn!(kind = %e.kind, error = %err, "radio command failed");
                        if matches!(err, CatError::Io(_) | CatError::Closed | CatError::Timeout(..)) {
                            link.lost(clock.now(), &err.to_string());
                        }
                    }
                }
                // Show the effect at once rather than at the next poll.
                poll_tick.reset_immediately();
            }
        }
    }
}

/// Opens the port and identifies the radio: a link is only "connected" once
/// the radio has answered (a warm link).
async fn open(port: &str, baud: u32) -> Result<Kenwood<tokio_serial::SerialStream>, CatError> {
    let serial = open_serial(port, baud)?;
    let mut k = Kenwood::new(serial, Duration::from_millis(500));
    k.identify().await?;
    Ok(k)
}

async fn poll_state(k: &mut Kenwood<tokio_serial::SerialStream>) -> Result<RadioState, CatError> {
    let (freq_hz, ptt, mode) = k.status().await?;
    Ok(RadioState { freq_hz, mode, ptt })
}

async fn apply(
    k: &mut Kenwood<tokio_serial::SerialStream>,
    kind: &str,
    payload: &Value,
) -> Result<(), CatError> {
    match kind {
        "radio.set_freq" => match payload["hz"].as_u64() {
            Some(hz) => k.set_frequency(hz).await,
            None => Err(CatError::Refused("radio.set_freq without hz".into())),
        },
        "radio.set_mode" => match payload["mode"].as_str() {
            Some(mode) => k.set_mode(mode).await,
            None => Err(CatError::Refused("radio.set_mode without mode".into())),
        },
        "radio.ptt" => k.set_ptt(payload["on"].as_bool() == Some(true)).await,
        _ => Ok(()),
    }
}

async fn record(log: &EventLog, status: &SharedStatus, link: &LinkManager, event: LinkEvent) {
    let name = event.kind.as_str();
    tracing::info!(state = event.state.as_str(), reconnects = event.reconnects, context = %event.context, "{name}");
    if let Ok(mut s) = status.lock() {
        s.last_event = Some(format!("{name}: {}", event.context));
    }
    let payload = Value::Map(vec![
        ("type".into(), name.into()),
        ("state".into(), event.state.as_str().into()),
        ("reconnects".into(), event.reconnects.into()),
        ("health".into(), u64::from(link.health_score()).into()),
        ("context".into(), event.context.as_str().into()),
    ]);
    if log
        .append(vec![NewEvent::reliable("link.radio", payload)])
        .await
        .is_err()
    {
        tracing::warn!("could not log a link event");
    }
}
