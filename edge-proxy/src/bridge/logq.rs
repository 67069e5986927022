//! The bridge's way into the log: a bounded queue served by a task of its
//! own. No hardware loop ever waits for the log (a full disk, a NATS outage,
//! a slow group commit): polling, commands and the unkey paths go on while
//! events wait here, and when the queue is full the newest event is dropped
//! and counted rather than the loop blocked.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::eventlog::{EventLog, NewEvent};

/// Events waiting for the log at most. At the bridge's rates (a radio state
/// on change, a power reading a second, link events) this is minutes of
/// outage.
const CAPACITY: usize = 1_024;
/// Events written in one append at most.
const BATCH: usize = 256;

enum Item {
    Event(NewEvent),
    /// Answered once everything queued before it was handed to the log.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct LogQueue {
    tx: mpsc::Sender<Item>,
}

impl LogQueue {
    pub fn start(log: EventLog) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(write(log, rx));
        LogQueue { tx }
    }

    /// Queues `event` for the log; never waits.
    pub fn push(&self, event: NewEvent) {
        if let Err(e) = self.tx.try_send(Item::Event(event)) {
            let kind = match e.into_inner() {
                Item::Event(event) => event.kind,
                Item::Flush(_) => String::new(),
            };
            metrics::counter!("bridge_log_dropped_total").increment(1);
            tracing::warn!(%kind, "the log is not keeping up: a hardware event was dropped");
        }
    }

    /// Waits (at most `within`) until what was queued so far reached the log.
    pub async fn flush(&self, within: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        let sent = tokio::time::timeout(within, self.tx.send(Item::Flush(done))).await;
        matches!(sent, Ok(Ok(()))) && matches!(tokio::time::timeout(within, wait).await, Ok(Ok(())))
    }
}

async fn write(log: EventLog, mut rx: mpsc::Receiver<Item>) {
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Item::Event(event) => batch.push(event),
                Item::Flush(done) => waiting.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            if let Err(e) = log.append(batch).await {
                metrics::counter!("bridge_log_dropped_total").increment(n);
                tracing::warn!(error = %e, "could not log hardware events");
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
