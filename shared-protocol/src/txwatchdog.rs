//! The TX watchdog: a dead-man switch and a time-out timer for the
//! transmitter.
//!
//! A client that keys the transmitter (`radio.ptt {on: true}`) must keep
//! saying so: the dashboard repeats the command every second while the button
//! is held. The watchdog unkeys when
//! - the keying client stops refreshing for `keepalive_ms` (3 s by default:
//!   a frozen tab, a dead network, a laptop lid closed mid-over),
//! - the keying client's session ends, or
//! - the transmission has lasted `max_tx_ms` (3 minutes by default): the
//!   **time-out timer** (TOT). Like a radio's own TOT, it then *locks the
//!   keeper out*: its further PTT-on commands are refused
//!   ([`TxWatchdog::admit_ptt_on`]) until it releases, that is until it
//!   sends PTT-off or stops repeating PTT-on for `keepalive_ms` (a released
//!   button stops the repeats). A held control that keeps repeating PTT-on
//!   therefore gets exactly one unkey, not a blip every `max_tx_ms`.
//!
//! so a lost "PTT off" can never leave a transmitter keyed.

use crate::Millis;

/// Locked-out keepers remembered at most (the oldest is forgotten first;
/// each also ends by itself after `keepalive_ms` of silence).
const MAX_LOCKOUTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxWatchdogConfig {
    pub keepalive_ms: u64,
    pub max_tx_ms: u64,
}

impl Default for TxWatchdogConfig {
    fn default() -> Self {
        TxWatchdogConfig {
            keepalive_ms: 3_000,
            max_tx_ms: 180_000,
        }
    }
}

/// Why the watchdog unkeyed the transmitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnkeyReason {
    /// No refresh from the keying client within `keepalive_ms`.
    Silent,
    /// The keying client's session ended.
    SessionEnded,
    /// The transmission reached `max_tx_ms` (the time-out timer).
    MaxTxTime,
    /// The proxy is stopping.
    ShuttingDown,
}

impl UnkeyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnkeyReason::Silent => "silent",
            UnkeyReason::SessionEnded => "session_ended",
            UnkeyReason::MaxTxTime => "max_tx_time",
            UnkeyReason::ShuttingDown => "shutting_down",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Keyed {
    client_id: String,
    since: Millis,
    refreshed: Millis,
}

/// What the watchdog decided: unkey, on behalf of `client_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unkey {
    pub client_id: String,
    pub reason: UnkeyReason,
    pub transmitted_ms: u64,
}

#[derive(Debug, Clone, Default)]
pub struct TxWatchdog {
    config: TxWatchdogConfig,
    keyed: Option<Keyed>,
    /// Keepers the time-out timer locked out, with their latest PTT-on.
    lockouts: Vec<(String, Millis)>,
}

impl TxWatchdog {
    pub fn new(config: TxWatchdogConfig) -> Self {
        TxWatchdog {
            config,
            keyed: None,
            lockouts: Vec::new(),
        }
    }

    pub fn config(&self) -> TxWatchdogConfig {
        self.config
    }

    pub fn keyed_by(&self) -> Option<&str> {
        self.keyed.as_ref().map(|k| k.client_id.as_str())
    }

    /// Whether `client_id` is locked out by the time-out timer.
    pub fn is_locked_out(&self, client_id: &str, now: Millis) -> bool {
        self.lockouts
            .iter()
            .any(|(c, last)| c == client_id && now < last + self.config.keepalive_ms)
    }

    /// Asked before a PTT-on from `client_id` goes anywhere: `false` while
    /// the time-out timer has it locked out. A refused attempt counts as
    /// still holding the key, so the lock-out lasts until it lets go.
    pub fn admit_ptt_on(&mut self, client_id: &str, now: Millis) -> bool {
        self.forget_released(now);
        match self.lockouts.iter_mut().find(|(c, _)| c == client_id) {
            Some((_, last)) => {
                *last = now;
                false
            }
            None => true,
        }
    }

    /// A PTT-on command from `client_id` was applied (a first key or a
    /// refresh). Returns an unkey when that client is locked out (its
    /// command was admitted before the time-out fired and applied after).
    pub fn on_ptt_on(&mut self, client_id: &str, now: Millis) -> Option<Unkey> {
        if self.is_locked_out(client_id, now) {
            return Some(Unkey {
                client_id: client_id.to_string(),
                reason: UnkeyReason::MaxTxTime,
                transmitted_ms: 0,
            });
        }
        match &mut self.keyed {
            Some(k) if k.client_id == client_id => k.refreshed = now,
            // Another client took over the transmitter: it is now the one to watch.
            _ => {
                self.keyed = Some(Keyed {
                    client_id: client_id.to_string(),
                    since: now,
                    refreshed: now,
                })
            }
        }
        None
    }

    /// A PTT-off command from `client_id` was applied: nothing left to
    /// watch (whoever sent it), and `client_id` has released.
    pub fn on_ptt_off(&mut self, client_id: &str) {
        self.keyed = None;
        self.lockouts.retain(|(c, _)| c != client_id);
    }

    /// The transmitter was unkeyed by other means (the radio bridge's own
    /// backstop, a TX drop): nothing left to watch; lock-outs stay.
    pub fn on_unkeyed(&mut self) {
        self.keyed = None;
    }

    /// A client's session ended; unkeys if it was the one transmitting.
    pub fn on_session_ended(&mut self, client_id: &str, now: Millis) -> Option<Unkey> {
        if self.keyed_by() == Some(client_id) {
            return self.unkey(UnkeyReason::SessionEnded, now);
        }
        None
    }

