//! Receive side: turns an at-least-once, possibly reordered stream of events
//! (live traffic, replays after reconnects) into exactly-once, in-order
//! delivery to the application, with every hole reported.
//!
//! The only state that must survive a page reload is `(epoch, last_seq)`,
//! which is what [`Receiver::resume`] returns for the next `Hello`.

use crate::frame::{Event, Gap, Resume, Snapshot, Welcome};

/// What the application is given, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    Event(Event),
    /// Events `from..=to` are gone for good.
    Gap(Gap),
    /// The full state; replaces whatever the application had.
    Snapshot(Snapshot),
}

impl Delivered {
    /// The server frame that carries this item, encoded: the bytes of
    /// `ServerFrame::Event`/`Gap`/`Snapshot` of a copy, without the copy.
    pub fn encode_frame(&self) -> Vec<u8> {
        crate::codec::encode_delivered(self)
    }
}

/// Why the receiver wants the shell to reconnect and resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveProblem {
    /// Too many events arrived ahead of a hole; resuming from `last_seq`
    /// fills it with a replay.
    #[error("{waiting} events wait behind a hole after seq {last_seq}")]
    HoleNotFilling { last_seq: u64, waiting: usize },
}

#[derive(Debug, Clone)]
pub struct Receiver {
    epoch: Option<u64>,
    last_seq: u64,
    /// Sorted by `seq`, no repeats. A `Vec` rather than a `BTreeMap`: events
    /// are held only while a hole fills, and the browser module is smaller.
    pending: Vec<Event>,
    max_pending: usize,
    pub duplicates: u64,
    pub delivered: u64,
}

impl Receiver {
    /// `restored` is the `(epoch, last_seq)` kept from an earlier page load.
    pub fn new(restored: Option<Resume>, max_pending: usize) -> Self {
        Receiver {
            epoch: restored.map(|r| r.epoch),
            last_seq: restored.map_or(0, |r| r.last_seq),
            pending: Vec::new(),
            max_pending: max_pending.max(1),
            duplicates: 0,
            delivered: 0,
        }
    }

