//! Heartbeat: when to ping, when a missing pong means the link is dead, and
//! what the round-trip times have been.
//!
//! One ping is outstanding at a time. A pong that does not arrive within
//! `timeout_ms` (1.5x the interval by default) makes the link *stale*; any
//! received traffic counts as a sign of life but only pongs measure RTT.

use crate::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    pub interval_ms: u64,
    /// No pong within this long after a ping: the link is stale.
    pub timeout_ms: u64,
}

impl HeartbeatConfig {
    /// Ping every `interval_ms`, stale after 1.5x that without a pong.
    pub const fn every(interval_ms: u64) -> Self {
        HeartbeatConfig {
            interval_ms,
            timeout_ms: interval_ms + interval_ms / 2,
        }
    }

    /// Browser latency ping: every 10 s, timeout 15 s.
    pub const CLIENT: HeartbeatConfig = HeartbeatConfig::every(10_000);
    /// Proxy heartbeat: every 30 s, timeout 45 s.
    pub const PROXY: HeartbeatConfig = HeartbeatConfig::every(30_000);
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self::CLIENT
    }
}

/// What the heartbeat asks the shell to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatAction {
    /// Send a ping with this nonce, carrying `now` as its time.
    SendPing { nonce: u32 },
    /// No pong in time: treat the link as stale (reconnect or close).
    Stale { silent_for_ms: u64 },
}

#[derive(Debug, Clone)]
pub struct Heartbeat {
    config: HeartbeatConfig,
    next_ping_at: Millis,
    outstanding: Option<(u32, Millis)>,
    next_nonce: u32,
    last_rx: Millis,
    stale: bool,
    pub stats: HeartbeatStats,
    pub rtt: RttStats,
}

/// Counters kept across the life of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatStats {
    pub pings_sent: u64,
    pub pongs_received: u64,
    pub timeouts: u64,
}

impl Heartbeat {
    /// Starts the schedule for a link that opened at `now`.
    pub fn new(config: HeartbeatConfig, now: Millis) -> Self {
        Heartbeat {
            config,
            next_ping_at: now + config.interval_ms,
            outstanding: None,
            next_nonce: 1,
            last_rx: now,
            stale: false,
            stats: HeartbeatStats::default(),
            rtt: RttStats::new(128),
        }
    }

    pub fn config(&self) -> HeartbeatConfig {
        self.config
    }

    /// Restarts the schedule on a new connection, keeping statistics.
    pub fn restart(&mut self, now: Millis) {
        self.next_ping_at = now + self.config.interval_ms;
        self.outstanding = None;
        self.last_rx = now;
        self.stale = false;
    }

    /// Any frame arrived: the peer is alive.
    pub fn on_traffic(&mut self, now: Millis) {
        self.last_rx = self.last_rx.max(now);
    }

    /// A pong arrived. Returns the RTT when it answers the outstanding ping.
    pub fn on_pong(&mut self, nonce: u32, now: Millis) -> Option<u64> {
        self.on_traffic(now);
        match self.outstanding {
            Some((n, sent)) if n == nonce => {
                self.outstanding = None;
                self.stats.pongs_received += 1;
                let rtt = now.saturating_sub(sent);
                self.rtt.record(rtt);
                Some(rtt)
            }
            _ => None,
        }
    }

    /// Ask for a ping now (a latency test), unless one is already in flight.
    pub fn ping_now(&mut self, now: Millis) -> Option<HeartbeatAction> {
        if self.outstanding.is_some() {
            return None;
        }
        Some(self.send_ping(now))
    }

    fn send_ping(&mut self, now: Millis) -> HeartbeatAction {
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(1).max(1);
        self.outstanding = Some((nonce, now));
        self.next_ping_at = now + self.config.interval_ms;
        self.stats.pings_sent += 1;
        HeartbeatAction::SendPing { nonce }
    }

    /// When the shell should next call [`Heartbeat::handle_timeout`].
    pub fn poll_timeout(&self) -> Millis {
        match self.outstanding {
            // Stale is reported once; the shell restarts the heartbeat on the
            // next connection, so there is nothing to wake up for.
            _ if self.stale => Millis::MAX,
            Some((_, sent)) => sent.max(self.last_rx) + self.config.timeout_ms,
            None => self.next_ping_at,
        }
    }

