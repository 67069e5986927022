//! The event log on a NATS JetStream stream, shared by several proxies.
//!
//! **Writes** are JetStream publishes on one subject; an event is durable, and
//! has its `seq`, when the stream acknowledges it. Every publish carries a
//! `Nats-Msg-Id`, so a publish retried after an outage (or a lost ack) is
//! stored once: `c:{client_id}:{client_seq}` for client publishes (at most
//! once per publish, across proxies, within the stream's duplicate window)
//! and `p:{proxy}:{boot}:{n}` for the proxy's own events.
//!
//! **Reads** come from a local mirror: an ordered consumer follows the
//! stream and every proxy keeps the retained events (bounded by
//! `max_events`) and the last value of every kind in memory. A session
//! therefore reads only what the stream has stored, in the stream's order,
//! with the stream's `seq`, whichever proxy wrote it: any proxy can resume
//! any client. The mirror is rebuilt from the stream at start.
//!
//! **Epoch** is the stream's creation time: it changes when (and only when)
//! the stream is deleted and created again, which is exactly when old `seq`s
//! stop meaning anything.
//!
//! **Outages**: the NATS client reconnects by itself. Meanwhile sessions keep
//! their place and are served from the mirror, publishes are retried with
//! backoff for `publish_timeout_ms` and then fail (a client keeps an
//! unacknowledged publish in its outbox and sends it again), and the
//! consumer resumes after the last `seq` it saw.
//!
//! The stream's own limits do retention (`max_age`, `max_msgs`); the mirror
//! applies the same limits locally.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use shared_protocol::frame::{Payload, State};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{now_ms, LogConfig, LogError, Logged, NewEvent, Published};

/// Where the shared log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `nats://host:port` (several, comma separated, for a NATS cluster).
    pub url: String,
    /// The JetStream stream; created with the log's limits if missing.
    pub stream: String,
    /// The subject events are published on (the stream's only subject).
    pub subject: String,
    /// This proxy's name in NATS (connection name, message ids).
    pub proxy_name: String,
    /// Give up connecting at start after this long.
    pub connect_timeout_ms: u64,
    /// Retry a publish through an outage for this long before failing it.
    pub publish_timeout_ms: u64,
    /// Authentication: user and password, a token, or a `.creds` file.
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub creds_file: Option<std::path::PathBuf>,
    /// TLS: a CA bundle to trust (PEM), and whether TLS is required.
    pub tls_ca: Option<std::path::PathBuf>,
    pub tls_required: bool,
}

impl NatsConfig {
    /// The URL as logs and errors may show it: credentials in it
    /// (`nats://user:pass@host`) replaced by `***`.
    pub fn shown_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// `scheme://user:pass@host` → `scheme://***@host`, for each of a
/// comma-separated list.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.split_once("://"), one.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &one[at..]),
            _ => one.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            stream: "STATION".into(),
            subject: "station.events".into(),
            proxy_name: "edge-proxy".into(),
            connect_timeout_ms: 5_000,
            publish_timeout_ms: 30_000,
            user: None,
            password: None,
            token: None,
            creds_file: None,
            tls_ca: None,
            tls_required: false,
        }
    }
}

/// A hardware claim lapses this long after its proxy stopped renewing it.
pub(super) const LEASE: Duration = Duration::from_secs(10);

/// First and longest wait between publish attempts during an outage.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

pub(super) fn nats_error(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Nats(format!("{what}: {e}"))
}

/// The retained events and the last value of every kind.
#[derive(Default)]
struct Mirror {
    events: VecDeque<Logged>,
    state: State,
    usage: super::usage::StateUsage,
    /// Bytes of `events`.
    bytes: u64,
    /// The newest `seq` seen (kept when `events` is trimmed empty).
    head: u64,
}

struct Shared {
    mirror: RwLock<Mirror>,
    head: watch::Sender<u64>,
    /// Counts (re)connections to NATS: the consumer starts afresh on each,
    /// instead of waiting for missed heartbeats to notice the server changed.
    connections: watch::Sender<u64>,
    /// Set, with the reason, when the stream's history is lost.
    lost: watch::Sender<Option<String>>,
    config: LogConfig,
}

/// The header naming the proxy that logged a record (its clock stamped it):
/// the origin the radio's owner judges a PTT-on's age by.
const ORIGIN_HEADER: &str = "Station-Origin";

