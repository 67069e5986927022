//! The embedded event log (the default): a redb file on local disk.
//!
//! Writes go through one writer thread that does **group commit**: it takes
//! every request already queued (up to a batch limit), writes them in one
//! transaction with one fsync, and only then hands the events to sessions and
//! answers the publishers. A session therefore never sends a `seq` that is not
//! durable, and a `kill -9` can never leave a client holding a `seq` the log
//! has lost.
//!
//! One exception, for an SD card's sake: the volatile events the proxy
//! logs itself (hardware readings such as the S-meter and the power; a
//! program's repeated PTT-on through the rig port; never a client publish)
//! are numbered, put in the tail and handed to sessions at once, but
//! written only with the next transaction: the next commit, the next trim
//! (every `retention_ms / 5`, at most a minute) or the shutdown. A reading every second would
//! otherwise cost an fsync'd commit every second. Their numbers are
//! reserved durably beforehand ([`RESERVE_AHEAD`] at a time), so if the
//! process dies before they are written, the log goes on after them and a
//! client that saw one gets a `coalesced` gap: it never finds one of
//! those numbers given to another event. While the writer is idle and
//! numbers are reserved, the caller's own thread hands readings out (no
//! writer thread to wake, nothing on disk); otherwise the writer does.
//!
//! Sessions read live events from an in-memory tail of recent committed
//! events and go to the database only when they are behind it; they wait on a
//! `watch` of the head `seq`. No per-session queue exists, so a slow client
//! costs nothing but its own cursor.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use shared_protocol::frame::State;
use tokio::sync::{mpsc, oneshot, watch};

use super::store::{Append, Deferred, Outcome, Publisher, Store};
use super::{
    now_ms, LogConfig, LogError, Logged, NewEvent, PublishRequest, PublishResult, Published,
};

enum Command {
    Append(Append, Reply),
    Trim(oneshot::Sender<Result<u64, Arc<LogError>>>),
    /// Commit what is queued, then stop: later requests get `Closed`.
    Shutdown,
}

/// Where the answer to an append goes.
enum Reply {
    /// To one waiting caller.
    Once(oneshot::Sender<Result<Outcome, Arc<LogError>>>),
    /// Straight into a session's lane of results, in the order its
    /// publishes were queued: the session is woken once per commit, with
    /// no task in between.
    Lane {
        client_seq: u64,
        results: mpsc::UnboundedSender<PublishResult>,
    },
}

impl Reply {
    fn send(self, result: Result<Outcome, Arc<LogError>>) {
        match self {
            Reply::Once(tx) => {
                let _ = tx.send(result);
            }
            Reply::Lane {
                client_seq,
                results,
            } => {
                let published = result.map(|outcome| match outcome {
                    Outcome::Committed(logged) => {
                        Published::Applied(logged.first().map_or(0, |e| e.seq))
                    }
                    Outcome::Duplicate => Published::Duplicate,
                    Outcome::OutOfOrder => Published::OutOfOrder,
                });
                let _ = results.send((client_seq, published));
            }
        }
    }
}

struct Shared {
    store: Store,
    tail: RwLock<VecDeque<Logged>>,
    head: watch::Sender<u64>,
    /// The same head, for reads: an atomic load instead of the watch's lock
    /// that every woken session would take.
    head_now: std::sync::atomic::AtomicU64,
    config: LogConfig,
    /// Why the log cannot store right now (a full disk), until a write
    /// succeeds again.
    problem: std::sync::Mutex<Option<String>>,
    /// The size of the state (the last value of every kind).
    usage: std::sync::Mutex<super::usage::StateUsage>,
    /// Bytes of events in `tail`.
    tail_bytes: std::sync::atomic::AtomicU64,
    /// Volatile readings handed out and not yet written (see the module).
    deferred: std::sync::Mutex<Vec<(NewEvent, Logged)>>,
    /// The newest `seq` on disk.
    durable: std::sync::atomic::AtomicU64,
    /// Numbering: whoever numbers events holds it until they are in the
    /// tail (the writer for a whole transaction).
    sequencer: std::sync::Mutex<Sequencer>,
}

/// What numbering needs beyond the head.
struct Sequencer {
    /// Numbers up to here may be handed out before they are written.
    reserved: u64,
    /// A commit failed: it may have reached the disk all the same (see
    /// [`catch_up_with_disk`]); nothing is numbered outside a commit until
    /// the writer has looked.
    failed: bool,
    /// The writer has written the last readings: none is handed out after.
    closed: bool,
}

