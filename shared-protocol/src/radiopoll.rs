//! When the radio link asks the radio for its state (`IF;`, or rigctld's
//! frequency, mode and PTT) and for its receive S-meter.
//!
//! A poll costs wake-ups (a timer, the answer's I/O, the radio's CPU) and
//! an idle station should cost almost nothing; a poll also bounds how late
//! a knob turn reaches the dashboards. Which one wins depends on whether
//! the radio says its changes itself:
//!
//! | the radio | its state is polled every |
//! |---|---|
//! | keyed here | `on_air_ms` (`radio_poll_tx_ms`): TX drops are seen within it, and the TX watchdog's view of the transmitter depends on it |
//! | reports its changes itself (a Kenwood in auto-information mode, `AI2;`) | `max(idle_ms, check_ms)`: only a liveness and consistency check, the changes arrive by themselves |
//! | does not (rigctld, a Kenwood without AI), a change seen in the last `busy_for_ms` | `busy_ms`: someone is turning the knob, follow it closely |
//! | does not, nothing changed lately | `idle_ms` (`radio_poll_ms`) |
//!
//! The S-meter is read every `smeter_ms` while receiving, never keyed.
//! Every deadline is on one grid (the next multiple of its period since
//! the clock's start, as the proxy's other periodic work), so periods that
//! divide each other share their wake-ups: with AI an idle radio link wakes
//! once a second, for the S-meter, and polls its state on every second one.
//!
//! Sans-IO: `now` is a parameter (milliseconds on the caller's monotonic
//! clock); the shell sleeps until [`PollPlan::poll_timeout`] and does what
//! [`PollPlan::due`] says.

use crate::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollConfig {
    /// Idle, without reports from the radio (`radio_poll_ms`).
    pub idle_ms: Millis,
    /// While keyed here (`radio_poll_tx_ms`; never slower than `idle_ms`).
    pub on_air_ms: Millis,
    /// After a change, without reports from the radio (never slower than `idle_ms`)...
    pub busy_ms: Millis,
    /// ...for this long after the last change seen.
    pub busy_for_ms: Millis,
    /// With reports from the radio: the check, unless `idle_ms` is longer.
    pub check_ms: Millis,
    /// The receive S-meter; 0: never read.
    pub smeter_ms: Millis,
}

impl PollConfig {
    /// The proxy's: `idle_ms` and `on_air_ms` from its configuration, 100 ms
    /// for 3 s after a change, a check every 2 s with AI, the S-meter each
    /// second.
    pub const fn with(idle_ms: Millis, on_air_ms: Millis) -> Self {
        PollConfig {
            idle_ms,
            on_air_ms,
            busy_ms: 100,
            busy_for_ms: 3_000,
            check_ms: 2_000,
            smeter_ms: 1_000,
        }
    }
}

/// What to do at a wake-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Due {
    /// Ask the radio for its state.
    pub status: bool,
    /// Read the receive S-meter.
    pub smeter: bool,
}

#[derive(Debug, Clone)]
pub struct PollPlan {
    config: PollConfig,
    /// The radio reports its changes itself.
    reports: bool,
    last_change: Option<Millis>,
    next_status: Millis,
    next_smeter: Millis,
}

/// The first multiple of `period` after `now`.
fn grid(now: Millis, period: Millis) -> Millis {
    let period = period.max(1);
    (now / period + 1) * period
}

impl PollPlan {
    /// A plan for a new connection: poll and read the meter at once.
    pub fn new(config: PollConfig, reports: bool) -> Self {
        PollPlan {
            config,
            reports,
            last_change: None,
            next_status: 0,
            next_smeter: 0,
        }
    }

    /// Whether the radio reports its changes itself.
    pub fn reports(&self) -> bool {
        self.reports
    }

    /// How often the state is polled now.
    pub fn period(&self, now: Millis, keyed: bool) -> Millis {
        let c = &self.config;
        if keyed {
            c.on_air_ms.min(c.idle_ms)
        } else if self.reports {
            c.idle_ms.max(c.check_ms)
        } else if self
            .last_change
            .is_some_and(|at| now < at.saturating_add(c.busy_for_ms))
        {
            c.busy_ms.min(c.idle_ms)
        } else {
            c.idle_ms
        }
    }

    /// When the shell should wake next.
    pub fn poll_timeout(&self, keyed: bool) -> Millis {
        if keyed || self.config.smeter_ms == 0 {
            self.next_status
        } else {
            self.next_status.min(self.next_smeter)
        }
    }

    pub fn due(&self, now: Millis, keyed: bool) -> Due {
        Due {
            status: now >= self.next_status,
            smeter: !keyed && self.config.smeter_ms > 0 && now >= self.next_smeter,
        }
    }

    /// The state was polled (whatever came of it): the next poll is one
    /// period on.
    pub fn polled(&mut self, now: Millis, keyed: bool) {
        self.next_status = grid(now, self.period(now, keyed));
    }

