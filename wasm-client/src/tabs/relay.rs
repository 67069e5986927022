//! The relay's decisions, sans-IO: what a follower delivers from the frames
//! the leader relays, and when it must ask the leader for a sync.
//!
//! Exactly once, in order, in every tab: the leader relays each delivered
//! item (event, gap, snapshot) as its `ServerFrame`, with the epoch; each
//! follower runs its own `Receiver` over them, so it drops what it has and
//! delivers the rest in `seq` order. A hole it cannot fill from the relay
//! (it came in late, or a new leader resumed ahead of it) is filled by a
//! sync: the leader's [`Folded`] state as a snapshot.

use shared_protocol::frame::{Resume, ServerFrame, State};
use shared_protocol::receiver::{Delivered, Receiver};
use shared_protocol::Millis;

/// Events a follower may hold while waiting for its sync.
const MAX_PENDING: usize = 10_000;
/// A join whose sync has not come is asked again after this long (the
/// leader asked may have gone).
const JOIN_RETRY_MS: Millis = 1_000;

/// The application state as the proxy's snapshot would give it: the last
/// payload of every kind, as of `upto`. Every tab keeps one: the leader
/// answers joins with it, and it is what a reload shows at once.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Folded {
    pub upto: u64,
    pub state: State,
}

impl Folded {
    /// Takes the item (its kind and payload move into the state: a copy of
    /// each was a tenth of an event's cost in the browser).
    pub fn observe(&mut self, item: Delivered) {
        match item {
            Delivered::Event(e) => {
                self.upto = e.seq;
                self.state.insert(e.kind, e.payload);
            }
            Delivered::Gap(g) => self.upto = self.upto.max(g.to),
            Delivered::Snapshot(s) => {
                self.upto = s.upto;
                self.state = s.state;
            }
        }
    }
}

/// A follower's position in the relayed stream.
#[derive(Debug)]
pub struct Follower {
    receiver: Receiver,
    /// Whether this tab has followed a leader (then, promoted, it resumes
    /// from its own position rather than from storage).
    pub followed: bool,
    /// When a join was asked whose sync has not come.
    joining: Option<Millis>,
}

impl Default for Follower {
    fn default() -> Self {
        Follower {
            receiver: Receiver::new(None, MAX_PENDING),
            followed: false,
            joining: None,
        }
    }
}

impl Follower {
    /// A leader that steps down follows from where its session stood.
    pub fn at(position: Option<Resume>) -> Follower {
        Follower {
            receiver: Receiver::new(position, MAX_PENDING),
            followed: true,
            joining: None,
        }
    }

    /// Where this tab stands: what a promoted follower resumes from.
    pub fn position(&self) -> Option<Resume> {
        self.receiver.resume()
    }

    /// A join was posted.
    pub fn joined(&mut self, now: Millis) {
        self.joining = Some(now);
    }

    /// Takes relayed frames (or a sync's snapshot, `sync`); returns what is
    /// new for the application, in order, and whether to ask for a sync.
    pub fn receive(
        &mut self,
        epoch: u64,
        frames: Vec<ServerFrame>,
        sync: bool,
        now: Millis,
    ) -> (Vec<Delivered>, bool) {
        self.followed = true;
        if sync {
            self.joining = None;
        }
        if self.receiver.epoch() != Some(epoch) {
            // A new epoch (or the first frames): the relay brings the gap
            // and snapshot that go with it.
            self.receiver = Receiver::new(Some(Resume { epoch, last_seq: 0 }), MAX_PENDING);
        }
        let mut out = Vec::new();
        let mut overflow = false;
        for frame in frames {
            match frame {
                ServerFrame::Event(e) => {
                    // Held too much while waiting for a sync: start over.
                    let held_too_much = self.receiver.on_event(e, &mut out).is_err();
                    if held_too_much {
                        self.receiver = Receiver::new(None, MAX_PENDING);
                        overflow = true;
                    }
                }
                ServerFrame::Gap(g) => self.receiver.on_gap(g, &mut out),
                ServerFrame::Snapshot(s) => self.receiver.on_snapshot(s, &mut out),
                _ => {}
            }
        }
        let waiting = self
            .joining
            .is_some_and(|at| now.saturating_sub(at) < JOIN_RETRY_MS);
        let ask = overflow || (self.receiver.pending() > 0 && !waiting);
        (out, ask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::frame::{Event, Payload, Snapshot};

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ev(seq: u64) -> ServerFrame {
        ServerFrame::Event(Event {
            seq,
            kind: "note".into(),
            ts_ms: 0,
            payload: Payload::from(seq),
        })
    }

    fn seqs(items: &[Delivered]) -> Vec<u64> {
        items
            .iter()
            .filter_map(|d| match d {
                Delivered::Event(e) => Some(e.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_late_follower_asks_for_a_sync_once_then_delivers_in_order() {
        let mut f = Follower::default();
        let (out, ask) = f.receive(7, vec![ev(5), ev(6)], false, 0);
        assert!(out.is_empty() && ask, "a hole before 5: ask the leader");
        f.joined(0);
        let (_, ask) = f.receive(7, vec![ev(7)], false, 10);
        assert!(!ask, "a sync is on its way");
        let sync = ServerFrame::Snapshot(Folded::default().snapshot_at(4));
        let (out, ask) = f.receive(7, vec![sync], true, 20);
        assert!(!ask);
        assert_eq!(seqs(&out), [5, 6, 7], "the held events, after the snapshot");
        let (out, _) = f.receive(7, vec![ev(6), ev(8), ev(7)], false, 30);
        assert_eq!(seqs(&out), [8], "duplicates dropped");
    }

    #[test]
    fn a_stepped_down_leader_continues_from_its_own_position() {
        let mut f = Follower::at(Some(Resume {
            epoch: 3,
            last_seq: 10,
        }));
        let (out, ask) = f.receive(3, vec![ev(10), ev(11)], false, 0);
        assert_eq!((seqs(&out), ask), (vec![11], false));
        assert_eq!(f.position().map(|r| r.last_seq), Some(11));
    }

    #[test]
    fn folded_is_what_a_snapshot_would_say() {
        let mut folded = Folded::default();
        let mut r = Receiver::new(None, 10);
        let mut out = Vec::new();
        r.on_snapshot(Folded::default().snapshot_at(1), &mut out);
        for seq in 2..5 {
            if let ServerFrame::Event(e) = ev(seq) {
                let _ = r.on_event(e, &mut out);
            }
        }
        for d in out {
            folded.observe(d);
        }
        assert_eq!(folded.upto, 4);
        assert_eq!(folded.state.get("note"), Some(&Payload::from(4u64)));
    }

    impl Folded {
        fn snapshot_at(&self, upto: u64) -> Snapshot {
            Snapshot {
                upto,
                state: self.state.clone(),
            }
        }
    }
}
