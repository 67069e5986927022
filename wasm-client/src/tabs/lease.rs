//! Which tab holds the connection: a leader lease negotiated over a
//! broadcast channel, as a sans-IO state machine (time is a parameter; the
//! shell posts what [`Lease::poll_output`] returns and keeps one timer at
//! [`Lease::poll_timeout`]).
//!
//! Why not the Web Locks API: it exists only in secure contexts, and a
//! station's dashboard is usually served over plain HTTP from a LAN name or
//! address. A `BroadcastChannel` exists everywhere, so every context gets
//! the same election.
//!
//! The rules:
//! - A tab starts as a candidate: it posts a `Claim` and, if nothing better
//!   is heard for [`SETTLE_MS`], leads. Any `Beat` (a leader is alive) makes
//!   a candidate follow; so does a better claim. Better is a higher term,
//!   then the smaller tab id, so tabs opened at the same moment agree.
//! - The leader posts a `Beat` every [`BEAT_MS`] and answers every `Claim`
//!   with one at once (message handlers run even when a background tab's
//!   timers are throttled, so a slow leader is not deposed by a claim).
//! - A follower that hears no beat for [`LEASE_MS`] claims with the next
//!   term, and gives its leader [`RECLAIM_SETTLE_MS`] to answer: anything
//!   from it (an answering beat, relayed traffic) and it follows on. A
//!   background page's timers may be held back for seconds, or the page
//!   frozen and its messages queued behind the lease timer; its message
//!   handlers answer as soon as it runs. A leader that goes away posts
//!   `Resign`, and its followers claim at once (the handover takes about
//!   [`SETTLE_MS`]).
//! - A leader also leaves a stamp (its id, term and the time) where new
//!   tabs read it: a tab that opens while a fresh stamp is there waits for
//!   the leader's beat instead of claiming ([`Lease::new`]).
//! - Two leaders (a tab woken from a freeze) hear each other's beats; the
//!   worse one steps down.

use shared_protocol::Millis;

/// A tab's random id (53 bits, so it survives a JS number).
pub type TabId = u64;

/// The leader's heartbeat period.
pub const BEAT_MS: Millis = 1_000;
/// A follower claims after this long without a beat (three and a half beats:
/// a hidden tab's timers may run once a second, late).
pub const LEASE_MS: Millis = 3_500;
/// A candidate waits this long for a better claim or a leader's beat
/// (BroadcastChannel delivers within a few ms).
pub const SETTLE_MS: Millis = 150;
/// A follower whose leader fell silent waits this long for it to answer its
/// claim before it leads.
pub const RECLAIM_SETTLE_MS: Millis = 1_000;

/// The lease protocol's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    Beat { from: TabId, term: u64 },
    Claim { from: TabId, term: u64 },
    Resign { from: TabId, term: u64 },
}

/// What the shell does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// Post this to the other tabs.
    Post(Msg),
    /// This tab now leads: open the connection.
    Lead,
    /// This tab led and must not any more: close the connection, follow.
    StepDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Following `leader` (unknown until a beat), last heard at `heard_at`.
    Following {
        leader: Option<TabId>,
        heard_at: Millis,
    },
    /// Claimed at `since`; leads after `settle` unless it hears better.
    /// `silent` is the leader it followed until it fell silent, if any:
    /// anything from it is an answer.
    Candidate {
        since: Millis,
        settle: Millis,
        silent: Option<TabId>,
    },
    Leading {
        beat_at: Millis,
    },
    /// Resigned (the page is going away, or the link was closed).
    Stopped,
}

#[derive(Debug)]
pub struct Lease {
    me: TabId,
    term: u64,
    phase: Phase,
    out: Vec<Out>,
    /// Another tab led beside this one and stepped down: its connection
    /// (the same client id) may have replaced this tab's at the proxy.
    rival: bool,
}

