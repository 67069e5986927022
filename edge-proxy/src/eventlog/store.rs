//! The durable store: redb tables and the synchronous operations on them.
//!
//! Why redb: pure Rust (no C toolchain, no SQLite build), ACID transactions
//! with a durable commit that fsyncs, readers that never block the writer
//! (MVCC), and a single file. The event log needs exactly append-in-a-
//! transaction, range read, trim-from-the-front and a small key-value table.
//!
//! Everything a commit changes (events, head, last values, publisher marks)
//! changes in one transaction, so a `kill -9` leaves either all of it or none.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use shared_protocol::frame::State;

use super::record::{Logged, NewEvent};
use super::LogError;

/// Page cache for the log file.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const PUBLISHERS: TableDefinition<&str, u64> = TableDefinition::new("publishers");
/// Scratch space for [`Store::probe`], never read.
const PROBE: TableDefinition<&str, &[u8]> = TableDefinition::new("probe");

/// One request in a group commit.
#[derive(Debug, Clone)]
pub struct Append {
    pub events: Vec<NewEvent>,
    /// For client publishes: applied at most once per `(client_id, client_seq)`.
    pub publisher: Option<Publisher>,
}

/// Who made a publish, and where it stands in that client's order.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub client_id: String,
    pub client_seq: u64,
    /// The publish the same session handed over just before this one.
    pub after: Option<u64>,
}

/// What a commit did with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Committed(Vec<Logged>),
    /// This `(client_id, client_seq)` was applied before; nothing was written.
    Duplicate,
    /// Its predecessor (`after`) has not been applied: it overtook it on the
    /// way. Nothing was written; the session must not acknowledge it.
    OutOfOrder,
}

pub struct Store {
    /// `None` only while [`Store::reopen`] swaps it (or after it failed).
    db: std::sync::RwLock<Option<Database>>,
    path: std::path::PathBuf,
    epoch: u64,
}

/// A read guard on the open database.
struct Open<'a>(std::sync::RwLockReadGuard<'a, Option<Database>>);

