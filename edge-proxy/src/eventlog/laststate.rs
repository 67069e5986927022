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

/// The bucket's key for `kind` (keys take only a few characters): FNV-1a
/// in hex. The value is the whole record, kind included, so two kinds
/// sharing a key cannot be confused (the newer simply wins the slot).
fn key(kind: &str) -> String {
    let hash = kind.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

impl LastState {
    /// Opens (creating if needed) the stream's state bucket and starts its
    /// writer.
    pub async fn open(js: &jetstream::Context, stream_name: &str) -> Result<LastState, LogError> {
        let bucket = format!("{stream_name}_STATE");
        // Made by hand as the KV layout prescribes (see `lease.rs`).
        js.get_or_create_stream(stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_messages: MAX_KINDS,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_error(&format!("creating the state bucket {bucket}"), e))?;
        let store = js
            .get_key_value(&bucket)
            .await
            .map_err(|e| nats_error(&format!("opening the state bucket {bucket}"), e))?;
        let (queue, mut puts) = mpsc::channel::<(String, Bytes)>(QUEUE);
        let writer = store.clone();
        tokio::spawn(async move {
            while let Some((kind, record)) = puts.recv().await {
                if let Err(e) = writer.put(key(&kind), record).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_gets_a_valid_key() {
        for kind in ["radio.state", "meter.power", "a b/c.*>", "\u{1f4fb}"] {
            let k = key(kind);
            assert_eq!(k.len(), 16);
            assert!(k.chars().all(|c| c.is_ascii_hexdigit()), "{k}");
        }
        assert_ne!(key("radio.state"), key("meter.power"));
    }
}
