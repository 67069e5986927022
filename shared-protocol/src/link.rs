//! The hardware link manager: one state machine per hardware link (the
//! radio's CAT port, the power meter), sans-IO like the rest.
//!
//! ```text
//!  Disconnected --start--> Connecting --opened--> Connected
//!       ^                     |  ^                  |   |
//!       |                 fail/timeout            lost  tx_drop
//!       |                     v  |                  v   v
//!     stop  <--------- Reconnecting <----------- (backoff)  TxDropped --fast path--> Connecting
//!                             |
//!                      max retries -> Failed
//! ```
//!
//! The shell opens the port when asked ([`LinkOutput::Open`]), reports
//! `opened` only once the device has identified itself (a *warm* link: the
//! port alone proves nothing), feeds data activity and failures, and carries
//! out [`LinkOutput::Close`]. Every transition emits a [`LinkEvent`] named as
//! in the requirements (`EVENT_STATE_CHANGE`, `EVENT_RECONNECT_START`, ...).
//!
//! Adaptive backoff: the base delay follows how reconnects have gone lately.
//! After a reconnect that needed many attempts the base doubles (up to a
//! quarter of the maximum), after quick ones it halves back to the configured
//! base, so a flapping USB adapter is not hammered and a healthy one comes
//! back fast.

use std::collections::VecDeque;

use crate::backoff::{Backoff, BackoffConfig, Retry};
use crate::health::{Check, HealthConfig, HealthTracker};
use crate::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Disconnected,
    Connecting,
    Connected,
    Reconnecting,
    Failed,
    TxDropped,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Disconnected => "disconnected",
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Reconnecting => "reconnecting",
            LinkState::Failed => "failed",
            LinkState::TxDropped => "tx_dropped",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    pub backoff: BackoffConfig,
    /// Opening and identifying the device must take less than this.
    pub connect_timeout_ms: u64,
    /// After a TX drop: reconnect at once, with this timeout.
    pub fast_path_timeout_ms: u64,
    /// Connected this long without trouble: `EVENT_CONNECTION_STABLE`.
    pub stable_after_ms: u64,
    /// No data for this long while connected counts as a failed health check.
    pub data_timeout_ms: u64,
    pub health: HealthConfig,
    /// Events kept for the status view.
    pub history: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            backoff: BackoffConfig::HARDWARE,
            connect_timeout_ms: 3_000,
            fast_path_timeout_ms: 500,
            stable_after_ms: 30_000,
            data_timeout_ms: 5_000,
            health: HealthConfig::default(),
            history: 50,
        }
    }
}

/// The requirements' event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEventType {
    StateChange,
    ReconnectStart,
    ReconnectOk,
    ReconnectFailed,
    TxDropDetected,
    FastPathActive,
    ConnectionStable,
    MaxRetriesExceeded,
    /// Recorded through [`LinkManager::note`]: the power monitor's alarms.
    PowerWarning,
    PowerCritical,
}

impl LinkEventType {
    /// Every type, for registering per-type metrics before the first event.
    pub const ALL: [LinkEventType; 10] = [
        LinkEventType::StateChange,
        LinkEventType::ReconnectStart,
        LinkEventType::ReconnectOk,
        LinkEventType::ReconnectFailed,
        LinkEventType::TxDropDetected,
        LinkEventType::FastPathActive,
        LinkEventType::ConnectionStable,
        LinkEventType::MaxRetriesExceeded,
        LinkEventType::PowerWarning,
        LinkEventType::PowerCritical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkEventType::StateChange => "EVENT_STATE_CHANGE",
            LinkEventType::ReconnectStart => "EVENT_RECONNECT_START",
            LinkEventType::ReconnectOk => "EVENT_RECONNECT_OK",
            LinkEventType::ReconnectFailed => "EVENT_RECONNECT_FAILED",
            LinkEventType::TxDropDetected => "EVENT_TX_DROP_DETECTED",
            LinkEventType::FastPathActive => "EVENT_FAST_PATH_ACTIVE",
            LinkEventType::ConnectionStable => "EVENT_CONNECTION_STABLE",
            LinkEventType::MaxRetriesExceeded => "EVENT_MAX_RETRIES_EXCEEDED",
            LinkEventType::PowerWarning => "EVENT_POWER_WARNING",
            LinkEventType::PowerCritical => "EVENT_POWER_CRITICAL",
        }
    }
}