impl std::ops::Deref for Open<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        // Checked in `Store::db`.
        self.0.as_ref().expect("checked open")
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let db = Self::open_db(path)?;
        let txn = db.begin_write()?;
        let epoch = {
            let mut meta = txn.open_table(META)?;
            let existing = meta.get("epoch")?.map(|v| v.value());
            match existing {
                Some(epoch) => epoch,
                None => {
                    let epoch = new_epoch();
                    meta.insert("epoch", epoch)?;
                    meta.insert("head", 0)?;
                    epoch
                }
            }
        };
        txn.open_table(EVENTS)?;
        txn.open_table(STATE)?;
        txn.open_table(PUBLISHERS)?;
        txn.commit()?;
        Ok(Store {
            db: std::sync::RwLock::new(Some(db)),
            path: path.to_path_buf(),
            epoch,
        })
    }

    fn open_db(path: &Path) -> Result<Database, LogError> {
        // redb's default page cache is sized for databases, not for a log
        // whose hot part lives in the in-memory tail anyway.
        Ok(redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)?)
    }

    fn db(&self) -> Result<Open<'_>, LogError> {
        let guard = self.db.read().map_err(|_| LogError::Closed)?;
        if guard.is_none() {
            return Err(LogError::Storage(
                "the log file is being reopened after a storage error".into(),
            ));
        }
        Ok(Open(guard))
    }

    /// Closes and reopens the database file: after a failed write (a full
    /// disk) redb refuses every later one until then. What was committed
    /// before is all there; the failed transaction left nothing.
    pub fn reopen(&self) -> Result<(), LogError> {
        let mut slot = self.db.write().map_err(|_| LogError::Closed)?;
        drop(slot.take());
        *slot = Some(Self::open_db(&self.path)?);
        Ok(())
    }

    /// Whether the disk takes writes again: commits a block the size of a
    /// large event (a few bytes would fit in the file's free pages while
    /// the disk is still full), then removes it.
    pub fn probe(&self, now_ms: u64) -> Result<(), LogError> {
        let db = self.db()?;
        let block = vec![0u8; 64 * 1024];
        let txn = db.begin_write()?;
        txn.open_table(PROBE)?.insert("block", block.as_slice())?;
        txn.open_table(META)?.insert("probe_ms", now_ms)?;
        txn.commit()?;
        let txn = db.begin_write()?;
        txn.open_table(PROBE)?.remove("block")?;
        txn.commit()?;
        Ok(())
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn head(&self) -> Result<u64, LogError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get("head")?.map_or(0, |v| v.value()))
    }

    /// Writes a batch in one durable transaction (one fsync).
    pub fn commit(&self, batch: &[Append], now_ms: u64) -> Result<Vec<Outcome>, LogError> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut meta = txn.open_table(META)?;
            let mut events = txn.open_table(EVENTS)?;
            let mut state = txn.open_table(STATE)?;
            let mut publishers = txn.open_table(PUBLISHERS)?;
            let mut head = meta.get("head")?.map_or(0, |v| v.value());
            for append in batch {
                if let Some(p) = &append.publisher {
                    // Only the highest applied `client_seq` is kept, which
                    // is exact as long as a client's publishes arrive in
                    // order: an overtaking one is refused, never applied,
                    // so the one it overtook is not later taken for a
                    // duplicate.
                    let applied = publishers
                        .get(p.client_id.as_str())?
                        .map_or(0, |v| v.value());
                    if p.client_seq <= applied {
                        outcomes.push(Outcome::Duplicate);
                        continue;
                    }
                    if p.after.is_some_and(|after| after > applied) {
                        outcomes.push(Outcome::OutOfOrder);
                        continue;
                    }
                    publishers.insert(p.client_id.as_str(), p.client_seq)?;
                }
                let mut logged = Vec::with_capacity(append.events.len());
                for event in &append.events {
                    head += 1;
                    let record = Logged::build(head, now_ms, event)?;
                    events.insert(head, record.to_bytes().as_slice())?;
                    let mut value = Vec::new();
                    rmpv::encode::write_value(&mut value, &event.payload)
                        .map_err(|e| LogError::Corrupt(format!("state value: {e}")))?;
                    state.insert(event.kind.as_str(), value.as_slice())?;
                    logged.push(record);
                }
                outcomes.push(Outcome::Committed(logged));
            }
            meta.insert("head", head)?;
        }
        txn.commit()?;
        Ok(outcomes)
    }

    /// Events with `seq` in `from..=to`, at most `limit` of them.
    pub fn read_range(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Logged>, LogError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for entry in events.range(from..=to)?.take(limit) {
            let (seq, bytes) = entry?;
            let seq = seq.value();
            let logged = Logged::from_bytes(seq, bytes.value())
                .ok_or_else(|| LogError::Corrupt(format!("event {seq}")))?;
            out.push(logged);
        }
        Ok(out)
    }

    /// The oldest retained `seq`, or `head + 1` when nothing is retained.
    pub fn oldest(&self) -> Result<u64, LogError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let first = events.first()?.map(|(seq, _)| seq.value());
        match first {
            Some(seq) => Ok(seq),
            None => {
                let meta = txn.open_table(META)?;
                Ok(meta.get("head")?.map_or(0, |v| v.value()) + 1)
            }
        }
    }

    /// The last value of every kind and the `seq` it is current as of, read
    /// in one transaction so the two agree.
    pub fn snapshot(&self) -> Result<(u64, State), LogError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let head = txn.open_table(META)?.get("head")?.map_or(0, |v| v.value());
        let table = txn.open_table(STATE)?;
        // redb iterates in key order: each insert lands at the end.
        let mut state = State::new();
        for entry in table.iter()? {
            let (kind, value) = entry?;
            let mut bytes = value.value();
            let payload = rmpv::decode::read_value(&mut bytes)
                .map_err(|e| LogError::Corrupt(format!("state {}: {e}", kind.value())))?;
            state.insert(kind.value().to_string(), payload);
        }
        Ok((head, state))
    }

    /// Drops events older than `retention_ms` and all but the newest
    /// `max_events`. Returns how many were removed.
    pub fn trim(&self, now_ms: u64, retention_ms: u64, max_events: u64) -> Result<u64, LogError> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        let mut removed = 0;
        {
            let mut events = txn.open_table(EVENTS)?;
            let cutoff = now_ms.saturating_sub(retention_ms);
            let mut len = events.len()?;
            loop {
                let drop_it = match events.first()? {
                    None => false,
                    Some((_, bytes)) => {
                        len > max_events
                            || Logged::ts_of(bytes.value()).is_none_or(|ts| ts < cutoff)
                    }
                };
                if !drop_it {
                    break;
                }
                events.pop_first()?;
                len -= 1;
                removed += 1;
            }
        }
        txn.commit()?;
        Ok(removed)
    }

    /// Number of events retained and the database file's size in bytes.
    pub fn usage(&self) -> Result<u64, LogError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        Ok(txn.open_table(EVENTS)?.len()?)
    }
}

