//! Power readings, from whichever meter supplies them, into
//! `shared_protocol::power::PowerMonitor`: every reading goes to the monitor
//! and is mirrored in `/stats` and `/metrics`; it is logged as a volatile
//! `meter.power` event (the last one is in every snapshot) when it is news
//! or at a slow heartbeat (see [`super::gate`]); a change of alarm level
//! comes back to the caller, which notes it on its link (and, when critical
//! while on the air, declares a TX drop).

use std::sync::{Arc, Mutex};

use rmpv::Value;
use serde::Serialize;
use shared_protocol::link::{LinkEventType, LinkManager};
use shared_protocol::power::{PowerAlert, PowerConfig, PowerLevel, PowerMonitor, Reading};
use shared_protocol::Millis;

use super::gate::{Gate, Shown};
use super::logq::LogQueue;
use crate::eventlog::NewEvent;

/// What `/stats` shows of the power meter.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PowerStatus {
    /// Where readings come from: "radio" or "lp100".
    pub source: String,
    pub watts: Option<f64>,
    pub swr: Option<f64>,
    pub transmitting: bool,
    pub level: &'static str,
    /// The newest readings, oldest first (bounded by the monitor's history).
    pub history: Vec<f64>,
    pub trend_w_per_s: Option<f64>,
    /// At the current trend, when the output reaches zero (a failing amplifier).
    pub seconds_to_zero: Option<f64>,
}

pub type SharedPower = Arc<Mutex<PowerStatus>>;

pub fn level_name(level: PowerLevel) -> &'static str {
    match level {
        PowerLevel::Normal => "normal",
        PowerLevel::Warning => "warning",
        PowerLevel::Critical => "critical",
    }
}

/// The power monitor's settings and how often an unchanged reading is
/// logged (`power_heartbeat_ms`).
#[derive(Debug, Clone, Copy)]
pub struct PowerSettings {
    pub monitor: PowerConfig,
    pub heartbeat_ms: u64,
}

pub struct PowerWatch {
    monitor: PowerMonitor,
    threshold_w: f64,
    log: LogQueue,
    gate: Gate,
    status: SharedPower,
}

impl PowerWatch {
    pub fn new(source: &str, settings: PowerSettings, log: LogQueue) -> Self {
        let config = settings.monitor;
        crate::telemetry::register_power();
        let status = Arc::new(Mutex::new(PowerStatus {
            source: source.to_string(),
            level: "normal",
            ..Default::default()
        }));
        PowerWatch {
            monitor: PowerMonitor::new(config),
            threshold_w: config.zero_threshold_w,
            log,
            gate: Gate::new(settings.heartbeat_ms),
            status,
        }
    }

    pub fn status(&self) -> SharedPower {
        self.status.clone()
    }

    /// Records one reading (`watts` NaN: the meter answered garbage). A rise
    /// to warning or critical is noted on `link`, the link whose meter read
    /// it; returns the TX-drop context when the power went critical.
    pub fn reading(
        &mut self,
        link: &mut LinkManager,
        now: Millis,
        watts: f64,
        swr: Option<f64>,
        transmitting: bool,
    ) -> Option<String> {
        let alert = self.monitor.reading(Reading {
            at: now,
            watts,
            transmitting,
        });
        let level = level_name(self.monitor.level());
        if let Ok(mut s) = self.status.lock() {
            s.watts = watts.is_finite().then_some(watts);
            s.swr = swr;
            s.transmitting = transmitting;
            s.level = level;
            s.history = self.monitor.history().map(|r| r.watts).collect();
            s.trend_w_per_s = self.monitor.trend_w_per_s();
            s.seconds_to_zero = self.monitor.seconds_to_zero();
        }
        if watts.is_finite() {
            metrics::gauge!("power_forward_watts").set(watts);
            if let Some(swr) = swr {
                metrics::gauge!("power_swr").set(swr);
            }
            let shown = Shown {
                watts,
                swr,
                transmitting,
                level,
                falling: self.monitor.seconds_to_zero().is_some(),
            };
            if self.gate.admit(now, shown) {
                self.log_reading(shown);
            }
        }
        metrics::gauge!("power_alarm_level").set(match self.monitor.level() {
            PowerLevel::Normal => 0.0,
            PowerLevel::Warning => 1.0,
            PowerLevel::Critical => 2.0,
        });
        let (kind, context) = alert_event(&alert?, self.threshold_w)?;
        link.note(kind, now, context.clone());
        (kind == LinkEventType::PowerCritical).then(|| format!("power collapsed: {context}"))
    }

    /// Logs one reading as `meter.power`.
    fn log_reading(&self, shown: Shown) {
        let Shown {
            watts,
            swr,
            transmitting,
            level,
            ..
        } = shown;
        let mut payload = vec![
            ("watts".into(), ((watts * 100.0).round() / 100.0).into()),
            ("transmitting".into(), transmitting.into()),
            ("level".into(), level.into()),
        ];
        if let Some(swr) = swr {
            payload.push(("swr".into(), ((swr * 100.0).round() / 100.0).into()));
        }
        if let Some(t) = self.monitor.seconds_to_zero() {
            payload.push(("seconds_to_zero".into(), t.round().into()));
        }
        self.log
            .push(NewEvent::volatile("meter.power", Value::Map(payload)));
    }
}

/// The link event for an alarm, if it raises one (clearing does not).
fn alert_event(alert: &PowerAlert, threshold_w: f64) -> Option<(LinkEventType, String)> {
    let kind = match alert.to {
        PowerLevel::Normal => return None,
        PowerLevel::Warning => LinkEventType::PowerWarning,
        PowerLevel::Critical => LinkEventType::PowerCritical,
    };
    let context = format!(
        "{} reading{} below {threshold_w} W while transmitting (last {:.1} W)",
        alert.zero_readings,
        if alert.zero_readings == 1 {
            ""
        } else {
            "s in a row"
        },
        alert.watts
    );
    Some((kind, context))
}