    /// Advances the clock; returns what to do, if anything.
    pub fn handle_timeout(&mut self, now: Millis) -> Option<HeartbeatAction> {
        if let Some((_, sent)) = self.outstanding {
            let deadline = sent + self.config.timeout_ms;
            // Traffic after the ping is a sign of life: give the pong a fresh
            // deadline rather than declaring a busy link dead.
            let deadline = deadline.max(self.last_rx + self.config.timeout_ms);
            if now >= deadline && !self.stale {
                self.stale = true;
                self.stats.timeouts += 1;
                return Some(HeartbeatAction::Stale {
                    silent_for_ms: now.saturating_sub(self.last_rx),
                });
            }
            return None;
        }
        if now >= self.next_ping_at {
            return Some(self.send_ping(now));
        }
        None
    }

    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Whether the last ping got its pong (or none is overdue yet).
    pub fn healthy(&self) -> bool {
        !self.stale
    }
}

/// Round-trip time statistics: last, smoothed, and percentiles over a window.
#[derive(Debug, Clone)]
pub struct RttStats {
    window: Vec<u64>,
    capacity: usize,
    last: Option<u64>,
    smoothed: Option<f64>,
}

/// A point-in-time summary of [`RttStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RttSummary {
    pub last_ms: Option<u64>,
    pub smoothed_ms: Option<f64>,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub samples: usize,
}

impl RttStats {
    /// Keeps the newest `capacity` samples for percentiles.
    pub fn new(capacity: usize) -> Self {
        RttStats {
            window: Vec::with_capacity(capacity),
            capacity: capacity.max(1),
            last: None,
            smoothed: None,
        }
    }

    /// Adds a sample. The smoothed value is TCP's SRTT (RFC 6298): 7/8 old + 1/8 new.
    pub fn record(&mut self, rtt_ms: u64) {
        crate::push_bounded(&mut self.window, self.capacity, rtt_ms);
        self.last = Some(rtt_ms);
        self.smoothed = Some(match self.smoothed {
            None => rtt_ms as f64,
            Some(s) => s * 0.875 + rtt_ms as f64 * 0.125,
        });
    }

    /// Nearest-rank percentile over the window, `q` in 0..=1.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        if self.window.is_empty() {
            return None;
        }
        let mut sorted: Vec<u64> = self.window.clone();
        crate::sort_small_by_key(&mut sorted, |v| *v);
        let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    pub fn summary(&self) -> RttSummary {
        RttSummary {
            last_ms: self.last,
            smoothed_ms: self.smoothed,
            p50_ms: self.percentile(0.50),
            p95_ms: self.percentile(0.95),
            p99_ms: self.percentile(0.99),
            samples: self.window.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_on_schedule_and_measures_rtt() {
        let mut hb = Heartbeat::new(HeartbeatConfig::every(1_000), 0);
        assert_eq!(hb.poll_timeout(), 1_000);
        assert_eq!(hb.handle_timeout(999), None);
        assert_eq!(
            hb.handle_timeout(1_000),
            Some(HeartbeatAction::SendPing { nonce: 1 })
        );
        assert_eq!(hb.on_pong(99, 1_010), None, "a stray pong is ignored");
        assert_eq!(hb.on_pong(1, 1_040), Some(40));
        assert_eq!(hb.poll_timeout(), 2_000);
        assert_eq!(hb.rtt.summary().last_ms, Some(40));
        assert_eq!(hb.stats.pings_sent, 1);
        assert_eq!(hb.stats.pongs_received, 1);
    }

    #[test]
    fn missing_pong_goes_stale_at_one_and_a_half_intervals() {
        let mut hb = Heartbeat::new(HeartbeatConfig::every(1_000), 0);
        hb.handle_timeout(1_000);
        assert_eq!(hb.poll_timeout(), 2_500);
        assert_eq!(hb.handle_timeout(2_499), None);
        assert_eq!(
            hb.handle_timeout(2_500),
            Some(HeartbeatAction::Stale {
                silent_for_ms: 2_500
            })
        );
        assert!(hb.is_stale());
        assert_eq!(hb.handle_timeout(3_000), None, "stale is reported once");
        hb.restart(3_000);
        assert!(!hb.is_stale());
    }

    #[test]
    fn traffic_extends_the_pong_deadline() {
        let mut hb = Heartbeat::new(HeartbeatConfig::every(1_000), 0);
        hb.handle_timeout(1_000);
        hb.on_traffic(2_000);
        assert_eq!(hb.handle_timeout(2_600), None);
        assert!(matches!(
            hb.handle_timeout(3_500),
            Some(HeartbeatAction::Stale { .. })
        ));
    }

    #[test]
    fn percentiles_nearest_rank() {
        let mut r = RttStats::new(100);
        for v in 1..=100 {
            r.record(v);
        }
        let s = r.summary();
        assert_eq!(
            (s.p50_ms, s.p95_ms, s.p99_ms),
            (Some(50), Some(95), Some(99))
        );
        r.record(1_000);
        assert_eq!(r.summary().samples, 100, "window is bounded");
    }
}