/// A random epoch below 2^53, so it survives a round trip through a
/// JavaScript number.
fn new_epoch() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: the clock still makes a fresh store's epoch differ.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        bytes = nanos.to_le_bytes();
    }
    (u64::from_le_bytes(bytes) & ((1 << 53) - 1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::frame::Payload;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("log.redb")).unwrap();
        (dir, store)
    }

    fn ev(kind: &str, v: u64) -> NewEvent {
        NewEvent::reliable(kind, Payload::from(v))
    }

    #[test]
    fn sequences_are_gap_free_across_batches_and_reopen() {
        let (dir, store) = open();
        let epoch = store.epoch();
        let out = store
            .commit(
                &[
                    Append {
                        events: vec![ev("a", 1), ev("b", 2)],
                        publisher: None,
                    },
                    Append {
                        events: vec![ev("a", 3)],
                        publisher: None,
                    },
                ],
                1_000,
            )
            .unwrap();
        let seqs: Vec<u64> = out
            .iter()
            .flat_map(|o| match o {
                Outcome::Committed(l) => l.iter().map(|e| e.seq).collect(),
                Outcome::Duplicate | Outcome::OutOfOrder => vec![],
            })
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        drop(store);
        let store = Store::open(&dir.path().join("log.redb")).unwrap();
        assert_eq!(store.epoch(), epoch, "epoch survives a reopen");
        assert_eq!(store.head().unwrap(), 3);
        store
            .commit(
                &[Append {
                    events: vec![ev("c", 4)],
                    publisher: None,
                }],
                2_000,
            )
            .unwrap();
        let all = store.read_range(1, 10, 100).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let (head, state) = store.snapshot().unwrap();
        assert_eq!(head, 4);
        assert_eq!(state.get("a"), Some(&Payload::from(3)));
    }

    #[test]
    fn publishes_apply_at_most_once() {
        let (_dir, store) = open();
        let p = |seq| Append {
            events: vec![ev("note", seq)],
            publisher: Some(Publisher {
                client_id: "dash".into(),
                client_seq: seq,
                after: None,
            }),
        };
        let out = store.commit(&[p(1), p(2), p(2), p(1)], 0).unwrap();
        assert!(matches!(out[0], Outcome::Committed(_)));
        assert!(matches!(out[1], Outcome::Committed(_)));
        assert_eq!(out[2], Outcome::Duplicate);
        assert_eq!(out[3], Outcome::Duplicate);
        assert_eq!(store.commit(&[p(2)], 0).unwrap()[0], Outcome::Duplicate);
        assert_eq!(store.head().unwrap(), 2);
    }

    #[test]
    fn a_publish_that_overtook_its_predecessor_is_refused_not_lost() {
        let (_dir, store) = open();
        let p = |seq, after| Append {
            events: vec![ev("note", seq)],
            publisher: Some(Publisher {
                client_id: "dash".into(),
                client_seq: seq,
                after,
            }),
        };
        // 3 (after 2) arrives before 2: refused; then 2 and 3 apply.
        let out = store.commit(&[p(1, None), p(3, Some(2))], 0).unwrap();
        assert!(matches!(out[0], Outcome::Committed(_)));
        assert_eq!(out[1], Outcome::OutOfOrder);
        let out = store.commit(&[p(2, Some(1)), p(3, Some(2))], 0).unwrap();
        assert!(matches!(out[0], Outcome::Committed(_)));
        assert!(
            matches!(out[1], Outcome::Committed(_)),
            "3 is not a duplicate"
        );
        // Holes (volatile publishes that never came) are fine: after 3, 7.
        assert!(matches!(
            store.commit(&[p(7, Some(3))], 0).unwrap()[0],
            Outcome::Committed(_)
        ));
        assert_eq!(store.head().unwrap(), 4);
    }

    #[test]
    fn trims_by_age_and_count() {
        let (_dir, store) = open();
        for t in 0..10u64 {
            store
                .commit(
                    &[Append {
                        events: vec![ev("a", t)],
                        publisher: None,
                    }],
                    t * 1_000,
                )
                .unwrap();
        }
        assert_eq!(
            store.trim(10_000, 5_500, 100).unwrap(),
            5,
            "older than 4.5 s go"
        );
        assert_eq!(store.oldest().unwrap(), 6);
        assert_eq!(store.trim(10_000, 60_000, 2).unwrap(), 3, "then all but 2");
        assert_eq!(store.oldest().unwrap(), 9);
        assert_eq!(store.trim(100_000, 1, 100).unwrap(), 2);
        assert_eq!(store.oldest().unwrap(), 11, "empty log: head + 1");
        assert_eq!(store.head().unwrap(), 10, "trimming never moves the head");
    }
}
