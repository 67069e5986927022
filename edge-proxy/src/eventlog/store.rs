//! The durable store: redb tables and the synchronous operations on them.
//!
//! Why redb: pure Rust (no C toolchain, no SQLite build), ACID transactions
//! with a durable commit that fsyncs, readers that never block the writer
//! (MVCC), and a single file. The event log needs exactly append-in-a-
//! transaction, range read, trim-from-the-front and a small key-value table.
//!
//! Everything a commit changes (events, head, last values, publisher marks)
//! changes in one transaction, so a `kill -9` leaves either all of it or none.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use shared_protocol::frame::State;

use super::record::{Logged, NewEvent};
use super::LogError;

/// Page cache for the log file.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
/// Before the table was bounded: client -> highest applied `client_seq`.
/// Moved into [`PUBLISHERS`] when an older log file is opened.
const PUBLISHERS_V1: TableDefinition<&str, u64> = TableDefinition::new("publishers");
/// Client -> (highest applied `client_seq`, wall-clock ms of its last publish).
const PUBLISHERS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("publishers_v2");
/// The same clients by (last publish ms, client): the longest silent first,
/// for trimming and eviction without a scan.
const PUBLISHERS_BY_AGE: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("publishers_by_age");
/// Scratch space for [`Store::probe`], never read.
const PROBE: TableDefinition<&str, &[u8]> = TableDefinition::new("probe");

/// Events numbered and handed out before they were durable (volatile
/// readings the writer held back: see `embedded.rs`), with what they were
/// made from. The next transaction writes them first, in order.
pub type Deferred = [(NewEvent, Logged)];

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

/// How long and how many clients the publishers table remembers (see
/// docs/PROTOCOL.md, "Deduplication"): bounded by configuration, never by
/// what clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherLimits {
    /// A client is forgotten this long after its last publish.
    pub ttl_ms: u64,
    /// At most this many clients; beyond, the longest silent is forgotten.
    pub max: u64,
}

impl Default for PublisherLimits {
    fn default() -> Self {
        PublisherLimits {
            ttl_ms: 24 * 3_600_000,
            max: 10_000,
        }
    }
}

