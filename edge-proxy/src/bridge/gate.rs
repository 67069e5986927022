//! Which power readings are written to the log. Every reading reaches the
//! power monitor, `/stats` and `/metrics` (alarms and TX-drop detection
//! never miss one); only the log is spared readings that say nothing new:
//! a meter polled every second on an idle station would otherwise commit
//! (and fsync) an unchanged `0 W` forever, wearing out an SD card.
//!
//! A reading is logged when it is the first, when something a dashboard
//! shows changed meaningfully ([`Gate::admit`]), or when the last logged one
//! is `heartbeat` old (so the snapshot and a dashboard's "as of" stay
//! recent). Sans-IO: time is a parameter.

use shared_protocol::Millis;

/// A power change smaller than both of these is not news.
pub const WATTS_ABS: f64 = 0.5;
pub const WATTS_REL: f64 = 0.02;
/// An SWR change at most this is not news (nor any while there is no
/// forward power).
pub const SWR_STEP: f64 = 0.05;

/// What a reading shows, as far as logging it is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    pub watts: f64,
    pub swr: Option<f64>,
    pub transmitting: bool,
    pub level: &'static str,
    /// Whether the trend says the output is falling towards zero.
    pub falling: bool,
}

#[derive(Debug)]
pub struct Gate {
    heartbeat_ms: u64,
    last: Option<(Millis, Shown)>,
}

impl Gate {
    pub fn new(heartbeat_ms: u64) -> Self {
        Gate {
            heartbeat_ms,
            last: None,
        }
    }

    /// Whether `next`, read at `now`, is to be logged; if so it becomes the
    /// reading later ones are compared with.
    pub fn admit(&mut self, now: Millis, next: Shown) -> bool {
        let news = match &self.last {
            None => true,
            Some((at, last)) => {
                now.saturating_sub(*at) >= self.heartbeat_ms || changed(last, &next)
            }
        };
        if news {
            self.last = Some((now, next));
        }
        news
    }
}

/// Whether a dashboard would show `next` differently from `last`.
fn changed(last: &Shown, next: &Shown) -> bool {
    let watts_step = WATTS_ABS.max(WATTS_REL * last.watts.abs());
    // Without forward power a meter's SWR means nothing (it wanders): its
    // changes count only while there is power to measure it with.
    let powered = last.watts.max(next.watts) > WATTS_ABS;
    let swr_moved = match (last.swr, next.swr) {
        (Some(a), Some(b)) => powered && (a - b).abs() > SWR_STEP,
        (None, None) => false,
        _ => true,
    };
    last.transmitting != next.transmitting
        || last.level != next.level
        || last.falling != next.falling
        || (last.watts - next.watts).abs() > watts_step
        || swr_moved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(watts: f64) -> Shown {
        Shown {
            watts,
            swr: Some(1.1),
            transmitting: false,
            level: "normal",
            falling: false,
        }
    }

    #[test]
    fn an_unchanged_reading_is_logged_once_then_at_the_heartbeat() {
        let mut gate = Gate::new(60_000);
        assert!(gate.admit(0, idle(0.0)), "the first one");
        let logged = (1..=120)
            .filter(|s| gate.admit(s * 1_000, idle(0.0)))
            .count();
        assert_eq!(logged, 2, "at 60 s and 120 s");
    }

    #[test]
    fn small_changes_wait_and_meaningful_ones_go_at_once() {
        let mut gate = Gate::new(60_000);
        gate.admit(0, idle(100.0));
        assert!(!gate.admit(1_000, idle(101.5)), "1.5 % of 100 W");
        assert!(gate.admit(2_000, idle(102.5)), "2.5 % of 100 W");
        gate.admit(3_000, idle(0.0));
        assert!(!gate.admit(4_000, idle(0.4)), "under 0.5 W");
        assert!(gate.admit(5_000, idle(0.6)), "over 0.5 W");
        let swr = |s| Shown {
            swr: Some(s),
            ..idle(0.6)
        };
        assert!(!gate.admit(6_000, swr(1.14)));
        assert!(gate.admit(7_000, swr(1.2)));
        let unpowered = |s| Shown {
            swr: Some(s),
            ..idle(0.0)
        };
        assert!(gate.admit(7_500, unpowered(1.2)), "power went");
        assert!(
            !gate.admit(7_600, unpowered(1.1)),
            "SWR without power wanders"
        );
        assert!(gate.admit(
            8_000,
            Shown {
                swr: None,
                ..idle(0.6)
            }
        ));
    }

    #[test]
    fn transmitting_level_and_trend_changes_always_go() {
        let mut gate = Gate::new(60_000);
        gate.admit(0, idle(0.0));
        let keyed = Shown {
            transmitting: true,
            ..idle(0.0)
        };
        assert!(gate.admit(1_000, keyed));
        let warning = Shown {
            level: "warning",
            ..keyed
        };
        assert!(gate.admit(2_000, warning));
        assert!(gate.admit(
            3_000,
            Shown {
                falling: true,
                ..warning
            }
        ));
        assert!(!gate.admit(
            4_000,
            Shown {
                falling: true,
                ..warning
            }
        ));
    }
}
