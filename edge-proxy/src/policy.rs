//! The proxy session's decisions, as pure functions: where a client starts
//! after `Hello`, whether a publish is admitted, and the rate bucket. The
//! session task only carries them out, so they are tested here without sockets.

use shared_protocol::frame::{Gap, GapReason, Publish, RejectReason, Resume};
use shared_protocol::peerclock::PeerClock;
use shared_protocol::{is_transmit_kind, keys_transmitter, Millis};

use crate::auth::{is_command_kind, is_reserved_kind, Role};

/// Where a client's stream starts after the welcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Send `gap` first if present, then events from `from` on.
    Replay { from: u64, gap: Option<Gap> },
    /// Send `gap` first if present, then a snapshot of the state, then live.
    Snapshot { gap: Option<Gap> },
}

/// Decides how a client resumes, given the log's `epoch`, `head` (newest
/// durable seq) and `oldest` (oldest replayable seq).
pub fn plan_start(
    resume: Option<Resume>,
    epoch: u64,
    head: u64,
    oldest: u64,
    max_behind: u64,
) -> Start {
    let Some(resume) = resume else {
        return Start::Snapshot { gap: None };
    };
    if resume.epoch != epoch || resume.last_seq > head {
        // The client's history is from a log that no longer exists (or is
        // ahead of this one, which only a lost log can cause).
        let gap = (head > 0).then_some(Gap {
            from: 1,
            to: head,
            reason: GapReason::EpochChanged,
        });
        return Start::Snapshot { gap };
    }
    let from = resume.last_seq + 1;
    if head.saturating_sub(resume.last_seq) > max_behind {
        return Start::Snapshot {
            gap: Some(Gap {
                from,
                to: head,
                reason: GapReason::TooFarBehind,
            }),
        };
    }
    if from < oldest {
        return Start::Replay {
            from: oldest,
            gap: Some(Gap {
                from,
                to: oldest - 1,
                reason: GapReason::Retention,
            }),
        };
    }
    Start::Replay { from, gap: None }
}

/// The longest lifetime a transmit command may ask for. A PTT-on is a
/// keepalive repeated every second; a longer one would let a command held up
/// somewhere key the transmitter long after its sender let go.
pub const MAX_TRANSMIT_TTL_MS: u64 = 10_000;

/// What a session knows of time when it judges a publish: its monotonic
/// `now`, what it has learnt of the client's clock, and (only for deadlines
/// of clients that send no clock samples, which are never transmit
/// commands) the wall clock.
pub struct Clocks<'a> {
    pub now: Millis,
    pub peer: &'a PeerClock,
    pub now_wall_ms: u64,
}

/// Checks a publish before it reaches the log. Rate limiting is separate
/// (reliable publishes wait for the bucket instead of being refused), and so
/// is the TX watchdog's time-out lock-out.
///
/// Deadlines are judged without trusting clocks (docs/PROTOCOL.md,
/// "Deadlines without trusting clocks"): `expires_at_ms` is on the client's
/// clock and is turned into this proxy's monotonic clock with the offset
/// learnt from the client's own timestamps (`Hello.t`, and
/// `expires_at_ms - ttl_ms` of each publish that carries both), so a client
/// ten minutes off keys normally and a command held up in transit for longer
/// than its lifetime is refused. A PTT-off is never refused for its age:
/// unkeying is always safe.
pub fn admit(publish: &Publish, role: Role, clocks: &Clocks<'_>) -> Result<(), RejectReason> {
    if publish.kind.is_empty() || publish.kind.len() > 128 || !crate::auth::printable(&publish.kind)
    {
        return Err(RejectReason::Invalid);
    }
    if is_reserved_kind(&publish.kind) {
        return Err(RejectReason::Forbidden);
    }
    if is_command_kind(&publish.kind) && role != Role::Control {
        return Err(RejectReason::Forbidden);
    }
    if is_transmit_kind(&publish.kind) && publish.payload["on"].as_bool().is_none() {
        // Neither on nor off: refused, so that nothing downstream guesses.
        return Err(RejectReason::Invalid);
    }
    if keys_transmitter(&publish.kind, &publish.payload) {
        // Keying a transmitter must always carry a lifetime the proxy can
        // judge by its own clock.
        match (publish.expires_at_ms, publish.ttl_ms) {
            (Some(_), Some(ttl)) if ttl <= MAX_TRANSMIT_TTL_MS => {}
            _ => return Err(RejectReason::Invalid),
        }
    } else if is_transmit_kind(&publish.kind) {
        return Ok(());
    }
    let Some(deadline) = publish.expires_at_ms else {
        return Ok(());
    };
    let passed = match clocks.peer.to_local(deadline, clocks.now) {
        Some(local) => local <= clocks.now,
        // A client that never said what its clock reads (an older client),
        // for a command that is not a transmit one: its wall clock against ours.
        None => deadline < clocks.now_wall_ms,
    };
    if passed {
        return Err(RejectReason::Expired);
    }
    Ok(())
}

