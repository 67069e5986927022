//! One connection for all tabs of a dashboard: the browser shell of the tab
//! protocol. Tabs with the same storage prefix share a `BroadcastChannel`;
//! [`lease`] decides which one leads (holds the WebSocket), [`relay`] what a
//! follower delivers. This module only moves messages between the channel
//! and those two, and tells the `Link` what to do ([`Action`]); it never
//! touches the session.
//!
//! A tab that joins asks the leader for a sync (its folded state as a
//! snapshot as of its position), then takes the live relay. A follower's
//! sends go to the leader, which puts them through its own outbox (so
//! reliable ones reach localStorage) and confirms; unconfirmed sends are
//! handed to the next leader. Handover: the new leader builds its session
//! from *its own* position, connects and resumes; every tab's receiver drops
//! what it already has.

pub mod lease;
pub mod relay;

use js_sys::{Array, Uint8Array};
use shared_protocol::client::Input;
use shared_protocol::frame::{encode_snapshot, Resume, ServerFrame};
use shared_protocol::receiver::Delivered;
use shared_protocol::Millis;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent};

use crate::js::{get, obj, publish_input};
use crate::storage::Store;
use lease::{Lease, Msg, Out, TabId};
use relay::{Folded, Follower};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Not the leader (also while the election runs): the leader's relay is
    /// what this tab sees.
    Follower,
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Leader => "leader",
        }
    }
}