    /// The S-meter was read, or skipped because the radio is transmitting.
    pub fn smeter_read(&mut self, now: Millis) {
        self.next_smeter = grid(now, self.config.smeter_ms);
    }

    /// Poll at the next wake-up: a command reached the radio, a report
    /// needs confirming.
    pub fn poll_now(&mut self, now: Millis) {
        self.next_status = self.next_status.min(now);
    }

    /// The radio's state changed (a poll or a report saw it): without
    /// reports, follow it closely for a while.
    pub fn changed(&mut self, now: Millis) {
        self.last_change = Some(now);
        if !self.reports {
            let soon = grid(now, self.config.busy_ms.min(self.config.idle_ms));
            self.next_status = self.next_status.min(soon);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake shell: wakes at each timeout until `until`, and counts.
    struct Run {
        plan: PollPlan,
        now: Millis,
        polls: Vec<Millis>,
        smeter: Vec<Millis>,
        wakes: usize,
    }

    impl Run {
        fn new(reports: bool) -> Self {
            Run {
                plan: PollPlan::new(PollConfig::with(500, 50), reports),
                now: 0,
                polls: vec![],
                smeter: vec![],
                wakes: 0,
            }
        }

        fn until(&mut self, until: Millis, keyed: bool) {
            loop {
                let at = self.plan.poll_timeout(keyed).max(self.now);
                if at > until {
                    self.now = until;
                    return;
                }
                self.now = at;
                self.wakes += 1;
                let due = self.plan.due(self.now, keyed);
                assert!(due.status || due.smeter, "woken for nothing at {at}");
                if due.status {
                    self.polls.push(self.now);
                    self.plan.polled(self.now, keyed);
                }
                if due.smeter {
                    self.smeter.push(self.now);
                    self.plan.smeter_read(self.now);
                }
            }
        }
    }

    #[test]
    fn with_reports_an_idle_link_wakes_once_a_second_and_polls_every_two() {
        let mut run = Run::new(true);
        run.until(10_999, false);
        assert_eq!(run.polls, [0, 2_000, 4_000, 6_000, 8_000, 10_000]);
        assert_eq!(run.smeter.len(), 11, "the S-meter each second");
        assert_eq!(run.wakes, 11, "polls share the S-meter's wake-ups");
        run.plan.changed(run.now);
        run.until(11_999, false);
        assert_eq!(run.polls.last(), Some(&10_000), "reports need no poll");
    }

    #[test]
    fn without_reports_a_change_is_followed_closely_for_a_while() {
        let mut run = Run::new(false);
        run.until(2_999, false);
        assert_eq!(run.polls, [0, 500, 1_000, 1_500, 2_000, 2_500]);
        assert_eq!(run.wakes, 6, "the S-meter on the poll's grid");
        run.plan.changed(3_000);
        run.now = 3_000;
        run.until(6_999, false);
        let fast: Vec<_> = run.polls.iter().filter(|t| **t > 3_000).collect();
        assert_eq!(fast.first(), Some(&&3_100), "the next poll at once");
        assert_eq!(
            fast.iter().filter(|t| ***t <= 6_000).count(),
            30,
            "100 ms for 3 s"
        );
        assert!(
            run.polls.contains(&6_500) && !run.polls.contains(&6_600),
            "then idle again: {:?}",
            run.polls
        );
    }

    #[test]
    fn keyed_it_polls_fast_whatever_the_radio_reports_and_never_reads_the_s_meter() {
        for reports in [false, true] {
            let mut run = Run::new(reports);
            run.until(0, false);
            run.plan.poll_now(10);
            run.until(1_000, true);
            // At 0, at the command (10), then every 50 ms to 1000.
            assert_eq!(run.polls.len(), 2 + 20, "every 50 ms: {:?}", run.polls);
            assert_eq!(run.smeter, [0], "not while keyed");
            assert_eq!(
                run.plan.period(1_000, false),
                if reports { 2_000 } else { 500 }
            );
        }
    }

    #[test]
    fn a_slower_idle_poll_than_the_check_is_kept_and_fast_ones_are_never_slowed() {
        let plan = PollPlan::new(PollConfig::with(5_000, 50), true);
        assert_eq!(plan.period(0, false), 5_000);
        let mut plan = PollPlan::new(PollConfig::with(40, 50), false);
        plan.changed(0);
        assert_eq!(plan.period(1, false), 40, "busy never slower than idle");
        assert_eq!(plan.period(1, true), 40, "keyed never slower than idle");
        let plan = PollPlan::new(PollConfig::with(40, 50), true);
        assert_eq!(plan.period(1, false), 2_000);
    }

    #[test]
    fn a_command_or_an_unconfirmed_report_polls_at_the_next_wake_up() {
        let mut plan = PollPlan::new(PollConfig::with(500, 50), true);
        plan.polled(0, false);
        plan.smeter_read(0);
        assert_eq!(plan.poll_timeout(false), 1_000);
        plan.poll_now(300);
        assert_eq!(plan.poll_timeout(false), 300);
        assert!(plan.due(300, false).status);
        assert!(!plan.due(300, false).smeter);
    }
}