/// How widely to spread the return of `clients` (plus one) so that, each
/// picking a uniform moment in the window, they arrive at about two thirds of
/// the `per_sec` handshake budget: random arrivals bunch, and the margin
/// keeps the busiest second under the bound. Never under a second.
pub fn drain_spread_ms(clients: u64, per_sec: u32) -> u64 {
    ((clients + 1) * 1_500)
        .div_ceil(u64::from(per_sec.max(1)))
        .max(1_000)
}

/// A token bucket: `rate` tokens a second, holding at most `rate`.
#[derive(Debug, Clone)]
pub struct RateBucket {
    rate: f64,
    tokens: f64,
    last: Millis,
}

impl RateBucket {
    pub fn new(rate_per_sec: u32, now: Millis) -> Self {
        let rate = f64::from(rate_per_sec.max(1));
        RateBucket {
            rate,
            tokens: rate,
            last: now,
        }
    }

    /// Takes a token, or says how many ms until one is available.
    pub fn take(&mut self, now: Millis) -> Result<(), u64> {
        let elapsed = now.saturating_sub(self.last) as f64 / 1_000.0;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now.max(self.last);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - self.tokens) / self.rate) * 1_000.0).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::frame::{Delivery, Payload};

    const EPOCH: u64 = 7;

    fn resume(last_seq: u64) -> Option<Resume> {
        Some(Resume {
            epoch: EPOCH,
            last_seq,
        })
    }

    #[test]
    fn new_clients_get_a_snapshot() {
        assert_eq!(
            plan_start(None, EPOCH, 50, 1, 1_000),
            Start::Snapshot { gap: None }
        );
    }

    #[test]
    fn resuming_clients_get_a_replay() {
        assert_eq!(
            plan_start(resume(40), EPOCH, 50, 1, 1_000),
            Start::Replay {
                from: 41,
                gap: None
            }
        );
        assert_eq!(
            plan_start(resume(50), EPOCH, 50, 1, 1_000),
            Start::Replay {
                from: 51,
                gap: None
            }
        );
        assert_eq!(
            plan_start(resume(0), EPOCH, 50, 1, 1_000),
            Start::Replay { from: 1, gap: None }
        );
    }

    #[test]
    fn trimmed_history_is_a_retention_gap() {
        let start = plan_start(resume(10), EPOCH, 50, 30, 1_000);
        assert_eq!(
            start,
            Start::Replay {
                from: 30,
                gap: Some(Gap {
                    from: 11,
                    to: 29,
                    reason: GapReason::Retention
                })
            }
        );
    }

    #[test]
    fn too_far_behind_gets_gap_and_snapshot() {
        let start = plan_start(resume(10), EPOCH, 2_000, 1, 1_000);
        assert_eq!(
            start,
            Start::Snapshot {
                gap: Some(Gap {
                    from: 11,
                    to: 2_000,
                    reason: GapReason::TooFarBehind
                })
            }
        );
    }

    #[test]
    fn other_epoch_gets_gap_and_snapshot() {
        let start = plan_start(
            Some(Resume {
                epoch: 1,
                last_seq: 10,
            }),
            EPOCH,
            5,
            1,
            1_000,
        );
        assert_eq!(
            start,
            Start::Snapshot {
                gap: Some(Gap {
                    from: 1,
                    to: 5,
                    reason: GapReason::EpochChanged
                })
            }
        );
        assert_eq!(
            plan_start(
                Some(Resume {
                    epoch: 1,
                    last_seq: 10
                }),
                EPOCH,
                0,
                1,
                1_000
            ),
            Start::Snapshot { gap: None }
        );
    }

    fn publish(kind: &str, expires_at_ms: Option<u64>) -> Publish {
        Publish {
            client_seq: 1,
            kind: kind.into(),
            payload: Payload::Nil,
            delivery: Delivery::Reliable,
            expires_at_ms,
            ttl_ms: None,
        }
    }

    fn ptt(on: bool, expires_at_ms: u64, ttl_ms: Option<u64>) -> Publish {
        Publish {
            kind: "radio.ptt".into(),
            payload: Payload::Map(vec![("on".into(), on.into())]),
            delivery: Delivery::Volatile,
            ttl_ms,
            ..publish("radio.ptt", Some(expires_at_ms))
        }
    }

    /// A session's view of time at monotonic `now`, with the client's clock
    /// `skew` ahead of the proxy's wall clock, which reads `WALL + now`.
    const WALL: u64 = 1_700_000_000_000;

    fn admit_at(
        p: &Publish,
        role: Role,
        peer: &mut PeerClock,
        now: Millis,
    ) -> Result<(), RejectReason> {
        if let (Some(e), Some(ttl)) = (p.expires_at_ms, p.ttl_ms) {
            peer.sample(e.saturating_sub(ttl), now);
        }
        admit(
            p,
            role,
            &Clocks {
                now,
                peer,
                now_wall_ms: WALL + now,
            },
        )
    }

    #[test]
    fn admission_rules() {
        let peer = &mut PeerClock::new(60_000);
        assert_eq!(
            admit_at(&publish("note", None), Role::Read, peer, 0),
            Ok(())
        );
        assert_eq!(
            admit_at(&publish("radio.set_freq", None), Role::Read, peer, 0),
            Err(RejectReason::Forbidden)
        );
        assert_eq!(
            admit_at(&publish("radio.set_freq", None), Role::Control, peer, 0),
            Ok(())
        );
        for forged in [
            "radio.state",
            "meter.power",
            "link.radio",
            "watchdog.unkeyed",
        ] {
            assert_eq!(
                admit_at(&publish(forged, None), Role::Control, peer, 0),
                Err(RejectReason::Forbidden),
                "{forged} is the proxy's to write"
            );
        }
        assert_eq!(
            admit_at(&publish("link.reconnect", None), Role::Control, peer, 0),
            Ok(())
        );
        assert_eq!(
            admit_at(&publish("", None), Role::Control, peer, 0),
            Err(RejectReason::Invalid)
        );
        // Without a clock sample, a plain deadline is the wall clock's.
        assert_eq!(
            admit_at(&publish("note", Some(WALL + 999)), Role::Read, peer, 1_000),
            Err(RejectReason::Expired)
        );
    }

    #[test]
    fn keying_needs_a_lifetime_and_unkeying_always_passes() {
        let peer = &mut PeerClock::new(60_000);
        let bare = Publish {
            ttl_ms: None,
            ..ptt(true, WALL + 2_000, None)
        };
        assert_eq!(
            admit_at(&bare, Role::Control, peer, 0),
            Err(RejectReason::Invalid)
        );
        let long = ptt(true, WALL + 60_000, Some(60_000));
        assert_eq!(
            admit_at(&long, Role::Control, peer, 0),
            Err(RejectReason::Invalid)
        );
        assert_eq!(
            admit_at(&ptt(true, WALL + 2_000, Some(2_000)), Role::Read, peer, 0),
            Err(RejectReason::Forbidden)
        );
        // A PTT that is neither on nor off is refused.
        let vague = Publish {
            payload: Payload::Map(vec![("on".into(), 1.into())]),
            ..ptt(true, WALL + 2_000, Some(2_000))
        };
        assert_eq!(
            admit_at(&vague, Role::Control, peer, 0),
            Err(RejectReason::Invalid)
        );
        // An ancient PTT-off, even without a lifetime, still unkeys.
        let off = Publish {
            ttl_ms: None,
            ..ptt(false, 5, None)
        };
        assert_eq!(admit_at(&off, Role::Control, peer, 0), Ok(()));
    }

    #[test]
    fn skewed_clocks_key_and_a_held_command_is_refused() {
        const MIN: i64 = 60_000;
        for skew in [10 * MIN, -10 * MIN] {
            let peer = &mut PeerClock::new(60_000);
            let client = |mono: u64| (WALL as i64 + mono as i64 + skew) as u64;
            // Hello at 1_000 (5 ms in transit).
            peer.sample(client(995), 1_000);
            for sent in (2_000..10_000).step_by(1_000) {
                let p = ptt(true, client(sent) + 2_000, Some(2_000));
                assert_eq!(
                    admit_at(&p, Role::Control, peer, sent + 5),
                    Ok(()),
                    "skew {skew}"
                );
            }
            // Sent at 10_000, held 2.5 s on the way.
            let held = ptt(true, client(10_000) + 2_000, Some(2_000));
            assert_eq!(
                admit_at(&held, Role::Control, peer, 12_500),
                Err(RejectReason::Expired),
                "skew {skew}"
            );
        }
    }

    #[test]
    fn bucket_refills_at_rate() {
        let mut b = RateBucket::new(10, 0);
        for _ in 0..10 {
            assert_eq!(b.take(0), Ok(()));
        }
        assert_eq!(b.take(0), Err(100));
        assert_eq!(b.take(100), Ok(()));
        assert!(b.take(100).is_err());
    }

    #[test]
    fn the_drain_window_keeps_the_crowd_under_the_budget() {
        assert_eq!(drain_spread_ms(0, 500), 1_000, "never under a second");
        assert_eq!(drain_spread_ms(999, 500), 3_000);
        // On average, the crowd returns at two thirds of the budget.
        for (crowd, budget) in [(1_000u64, 400u32), (10_000, 500), (50, 10)] {
            let window_s = drain_spread_ms(crowd, budget) as f64 / 1_000.0;
            let rate = (crowd + 1) as f64 / window_s;
            assert!(
                rate <= f64::from(budget) * 0.67,
                "{crowd} over {window_s} s"
            );
        }
    }
}
