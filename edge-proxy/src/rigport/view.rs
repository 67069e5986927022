//! The station as the rig port sees it, kept current by following the log:
//! `radio.state` (what the radio reported), `meter.power` (the meter),
//! `radio.meter` (the radio's S-meter, for `l STRENGTH`) and
//! `radio.set_mode` (whether a program asked for a data mode). One follower
//! for every program, so a read costs a `watch` borrow, never a CAT
//! exchange; on a shared JetStream log this is the local mirror, so a proxy
//! without the radio answers from the same state as the radio's own.

use edge_proxy::rigcore::station::Station;
use rmpv::Value;
use shared_protocol::ServerFrame;
use tokio::sync::watch;

use crate::eventlog::{EventLog, Logged};

/// The kinds the view reads.
fn relevant(kind: &str) -> bool {
    matches!(
        kind,
        "radio.state" | "meter.power" | "radio.meter" | "radio.set_mode"
    )
}

fn apply(station: &mut Station, kind: &str, payload: &Value) {
    match kind {
        "radio.state" => station.on_radio_state(
            payload["freq_hz"].as_u64(),
            payload["mode"].as_str(),
            payload["ptt"].as_bool(),
        ),
        "meter.power" => station.on_power(payload["watts"].as_f64(), payload["swr"].as_f64()),
        "radio.meter" => {
            if let Some(db) = payload["strength_db"].as_i64() {
                station.strength_db = i32::try_from(db).ok();
            }
        }
        "radio.set_mode" => {
            if let Some(mode) = payload["mode"].as_str() {
                station.on_set_mode(mode, payload["data"].as_bool() == Some(true));
            }
        }
        _ => {}
    }
}

fn apply_logged(station: &mut Station, event: &Logged) {
    if !relevant(&event.kind) {
        return;
    }
    if let Ok(ServerFrame::Event(e)) = ServerFrame::decode(&event.frame, usize::MAX) {
        apply(station, &e.kind, &e.payload);
    }
}

/// The station from the log's snapshot; returns it and where it is current to.
fn from_snapshot(log: &EventLog) -> (Station, u64) {
    let mut station = Station::default();
    let Ok((upto, state)) = log.snapshot() else {
        return (station, log.head());
    };
    // The data request first: the radio's state then says whether it still holds.
    for kind in [
        "radio.set_mode",
        "radio.state",
        "meter.power",
        "radio.meter",
    ] {
        if let Some(payload) = state.get(kind) {
            apply(&mut station, kind, payload);
        }
    }
    (station, upto)
}

/// Starts following the log; the receiver always holds the current station.
pub fn follow(log: EventLog, mut shutdown: watch::Receiver<bool>) -> watch::Receiver<Station> {
    let (mut station, upto) = from_snapshot(&log);
    let (tx, rx) = watch::channel(station.clone());
    tokio::spawn(async move {
        let mut cursor = upto + 1;
        let mut head = log.subscribe();
        loop {
            match log.read(cursor, 256) {
                Ok(events) if !events.is_empty() => {
                    for event in &events {
                        cursor = event.seq + 1;
                        apply_logged(&mut station, event);
                    }
                    tx.send_if_modified(|s| {
                        let changed = *s != station;
                        if changed {
                            *s = station.clone();
                        }
                        changed
                    });
                    continue;
                }
                Ok(_) if cursor <= log.head() => {
                    // Trimmed under the cursor: start again from the snapshot.
                    let (fresh, upto) = from_snapshot(&log);
                    station = fresh;
                    tx.send_replace(station.clone());
                    if upto + 1 > cursor {
                        cursor = upto + 1;
                        continue;
                    }
                    // Nothing readable yet at or after the cursor: wait a little.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "rig port: could not read the log; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            }
            tokio::select! {
                _ = head.changed() => {}
                _ = shutdown.changed() => return,
            }
        }
    });
    rx
}
