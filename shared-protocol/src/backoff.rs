//! Exponential backoff with jitter and an attempt limit.
//!
//! The nominal delay before attempt `n` (1-based) is
//! `min(max, base * 2^(n-1))`. The actual delay is drawn uniformly from the
//! jitter band `[nominal * (1 - jitter), min(max, nominal * (1 + jitter))]`:
//! it never exceeds `max`, and at the cap the band is not squashed onto `max`
//! (which would make a thousand clients retry in the same millisecond).
//!
//! Randomness comes from a seeded generator owned by the state machine, so a
//! test replays the same delays from the same seed; shells seed it from the
//! platform's random source.

/// Backoff parameters. All durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    pub base_ms: u64,
    pub max_ms: u64,
    /// Attempts allowed before giving up; `None` retries forever.
    pub max_attempts: Option<u32>,
    /// Relative jitter, 0.0..=1.0 (0.3 means +-30%).
    pub jitter: f64,
}

/// Named parameter sets from the requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Stable network: 5 attempts, 1 s base.
    Stable,
    /// Unstable network: 20 attempts, 5 s base.
    Unstable,
    /// Low bandwidth: 10 attempts, 3 s base.
    LowBandwidth,
}

impl BackoffConfig {
    /// Browser dashboard default: 1 s .. 30 s, 10 attempts, +-30% jitter.
    pub const DASHBOARD: BackoffConfig = BackoffConfig {
        base_ms: 1_000,
        max_ms: 30_000,
        max_attempts: Some(10),
        jitter: 0.3,
    };

    /// Hardware link default: 100 ms .. 10 s, 10 retries, +-10% jitter.
    pub const HARDWARE: BackoffConfig = BackoffConfig {
        base_ms: 100,
        max_ms: 10_000,
        max_attempts: Some(10),
        jitter: 0.1,
    };

    /// Centralised manager default: 1 s .. 30 s, 15 attempts, +-10% jitter.
    pub const MANAGER: BackoffConfig = BackoffConfig {
        base_ms: 1_000,
        max_ms: 30_000,
        max_attempts: Some(15),
        jitter: 0.1,
    };

    pub fn profile(profile: Profile) -> BackoffConfig {
        let (attempts, base_ms) = match profile {
            Profile::Stable => (5, 1_000),
            Profile::Unstable => (20, 5_000),
            Profile::LowBandwidth => (10, 3_000),
        };
        BackoffConfig {
            base_ms,
            max_attempts: Some(attempts),
            ..Self::DASHBOARD
        }
    }

    /// The delay before attempt `attempt` (1-based) without jitter.
    pub fn nominal_ms(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(63);
        let doubled = self.base_ms.checked_shl(shift).unwrap_or(u64::MAX);
        let doubled = if doubled >> shift == self.base_ms {
            doubled
        } else {
            u64::MAX
        };
        doubled.min(self.max_ms)
    }

    /// The band a jittered delay before `attempt` is drawn from.
    pub fn band_ms(&self, attempt: u32) -> (u64, u64) {
        let nominal = self.nominal_ms(attempt) as f64;
        let jitter = self.jitter.clamp(0.0, 1.0);
        let lo = (nominal * (1.0 - jitter)).round() as u64;
        let hi = ((nominal * (1.0 + jitter)).round() as u64).min(self.max_ms);
        (lo.min(hi), hi)
    }
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self::DASHBOARD
    }
}

/// What the caller should do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again after this many milliseconds; `attempt` is 1-based.
    After { delay_ms: u64, attempt: u32 },
    /// The attempt limit is reached: stop and report failure.
    GiveUp { attempts: u32 },
}

/// The backoff state machine: one per link.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: fastrand::Rng,
    total_attempts: u64,
}

impl Backoff {
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Backoff {
            config,
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
            total_attempts: 0,
        }
    }

    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// Attempts made since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Attempts made over the lifetime of this state machine.
    pub fn total_attempts(&self) -> u64 {
        self.total_attempts
    }

    pub fn exhausted(&self) -> bool {
        self.config
            .max_attempts
            .is_some_and(|max| self.attempt >= max)
    }

    /// Called after a failed attempt (or a lost connection): how long to wait.
    pub fn next_retry(&mut self) -> Retry {
        if self.exhausted() {
            return Retry::GiveUp {
                attempts: self.attempt,
            };
        }
        self.attempt += 1;
        self.total_attempts += 1;
        let (lo, hi) = self.config.band_ms(self.attempt);
        let delay_ms = if hi > lo { self.rng.u64(lo..=hi) } else { lo };
        Retry::After {
            delay_ms,
            attempt: self.attempt,
        }
    }

    /// A connection succeeded: the next failure starts from the base delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The network came back (browser `online`): retry now, with the attempt
    /// count restarted, whatever the previous delay was.
    pub fn network_up(&mut self) -> Retry {
        self.attempt = 0;
        self.attempt += 1;
        self.total_attempts += 1;
        Retry::After {
            delay_ms: 0,
            attempt: self.attempt,
        }
    }

    /// Replaces the parameters (e.g. a profile change) keeping the count.
    pub fn set_config(&mut self, config: BackoffConfig) {
        self.config = config;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let c = BackoffConfig {
            jitter: 0.0,
            ..BackoffConfig::DASHBOARD
        };
        let nominal: Vec<u64> = (1..=7).map(|n| c.nominal_ms(n)).collect();
        assert_eq!(
            nominal,
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(c.nominal_ms(200), 30_000, "no overflow for huge attempts");
    }

    #[test]
    fn hardware_defaults() {
        let c = BackoffConfig::HARDWARE;
        assert_eq!(c.nominal_ms(1), 100);
        assert_eq!(c.band_ms(1), (90, 110));
        assert_eq!(c.nominal_ms(8), 10_000);
        assert_eq!(c.band_ms(8), (9_000, 10_000));
    }

    #[test]
    fn gives_up_after_max_then_resets() {
        let mut b = Backoff::new(BackoffConfig::HARDWARE, 1);
        for n in 1..=10 {
            assert!(matches!(b.next_retry(), Retry::After { attempt, .. } if attempt == n));
        }
        assert_eq!(b.next_retry(), Retry::GiveUp { attempts: 10 });
        b.reset();
        assert!(matches!(b.next_retry(), Retry::After { attempt: 1, .. }));
    }

    #[test]
    fn network_up_retries_immediately() {
        let mut b = Backoff::new(BackoffConfig::DASHBOARD, 2);
        for _ in 0..5 {
            b.next_retry();
        }
        assert_eq!(
            b.network_up(),
            Retry::After {
                delay_ms: 0,
                attempt: 1
            }
        );
        assert!(
            matches!(b.next_retry(), Retry::After { attempt: 2, delay_ms } if (1_400..=2_600).contains(&delay_ms))
        );
    }

    #[test]
    fn profiles_match_requirements() {
        let s = BackoffConfig::profile(Profile::Stable);
        assert_eq!((s.max_attempts, s.base_ms), (Some(5), 1_000));
        let u = BackoffConfig::profile(Profile::Unstable);
        assert_eq!((u.max_attempts, u.base_ms), (Some(20), 5_000));
        let l = BackoffConfig::profile(Profile::LowBandwidth);
        assert_eq!((l.max_attempts, l.base_ms), (Some(10), 3_000));
    }
}
