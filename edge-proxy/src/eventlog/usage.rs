//! How big the station state (the last value of every kind, what a
//! `Snapshot` carries) is, so that it stays bounded by bytes and kinds, not
//! by what clients send: a publish that would grow it past the limits is
//! refused (`state_full`) where it enters.

use std::collections::HashMap;

/// The state's limits (`max_state_kinds`, `max_state_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    pub kinds: usize,
    pub bytes: u64,
}

/// About how many bytes `payload` takes encoded (an upper bound within a
/// few bytes per value), without encoding it.
pub fn payload_size(payload: &shared_protocol::frame::Payload) -> u64 {
    use shared_protocol::frame::Payload as P;
    match payload {
        P::String(s) => 5 + s.as_bytes().len() as u64,
        P::Binary(b) => 5 + b.len() as u64,
        P::Array(items) => 5 + items.iter().map(payload_size).sum::<u64>(),
        P::Map(entries) => {
            5 + entries
                .iter()
                .map(|(k, v)| payload_size(k) + payload_size(v))
                .sum::<u64>()
        }
        P::Ext(_, data) => 6 + data.len() as u64,
        _ => 9,
    }
}

#[derive(Debug, Default)]
pub struct StateUsage {
    sizes: HashMap<String, u64>,
    total: u64,
}

impl StateUsage {
    /// `kind`'s last value is now `bytes` long (its encoded event).
    pub fn set(&mut self, kind: &str, bytes: u64) {
        let old = self.sizes.insert(kind.to_string(), bytes).unwrap_or(0);
        self.total = self.total - old + bytes;
    }

    /// `kind` is no longer part of the state.
    pub fn remove(&mut self, kind: &str) {
        self.total -= self.sizes.remove(kind).unwrap_or(0);
    }

    /// Whether `kind` taking a value of `bytes` keeps the state within
    /// `limits`. A kind already in the state may always shrink.
    pub fn fits(&self, kind: &str, bytes: u64, limits: StateLimits) -> bool {
        let old = self.sizes.get(kind).copied();
        if old.is_none() && self.sizes.len() >= limits.kinds {
            return false;
        }
        let after = self.total - old.unwrap_or(0) + bytes;
        after <= limits.bytes || old.is_some_and(|o| bytes <= o)
    }

    pub fn kinds(&self) -> usize {
        self.sizes.len()
    }

    pub fn bytes(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_bounded_by_kinds_and_bytes() {
        let limits = StateLimits {
            kinds: 2,
            bytes: 100,
        };
        let mut usage = StateUsage::default();
        assert!(usage.fits("a", 60, limits));
        usage.set("a", 60);
        assert!(!usage.fits("b", 50, limits), "over the bytes");
        assert!(usage.fits("b", 40, limits));
        usage.set("b", 40);
        assert!(!usage.fits("c", 1, limits), "over the kinds");
        assert!(usage.fits("a", 10, limits), "an existing kind may shrink");
        usage.set("a", 10);
        assert_eq!((usage.kinds(), usage.bytes()), (2, 50));
        assert!(usage.fits("b", 90, limits));
        usage.remove("a");
        usage.remove("never");
        assert_eq!((usage.kinds(), usage.bytes()), (1, 40));
    }
}
