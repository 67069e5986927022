//! The station's last values, kept beside the trimmed stream.
//!
//! A quiet radio logs `radio.state` only when something changes, so after
//! the stream's retention the event is gone from it. A proxy that never
//! stopped still has the value in its snapshot; one that starts later would
//! not. So each proxy also puts the events it appends itself (the station's
//! kinds: radio, meter, links, watchdog) into the stream's state bucket
//! (`{stream}_STATE`, a JetStream key-value store, one entry per kind), and
//! a starting proxy seeds its snapshot with the kinds its copy of the stream
//! no longer holds. Application kinds published by clients are not kept
//! here: they survive for the stream's retention, as on any log (an
//! application that needs a value to outlive it republishes it).
//!
//! Puts go through one background task in order, never holding up an
//! append (the radio's loop waits on appends): when NATS is away the queue
//! fills and the oldest puts are dropped, since a newer value of the same
//! kind follows.

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::jetstream::nats_error;
use super::LogError;

/// Puts waiting for NATS at most; beyond that a put is dropped.
const QUEUE: usize = 256;

/// One entry per kind; generous for a station's handful of kinds.
const MAX_KINDS: i64 = 10_000;

/// The handle a proxy puts its own events through.
#[derive(Clone)]
pub struct LastState {
    store: kv::Store,
    queue: mpsc::Sender<(String, Bytes)>,
}

impl LastState {
    /// Opens (creating if needed) the stream's state bucket and starts its
    /// writer.
    pub async fn open(js: &jetstream::Context, stream_name: &str) -> Result<LastState, LogError> {
        let bucket = format!("{stream_name}_STATE");
        let store = super::kv::open(
            js,
            super::kv::Bucket {
                name: &bucket,
                what: "state",
                max_age: std::time::Duration::ZERO,
                max_messages: MAX_KINDS,
                discard: stream::DiscardPolicy::Old,
            },
        )
        .await?;
        let (queue, mut puts) = mpsc::channel::<(String, Bytes)>(QUEUE);
        let writer = store.clone();
        tokio::spawn(async move {
            while let Some((kind, record)) = puts.recv().await {
                if let Err(e) = writer.put(super::kv::key(&kind), record).await {
                    tracing::warn!(kind, error = %e, "could not keep a last value in the state bucket; the next one will be");
                }
            }
        });
        Ok(LastState { store, queue })
    }

    /// Keeps `record` (an event this proxy appended) as `kind`'s last value.
    pub fn keep(&self, kind: &str, record: Bytes) {
        if self.queue.try_send((kind.to_string(), record)).is_err() {
            metrics::counter!("proxy_log_state_puts_dropped_total").increment(1);
        }
    }

    /// Every kept record.
    pub async fn all(&self) -> Result<Vec<Bytes>, LogError> {
        let mut keys = self
            .store
            .keys()
            .await
            .map_err(|e| nats_error("listing the state bucket", e))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| nats_error("listing the state bucket", e))?;
            if let Some(value) = self
                .store
                .get(&key)
                .await
                .map_err(|e| nats_error("reading the state bucket", e))?
            {
                out.push(value);
            }
        }
        Ok(out)
    }
}
