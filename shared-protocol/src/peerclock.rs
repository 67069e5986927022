//! How far a peer's clock is from ours, learnt from the timestamps the peer
//! puts on its frames, so that its deadlines can be judged without trusting
//! that the two clocks agree.
//!
//! A peer stamps a frame with its clock `c` when it sends it; we note our
//! clock `p` when it arrives. With `s` the true offset (peer minus us) and
//! `d >= 0` the frame's time in transit, `c - p = s - d`: every sample is a
//! lower bound of `s`, and the largest one belongs to the fastest frame. So
//! the estimate is the largest sample of a recent window, and a deadline `e`
//! on the peer's clock is `e - estimate` on ours. A frame that was held up
//! (a stalled relay, a queue somewhere) looks exactly as late as it was,
//! relative to the fastest frame; the fastest frame's own transit (a
//! fraction of the round trip) is the only error, and it makes deadlines a
//! little *later*, never earlier than the fastest path allows.
//!
//! The window (samples older than `window_ms` are forgotten, except the
//! newest) lets the estimate follow a peer whose clock was stepped back,
//! while a step forward is taken at once. Our own clock here is whatever
//! the caller passes as `now`: the proxy passes its monotonic clock, so a
//! step of its wall clock (a Raspberry Pi setting its time from NTP after
//! boot) changes nothing.

use crate::Millis;

/// Samples kept at most (the newest win); a handful is plenty, since only
/// the largest matters.
const CAPACITY: usize = 16;

#[derive(Debug, Clone)]
pub struct PeerClock {
    window_ms: u64,
    /// `(arrived at, peer clock minus ours)`, oldest first.
    samples: Vec<(Millis, i64)>,
}

impl PeerClock {
    pub fn new(window_ms: u64) -> Self {
        PeerClock {
            window_ms,
            samples: Vec::new(),
        }
    }

    /// A frame stamped `peer_ms` by the peer arrived at `now`.
    pub fn sample(&mut self, peer_ms: u64, now: Millis) {
        let diff = i128::from(peer_ms) - i128::from(now);
        let diff = diff.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        crate::push_bounded(&mut self.samples, CAPACITY, (now, diff));
    }

    /// The estimated offset (peer minus us) at `now`: the largest sample of
    /// the window, or the newest if all are older. `None` before any sample.
    pub fn offset(&self, now: Millis) -> Option<i64> {
        let newest = self.samples.last()?.1;
        let recent = self
            .samples
            .iter()
            .filter(|(at, _)| now.saturating_sub(*at) <= self.window_ms)
            .map(|(_, d)| *d)
            .max();
        Some(recent.unwrap_or(newest))
    }

    /// `peer_ms` on the peer's clock, as our clock (saturating at 0).
    pub fn to_local(&self, peer_ms: u64, now: Millis) -> Option<Millis> {
        let offset = self.offset(now)?;
        let local = i128::from(peer_ms) - i128::from(offset);
        Some(local.clamp(0, i128::from(u64::MAX)) as u64)
    }

    /// How many samples are kept (at most a handful).
    pub fn samples(&self) -> usize {
        self.samples.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn skew_either_way_is_measured_by_the_fastest_frame() {
        for skew in [10 * MIN, -10 * MIN, 0] {
            let mut c = PeerClock::new(60_000);
            // Sent at our 1_000_000 (+ skew on the peer's clock), in transit
            // 30, 5 and 80 ms.
            for (sent, transit) in [(1_000_000, 30), (1_001_000, 5), (1_002_000, 80)] {
                let peer = (sent as i64 + skew) as u64;
                c.sample(peer, sent + transit);
            }
            assert_eq!(c.offset(1_002_080), Some(skew - 5));
            // A deadline 2 s after a send at 1_003_000, on the peer's clock.
            let deadline = (1_005_000 + skew) as u64;
            assert_eq!(c.to_local(deadline, 1_003_000), Some(1_005_005));
        }
    }

    #[test]
    fn a_held_frame_looks_as_late_as_it_was() {
        let mut c = PeerClock::new(60_000);
        c.sample(5_000_000, 1_000_010);
        // Created at peer 5_001_000 with 2 s to live, held 10 s in transit.
        let created = 5_001_000;
        c.sample(created, 1_011_000);
        let deadline = c.to_local(created + 2_000, 1_011_000).unwrap();
        assert!(deadline < 1_011_000, "expired on arrival: {deadline}");
    }

    #[test]
    fn a_clock_stepped_back_is_followed_after_the_window() {
        let mut c = PeerClock::new(60_000);
        c.sample(2_000_000, 1_000_000);
        // The peer's clock steps back 5 s.
        c.sample(1_995_000 + 1_000, 1_001_000);
        assert_eq!(c.offset(1_001_000), Some(1_000_000));
        assert_eq!(c.offset(1_061_001), Some(995_000));
        // A step forward is taken at once.
        c.sample(2_100_000, 1_062_000);
        assert_eq!(c.offset(1_062_000), Some(1_038_000));
    }

    #[test]
    fn nothing_is_known_before_a_sample_and_extremes_saturate() {
        let mut c = PeerClock::new(1);
        assert_eq!(c.offset(0), None);
        assert_eq!(c.to_local(5, 0), None);
        c.sample(u64::MAX, 0);
        assert_eq!(c.to_local(0, 0), Some(0));
        c.sample(0, u64::MAX);
        assert!(c.to_local(u64::MAX, u64::MAX).is_some());
    }
}
