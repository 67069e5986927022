//! The TX watchdog: a dead-man switch for the transmitter.
//!
//! A client that keys the transmitter (`radio.ptt {on: true}`) must keep
//! saying so: the dashboard repeats the command every second while the button
//! is held. The watchdog unkeys when
//! - the keying client stops refreshing for `keepalive_ms` (3 s by default:
//!   a frozen tab, a dead network, a laptop lid closed mid-over),
//! - the keying client's session ends, or
//! - the transmission has lasted `max_tx_ms` (3 minutes by default),
//!
//! so a lost "PTT off" can never leave a transmitter keyed.

use crate::Millis;

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
    /// The transmission reached `max_tx_ms`.
    MaxTxTime,
}

impl UnkeyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnkeyReason::Silent => "silent",
            UnkeyReason::SessionEnded => "session_ended",
            UnkeyReason::MaxTxTime => "max_tx_time",
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
}

impl TxWatchdog {
    pub fn new(config: TxWatchdogConfig) -> Self {
        TxWatchdog {
            config,
            keyed: None,
        }
    }

    pub fn keyed_by(&self) -> Option<&str> {
        self.keyed.as_ref().map(|k| k.client_id.as_str())
    }

    /// A PTT-on command from `client_id` was applied (a first key or a refresh).
    pub fn on_ptt_on(&mut self, client_id: &str, now: Millis) {
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
    }

    /// A PTT-off command was applied (from anyone): nothing left to watch.
    pub fn on_ptt_off(&mut self) {
        self.keyed = None;
    }

    /// A client's session ended; unkeys if it was the one transmitting.
    pub fn on_session_ended(&mut self, client_id: &str, now: Millis) -> Option<Unkey> {
        if self.keyed_by() == Some(client_id) {
            return self.unkey(UnkeyReason::SessionEnded, now);
        }
        None
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.keyed
            .as_ref()
            .map(|k| (k.refreshed + self.config.keepalive_ms).min(k.since + self.config.max_tx_ms))
    }

    pub fn handle_timeout(&mut self, now: Millis) -> Option<Unkey> {
        let k = self.keyed.as_ref()?;
        if now >= k.since + self.config.max_tx_ms {
            return self.unkey(UnkeyReason::MaxTxTime, now);
        }
        if now >= k.refreshed + self.config.keepalive_ms {
            return self.unkey(UnkeyReason::Silent, now);
        }
        None
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
        w.on_ptt_off();
        assert_eq!(w.handle_timeout(10_000), None);
        w.on_ptt_on("a", 10_000);
        w.on_ptt_on("b", 11_000);
        assert_eq!(w.keyed_by(), Some("b"));
        assert_eq!(w.on_session_ended("a", 11_500), None);
    }
}