/// Resolves when NATS connects again (never, once the log is gone).
async fn reconnected(connections: &mut watch::Receiver<u64>) {
    if connections.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The shared log (held in an `Arc` by [`super::EventLog`]).
pub struct JetLog {
    client: async_nats::Client,
    js: jetstream::Context,
    subject: String,
    stream: String,
    shared: Arc<Shared>,
    epoch: u64,
    /// `p:{proxy}:{boot}:` — the prefix of this process's message ids.
    id_prefix: String,
    next_id: AtomicU64,
    publish_timeout: Duration,
    closed: AtomicBool,
    follower: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// One lane per publishing client: its publishes reach the stream one at
    /// a time, in the order they were made, so one retried through an
    /// outage is never overtaken by the next (`set_freq` A then B must end
    /// on B).
    lanes: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Which proxy holds each client's session (see `sessions.rs`).
    sessions: super::sessions::Claims,
    /// The station's last values beside the stream (see `laststate.rs`).
    last_state: super::laststate::LastState,
    /// `p:{proxy}:{boot}`: this process, as the origin of what it logs.
    origin: Arc<str>,
    /// The other proxies' clocks, from their ticks (see `peers.rs`).
    peers: Arc<super::peers::Peers>,
}

impl JetLog {
    /// Connects, makes sure the stream exists, and fills the mirror with
    /// what the stream holds before returning. Fails with a clear error when
    /// NATS cannot be reached within `connect_timeout_ms`, or when it has no
    /// JetStream.
    pub async fn connect(nats: &NatsConfig, config: LogConfig) -> Result<Self, LogError> {
        let connect_timeout = Duration::from_millis(nats.connect_timeout_ms.max(1));
        let connections = watch::Sender::new(0u64);
        let reconnected = connections.clone();
        let options = async_nats::ConnectOptions::new()
            .name(&nats.proxy_name)
            .connection_timeout(connect_timeout)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((50u64 << attempts.min(5)).min(1_000))
            })
            .event_callback(move |event| {
                let reconnected = reconnected.clone();
                async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("NATS connected");
                        metrics::gauge!("proxy_log_nats_connected").set(1.0);
                        reconnected.send_modify(|n| *n += 1);
                    }
                    async_nats::Event::Disconnected => {
                        metrics::gauge!("proxy_log_nats_connected").set(0.0);
                        tracing::warn!("NATS connection lost; reconnecting (sessions keep being served, publishes wait)")
                    }
                    other => tracing::warn!(event = %other, "NATS"),
                }
                }
            });
        let mut options = options;
        if let (Some(user), Some(password)) = (&nats.user, &nats.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &nats.token {
            options = options.token(token.clone());
        }
        if let Some(creds) = &nats.creds_file {
            options = options.credentials_file(creds).await.map_err(|e| {
                nats_error(
                    &format!("reading the NATS credentials {}", creds.display()),
                    e,
                )
            })?;
        }
        if let Some(ca) = &nats.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        options = options.require_tls(nats.tls_required);
        let shown = nats.shown_url();
        let client = tokio::time::timeout(connect_timeout, options.connect(nats.url.as_str()))
            .await
            .map_err(|_| {
                LogError::Nats(format!(
                    "no NATS server answered at {shown} within {} ms",
                    nats.connect_timeout_ms
                ))
            })?
            .map_err(|e| nats_error(&format!("connecting to {shown}"), e))?;
        let js = jetstream::new(client.clone());
        let wanted = stream::Config {
            name: nats.stream.clone(),
            subjects: vec![nats.subject.clone()],
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            max_messages: i64::try_from(config.max_events).unwrap_or(i64::MAX),
            max_age: Duration::from_millis(config.retention_ms),
            // Client publishes are deduplicated for as long as events are kept.
            duplicate_window: Duration::from_millis(config.retention_ms.min(24 * 3_600_000)),
            ..Default::default()
        };
        let mut stream = tokio::time::timeout(connect_timeout, js.get_or_create_stream(wanted))
            .await
            .map_err(|_| {
                LogError::Nats(
                    "JetStream did not answer (is it enabled? start nats-server with -js)".into(),
                )
            })?
            .map_err(|e| nats_error(&format!("opening stream {}", nats.stream), e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| nats_error("reading the stream's info", e))?
            .clone();
        if !info.config.subjects.iter().any(|s| s == &nats.subject) {
            return Err(LogError::Nats(format!(
                "stream {} exists but does not hold subject {} (it holds {:?})",
                nats.stream, nats.subject, info.config.subjects
            )));
        }
        if info.config.max_messages != i64::try_from(config.max_events).unwrap_or(i64::MAX)
            || info.config.max_age != Duration::from_millis(config.retention_ms)
        {
            tracing::warn!(
                stream = %nats.stream,
                max_msgs = info.config.max_messages,
                max_age_ms = info.config.max_age.as_millis() as u64,
                "the stream already exists with other limits than this proxy's retention; the stream's limits apply"
            );
        }
        let epoch = stream_epoch(info.created.unix_timestamp_nanos());
        let first = info.state.first_sequence.max(1);
        let last = info.state.last_sequence;
        let shared = Arc::new(Shared {
            mirror: RwLock::new(Mirror {
                head: first - 1,
                ..Default::default()
            }),
            head: watch::Sender::new(first - 1),
            connections,
            lost: watch::Sender::new(None),
            config,
        });
        let boot = getrandom::u32().unwrap_or_default();
        let id_prefix = format!("p:{}:{boot:08x}:", nats.proxy_name);
        let sessions = super::sessions::Claims::open(&js, &nats.stream, &id_prefix).await?;
        let last_state = super::laststate::LastState::open(&js, &nats.stream).await?;
        let origin: Arc<str> = id_prefix.trim_end_matches(':').into();
        let peers = Arc::new(super::peers::Peers::new());
        super::peers::run(client.clone(), &nats.stream, origin.clone(), peers.clone());
        let log = JetLog {
            client,
            js,
            subject: nats.subject.clone(),
            stream: nats.stream.clone(),
            shared: shared.clone(),
            epoch,
            id_prefix,
            next_id: AtomicU64::new(1),
            publish_timeout: Duration::from_millis(nats.publish_timeout_ms),
            closed: AtomicBool::new(false),
            follower: std::sync::Mutex::new(None),
            lanes: std::sync::Mutex::default(),
            sessions,
            last_state,
            origin,
            peers,
        };
        let follower = tokio::spawn(follow(log.js.clone(), stream, shared.clone(), first, epoch));
        if let Ok(mut slot) = log.follower.lock() {
            *slot = Some(follower);
        }
        metrics::gauge!("proxy_log_nats_connected").set(1.0);
        log.catch_up(last).await;
        log.seed_last_values().await;
        Ok(log)
    }

    /// Waits until the mirror holds what the stream held at start, printing
    /// progress on a long stream.
    async fn catch_up(&self, last: u64) {
        let mut head = self.subscribe();
        let started = std::time::Instant::now();
        let mut reported = started;
        while *head.borrow_and_update() < last {
            if reported.elapsed() >= Duration::from_secs(2) {
                reported = std::time::Instant::now();
                tracing::info!(
                    at = *head.borrow(),
                    of = last,
                    "loading the shared log from JetStream"
                );
            }
            if tokio::time::timeout(Duration::from_secs(2), head.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                return;
            }
        }
        tracing::info!(
            events = self.retained().unwrap_or(0),
            head = last,
            ms = started.elapsed().as_millis() as u64,
            "shared log loaded from JetStream"
        );
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Resolves, with the reason, if the stream is deleted or recreated
    /// while this proxy runs. The proxy must then restart: its clients'
    /// positions belong to a history that no longer exists, and a restart
    /// takes the new epoch (clients get `Gap` + `Snapshot`).
    pub async fn lost(&self) -> String {
        let mut lost = self.shared.lost.subscribe();
        loop {
            if let Some(reason) = lost.borrow_and_update().clone() {
                return reason;
            }
            if lost.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Whether the NATS connection is up right now (for `/stats`).
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Fills in, from the state bucket, the last value of every station
    /// kind the stream no longer holds (trimmed before this proxy started),
    /// so its snapshots equal those of a proxy that never stopped. A kind
    /// the stream still has keeps the stream's value.
    async fn seed_last_values(&self) {
        let records = match self.last_state.all().await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the state bucket; snapshots hold only what the stream kept");
                return;
            }
        };
        let Ok(mut mirror) = self.shared.mirror.write() else {
            return;
        };
        let mut seeded = 0;
        for record in records {
            let Some((logged, payload)) =
                Logged::from_bytes(0, &record).and_then(|l| l.resequenced(0))
            else {
                continue;
            };
            if mirror.state.get(&logged.kind).is_some() {
                continue;
            }
            mirror.usage.set(&logged.kind, logged.frame.len() as u64);
            mirror.state.insert(logged.kind.to_string(), payload);
            seeded += 1;
        }
        if seeded > 0 {
            tracing::info!(
                kinds = seeded,
                "last values the stream had trimmed taken from the state bucket"
            );
        }
    }

    /// How long ago `origin` stamped `ts_ms`, by its clock ticks; `None`
    /// until one was heard.
    pub fn peer_age(&self, origin: &str, ts_ms: u64) -> Option<u64> {
        self.peers.age(origin, ts_ms)
    }

    /// Each other proxy's clock minus this one's, ms (for `/stats`).
    pub fn peer_offsets(&self) -> Vec<(String, i64)> {
        self.peers.offsets(now_ms())
    }

    /// Records that this proxy holds `dedup_id`'s session; see
    /// [`super::sessions`].
    pub async fn claim_session(&self, client_id: &str, dedup_id: &str) -> Result<u64, LogError> {
        self.sessions.claim(client_id, dedup_id).await
    }

    /// Calls `on_claim` for each session another proxy takes.
    pub fn watch_sessions(&self, on_claim: impl Fn(super::sessions::RemoteClaim) + Send + 'static) {
        self.sessions.clone().watch(on_claim);
    }

    /// Claims a piece of hardware for this proxy; see [`super::lease::claim`].
    pub async fn claim(&self, what: &str, owner: &str) -> Result<(), LogError> {
        super::lease::claim(&self.js, &self.stream, what, owner).await
    }

    pub fn head(&self) -> u64 {
        *self.shared.head.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
    }

    /// Publishes one record until the stream acknowledges it, retrying with
    /// backoff through an outage for at most `publish_timeout`.
    ///
    /// A publish in flight when the connection drops never gets its ack
    /// (the reply subscription went with the connection): waiting for the
    /// JetStream ack timeout would stall the lane for seconds after NATS is
    /// back. So a reconnection abandons the attempt and retries at once, and
    /// a backoff sleep ends early when the connection returns. A retry of a
    /// message the stream did store is answered `duplicate` with the stored
    /// sequence: that is this publish's own sequence, not a resend's.
    async fn publish_record(&self, record: Bytes, id: &str) -> Result<u64, Arc<LogError>> {
        let deadline = tokio::time::Instant::now() + self.publish_timeout;
        let mut wait = RETRY_FIRST;
        let mut reconnects = self.shared.connections.subscribe();
        reconnects.borrow_and_update();
        let mut tried = false;
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Arc::new(LogError::Closed));
            }
            let attempt = async {
                let message = PublishMessage::build()
                    .payload(record.clone())
                    .message_id(id)
                    .header(ORIGIN_HEADER, self.origin.as_ref());
                self.js
                    .send_publish(self.subject.clone(), message)
                    .await?
                    .await
            };
            let error = tokio::select! {
                result = attempt => match result {
                    Ok(ack) => {
                        metrics::counter!("proxy_events_appended_total").increment(1);
                        return Ok(if ack.duplicate && !tried { 0 } else { ack.sequence });
                    }
                    Err(e) => e.to_string(),
                },
                () = reconnected(&mut reconnects) => {
                    tried = true;
                    metrics::counter!("proxy_log_publish_retries_total").increment(1);
                    tracing::info!(id, "NATS reconnected; publishing again at once");
                    continue;
                }
            };
            tried = true;
            metrics::counter!("proxy_log_publish_retries_total").increment(1);
            if tokio::time::Instant::now() + wait > deadline {
                metrics::counter!("proxy_log_commit_failures_total").increment(1);
                tracing::error!(error = %error, id, "JetStream publish failed for too long; giving up on it");
                return Err(Arc::new(nats_error("publishing", error)));
            }
            tracing::warn!(error = %error, id, retry_in_ms = wait.as_millis() as u64, "JetStream publish failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = reconnected(&mut reconnects) => {}
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// The stored form of `event`, logged at `ts_ms`. The `seq` inside the
    /// frame is 0: each reader sets it from the stream.
    fn record(event: &NewEvent, ts_ms: u64) -> Result<Bytes, Arc<LogError>> {
        let logged = Logged::build(0, ts_ms, event).map_err(|e| Arc::new(e.into()))?;
        Ok(Bytes::from(logged.to_bytes()))
    }

    /// Appends in order, each event once it is acknowledged (one at a time:
    /// JetStream 2.9 has no atomic batch, and waiting keeps the order).
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Logged>, Arc<LogError>> {
        let mut out = Vec::with_capacity(events.len());
        for event in &events {
            let n = self.next_id.fetch_add(1, Ordering::Relaxed);
            let id = format!("{}{n}", self.id_prefix);
            let ts_ms = now_ms();
            let record = Self::record(event, ts_ms)?;
            let seq = self.publish_record(record.clone(), &id).await?;
            if seq > 0 {
                self.last_state.keep(&event.kind, record);
                out.push(Logged::build(seq, ts_ms, event).map_err(|e| Arc::new(e.into()))?);
            }
        }
        Ok(out)
    }

    pub async fn publish(
        &self,
        client_id: &str,
        client_seq: u64,
        event: NewEvent,
    ) -> Result<Published, Arc<LogError>> {
        let id = format!("c:{client_id}:{client_seq}");
        let record = Self::record(&event, now_ms())?;
        let lane = self
            .lanes
            .lock()
            .map_err(|_| Arc::new(LogError::Closed))?
            .entry(client_id.to_string())
            .or_default()
            .clone();
        let result = {
            let _turn = lane.lock().await;
            self.publish_record(record, &id).await
        };
        if let Ok(mut lanes) = self.lanes.lock() {
            // Ours and the map's: nobody is queued behind us.
            if Arc::strong_count(&lane) == 2 {
                lanes.remove(client_id);
            }
        }
        match result? {
            0 => Ok(Published::Duplicate),
            seq => Ok(Published::Applied(seq)),
        }
    }

    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<Logged>, LogError> {
        let mirror = self.shared.mirror.read().map_err(|_| LogError::Closed)?;
        let Some(first) = mirror.events.front().map(|e| e.seq) else {
            return Ok(Vec::new());
        };
        let start = from.saturating_sub(first) as usize;
        Ok(mirror
            .events
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect())
    }

    pub fn oldest(&self) -> Result<u64, LogError> {
        let mirror = self.shared.mirror.read().map_err(|_| LogError::Closed)?;
        Ok(mirror.events.front().map_or(mirror.head + 1, |e| e.seq))
    }

    pub fn snapshot(&self) -> Result<(u64, State), LogError> {
        let mirror = self.shared.mirror.read().map_err(|_| LogError::Closed)?;
        Ok((mirror.head, mirror.state.clone()))
    }

    pub fn with_usage<T>(&self, f: impl FnOnce(&super::usage::StateUsage) -> T) -> T {
        match self.shared.mirror.read() {
            Ok(m) => f(&m.usage),
            Err(poisoned) => f(&poisoned.into_inner().usage),
        }
    }

    pub fn with_usage_mut<T>(&self, f: impl FnOnce(&mut super::usage::StateUsage) -> T) -> T {
        match self.shared.mirror.write() {
            Ok(mut m) => f(&mut m.usage),
            Err(poisoned) => f(&mut poisoned.into_inner().usage),
        }
    }

    /// Drops from the mirror what the stream's limits drop from the stream.
    pub async fn trim(&self) -> Result<u64, Arc<LogError>> {
        let config = self.shared.config;
        let cutoff = now_ms().saturating_sub(config.retention_ms);
        let mut mirror = self
            .shared
            .mirror
            .write()
            .map_err(|_| Arc::new(LogError::Closed))?;
        let mut removed = 0;
        while let Some(front) = mirror.events.front() {
            let too_many = mirror.events.len() as u64 > config.max_events;
            if !too_many && front.ts_ms >= cutoff {
                break;
            }
            mirror.events.pop_front();
            removed += 1;
        }
        if removed > 0 {
            metrics::counter!("proxy_log_trimmed_total").increment(removed);
        }
        Ok(removed)
    }

    pub fn retained(&self) -> Result<u64, LogError> {
        let mirror = self.shared.mirror.read().map_err(|_| LogError::Closed)?;
        Ok(mirror.events.len() as u64)
    }

    /// Refuses new writes, lets in-flight publishes reach the server and
    /// stops following the stream.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
        let follower = self.follower.lock().ok().and_then(|mut f| f.take());
        if let Some(follower) = follower {
            follower.abort();
        }
    }
}

