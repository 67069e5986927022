//! The event log: the proxy's single source of truth and its hot path.
//!
//! One interface, two implementations:
//!
//! - [`embedded`] (the default): a redb file on local disk, group-committed
//!   by one writer thread. One proxy, nothing else to run.
//! - [`jetstream`] (`--log nats://host:port`): a NATS JetStream stream shared
//!   by several proxies. `seq` is the stream's sequence, `epoch` the stream's
//!   creation time, so any proxy on the stream can resume any client.
//!
//! Either way a session never sees a `seq` that is not durable, reads are
//! served from memory where possible, and sessions wait on a `watch` of the
//! head `seq` instead of per-session queues.

mod embedded;
pub mod jetstream;
mod kv;
mod laststate;
mod lease;
mod peers;
mod record;
pub mod sessions;
pub mod stateless;
mod store;
mod usage;

use std::path::Path;
use std::sync::Arc;

use shared_protocol::frame::State;
use tokio::sync::{mpsc, watch};

pub use jetstream::NatsConfig;
pub use record::{Logged, NewEvent};
pub use stateless::StatelessKinds;
pub use store::PublisherLimits;
pub use usage::{payload_size, StateLimits};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event log storage: {0}")]
    Storage(String),
    #[error("the disk is full: {0}")]
    DiskFull(String),
    #[error("event log is corrupt: {0}")]
    Corrupt(String),
    #[error("event log is closed")]
    Closed,
    #[error("could not encode an event: {0}")]
    Encode(#[from] shared_protocol::frame::EncodeError),
    #[error("NATS JetStream: {0}")]
    Nats(String),
}

/// Every redb error funnels through here, so "disk full" is recognised once.
fn storage_error(e: impl Into<redb::Error>) -> LogError {
    let e: redb::Error = e.into();
    if let redb::Error::Io(io) = &e {
        if io.raw_os_error() == Some(28) || io.kind() == std::io::ErrorKind::StorageFull {
            return LogError::DiskFull(io.to_string());
        }
    }
    LogError::Storage(e.to_string())
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for LogError {
            fn from(e: $t) -> Self { storage_error(e) }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Events older than this are trimmed (and replayed as a `Gap`).
    pub retention_ms: u64,
    /// At most this many events are kept on disk.
    pub max_events: u64,
    /// Committed events kept in memory for live fan-out.
    pub tail_events: usize,
    /// Most requests written in one transaction.
    pub max_batch: usize,
    /// Bytes of events kept in memory (the embedded log's tail, a shared
    /// log's mirror), whatever their count.
    pub memory_bytes: u64,
    /// The publishers table's bounds (embedded log; a shared log's
    /// deduplication is the stream's duplicate window).
    pub publishers: PublisherLimits,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            retention_ms: 5 * 60_000,
            max_events: 100_000,
            tail_events: 4_096,
            max_batch: 512,
            memory_bytes: 64 * 1024 * 1024,
            publishers: PublisherLimits::default(),
        }
    }
}

/// Result of a client publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    Applied(u64),
    Duplicate,
    /// It overtook the publish handed over before it; not applied.
    OutOfOrder,
}

/// One publish for [`EventLog::publisher`].
#[derive(Debug)]
pub struct PublishRequest {
    pub client_seq: u64,
    /// The `client_seq` handed over just before this one on the same lane.
    pub after: Option<u64>,
    pub event: NewEvent,
}

/// What became of a [`PublishRequest`], with its `client_seq`.
pub type PublishResult = (u64, Result<Published, Arc<LogError>>);

/// One session's way into the log for its publishes (see
/// [`EventLog::publisher`]).
pub enum PublishLane {
    Direct {
        log: embedded::Embedded,
        client_id: String,
        results: mpsc::UnboundedSender<PublishResult>,
    },
    Task(mpsc::UnboundedSender<PublishRequest>),
}

impl PublishLane {
    /// Hands a publish over, behind those handed over before; `Err` once the
    /// log is closed.
    pub fn send(&self, request: PublishRequest) -> Result<(), LogError> {
        match self {
            PublishLane::Direct {
                log,
                client_id,
                results,
            } => log
                .submit(client_id, request, results)
                .map_err(|_| LogError::Closed),
            PublishLane::Task(tx) => tx.send(request).map_err(|_| LogError::Closed),
        }
    }
}

