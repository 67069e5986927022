//! The radio link. `LinkManager` decides when to open, retry and give up;
//! this task carries it out with the configured backend (Kenwood CAT on a
//! serial port, or Hamlib's rigctld), polls the radio's state into
//! `radio.state` events (on change; the last one is in every snapshot),
//! applies `radio.*` commands read from the log, and, with `meter = "radio"`,
//! reads forward power from the radio's own meter.
//!
//! A TX drop is declared, and the fast path taken, when the radio reports
//! receive while a transmission the bridge keyed is in progress, when its
//! answer stops half-way (or never comes) while keyed, or when the power
//! meter goes critical on the air. The bridge never re-keys by itself.

use std::time::Duration;

use rmpv::Value;
use shared_protocol::link::{LinkConfig, LinkState};
use shared_protocol::power::PowerConfig;
use tokio::sync::{mpsc, watch};

use super::power::{PowerWatch, SharedPower};
use super::{is_reconnect, new_status, payload_of, HwLink, SharedStatus};
use crate::eventlog::{now_ms, EventLog, NewEvent};
use crate::hooks::Hooks;
use crate::server::Clock;
use edge_proxy::hardware::{Radio, RadioBackend, RadioError, RadioStatus};

const NAME: &str = "radio";

/// How long one CAT or rigctld exchange may take.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

pub struct RadioSettings {
    pub backend: RadioBackend,
    pub port: String,
    pub baud: u32,
    pub poll: Duration,
    /// Poll this often while a transmission the bridge keyed is on, so a TX
    /// drop is seen within it.
    pub poll_on_air: Duration,
    /// Read forward power from the radio's own meter this often.
    pub meter_poll: Option<Duration>,
    pub power: PowerConfig,
    pub link: LinkConfig,
    /// The TX watchdog's limits. The proxy whose session keyed the radio
    /// enforces them first (`crate::watchdog`); the bridge, which may be on
    /// another proxy of a shared log, is the backstop at twice the
    /// keepalive (and the maximum plus one keepalive), so a transmitter
    /// keyed through a proxy that then died is still released.
    pub tx_keepalive: Duration,
    pub tx_max: Duration,
}

/// What the rest of the proxy holds of the running radio link.
pub struct RadioHandle {
    pub status: SharedStatus,
    pub power: Option<SharedPower>,
    /// Whether the radio reports transmitting (from the last poll).
    pub on_air: watch::Receiver<bool>,
    /// Tells the radio link about a TX drop seen elsewhere (the power meter).
    pub tx_drop: mpsc::Sender<String>,
}

pub fn start(
    settings: RadioSettings,
    log: EventLog,
    clock: Clock,
    hooks: Hooks,
    shutdown: watch::Receiver<bool>,
) -> RadioHandle {
    let backend = format!("{:?}", settings.backend).to_lowercase();
    let status = new_status(&backend, &settings.port);
    let power = settings
        .meter_poll
        .map(|_| PowerWatch::new("radio", settings.power, log.clone()));
    let (on_air_tx, on_air) = watch::channel(false);
    let (tx_drop, tx_drop_rx) = mpsc::channel(8);
    let handle = RadioHandle {
        status: status.clone(),
        power: power.as_ref().map(PowerWatch::status),
        on_air,
        tx_drop,
    };
    let serial = (settings.backend == RadioBackend::Kenwood).then_some(settings.port.as_str());
    let hw = HwLink::new(
        NAME,
        settings.link.clone(),
        status,
        serial,
        log.clone(),
        hooks,
        clock,
    );
    let task = RadioTask {
        settings,
        log,
        clock,
        power,
        on_air: on_air_tx,
        hw,
        radio: None,
        last: None,
        keyed: false,
        keyed_at_ms: 0,
        last_ptt_on_ms: 0,
    };
    tokio::spawn(task.run(shutdown, tx_drop_rx));
    handle
}

struct RadioTask {
    settings: RadioSettings,
    log: EventLog,
    clock: Clock,
    power: Option<PowerWatch>,
    on_air: watch::Sender<bool>,
    hw: HwLink,
    radio: Option<Radio>,
    last: Option<RadioStatus>,
    /// A transmission the bridge keyed and nobody has released yet.
    keyed: bool,
    /// Wall-clock ms: when it keyed, and when the newest PTT-on was logged.
    keyed_at_ms: u64,
    last_ptt_on_ms: u64,
}