pub struct Store {
    /// `None` only while [`Store::reopen`] swaps it (or after it failed).
    db: std::sync::RwLock<Option<Database>>,
    path: std::path::PathBuf,
    epoch: u64,
    limits: PublisherLimits,
    /// Entries in the publishers table after the last write (for `/stats`).
    publishers: std::sync::atomic::AtomicU64,
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
    pub fn open(path: &Path, limits: PublisherLimits) -> Result<Self, LogError> {
        let db = Self::open_db(path)?;
        let txn = db.begin_write()?;
        migrate_publishers(&txn, super::now_ms())?;
        let epoch = {
            let mut meta = txn.open_table(META)?;
            let existing = meta.get("epoch")?.map(|v| v.value());
            let epoch = match existing {
                Some(epoch) => epoch,
                None => {
                    let epoch = new_epoch();
                    meta.insert("epoch", epoch)?;
                    meta.insert("head", 0)?;
                    epoch
                }
            };
            // Numbers handed out for readings that were never written (the
            // last run stopped without writing them) are never used again:
            // the log goes on after them, and a client that saw one gets a
            // gap.
            let head = meta.get("head")?.map_or(0, |v| v.value());
            let reserved = meta.get("reserved")?.map_or(0, |v| v.value());
            if reserved > head {
                meta.insert("head", reserved)?;
                tracing::warn!(
                    path = %path.display(),
                    lost = reserved - head,
                    "the event log goes on after {} volatile readings held in memory when it last stopped (seq {}..={}); a client that saw them gets a gap",
                    reserved - head,
                    head + 1,
                    reserved
                );
            }
            epoch
        };
        txn.open_table(EVENTS)?;
        txn.open_table(STATE)?;
        let publishers = txn.open_table(PUBLISHERS)?.len()?;
        txn.open_table(PUBLISHERS_BY_AGE)?;
        txn.commit()?;
        Ok(Store {
            db: std::sync::RwLock::new(Some(db)),
            path: path.to_path_buf(),
            epoch,
            limits,
            publishers: std::sync::atomic::AtomicU64::new(publishers),
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

    /// Whether the disk takes writes again: commits a 256 KiB block (four
    /// of the largest events; less can fit in the file's free pages, which
    /// grow after failed commits, while the disk is still full), then
    /// removes it. Only run while the log is failing.
    pub fn probe(&self, now_ms: u64) -> Result<(), LogError> {
        let db = self.db()?;
        let block = vec![0u8; 256 * 1024];
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

    /// Makes every `seq` up to `upto` safe to hand out before it is written:
    /// if the process stops before they are, the next open goes on after
    /// them instead of numbering other events with them.
    pub fn reserve(&self, upto: u64) -> Result<(), LogError> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        txn.open_table(META)?.insert("reserved", upto)?;
        txn.commit()?;
        Ok(())
    }

    /// Writes the deferred events, then a batch, in one durable transaction
    /// (one fsync), and reserves the `reserve_ahead` numbers after the new
    /// head (see [`Store::reserve`]; 0 reserves nothing more).
    pub fn commit(
        &self,
        deferred: &Deferred,
        batch: &[Append],
        now_ms: u64,
        reserve_ahead: u64,
    ) -> Result<Vec<Outcome>, LogError> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut meta = txn.open_table(META)?;
            let mut events = txn.open_table(EVENTS)?;
            let mut state = txn.open_table(STATE)?;
            let mut publishers = txn.open_table(PUBLISHERS)?;
            let mut by_age = txn.open_table(PUBLISHERS_BY_AGE)?;
            let mut head = meta.get("head")?.map_or(0, |v| v.value());
            // Each kind's last value and each publisher's highest number
            // are written once per commit, not once per event: a window of
            // one client's publishes is one B-tree update each instead of
            // five, and the tables end the same.
            let mut last_values = HashMap::new();
            let mut applied: HashMap<&str, Applied> = HashMap::new();
            write_deferred(&mut events, &mut last_values, deferred, &mut head)?;
            for append in batch {
                if let Some(p) = &append.publisher {
                    // Only the highest applied `client_seq` is kept, which
                    // is exact as long as a client's publishes arrive in
                    // order: an overtaking one is refused, never applied,
                    // so the one it overtook is not later taken for a
                    // duplicate. A client forgotten (trimmed or evicted)
                    // starts again from 0: its next publish is applied, or,
                    // if it names a predecessor, refused as out of order so
                    // that the session reconnects and sends again in order.
                    let id = p.client_id.as_str();
                    let seen = match applied.entry(id) {
                        Entry::Occupied(seen) => seen.into_mut(),
                        Entry::Vacant(slot) => {
                            let stored = publishers.get(id)?.map(|v| v.value());
                            slot.insert(Applied {
                                seq: stored.map_or(0, |(seq, _)| seq),
                                stored_ms: stored.map(|(_, ms)| ms),
                                moved: false,
                            })
                        }
                    };
                    if p.client_seq <= seen.seq {
                        outcomes.push(Outcome::Duplicate);
                        continue;
                    }
                    if p.after.is_some_and(|after| after > seen.seq) {
                        outcomes.push(Outcome::OutOfOrder);
                        continue;
                    }
                    seen.seq = p.client_seq;
                    seen.moved = true;
                }
                let mut logged = Vec::with_capacity(append.events.len());
                for event in &append.events {
                    head += 1;
                    let record = Logged::build(head, now_ms, event)?;
                    events.insert(head, record.to_bytes().as_slice())?;
                    last_values.insert(event.kind.as_str(), event);
                    logged.push(record);
                }
                outcomes.push(Outcome::Committed(logged));
            }
            put_last_values(&mut state, last_values)?;
            for (id, seen) in applied.into_iter().filter(|(_, seen)| seen.moved) {
                if let Some(stored_ms) = seen.stored_ms {
                    by_age.remove((stored_ms, id))?;
                }
                publishers.insert(id, (seen.seq, now_ms))?;
                by_age.insert((now_ms, id), ())?;
            }
            meta.insert("head", head)?;
            reserve_after(&mut meta, head, reserve_ahead)?;
            evict_publishers(&mut publishers, &mut by_age, |_, len| len > self.limits.max)?;
            self.publishers.store(publishers.len()?, Ordering::Relaxed);
        }
        txn.commit()?;
        Ok(outcomes)
    }

    /// Clients in the publishers table.
    pub fn publishers(&self) -> u64 {
        self.publishers.load(Ordering::Relaxed)
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

    /// Writes the deferred events (reserving `reserve_ahead` numbers after
    /// them, as [`Store::commit`] does), then drops events older than
    /// `retention_ms` and all but the newest `max_events`, in one
    /// transaction. Returns how many were removed.
    pub fn trim(
        &self,
        deferred: &Deferred,
        now_ms: u64,
        retention_ms: u64,
        max_events: u64,
        reserve_ahead: u64,
    ) -> Result<u64, LogError> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        let mut removed = 0;
        let forgotten;
        let publishers_left;
        let wrote;
        {
            let mut meta = txn.open_table(META)?;
            let mut events = txn.open_table(EVENTS)?;
            let mut state = txn.open_table(STATE)?;
            let mut head = meta.get("head")?.map_or(0, |v| v.value());
            let mut last_values = HashMap::new();
            wrote = write_deferred(&mut events, &mut last_values, deferred, &mut head)?;
            put_last_values(&mut state, last_values)?;
            if wrote {
                meta.insert("head", head)?;
                reserve_after(&mut meta, head, reserve_ahead)?;
            }
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
            let mut publishers = txn.open_table(PUBLISHERS)?;
            let mut by_age = txn.open_table(PUBLISHERS_BY_AGE)?;
            let forget_before = now_ms.saturating_sub(self.limits.ttl_ms);
            forgotten = evict_publishers(&mut publishers, &mut by_age, |last_ms, len| {
                last_ms < forget_before || len > self.limits.max
            })?;
            publishers_left = publishers.len()?;
        }
        // Nothing to write, trim or forget (an idle log): no commit, so
        // nothing is written or fsync'd.
        if !wrote && removed == 0 && forgotten == 0 {
            txn.abort()?;
        } else {
            txn.commit()?;
            self.publishers.store(publishers_left, Ordering::Relaxed);
        }
        Ok(removed)
    }

    /// Number of events retained and the database file's size in bytes.
    pub fn usage(&self) -> Result<u64, LogError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        Ok(txn.open_table(EVENTS)?.len()?)
    }
}

