//! One connection for all tabs of a dashboard. Tabs with the same storage
//! prefix elect a leader with the Web Locks API (`navigator.locks`): the
//! leader holds the WebSocket and relays what its session delivers through a
//! `BroadcastChannel`; the others (followers) open no socket.
//!
//! Exactly once, in order, in every tab: the leader relays each delivered
//! item (event, gap, snapshot) re-encoded as its `ServerFrame`, with the
//! epoch; each follower runs its own `shared_protocol::receiver::Receiver`
//! over them, so it drops what it has and delivers the rest in `seq` order.
//! A tab that joins asks the leader for a sync: a snapshot of the state as
//! the proxy would give it (the last payload of every kind, folded from what
//! the leader delivered) as of the leader's position, then the live relay.
//!
//! Handover: when the leader's page closes, the browser releases its lock
//! and one waiting follower gets it. It builds its session from *its own*
//! position (what it has delivered, not what the old leader stored), with the
//! shared outbox from localStorage, connects, and resumes: the proxy replays
//! what it missed, and every tab's receiver drops what it already has.
//!
//! A follower's sends go to the leader, which puts them through its own
//! outbox (so reliable ones reach localStorage) and confirms; unconfirmed
//! sends are replayed to the next leader.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Promise, Uint8Array};

use crate::js::{delivered_to_js, emit_all, get, obj, publish_input};
use crate::link::{now_ms, timeout, Inner, Link, RELAYED};
use shared_protocol::client::{ClientSession, Input};
use shared_protocol::frame::{Resume, ServerFrame, Snapshot, State};
use shared_protocol::receiver::{Delivered, Receiver};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent};

/// Events a follower may hold while waiting for its sync.
const MAX_PENDING: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Waiting for the lock; the leader's relay is what this tab sees.
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

/// The application state as the proxy's snapshot would give it: the last
/// payload of every kind, as of `upto`.
#[derive(Debug, Default)]
pub(crate) struct Folded {
    upto: u64,
    state: State,
}

impl Folded {
    pub fn observe(&mut self, item: &Delivered) {
        match item {
            Delivered::Event(e) => {
                self.upto = e.seq;
                self.state.insert(e.kind.clone(), e.payload.clone());
            }
            Delivered::Gap(g) => self.upto = self.upto.max(g.to),
            Delivered::Snapshot(s) => {
                self.upto = s.upto;
                self.state = s.state.clone();
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            upto: self.upto,
            state: self.state.clone(),
        }
    }
}

/// The frame that carries a delivered item over the channel.
pub(crate) fn frame_of(item: &Delivered) -> ServerFrame {
    match item {
        Delivered::Event(e) => ServerFrame::Event(e.clone()),
        Delivered::Gap(g) => ServerFrame::Gap(g.clone()),
        Delivered::Snapshot(s) => ServerFrame::Snapshot(s.clone()),
    }
}

pub(crate) struct Tabs {
    pub tab_id: String,
    pub role: Role,
    channel: BroadcastChannel,
    /// A follower's own position in the stream.
    pub receiver: Receiver,
    /// Whether this tab has followed a leader (then, promoted, it resumes
    /// from its own position rather than from storage).
    pub followed: bool,
    /// When a join was sent whose sync has not come (ms, wall clock).
    joining: Option<f64>,
    pub folded: Folded,
    /// Sends handed to the leader and not yet confirmed: `(id, message)`.
    pub pending: Vec<(f64, JsValue)>,
    next_id: f64,
    /// Resolving it releases the leadership lock.
    pub release: Option<Function>,
    /// The leader's newest `state` emit, for joining tabs.
    pub last_state: JsValue,
    /// Another tab has joined: until then the leader relays nothing (a tab
    /// that joins later starts from a sync).
    pub has_followers: bool,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_lock: Closure<dyn FnMut(JsValue) -> Promise>,
}

impl Tabs {
    /// Joins the tabs of `prefix`; `None` where the browser lacks Web Locks
    /// or BroadcastChannel (e.g. an insecure context): then every tab keeps
    /// its own connection. `on_message` gets each channel message;
    /// `on_leader` runs when this tab gets the lock, with the function that
    /// releases it.
    pub fn start(
        prefix: &str,
        on_message: impl FnMut(JsValue) + 'static,
        on_leader: impl FnMut(Function) + 'static,
    ) -> Option<Tabs> {
        let window = web_sys::window()?;
        let locks = get(&window.navigator(), "locks");
        let request: Function = get(&locks, "request").dyn_into().ok()?;
        let name = format!("station-link:{prefix}");
        let channel = BroadcastChannel::new(&name).ok()?;
        let mut on_message = on_message;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            on_message(e.data());
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let mut on_leader = on_leader;
        let on_lock = Closure::<dyn FnMut(JsValue) -> Promise>::new(move |_lock: JsValue| {
            // Held until `release` is called (or the page goes away).
            let mut release = None;
            let held = Promise::new(&mut |resolve, _reject| release = Some(resolve));
            if let Some(release) = release {
                on_leader(release);
            }
            held
        });
        request
            .call2(&locks, &JsValue::from_str(&name), on_lock.as_ref())
            .ok()?;
        let tab_id = format!("{:x}", (js_sys::Math::random() * 4_294_967_295.0) as u64);
        Some(Tabs {
            tab_id,
            role: Role::Follower,
            channel,
            receiver: Receiver::new(None, MAX_PENDING),
            followed: false,
            joining: None,
            folded: Folded::default(),
            pending: Vec::new(),
            next_id: 1.0,
            release: None,
            last_state: JsValue::UNDEFINED,
            has_followers: false,
            _on_message: on_message,
            _on_lock: on_lock,
        })
    }

