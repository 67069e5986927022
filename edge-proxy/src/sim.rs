//! A simulated station for the demo: a radio and a power meter that live
//! entirely in the log. Commands published by dashboards (`radio.set_freq`,
//! `radio.set_mode`, `radio.ptt`) are read from the log like any other event,
//! applied, and answered with a new `radio.state`; the meter reports once a
//! second (`meter.power`, volatile). The hardware bridge replaces this with
//! real serial and rigctld backends.

use rmpv::Value;
use tokio::sync::watch;

use crate::eventlog::{EventLog, NewEvent};

#[derive(Debug, Clone, PartialEq)]
struct Radio {
    freq_hz: u64,
    mode: String,
    ptt: bool,
}

impl Radio {
    fn state(&self) -> NewEvent {
        NewEvent::reliable(
            "radio.state",
            Value::Map(vec![
                ("freq_hz".into(), self.freq_hz.into()),
                ("mode".into(), self.mode.as_str().into()),
                ("ptt".into(), self.ptt.into()),
            ]),
        )
    }

    /// Applies a command event; returns whether the state changed.
    fn apply(&mut self, kind: &str, payload: &Value) -> bool {
        let before = self.clone();
        match kind {
            "radio.set_freq" => {
                if let Some(hz) = payload["hz"]
                    .as_u64()
                    .filter(|hz| (100_000..=1_300_000_000).contains(hz))
                {
                    self.freq_hz = hz;
                }
            }
            "radio.set_mode" => {
                if let Some(mode) = payload["mode"].as_str().filter(|m| m.len() <= 8) {
                    self.mode = mode.to_uppercase();
                }
            }
            // The proxy's TX watchdog sends `{on: false}` when the keying
            // client goes silent; here it is applied like any command.
            "radio.ptt" => self.ptt = payload["on"].as_bool().unwrap_or(false),
            _ => {}
        }
        *self != before
    }
}

pub async fn run(log: EventLog, mut shutdown: watch::Receiver<bool>) {
    let mut radio = Radio {
        freq_hz: 14_074_000,
        mode: "USB".into(),
        ptt: false,
    };
    let mut cursor = log.head() + 1;
    let mut head = log.subscribe();
    if log.append(vec![radio.state()]).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut rng = fastrand::Rng::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = head.changed() => {
                let Ok(events) = log.read(cursor, 512) else { continue };
                let mut changed = false;
                for event in &events {
                    cursor = event.seq + 1;
                    if event.kind.starts_with("radio.") && &*event.kind != "radio.state" {
                        if let Ok(shared_protocol::ServerFrame::Event(e)) =
                            shared_protocol::ServerFrame::decode(&event.frame, usize::MAX)
                        {
                            changed |= radio.apply(&e.kind, &e.payload);
                        }
                    }
                }
                if changed {
                    let _ = log.append(vec![radio.state()]).await;
                }
            }
            _ = tick.tick() => {
                let watts = if radio.ptt { 95.0 + rng.f64() * 10.0 } else { 0.0 };
                let reading = Value::Map(vec![("watts".into(), ((watts * 10.0f64).round() / 10.0).into())]);
                let _ = log.append(vec![NewEvent::volatile("meter.power", reading)]).await;
            }
        }
    }
}