/// Reserves the `ahead` numbers after `head` (never lowers a reservation).
fn reserve_after(meta: &mut redb::Table<&str, u64>, head: u64, ahead: u64) -> Result<(), LogError> {
    let reserved = meta.get("reserved")?.map_or(0, |v| v.value());
    if ahead > 0 && head + ahead > reserved {
        meta.insert("reserved", head + ahead)?;
    }
    Ok(())
}

/// Writes the deferred events after `head` (those a transaction that
/// failed did not write), moving it, and notes their kinds' last values
/// for [`put_last_values`]; whether there were any.
fn write_deferred<'a>(
    events: &mut redb::Table<u64, &[u8]>,
    last_values: &mut HashMap<&'a str, &'a NewEvent>,
    deferred: &'a Deferred,
    head: &mut u64,
) -> Result<bool, LogError> {
    let after = *head;
    for (event, record) in deferred.iter().filter(|(_, r)| r.seq > after) {
        *head = record.seq;
        events.insert(record.seq, record.to_bytes().as_slice())?;
        last_values.insert(event.kind.as_str(), event);
    }
    Ok(*head > after)
}

/// A publisher's highest applied `client_seq` during one commit, and the
/// time its stored entry was written (its key in the by-age table).
struct Applied {
    seq: u64,
    stored_ms: Option<u64>,
    moved: bool,
}