    /// Where to resume from, for `Hello.resume`.
    pub fn resume(&self) -> Option<Resume> {
        self.epoch.map(|epoch| Resume {
            epoch,
            last_seq: self.last_seq,
        })
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Events held back waiting for a hole to fill.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A new connection was welcomed. A different epoch means the proxy's
    /// history was lost: our `last_seq` means nothing there any more, and the
    /// proxy follows with a snapshot and a gap.
    pub fn on_welcome(&mut self, welcome: &Welcome) {
        if self.epoch != Some(welcome.epoch) {
            self.last_seq = 0;
            self.pending.clear();
            self.epoch = Some(welcome.epoch);
        }
    }

    pub fn on_event(
        &mut self,
        event: Event,
        out: &mut Vec<Delivered>,
    ) -> Result<(), ReceiveProblem> {
        let slot = self.pending.binary_search_by_key(&event.seq, |e| e.seq);
        if event.seq <= self.last_seq || slot.is_ok() {
            self.duplicates += 1;
            return Ok(());
        }
        if event.seq == self.last_seq + 1 {
            self.deliver(event, out);
            self.drain(out);
            return Ok(());
        }
        if self.pending.len() >= self.max_pending {
            return Err(ReceiveProblem::HoleNotFilling {
                last_seq: self.last_seq,
                waiting: self.pending.len(),
            });
        }
        self.pending.insert(slot.unwrap_or_else(|i| i), event);
        Ok(())
    }

    pub fn on_gap(&mut self, gap: Gap, out: &mut Vec<Delivered>) {
        if gap.to <= self.last_seq {
            return;
        }
        let from = gap.from.max(self.last_seq + 1);
        // Anything already held inside the gap is still good data: deliver it
        // around the gap rather than dropping it.
        let to = gap.to;
        let start = self.pending.partition_point(|e| e.seq < from);
        let end = self.pending.partition_point(|e| e.seq <= to);
        let mut after = self.pending.split_off(end);
        let held = self.pending.split_off(start);
        self.pending.append(&mut after);
        let mut cursor = from;
        for ev in held {
            let seq = ev.seq;
            if seq > cursor {
                out.push(Delivered::Gap(Gap {
                    from: cursor,
                    to: seq - 1,
                    reason: gap.reason,
                }));
            }
            self.last_seq = seq - 1;
            self.deliver(ev, out);
            cursor = seq + 1;
        }
        if cursor <= to {
            out.push(Delivered::Gap(Gap {
                from: cursor,
                to,
                reason: gap.reason,
            }));
        }
        self.last_seq = to;
        self.drain(out);
    }

    pub fn on_snapshot(&mut self, snapshot: Snapshot, out: &mut Vec<Delivered>) {
        if snapshot.upto < self.last_seq {
            return;
        }
        self.last_seq = snapshot.upto;
        self.pending.retain(|e| e.seq > snapshot.upto);
        out.push(Delivered::Snapshot(snapshot));
        self.drain(out);
    }

    fn deliver(&mut self, event: Event, out: &mut Vec<Delivered>) {
        self.last_seq = event.seq;
        self.delivered += 1;
        out.push(Delivered::Event(event));
    }

    fn drain(&mut self, out: &mut Vec<Delivered>) {
        let ready = self
            .pending
            .iter()
            .zip(self.last_seq + 1..)
            .take_while(|(e, want)| e.seq == *want)
            .count();
        if ready == 0 {
            return;
        }
        let rest = self.pending.split_off(ready);
        for ev in std::mem::replace(&mut self.pending, rest) {
            self.deliver(ev, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::GapReason;

    fn ev(seq: u64) -> Event {
        Event {
            seq,
            kind: "k".into(),
            ts_ms: 0,
            payload: rmpv::Value::from(seq),
        }
    }

    fn seqs(out: &[Delivered]) -> Vec<u64> {
        out.iter()
            .filter_map(|d| match d {
                Delivered::Event(e) => Some(e.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reorders_and_deduplicates() {
        let mut r = Receiver::new(None, 100);
        let mut out = Vec::new();
        for s in [2, 1, 1, 3, 5, 4, 2] {
            r.on_event(ev(s), &mut out).unwrap();
        }
        assert_eq!(seqs(&out), [1, 2, 3, 4, 5]);
        assert_eq!(r.duplicates, 2);
    }

    #[test]
    fn gap_skips_but_keeps_held_events() {
        let mut r = Receiver::new(None, 100);
        let mut out = Vec::new();
        r.on_event(ev(1), &mut out).unwrap();
        r.on_event(ev(5), &mut out).unwrap();
        r.on_event(ev(9), &mut out).unwrap();
        r.on_gap(
            Gap {
                from: 2,
                to: 7,
                reason: GapReason::Retention,
            },
            &mut out,
        );
        let kinds: Vec<String> = out
            .iter()
            .map(|d| match d {
                Delivered::Event(e) => format!("e{}", e.seq),
                Delivered::Gap(g) => format!("g{}-{}", g.from, g.to),
                Delivered::Snapshot(s) => format!("s{}", s.upto),
            })
            .collect();
        assert_eq!(kinds, ["e1", "g2-4", "e5", "g6-7"]);
        assert_eq!(r.last_seq(), 7);
        r.on_event(ev(8), &mut out).unwrap();
        assert_eq!(r.last_seq(), 9);
    }

    #[test]
    fn hole_that_never_fills_asks_for_a_resume() {
        let mut r = Receiver::new(None, 2);
        let mut out = Vec::new();
        r.on_event(ev(3), &mut out).unwrap();
        r.on_event(ev(4), &mut out).unwrap();
        assert_eq!(
            r.on_event(ev(5), &mut out),
            Err(ReceiveProblem::HoleNotFilling {
                last_seq: 0,
                waiting: 2
            })
        );
    }

    #[test]
    fn new_epoch_restarts_the_count() {
        let mut r = Receiver::new(
            Some(Resume {
                epoch: 1,
                last_seq: 500,
            }),
            10,
        );
        let welcome = Welcome {
            session: "s".into(),
            epoch: 2,
            head_seq: 3,
            resumed: false,
            heartbeat_ms: 30_000,
            limits: crate::frame::Limits {
                max_frame_bytes: 1,
                max_publish_per_sec: 1,
                max_behind: 1,
                retention_ms: 1,
                publish_window: None,
            },
            access: None,
        };
        r.on_welcome(&welcome);
        assert_eq!(
            r.resume(),
            Some(Resume {
                epoch: 2,
                last_seq: 0
            })
        );
        let mut out = Vec::new();
        r.on_snapshot(
            Snapshot {
                upto: 3,
                state: Default::default(),
            },
            &mut out,
        );
        r.on_event(ev(4), &mut out).unwrap();
        assert_eq!(r.last_seq(), 4);
    }
}
