//! The other proxies' clocks, learnt before their first event arrives.
//!
//! Every event in a shared stream is stamped by the proxy that logged it
//! (its wall clock), and the radio's owner judges a PTT-on's freshness
//! against the stamps it has seen from that proxy before (`PeerClock`:
//! offsets, never an agreement of wall clocks). The first event of a proxy
//! had nothing to be compared with. So every proxy also sends a clock tick
//! each second on a plain NATS subject (`station_link.clock.{stream}`, not
//! stored): its origin and its wall clock. Each proxy keeps a `PeerClock`
//! per origin from the ticks, against its own monotonic clock, and the
//! owner asks it when an origin's first event arrives. `/stats` shows the
//! offsets, so a proxy whose clock is wrong is visible at a glance.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shared_protocol::peerclock::PeerClock;
use shared_protocol::Millis;

/// How often a proxy sends its clock.
pub const TICK: Duration = Duration::from_secs(1);
/// Origins remembered at most (the oldest heard is forgotten first).
const MAX_PEERS: usize = 64;
/// A clock stepped back is followed within this window.
const WINDOW_MS: u64 = 60_000;

/// The subject of a stream's clock ticks.
pub fn subject(stream: &str) -> String {
    format!("station_link.clock.{stream}")
}

/// The peers' clocks as heard from their ticks.
pub struct Peers {
    started: Instant,
    clocks: Mutex<Vec<(Arc<str>, PeerClock)>>,
}

impl Peers {
    pub fn new() -> Peers {
        Peers {
            started: Instant::now(),
            clocks: Mutex::default(),
        }
    }

    fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    /// A tick: `origin`'s wall clock read `wall_ms` as it sent it.
    pub fn heard(&self, origin: &str, wall_ms: u64) {
        let now = self.now();
        let Ok(mut clocks) = self.clocks.lock() else {
            return;
        };
        match clocks.iter_mut().find(|(o, _)| &**o == origin) {
            Some((_, clock)) => clock.sample(wall_ms, now),
            None => {
                let mut clock = PeerClock::new(WINDOW_MS);
                clock.sample(wall_ms, now);
                shared_protocol::push_bounded(&mut clocks, MAX_PEERS, (origin.into(), clock));
            }
        }
    }

    /// How long ago `origin` stamped `wall_ms`, by its ticks (0 for a stamp
    /// in the future); `None` before a tick of it was heard. One tick is
    /// enough: unlike an event judged by its own origin's samples, a tick
    /// is a sample independent of what is being judged.
    pub fn age(&self, origin: &str, wall_ms: u64) -> Option<Millis> {
        let now = self.now();
        let clocks = self.clocks.lock().ok()?;
        let (_, clock) = clocks.iter().find(|(o, _)| &**o == origin)?;
        // Unclamped: a stamp from before this proxy started is still old.
        let offset = i128::from(clock.offset(now)?);
        let age = i128::from(now) - (i128::from(wall_ms) - offset);
        Some(age.clamp(0, i128::from(u64::MAX)) as Millis)
    }

    /// For `/stats`: each peer's clock minus this proxy's wall clock, ms
    /// (a tick's travel time included).
    pub fn offsets(&self, own_wall_ms: u64) -> Vec<(String, i64)> {
        let now = self.now();
        let Ok(clocks) = self.clocks.lock() else {
            return Vec::new();
        };
        clocks
            .iter()
            .filter_map(|(origin, clock)| {
                // The peer's clock now is `offset + now`.
                let peer_now = i128::from(clock.offset(now)?) + i128::from(now);
                let offset = (peer_now - i128::from(own_wall_ms)).clamp(-(1 << 62), 1 << 62);
                Some((origin.to_string(), offset as i64))
            })
            .collect()
    }
}

/// Sends this proxy's ticks and hears the others', for as long as the log
/// lives. `me` is this proxy's origin.
pub fn run(client: async_nats::Client, stream: &str, me: Arc<str>, peers: Arc<Peers>) {
    let subject = subject(stream);
    let sender = client.clone();
    let (to, from) = (subject.clone(), me.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let tick = format!("{from}\n{}", super::now_ms());
            // Best effort: a lost tick is one sample fewer.
            let _ = sender.publish(to.clone(), tick.into()).await;
        }
    });
    tokio::spawn(async move {
        loop {
            match client.subscribe(subject.clone()).await {
                Ok(mut ticks) => {
                    while let Some(message) = ticks.next().await {
                        let Ok(text) = std::str::from_utf8(&message.payload) else {
                            continue;
                        };
                        let Some((origin, wall)) = text.split_once('\n') else {
                            continue;
                        };
                        if origin == &*me {
                            continue;
                        }
                        if let Ok(wall) = wall.parse() {
                            peers.heard(origin, wall);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not hear the other proxies' clocks; retrying");
                }
            }
            tokio::time::sleep(TICK).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_judged_by_its_ticks_offset() {
        let peers = Peers::new();
        // A peer ten seconds ahead of everyone.
        let ahead = |ms: u64| super::super::now_ms() + 10_000 + ms;
        assert_eq!(peers.age("p:b:1", ahead(0)), None, "not heard yet");
        peers.heard("p:b:1", ahead(0));
        let age = peers.age("p:b:1", ahead(0)).unwrap();
        assert!(age < 1_000, "fresh by its own clock: {age} ms");
        let stale = peers.age("p:b:1", ahead(0) - 20_000).unwrap();
        assert!(stale >= 19_000, "twenty seconds old by its clock: {stale}");
        assert_eq!(peers.age("p:c:1", ahead(0)), None, "unknown origin");
        let offsets = peers.offsets(super::super::now_ms());
        assert_eq!(offsets.len(), 1);
        assert!((offsets[0].1 - 10_000).abs() < 1_000, "{offsets:?}");
    }
}