/// A structured event: type, time, state, reconnect count and context.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkEvent {
    pub kind: LinkEventType,
    pub at: Millis,
    pub state: LinkState,
    pub reconnects: u64,
    pub context: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LinkOutput {
    /// Open the port and identify the device; report `opened` or `failed`.
    Open {
        attempt: u32,
        timeout_ms: u64,
    },
    /// Close the port.
    Close,
    Event(LinkEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    None,
    RetryAt(Millis),
    ConnectDeadline(Millis),
}

pub struct LinkManager {
    config: LinkConfig,
    state: LinkState,
    backoff: Backoff,
    timer: Timer,
    fast_path: bool,
    reconnects: u64,
    ever_connected: bool,
    attempts_this_outage: u32,
    connected_at: Option<Millis>,
    stable_reported: bool,
    last_data: Option<Millis>,
    next_health_at: Option<Millis>,
    health: HealthTracker,
    outputs: VecDeque<LinkOutput>,
    history: VecDeque<LinkEvent>,
    base_ms: u64,
}

impl LinkManager {
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        LinkManager {
            backoff: Backoff::new(config.backoff, seed),
            health: HealthTracker::new(config.health),
            base_ms: config.backoff.base_ms,
            config,
            state: LinkState::Disconnected,
            timer: Timer::None,
            fast_path: false,
            reconnects: 0,
            ever_connected: false,
            attempts_this_outage: 0,
            connected_at: None,
            stable_reported: false,
            last_data: None,
            next_health_at: None,
            outputs: VecDeque::new(),
            history: VecDeque::new(),
        }
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// 0..100. A failed link scores 0 whatever its last checks said: it has
    /// given up, and a dashboard or an alert must not read it as healthy.
    pub fn health_score(&self) -> u8 {
        if self.state == LinkState::Failed {
            0
        } else {
            self.health.score()
        }
    }

    pub fn degraded(&self) -> bool {
        self.health.degraded()
    }

    /// The base delay the adaptive backoff uses now.
    pub fn backoff_base_ms(&self) -> u64 {
        self.base_ms
    }

    pub fn history(&self) -> impl Iterator<Item = &LinkEvent> {
        self.history.iter()
    }

    pub fn last_data_at(&self) -> Option<Millis> {
        self.last_data
    }

    pub fn poll_output(&mut self) -> Option<LinkOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let timer = match self.timer {
            Timer::None => None,
            Timer::RetryAt(at) | Timer::ConnectDeadline(at) => Some(at),
        };
        let health = if self.state == LinkState::Connected {
            self.next_health_at
        } else {
            None
        };
        let stable = match (self.connected_at, self.stable_reported) {
            (Some(t), false) => Some(t + self.config.stable_after_ms),
            _ => None,
        };
        [timer, health, stable].into_iter().flatten().min()
    }

    /// Start (or restart after `Failed`) connecting.
    pub fn start(&mut self, now: Millis) {
        if matches!(self.state, LinkState::Disconnected | LinkState::Failed) {
            self.backoff.reset();
            self.attempts_this_outage = 0;
            self.open(now, LinkState::Connecting, self.config.connect_timeout_ms);
        }
    }

    /// Stop cleanly: close, no more attempts.
    pub fn stop(&mut self, now: Millis) {
        if self.state != LinkState::Disconnected {
            self.outputs.push_back(LinkOutput::Close);
        }
        self.timer = Timer::None;
        self.connected_at = None;
        self.set_state(LinkState::Disconnected, now, "stopped");
    }

    /// The device answered its identification: the link is warm.
    pub fn opened(&mut self, now: Millis) {
        if !matches!(self.state, LinkState::Connecting | LinkState::Reconnecting) {
            return;
        }
        let was_reconnect = self.ever_connected;
        self.ever_connected = true;
        self.timer = Timer::None;
        self.connected_at = Some(now);
        self.stable_reported = false;
        self.last_data = Some(now);
        self.next_health_at = Some(now + self.config.health.check_interval_ms);
        self.health.record(Check::Ok { latency_ms: 0 }, now);
        self.adapt();
        self.backoff.reset();
        self.fast_path = false;
        self.set_state(LinkState::Connected, now, "device identified");
        if was_reconnect {
            self.reconnects += 1;
            let attempts = self.attempts_this_outage;
            self.emit(
                LinkEventType::ReconnectOk,
                now,
                format!("after {attempts} attempts"),
            );
        }
        self.attempts_this_outage = 0;
    }

    /// Opening or identifying failed.
    pub fn failed(&mut self, now: Millis, reason: &str) {
        if !matches!(self.state, LinkState::Connecting | LinkState::Reconnecting) {
            return;
        }
        self.outputs.push_back(LinkOutput::Close);
        self.emit(LinkEventType::ReconnectFailed, now, reason.to_string());
        self.schedule_retry(now, reason);
    }

    /// The link was lost while connected (EOF, EIO, unplugged).
    pub fn lost(&mut self, now: Millis, reason: &str) {
        if self.state != LinkState::Connected {
            return;
        }
        self.outputs.push_back(LinkOutput::Close);
        self.connected_at = None;
        self.health.record(Check::Failed, now);
        self.schedule_retry(now, reason);
    }

    /// Bytes arrived from the device (`update_last_data_time`).
    pub fn data(&mut self, now: Millis) {
        self.last_data = Some(self.last_data.map_or(now, |t| t.max(now)));
    }

    /// A transmission dropped mid-frame (`mark_tx_drop`): skip the backoff
    /// and reconnect at once, with the short fast-path timeout.
    pub fn tx_drop(&mut self, now: Millis, context: &str) {
        if !matches!(
            self.state,
            LinkState::Connected | LinkState::Connecting | LinkState::Reconnecting
        ) {
            return;
        }
        self.emit(LinkEventType::TxDropDetected, now, context.to_string());
        self.outputs.push_back(LinkOutput::Close);
        self.connected_at = None;
        self.health.record(Check::Failed, now);
        self.set_state(LinkState::TxDropped, now, context);
        self.fast_path = true;
        self.emit(
            LinkEventType::FastPathActive,
            now,
            format!(
                "reconnecting now, {} ms timeout",
                self.config.fast_path_timeout_ms
            ),
        );
        self.attempts_this_outage = 0;
        self.open(
            now,
            LinkState::Reconnecting,
            self.config.fast_path_timeout_ms,
        );
    }

    /// Records an observation about the device that is not a change of the
    /// link's state (a power alarm), with the same shape and history as the
    /// link's own events.
    pub fn note(&mut self, kind: LinkEventType, now: Millis, context: String) {
        self.emit(kind, now, context);
    }

    /// The operator asked for a reconnect.
    pub fn force_reconnect(&mut self, now: Millis) {
        if self.state != LinkState::Disconnected {
            self.outputs.push_back(LinkOutput::Close);
        }
        self.connected_at = None;
        self.backoff.reset();
        self.attempts_this_outage = 0;
        self.open(now, LinkState::Reconnecting, self.config.connect_timeout_ms);
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        match self.timer {
            Timer::RetryAt(at) if now >= at => {
                self.open(now, LinkState::Reconnecting, self.config.connect_timeout_ms);
            }
            Timer::ConnectDeadline(at) if now >= at => {
                let limit = if self.fast_path {
                    self.config.fast_path_timeout_ms
                } else {
                    self.config.connect_timeout_ms
                };
                self.failed(now, &format!("no answer within {limit} ms"));
            }
            _ => {}
        }
        if self.state == LinkState::Connected {
            if let Some(at) = self.next_health_at.filter(|at| now >= *at) {
                let silent = now.saturating_sub(self.last_data.unwrap_or(at));
                let check = if silent > self.config.data_timeout_ms {
                    Check::Failed
                } else {
                    Check::Ok { latency_ms: 0 }
                };
                self.health.record(check, now);
                self.next_health_at = Some(now + self.config.health.check_interval_ms);
            }
            if let Some(t) = self
                .connected_at
                .filter(|t| !self.stable_reported && now >= t + self.config.stable_after_ms)
            {
                self.stable_reported = true;
                self.emit(
                    LinkEventType::ConnectionStable,
                    now,
                    format!("connected for {} ms", now - t),
                );
            }
        }
    }

    fn open(&mut self, now: Millis, state: LinkState, timeout_ms: u64) {
        self.attempts_this_outage += 1;
        let attempt = self.attempts_this_outage;
        self.timer = Timer::ConnectDeadline(now + timeout_ms);
        self.set_state(state, now, &format!("attempt {attempt}"));
        if state == LinkState::Reconnecting {
            self.emit(
                LinkEventType::ReconnectStart,
                now,
                format!("attempt {attempt}, timeout {timeout_ms} ms"),
            );
        }
        self.outputs.push_back(LinkOutput::Open {
            attempt,
            timeout_ms,
        });
    }

    fn schedule_retry(&mut self, now: Millis, reason: &str) {
        match self.backoff.next_retry() {
            Retry::After { delay_ms, attempt } => {
                self.timer = Timer::RetryAt(now + delay_ms);
                self.set_state(
                    LinkState::Reconnecting,
                    now,
                    &format!("retry {attempt} in {delay_ms} ms: {reason}"),
                );
            }
            Retry::GiveUp { attempts } => {
                self.timer = Timer::None;
                self.set_state(LinkState::Failed, now, reason);
                self.emit(
                    LinkEventType::MaxRetriesExceeded,
                    now,
                    format!("gave up after {attempts} retries: {reason}"),
                );
            }
        }
    }

    /// Adaptive backoff: outages that needed many attempts double the base
    /// (bounded by max / 4); quick recoveries bring it back to the configured base.
    fn adapt(&mut self) {
        let configured = self.config.backoff.base_ms;
        self.base_ms = if self.attempts_this_outage > 3 {
            (self.base_ms * 2).min((self.config.backoff.max_ms / 4).max(configured))
        } else {
            (self.base_ms / 2).max(configured)
        };
        self.backoff.set_config(BackoffConfig {
            base_ms: self.base_ms,
            ..self.config.backoff
        });
    }

    fn set_state(&mut self, state: LinkState, now: Millis, context: &str) {
        if self.state != state {
            let from = self.state;
            self.state = state;
            self.emit(
                LinkEventType::StateChange,
                now,
                format!("{} -> {}: {context}", from.as_str(), state.as_str()),
            );
        }
    }

    fn emit(&mut self, kind: LinkEventType, at: Millis, context: String) {
        let event = LinkEvent {
            kind,
            at,
            state: self.state,
            reconnects: self.reconnects,
            context,
        };
        if self.history.len() == self.config.history.max(1) {
            self.history.pop_front();
        }
        self.history.push_back(event.clone());
        self.outputs.push_back(LinkOutput::Event(event));
    }
}
