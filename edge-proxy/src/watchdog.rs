//! The TX watchdog's shell: feeds `shared_protocol::txwatchdog` with PTT
//! commands and session ends, wakes it when it asks, and when it decides to
//! unkey, carries the unkey out two ways at once:
//! - straight to this proxy's radio link, through a bounded channel that
//!   never waits (attached with [`Watchdog::attach_radio`]), so a stalled
//!   log (a full disk, NATS down) cannot keep the transmitter keyed;
//! - into the log as `radio.ptt {on: false}` (which a radio owned by
//!   another proxy of a shared log applies like any command) plus a
//!   `watchdog.unkeyed` event for the dashboards, written by a task of its
//!   own so that the watchdog never waits for the log either.
//!
//! Sessions ask [`Watchdog::admit_ptt_on`] before a PTT-on goes to the log:
//! the time-out timer's lock-out is enforced where the command enters.

use std::sync::{Arc, Mutex, OnceLock};

use rmpv::Value;
use shared_protocol::txwatchdog::{TxWatchdog, TxWatchdogConfig, Unkey};
use tokio::sync::{mpsc, watch, Notify};

use crate::clock::Clock;
use crate::eventlog::{EventLog, NewEvent};

#[derive(Debug)]
pub enum Input {
    PttOn(String),
    PttOff(String),
    SessionEnded(String),
}

/// Cheap to clone; sessions report through it.
#[derive(Clone)]
pub struct Watchdog {
    dog: Arc<Mutex<TxWatchdog>>,
    wake: Arc<Notify>,
    clock: Clock,
    log: EventLog,
    /// This proxy's radio link, once it runs (none without a radio, or on a
    /// proxy of a shared log whose radio is elsewhere).
    radio: Arc<OnceLock<mpsc::Sender<String>>>,
}

impl Watchdog {
    pub fn start(
        config: TxWatchdogConfig,
        log: EventLog,
        clock: Clock,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let watchdog = Watchdog {
            dog: Arc::new(Mutex::new(TxWatchdog::new(config))),
            wake: Arc::new(Notify::new()),
            clock,
            log,
            radio: Arc::new(OnceLock::new()),
        };
        tokio::spawn(watchdog.clone().run(shutdown));
        watchdog
    }

    /// Unkeys go straight to this radio link from now on.
    pub fn attach_radio(&self, unkey: mpsc::Sender<String>) {
        let _ = self.radio.set(unkey);
    }

    /// Whether a PTT-on from `client_id` may go to the radio: false while
    /// the time-out timer has it locked out (refuse it with `tx_timeout`).
    pub fn admit_ptt_on(&self, client_id: &str) -> bool {
        let now = self.clock.now();
        self.with(|dog| dog.admit_ptt_on(client_id, now))
            .unwrap_or(false)
    }

    pub fn report(&self, input: Input) {
        let now = self.clock.now();
        let unkey = self
            .with(|dog| match &input {
                Input::PttOn(client) => dog.on_ptt_on(client, now),
                Input::PttOff(client) => {
                    dog.on_ptt_off(client);
                    None
                }
                Input::SessionEnded(client) => dog.on_session_ended(client, now),
            })
            .flatten();
        // The deadline may have moved.
        self.wake.notify_one();
        if let Some(unkey) = unkey {
            self.carry_out(unkey);
        }
    }

    /// A keeper showed it is alive without repeating PTT-on (a program on
    /// the rig port: any command it sends counts): refreshed like a PTT-on,
    /// but only while it still is the one keeping the transmitter, so a
    /// program the watchdog already unkeyed is never taken for a keeper
    /// again. Returns whether it was.
    pub fn refresh(&self, client_id: &str) -> bool {
        let now = self.clock.now();
        let (kept, unkey) = self
            .with(|dog| {
                if dog.keyed_by() != Some(client_id) {
                    return (false, None);
                }
                (true, dog.on_ptt_on(client_id, now))
            })
            .unwrap_or((false, None));
        self.wake.notify_one();
        if let Some(unkey) = unkey {
            self.carry_out(unkey);
        }
        kept
    }

    /// Who keeps the transmitter keyed through this proxy now (a dashboard's
    /// `client_id`, or a program on the rig port), for `/stats`.
    pub fn keyed_by(&self) -> Option<String> {
        self.with(|dog| dog.keyed_by().map(str::to_string))
            .flatten()
    }

    fn with<T>(&self, f: impl FnOnce(&mut TxWatchdog) -> T) -> Option<T> {
        // A poisoned lock means a panic elsewhere: fail closed (refuse).
        self.dog.lock().ok().map(|mut dog| f(&mut dog))
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let wake = self
                .with(|dog| dog.poll_timeout())
                .flatten()
                .map(|at| self.clock.instant_at(at));
            let unkey = tokio::select! {
                _ = self.wake.notified() => None,
                _ = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await }, if wake.is_some() => {
                    let now = self.clock.now();
                    self.with(|dog| dog.handle_timeout(now)).flatten()
                }
                _ = shutdown.changed() => {
                    // Leaving: never leave the transmitter keyed behind us (the
                    // radio link also unkeys the radio itself before it closes).
                    let now = self.clock.now();
                    if let Some(unkey) = self.with(|dog| dog.on_shutdown(now)).flatten() {
                        self.carry_out(unkey);
                    }
                    return;
                }
            };
            if let Some(unkey) = unkey {
                self.carry_out(unkey);
            }
        }
    }

    /// Tells the radio link (never waiting) and the log (in a task of its own).
    fn carry_out(&self, unkey: Unkey) {
        let reason = unkey.reason.as_str();
        tracing::warn!(
            client_id = %unkey.client_id,
            reason,
            transmitted_ms = unkey.transmitted_ms,
            "EVENT_TX_WATCHDOG: unkeying the transmitter"
        );
        metrics::counter!("proxy_tx_watchdog_unkeys_total", "reason" => reason).increment(1);
        if let Some(radio) = self.radio.get() {
            if radio.try_send(reason.to_string()).is_err() {
                // Full: unkeys are already waiting, and one is enough.
                tracing::debug!("an unkey is already queued for the radio");
            }
        }
        let log = self.log.clone();
        tokio::spawn(
            async move { write(&log, &unkey.client_id, reason, unkey.transmitted_ms).await },
        );
    }
}

/// Logs the unkey command (which the radio bridge applies, on whichever
/// proxy owns the radio) and the notice for dashboards.
pub async fn write(log: &EventLog, client_id: &str, reason: &str, transmitted_ms: u64) {
    let off = NewEvent::reliable(
        "radio.ptt",
        Value::Map(vec![
            ("on".into(), false.into()),
            ("by".into(), "watchdog".into()),
        ]),
    );
    if let Err(e) = log
        .append(vec![off, notice(client_id, reason, transmitted_ms)])
        .await
    {
        tracing::error!(error = %e, "could not log the watchdog's unkey");
    }
}

/// The `watchdog.unkeyed` event the dashboards show as an alarm.
pub fn notice(client_id: &str, reason: &str, transmitted_ms: u64) -> NewEvent {
    NewEvent::reliable(
        "watchdog.unkeyed",
        Value::Map(vec![
            ("client_id".into(), client_id.into()),
            ("reason".into(), reason.into()),
            ("transmitted_ms".into(), transmitted_ms.into()),
        ]),
    )
}
