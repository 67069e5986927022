//! The proxy's one clock for the sans-IO state machines.
//!
//! Every decision of safety (the TX watchdog, deadlines, the radio link's
//! timers) runs on this monotonic clock, never on the wall clock: a
//! Raspberry Pi without a real-time clock steps its wall clock by years
//! when NTP first answers, and nothing may key or unkey because of that.

use std::pin::Pin;
use std::time::Duration;

use shared_protocol::Millis;
use tokio::time::{Instant, Sleep};

/// The slot of the second level of tokio's timer wheel, in milliseconds
/// since the runtime's time driver started.
const WHEEL_SLOT_MS: Millis = 64;
/// Polls on a grid finer than this are never moved onto a slot: a fast
/// poll (after a change, while transmitting) would feel the delay, and an
/// idle station's polls (half a second or more apart) do not.
const SLOTTED_FROM_MS: Millis = 500;

/// Milliseconds since the proxy started, on tokio's monotonic clock (which
/// tests can pause); the sans-IO state machines take these as `now`.
#[derive(Clone, Copy)]
pub struct Clock {
    start: Instant,
    /// Where the 64 ms slots of the timer wheel the polls sleep on begin,
    /// if known: see [`Clock::on_wheel`].
    wheel: Option<Instant>,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: Instant::now(),
            wheel: None,
        }
    }

    /// This clock, with its poll instants ([`Clock::poll_at`],
    /// [`Clock::ticker`]) moved onto the 64 ms slots of the timer wheel of
    /// the runtime whose time driver started at most a millisecond before
    /// `started` (taken just after building it).
    ///
    /// Why: tokio files a timer 64 ms to 4 s away in a 64 ms slot and, at
    /// the start of that slot, wakes to move it to a 1 ms one; a poll due
    /// anywhere inside the slot costs two wake-ups, one due at its start
    /// costs one. A poll comes at most 63 ms after its instant on the grid
    /// (never earlier), and the grid itself does not drift. If the guess
    /// of the driver's start is off, or tokio files timers differently,
    /// the only cost is the extra wake-up. Safety timers (`instant_at`)
    /// are never moved.
    pub fn on_wheel(self, started: Instant) -> Self {
        // tokio counts whole milliseconds since its driver started, a
        // deadline rounded up: one up to 999 us after a slot's start counts
        // as that slot's start. Slots counted from 999 us before `started`
        // therefore begin, in tokio's count, on one of its own.
        Clock {
            wheel: started.checked_sub(Duration::from_micros(999)),
            ..self
        }
    }

    pub fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    pub fn instant_at(&self, at: Millis) -> Instant {
        // Far-future wake-ups are capped so the addition cannot overflow.
        self.start + Duration::from_millis(at.min(u64::MAX / 4).min(10 * 365 * 86_400_000))
    }
}

impl Clock {
    /// When to wake for the first multiple of `period` since the start that
    /// is still to come (see [`Clock::poll_at`]). Loops that schedule on
    /// this one grid (the radio and meter polls, the maintenance tick) wake
    /// together when their periods are multiples of each other, instead of
    /// each at its own phase: an idle proxy wakes a few times a second, not
    /// once per timer.
    pub fn next_tick(&self, period: Duration) -> Instant {
        let period = (period.as_millis() as Millis).max(1);
        self.poll_at((self.now() / period + 1) * period, period)
    }

    /// When a poll due at `at`, on a grid of `period` ms, should wake:
    /// `at`, moved to the start of its wheel slot if the wheel is known
    /// ([`Clock::on_wheel`]) and the grid is [`SLOTTED_FROM_MS`] or coarser.
    /// The same `at` always wakes at the same instant, whenever it is asked,
    /// so loops on one grid still wake together.
    pub fn poll_at(&self, at: Millis, period: Millis) -> Instant {
        let due = self.instant_at(at);
        match self.wheel {
            Some(origin) if period >= SLOTTED_FROM_MS && due > origin => {
                let since = (due - origin).as_nanos();
                let slot = u128::from(WHEEL_SLOT_MS) * 1_000_000;
                let slots = since.div_ceil(slot);
                origin + Duration::from_millis((slots * u128::from(WHEEL_SLOT_MS)) as u64)
            }
            _ => due,
        }
    }

    /// Ticks on that grid (a missed tick is skipped, so it stays on it).
    pub fn ticker(&self, period: Duration) -> Ticker {
        Ticker {
            clock: *self,
            period,
            sleep: Box::pin(tokio::time::sleep_until(self.next_tick(period))),
        }
    }
}

/// See [`Clock::ticker`].
pub struct Ticker {
    clock: Clock,
    period: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl Ticker {
    /// Waits for the next tick. Cancel-safe: dropped before it returns, it
    /// leaves the tick to come where it was.
    pub async fn tick(&mut self) {
        self.sleep.as_mut().await;
        let next = self.clock.next_tick(self.period);
        self.sleep.as_mut().reset(next);
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

    #[tokio::test(start_paused = true)]
    async fn polls_on_a_known_wheel_wake_at_the_start_of_a_slot_never_earlier() {
        let started = Instant::now();
        tokio::time::advance(Duration::from_micros(300)).await;
        let clock = Clock::new().on_wheel(started);
        let slots_from = started - Duration::from_micros(999);
        for at in [500, 1_000, 1_023, 1_024, 1_025, 5_000, 60_000] {
            let due = clock.instant_at(at);
            let wake = clock.poll_at(at, 500);
            assert!(wake >= due, "never early ({at})");
            assert!(
                wake - due < Duration::from_millis(64),
                "late by less than a slot ({at})"
            );
            assert_eq!(
                (wake - slots_from).as_micros() % 64_000,
                0,
                "on a slot ({at})"
            );
            // Asked again later, the same instant: one grid, one wake-up.
            tokio::time::advance(Duration::from_millis(300)).await;
            assert_eq!(clock.poll_at(at, 1_000), wake);
        }
        let next = clock.next_tick(Duration::from_secs(1));
        let at = (clock.now() / 1_000 + 1) * 1_000;
        assert_eq!(next, clock.poll_at(at, 1_000));
        // A fast grid (after a change, while transmitting): never delayed.
        for period in [50, 100, 499] {
            assert_eq!(clock.poll_at(at, period), clock.instant_at(at));
        }
        // Safety timers are never moved.
        assert_eq!(
            clock.instant_at(2_000),
            clock.start + Duration::from_secs(2)
        );
        // No wheel: the grid as it is.
        assert_eq!(Clock::new().poll_at(500, 500), Clock::new().instant_at(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticker_ticks_once_per_period_on_the_grid() {
        let clock = Clock::new();
        let mut ticker = clock.ticker(Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(10)).await;
        for n in 1..=3 {
            ticker.tick().await;
            assert_eq!(clock.now(), n * 500);
        }
        // A missed tick is skipped.
        tokio::time::advance(Duration::from_millis(1_200)).await;
        ticker.tick().await;
        assert_eq!(clock.now(), 2_700);
        ticker.tick().await;
        assert_eq!(clock.now(), 3_000);
    }
}