/// Each kind's last value of a commit (see [`put_state`]).
fn put_last_values(
    state: &mut redb::Table<&str, &[u8]>,
    last_values: HashMap<&str, &NewEvent>,
) -> Result<(), LogError> {
    last_values
        .into_values()
        .try_for_each(|event| put_state(state, event))
}

/// Keeps `event` as its kind's last value (or drops the kind, for a
/// stateless one).
fn put_state(state: &mut redb::Table<&str, &[u8]>, event: &NewEvent) -> Result<(), LogError> {
    if event.stateless {
        // A kind made stateless drops out of the state with its next event:
        // an older last value would mislead.
        state.remove(event.kind.as_str())?;
    } else {
        let mut value = Vec::new();
        rmpv::encode::write_value(&mut value, &event.payload)
            .map_err(|e| LogError::Corrupt(format!("state value: {e}")))?;
        state.insert(event.kind.as_str(), value.as_slice())?;
    }
    Ok(())
}

/// Forgets the longest-silent clients while `forget(last_publish_ms,
/// entries)` says so; returns how many it forgot.
fn evict_publishers(
    publishers: &mut redb::Table<&str, (u64, u64)>,
    by_age: &mut redb::Table<(u64, &str), ()>,
    forget: impl Fn(u64, u64) -> bool,
) -> Result<u64, LogError> {
    let mut len = publishers.len()?;
    let mut forgotten = 0u64;
    loop {
        let oldest = match by_age.first()? {
            Some((key, _)) => {
                let (ms, id) = key.value();
                forget(ms, len).then(|| (ms, id.to_string()))
            }
            None => None,
        };
        let Some((ms, id)) = oldest else { break };
        by_age.remove((ms, id.as_str()))?;
        if publishers.remove(id.as_str())?.is_some() {
            len -= 1;
        }
        forgotten += 1;
    }
    if forgotten > 0 {
        metrics::counter!("proxy_publishers_forgotten_total").increment(forgotten);
    }
    Ok(forgotten)
}