    pub fn post(&self, msg: &JsValue) {
        let _ = self.channel.post_message(msg);
    }

    /// Asks the leader for a sync (a snapshot of where it stands).
    pub fn join(&mut self) {
        self.joining = Some(js_sys::Date::now());
        self.post(&obj(&[
            ("t", "join".into()),
            ("from", self.tab_id.as_str().into()),
        ]));
    }

    /// A sync came: the receiver takes its snapshot like any frame.
    pub fn synced(&mut self) {
        self.joining = None;
    }

    /// A follower's send, handed to the leader and kept until confirmed.
    pub fn send(&mut self, kind: &str, payload: JsValue, delivery: &str, ttl_ms: JsValue) {
        let id = self.next_id;
        self.next_id += 1.0;
        let msg = obj(&[
            ("t", "send".into()),
            ("from", self.tab_id.as_str().into()),
            ("id", id.into()),
            ("kind", kind.into()),
            ("payload", payload),
            ("delivery", delivery.into()),
            ("ttlMs", ttl_ms),
        ]);
        self.post(&msg);
        if delivery == "reliable" {
            self.pending.push((id, msg));
        }
    }

    /// The leader's answer to a joining tab.
    pub fn sync_for(&self, to: &JsValue, epoch: Option<u64>) -> Option<JsValue> {
        let epoch = epoch?;
        let bytes = ServerFrame::Snapshot(self.folded.snapshot())
            .encode()
            .ok()?;
        Some(obj(&[
            ("t", "sync".into()),
            ("to", to.clone()),
            ("epoch", (epoch as f64).into()),
            ("frame", Uint8Array::from(bytes.as_slice()).into()),
            ("state", self.last_state.clone()),
        ]))
    }

    /// The leader's relay of what its session delivered.
    pub fn relay(&self, epoch: Option<u64>, items: &[Delivered]) {
        // (Only followed leaders collect items: see `perform`.)
        let (Some(epoch), false) = (epoch, items.is_empty()) else {
            return;
        };
        let frames = Array::new();
        for item in items {
            if let Ok(bytes) = frame_of(item).encode() {
                frames.push(&Uint8Array::from(bytes.as_slice()));
            }
        }
        self.post(&obj(&[
            ("t", "frames".into()),
            ("epoch", (epoch as f64).into()),
            ("frames", frames.into()),
        ]));
    }