impl Shared {
    /// The numbering; a poisoned lock is taken as it is (two numbers, no
    /// invariant a panic could have broken halfway).
    fn sequencer(&self) -> std::sync::MutexGuard<'_, Sequencer> {
        self.sequencer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn problem(&self) -> Option<String> {
        self.problem.lock().ok().and_then(|p| p.clone())
    }

    fn set_problem(&self, problem: Option<String>) {
        metrics::gauge!("proxy_log_writable").set(if problem.is_some() { 0.0 } else { 1.0 });
        if let Ok(mut slot) = self.problem.lock() {
            *slot = problem;
        }
    }

    /// After a failed write: reopens the file and tries a small write.
    /// Nothing acknowledged is lost or repeated: a failed transaction
    /// applied nothing (or, when it failed after reaching the disk, its
    /// events are handed out afterwards: [`catch_up_with_disk`]), and the
    /// tail and head hold only commits and numbered readings.
    fn recover(&self) -> bool {
        let result = self
            .store
            .reopen()
            .and_then(|()| self.store.probe(now_ms()));
        match result {
            Ok(()) => {
                tracing::warn!("EVENT_LOG_WRITABLE: the event log stores again");
                self.set_problem(None);
                true
            }
            Err(e) => {
                self.set_problem(Some(e.to_string()));
                false
            }
        }
    }
}

/// How many `seq`s are reserved after the head for readings handed out
/// before they are written. Every commit or trim that writes readings
/// reserves again, in the same transaction, so a minute of
/// readings at one a second never needs a commit of its own; and it stays
/// below `max_behind`'s default (1,000), so after a `kill -9` a client that
/// was at the head is not sent back to a snapshot by the hole.
const RESERVE_AHEAD: u64 = 256;
/// At most this many readings wait to be written (and never more than half
/// the tail, so a session reads every one of them from memory).
const MAX_DEFERRED: usize = 1_024;