/// Moves a log file's unbounded publishers table (before `publishers_v2`)
/// into the bounded one, each client as if it had just published: an
/// upgrade keeps every client's deduplication for a full TTL.
fn migrate_publishers(txn: &redb::WriteTransaction, now_ms: u64) -> Result<(), LogError> {
    let exists = txn
        .list_tables()?
        .any(|t| redb::TableHandle::name(&t) == redb::TableHandle::name(&PUBLISHERS_V1));
    if !exists {
        return Ok(());
    }
    {
        let old = txn.open_table(PUBLISHERS_V1)?;
        let mut publishers = txn.open_table(PUBLISHERS)?;
        let mut by_age = txn.open_table(PUBLISHERS_BY_AGE)?;
        for entry in old.iter()? {
            let (id, seq) = entry?;
            publishers.insert(id.value(), (seq.value(), now_ms))?;
            by_age.insert((now_ms, id.value()), ())?;
        }
    }
    txn.delete_table(PUBLISHERS_V1)?;
    Ok(())
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
        let store = Store::open(&dir.path().join("log.redb"), PublisherLimits::default()).unwrap();
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
                &[],
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
                0,
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
        let store = Store::open(&dir.path().join("log.redb"), PublisherLimits::default()).unwrap();
        assert_eq!(store.epoch(), epoch, "epoch survives a reopen");
        assert_eq!(store.head().unwrap(), 3);
        store
            .commit(
                &[],
                &[Append {
                    events: vec![ev("c", 4)],
                    publisher: None,
                }],
                2_000,
                0,
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
        let out = store.commit(&[], &[p(1), p(2), p(2), p(1)], 0, 0).unwrap();
        assert!(matches!(out[0], Outcome::Committed(_)));
        assert!(matches!(out[1], Outcome::Committed(_)));
        assert_eq!(out[2], Outcome::Duplicate);
        assert_eq!(out[3], Outcome::Duplicate);
        assert_eq!(
            store.commit(&[], &[p(2)], 0, 0).unwrap()[0],
            Outcome::Duplicate
        );
        assert_eq!(store.head().unwrap(), 2);
    }

    /// A commit writes each kind's last value and each publisher's number
    /// once: the tables end as if every event had been written in turn.
    #[test]
    fn one_commit_of_many_publishes_leaves_the_last_values_and_numbers() {
        let (_dir, store) = open();
        let p = |client: &str, seq, kind, v| Append {
            events: vec![ev(kind, v)],
            publisher: Some(Publisher {
                client_id: client.into(),
                client_seq: seq,
                after: None,
            }),
        };
        let batch = [
            p("a", 1, "freq", 1),
            p("b", 1, "mode", 2),
            p("a", 2, "freq", 3),
            p("a", 2, "freq", 99),
            p("b", 2, "freq", 4),
            p("b", 3, "mode", 5),
        ];
        let out = store.commit(&[], &batch, 10, 0).unwrap();
        assert_eq!(out[3], Outcome::Duplicate);
        let (upto, state) = store.snapshot().unwrap();
        assert_eq!(upto, 5);
        assert_eq!(state.get("freq"), Some(&Payload::from(4)));
        assert_eq!(state.get("mode"), Some(&Payload::from(5)));
        let next = store
            .commit(&[], &[p("a", 2, "x", 0), p("b", 4, "x", 0)], 20, 0)
            .unwrap();
        assert_eq!(next[0], Outcome::Duplicate, "a's number 2 was kept");
        assert!(matches!(next[1], Outcome::Committed(_)));
        assert_eq!(store.publishers(), 2, "one entry each");
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
        let out = store
            .commit(&[], &[p(1, None), p(3, Some(2))], 0, 0)
            .unwrap();
        assert!(matches!(out[0], Outcome::Committed(_)));
        assert_eq!(out[1], Outcome::OutOfOrder);
        let out = store
            .commit(&[], &[p(2, Some(1)), p(3, Some(2))], 0, 0)
            .unwrap();
        assert!(matches!(out[0], Outcome::Committed(_)));
        assert!(
            matches!(out[1], Outcome::Committed(_)),
            "3 is not a duplicate"
        );
        // Holes (volatile publishes that never came) are fine: after 3, 7.
        assert!(matches!(
            store.commit(&[], &[p(7, Some(3))], 0, 0).unwrap()[0],
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
                    &[],
                    &[Append {
                        events: vec![ev("a", t)],
                        publisher: None,
                    }],
                    t * 1_000,
                    0,
                )
                .unwrap();
        }
        assert_eq!(
            store.trim(&[], 10_000, 5_500, 100, 0).unwrap(),
            5,
            "older than 4.5 s go"
        );
        assert_eq!(store.oldest().unwrap(), 6);
        assert_eq!(
            store.trim(&[], 10_000, 60_000, 2, 0).unwrap(),
            3,
            "then all but 2"
        );
        assert_eq!(store.oldest().unwrap(), 9);
        assert_eq!(store.trim(&[], 100_000, 1, 100, 0).unwrap(), 2);
        assert_eq!(store.oldest().unwrap(), 11, "empty log: head + 1");
        assert_eq!(store.head().unwrap(), 10, "trimming never moves the head");
    }

    fn publish(client: &str, seq: u64, after: Option<u64>) -> Append {
        Append {
            events: vec![ev("note", seq)],
            publisher: Some(Publisher {
                client_id: client.into(),
                client_seq: seq,
                after,
            }),
        }
    }

    fn open_with(limits: PublisherLimits) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("log.redb"), limits).unwrap();
        (dir, store)
    }

    #[test]
    fn stateless_events_are_logged_but_never_in_the_state() {
        let (_dir, store) = open();
        let note = |v| NewEvent {
            stateless: true,
            ..ev("note", v)
        };
        store
            .commit(
                &[],
                &[Append {
                    events: vec![ev("note", 1), ev("spot", 2)],
                    publisher: None,
                }],
                0,
                0,
            )
            .unwrap();
        assert_eq!(store.snapshot().unwrap().1.len(), 2);
        // A kind made stateless leaves the state with its next event.
        store
            .commit(
                &[],
                &[Append {
                    events: vec![note(3), note(4)],
                    publisher: None,
                }],
                0,
                0,
            )
            .unwrap();
        let (head, state) = store.snapshot().unwrap();
        assert_eq!(head, 4);
        assert_eq!(state.get("note"), None);
        assert_eq!(state.get("spot"), Some(&Payload::from(2)));
        assert_eq!(store.read_range(3, 4, 10).unwrap().len(), 2, "but logged");
    }

    #[test]
    fn the_publishers_table_keeps_at_most_max_clients_the_longest_silent_go_first() {
        let (_dir, store) = open_with(PublisherLimits {
            ttl_ms: 1_000_000,
            max: 3,
        });
        for (t, client) in ["a", "b", "c"].iter().enumerate() {
            store
                .commit(&[], &[publish(client, 5, None)], t as u64, 0)
                .unwrap();
        }
        // "a" publishes again: "b" is now the longest silent.
        store.commit(&[], &[publish("a", 6, None)], 10, 0).unwrap();
        store.commit(&[], &[publish("d", 1, None)], 11, 0).unwrap();
        assert_eq!(store.publishers(), 3);
        assert_eq!(
            store.commit(&[], &[publish("a", 6, None)], 12, 0).unwrap()[0],
            Outcome::Duplicate
        );
        assert_eq!(
            store.commit(&[], &[publish("c", 5, None)], 12, 0).unwrap()[0],
            Outcome::Duplicate
        );
        // "b" was forgotten: a resend would apply again (the documented
        // limit), and its next publishes are never taken for duplicates.
        assert!(matches!(
            store.commit(&[], &[publish("b", 6, None)], 13, 0).unwrap()[0],
            Outcome::Committed(_)
        ));
        assert_eq!(store.publishers(), 3);
    }

    #[test]
    fn a_forgotten_client_that_names_its_predecessor_is_sent_to_reconnect() {
        let (_dir, store) = open_with(PublisherLimits {
            ttl_ms: 10,
            max: 100,
        });
        store
            .commit(&[], &[publish("dash", 1, None)], 0, 0)
            .unwrap();
        store.trim(&[], 100, 1_000_000, 1_000_000, 0).unwrap();
        assert_eq!(store.publishers(), 0, "silent past the TTL");
        // Mid-session (after = 1): refused in order, never applied ahead
        // of a predecessor the store cannot vouch for.
        assert_eq!(
            store
                .commit(&[], &[publish("dash", 2, Some(1))], 101, 0)
                .unwrap()[0],
            Outcome::OutOfOrder
        );
        // Its next connection starts a fresh lane: applied.
        assert!(matches!(
            store
                .commit(&[], &[publish("dash", 2, None)], 102, 0)
                .unwrap()[0],
            Outcome::Committed(_)
        ));
    }

    #[test]
    fn trimming_forgets_clients_silent_past_the_ttl_only() {
        let (_dir, store) = open_with(PublisherLimits {
            ttl_ms: 100,
            max: 100,
        });
        store
            .commit(&[], &[publish("old", 1, None)], 1_000, 0)
            .unwrap();
        store
            .commit(&[], &[publish("new", 1, None)], 1_050, 0)
            .unwrap();
        store.trim(&[], 1_120, 1_000_000, 1_000_000, 0).unwrap();
        assert_eq!(store.publishers(), 1);
        assert_eq!(
            store
                .commit(&[], &[publish("new", 1, None)], 1_121, 0)
                .unwrap()[0],
            Outcome::Duplicate
        );
        // Survives a reopen, and so does the count.
        let path = store.path.clone();
        drop(store);
        let store = Store::open(
            &path,
            PublisherLimits {
                ttl_ms: 100,
                max: 100,
            },
        )
        .unwrap();
        assert_eq!(store.publishers(), 1);
        assert_eq!(
            store
                .commit(&[], &[publish("new", 1, None)], 1_122, 0)
                .unwrap()[0],
            Outcome::Duplicate
        );
    }

    #[test]
    fn an_older_log_files_publishers_are_kept_on_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(PUBLISHERS_V1)
                .unwrap()
                .insert("dash", 7)
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path, PublisherLimits::default()).unwrap();
        assert_eq!(store.publishers(), 1);
        assert_eq!(
            store
                .commit(&[], &[publish("dash", 7, None)], super::super::now_ms(), 0)
                .unwrap()[0],
            Outcome::Duplicate
        );
        assert!(matches!(
            store
                .commit(
                    &[],
                    &[publish("dash", 8, Some(7))],
                    super::super::now_ms(),
                    0
                )
                .unwrap()[0],
            Outcome::Committed(_)
        ));
        let db = store.db().unwrap();
        let txn = db.begin_read().unwrap();
        assert!(
            txn.open_table(PUBLISHERS_V1).is_err(),
            "the old table is gone"
        );
    }

    /// The table against a model of its rule: an entry per client with its
    /// highest applied `client_seq` and last publish time; after each
    /// commit at most `max` (the longest silent go first, ties by id),
    /// after each trim none silent longer than `ttl`.
    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        #[derive(Debug, Clone)]
        enum Op {
            /// `client` publishes: a new `client_seq` (`resend` false) or
            /// one it used before.
            Publish {
                client: u8,
                resend: u64,
                dt: u64,
            },
            Trim {
                dt: u64,
            },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0..8u8, 0..4u64, 0..4u64).prop_map(|(client, resend, dt)| Op::Publish { client, resend, dt }),
                1 => (0..6u64).prop_map(|dt| Op::Trim { dt }),
            ]
        }

        proptest! {
            // Every op is a durable commit: on tmpfs when there is one, and
            // fewer cases than the default, to stay a few seconds.
            #![proptest_config(ProptestConfig::with_cases(24))]
            #[test]
            fn dedup_matches_the_model_and_stays_bounded(ops in proptest::collection::vec(op(), 1..40), max in 1..5u64) {
                let limits = PublisherLimits { ttl_ms: 8, max };
                let shm = std::path::Path::new("/dev/shm");
                let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
                let store = Store::open(&dir.path().join("log.redb"), limits).unwrap();
                let mut model: BTreeMap<String, (u64, u64)> = BTreeMap::new();
                let mut next: BTreeMap<String, u64> = BTreeMap::new();
                let mut now = 0u64;
                for op in ops {
                    match op {
                        Op::Publish { client, resend, dt } => {
                            now += dt;
                            let id = format!("c{client}");
                            let top = next.get(&id).copied().unwrap_or(0);
                            let seq = if resend > 0 && top > 0 { top.saturating_sub(resend - 1).max(1) } else { top + 1 };
                            next.insert(id.clone(), top.max(seq));
                            let applied = model.get(&id).map_or(0, |e| e.0);
                            let expect_dup = seq <= applied;
                            let out = store.commit(&[], &[publish(&id, seq, None)], now, 0).unwrap();
                            prop_assert_eq!(out[0] == Outcome::Duplicate, expect_dup, "{} seq {}", id, seq);
                            if !expect_dup {
                                model.insert(id, (seq, now));
                            }
                            while model.len() as u64 > max {
                                let oldest = model.iter().min_by_key(|(id, e)| (e.1, (*id).clone())).map(|(id, _)| id.clone()).unwrap();
                                model.remove(&oldest);
                            }
                        }
                        Op::Trim { dt } => {
                            now += dt;
                            store.trim(&[], now, 1_000_000, 1_000_000, 0).unwrap();
                            model.retain(|_, e| e.1 >= now.saturating_sub(limits.ttl_ms));
                        }
                    }
                    prop_assert!(store.publishers() <= max);
                    prop_assert_eq!(store.publishers(), model.len() as u64);
                }
            }
        }
    }
}
