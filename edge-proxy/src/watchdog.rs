//! The TX watchdog's shell: feeds `shared_protocol::txwatchdog` with PTT
//! commands and session ends, wakes it when it asks, and when it decides to
//! unkey, writes the unkey command (`radio.ptt {on: false}`, which the radio
//! bridge applies like any command) and a `watchdog.unkeyed` event for the
//! dashboards into the log.

use rmpv::Value;
use shared_protocol::txwatchdog::{TxWatchdog, TxWatchdogConfig};
use tokio::sync::{mpsc, watch};

use crate::eventlog::{EventLog, NewEvent};
use crate::server::Clock;

#[derive(Debug)]
pub enum Input {
    PttOn(String),
    PttOff,
    SessionEnded(String),
}

/// Cheap to clone; sessions report through it.
#[derive(Clone)]
pub struct Watchdog {
    tx: mpsc::UnboundedSender<Input>,
}

impl Watchdog {
    pub fn start(
        config: TxWatchdogConfig,
        log: EventLog,
        clock: Clock,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(TxWatchdog::new(config), rx, log, clock, shutdown));
        Watchdog { tx }
    }

    pub fn report(&self, input: Input) {
        // The task only ends at shutdown, when nothing is keyed any more.
        let _ = self.tx.send(input);
    }
}

async fn run(
    mut dog: TxWatchdog,
    mut rx: mpsc::UnboundedReceiver<Input>,
    log: EventLog,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let wake = dog.poll_timeout().map(|at| clock.instant_at(at));
        let unkey = tokio::select! {
            input = rx.recv() => match input {
                None => return,
                Some(Input::PttOn(client)) => { dog.on_ptt_on(&client, clock.now()); None }
                Some(Input::PttOff) => { dog.on_ptt_off(); None }
                Some(Input::SessionEnded(client)) => dog.on_session_ended(&client, clock.now()),
            },
            _ = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await }, if wake.is_some() => {
                dog.handle_timeout(clock.now())
            }
            _ = shutdown.changed() => {
                // Leaving: never leave the transmitter keyed behind us.
                let unkey = dog.on_session_ended(dog.keyed_by().unwrap_or_default().to_string().as_str(), clock.now());
                if let Some(unkey) = unkey { write(&log, &unkey.client_id, "shutting_down", unkey.transmitted_ms).await; }
                return;
            }
        };
        if let Some(unkey) = unkey {
            write(
                &log,
                &unkey.client_id,
                unkey.reason.as_str(),
                unkey.transmitted_ms,
            )
            .await;
        }
    }
}

/// Logs the unkey command (which the radio bridge applies) and the notice
/// for dashboards. Also used by the bridge's backstop (`client_id` empty).
pub async fn write(log: &EventLog, client_id: &str, reason: &str, transmitted_ms: u64) {
    tracing::warn!(
        client_id,
        reason,
        transmitted_ms,
        "EVENT_TX_WATCHDOG: unkeying the transmitter"
    );
    metrics::counter!("proxy_tx_watchdog_unkeys_total", "reason" => reason.to_string())
        .increment(1);
    let off = NewEvent::reliable(
        "radio.ptt",
        Value::Map(vec![
            ("on".into(), false.into()),
            ("by".into(), "watchdog".into()),
        ]),
    );
    let notice = NewEvent::reliable(
        "watchdog.unkeyed",
        Value::Map(vec![
            ("client_id".into(), client_id.into()),
            ("reason".into(), reason.into()),
            ("transmitted_ms".into(), transmitted_ms.into()),
        ]),
    );
    if let Err(e) = log.append(vec![off, notice]).await {
        tracing::error!(error = %e, "could not log the watchdog's unkey");
    }
}
