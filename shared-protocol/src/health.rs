//! Health score 0..=100 per link (hardware links, dashboard sessions) and
//! overall, with the colour bands operators read at a glance.
//!
//! ```text
//! success = ok checks / checks in the window (the last `window` checks)
//! latency = 1 below latency_good_ms, falling linearly to 0 at latency_bad_ms
//! streak  = consecutive failures (3 make the link unhealthy)
//! score   = 100 * (0.7 success + 0.3 latency) - 15 * streak, clamped to 0..=100
//! ```
//!
//! Bands: green >= 80, orange 50..=79, red < 50; *degraded* below 70.

use std::collections::VecDeque;

use crate::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// How often checks run (the shell's timer); 30 s by default.
    pub check_interval_ms: u64,
    /// How many recent checks the score looks at.
    pub window: usize,
    pub latency_good_ms: u64,
    pub latency_bad_ms: u64,
    /// Consecutive failures that make a link unhealthy.
    pub unhealthy_after: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            check_interval_ms: 30_000,
            window: 20,
            latency_good_ms: 200,
            latency_bad_ms: 3_000,
            unhealthy_after: 3,
        }
    }
}

/// Scores below this are *degraded* (preventive cooling starts there).
pub const DEGRADED_BELOW: u8 = 70;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    Red,
    Orange,
    Green,
}

impl Band {
    pub fn of(score: u8) -> Band {
        match score {
            80.. => Band::Green,
            50..=79 => Band::Orange,
            _ => Band::Red,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Band::Green => "green",
            Band::Orange => "orange",
            Band::Red => "red",
        }
    }
}

/// One health check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Ok { latency_ms: u64 },
    Failed,
}

#[derive(Debug, Clone)]
pub struct HealthTracker {
    config: HealthConfig,
    checks: VecDeque<Check>,
    consecutive_failures: u32,
    last_check_at: Option<Millis>,
    total_ok: u64,
    total_failed: u64,
}

impl HealthTracker {
    pub fn new(config: HealthConfig) -> Self {
        HealthTracker {
            config,
            checks: VecDeque::with_capacity(config.window),
            consecutive_failures: 0,
            last_check_at: None,
            total_ok: 0,
            total_failed: 0,
        }
    }

    pub fn record(&mut self, check: Check, now: Millis) {
        if self.checks.len() == self.config.window.max(1) {
            self.checks.pop_front();
        }
        self.checks.push_back(check);
        self.last_check_at = Some(now);
        match check {
            Check::Ok { .. } => {
                self.consecutive_failures = 0;
                self.total_ok += 1;
            }
            Check::Failed => {
                self.consecutive_failures += 1;
                self.total_failed += 1;
            }
        }
    }

    /// Whether a check is due (the shell may also run one on demand).
    pub fn due(&self, now: Millis) -> bool {
        self.last_check_at
            .is_none_or(|t| now.saturating_sub(t) >= self.config.check_interval_ms)
    }

    pub fn score(&self) -> u8 {
        if self.checks.is_empty() {
            return 100;
        }
        let n = self.checks.len() as f64;
        let ok: Vec<u64> = self
            .checks
            .iter()
            .filter_map(|c| match c {
                Check::Ok { latency_ms } => Some(*latency_ms),
                Check::Failed => None,
            })
            .collect();
        let success = ok.len() as f64 / n;
        let latency = if ok.is_empty() {
            0.0
        } else {
            let mean = ok.iter().sum::<u64>() as f64 / ok.len() as f64;
            let (good, bad) = (
                self.config.latency_good_ms as f64,
                self.config
                    .latency_bad_ms
                    .max(self.config.latency_good_ms + 1) as f64,
            );
            (1.0 - (mean - good) / (bad - good)).clamp(0.0, 1.0)
        };
        let raw =
            100.0 * (0.7 * success + 0.3 * latency) - 15.0 * f64::from(self.consecutive_failures);
        raw.clamp(0.0, 100.0).round() as u8
    }

    pub fn band(&self) -> Band {
        Band::of(self.score())
    }

    pub fn degraded(&self) -> bool {
        self.score() < DEGRADED_BELOW
    }

    pub fn unhealthy(&self) -> bool {
        self.consecutive_failures >= self.config.unhealthy_after
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Lifetime counts of (ok, failed) checks, for metrics.
    pub fn totals(&self) -> (u64, u64) {
        (self.total_ok, self.total_failed)
    }
}

/// Overall health of several links: the mean, but never above the worst
/// link's band ceiling plus 10, so one red link cannot hide behind green ones.
pub fn overall(scores: &[u8]) -> u8 {
    if scores.is_empty() {
        return 100;
    }
    let mean = scores.iter().map(|s| u32::from(*s)).sum::<u32>() / scores.len() as u32;
    let worst = scores.iter().copied().min().unwrap_or(100);
    let ceiling = u32::from(worst) + 10;
    mean.min(ceiling).min(100) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands() {
        assert_eq!(Band::of(100), Band::Green);
        assert_eq!(Band::of(80), Band::Green);
        assert_eq!(Band::of(79), Band::Orange);
        assert_eq!(Band::of(50), Band::Orange);
        assert_eq!(Band::of(49), Band::Red);
        assert_eq!(Band::of(0), Band::Red);
    }

    #[test]
    fn failures_degrade_then_make_unhealthy() {
        let mut h = HealthTracker::new(HealthConfig::default());
        for t in 0..10 {
            h.record(Check::Ok { latency_ms: 50 }, t);
        }
        assert_eq!(h.score(), 100);
        h.record(Check::Failed, 10);
        assert!(!h.unhealthy());
        h.record(Check::Failed, 11);
        h.record(Check::Failed, 12);
        assert!(h.unhealthy());
        assert!(h.degraded(), "score {}", h.score());
        h.record(Check::Ok { latency_ms: 50 }, 13);
        assert!(!h.unhealthy());
    }

    #[test]
    fn overall_is_pulled_down_by_the_worst_link() {
        assert_eq!(overall(&[100, 100, 20]), 30);
        assert_eq!(overall(&[90, 80]), 85);
        assert_eq!(overall(&[]), 100);
    }
}
