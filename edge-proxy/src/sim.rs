//! The demo's simulated power meter. It follows the radio's PTT from the
//! `radio.state` events in the log (the radio itself is `station-sim`'s TS-2000
//! on a pseudo-terminal, driven by the bridge) and reports the forward power
//! once a second as `meter.power` (volatile): about 100 W while transmitting,
//! 0 otherwise.

use rmpv::Value;
use tokio::sync::watch;

use crate::eventlog::{EventLog, NewEvent};

pub async fn run(log: EventLog, mut shutdown: watch::Receiver<bool>) {
    let mut cursor = log.head() + 1;
    let mut head = log.subscribe();
    let mut transmitting = false;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut rng = fastrand::Rng::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = head.changed() => {
                let Ok(events) = log.read(cursor, 512) else { continue };
                for event in &events {
                    cursor = event.seq + 1;
                    if &*event.kind == "radio.state" {
                        if let Ok(shared_protocol::ServerFrame::Event(e)) =
                            shared_protocol::ServerFrame::decode(&event.frame, usize::MAX)
                        {
                            transmitting = e.payload["ptt"].as_bool() == Some(true);
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let watts = if transmitting { 95.0 + rng.f64() * 10.0 } else { 0.0 };
                let reading = Value::Map(vec![("watts".into(), ((watts * 10.0f64).round() / 10.0).into())]);
                let _ = log.append(vec![NewEvent::volatile("meter.power", reading)]).await;
            }
        }
    }
}
