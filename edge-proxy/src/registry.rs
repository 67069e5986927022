//! The registry of dashboard clients: one record per `client_id`, the single
//! source of truth for their state, quality and counters. `/stats` and the
//! health task read it; sessions update it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use shared_protocol::health::{Check, HealthConfig, HealthTracker};
use shared_protocol::quality::{QualityConfig, QualityTracker};
use shared_protocol::Millis;
use tokio::sync::watch;

use crate::auth::{Credential, Role};

/// The states of the requirements' connection manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Connecting,
    Connected,
    Reconnecting,
    Disconnected,
    Stale,
}

struct Record {
    /// Who owns this `client_id`: the credential that first used it.
    credential: Credential,
    state: SessionState,
    connection: u64,
    role: Option<Role>,
    remote: String,
    connections: u64,
    last_seen: Millis,
    connected_since: Option<Millis>,
    acked_upto: u64,
    cursor: u64,
    sent: u64,
    coalesced: u64,
    cooling_events: u64,
    temperature: f64,
    rtt_ms: Option<f64>,
    quality: QualityTracker,
    health: HealthTracker,
    /// Set to true to ask the live connection to close (a newer one took over).
    replaced: watch::Sender<bool>,
    /// On a shared log: the revision of this connection's claim in the
    /// sessions bucket (0 until it is recorded), and the newest claim by
    /// another proxy heard before that (see `eventlog::sessions`).
    claim_revision: u64,
    remote_revision: u64,
}

/// Counters over the life of the process.
#[derive(Default)]
pub struct Totals {
    pub connections: AtomicU64,
    pub events_sent: AtomicU64,
    pub events_acked: AtomicU64,
    pub events_dropped: AtomicU64,
    pub publishes_applied: AtomicU64,
    pub publishes_duplicate: AtomicU64,
    pub publishes_rejected: AtomicU64,
    pub bad_input: AtomicU64,
    /// Connections past `Hello` that have not ended yet.
    pub live: AtomicU64,
}

/// How many `client_id`s get metric series of their own.
pub const LABELLED_CLIENTS: usize = 64;

#[derive(Clone)]
pub struct Registry {
    records: Arc<Mutex<HashMap<String, Record>>>,
    /// The `client_id`s given a `connection` label of their own in
    /// `/metrics` (at most [`LABELLED_CLIENTS`] over the process's life):
    /// the series of one metric cannot grow with the ids clients invent.
    labelled: Arc<Mutex<std::collections::HashSet<String>>>,
    pub totals: Arc<Totals>,
    next_connection: Arc<AtomicU64>,
    /// Disconnected records older than this are forgotten.
    forget_after_ms: u64,
}

/// A live connection's claim on its client record.
pub struct Claim {
    pub connection: u64,
    /// Becomes true when another connection with the same `client_id` arrives.
    pub replaced: watch::Receiver<bool>,
}

#[derive(Debug, Serialize)]
pub struct SessionView {
    pub client_id: String,
    pub state: SessionState,
    pub role: Option<Role>,
    pub remote: String,
    pub connections: u64,
    pub reconnects: u64,
    pub uptime_ms: u64,
    pub last_seen_ms_ago: u64,
    pub acked_upto: u64,
    pub cursor: u64,
    pub behind: u64,
    pub sent: u64,
    pub coalesced: u64,
    pub temperature: f64,
    pub cooling_events: u64,
    pub rtt_ms: Option<f64>,
    pub quality: f64,
    pub health: u8,
    pub health_band: &'static str,
}

