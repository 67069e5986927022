//! The RF power monitor: turns meter readings into warnings an operator can
//! act on. While transmitting, a reading below the zero-power threshold is
//! suspicious (warning after 1), and several in a row mean the transmission
//! has dropped (critical after 3); a good reading clears the alarm. Readings
//! while receiving are recorded but never alarm. History is bounded; the
//! trend (watts per second over the history) warns of a failing amplifier
//! before it reaches zero.

use std::collections::VecDeque;

use crate::Millis;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerConfig {
    /// How often the shell polls the meter.
    pub poll_ms: u64,
    pub zero_threshold_w: f64,
    pub warn_after: u32,
    pub critical_after: u32,
    pub history: usize,
}

impl Default for PowerConfig {
    fn default() -> Self {
        PowerConfig {
            poll_ms: 1_000,
            zero_threshold_w: 0.1,
            warn_after: 1,
            critical_after: 3,
            history: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLevel {
    Normal,
    /// `EVENT_POWER_WARNING`
    Warning,
    /// `EVENT_POWER_CRITICAL`
    Critical,
}

impl PowerLevel {
    pub fn event_name(self) -> Option<&'static str> {
        match self {
            PowerLevel::Normal => None,
            PowerLevel::Warning => Some("EVENT_POWER_WARNING"),
            PowerLevel::Critical => Some("EVENT_POWER_CRITICAL"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub at: Millis,
    pub watts: f64,
    pub transmitting: bool,
}

/// A change of alarm level, for the shell to log and publish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerAlert {
    pub from: PowerLevel,
    pub to: PowerLevel,
    pub zero_readings: u32,
    pub watts: f64,
}

#[derive(Debug, Clone)]
pub struct PowerMonitor {
    config: PowerConfig,
    level: PowerLevel,
    zeros: u32,
    history: VecDeque<Reading>,
}

impl PowerMonitor {
    pub fn new(config: PowerConfig) -> Self {
        PowerMonitor {
            config,
            level: PowerLevel::Normal,
            zeros: 0,
            history: VecDeque::new(),
        }
    }

    pub fn level(&self) -> PowerLevel {
        self.level
    }

    pub fn history(&self) -> impl Iterator<Item = &Reading> {
        self.history.iter()
    }

    /// Records a reading; returns an alert when the level changes.
    pub fn reading(&mut self, reading: Reading) -> Option<PowerAlert> {
        if self.history.len() == self.config.history.max(1) {
            self.history.pop_front();
        }
        self.history.push_back(reading);
        // A reading that is not a number counts as no power: a meter
        // returning garbage mid-transmission deserves the same suspicion.
        let zero = reading.watts.is_nan() || reading.watts < self.config.zero_threshold_w;
        self.zeros = if reading.transmitting && zero {
            self.zeros + 1
        } else {
            0
        };
        let level = if self.zeros >= self.config.critical_after {
            PowerLevel::Critical
        } else if self.zeros >= self.config.warn_after {
            PowerLevel::Warning
        } else {
            PowerLevel::Normal
        };
        if level == self.level {
            return None;
        }
        let alert = PowerAlert {
            from: self.level,
            to: level,
            zero_readings: self.zeros,
            watts: reading.watts,
        };
        self.level = level;
        Some(alert)
    }

    /// Least-squares slope of the history in watts per second, while
    /// transmitting; `None` with fewer than 3 such readings.
    pub fn trend_w_per_s(&self) -> Option<f64> {
        let tx: Vec<&Reading> = self
            .history
            .iter()
            .filter(|r| r.transmitting && r.watts.is_finite())
            .collect();
        if tx.len() < 3 {
            return None;
        }
        let n = tx.len() as f64;
        let t0 = tx[0].at;
        let xs: Vec<f64> = tx.iter().map(|r| (r.at - t0) as f64 / 1_000.0).collect();
        let (mx, my) = (
            xs.iter().sum::<f64>() / n,
            tx.iter().map(|r| r.watts).sum::<f64>() / n,
        );
        let cov: f64 = xs
            .iter()
            .zip(&tx)
            .map(|(x, r)| (x - mx) * (r.watts - my))
            .sum();
        let var: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        (var > 0.0).then(|| cov / var)
    }

    /// Seconds until the power reaches the zero threshold at the current
    /// trend, if it is falling: an early warning of a failing amplifier.
    pub fn seconds_to_zero(&self) -> Option<f64> {
        let slope = self.trend_w_per_s()?;
        let last = self.history.iter().rev().find(|r| r.transmitting)?;
        (slope < 0.0 && last.watts > self.config.zero_threshold_w)
            .then(|| (last.watts - self.config.zero_threshold_w) / -slope)
    }
}