impl RadioTask {
    async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        mut tx_drops: mpsc::Receiver<String>,
    ) {
        let mut cursor = self.log.head() + 1;
        let mut head = self.log.subscribe();
        let mut next_poll = tokio::time::Instant::now();
        let mut failed_tick = tokio::time::interval(Duration::from_secs(1));
        let mut meter_tick = tokio::time::interval(
            self.settings
                .meter_poll
                .unwrap_or(Duration::from_secs(3600)),
        );
        meter_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.hw.link.start(self.clock.now());
        loop {
            self.carry_out().await;
            let wake = self
                .hw
                .link
                .poll_timeout()
                .map(|at| self.clock.instant_at(at));
            let connected = self.radio.is_some();
            // Commands are read in batches; more may be waiting.
            let behind = cursor <= self.log.head();
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await }, if wake.is_some() => {
                    self.hw.link.handle_timeout(self.clock.now());
                }
                _ = tokio::time::sleep_until(next_poll), if connected => {
                    self.poll().await;
                    self.backstop_watchdog().await;
                    let period = if self.keyed { self.settings.poll_on_air.min(self.settings.poll) } else { self.settings.poll };
                    next_poll = tokio::time::Instant::now() + period;
                }
                _ = meter_tick.tick(), if connected && self.power.is_some() => self.read_power().await,
                Some(context) = tx_drops.recv() => self.tx_drop(&context),
                _ = failed_tick.tick(), if self.hw.link.state() == LinkState::Failed => self.hw.check_failed(),
                _ = std::future::ready(()), if behind => {
                    let applied;
                    (cursor, applied) = self.commands(cursor).await;
                    if applied {
                        // Show the effect at once rather than at the next poll.
                        next_poll = tokio::time::Instant::now();
                    }
                }
                _ = head.changed(), if !behind => {}
            }
        }
    }

    /// Carries out what the link manager decided.
    async fn carry_out(&mut self) {
        let s = &self.settings;
        let open = || Radio::open(s.backend, &s.port, s.baud, ANSWER_TIMEOUT);
        if self.hw.carry_out(&mut self.radio, open).await {
            // A new connection: its first state is news.
            self.last = None;
        }
    }

    fn tx_drop(&mut self, context: &str) {
        self.keyed = false;
        self.hw.link.tx_drop(self.clock.now(), context);
    }

    /// Unkeys a transmission nobody keeps alive any more (see
    /// [`RadioSettings::tx_keepalive`]).
    async fn backstop_watchdog(&mut self) {
        if !self.keyed {
            return;
        }
        let now = now_ms();
        let keepalive = self.settings.tx_keepalive.as_millis() as u64;
        let reason = if now.saturating_sub(self.last_ptt_on_ms) > 2 * keepalive {
            "keepalive_lost"
        } else if now.saturating_sub(self.keyed_at_ms)
            > self.settings.tx_max.as_millis() as u64 + keepalive
        {
            "max_on_air"
        } else {
            return;
        };
        self.keyed = false;
        if let Some(radio) = self.radio.as_mut() {
            if let Err(e) = radio.set_ptt(false).await {
                tracing::error!(error = %e, "the backstop watchdog could not unkey the radio");
            }
        }
        let transmitted_ms = now.saturating_sub(self.keyed_at_ms);
        crate::watchdog::write(&self.log, "", reason, transmitted_ms).await;
    }

    async fn poll(&mut self) {
        let Some(radio) = self.radio.as_mut() else {
            return;
        };
        match radio.status().await {
            Ok(state) => {
                self.hw.link.data(self.clock.now());
                self.on_air
                    .send_if_modified(|on| std::mem::replace(on, state.ptt) != state.ptt);
                let dropped = self.keyed && !state.ptt;
                if self.last.as_ref() != Some(&state) {
                    let event = NewEvent::reliable(
                        "radio.state",
                        Value::Map(vec![
                            ("freq_hz".into(), state.freq_hz.into()),
                            ("mode".into(), state.mode.as_str().into()),
                            ("ptt".into(), state.ptt.into()),
                        ]),
                    );
                    if self.log.append(vec![event]).await.is_err() {
                        tracing::warn!("could not log radio.state");
                    }
                    self.last = Some(state);
                }
                if dropped {
                    self.tx_drop("the radio reports RX while keyed");
                }
            }
            Err(e) if self.keyed && e.link_down() => {
                self.tx_drop(&format!("{e}, while transmitting"))
            }
            Err(e) if e.link_down() => self.hw.link.lost(self.clock.now(), &e.to_string()),
            // One malformed answer: skip this poll; persistent trouble shows
            // in the link's health (no data).
            Err(e) => tracing::warn!(error = %e, "radio poll"),
        }
    }

    /// The radio's own meter (`meter = "radio"`).
    async fn read_power(&mut self) {
        let (Some(radio), Some(power)) = (self.radio.as_mut(), self.power.as_mut()) else {
            return;
        };
        let on_air = self.last.as_ref().is_some_and(|s| s.ptt);
        // Receiving, the meter shows the S-meter, not power.
        let watts = if on_air {
            match radio.power_watts().await {
                Ok(w) => w,
                Err(e) if e.link_down() => {
                    self.hw.link.lost(self.clock.now(), &e.to_string());
                    return;
                }
                Err(_) => f64::NAN,
            }
        } else {
            0.0
        };
        let now = self.clock.now();
        if let Some(context) = power
            .reading(&mut self.hw.link, now, watts, None, on_air)
            .await
        {
            self.tx_drop(&context);
        }
    }

    /// Applies the commands logged since `cursor` (a batch); returns the new
    /// cursor and whether a command reached the radio.
    async fn commands(&mut self, mut cursor: u64) -> (u64, bool) {
        let events = match self.log.read(cursor, 256) {
            Ok(events) if !events.is_empty() => events,
            // Trimmed or unreadable: nothing to act on up to the head.
            _ => return (self.log.head() + 1, false),
        };
        let mut applied = false;
        for event in &events {
            cursor = event.seq + 1;
            let relevant = (event.kind.starts_with("radio.") && &*event.kind != "radio.state")
                || &*event.kind == "link.reconnect";
            let Some((kind, payload)) = relevant.then(|| payload_of(event)).flatten() else {
                continue;
            };
            if is_reconnect(&kind, &payload, NAME) {
                tracing::info!("operator asked to reconnect the radio");
                self.keyed = false;
                self.hw.link.force_reconnect(self.clock.now());
                continue;
            }
            let Some(radio) = self.radio.as_mut() else {
                tracing::warn!(%kind, "radio command while the radio link is down: not applied");
                continue;
            };
            if kind == "radio.ptt" {
                let on = payload["on"].as_bool() == Some(true);
                let age = now_ms().saturating_sub(event.ts_ms);
                if on && age > self.settings.tx_keepalive.as_millis() as u64 {
                    // Held up on its way here (an outage of the shared log):
                    // keying now would transmit for someone no longer there.
                    tracing::warn!(age_ms = age, "a PTT-on logged too long ago: not keyed");
                    continue;
                }
                if on && !self.keyed {
                    self.keyed_at_ms = now_ms();
                }
                if on {
                    self.last_ptt_on_ms = event.ts_ms;
                }
                self.keyed = on;
            }
            applied = true;
            if let Err(err) = apply(radio, &kind, &payload).await {
                tracing::warn!(%kind, error = %err, "radio command failed");
                if err.link_down() {
                    self.hw.link.lost(self.clock.now(), &err.to_string());
                }
            }
        }
        (cursor, applied)
    }
}

async fn apply(radio: &mut Radio, kind: &str, payload: &Value) -> Result<(), RadioError> {
    match kind {
        "radio.set_freq" => match payload["hz"].as_u64() {
            Some(hz) => radio.set_frequency(hz).await,
            None => Err(RadioError::BadCommand("radio.set_freq without hz".into())),
        },
        "radio.set_mode" => match payload["mode"].as_str() {
            Some(mode) => radio.set_mode(mode).await,
            None => Err(RadioError::BadCommand("radio.set_mode without mode".into())),
        },
        "radio.ptt" => radio.set_ptt(payload["on"].as_bool() == Some(true)).await,
        _ => Ok(()),
    }
}
