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

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
