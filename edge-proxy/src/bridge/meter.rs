//! The power-meter link: a Telepost LP-100A on a serial port, polled on a
//! schedule by its own `LinkManager` (warm: the link reports connected only
//! after a first good reading). Readings go to [`PowerWatch`] with the radio
//! link's "on the air" flag; a critical alarm on the air is handed to the
//! radio link as a TX drop.

use std::time::Duration;

use shared_protocol::link::{LinkConfig, LinkEventType, LinkManager, LinkOutput, LinkState};
use shared_protocol::power::PowerConfig;
use tokio::sync::{mpsc, watch};

use super::power::{alert_event, PowerWatch, SharedPower};
use super::{is_reconnect, new_status, payload_of, publish_status, record, Reappear, SharedStatus};
use crate::eventlog::EventLog;
use crate::hooks::Hooks;
use crate::server::Clock;
use edge_proxy::hardware::lp100::{Lp100, Lp100Error, LP100_BAUD};
use edge_proxy::hardware::open_serial;

const NAME: &str = "meter";

/// How long the meter may take to answer one poll.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(300);

pub struct MeterSettings {
    pub port: String,
    pub poll: Duration,
    pub power: PowerConfig,
    pub link: LinkConfig,
}

pub struct MeterHandle {
    pub status: SharedStatus,
    pub power: SharedPower,
}

/// `on_air` and `tx_drop` come from the radio link, when there is one.
pub fn start(
    settings: MeterSettings,
    on_air: Option<watch::Receiver<bool>>,
    tx_drop: Option<mpsc::Sender<String>>,
    log: EventLog,
    clock: Clock,
    hooks: Hooks,
    shutdown: watch::Receiver<bool>,
) -> MeterHandle {
    let status = new_status("lp100", &settings.port);
    let power = PowerWatch::new("lp100", settings.power, log.clone());
    let handle = MeterHandle {
        status: status.clone(),
        power: power.status(),
    };
    tokio::spawn(run(
        settings, on_air, tx_drop, log, clock, hooks, shutdown, status, power,
    ));
    handle
}

#[allow(clippy::too_many_arguments)]
async fn run(
    settings: MeterSettings,
    on_air: Option<watch::Receiver<bool>>,
    tx_drop: Option<mpsc::Sender<String>>,
    log: EventLog,
    clock: Clock,
    hooks: Hooks,
    mut shutdown: watch::Receiver<bool>,
    status: SharedStatus,
    mut power: PowerWatch,
) {
    let mut link = LinkManager::new(settings.link.clone(), fastrand::u64(..));
    let mut reappear = Reappear::new(Some(settings.port.as_str()));
    let mut failed_tick = tokio::time::interval(Duration::from_secs(1));
    let mut meter: Option<Lp100<tokio_serial::SerialStream>> = None;
    let mut cursor = log.head() + 1;
    let mut head = log.subscribe();
    let mut tick = tokio::time::interval(settings.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    link.start(clock.now());
    loop {
        while let Some(out) = link.poll_output() {
            match out {
                LinkOutput::Open { timeout_ms, .. } => {
                    meter = None;
                    let opened = tokio::time::timeout(
                        Duration::from_millis(timeout_ms),
                        open(&settings.port),
                    )
                    .await;
                    match opened {
                        Ok(Ok(m)) => {
                            meter = Some(m);
                            link.opened(clock.now());
                        }
                        Ok(Err(e)) => {
                            reappear.observe();
                            link.failed(clock.now(), &e.to_string())
                        }
                        Err(_) => {
                            link.failed(clock.now(), &format!("no answer within {timeout_ms} ms"))
                        }
                    }
                }
                LinkOutput::Close => meter = None,
                LinkOutput::Event(event) => record(&log, &hooks, NAME, &status, &link, event).await,
            }
        }
        publish_status(NAME, &status, &link);
        let wake = link.poll_timeout().map(|at| clock.instant_at(at));
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await }, if wake.is_some() => {
                link.handle_timeout(clock.now());
            }
            _ = tick.tick(), if meter.is_some() => {
                let Some(m) = meter.as_mut() else { continue };
                let (watts, swr) = match m.read().await {
                    Ok(r) => {
                        link.data(clock.now());
                        (r.watts, Some(r.swr))
                    }
                    Err(e) if e.link_down() => {
                        link.lost(clock.now(), &e.to_string());
                        continue;
                    }
                    // A garbled reply counts as no power (it may be the
                    // first sign of trouble) but is not a reading to show.
                    Err(e) => {
                        tracing::warn!(error = %e, "power meter");
                        (f64::NAN, None)
                    }
                };
                let transmitting = on_air.as_ref().is_some_and(|r| *r.borrow());
                let now = clock.now();
                let Some(alert) = power.reading(now, watts, swr, transmitting).await else { continue };
                if let Some((kind, context)) = alert_event(&alert, settings.power.zero_threshold_w) {
                    link.note(kind, now, context.clone());
                    if kind == LinkEventType::PowerCritical {
                        if let Some(tx_drop) = &tx_drop {
                            let _ = tx_drop.send(format!("power collapsed: {context}")).await;
                        }
                    }
                }
            }
            _ = failed_tick.tick(), if link.state() == LinkState::Failed => {
                if reappear.came_back() {
                    tracing::info!(port = %settings.port, "the meter's port reappeared: reconnecting");
                    link.start(clock.now());
                }
            }
            _ = head.changed() => {
                let Ok(events) = log.read(cursor, 256) else { continue };
                for event in &events {
                    cursor = event.seq + 1;
                    if &*event.kind != "link.reconnect" {
                        continue;
                    }
                    if payload_of(event).is_some_and(|(kind, payload)| is_reconnect(&kind, &payload, NAME)) {
                        tracing::info!("operator asked to reconnect the power meter");
                        link.force_reconnect(clock.now());
                    }
                }
            }
        }
    }
}

/// Opens the port and takes one reading: a warm link.
async fn open(port: &str) -> Result<Lp100<tokio_serial::SerialStream>, Lp100Error> {
    let mut meter = Lp100::new(open_serial(port, LP100_BAUD)?, ANSWER_TIMEOUT);
    meter.read().await?;
    Ok(meter)
}