    /// The proxy is stopping: unkeys whatever is keyed.
    pub fn on_shutdown(&mut self, now: Millis) -> Option<Unkey> {
        self.unkey(UnkeyReason::ShuttingDown, now)
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.keyed
            .as_ref()
            .map(|k| (k.refreshed + self.config.keepalive_ms).min(k.since + self.config.max_tx_ms))
    }

    pub fn handle_timeout(&mut self, now: Millis) -> Option<Unkey> {
        let k = self.keyed.as_ref()?;
        if now >= k.since + self.config.max_tx_ms {
            let client = k.client_id.clone();
            self.forget_released(now);
            self.lockouts.retain(|(c, _)| *c != client);
            crate::push_bounded(&mut self.lockouts, MAX_LOCKOUTS, (client, now));
            return self.unkey(UnkeyReason::MaxTxTime, now);
        }
        if now >= k.refreshed + self.config.keepalive_ms {
            return self.unkey(UnkeyReason::Silent, now);
        }
        None
    }

    /// Lock-outs whose keeper has been silent for `keepalive_ms` are over.
    fn forget_released(&mut self, now: Millis) {
        let keepalive = self.config.keepalive_ms;
        self.lockouts.retain(|(_, last)| now < last + keepalive);
    }

    fn unkey(&mut self, reason: UnkeyReason, now: Millis) -> Option<Unkey> {
        let k = self.keyed.take()?;
        Some(Unkey {
            client_id: k.client_id,
            reason,
            transmitted_ms: now.saturating_sub(k.since),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dog() -> TxWatchdog {
        TxWatchdog::new(TxWatchdogConfig::default())
    }

    #[test]
    fn refreshed_transmissions_continue_until_the_max() {
        let mut w = dog();
        w.on_ptt_on("a", 0);
        let mut t = 0;
        while t < 179_000 {
            t += 1_000;
            w.on_ptt_on("a", t);
            assert_eq!(w.handle_timeout(t), None, "refreshed at {t}");
        }
        let unkey = w.handle_timeout(180_000).unwrap();
        assert_eq!(unkey.reason, UnkeyReason::MaxTxTime);
        assert_eq!(unkey.transmitted_ms, 180_000);
        assert_eq!(w.keyed_by(), None);
    }

    #[test]
    fn a_silent_client_is_unkeyed() {
        let mut w = dog();
        w.on_ptt_on("a", 0);
        w.on_ptt_on("a", 1_000);
        assert_eq!(w.poll_timeout(), Some(4_000));
        assert_eq!(w.handle_timeout(3_999), None);
        let unkey = w.handle_timeout(4_000).unwrap();
        assert_eq!(
            (unkey.client_id.as_str(), unkey.reason),
            ("a", UnkeyReason::Silent)
        );
        assert_eq!(w.poll_timeout(), None);
    }

    #[test]
    fn only_the_keying_session_ending_unkeys() {
        let mut w = dog();
        w.on_ptt_on("a", 0);
        assert_eq!(w.on_session_ended("b", 10), None);
        assert_eq!(
            w.on_session_ended("a", 10).map(|u| u.reason),
            Some(UnkeyReason::SessionEnded)
        );
    }

    #[test]
    fn ptt_off_disarms_and_a_new_keyer_is_watched() {
        let mut w = dog();
        w.on_ptt_on("a", 0);
        w.on_ptt_off("a");
        assert_eq!(w.handle_timeout(10_000), None);
        w.on_ptt_on("a", 10_000);
        w.on_ptt_on("b", 11_000);
        assert_eq!(w.keyed_by(), Some("b"));
        assert_eq!(w.on_session_ended("a", 11_500), None);
    }

    #[test]
    fn the_time_out_timer_locks_the_keeper_out_until_it_releases() {
        let mut w = dog();
        let max = 180_000;
        let mut t = 0;
        let mut unkeys = 0;
        // A stuck control repeating PTT-on every second for 3x the maximum.
        while t <= 3 * max {
            if w.admit_ptt_on("a", t) {
                assert_eq!(w.on_ptt_on("a", t), None);
            }
            unkeys += usize::from(w.handle_timeout(t).is_some());
            t += 1_000;
        }
        assert_eq!(unkeys, 1, "one unkey, then locked out");
        assert!(w.is_locked_out("a", t));
        assert_eq!(w.keyed_by(), None);
        // Other clients may still key.
        assert!(w.admit_ptt_on("b", t));
        // Releasing (PTT-off) ends the lock-out.
        w.on_ptt_off("a");
        assert!(w.admit_ptt_on("a", t + 1));
    }

    #[test]
    fn silence_is_a_release_and_a_late_applied_ptt_on_is_undone() {
        let mut w = TxWatchdog::new(TxWatchdogConfig {
            keepalive_ms: 3_000,
            max_tx_ms: 10_000,
        });
        w.on_ptt_on("a", 0);
        for t in (1_000..10_000).step_by(1_000) {
            w.on_ptt_on("a", t);
        }
        assert_eq!(
            w.handle_timeout(10_000).map(|u| u.reason),
            Some(UnkeyReason::MaxTxTime)
        );
        // Admitted just before the time-out, applied just after: unkeyed again.
        assert_eq!(
            w.on_ptt_on("a", 10_001).map(|u| u.reason),
            Some(UnkeyReason::MaxTxTime)
        );
        assert!(!w.admit_ptt_on("a", 11_000));
        // Three seconds without an attempt: released.
        assert!(w.admit_ptt_on("a", 14_001));
    }
}
