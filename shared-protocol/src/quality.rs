//! Link quality: one number in 0..=1 that tells the operator honestly how good
//! the connection has been, from four inputs.
//!
//! ```text
//! stability = max(0, 1 - reconnects_in_window / reconnect_budget)
//! ack_rate  = acked / sent            (1 when nothing was sent)
//! uptime    = connected time / observed time
//! activity  = 1 while data arrived within activity_timeout, then falls
//!             linearly to 0 over another activity_timeout
//! quality   = 0.30 stability + 0.25 ack_rate + 0.30 uptime + 0.15 activity
//! ```
//!
//! Defaults: a 10-minute reconnect window, a budget of 5 reconnects in it,
//! and a 2-minute activity timeout (REQUIREMENTS.md).

use crate::Millis;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityConfig {
    pub reconnect_window_ms: u64,
    pub reconnect_budget: u32,
    pub activity_timeout_ms: u64,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            reconnect_window_ms: 10 * 60_000,
            reconnect_budget: 5,
            activity_timeout_ms: 2 * 60_000,
        }
    }
}

pub const WEIGHT_STABILITY: f64 = 0.30;
pub const WEIGHT_ACK_RATE: f64 = 0.25;
pub const WEIGHT_UPTIME: f64 = 0.30;
pub const WEIGHT_ACTIVITY: f64 = 0.15;

/// The score and the inputs it came from, each in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QualityReport {
    pub score: f64,
    pub stability: f64,
    pub ack_rate: f64,
    pub uptime: f64,
    pub activity: f64,
    pub reconnects_in_window: u32,
}

#[derive(Debug, Clone)]
pub struct QualityTracker {
    config: QualityConfig,
    started_at: Millis,
    connected_since: Option<Millis>,
    connected_total_ms: u64,
    reconnects: Vec<Millis>,
    sent: u64,
    acked: u64,
    last_activity: Option<Millis>,
}

impl QualityTracker {
    pub fn new(config: QualityConfig, now: Millis) -> Self {
        QualityTracker {
            config,
            started_at: now,
            connected_since: None,
            connected_total_ms: 0,
            reconnects: Vec::new(),
            sent: 0,
            acked: 0,
            last_activity: None,
        }
    }

    pub fn on_connected(&mut self, now: Millis) {
        if self.connected_since.is_none() {
            self.connected_since = Some(now);
        }
        self.last_activity = Some(now);
    }

    pub fn on_disconnected(&mut self, now: Millis) {
        if let Some(since) = self.connected_since.take() {
            self.connected_total_ms += now.saturating_sub(since);
        }
    }

    /// A reconnect attempt began (counted against stability).
    pub fn on_reconnect(&mut self, now: Millis) {
        self.reconnects.push(now);
        self.expire(now);
    }

    /// `n` messages needing an acknowledgement were sent.
    pub fn on_sent(&mut self, n: u64) {
        self.sent += n;
    }

    /// `n` of them were acknowledged.
    pub fn on_acked(&mut self, n: u64) {
        self.acked = (self.acked + n).min(self.sent);
    }

    /// Data arrived from the peer.
    pub fn on_activity(&mut self, now: Millis) {
        self.last_activity = Some(self.last_activity.map_or(now, |t| t.max(now)));
    }

    fn expire(&mut self, now: Millis) {
        let window = self.config.reconnect_window_ms;
        let old = self
            .reconnects
            .iter()
            .take_while(|&&t| now.saturating_sub(t) > window);
        self.reconnects.drain(..old.count());
        // Bound memory even if reconnects come faster than the window drains.
        let most = 4 * self.config.reconnect_budget.max(1) as usize;
        self.reconnects
            .drain(..self.reconnects.len().saturating_sub(most));
    }

    pub fn report(&mut self, now: Millis) -> QualityReport {
        self.expire(now);
        let reconnects = self.reconnects.len() as u32;
        let budget = f64::from(self.config.reconnect_budget.max(1));
        let stability = (1.0 - f64::from(reconnects) / budget).clamp(0.0, 1.0);
        let ack_rate = if self.sent == 0 {
            1.0
        } else {
            self.acked as f64 / self.sent as f64
        };
        let observed = now.saturating_sub(self.started_at);
        let connected = self.connected_total_ms
            + self
                .connected_since
                .map_or(0, |since| now.saturating_sub(since));
        let uptime = if observed == 0 {
            if self.connected_since.is_some() {
                1.0
            } else {
                0.0
            }
        } else {
            (connected as f64 / observed as f64).clamp(0.0, 1.0)
        };
        let timeout = self.config.activity_timeout_ms.max(1) as f64;
        let activity = match self.last_activity {
            None => 0.0,
            Some(t) => {
                let idle = now.saturating_sub(t) as f64;
                if idle <= timeout {
                    1.0
                } else {
                    (1.0 - (idle - timeout) / timeout).clamp(0.0, 1.0)
                }
            }
        };
        let score = WEIGHT_STABILITY * stability
            + WEIGHT_ACK_RATE * ack_rate
            + WEIGHT_UPTIME * uptime
            + WEIGHT_ACTIVITY * activity;
        QualityReport {
            score: score.clamp(0.0, 1.0),
            stability,
            ack_rate,
            uptime,
            activity,
            reconnects_in_window: reconnects,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_link_scores_one() {
        let mut q = QualityTracker::new(QualityConfig::default(), 0);
        q.on_connected(0);
        q.on_sent(10);
        q.on_acked(10);
        q.on_activity(50_000);
        let r = q.report(60_000);
        assert!((r.score - 1.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn reconnects_and_downtime_lower_the_score() {
        let mut q = QualityTracker::new(QualityConfig::default(), 0);
        q.on_connected(0);
        q.on_disconnected(30_000);
        q.on_reconnect(30_000);
        q.on_reconnect(40_000);
        q.on_connected(60_000);
        let r = q.report(60_000);
        assert_eq!(r.reconnects_in_window, 2);
        assert!((r.stability - 0.6).abs() < 1e-9);
        assert!((r.uptime - 0.5).abs() < 1e-9);
        assert!(r.score < 0.85);
        // Eleven minutes later the reconnects have left the window.
        let later = q.report(60_000 + 11 * 60_000);
        assert_eq!(later.reconnects_in_window, 0);
        assert!(later.score > r.score);
    }

    #[test]
    fn idle_link_loses_activity_linearly() {
        let mut q = QualityTracker::new(QualityConfig::default(), 0);
        q.on_connected(0);
        assert_eq!(q.report(120_000).activity, 1.0);
        assert!((q.report(180_000).activity - 0.5).abs() < 1e-9);
        assert_eq!(q.report(240_000).activity, 0.0);
    }
}