    /// A follower takes relayed frames: its receiver decides what is new.
    pub fn receive(&mut self, epoch: u64, frames: &[Vec<u8>]) -> Vec<Delivered> {
        self.followed = true;
        if self.receiver.epoch() != Some(epoch) {
            // A new epoch (or the first frames): the relay brings the gap
            // and snapshot that go with it.
            self.receiver = Receiver::new(Some(Resume { epoch, last_seq: 0 }), MAX_PENDING);
        }
        let mut out = Vec::new();
        for bytes in frames {
            match ServerFrame::decode(bytes, usize::MAX) {
                Ok(ServerFrame::Event(e)) => {
                    let held_too_much = self.receiver.on_event(e, &mut out).is_err();
                    if held_too_much {
                        // Held too much while waiting for a sync: start over.
                        self.receiver = Receiver::new(None, MAX_PENDING);
                        self.join();
                    }
                }
                Ok(ServerFrame::Gap(g)) => self.receiver.on_gap(g, &mut out),
                Ok(ServerFrame::Snapshot(s)) => self.receiver.on_snapshot(s, &mut out),
                _ => {}
            }
        }
        // (Asked again after a second: the leader asked may have gone.)
        let waiting = self
            .joining
            .is_some_and(|at| js_sys::Date::now() - at < 1_000.0);
        if self.receiver.pending() > 0 && !waiting {
            // A hole this tab cannot fill from the relay (it came in late, or
            // a new leader resumed ahead of it): a sync covers it.
            self.join();
        }
        for item in &out {
            self.folded.observe(item);
        }
        out
    }
}

/// The tab protocol's side of the `Link`: leadership and messages.
impl Link {
    /// This tab got the leadership lock: it builds its session from where
    /// it stands (if it followed a leader) and connects.
    pub(crate) fn become_leader(rc: &Rc<RefCell<Inner>>, release: Function) {
        let connect = {
            let Ok(mut inner) = rc.try_borrow_mut() else {
                // Not re-entrant in practice; give the lock back to be safe.
                let _ = release.call0(&JsValue::NULL);
                return;
            };
            let inner = &mut *inner;
            let Some(tabs) = inner.tabs.as_mut() else {
                return;
            };
            tabs.role = Role::Leader;
            tabs.release = Some(release);
            // Tabs that followed the old leader follow this one; tabs that
            // joined while nobody led ask again when they hear of it.
            tabs.has_followers = tabs.followed;
            tabs.post(&obj(&[("t", "leader".into())]));
            if tabs.followed {
                let (mut persisted, _) = inner.store.load(inner.options.client_id.as_deref());
                persisted.epoch = tabs.receiver.epoch();
                persisted.last_seq = tabs.receiver.last_seq();
                if let Ok(config) = inner.options.client_config() {
                    let now = now_ms();
                    let seed = (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64;
                    inner.session =
                        ClientSession::new(config, persisted, now, inner.wall_offset, seed);
                }
            }
            // Sends the old leader never confirmed go through our outbox.
            let pending: Vec<JsValue> = tabs.pending.drain(..).map(|(_, m)| m).collect();
            for msg in pending {
                if let Some(input) = publish_input(&msg) {
                    inner.session.handle_input(input, now_ms());
                }
            }
            inner.want_connect
        };
        if connect {
            Link::feed(rc, Input::Connect);
        } else {
            Link::pump(rc);
        }
    }

    /// A message from another tab of this dashboard.
    pub(crate) fn on_tab_message(rc: &Rc<RefCell<Inner>>, msg: JsValue) {
        let kind = get(&msg, "t").as_string().unwrap_or_default();
        let mut emits: Vec<(&'static str, JsValue)> = Vec::new();
        let mut feed = None;
        let listeners = {
            let Ok(mut inner) = rc.try_borrow_mut() else {
                // Busy: handle it on a clean stack.
                let weak = Rc::downgrade(rc);
                timeout(0, move || {
                    if let Some(rc) = weak.upgrade() {
                        Link::on_tab_message(&rc, msg);
                    }
                })
                .forget();
                return;
            };
            let inner = &mut *inner;
            let epoch = inner.session.epoch();
            let Some(tabs) = inner.tabs.as_mut() else {
                return;
            };
            let mine = get(&msg, "to").as_string().as_deref() == Some(tabs.tab_id.as_str());
            match (tabs.role, kind.as_str()) {
                (Role::Leader, "join") => {
                    tabs.has_followers = true;
                    if let Some(sync) = tabs.sync_for(&get(&msg, "from"), epoch) {
                        tabs.post(&sync);
                    }
                }
                (Role::Leader, "send") => {
                    feed = publish_input(&msg);
                    tabs.post(&obj(&[
                        ("t", "took".into()),
                        ("to", get(&msg, "from")),
                        ("id", get(&msg, "id")),
                    ]));
                }
                (Role::Leader, "cmd") => {
                    feed = match get(&msg, "name").as_string().as_deref() {
                        Some("forceReconnect") => Some(Input::ForceReconnect),
                        Some("latency") => Some(Input::LatencyTest),
                        Some("simulateDisconnect") => Some(Input::SimulateDisconnect {
                            ms: get(&msg, "ms").as_f64().unwrap_or(0.0).max(0.0) as u64,
                        }),
                        _ => None,
                    };
                }
                (Role::Follower, "sync") if mine => {
                    tabs.synced();
                    let frames = vec![Uint8Array::new(&get(&msg, "frame")).to_vec()];
                    let epoch = get(&msg, "epoch").as_f64().unwrap_or(0.0) as u64;
                    for d in tabs.receive(epoch, &frames) {
                        delivered_to_js(d, &mut emits);
                    }
                    let state = get(&msg, "state");
                    if !state.is_undefined() {
                        emits.push(("state", state));
                    }
                }
                (Role::Follower, "frames") => {
                    let frames: Vec<Vec<u8>> = Array::from(&get(&msg, "frames"))
                        .iter()
                        .map(|f| Uint8Array::new(&f).to_vec())
                        .collect();
                    let epoch = get(&msg, "epoch").as_f64().unwrap_or(0.0) as u64;
                    for d in tabs.receive(epoch, &frames) {
                        delivered_to_js(d, &mut emits);
                    }
                }
                (Role::Follower, "emit") => {
                    if let Some(name) = RELAYED
                        .iter()
                        .find(|n| get(&msg, "name").as_string().as_deref() == Some(**n))
                    {
                        let value = get(&msg, "value");
                        if *name == "latency" {
                            let rtt = get(&value, "rttMs");
                            for resolve in inner.latency_waiters.drain(..) {
                                let _ = resolve.call1(&JsValue::NULL, &rtt);
                            }
                        }
                        emits.push((name, value));
                    }
                }
                (Role::Follower, "leader") => {
                    if !tabs.followed {
                        tabs.join();
                    }
                    // Sends nobody confirmed go to the new leader.
                    for (_, msg) in &tabs.pending {
                        tabs.post(msg);
                    }
                }
                (Role::Follower, "took") if mine => {
                    let id = get(&msg, "id").as_f64();
                    tabs.pending.retain(|(p, _)| Some(*p) != id);
                }
                _ => {}
            }
            inner.listeners.clone()
        };
        emit_all(&listeners, emits);
        if let Some(input) = feed {
            Link::feed(rc, input);
        }
    }
}

impl Drop for Tabs {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}
