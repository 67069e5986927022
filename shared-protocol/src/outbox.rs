//! Send side: numbers every publish with a `client_seq` and keeps reliable
//! ones until the proxy accepts them, so they survive disconnects and (through
//! the shell's storage) page reloads.
//!
//! Rules, from DESIGN.md:
//! - reliable publishes wait in the outbox, in order, until `Accepted` covers
//!   them; a full outbox drops its oldest entry and says so;
//! - volatile publishes are sent only while connected and never stored;
//! - transmit commands ([`crate::is_transmit_kind`]) are treated as volatile
//!   whatever the caller asked: they are never stored and never replayed.

use crate::frame::{Delivery, Payload, Publish};
use crate::is_transmit_kind;

/// Default outbox capacity (REQUIREMENTS.md: local event buffer of 100).
pub const DEFAULT_CAPACITY: usize = 100;

/// What happened to a publish handed to [`Outbox::publish`].
#[derive(Debug, Clone, PartialEq)]
pub enum Queued {
    /// Stored; send it now if connected, otherwise it goes out on reconnect.
    Stored {
        publish: Publish,
        /// The oldest entry, dropped to make room.
        evicted: Option<Publish>,
    },
    /// Not stored: send it now if connected, otherwise it is dropped.
    SendOnly(Publish),
}

#[derive(Debug, Clone)]
pub struct Outbox {
    next_client_seq: u64,
    items: Vec<Publish>,
    capacity: usize,
    /// Highest `client_seq` the proxy has finished with.
    accepted_upto: u64,
    pub evicted: u64,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Outbox {
            next_client_seq: 1,
            items: Vec::new(),
            capacity: capacity.max(1),
            accepted_upto: 0,
            evicted: 0,
        }
    }

    /// Rebuilds an outbox from storage. Entries are re-sorted, deduplicated,
    /// stripped of transmit commands and cut to capacity, so corrupt or
    /// hand-edited storage cannot break the ordering rules.
    pub fn restore(capacity: usize, next_client_seq: u64, mut items: Vec<Publish>) -> Self {
        items.retain(|p| p.delivery == Delivery::Reliable && !is_transmit_kind(&p.kind));
        crate::sort_small_by_key(&mut items, |p| p.client_seq);
        items.dedup_by_key(|p| p.client_seq);
        let mut outbox = Outbox::new(capacity);
        let max_seen = items.last().map_or(0, |p| p.client_seq);
        outbox.next_client_seq = next_client_seq.max(max_seen + 1).max(1);
        items.drain(..items.len().saturating_sub(outbox.capacity));
        outbox.items = items;
        outbox
    }

    pub fn publish(
        &mut self,
        kind: String,
        payload: Payload,
        delivery: Delivery,
        expires_at_ms: Option<u64>,
        ttl_ms: Option<u64>,
    ) -> Queued {
        let client_seq = self.next_client_seq;
        self.next_client_seq += 1;
        let keep = delivery == Delivery::Reliable && !is_transmit_kind(&kind);
        let publish = Publish {
            client_seq,
            kind,
            payload,
            delivery: if keep {
                Delivery::Reliable
            } else {
                Delivery::Volatile
            },
            expires_at_ms,
            ttl_ms,
        };
        if !keep {
            return Queued::SendOnly(publish);
        }
        let evicted = crate::push_bounded(&mut self.items, self.capacity, publish.clone());
        self.evicted += u64::from(evicted.is_some());
        Queued::Stored { publish, evicted }
    }

    /// The proxy is done with everything up to `upto`. Returns how many
    /// stored entries that released.
    pub fn on_accepted(&mut self, upto: u64) -> usize {
        self.accepted_upto = self.accepted_upto.max(upto);
        let before = self.items.len();
        let done = self.items.iter().take_while(|p| p.client_seq <= upto);
        self.items.drain(..done.count());
        before - self.items.len()
    }

    /// The proxy refused one publish; it is removed and returned.
    pub fn on_rejected(&mut self, client_seq: u64) -> Option<Publish> {
        let at = self.items.iter().position(|p| p.client_seq == client_seq)?;
        Some(self.items.remove(at))
    }

    /// Entries to (re)send after a connection opens, in order.
    pub fn pending(&self) -> &[Publish] {
        &self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn next_client_seq(&self) -> u64 {
        self.next_client_seq
    }

    pub fn accepted_upto(&self) -> u64 {
        self.accepted_upto
    }

    /// Empties the outbox (the user's "clear buffer"); numbering continues.
    pub fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(o: &mut Outbox, kind: &str, d: Delivery) -> Queued {
        o.publish(kind.into(), Payload::Nil, d, None, None)
    }

    #[test]
    fn numbers_stores_and_releases_in_order() {
        let mut o = Outbox::new(10);
        for _ in 0..3 {
            publish(&mut o, "note", Delivery::Reliable);
        }
        assert!(
            matches!(publish(&mut o, "meter", Delivery::Volatile), Queued::SendOnly(p) if p.client_seq == 4)
        );
        assert_eq!(o.len(), 3);
        assert_eq!(o.on_accepted(2), 2);
        assert_eq!(
            o.pending().iter().map(|p| p.client_seq).collect::<Vec<_>>(),
            [3]
        );
    }

    #[test]
    fn full_outbox_evicts_oldest() {
        let mut o = Outbox::new(2);
        publish(&mut o, "a", Delivery::Reliable);
        publish(&mut o, "b", Delivery::Reliable);
        match publish(&mut o, "c", Delivery::Reliable) {
            Queued::Stored { evicted, .. } => assert_eq!(evicted.map(|p| p.kind), Some("a".into())),
            other => panic!("{other:?}"),
        }
        assert_eq!(o.len(), 2);
        assert_eq!(o.evicted, 1);
    }

    #[test]
    fn transmit_commands_are_never_stored() {
        let mut o = Outbox::new(10);
        let q = publish(&mut o, "radio.ptt", Delivery::Reliable);
        assert!(matches!(q, Queued::SendOnly(p) if p.delivery == Delivery::Volatile));
        assert!(o.is_empty());
    }

    #[test]
    fn restore_sanitises_storage() {
        let p = |seq, kind: &str| Publish {
            client_seq: seq,
            kind: kind.into(),
            payload: Payload::Nil,
            delivery: Delivery::Reliable,
            expires_at_ms: None,
            ttl_ms: None,
        };
        let o = Outbox::restore(
            2,
            1,
            vec![
                p(5, "a"),
                p(3, "b"),
                p(5, "a"),
                p(4, "radio.ptt"),
                p(1, "c"),
            ],
        );
        assert_eq!(
            o.pending().iter().map(|p| p.client_seq).collect::<Vec<_>>(),
            [3, 5]
        );
        assert_eq!(o.next_client_seq(), 6);
    }
}
