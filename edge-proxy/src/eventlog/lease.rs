//! Hardware ownership on a shared log: each radio and meter belongs to one
//! proxy, recorded in a JetStream key-value bucket whose entries expire
//! unless the owner renews them.

use async_nats::jetstream::{self, stream};
use bytes::Bytes;

use super::jetstream::{nats_error, LEASE};
use super::LogError;

/// Claims a piece of hardware (`"radio"`, `"meter"`) for this proxy in
/// the stream's owners bucket (`{stream}_OWNERS`, a JetStream key-value
/// store whose entries expire after [`LEASE`] unless renewed). Each
/// radio and meter belongs to exactly one proxy: a second proxy claiming
/// it is refused while the owner lives. The same proxy name may take its
/// own claim back (a restart within the lease). Renewed in the
/// background for as long as the proxy runs.
pub async fn claim(
    js: &jetstream::Context,
    stream_name: &str,
    what: &str,
    owner: &str,
) -> Result<(), LogError> {
    let bucket = format!("{}_OWNERS", stream_name);
    let store = super::kv::open(
        js,
        super::kv::Bucket {
            name: &bucket,
            what: "owners",
            max_age: LEASE,
            // No cap: one entry per piece of hardware.
            max_messages: 0,
            discard: stream::DiscardPolicy::New,
        },
    )
    .await?;
    let value = Bytes::from(owner.to_string());
    let mut revision = match store.create(what, value.clone()).await {
        Ok(revision) => revision,
        Err(_) => {
            let entry = store
                .entry(what)
                .await
                .map_err(|e| nats_error("reading the owners bucket", e))?;
            match entry {
                Some(entry) if entry.value == value.as_ref() => store
                    .update(what, value.clone(), entry.revision)
                    .await
                    .map_err(|e| nats_error("renewing this proxy's claim", e))?,
                Some(entry) => {
                    return Err(LogError::Nats(format!(
                        "the {what} on stream {} belongs to proxy {:?}; give each radio and meter to one proxy only",
                        stream_name,
                        String::from_utf8_lossy(&entry.value)
                    )))
                }
                None => store
                    .create(what, value.clone())
                    .await
                    .map_err(|e| nats_error(&format!("claiming the {what}"), e))?,
            }
        }
    };
    tracing::info!(what, owner, bucket = %bucket, "hardware claimed on the shared log");
    let what = what.to_string();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(LEASE / 4).await;
            let renewed = match store.update(&what, value.clone(), revision).await {
                Ok(next) => Ok(next),
                // Lapsed (NATS was away longer than the lease): claim again.
                Err(_) => store
                    .create(&what, value.clone())
                    .await
                    .map_err(|e| e.to_string()),
            };
            match renewed {
                Ok(next) => revision = next,
                Err(e) => {
                    tracing::warn!(what, error = %e, "could not renew the hardware claim (NATS down, or another proxy took it); retrying")
                }
            }
        }
    });
    Ok(())
}
