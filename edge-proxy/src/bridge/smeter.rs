//! The radio's receive S-meter into `radio.meter` events (volatile; the
//! last one is in every snapshot): read once per [`PERIOD`] while
//! receiving (when is `shared_protocol::radiopoll`'s, on the grid the polls
//! share), never while transmitting (the meter then shows RF output, and
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
    logged: Option<i32>,
}

impl SMeter {
    /// A reading; the event to log, if it moved enough.
    pub fn reading(&mut self, db: i32) -> Option<NewEvent> {
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
    fn logged_when_it_moved() {
        let mut m = SMeter::default();
        assert!(m.reading(0).is_some(), "the first reading is news");
        assert!(m.reading(2).is_none(), "under half an S-unit: not logged");
        assert!(m.reading(-3).is_some(), "half an S-unit: logged");
        assert!(m.reading(-1).is_none(), "compared with what was logged");
        m.reset();
        assert!(m.reading(-1).is_some(), "a new connection starts afresh");
    }
}