/// Follows the stream from `from` into the mirror, for as long as the proxy
/// runs. The ordered consumer recreates itself after a reconnect; if it
/// gives up, a new one starts after the last `seq` seen.
///
/// If the stream itself is gone or was created again (its history lost),
/// the `seq`s this proxy handed out mean nothing any more: it says so on
/// [`JetLog::lost`] and stops following.
async fn follow(
    js: jetstream::Context,
    stream: stream::Stream,
    shared: Arc<Shared>,
    from: u64,
    epoch: u64,
) {
    let mut next = from;
    let mut wait = RETRY_FIRST;
    let name = stream.cached_info().config.name.clone();
    loop {
        match consume(&stream, &shared, next).await {
            Ok(()) => {
                tracing::info!(from = next, "following the JetStream stream again");
                wait = RETRY_FIRST;
            }
            Err(e) => {
                if let Some(lost) = history_lost(&js, &name, epoch).await {
                    tracing::error!(stream = %name, "{lost}");
                    shared.lost.send_replace(Some(lost));
                    return;
                }
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "following the JetStream stream failed; retrying")
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
        next = shared.mirror.read().map_or(next, |m| m.head + 1);
    }
}

/// Why the stream's history is gone, if it is: the stream was deleted, or
/// created again (another creation time, so another epoch). `None` when it
/// is fine or cannot be asked (NATS down: that is an outage, not a loss).
async fn history_lost(js: &jetstream::Context, name: &str, epoch: u64) -> Option<String> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    match js.get_stream(name).await {
        Ok(mut stream) => {
            let created = stream.info().await.ok()?.created;
            (stream_epoch(created.unix_timestamp_nanos()) != epoch).then(|| {
                format!("the JetStream stream {name} was deleted and created again: its history is lost")
            })
        }
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Some(format!(
                    "the JetStream stream {name} was deleted: its history is lost"
                ))
            }
            _ => None,
        },
    }
}