/// How often a log that cannot store tries again by itself.
const RECOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A cloneable handle to the embedded log.
///
/// The writer's queue is unbounded: every producer bounds itself (a
/// session by its publish window, the bridge by its `LogQueue`, `append`
/// and `trim` callers by awaiting their answer), and a session can hand a
/// publish over without waiting, so the writer finds a whole window queued.
#[derive(Clone)]
pub struct Embedded {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    writer: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Embedded {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LogError::Storage(format!("creating {}: {e}", dir.display())))?;
        let path: PathBuf = dir.join("events.redb");
        let store = Store::open(&path, config.publishers)?;
        metrics::gauge!("proxy_publishers").set(store.publishers() as f64);
        let head = store.head()?;
        // Warm the tail so sessions that resume right after a restart are
        // served from memory.
        let from = head.saturating_sub(config.tail_events as u64) + 1;
        let tail: VecDeque<Logged> = store.read_range(from, head, config.tail_events)?.into();
        let tail_bytes = tail.iter().map(|e| e.frame.len() as u64).sum();
        let mut usage = super::usage::StateUsage::default();
        for (kind, payload) in store.snapshot()?.1.iter() {
            let size = Logged::build(0, 0, &NewEvent::reliable(kind.clone(), payload.clone()))
                .map_or(0, |e| e.frame.len() as u64);
            usage.set(kind, size);
        }
        let shared = Arc::new(Shared {
            store,
            tail: RwLock::new(tail),
            head: watch::Sender::new(head),
            head_now: std::sync::atomic::AtomicU64::new(head),
            config,
            problem: std::sync::Mutex::new(None),
            usage: std::sync::Mutex::new(usage),
            tail_bytes: std::sync::atomic::AtomicU64::new(tail_bytes),
            deferred: std::sync::Mutex::new(Vec::new()),
            durable: std::sync::atomic::AtomicU64::new(head),
            sequencer: std::sync::Mutex::new(Sequencer {
                reserved: head,
                failed: false,
                closed: false,
            }),
        });
        shared.set_problem(None);
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = shared.clone();
        let writer = std::thread::Builder::new()
            .name("eventlog-writer".into())
            .spawn(move || writer_loop(worker, rx))
            .map_err(|e| LogError::Storage(format!("starting the writer thread: {e}")))?;
        Ok(Embedded {
            tx,
            shared,
            writer: Arc::new(std::sync::Mutex::new(Some(writer))),
        })
    }

    pub fn epoch(&self) -> u64 {
        self.shared.store.epoch()
    }

    pub fn head(&self) -> u64 {
        self.shared.head_now.load(Ordering::Acquire)
    }

    /// The newest `seq` on disk: behind [`Embedded::head`] while readings
    /// wait to be written.
    pub fn durable_head(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Wakes whenever the durable head moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
    }

    async fn request(&self, append: Append) -> Result<Outcome, Arc<LogError>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Append(append, Reply::Once(tx)))
            .map_err(|_| Arc::new(LogError::Closed))?;
        rx.await.map_err(|_| Arc::new(LogError::Closed))?
    }

    /// Appends events (hardware readings, link events); returns them with
    /// their sequence numbers once durable (readings: once numbered, see
    /// the module).
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Logged>, Arc<LogError>> {
        if let Some(logged) = self.hand_out(&events) {
            return Ok(logged);
        }
        match self
            .request(Append {
                events,
                publisher: None,
            })
            .await?
        {
            Outcome::Committed(logged) => Ok(logged),
            Outcome::Duplicate | Outcome::OutOfOrder => Ok(Vec::new()),
        }
    }

    /// Readings handed out on the caller's thread, if the writer is idle
    /// and their numbers are reserved; `None` (nothing done) otherwise.
    fn hand_out(&self, events: &[NewEvent]) -> Option<Vec<Logged>> {
        let mut sequencer = self.shared.sequencer.try_lock().ok()?;
        let outcomes = hold_back(&self.shared, &mut sequencer, &[events], Holder::Caller)?;
        match outcomes.into_iter().next() {
            Some(Outcome::Committed(logged)) => Some(logged),
            _ => None,
        }
    }

    /// Appends a client's publish, at most once per `(client_id, client_seq)`.
    #[cfg(test)]
    pub async fn publish(
        &self,
        client_id: &str,
        client_seq: u64,
        event: NewEvent,
    ) -> Result<Published, Arc<LogError>> {
        let (results, mut rx) = mpsc::unbounded_channel();
        let request = PublishRequest {
            client_seq,
            after: None,
            event,
        };
        self.submit(client_id, request, &results)?;
        drop(results);
        match rx.recv().await {
            Some((_, result)) => result,
            None => Err(Arc::new(LogError::Closed)),
        }
    }

    /// Queues a client's publish behind everything queued before, without
    /// waiting; its answer comes into `results` with its `client_seq`.
    /// Calls made one after the other reach the store in that order, and
    /// their answers come back in it (see [`super::EventLog::publisher`]).
    pub fn submit(
        &self,
        client_id: &str,
        request: PublishRequest,
        results: &mpsc::UnboundedSender<PublishResult>,
    ) -> Result<(), Arc<LogError>> {
        let append = Append {
            events: vec![request.event],
            publisher: Some(Publisher {
                client_id: client_id.to_string(),
                client_seq: request.client_seq,
                after: request.after,
            }),
        };
        let reply = Reply::Lane {
            client_seq: request.client_seq,
            results: results.clone(),
        };
        self.tx
            .send(Command::Append(append, reply))
            .map_err(|_| Arc::new(LogError::Closed))
    }

    /// Up to `limit` events from `from` on, from memory when possible.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<Logged>, LogError> {
        let head = self.head();
        if from > head || limit == 0 {
            return Ok(Vec::new());
        }
        {
            let tail = self.shared.tail.read().map_err(|_| LogError::Closed)?;
            if let Some(first) = tail.front() {
                if from >= first.seq {
                    // By seq, not offset: the numbering may have a hole
                    // (numbers reserved and never used, at a restart).
                    let start = tail.partition_point(|e| e.seq < from);
                    return Ok(tail.range(start..).take(limit).cloned().collect());
                }
            }
        }
        self.shared.store.read_range(from, head, limit)
    }

    /// [`Embedded::read`] lent to `f` instead of copied: from the tail under
    /// its read lock (no per-event clone, whose reference counts every
    /// session would bounce between the cores), from disk otherwise.
    pub fn read_with<R>(
        &self,
        from: u64,
        limit: usize,
        f: impl FnOnce(Result<&[&Logged], LogError>) -> R,
    ) -> R {
        let head = self.head();
        if from > head || limit == 0 {
            return f(Ok(&[]));
        }
        let tail = match self.shared.tail.read() {
            Ok(tail) => tail,
            Err(_) => return f(Err(LogError::Closed)),
        };
        if let Some(first) = tail.front() {
            if from >= first.seq {
                let start = tail.partition_point(|e| e.seq < from);
                let events: Vec<&Logged> = tail.range(start..).take(limit).collect();
                return f(Ok(&events));
            }
        }
        drop(tail);
        match self.shared.store.read_range(from, head, limit) {
            Ok(owned) => f(Ok(&owned.iter().collect::<Vec<_>>())),
            Err(e) => f(Err(e)),
        }
    }

    /// The oldest `seq` still replayable.
    pub fn oldest(&self) -> Result<u64, LogError> {
        self.shared.store.oldest()
    }

    /// `(upto, state)`: the last value of every kind, current as of `upto`
    /// (readings not yet written included).
    pub fn snapshot(&self) -> Result<(u64, State), LogError> {
        // Held across the read, so the list cannot be emptied and refilled
        // in between (the writer only copies it under the lock to write it).
        let deferred = self.shared.deferred.lock().map_err(|_| LogError::Closed)?;
        let (stored, mut state) = self.shared.store.snapshot()?;
        let mut upto = stored;
        // Those written meanwhile are in the stored state already.
        for (event, record) in deferred.iter().filter(|(_, r)| r.seq > stored) {
            state.insert(event.kind.clone(), event.payload.clone());
            upto = record.seq;
        }
        Ok((upto, state))
    }

    /// Applies retention now (the proxy also runs this on a timer).
    pub async fn trim(&self) -> Result<u64, Arc<LogError>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Trim(tx))
            .map_err(|_| Arc::new(LogError::Closed))?;
        rx.await.map_err(|_| Arc::new(LogError::Closed))?
    }

    /// Why the log cannot store right now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        self.shared.problem()
    }

    pub fn with_usage<T>(&self, f: impl FnOnce(&super::usage::StateUsage) -> T) -> T {
        self.with_usage_mut(|u| f(u))
    }

    pub fn with_usage_mut<T>(&self, f: impl FnOnce(&mut super::usage::StateUsage) -> T) -> T {
        match self.shared.usage.lock() {
            Ok(mut u) => f(&mut u),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Clients in the publishers table.
    pub fn publishers(&self) -> u64 {
        self.shared.store.publishers()
    }

    /// Events currently retained on disk.
    pub fn retained(&self) -> Result<u64, LogError> {
        self.shared.store.usage()
    }

    /// Commits what is queued, stops the writer and waits for it. Every
    /// clone of the handle gets `Closed` for writes afterwards.
    pub async fn close(&self) {
        let _ = self.tx.send(Command::Shutdown);
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = writer {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

fn writer_loop(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut batch: Vec<Append> = Vec::new();
    let mut replies = Vec::new();
    let mut running = true;
    let mut last_recovery = Instant::now();
    while running {
        let first = if shared.problem().is_some() {
            wait_recovering(&shared, &mut rx, &mut last_recovery)
        } else {
            rx.blocking_recv()
        };
        let Some(first) = first else {
            break;
        };
        let mut next = Some(first);
        // Group commit: everything already queued goes into this transaction.
        while let Some(command) = next.take() {
            match command {
                Command::Append(append, reply) => {
                    batch.push(append);
                    replies.push(reply);
                }
                Command::Trim(reply) => {
                    if shared.problem().is_some() && last_recovery.elapsed() >= RECOVER_EVERY {
                        last_recovery = Instant::now();
                        shared.recover();
                    }
                    let config = shared.config;
                    let mut sequencer = shared.sequencer();
                    let result = with_deferred(&shared, &mut sequencer, |deferred| {
                        shared.store.trim(
                            deferred,
                            now_ms(),
                            config.retention_ms,
                            config.max_events,
                            RESERVE_AHEAD,
                        )
                    })
                    .map(|(removed, written)| {
                        if let Some(last) = written {
                            sequencer.reserved = sequencer.reserved.max(last + RESERVE_AHEAD);
                        }
                        removed
                    })
                    .map_err(Arc::new);
                    // Answered after the numbering is free again.
                    drop(sequencer);
                    if let Ok(n) = &result {
                        if *n > 0 {
                            metrics::counter!("proxy_log_trimmed_total").increment(*n);
                        }
                    }
                    metrics::gauge!("proxy_publishers").set(shared.store.publishers() as f64);
                    let _ = reply.send(result);
                }
                Command::Shutdown => running = false,
            }
            if running && batch.len() < shared.config.max_batch {
                next = rx.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let mut sequencer = shared.sequencer();
        if shared.problem().is_some() {
            shared.recover();
        }
        if sequencer.failed && shared.problem().is_none() && catch_up_with_disk(&shared) {
            sequencer.failed = false;
        }
        if batch.iter().all(|a| a.publisher.is_none()) {
            let events: Vec<&[NewEvent]> = batch.iter().map(|a| a.events.as_slice()).collect();
            if let Some(outcomes) = hold_back(&shared, &mut sequencer, &events, Holder::Writer) {
                // Answered after the numbering is free again.
                drop(sequencer);
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    reply.send(Ok(outcome));
                }
                batch.clear();
                continue;
            }
        }
        let started = Instant::now();
        // Readings are being held back: reserve again while writing them.
        let result = with_deferred(&shared, &mut sequencer, |deferred| {
            let ahead = if deferred.is_empty() {
                0
            } else {
                RESERVE_AHEAD
            };
            shared.store.commit(deferred, &batch, now_ms(), ahead)
        });
        metrics::histogram!("proxy_log_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("proxy_log_batch_requests").record(batch.len() as f64);
        match result {
            Ok((outcomes, readings)) => {
                metrics::gauge!("proxy_publishers").set(shared.store.publishers() as f64);
                publish_to_tail(&shared, &outcomes);
                let head = shared.head_now.load(Ordering::Acquire);
                shared.durable.store(head, Ordering::Release);
                if readings.is_some() {
                    sequencer.reserved = sequencer.reserved.max(head + RESERVE_AHEAD);
                }
                drop(sequencer);
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = batch.len(), "event log commit failed; nothing in the batch was applied; retrying every second");
                shared.set_problem(Some(e.to_string()));
                sequencer.failed = true;
                drop(sequencer);
                metrics::counter!("proxy_log_commit_failures_total").increment(1);
                let e = Arc::new(e);
                for reply in replies.drain(..) {
                    reply.send(Err(e.clone()));
                }
            }
        }
        batch.clear();
    }
    // The readings not yet written; then nothing is handed out unwritten,
    // and the next start needs to skip no numbers.
    let mut sequencer = shared.sequencer();
    sequencer.closed = true;
    let written = with_deferred(&shared, &mut sequencer, |deferred| {
        shared.store.commit(deferred, &[], now_ms(), 0)
    })
    .and_then(|_| {
        shared
            .store
            .reserve(shared.head_now.load(Ordering::Acquire))
    });
    if let Err(e) = written {
        tracing::error!(error = %e, "writing the last volatile readings at shutdown failed; the next start goes on after them");
    }
    drop(sequencer);
    // Stopped: whatever is still queued, or comes, is told so (a session's
    // lane is never left waiting for an answer).
    rx.close();
    while let Some(command) = rx.blocking_recv() {
        match command {
            Command::Append(_, reply) => reply.send(Err(Arc::new(LogError::Closed))),
            Command::Trim(reply) => {
                let _ = reply.send(Err(Arc::new(LogError::Closed)));
            }
            Command::Shutdown => {}
        }
    }
}

/// The next command, while the log cannot store: tries to recover every
/// [`RECOVER_EVERY`] meanwhile, and waits normally once it has.
fn wait_recovering(
    shared: &Shared,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    last_try: &mut Instant,
) -> Option<Command> {
    loop {
        match rx.try_recv() {
            Ok(command) => return Some(command),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        if last_try.elapsed() >= RECOVER_EVERY {
            *last_try = Instant::now();
            if shared.recover() {
                return rx.blocking_recv();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs a write that takes the readings not yet written along; once it
/// succeeds they are on disk. Returns the newest reading written, if any.
fn with_deferred<T>(
    shared: &Shared,
    _numbering: &mut Sequencer,
    write: impl FnOnce(&Deferred) -> Result<T, LogError>,
) -> Result<(T, Option<u64>), LogError> {
    // A copy, so that `snapshot` never waits for an fsync.
    let pending = shared
        .deferred
        .lock()
        .map_err(|_| LogError::Closed)?
        .clone();
    let result = write(&pending)?;
    let written = pending.last().map(|(_, r)| r.seq);
    if let Some(last) = written {
        let mut deferred = shared.deferred.lock().map_err(|_| LogError::Closed)?;
        // Only the holder of the numbering (`_numbering`) adds to the
        // list: what was copied is still its front.
        deferred.drain(..pending.len());
        shared.durable.fetch_max(last, Ordering::AcqRel);
    }
    Ok((result, written))
}

/// After a failed commit, once the log stores again: a commit can fail
/// after it reached the disk (an error from the fsync); then the store's
/// head is ahead of the one sessions know, and those events were never
/// handed out. They are now, before anything else is numbered, so no
/// number is given twice (their publishers, told it failed, send again and
/// hear `Duplicate`).
/// False if it could not look (the flag stays, and nothing is numbered
/// outside a commit meanwhile).
fn catch_up_with_disk(shared: &Shared) -> bool {
    let ours = shared.head_now.load(Ordering::Acquire);
    let Ok(stored) = shared.store.head() else {
        return false;
    };
    if stored <= ours {
        return true;
    }
    match shared.store.read_range(ours + 1, stored, usize::MAX) {
        Ok(events) => {
            tracing::warn!(
                from = ours + 1,
                to = stored,
                "a commit reported as failed had reached the disk; its events are handed out now"
            );
            publish_to_tail(shared, &[Outcome::Committed(events)]);
            shared.head_now.fetch_max(stored, Ordering::AcqRel);
            shared.durable.fetch_max(stored, Ordering::AcqRel);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read back events after a failed commit");
            false
        }
    }
}

/// Who is handing readings out.
#[derive(Clone, Copy, PartialEq)]
enum Holder {
    /// The writer: it may wait for the list and write a reservation.
    Writer,
    /// A caller's thread: it may do neither, and leaves the batch to the
    /// writer instead.
    Caller,
}

/// Hands out batches of the station's volatile readings without writing
/// them (see the module): numbered, kept for the next transaction, put in
/// the tail. `None`, with nothing done, when a batch holds anything else,
/// there is no room, the log has a problem, or (for a caller) the list is
/// busy or the numbers are not reserved yet.
fn hold_back(
    shared: &Shared,
    sequencer: &mut Sequencer,
    batch: &[&[NewEvent]],
    holder: Holder,
) -> Option<Vec<Outcome>> {
    let readings = batch
        .iter()
        .all(|events| events.iter().all(|e| e.volatile && !e.stateless));
    if !readings || sequencer.failed || sequencer.closed || shared.problem().is_some() {
        return None;
    }
    let mut deferred = match holder {
        Holder::Writer => shared.deferred.lock().ok()?,
        Holder::Caller => shared.deferred.try_lock().ok()?,
    };
    let count: usize = batch.iter().map(|events| events.len()).sum();
    let room = MAX_DEFERRED.min(shared.config.tail_events / 2);
    if deferred.len() + count > room {
        return None;
    }
    let mut seq = shared.head_now.load(Ordering::Acquire);
    let now = now_ms();
    let mut outcomes = Vec::with_capacity(batch.len());
    for events in batch {
        let mut logged = Vec::with_capacity(events.len());
        for event in *events {
            seq += 1;
            logged.push(Logged::build(seq, now, event).ok()?);
        }
        outcomes.push(Outcome::Committed(logged));
    }
    if seq > sequencer.reserved {
        if holder == Holder::Caller {
            return None;
        }
        if let Err(e) = shared.store.reserve(seq + RESERVE_AHEAD) {
            tracing::warn!(error = %e, "could not reserve sequence numbers for volatile readings; committing them at once");
            return None;
        }
        sequencer.reserved = seq + RESERVE_AHEAD;
    }
    for (events, outcome) in batch.iter().zip(&outcomes) {
        if let Outcome::Committed(logged) = outcome {
            for (event, record) in events.iter().zip(logged) {
                deferred.push((event.clone(), record.clone()));
            }
        }
    }
    drop(deferred);
    publish_to_tail(shared, &outcomes);
    Some(outcomes)
}

fn publish_to_tail(shared: &Shared, outcomes: &[Outcome]) {
    let mut newest = None;
    let mut appended = 0;
    if let Ok(mut tail) = shared.tail.write() {
        for outcome in outcomes {
            if let Outcome::Committed(events) = outcome {
                for event in events {
                    newest = Some(event.seq);
                    appended += 1;
                    let limit = shared.config.memory_bytes;
                    let mut bytes = shared
                        .tail_bytes
                        .fetch_add(event.frame.len() as u64, Ordering::Relaxed)
                        + event.frame.len() as u64;
                    tail.push_back(event.clone());
                    // Bounded by count and by bytes (never below one event).
                    while tail.len() > shared.config.tail_events.max(1)
                        || (bytes > limit && tail.len() > 1)
                    {
                        let Some(old) = tail.pop_front() else { break };
                        bytes -= old.frame.len() as u64;
                        shared
                            .tail_bytes
                            .fetch_sub(old.frame.len() as u64, Ordering::Relaxed);
                    }
                    if let Ok(mut usage) = shared.usage.lock() {
                        if event.stateless {
                            usage.remove(&event.kind);
                        } else {
                            usage.set(&event.kind, event.frame.len() as u64);
                        }
                    }
                }
            }
        }
    }
    if let Some(seq) = newest {
        metrics::counter!("proxy_events_appended_total").increment(appended);
        shared.head_now.store(seq, Ordering::Release);
        shared.head.send_replace(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::frame::Payload;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_get_gap_free_seqs_and_wake_readers() {
        let dir = tempfile::tempdir().unwrap();
        let log = Embedded::open(
            dir.path(),
            LogConfig {
                tail_events: 16,
                ..Default::default()
            },
        )
        .unwrap();
        let mut head = log.subscribe();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25u64 {
                    log.append(vec![NewEvent::reliable(format!("k{t}"), Payload::from(i))])
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        head.changed().await.unwrap();
        assert_eq!(log.head(), 200);
        // From memory (the tail) and from disk, the same gap-free sequence.
        let recent = log.read(190, 100).unwrap();
        assert_eq!(
            recent.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (190..=200).collect::<Vec<_>>()
        );
        let old = log.read(1, 500).unwrap();
        assert_eq!(
            old.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=200).collect::<Vec<_>>()
        );
    }

    fn meter(db: i64) -> NewEvent {
        NewEvent::volatile("radio.meter", Payload::from(db))
    }

    #[tokio::test]
    async fn readings_are_handed_out_on_the_callers_thread_once_numbers_are_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let log = Embedded::open(dir.path(), LogConfig::default()).unwrap();
        // Nothing reserved yet: the writer must write a reservation first.
        assert!(log.hand_out(&[meter(1)]).is_none());
        assert_eq!(log.append(vec![meter(2)]).await.unwrap()[0].seq, 1);
        let logged = log.hand_out(&[meter(3), meter(4)]).unwrap();
        assert_eq!(logged.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(log.head(), 3);
        assert_eq!(log.durable_head(), 0);
        // Anything but readings goes to the writer.
        assert!(log
            .hand_out(&[NewEvent::reliable("note", Payload::from(1))])
            .is_none());
        // The writer busy numbering: the caller does not wait for it.
        let sequencer = log.shared.sequencer();
        assert!(log.hand_out(&[meter(5)]).is_none());
        drop(sequencer);
        log.close().await;
        assert!(log.hand_out(&[meter(6)]).is_none());
    }

    fn payload_of(event: &Logged) -> i64 {
        let (_, payload) = event.resequenced(event.seq).unwrap();
        payload.as_i64().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn readings_from_many_threads_and_commits_share_one_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let log = Embedded::open(dir.path(), LogConfig::default()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..8i64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..300i64 {
                    let value = t * 1_000 + i;
                    let event = if t % 2 == 0 {
                        meter(value)
                    } else {
                        NewEvent::reliable("note", Payload::from(value))
                    };
                    let logged = log.append(vec![event]).await.unwrap();
                    got.push((logged[0].seq, value));
                    if i % 97 == 0 {
                        log.trim().await.unwrap();
                    }
                }
                got
            }));
        }
        let mut handed = Vec::new();
        for t in tasks {
            handed.extend(t.await.unwrap());
        }
        handed.sort();
        let seqs: Vec<u64> = handed.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=2_400).collect::<Vec<_>>(), "each number once");
        // Written at shutdown; on disk, each number is the event it was
        // handed out as.
        log.close().await;
        drop(log);
        let log = Embedded::open(dir.path(), LogConfig::default()).unwrap();
        let stored: Vec<(u64, i64)> = log
            .read(1, 5_000)
            .unwrap()
            .iter()
            .map(|e| (e.seq, payload_of(e)))
            .collect();
        assert_eq!(stored, handed);
    }

    /// The station's readings reach sessions at once and the disk with the
    /// next transaction: a commit, a trim or the shutdown.
    #[tokio::test]
    async fn volatile_readings_are_handed_out_at_once_and_written_with_the_next_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let log = Embedded::open(dir.path(), LogConfig::default()).unwrap();
        let on_disk = |log: &Embedded| log.shared.store.read_range(1, 100, 100).unwrap().len();
        assert_eq!(log.append(vec![meter(-20)]).await.unwrap()[0].seq, 1);
        assert_eq!((log.head(), log.durable_head(), on_disk(&log)), (1, 0, 0));
        assert_eq!(log.read(1, 10).unwrap().len(), 1, "readable at once");
        let (upto, state) = log.snapshot().unwrap();
        assert_eq!(
            (upto, state.get("radio.meter")),
            (1, Some(&Payload::from(-20)))
        );
        // A reliable event is written after the readings before it.
        let note = log
            .append(vec![NewEvent::reliable("note", Payload::Nil)])
            .await
            .unwrap();
        assert_eq!(note[0].seq, 2);
        assert_eq!((log.durable_head(), on_disk(&log)), (2, 2));
        // A trim writes them.
        log.append(vec![meter(-14)]).await.unwrap();
        assert_eq!(on_disk(&log), 2);
        log.trim().await.unwrap();
        assert_eq!((log.durable_head(), on_disk(&log)), (3, 3));
        // So does the shutdown.
        log.append(vec![meter(-8)]).await.unwrap();
        log.close().await;
        drop(log);
        let log = Embedded::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(log.head(), 4);
        let (upto, state) = log.snapshot().unwrap();
        assert_eq!(
            (upto, state.get("radio.meter")),
            (4, Some(&Payload::from(-8)))
        );
    }

    /// A stop that never wrote the readings handed out (a `kill -9`, a power
    /// cut: here the file as it is on disk meanwhile, copied) leaves their
    /// numbers reserved: the next run goes on after them, so no client that
    /// saw one finds its number on another event.
    #[tokio::test]
    async fn numbers_handed_out_and_never_written_are_never_used_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = Embedded::open(dir.path(), LogConfig::default()).unwrap();
        log.append(vec![NewEvent::reliable("note", Payload::Nil)])
            .await
            .unwrap();
        for db in 0..3 {
            log.append(vec![meter(db)]).await.unwrap();
        }
        assert_eq!(log.head(), 4);
        let crashed = tempfile::tempdir().unwrap();
        std::fs::copy(
            dir.path().join("events.redb"),
            crashed.path().join("events.redb"),
        )
        .unwrap();
        log.close().await;
        drop(log);
        let log = Embedded::open(crashed.path(), LogConfig::default()).unwrap();
        // Reserved when the first reading (2) was handed out.
        assert_eq!(log.head(), 2 + RESERVE_AHEAD, "after the reserved numbers");
        let next = log
            .append(vec![NewEvent::reliable("note", Payload::Nil)])
            .await
            .unwrap();
        let seqs: Vec<u64> = log.read(1, 10).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, next[0].seq], "a hole, never a number used twice");
        let after: Vec<u64> = log
            .read(next[0].seq, 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            after,
            [next[0].seq],
            "read by number across the hole, from memory"
        );
        assert!(next[0].seq > 4);
        // A clean stop leaves no hole.
        let log = Embedded::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(log.head(), 4);
    }

    #[tokio::test]
    async fn publish_dedup_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Embedded::open(dir.path(), LogConfig::default()).unwrap();
            let ev = NewEvent::reliable("note", Payload::from("hi"));
            assert_eq!(
                log.publish("dash", 1, ev.clone()).await.unwrap(),
                Published::Applied(1)
            );
            assert_eq!(
                log.publish("dash", 1, ev).await.unwrap(),
                Published::Duplicate
            );
            log.close().await;
            let late = log
                .append(vec![NewEvent::reliable("late", Payload::Nil)])
                .await;
            assert!(matches!(
                late.as_ref().map_err(|e| &**e),
                Err(LogError::Closed)
            ));
        }
        let log = Embedded::open(dir.path(), LogConfig::default()).unwrap();
        let ev = NewEvent::reliable("note", Payload::from("hi"));
        assert_eq!(
            log.publish("dash", 1, ev.clone()).await.unwrap(),
            Published::Duplicate
        );
        assert_eq!(
            log.publish("dash", 2, ev).await.unwrap(),
            Published::Applied(2)
        );
        assert_eq!(log.read(1, 10).unwrap().len(), 2, "tail warmed from disk");
    }
}