/// What the `Link` does after a tab message or a lease timer.
pub(crate) enum Action {
    /// A follower's delivery, for the application.
    Deliver(Delivered),
    /// A notice the leader relayed (`state`, `latency`, ...).
    Emit(&'static str, JsValue),
    /// The leader takes a follower's send or command.
    Feed(Input),
    /// This tab now leads: resume from `position` (if it followed) and connect.
    Lead { position: Option<Resume> },
    /// This tab led and another does now: drop the connection.
    StepDown,
}

/// How many tabs' newest taken sends a leader remembers.
const TAKEN_KEPT: usize = 64;

/// Emits that followers also get (the leader relays them).
pub(crate) const RELAYED: &[&str] = &[
    "state",
    "reconnected",
    "maxAttemptsReached",
    "latency",
    "quality",
    "rejected",
];

pub(crate) struct Tabs {
    channel: BroadcastChannel,
    pub lease: Lease,
    follower: Follower,
    /// Sends handed to the leader and not yet confirmed: `(id, message)`.
    pending: Vec<(f64, JsValue)>,
    next_id: f64,
    /// As leader, the newest send id taken into the outbox from each tab:
    /// a send re-posted after a lease change that this tab already took is
    /// confirmed again, not published twice.
    taken: Vec<(f64, f64)>,
    /// The leader's newest `state` emit, for joining tabs.
    pub last_state: JsValue,
    /// Another tab has joined: until then the leader relays nothing (a tab
    /// that joins later starts from a sync).
    pub has_followers: bool,
    /// localStorage, where the leader stamps itself for tabs that open.
    store: Store,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

/// `msg` addressed to the tab `to`.
fn addressed(msg: &JsValue, to: TabId) -> JsValue {
    let _ = js_sys::Reflect::set(msg, &"to".into(), &(to as f64).into());
    msg.clone()
}

/// Whether `msg` names a tab other than `me`.
fn addressed_elsewhere(msg: &JsValue, me: TabId) -> bool {
    get(msg, "to").as_f64().is_some_and(|to| to != me as f64)
}

fn lease_msg(msg: &JsValue) -> Option<Msg> {
    let from = get(msg, "from").as_f64()? as u64;
    let term = get(msg, "term").as_f64()? as u64;
    match get(msg, "t").as_string()?.as_str() {
        "beat" => Some(Msg::Beat { from, term }),
        "claim" => Some(Msg::Claim { from, term }),
        "resign" => Some(Msg::Resign { from, term }),
        _ => None,
    }
}

fn lease_to_js(msg: Msg) -> JsValue {
    let (t, from, term) = match msg {
        Msg::Beat { from, term } => ("beat", from, term),
        Msg::Claim { from, term } => ("claim", from, term),
        Msg::Resign { from, term } => ("resign", from, term),
    };
    obj(&[
        ("t", t.into()),
        ("from", (from as f64).into()),
        ("term", (term as f64).into()),
    ])
}

fn frames_of(list: &JsValue) -> Vec<ServerFrame> {
    let list = Array::from(list);
    let mut frames = Vec::with_capacity(list.length() as usize);
    for i in 0..list.length() {
        let bytes = Uint8Array::new(&list.get(i)).to_vec();
        if let Ok(frame) = ServerFrame::decode(&bytes, usize::MAX) {
            frames.push(frame);
        }
    }
    frames
}

impl Tabs {
    /// Joins the tabs of `prefix` as a candidate; `None` where the browser
    /// has no BroadcastChannel (then this tab keeps its own connection).
    /// `on_message` gets each channel message.
    pub fn start(
        prefix: &str,
        now: Millis,
        on_message: impl FnMut(JsValue) + 'static,
    ) -> Option<Tabs> {
        let channel = BroadcastChannel::new(&format!("station-link:{prefix}")).ok()?;
        let mut on_message = on_message;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            on_message(e.data());
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // 53 random bits: a JS number carries it exactly.
        let me = (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64;
        let store = Store::open(prefix, false).0;
        // A leader stamped within the lease: wait for its beat rather than
        // claim (see `Lease::new`).
        let stamped = store
            .leader_age()
            .filter(|age| (0.0..lease::LEASE_MS as f64).contains(age));
        let mut tabs = Tabs {
            channel,
            lease: Lease::new(me, now, stamped.map(|age| now.saturating_sub(age as u64))),
            store,
            follower: Follower::default(),
            pending: Vec::new(),
            next_id: 1.0,
            taken: Vec::new(),
            last_state: JsValue::UNDEFINED,
            has_followers: false,
            _on_message: on_message,
        };
        tabs.join(now);
        Some(tabs)
    }

    pub fn role(&self) -> Role {
        if self.lease.leads() {
            Role::Leader
        } else {
            Role::Follower
        }
    }

    fn me(&self) -> JsValue {
        (self.lease.me() as f64).into()
    }

    pub fn post(&self, msg: &JsValue) {
        let _ = self.channel.post_message(msg);
    }

    /// Asks the leader for a sync (a snapshot of where it stands).
    fn join(&mut self, now: Millis) {
        self.follower.joined(now);
        self.post(&obj(&[("t", "join".into()), ("from", self.me())]));
    }

    /// Carries out what the lease decided.
    pub fn poll_lease(&mut self, actions: &mut Vec<Action>) {
        while let Some(out) = self.lease.poll_output() {
            match out {
                Out::Post(msg) => {
                    match msg {
                        Msg::Beat { .. } => self.store.stamp_leader(js_sys::Date::now() as u64),
                        Msg::Resign { .. } => self.store.stamp_leader(0),
                        Msg::Claim { .. } => {}
                    }
                    self.post(&lease_to_js(msg))
                }
                Out::Lead => {
                    // Tabs that followed the old leader follow this one;
                    // tabs that never followed join when they hear its beat.
                    self.has_followers = self.follower.followed;
                    let position = self.follower.followed.then(|| self.follower.position());
                    actions.push(Action::Lead {
                        position: position.flatten(),
                    });
                    // Sends the old leader never confirmed go through our outbox.
                    for (_, msg) in self.pending.drain(..) {
                        actions.extend(publish_input(&msg).map(Action::Feed));
                    }
                }
                Out::StepDown => actions.push(Action::StepDown),
            }
        }
    }

    /// A leader that steps down follows from its session's position.
    pub fn follow_from(&mut self, position: Option<Resume>, now: Millis) {
        self.follower = Follower::at(position);
        self.join(now);
    }

    /// A follower's send, handed to the leader and kept until confirmed.
    pub fn send(&mut self, kind: &str, payload: JsValue, delivery: &str, ttl_ms: JsValue) {
        let id = self.next_id;
        self.next_id += 1.0;
        let msg = obj(&[
            ("t", "send".into()),
            ("from", self.me()),
            ("id", id.into()),
            ("kind", kind.into()),
            ("payload", payload),
            ("delivery", delivery.into()),
            ("ttlMs", ttl_ms),
        ]);
        // Addressed to the leader this tab knows, which alone takes it;
        // with none known (a handover), a reliable send waits in `pending`
        // and goes out, in order, to the leader once it is heard.
        if let Some(leader) = self.lease.leader() {
            self.post(&addressed(&msg, leader));
        } else if delivery != "reliable" {
            self.post(&msg);
        }
        if delivery == "reliable" {
            self.pending.push((id, msg));
        }
    }

    /// A follower's command for the leader's connection.
    pub fn forward(&self, name: &str, ms: f64) {
        self.post(&obj(&[
            ("t", "cmd".into()),
            ("name", name.into()),
            ("ms", ms.into()),
        ]));
    }

    /// The leader's relay of what its session delivered.
    pub fn relay(&self, epoch: Option<u64>, items: &[Delivered]) {
        let (Some(epoch), false) = (epoch, items.is_empty()) else {
            return;
        };
        let frames = Array::new();
        for item in items {
            frames.push(&Uint8Array::from(item.encode_frame().as_slice()));
        }
        self.post(&obj(&[
            ("t", "frames".into()),
            ("from", self.me()),
            ("epoch", (epoch as f64).into()),
            ("frames", frames.into()),
        ]));
    }

    /// The leader's relay of a notice.
    pub fn relay_emit(&mut self, name: &str, value: &JsValue) {
        if name == "state" {
            self.last_state = value.clone();
        }
        if self.has_followers {
            self.post(&obj(&[
                ("t", "emit".into()),
                ("name", name.into()),
                ("value", value.clone()),
            ]));
        }
    }

    /// After a lease message or a sign of life: a follower that has found its
    /// leader (a new one, or the late one it had given up on) hands it the
    /// sends nobody confirmed, in order, and a tab that never followed asks
    /// it for a sync.
    fn on_leader(&mut self, before: Option<TabId>, now: Millis) {
        let after = self.lease.leader();
        if self.lease.leads() || after.is_none() || after == before {
            return;
        }
        if !self.follower.followed {
            self.join(now);
        }
        if let Some(leader) = after {
            for (_, msg) in &self.pending {
                self.post(&addressed(msg, leader));
            }
        }
    }

    /// A message from another tab. `epoch` and `folded` are the leader's
    /// (for a join's sync).
    pub fn on_message(
        &mut self,
        msg: &JsValue,
        epoch: Option<u64>,
        folded: &Folded,
        now: Millis,
        actions: &mut Vec<Action>,
    ) {
        let before = self.lease.leader();
        if let Some(m) = lease_msg(msg) {
            self.lease.handle(m, now);
            self.on_leader(before, now);
            self.poll_lease(actions);
            return;
        }
        let kind = get(msg, "t").as_string().unwrap_or_default();
        let relayed = matches!(kind.as_str(), "frames" | "emit" | "took" | "sync");
        if relayed {
            // Only the leader relays and answers: its traffic proves it alive
            // even when the browser holds back its timers (and so its beats).
            let from = get(msg, "from").as_f64().map(|f| f as TabId);
            self.lease.heard_leader(from, now);
        }
        let mine = get(msg, "to").as_f64() == Some(self.lease.me() as f64);
        let mut deliver = |follower: &mut Follower, frames, sync: bool| {
            let epoch = get(msg, "epoch").as_f64().unwrap_or(0.0) as u64;
            let (out, ask) = follower.receive(epoch, frames, sync, now);
            actions.extend(out.into_iter().map(Action::Deliver));
            ask
        };
        match (self.role(), kind.as_str()) {
            (Role::Leader, "join") => {
                self.has_followers = true;
                if let Some(epoch) = epoch {
                    let bytes = encode_snapshot(folded.upto, &folded.state);
                    self.post(&obj(&[
                        ("t", "sync".into()),
                        ("from", self.me()),
                        ("to", get(msg, "from")),
                        ("epoch", (epoch as f64).into()),
                        ("frame", Uint8Array::from(bytes.as_slice()).into()),
                        ("state", self.last_state.clone()),
                    ]));
                }
            }
            // A send addressed to another leader (one this tab replaced)
            // waits for the sender to hear of this one and re-post it.
            (Role::Leader, "send") if !addressed_elsewhere(msg, self.lease.me()) => {
                // A tab's sends reach one leader in id order (re-posts
                // repeat a prefix), so the newest id taken from each tab
                // tells a repeat.
                let from = get(msg, "from").as_f64().unwrap_or(0.0);
                let id = get(msg, "id").as_f64().unwrap_or(0.0);
                let fresh = match self.taken.iter_mut().find(|t| t.0 == from) {
                    Some(t) if id <= t.1 => false,
                    Some(t) => {
                        t.1 = id;
                        true
                    }
                    None => {
                        self.taken.truncate(TAKEN_KEPT - 1);
                        self.taken.insert(0, (from, id));
                        true
                    }
                };
                if fresh {
                    actions.extend(publish_input(msg).map(Action::Feed));
                }
                self.post(&obj(&[
                    ("t", "took".into()),
                    ("from", self.me()),
                    ("to", get(msg, "from")),
                    ("id", get(msg, "id")),
                ]));
            }
            (Role::Leader, "cmd") => {
                let input = match get(msg, "name").as_string().as_deref() {
                    Some("forceReconnect") => Some(Input::ForceReconnect),
                    Some("latency") => Some(Input::LatencyTest),
                    Some("simulateDisconnect") => Some(Input::SimulateDisconnect {
                        ms: get(msg, "ms").as_f64().unwrap_or(0.0).max(0.0) as u64,
                    }),
                    _ => None,
                };
                actions.extend(input.map(Action::Feed));
            }
            (Role::Follower, "sync") if mine => {
                let frames = frames_of(&Array::of1(&get(msg, "frame")));
                if deliver(&mut self.follower, frames, true) {
                    self.join(now);
                }
                let state = get(msg, "state");
                if !state.is_undefined() {
                    actions.push(Action::Emit("state", state));
                }
            }
            (Role::Follower, "frames") => {
                let frames = frames_of(&get(msg, "frames"));
                if deliver(&mut self.follower, frames, false) {
                    self.join(now);
                }
            }
            (Role::Follower, "emit") => {
                let name = get(msg, "name").as_string();
                if let Some(name) = RELAYED.iter().find(|n| name.as_deref() == Some(**n)) {
                    actions.push(Action::Emit(name, get(msg, "value")));
                }
            }
            (Role::Follower, "took") if mine => {
                let id = get(msg, "id").as_f64();
                self.pending.retain(|(p, _)| Some(*p) != id);
            }
            _ => {}
        }
        if relayed {
            // After the sync or frames: a tab that now follows has no need
            // to join again.
            self.on_leader(before, now);
        }
    }
}