/// A cloneable handle to whichever log the proxy was started with.
#[derive(Clone)]
pub enum EventLog {
    Embedded(embedded::Embedded),
    /// Boxed in an `Arc`: the NATS handles are large and the log is cloned
    /// into every session.
    JetStream(Arc<jetstream::JetLog>),
}

/// Calls the same method on whichever backend this is.
macro_rules! each {
    ($self:ident, $log:ident => $call:expr) => {
        match $self {
            EventLog::Embedded($log) => $call,
            EventLog::JetStream($log) => $call,
        }
    };
}

impl EventLog {
    /// Opens (or creates) the embedded log in `dir`.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Self, LogError> {
        embedded::Embedded::open(dir, config).map(EventLog::Embedded)
    }

    /// Joins (or creates) the JetStream stream; see [`jetstream::JetLog`].
    pub async fn connect(nats: &NatsConfig, config: LogConfig) -> Result<Self, LogError> {
        jetstream::JetLog::connect(nats, config)
            .await
            .map(|log| EventLog::JetStream(Arc::new(log)))
    }

    /// `"embedded"` or `"jetstream"`, for logs and `/stats`.
    pub fn backend(&self) -> &'static str {
        match self {
            EventLog::Embedded(_) => "embedded",
            EventLog::JetStream(_) => "jetstream",
        }
    }

    /// For `/stats`: the backend, and for a shared log whether NATS is
    /// reachable right now.
    pub fn describe(&self) -> serde_json::Value {
        match self {
            EventLog::Embedded(log) => serde_json::json!({
                "backend": "embedded",
                "writable": log.problem().is_none(),
                "problem": log.problem(),
            }),
            EventLog::JetStream(log) => {
                let peers: serde_json::Map<String, serde_json::Value> = log
                    .peer_offsets()
                    .into_iter()
                    .map(|(origin, offset)| (origin, offset.into()))
                    .collect();
                serde_json::json!({
                    "backend": "jetstream",
                    "nats_connected": log.connected(),
                    "peer_clock_offsets_ms": peers,
                })
            }
        }
    }

    /// Why the log cannot store events right now (for `/healthz`), if it
    /// cannot: a full disk, or no NATS.
    pub fn problem(&self) -> Option<String> {
        match self {
            EventLog::Embedded(log) => log.problem(),
            EventLog::JetStream(log) => {
                (!log.connected()).then(|| "NATS is unreachable; publishes wait for it".to_string())
            }
        }
    }

    /// On a shared log, how long ago the proxy `origin` stamped `ts_ms`,
    /// judged by its clock ticks (see `peers.rs`); `None` on the embedded
    /// log or before one of its ticks was heard.
    pub fn peer_age(&self, origin: &str, ts_ms: u64) -> Option<u64> {
        match self {
            EventLog::Embedded(_) => None,
            EventLog::JetStream(log) => log.peer_age(origin, ts_ms),
        }
    }

    /// On a shared log, records that this proxy now holds the session of
    /// `dedup_id`; the revision orders it against other proxies' claims.
    /// `None` on the embedded log (one proxy: the registry decides alone)
    /// or when NATS did not take it (the stale rule remains).
    pub async fn claim_session(&self, client_id: &str, dedup_id: &str) -> Option<u64> {
        match self {
            EventLog::Embedded(_) => None,
            EventLog::JetStream(log) => match log.claim_session(client_id, dedup_id).await {
                Ok(revision) => Some(revision),
                Err(e) => {
                    tracing::warn!(client_id, error = %e, "could not record the session on the shared log; a half-open copy on another proxy ends by the stale rule");
                    None
                }
            },
        }
    }

    /// On a shared log, calls `on_claim` for every session another proxy
    /// takes; nothing on the embedded log.
    pub fn watch_sessions(&self, on_claim: impl Fn(sessions::RemoteClaim) + Send + 'static) {
        if let EventLog::JetStream(log) = self {
            log.watch_sessions(on_claim);
        }
    }

    /// Changes only when the log is recreated; clients compare it to know
    /// whether their `seq` still means anything.
    pub fn epoch(&self) -> u64 {
        each!(self, log => log.epoch())
    }

    /// The newest `seq` handed out (a volatile reading may not be on disk
    /// yet: see `embedded.rs`; its number is reserved on disk).
    pub fn head(&self) -> u64 {
        each!(self, log => log.head())
    }

    /// The newest `seq` on disk (in the stream, for JetStream).
    pub fn durable_head(&self) -> u64 {
        match self {
            EventLog::Embedded(log) => log.durable_head(),
            EventLog::JetStream(log) => log.head(),
        }
    }

    /// Wakes whenever the durable head moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        each!(self, log => log.subscribe())
    }

    /// Appends events (hardware readings, link events); returns them with
    /// their sequence numbers once durable.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Logged>, Arc<LogError>> {
        each!(self, log => log.append(events).await)
    }

    /// A lane for one session's publishes: they reach the log in exactly the
    /// order they are sent into it and their results come back in that
    /// order. On the embedded log a publish goes straight into the writer's
    /// queue (many in flight, no task in between) and the writer answers
    /// into the results channel as soon as its commit returns; on JetStream
    /// a task sends them one at a time (its per-client lanes already
    /// serialise). Unbounded because the session bounds it (its publish
    /// window).
    pub fn publisher(
        &self,
        client_id: String,
    ) -> (PublishLane, mpsc::UnboundedReceiver<PublishResult>) {
        let (results, rx) = mpsc::unbounded_channel();
        let lane = match self.clone() {
            EventLog::Embedded(log) => PublishLane::Direct {
                log,
                client_id,
                results,
            },
            EventLog::JetStream(log) => {
                let (tx, mut requests) = mpsc::unbounded_channel::<PublishRequest>();
                tokio::spawn(async move {
                    while let Some(r) = requests.recv().await {
                        let answer = log.publish(&client_id, r.client_seq, r.event).await;
                        let _ = results.send((r.client_seq, answer));
                    }
                });
                PublishLane::Task(tx)
            }
        };
        (lane, rx)
    }

    /// Up to `limit` events from `from` on, from memory when possible.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<Logged>, LogError> {
        each!(self, log => log.read(from, limit))
    }

    /// [`EventLog::read`], lent to `f`: the embedded log's tail is not
    /// copied event by event.
    pub fn read_with<R>(
        &self,
        from: u64,
        limit: usize,
        f: impl FnOnce(Result<&[&Logged], LogError>) -> R,
    ) -> R {
        match self {
            EventLog::Embedded(log) => log.read_with(from, limit, f),
            EventLog::JetStream(log) => match log.read(from, limit) {
                Ok(owned) => f(Ok(&owned.iter().collect::<Vec<_>>())),
                Err(e) => f(Err(e)),
            },
        }
    }

    /// The oldest `seq` still replayable, or `head + 1` when none is.
    pub fn oldest(&self) -> Result<u64, LogError> {
        each!(self, log => log.oldest())
    }

    /// `(upto, state)`: the last value of every kind, current as of `upto`.
    pub fn snapshot(&self) -> Result<(u64, State), LogError> {
        each!(self, log => log.snapshot())
    }

    /// Whether `kind` taking a value of about `bytes` keeps the station
    /// state within `limits`; if it does, that size is counted now (its
    /// commit sets the exact one).
    pub fn state_reserve(&self, kind: &str, bytes: u64, limits: StateLimits) -> bool {
        each!(self, log => log.with_usage_mut(|u| {
            let fits = u.fits(kind, bytes, limits);
            if fits {
                u.set(kind, bytes);
            }
            fits
        }))
    }

    /// The state's size: kinds and bytes (for `/stats`).
    pub fn state_usage(&self) -> (usize, u64) {
        each!(self, log => log.with_usage(|u| (u.kinds(), u.bytes())))
    }

    /// Clients the publishers table remembers (the embedded log's; `None`
    /// on a shared log, where the stream deduplicates by message id).
    pub fn publishers(&self) -> Option<u64> {
        match self {
            EventLog::Embedded(log) => Some(log.publishers()),
            EventLog::JetStream(_) => None,
        }
    }

    /// Applies retention now (the proxy also runs this on a timer).
    pub async fn trim(&self) -> Result<u64, Arc<LogError>> {
        each!(self, log => log.trim().await)
    }

    /// Events currently retained.
    pub fn retained(&self) -> Result<u64, LogError> {
        each!(self, log => log.retained())
    }

    /// Resolves, with the reason, if the log's history is lost while the
    /// proxy runs (a shared stream deleted or recreated); never for the
    /// embedded log.
    pub async fn lost(&self) -> String {
        match self {
            EventLog::Embedded(_) => std::future::pending().await,
            EventLog::JetStream(log) => log.lost().await,
        }
    }

    /// Finishes what is queued and stops; every clone gets `Closed` for
    /// writes afterwards.
    pub async fn close(&self) {
        each!(self, log => log.close().await)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