/// The epoch of a stream: its creation time (given in Unix nanoseconds) in
/// microseconds, never 0.
fn stream_epoch(created_ns: i128) -> u64 {
    u64::try_from(created_ns / 1_000).unwrap_or(1).max(1)
}

/// Feeds the mirror from one ordered consumer until it fails, or returns
/// `Ok` when the NATS connection was re-established (start a new one).
async fn consume(stream: &stream::Stream, shared: &Shared, from: u64) -> Result<(), LogError> {
    let mut connections = shared.connections.subscribe();
    connections.borrow_and_update();
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| nats_error("creating the consumer", e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| nats_error("starting the consumer", e))?;
    loop {
        let message = tokio::select! {
            message = messages.next() => match message {
                Some(message) => message.map_err(|e| nats_error("consuming", e))?,
                None => return Ok(()),
            },
            _ = connections.changed() => return Ok(()),
        };
        let seq = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                tracing::warn!(error = %e, "a JetStream message without its sequence; skipped");
                continue;
            }
        };
        // The proxy (and its run) that logged it, whose clock stamped it:
        // its header, or for records of older proxies the message id's
        // prefix ("p:{proxy}:{boot}:{n}", or "c:{client}:{seq}").
        let headers = message.headers.as_ref();
        let origin = headers
            .and_then(|h| h.get(ORIGIN_HEADER))
            .map(|o| Arc::<str>::from(o.as_str()))
            .or_else(|| {
                headers
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .and_then(|id| id.as_str().rsplit_once(':'))
                    .map(|(origin, _)| Arc::<str>::from(origin))
            });
        apply(shared, seq, &message.payload, origin);
    }
}

