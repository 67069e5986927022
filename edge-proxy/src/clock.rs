//! The proxy's one clock for the sans-IO state machines.
//!
//! Every decision of safety (the TX watchdog, deadlines, the radio link's
//! timers) runs on this monotonic clock, never on the wall clock: a
//! Raspberry Pi without a real-time clock steps its wall clock by years
//! when NTP first answers, and nothing may key or unkey because of that.

use std::time::Duration;

use shared_protocol::Millis;

/// Milliseconds since the proxy started, on tokio's monotonic clock (which
/// tests can pause); the sans-IO state machines take these as `now`.
#[derive(Clone, Copy)]
pub struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    pub fn instant_at(&self, at: Millis) -> tokio::time::Instant {
        // Far-future wake-ups are capped so the addition cannot overflow.
        self.start + Duration::from_millis(at.min(u64::MAX / 4).min(10 * 365 * 86_400_000))
    }
}

impl Clock {
    /// The first multiple of `period` since the start that is still to
    /// come. Loops that schedule on this one grid (the radio and meter
    /// polls, the maintenance tick) wake together when their periods are
    /// multiples of each other, instead of each at its own phase: an idle
    /// proxy wakes a few times a second, not once per timer.
    pub fn next_tick(&self, period: Duration) -> tokio::time::Instant {
        let period = (period.as_millis() as Millis).max(1);
        self.instant_at((self.now() / period + 1) * period)
    }

    /// An interval on that grid (missed ticks skipped, so it stays on it).
    pub fn interval(&self, period: Duration) -> tokio::time::Interval {
        let mut tick = tokio::time::interval_at(self.next_tick(period), period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_of_commensurate_periods_fall_together() {
        let clock = Clock::new();
        tokio::time::advance(Duration::from_millis(1_234)).await;
        let half = clock.next_tick(Duration::from_millis(500));
        let second = clock.next_tick(Duration::from_secs(1));
        assert_eq!(half, clock.instant_at(1_500));
        assert_eq!(second, clock.instant_at(2_000));
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(clock.next_tick(Duration::from_millis(500)), second);
    }
}