/// Whether `a` outranks `b`: the higher term, then the smaller id.
fn outranks(a: (u64, TabId), b: (u64, TabId)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

impl Lease {
    /// A tab that has just opened: a candidate, or, when a leader's stamp
    /// says it beat at `stamped`, a follower waiting for its next beat. A
    /// leader busy for longer than [`SETTLE_MS`] (a loaded machine, a
    /// background page) would otherwise see a new tab lead beside it and
    /// take its connection; if that leader is in fact gone, this tab claims
    /// after the lease, as any follower does.
    pub fn new(me: TabId, now: Millis, stamped: Option<Millis>) -> Lease {
        let mut lease = Lease {
            me,
            term: 0,
            phase: Phase::Stopped,
            out: Vec::new(),
            rival: false,
        };
        match stamped {
            Some(heard_at) => lease.follow(None, heard_at),
            None => lease.stand(now, SETTLE_MS, None),
        }
        lease
    }

    pub fn leads(&self) -> bool {
        matches!(self.phase, Phase::Leading { .. })
    }

    pub fn stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    pub fn me(&self) -> TabId {
        self.me
    }

    /// The tab this one follows, once it has heard from it.
    pub fn leader(&self) -> Option<TabId> {
        match self.phase {
            Phase::Following { leader, .. } => leader,
            Phase::Leading { .. } => Some(self.me),
            _ => None,
        }
    }

    pub fn poll_output(&mut self) -> Option<Out> {
        (!self.out.is_empty()).then(|| self.out.remove(0))
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.phase {
            Phase::Following { heard_at, .. } => Some(heard_at + LEASE_MS),
            Phase::Candidate { since, settle, .. } => Some(since + settle),
            Phase::Leading { beat_at } => Some(beat_at),
            Phase::Stopped => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        match self.phase {
            Phase::Following { heard_at, leader } if now >= heard_at + LEASE_MS => {
                self.term += 1;
                let settle = if leader.is_some() {
                    RECLAIM_SETTLE_MS
                } else {
                    SETTLE_MS
                };
                self.stand(now, settle, leader);
            }
            Phase::Candidate { since, settle, .. } if now >= since + settle => {
                self.out.push(Out::Lead);
                self.beat(now);
            }
            Phase::Leading { beat_at } if now >= beat_at => self.beat(now),
            _ => {}
        }
    }

    pub fn handle(&mut self, msg: Msg, now: Millis) {
        if self.phase == Phase::Stopped {
            return;
        }
        match (self.phase, msg) {
            (_, Msg::Beat { from, .. } | Msg::Claim { from, .. } | Msg::Resign { from, .. })
                if from == self.me => {}
            (Phase::Leading { .. }, Msg::Beat { from, term }) => {
                if outranks((term, from), (self.term, self.me)) {
                    self.term = term;
                    self.follow(Some(from), now);
                    self.out.push(Out::StepDown);
                } else {
                    // Ours outranks it: it steps down when it hears this.
                    self.rival = true;
                    self.beat(now);
                }
            }
            (Phase::Leading { .. }, Msg::Claim { term, .. }) => {
                // Alive: the claimer follows when it hears this.
                self.term = self.term.max(term);
                self.beat(now);
            }
            (_, Msg::Beat { from, term }) => {
                self.term = self.term.max(term);
                self.follow(Some(from), now);
            }
            (Phase::Candidate { .. }, Msg::Claim { from, term }) => {
                if outranks((term, from), (self.term, self.me)) {
                    self.term = term;
                    // Wait for the winner's beat; claim again if none comes.
                    self.follow(None, now);
                } else {
                    // It may not have heard ours (it opened after we
                    // claimed): say it again so it stands down.
                    self.out.push(Out::Post(Msg::Claim {
                        from: self.me,
                        term: self.term,
                    }));
                }
            }
            (Phase::Following { leader, .. }, Msg::Resign { from, term })
                if leader.is_none_or(|l| l == from) =>
            {
                self.term = self.term.max(term) + 1;
                self.stand(now, SETTLE_MS, None);
            }
            _ => {}
        }
    }

    /// The leader relayed something (`from`: it, when the message says):
    /// as good as a beat for a follower (a background leader's timers may
    /// run late, its message handlers do not). A tab that opened on a
    /// leader's stamp learns from it which tab leads, so its sends can go
    /// out before the next beat.
    pub fn heard_leader(&mut self, from: Option<TabId>, now: Millis) {
        match &mut self.phase {
            Phase::Following { leader, heard_at } if leader.is_some() || from.is_some() => {
                *leader = leader.or(from);
                *heard_at = (*heard_at).max(now);
            }
            // It answered the claim: it was only late.
            Phase::Candidate {
                silent: Some(leader),
                ..
            } => {
                let leader = *leader;
                self.follow(Some(leader), now);
            }
            _ => {}
        }
    }

    /// The page is going away or the link was closed: a leader says so, so
    /// that a follower takes over at once rather than after the lease.
    pub fn resign(&mut self) {
        if self.leads() {
            self.out.push(Out::Post(Msg::Resign {
                from: self.me,
                term: self.term,
            }));
        }
        self.phase = Phase::Stopped;
    }

    /// Whether a rival leader was heard since the last call: then a
    /// `replaced` from the proxy was that tab's doing, and this one, still
    /// leading, connects again (another device's `replaced` stays final).
    pub fn take_rival(&mut self) -> bool {
        std::mem::take(&mut self.rival)
    }

    /// Takes part again after [`Lease::resign`] (the link was reopened).
    pub fn restart(&mut self, now: Millis) {
        if self.phase == Phase::Stopped {
            self.stand(now, SETTLE_MS, None);
        }
    }

    fn stand(&mut self, now: Millis, settle: Millis, silent: Option<TabId>) {
        self.term = self.term.max(1);
        self.phase = Phase::Candidate {
            since: now,
            settle,
            silent,
        };
        self.out.push(Out::Post(Msg::Claim {
            from: self.me,
            term: self.term,
        }));
    }

    fn follow(&mut self, leader: Option<TabId>, now: Millis) {
        self.phase = Phase::Following {
            leader,
            heard_at: now,
        };
    }

    fn beat(&mut self, now: Millis) {
        self.phase = Phase::Leading {
            beat_at: now + BEAT_MS,
        };
        self.out.push(Out::Post(Msg::Beat {
            from: self.me,
            term: self.term,
        }));
    }
}

#[cfg(test)]
mod tests {
    //! A simulated set of tabs on one channel with a fake clock: messages
    //! arrive after a delay, tabs open, close, crash and stall.
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    struct Tab {
        lease: Lease,
        /// Crashed or stalled: hears nothing, posts nothing, no timers.
        down: bool,
        leads_from: Option<Millis>,
    }

    struct World {
        now: Millis,
        tabs: Vec<Tab>,
        /// (deliver at, from tab index, message)
        wire: Vec<(Millis, usize, Msg)>,
        delay: Millis,
        rng: u64,
        /// The leader's stamp (localStorage: written at once, read by new tabs).
        stamp: Option<Millis>,
    }

    impl World {
        fn new(delay: Millis) -> World {
            World {
                now: 0,
                tabs: Vec::new(),
                wire: Vec::new(),
                delay,
                rng: 0x2545_f491_4f6c_dd1d,
                stamp: None,
            }
        }

        fn random(&mut self) -> u64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng
        }

        fn open(&mut self) -> usize {
            let id = self.random() >> 11;
            let stamped = self.stamp.filter(|at| self.now < at + LEASE_MS);
            let lease = Lease::new(id, self.now, stamped);
            self.tabs.push(Tab {
                lease,
                down: false,
                leads_from: None,
            });
            self.drain(self.tabs.len() - 1);
            self.tabs.len() - 1
        }

        fn drain(&mut self, i: usize) {
            while let Some(out) = self.tabs[i].lease.poll_output() {
                match out {
                    Out::Post(m) => {
                        match m {
                            Msg::Beat { .. } => self.stamp = Some(self.now),
                            Msg::Resign { .. } => self.stamp = None,
                            Msg::Claim { .. } => {}
                        }
                        let jitter = self.random() % (self.delay + 1);
                        self.wire.push((self.now + jitter, i, m));
                    }
                    Out::Lead => self.tabs[i].leads_from = Some(self.now),
                    Out::StepDown => self.tabs[i].leads_from = None,
                }
            }
        }

        /// Runs until `t`, one millisecond at a time.
        fn run_to(&mut self, t: Millis) {
            while self.now < t {
                self.now += 1;
                let now = self.now;
                let due: Vec<_> = self.wire.iter().filter(|m| m.0 <= now).cloned().collect();
                self.wire.retain(|m| m.0 > now);
                for (_, from, msg) in due {
                    for i in 0..self.tabs.len() {
                        if i != from && !self.tabs[i].down {
                            self.tabs[i].lease.handle(msg, now);
                            self.drain(i);
                        }
                    }
                }
                for i in 0..self.tabs.len() {
                    if self.tabs[i].down {
                        continue;
                    }
                    if self.tabs[i]
                        .lease
                        .poll_timeout()
                        .is_some_and(|at| at <= now)
                    {
                        self.tabs[i].lease.handle_timeout(now);
                        self.drain(i);
                    }
                }
                let leaders = self.leaders();
                assert!(leaders.len() <= 1, "two leaders at {now}: {leaders:?}");
            }
        }

        fn leaders(&self) -> Vec<usize> {
            (0..self.tabs.len())
                .filter(|&i| !self.tabs[i].down && self.tabs[i].lease.leads())
                .collect()
        }

        fn close(&mut self, i: usize) {
            self.tabs[i].lease.resign();
            self.drain(i);
            self.tabs[i].down = true;
        }
    }

    #[test]
    fn one_tab_leads_after_the_settle_time() {
        let mut w = World::new(5);
        let a = w.open();
        w.run_to(SETTLE_MS - 1);
        assert!(w.leaders().is_empty());
        w.run_to(SETTLE_MS + 1);
        assert_eq!(w.leaders(), [a]);
    }

    #[test]
    fn tabs_opened_together_elect_exactly_one_and_keep_it() {
        for delay in [0, 3, 20] {
            let mut w = World::new(delay);
            for _ in 0..5 {
                w.open();
            }
            w.run_to(1_000);
            let leaders = w.leaders();
            assert_eq!(leaders.len(), 1, "delay {delay}");
            let first = w.tabs[leaders[0]].leads_from;
            // Steady: 30 s of beats never moves the lease.
            w.run_to(31_000);
            assert_eq!(w.leaders(), leaders);
            assert_eq!(w.tabs[leaders[0]].leads_from, first);
        }
    }

    #[test]
    fn a_tab_opened_later_follows_the_leader() {
        let mut w = World::new(5);
        let a = w.open();
        w.run_to(2_000);
        for t in [2_000, 2_001, 2_500] {
            w.run_to(t);
            w.open();
        }
        w.run_to(20_000);
        assert_eq!(w.leaders(), [a]);
    }

    /// A leader whose beats are held back (a throttled background page)
    /// but whose relayed traffic still arrives keeps its followers.
    #[test]
    fn relayed_traffic_keeps_a_follower_from_claiming() {
        let mut lease = Lease::new(2, 0, None);
        lease.handle(Msg::Beat { from: 1, term: 1 }, 10);
        assert_eq!(lease.leader(), Some(1));
        for t in (100..20_000).step_by(500) {
            lease.heard_leader(None, t);
            lease.handle_timeout(t);
        }
        assert_eq!(lease.leader(), Some(1), "still following");
        lease.handle_timeout(19_600 + LEASE_MS);
        assert_eq!(lease.leader(), None, "silence for a lease: it claims");
    }

    /// A leader that answers a new tab's claim only after the settle time
    /// (a loaded machine) keeps the lease: the new tab read its stamp.
    #[test]
    fn a_tab_opened_beside_a_busy_leader_follows_it() {
        // Stamped 300 ms before the tab opened at 1 000; it answers at 1 800.
        let mut lease = Lease::new(2, 1_000, Some(700));
        lease.handle_timeout(1_000 + SETTLE_MS);
        lease.handle(Msg::Beat { from: 1, term: 3 }, 1_800);
        lease.handle_timeout(1_800 + SETTLE_MS);
        assert_eq!(lease.leader(), Some(1));
        assert_eq!(lease.poll_output(), None, "it never claimed");
        // Its leader's relayed traffic (the answer to its join) names the
        // leader before any beat.
        let mut lease = Lease::new(2, 1_000, Some(700));
        assert_eq!(lease.leader(), None);
        lease.heard_leader(Some(1), 1_010);
        assert_eq!(lease.leader(), Some(1));
        // Without the stamp it would have led before that answer.
        let mut unstamped = Lease::new(2, 1_000, None);
        unstamped.handle_timeout(1_000 + SETTLE_MS);
        assert!(unstamped.leads());
        // A stamp whose leader has gone: it leads after the lease and a
        // settle time.
        let mut lease = Lease::new(2, 1_000, Some(700));
        lease.handle_timeout(700 + LEASE_MS);
        assert!(!lease.leads());
        lease.handle_timeout(700 + LEASE_MS + SETTLE_MS);
        assert!(lease.leads());
    }

    #[test]
    fn a_closing_leader_hands_over_within_the_settle_time() {
        let mut w = World::new(5);
        for _ in 0..3 {
            w.open();
        }
        w.run_to(1_000);
        let old = w.leaders()[0];
        w.close(old);
        let closed = w.now;
        w.run_to(closed + SETTLE_MS + 2 * 5 + 2);
        assert_eq!(w.leaders().len(), 1, "a new leader within the settle time");
        assert_ne!(w.leaders()[0], old);
    }

    #[test]
    fn a_crashed_leader_is_replaced_after_the_lease() {
        let mut w = World::new(5);
        for _ in 0..3 {
            w.open();
        }
        w.run_to(1_000);
        let old = w.leaders()[0];
        w.tabs[old].down = true; // no Resign: a crash
        let crashed = w.now;
        w.run_to(crashed + LEASE_MS - BEAT_MS);
        assert!(
            w.leaders().is_empty(),
            "nobody leads before the lease runs out"
        );
        w.run_to(crashed + LEASE_MS + RECLAIM_SETTLE_MS + 50);
        assert_eq!(w.leaders().len(), 1);
    }

    /// A leader frozen past the lease (its timers and messages held back)
    /// that answers the claim within the reclaim time keeps its followers.
    #[test]
    fn a_late_leader_that_answers_the_claim_keeps_the_lease() {
        for answer in [Answer::Beat, Answer::Relayed] {
            let mut lease = Lease::new(2, 0, None);
            lease.handle(Msg::Beat { from: 1, term: 1 }, 10);
            while lease.poll_output().is_some() {} // its first claim
            lease.handle_timeout(10 + LEASE_MS);
            assert!(matches!(
                lease.poll_output(),
                Some(Out::Post(Msg::Claim { term: 2, .. }))
            ));
            lease.handle_timeout(10 + LEASE_MS + SETTLE_MS);
            assert!(
                !lease.leads(),
                "a known leader gets longer than a new tab's settle"
            );
            let late = 10 + LEASE_MS + RECLAIM_SETTLE_MS - 1;
            match answer {
                Answer::Beat => lease.handle(Msg::Beat { from: 1, term: 2 }, late),
                Answer::Relayed => lease.heard_leader(Some(1), late),
            }
            lease.handle_timeout(late + 1);
            assert_eq!(lease.leader(), Some(1), "{answer:?}: it follows on");
            assert_eq!(lease.poll_output(), None, "{answer:?}: it never led");
        }
        // No answer: it leads once the reclaim time is over.
        let mut lease = Lease::new(2, 0, None);
        lease.handle(Msg::Beat { from: 1, term: 1 }, 10);
        lease.handle_timeout(10 + LEASE_MS);
        lease.handle_timeout(10 + LEASE_MS + RECLAIM_SETTLE_MS);
        assert!(lease.leads());
    }

    #[derive(Debug, Clone, Copy)]
    enum Answer {
        Beat,
        Relayed,
    }

    #[test]
    fn a_stalled_leader_that_wakes_steps_down_to_the_new_one() {
        let mut w = World::new(5);
        for _ in 0..3 {
            w.open();
        }
        w.run_to(1_000);
        let old = w.leaders()[0];
        w.tabs[old].down = true;
        w.run_to(10_000);
        let new = w.leaders()[0];
        // It wakes still believing it leads, and beats on its old term.
        w.tabs[old].down = false;
        w.tabs[old].lease.handle_timeout(w.now);
        w.drain(old);
        let mut steps = 0;
        while w.leaders().len() > 1 && steps < 100 {
            w.now += 1;
            let now = w.now;
            let due: Vec<_> = w.wire.iter().filter(|m| m.0 <= now).cloned().collect();
            w.wire.retain(|m| m.0 > now);
            for (_, from, msg) in due {
                for i in 0..w.tabs.len() {
                    if i != from {
                        w.tabs[i].lease.handle(msg, now);
                        w.drain(i);
                    }
                }
            }
            steps += 1;
        }
        assert_eq!(w.leaders(), [new], "the woken leader stepped down");
        assert_eq!(w.tabs[old].leads_from, None);
        assert!(w.tabs[new].lease.take_rival(), "the leader heard its rival");
        assert!(!w.tabs[new].lease.take_rival(), "once");
    }

    #[test]
    fn random_opens_and_closes_never_give_two_leaders() {
        let mut w = World::new(8);
        for round in 0..200 {
            let r = w.random() % 10;
            let live: Vec<usize> = (0..w.tabs.len()).filter(|&i| !w.tabs[i].down).collect();
            if r < 4 || live.is_empty() {
                w.open();
            } else if r < 7 {
                let i = live[(w.random() as usize) % live.len()];
                w.close(i);
            }
            let until = w.now + 50 + w.random() % 2_000;
            w.run_to(until);
            if round % 20 == 0 {
                w.run_to(w.now + SETTLE_MS + 100);
                let live = (0..w.tabs.len()).filter(|&i| !w.tabs[i].down).count();
                assert_eq!(w.leaders().len(), usize::from(live > 0), "round {round}");
            }
        }
    }
}
