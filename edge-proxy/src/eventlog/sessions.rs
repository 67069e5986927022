//! Which proxy holds a client's session, on a shared log.
//!
//! A client that moves from proxy A to proxy B can leave a half-open
//! session behind on A (its link died without a close): A would go on
//! counting it, holding its queued publishes' lane and, for a keyer, its
//! TX watchdog state, until the stale rule ends it. So each proxy records
//! every session it welcomes in the stream's sessions bucket
//! (`{stream}_SESSIONS`, a JetStream key-value store) and watches the
//! bucket: a claim on the same identity by another proxy with a *later*
//! revision replaces the local session, as a second connection on one
//! proxy does. The bucket's revisions put every claim in one order, so a
//! client that hops A → B → A quickly ends with its newest session alive
//! and no wall clock is compared anywhere.

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use super::jetstream::nats_error;
use super::LogError;

/// Claims are only compared with claims of the same moment; an hour keeps
/// the bucket small.
const KEEP: std::time::Duration = std::time::Duration::from_secs(3_600);
/// At most this many identities in the bucket (the oldest go first).
const MAX_ENTRIES: i64 = 100_000;

/// A session another proxy took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteClaim {
    pub client_id: String,
    /// The identity the claim is for: `Credential::dedup_id`, so a claim
    /// under another credential never touches this proxy's session.
    pub dedup_id: String,
    /// The bucket's revision: later claims have higher ones.
    pub revision: u64,
}

/// This proxy's handle on the sessions bucket.
#[derive(Clone)]
pub struct Claims {
    store: kv::Store,
    /// This process's id (the prefix of its message ids): its own claims
    /// are not news.
    me: String,
}

fn encode(me: &str, client_id: &str, dedup_id: &str) -> Bytes {
    Bytes::from(format!("{me}\n{client_id}\n{dedup_id}"))
}

fn decode(value: &[u8], revision: u64) -> Option<(String, RemoteClaim)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.splitn(3, '\n');
    let (me, client_id, dedup_id) = (parts.next()?, parts.next()?, parts.next()?);
    Some((
        me.to_string(),
        RemoteClaim {
            client_id: client_id.to_string(),
            dedup_id: dedup_id.to_string(),
            revision,
        },
    ))
}

impl Claims {
    /// Opens (creating if needed) the stream's sessions bucket.
    pub async fn open(
        js: &jetstream::Context,
        stream_name: &str,
        me: &str,
    ) -> Result<Claims, LogError> {
        let bucket = format!("{stream_name}_SESSIONS");
        let store = super::kv::open(
            js,
            super::kv::Bucket {
                name: &bucket,
                what: "sessions",
                max_age: KEEP,
                max_messages: MAX_ENTRIES,
                discard: stream::DiscardPolicy::Old,
            },
        )
        .await?;
        Ok(Claims {
            store,
            me: me.to_string(),
        })
    }

    /// Records that this proxy now holds `dedup_id`'s session; returns the
    /// claim's revision.
    pub async fn claim(&self, client_id: &str, dedup_id: &str) -> Result<u64, LogError> {
        self.store
            .put(
                super::kv::key(dedup_id),
                encode(&self.me, client_id, dedup_id),
            )
            .await
            .map_err(|e| nats_error("recording a session in the sessions bucket", e))
    }

    /// Calls `on_claim` for every claim another proxy makes from now on,
    /// for as long as the log lives (the watch is reopened after an error).
    pub fn watch(self, on_claim: impl Fn(RemoteClaim) + Send + 'static) {
        tokio::spawn(async move {
            loop {
                match self.store.watch_all().await {
                    Ok(mut entries) => {
                        while let Some(entry) = entries.next().await {
                            let Ok(entry) = entry else { break };
                            if entry.operation != kv::Operation::Put {
                                continue;
                            }
                            match decode(&entry.value, entry.revision) {
                                Some((from, claim)) if from != self.me => on_claim(claim),
                                _ => {}
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watching the sessions bucket failed; retrying");
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_round_trips_for_any_identity() {
        for id in ["operator", "a b/c.*>", "ü@t0123456789abcdef", "\u{1f4fb}"] {
            let (me, claim) = decode(&encode("p:a:1:", "cid", id), 7).unwrap();
            // A client_id cannot hold a newline (printable only), so the
            // split is exact for every id the proxy accepts.
            assert_eq!(me, "p:a:1:");
            assert_eq!(claim.dedup_id, id);
            assert_eq!(claim.revision, 7);
        }
        let (_, claim) = decode(&encode("p:a:1:", "cid", "cid@t01"), 3).unwrap();
        assert_eq!(
            claim,
            RemoteClaim {
                client_id: "cid".into(),
                dedup_id: "cid@t01".into(),
                revision: 3
            }
        );
        assert_eq!(decode(b"only one part", 1), None);
    }
}
