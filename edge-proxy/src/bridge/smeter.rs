//! The radio's receive S-meter into `radio.meter` events (volatile; the
//! last one is in every snapshot): read at most once per [`PERIOD`] while
//! receiving, never while transmitting (the meter then shows RF output, and
//! a transmitting radio's CAT line is kept for the TX-drop checks), and
//! logged only when the signal moved by [`STEP_DB`] or more, so a steady
//! carrier or an empty band costs the log nothing.
//!
//! The payload (docs/PROTOCOL.md): `strength_db`, the signal in dB
//! relative to S9 as rigctld's `STRENGTH` level has it, and the same as an
//! operator reads a meter: `s_units` (0..=9) and `over_s9_db` (0 below S9).

use rmpv::Value;

use crate::eventlog::NewEvent;

/// How often the S-meter is read while receiving.
pub const PERIOD: std::time::Duration = std::time::Duration::from_secs(1);
/// The smallest change that is logged: half an S-unit.
pub const STEP_DB: i32 = 3;
/// dB per S-unit (the IARU's S9 = -73 dBm, 6 dB per unit below it).
const DB_PER_S_UNIT: i32 = 6;

#[derive(Debug, Default)]
pub struct SMeter {
    last_read: Option<tokio::time::Instant>,
    logged: Option<i32>,
}

impl SMeter {
    /// Whether to read the meter now: receiving, and [`PERIOD`] since the last read.
    pub fn due(&self, now: tokio::time::Instant, on_air: bool) -> bool {
        !on_air && self.last_read.is_none_or(|at| now >= at + PERIOD)
    }

    /// A reading taken at `now`; the event to log, if it moved enough.
    pub fn reading(&mut self, now: tokio::time::Instant, db: i32) -> Option<NewEvent> {
        self.last_read = Some(now);
        if self.logged.is_some_and(|last| (db - last).abs() < STEP_DB) {
            return None;
        }
        self.logged = Some(db);
        Some(NewEvent::volatile("radio.meter", payload(db)))
    }

    /// A new connection: its first reading is news.
    pub fn reset(&mut self) {
        *self = SMeter::default();
    }
}

/// `{strength_db, s_units, over_s9_db}` for a signal `db` relative to S9.
pub fn payload(db: i32) -> Value {
    let s_units = (9 + db.min(0).div_euclid(DB_PER_S_UNIT)).max(0);
    Value::Map(vec![
        ("strength_db".into(), db.into()),
        ("s_units".into(), s_units.into()),
        ("over_s9_db".into(), db.max(0).into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn field(v: &Value, key: &str) -> i64 {
        v[key].as_i64().unwrap()
    }

    #[test]
    fn s_units_and_db_over_s9() {
        for (db, s, over) in [
            (0, 9, 0),
            (-6, 8, 0),
            (-12, 7, 0),
            (-1, 8, 0),
            (20, 9, 20),
            (-54, 0, 0),
            (-60, 0, 0),
        ] {
            let p = payload(db);
            assert_eq!(
                (field(&p, "s_units"), field(&p, "over_s9_db")),
                (s, over),
                "{db} dB"
            );
            assert_eq!(field(&p, "strength_db"), i64::from(db));
        }
    }

    #[test]
    fn read_once_a_period_while_receiving_and_logged_when_it_moved() {
        let t0 = tokio::time::Instant::now();
        let mut m = SMeter::default();
        assert!(m.due(t0, false));
        assert!(!m.due(t0, true), "never while transmitting");
        assert!(m.reading(t0, 0).is_some(), "the first reading is news");
        assert!(!m.due(t0 + Duration::from_millis(500), false));
        let t1 = t0 + PERIOD;
        assert!(m.due(t1, false));
        assert!(
            m.reading(t1, 2).is_none(),
            "under half an S-unit: not logged"
        );
        assert!(m.reading(t1, -3).is_some(), "half an S-unit: logged");
        assert!(m.reading(t1, -1).is_none(), "compared with what was logged");
        m.reset();
        assert!(
            m.reading(t1, -1).is_some(),
            "a new connection starts afresh"
        );
    }
}