/// Adds one stored record to the mirror and moves the head.
fn apply(shared: &Shared, seq: u64, record: &[u8], origin: Option<Arc<str>>) {
    let Ok(mut mirror) = shared.mirror.write() else {
        return;
    };
    if seq <= mirror.head {
        if seq < mirror.head {
            tracing::error!(
                seq,
                head = mirror.head,
                "the stream went back in time (was it deleted and created again?); restart the proxy"
            );
        }
        return;
    }
    if seq != mirror.head + 1 {
        // The stream dropped events we had not read yet (its limits): what
        // we hold is no longer contiguous with what follows.
        tracing::warn!(
            from = mirror.head + 1,
            to = seq - 1,
            "events left the stream before this proxy read them"
        );
        mirror.events.clear();
    }
    mirror.head = seq;
    let parsed = Logged::from_bytes(0, record)
        .map(|l| Logged { origin, ..l })
        .and_then(|l| l.resequenced(seq));
    match parsed {
        Some((logged, payload)) => {
            if logged.stateless {
                mirror.usage.remove(&logged.kind);
                if mirror.state.get(&logged.kind).is_some() {
                    // Only when a kind was made stateless after it had a
                    // value (`State` has no removal: the browser carries it).
                    let kept = mirror.state.iter().filter(|(k, _)| **k != *logged.kind);
                    mirror.state = kept.map(|(k, v)| (k.clone(), v.clone())).collect();
                }
            } else {
                mirror.usage.set(&logged.kind, logged.frame.len() as u64);
                mirror.state.insert(logged.kind.to_string(), payload);
            }
            mirror.bytes += logged.frame.len() as u64;
            mirror.events.push_back(logged);
            // Bounded by bytes too: what falls off is replayed as a gap.
            while mirror.bytes > shared.config.memory_bytes && mirror.events.len() > 1 {
                if let Some(old) = mirror.events.pop_front() {
                    mirror.bytes -= old.frame.len() as u64;
                }
            }
        }
        None => {
            // Not ours (someone else published on the subject). Keep the
            // sequence gap-free for sessions with an empty placeholder.
            tracing::warn!(seq, "a message on the log subject that is not an event; delivered as an empty 'invalid' event");
            let placeholder = NewEvent::reliable("invalid", Payload::Nil);
            if let Ok(logged) = Logged::build(seq, now_ms(), &placeholder) {
                mirror.events.push_back(logged);
            }
        }
    }
    let cap = usize::try_from(shared.config.max_events)
        .unwrap_or(usize::MAX)
        .max(1);
    while mirror.events.len() > cap {
        mirror.events.pop_front();
    }
    drop(mirror);
    shared.head.send_replace(seq);
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::frame::ServerFrame;

    fn shared(max_events: u64) -> Shared {
        Shared {
            mirror: RwLock::new(Mirror::default()),
            head: watch::Sender::new(0),
            connections: watch::Sender::new(0),
            lost: watch::Sender::new(None),
            config: LogConfig {
                max_events,
                ..LogConfig::default()
            },
        }
    }

    fn record(kind: &str, n: u64) -> Bytes {
        JetLog::record(&NewEvent::reliable(kind, Payload::from(n)), 1_000).unwrap()
    }

    fn seqs(shared: &Shared) -> Vec<u64> {
        let mirror = shared.mirror.read().unwrap();
        mirror.events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn the_mirror_takes_the_streams_seq_into_the_frame_and_keeps_last_values() {
        let s = shared(100);
        apply(&s, 1, &record("a", 10), None);
        apply(&s, 2, &record("b", 20), None);
        apply(&s, 3, &record("a", 30), None);
        assert_eq!(seqs(&s), vec![1, 2, 3]);
        assert_eq!(*s.head.borrow(), 3);
        let mirror = s.mirror.read().unwrap();
        let third = ServerFrame::decode(&mirror.events[2].frame, usize::MAX).unwrap();
        assert!(
            matches!(third, ServerFrame::Event(e) if e.seq == 3 && e.kind == "a" && e.ts_ms == 1_000)
        );
        assert_eq!(mirror.state.get("a"), Some(&Payload::from(30)));
        assert_eq!(mirror.state.get("b"), Some(&Payload::from(20)));
    }

    #[test]
    fn repeats_are_ignored_and_a_hole_restarts_the_mirror_after_it() {
        let s = shared(100);
        apply(&s, 1, &record("a", 1), None);
        apply(&s, 2, &record("a", 2), None);
        apply(&s, 2, &record("a", 2), None);
        apply(&s, 1, &record("a", 1), None);
        assert_eq!(seqs(&s), vec![1, 2]);
        // 3..=4 left the stream before this proxy read them.
        apply(&s, 5, &record("a", 5), None);
        assert_eq!(seqs(&s), vec![5], "sessions behind 5 get a Gap, not a hole");
        assert_eq!(*s.head.borrow(), 5);
    }

    #[test]
    fn foreign_messages_keep_the_sequence_gap_free_and_the_cap_holds() {
        let s = shared(3);
        apply(&s, 1, &record("a", 1), None);
        apply(&s, 2, b"not an event", None);
        apply(&s, 3, &record("a", 3), None);
        apply(&s, 4, &record("a", 4), None);
        assert_eq!(seqs(&s), vec![2, 3, 4]);
        let mirror = s.mirror.read().unwrap();
        assert_eq!(&*mirror.events[0].kind, "invalid");
    }
}
