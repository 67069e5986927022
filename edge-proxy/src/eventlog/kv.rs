//! The JetStream key-value buckets beside the stream (owners, sessions,
//! last values): how one is made, and keys for names the bucket would not
//! take.

use async_nats::jetstream::{self, kv, stream};

use super::jetstream::nats_error;
use super::LogError;

/// What differs between the buckets.
pub struct Bucket<'a> {
    /// `{stream}_{what}`, e.g. `STATION_OWNERS`.
    pub name: &'a str,
    /// What it holds, for error messages ("owners").
    pub what: &'a str,
    /// Zero: entries never expire.
    pub max_age: std::time::Duration,
    /// Zero: no cap.
    pub max_messages: i64,
    pub discard: stream::DiscardPolicy,
}

/// Opens `bucket`, creating it if needed. Its stream is made by hand as
/// the KV layout prescribes (`KV_{bucket}` on `$KV.{bucket}.>`, one message
/// per key): the client's own bucket creation sends settings that
/// nats-server 2.9 does not take.
pub async fn open(js: &jetstream::Context, bucket: Bucket<'_>) -> Result<kv::Store, LogError> {
    let Bucket {
        name,
        what,
        max_age,
        max_messages,
        discard,
    } = bucket;
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_messages,
        max_age,
        storage: stream::StorageType::File,
        discard,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .map_err(|e| nats_error(&format!("creating the {what} bucket {name}"), e))?;
    js.get_key_value(name)
        .await
        .map_err(|e| nats_error(&format!("opening the {what} bucket {name}"), e))
}

/// A key the bucket takes for any name (keys allow only a few characters;
/// `client_id`s and kinds allow every printable one): FNV-1a, in hex. Two
/// names sharing a key lose nothing where the value names what it is for.
pub fn key(name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_name_gets_a_valid_key() {
        for name in [
            "radio.state",
            "operator",
            "a b/c.*>",
            "ü@t0123",
            "\u{1f4fb}",
        ] {
            let k = super::key(name);
            assert_eq!(k.len(), 16);
            assert!(k.chars().all(|c| c.is_ascii_hexdigit()), "{k}");
        }
        assert_ne!(super::key("radio.state"), super::key("meter.power"));
    }
}