impl Registry {
    pub fn new(forget_after_ms: u64) -> Self {
        Registry {
            records: Arc::default(),
            labelled: Arc::default(),
            totals: Arc::default(),
            next_connection: Arc::new(AtomicU64::new(1)),
            forget_after_ms,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        // A panic elsewhere must not take the registry (and /stats) down with it.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The `connection` label for `client_id`'s per-connection metrics: its
    /// own id for the first [`LABELLED_CLIENTS`] ids, `"other"` after.
    pub fn metric_label(&self, client_id: &str) -> String {
        let Ok(mut labelled) = self.labelled.lock() else {
            return "other".into();
        };
        if labelled.contains(client_id) {
            return client_id.to_string();
        }
        if labelled.len() < LABELLED_CLIENTS {
            labelled.insert(client_id.to_string());
            return client_id.to_string();
        }
        "other".into()
    }

    /// A connection presented `client_id`: claims the record, telling any
    /// older live connection of the same client to close. `None` when the
    /// `client_id` belongs to another credential (it is refused, and the
    /// owner's session is not touched).
    pub fn connect(
        &self,
        client_id: &str,
        role: Role,
        credential: Credential,
        remote: &str,
        now: Millis,
    ) -> Option<Claim> {
        let mut records = self.lock();
        if records
            .get(client_id)
            .is_some_and(|r| r.credential != credential)
        {
            return None;
        }
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        self.totals.connections.fetch_add(1, Ordering::Relaxed);
        self.totals.live.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("proxy_connections_total").increment(1);
        let (tx, rx) = watch::channel(false);
        match records.get_mut(client_id) {
            Some(record) => {
                record.replaced.send_replace(true);
                record.replaced = tx;
                record.state = SessionState::Reconnecting;
                record.connection = connection;
                record.connections += 1;
                record.role = Some(role);
                record.remote = remote.to_string();
                record.quality.on_reconnect(now);
                record.last_seen = now;
                record.claim_revision = 0;
                record.remote_revision = 0;
            }
            None => {
                records.insert(
                    client_id.to_string(),
                    Record {
                        credential,
                        state: SessionState::Connecting,
                        connection,
                        role: Some(role),
                        remote: remote.to_string(),
                        connections: 1,
                        last_seen: now,
                        connected_since: None,
                        acked_upto: 0,
                        cursor: 0,
                        sent: 0,
                        coalesced: 0,
                        cooling_events: 0,
                        temperature: 0.0,
                        rtt_ms: None,
                        quality: QualityTracker::new(QualityConfig::default(), now),
                        health: HealthTracker::new(HealthConfig::default()),
                        replaced: tx,
                        claim_revision: 0,
                        remote_revision: 0,
                    },
                );
            }
        }
        Some(Claim {
            connection,
            replaced: rx,
        })
    }

    /// This connection's session was recorded on the shared log at
    /// `revision`: if another proxy's claim came later, it is replaced now.
    pub fn claimed(&self, client_id: &str, connection: u64, revision: u64) {
        self.with(client_id, connection, |r| {
            r.claim_revision = revision;
            if r.remote_revision > revision {
                r.replaced.send_replace(true);
            }
        });
    }

    /// Another proxy of the shared log took `claim.dedup_id`'s session: a
    /// live session here under the same identity whose own claim is older
    /// is replaced (a client that moved on left it half-open); a newer one
    /// stays. Whether it replaced one.
    pub fn claimed_elsewhere(&self, claim: &crate::eventlog::sessions::RemoteClaim) -> bool {
        let mut records = self.lock();
        let Some(r) = records.get_mut(&claim.client_id) else {
            return false;
        };
        if r.credential.dedup_id(&claim.client_id) != claim.dedup_id
            || r.state == SessionState::Disconnected
        {
            return false;
        }
        if r.claim_revision == 0 {
            // Ours is still being recorded: decide when it is.
            r.remote_revision = r.remote_revision.max(claim.revision);
            return false;
        }
        if claim.revision > r.claim_revision {
            r.replaced.send_replace(true);
            return true;
        }
        false
    }

    /// Runs `f` on the record if this connection still owns it.
    fn with(&self, client_id: &str, connection: u64, f: impl FnOnce(&mut Record)) {
        if let Some(record) = self.lock().get_mut(client_id) {
            if record.connection == connection {
                f(record);
            }
        }
    }

    /// The client was welcomed; it already holds everything up to `has_upto`.
    pub fn welcomed(&self, client_id: &str, connection: u64, has_upto: u64, now: Millis) {
        self.with(client_id, connection, |r| {
            r.acked_upto = r.acked_upto.max(has_upto);
            r.state = SessionState::Connected;
            r.connected_since = Some(now);
            r.quality.on_connected(now);
        });
        metrics::gauge!("proxy_connections_active").increment(1.0);
    }

    pub fn activity(&self, client_id: &str, connection: u64, now: Millis) {
        self.with(client_id, connection, |r| {
            r.last_seen = now;
            r.quality.on_activity(now);
            if r.state == SessionState::Stale {
                r.state = SessionState::Connected;
            }
        });
    }

    pub fn progress(&self, client_id: &str, connection: u64, p: Progress) {
        self.totals.events_sent.fetch_add(p.sent, Ordering::Relaxed);
        self.totals
            .events_dropped
            .fetch_add(p.coalesced, Ordering::Relaxed);
        metrics::counter!("proxy_events_sent_total").increment(p.sent);
        let label = self.metric_label(client_id);
        if p.cooled {
            metrics::counter!("connection_cooling_events_total", "connection" => label.clone(), "reason" => "lag")
                .increment(1);
        }
        metrics::gauge!("connection_temperature", "connection" => label).set(p.temperature);
        self.with(client_id, connection, |r| {
            r.sent += p.sent;
            r.coalesced += p.coalesced;
            r.cursor = p.cursor;
            r.temperature = p.temperature;
            r.quality.on_sent(p.sent);
            if p.cooled {
                r.cooling_events += 1;
            }
        });
    }

    pub fn acked(&self, client_id: &str, connection: u64, upto: u64) {
        self.with(client_id, connection, |r| {
            if upto > r.acked_upto {
                let n = upto - r.acked_upto;
                r.quality.on_acked(n);
                self.totals.events_acked.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("proxy_events_acked_total").increment(n);
                r.acked_upto = upto;
            }
        });
    }

    /// A heartbeat result: a pong (with its RTT) or a missing one.
    pub fn health_check(&self, client_id: &str, connection: u64, rtt_ms: Option<u64>, now: Millis) {
        let result = if rtt_ms.is_some() { "ok" } else { "failed" };
        metrics::counter!("connection_health_checks_total", "connection" => self.metric_label(client_id), "result" => result)
            .increment(1);
        self.with(client_id, connection, |r| {
            let check = rtt_ms.map_or(Check::Failed, |latency_ms| Check::Ok { latency_ms });
            r.health.record(check, now);
            if let Some(rtt) = rtt_ms {
                r.rtt_ms = Some(
                    r.rtt_ms
                        .map_or(rtt as f64, |s| s * 0.875 + rtt as f64 * 0.125),
                );
            }
            metrics::gauge!("connection_health_score", "connection" => self.metric_label(client_id))
                .set(f64::from(r.health.score()));
        });
    }

    pub fn stale(&self, client_id: &str, connection: u64) {
        self.with(client_id, connection, |r| r.state = SessionState::Stale);
    }

    pub fn disconnected(&self, client_id: &str, connection: u64, welcomed: bool, now: Millis) {
        self.totals.live.fetch_sub(1, Ordering::Relaxed);
        if welcomed {
            metrics::gauge!("proxy_connections_active").decrement(1.0);
        }
        self.with(client_id, connection, |r| {
            r.state = SessionState::Disconnected;
            r.connected_since = None;
            r.quality.on_disconnected(now);
            r.last_seen = now;
        });
    }

    pub fn live_connections(&self) -> u64 {
        self.totals.live.load(Ordering::Relaxed)
    }

    /// Forgets clients that have been gone longer than the retention window.
    pub fn sweep(&self, now: Millis) {
        let forget = self.forget_after_ms;
        self.lock().retain(|_, r| {
            r.state != SessionState::Disconnected || now.saturating_sub(r.last_seen) < forget
        });
    }

    pub fn sessions(&self, head: u64, now: Millis) -> Vec<SessionView> {
        let mut records = self.lock();
        let mut views: Vec<SessionView> = records
            .iter_mut()
            .map(|(id, r)| {
                let quality = r.quality.report(now);
                SessionView {
                    client_id: id.clone(),
                    state: r.state,
                    role: r.role,
                    remote: r.remote.clone(),
                    connections: r.connections,
                    reconnects: r.connections.saturating_sub(1),
                    uptime_ms: r.connected_since.map_or(0, |t| now.saturating_sub(t)),
                    last_seen_ms_ago: now.saturating_sub(r.last_seen),
                    acked_upto: r.acked_upto,
                    cursor: r.cursor,
                    behind: head.saturating_sub(r.acked_upto),
                    sent: r.sent,
                    coalesced: r.coalesced,
                    temperature: r.temperature,
                    cooling_events: r.cooling_events,
                    rtt_ms: r.rtt_ms,
                    quality: quality.score,
                    health: r.health.score(),
                    health_band: r.health.band().as_str(),
                }
            })
            .collect();
        views.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        views
    }
}

/// What a session reports after a batch of sends.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub sent: u64,
    pub coalesced: u64,
    pub cursor: u64,
    pub temperature: f64,
    pub cooled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_metric_labels_are_bounded_whatever_ids_clients_invent() {
        let registry = Registry::new(1_000);
        let labels: std::collections::HashSet<String> = (0..1_000)
            .map(|i| registry.metric_label(&format!("invented-{i}")))
            .collect();
        assert_eq!(labels.len(), LABELLED_CLIENTS + 1, "64 ids and \"other\"");
        assert_eq!(
            registry.metric_label("invented-3"),
            "invented-3",
            "a labelled id keeps its label"
        );
        assert_eq!(registry.metric_label("invented-999"), "other");
    }

    #[test]
    fn a_claim_elsewhere_replaces_only_an_older_session_of_the_same_identity() {
        use crate::eventlog::sessions::RemoteClaim;
        let registry = Registry::new(1_000);
        let remote = |revision| RemoteClaim {
            client_id: "op".into(),
            dedup_id: "op".into(),
            revision,
        };
        // Heard while ours was still being recorded; ours came out older.
        let claim = registry
            .connect("op", Role::Control, Credential::Anonymous, "a", 0)
            .unwrap();
        assert!(!registry.claimed_elsewhere(&remote(5)));
        assert!(!*claim.replaced.borrow());
        registry.claimed("op", claim.connection, 3);
        assert!(*claim.replaced.borrow(), "the newer claim elsewhere wins");

        // Ours is newer: an older claim elsewhere changes nothing.
        let claim = registry
            .connect("op", Role::Control, Credential::Anonymous, "a", 1)
            .unwrap();
        registry.claimed("op", claim.connection, 9);
        assert!(!registry.claimed_elsewhere(&remote(7)));
        assert!(!*claim.replaced.borrow());
        // Another credential's claim on the same client_id is not ours.
        let foreign = RemoteClaim {
            dedup_id: Credential::Token(1).dedup_id("op"),
            ..remote(11)
        };
        assert!(!registry.claimed_elsewhere(&foreign));
        assert!(registry.claimed_elsewhere(&remote(12)));
        assert!(*claim.replaced.borrow());
    }
}
