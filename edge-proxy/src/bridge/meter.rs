//! The power-meter link: a Telepost LP-100A on a serial port, polled on a
//! schedule by its own `LinkManager` (warm: the link reports connected only
//! after a first good reading). Readings go to [`PowerWatch`] with the radio
//! link's "on the air" flag; a critical alarm on the air is handed to the
//! radio link as a TX drop.

use std::time::Duration;

use shared_protocol::link::{LinkConfig, LinkState};
use tokio::sync::{mpsc, watch};

use super::logq::LogQueue;
use super::power::{PowerSettings, PowerWatch, SharedPower};
use super::{is_reconnect, new_status, payload_of, HwLink, SharedStatus};
use crate::clock::Clock;
use crate::eventlog::EventLog;
use crate::hooks::Hooks;
use edge_proxy::hardware::lp100::{Lp100, Lp100Error, LP100_BAUD};
use edge_proxy::hardware::open_serial_off_thread;

const NAME: &str = "meter";

/// How long the meter may take to answer one poll.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(300);

pub struct MeterSettings {
    pub port: String,
    pub poll: Duration,
    pub power: PowerSettings,
    pub link: LinkConfig,
}

pub struct MeterHandle {
    pub status: SharedStatus,
    pub power: SharedPower,
}

/// Where the meter link learns about the radio: whether it is on the air,
/// and where to report a TX drop. Absent without a radio link.
pub struct RadioSide {
    pub on_air: watch::Receiver<bool>,
    pub tx_drop: mpsc::Sender<String>,
}

pub fn start(
    settings: MeterSettings,
    radio: Option<RadioSide>,
    log: EventLog,
    queue: LogQueue,
    clock: Clock,
    hooks: Hooks,
    shutdown: watch::Receiver<bool>,
) -> MeterHandle {
    let status = new_status("lp100", &settings.port);
    let power = PowerWatch::new("lp100", settings.power, queue.clone());
    let handle = MeterHandle {
        status: status.clone(),
        power: power.status(),
    };
    let hw = HwLink::new(
        NAME,
        settings.link.clone(),
        status,
        Some(settings.port.as_str()),
        queue,
        hooks,
        clock,
    );
    let task = MeterTask {
        settings,
        radio,
        log,
        clock,
        power,
        hw,
        meter: None,
    };
    tokio::spawn(task.run(shutdown));
    handle
}

struct MeterTask {
    settings: MeterSettings,
    radio: Option<RadioSide>,
    log: EventLog,
    clock: Clock,
    power: PowerWatch,
    hw: HwLink,
    meter: Option<Lp100<tokio_serial::SerialStream>>,
}

impl MeterTask {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut failed_tick = tokio::time::interval(Duration::from_secs(1));
        let mut cursor = self.log.head() + 1;
        let mut head = self.log.subscribe();
        // On the clock's grid: the radio's polls and this one wake together.
        let mut tick = self.clock.ticker(self.settings.poll);
        self.hw.link.start(self.clock.now());
        loop {
            self.carry_out().await;
            let wake = self
                .hw
                .link
                .poll_timeout()
                .map(|at| self.clock.instant_at(at));
            tokio::select! {
                _ = shutdown.changed() => {
                    // Not on this thread: the radio link is unkeying now.
                    super::close_off_thread(&mut self.meter);
                    return;
                }
                _ = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await }, if wake.is_some() => {
                    self.hw.link.handle_timeout(self.clock.now());
                }
                _ = tick.tick(), if self.meter.is_some() => self.read().await,
                _ = failed_tick.tick(), if self.hw.link.state() == LinkState::Failed => self.hw.check_failed(),
                _ = std::future::ready(()), if cursor <= self.log.head() => {
                    cursor = self.commands(cursor);
                }
                _ = head.changed() => {}
            }
        }
    }

    /// Carries out what the link manager decided.
    async fn carry_out(&mut self) {
        let port = &self.settings.port;
        self.hw.carry_out(&mut self.meter, || open(port)).await;
    }

    async fn read(&mut self) {
        let Some(m) = self.meter.as_mut() else {
            return;
        };
        let (watts, swr) = match m.read().await {
            Ok(r) => {
                self.hw.link.data(self.clock.now());
                (r.watts, Some(r.swr))
            }
            Err(e) if e.link_down() => {
                self.hw.link.lost(self.clock.now(), &e.to_string());
                return;
            }
            // A garbled reply counts as no power (it may be the first sign
            // of trouble) but is not a reading to show.
            Err(e) => {
                tracing::warn!(error = %e, "power meter");
                (f64::NAN, None)
            }
        };
        let transmitting = self.radio.as_ref().is_some_and(|r| *r.on_air.borrow());
        let now = self.clock.now();
        let dropped = self
            .power
            .reading(&mut self.hw.link, now, watts, swr, transmitting);
        if let (Some(context), Some(radio)) = (dropped, &self.radio) {
            let _ = radio.tx_drop.try_send(context);
        }
    }

    /// Handles `link.reconnect {link: "meter"}` logged since `cursor`.
    fn commands(&mut self, mut cursor: u64) -> u64 {
        let events = match self.log.read(cursor, 256) {
            Ok(events) if !events.is_empty() => events,
            _ => return self.log.head() + 1,
        };
        for event in &events {
            cursor = event.seq + 1;
            if &*event.kind == "link.reconnect"
                && payload_of(event)
                    .is_some_and(|(kind, payload)| is_reconnect(&kind, &payload, NAME))
            {
                tracing::info!("operator asked to reconnect the power meter");
                self.hw.link.force_reconnect(self.clock.now());
            }
        }
        cursor
    }
}

/// Opens the port and takes one reading: a warm link.
async fn open(port: &str) -> Result<Lp100<tokio_serial::SerialStream>, Lp100Error> {
    let mut meter = Lp100::new(
        open_serial_off_thread(port, LP100_BAUD).await?,
        ANSWER_TIMEOUT,
    );
    meter.read().await?;
    Ok(meter)
}
