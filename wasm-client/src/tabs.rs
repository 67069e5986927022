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

use std::collections::BTreeMap;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use shared_protocol::frame::{Payload, Resume, ServerFrame, Snapshot};
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
    state: BTreeMap<String, Payload>,
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

pub(crate) fn get(msg: &JsValue, key: &str) -> JsValue {
    Reflect::get(msg, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

pub(crate) fn message(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
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
        self.post(&message(&[
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
        let msg = message(&[
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
        Some(message(&[
            ("t", "sync".into()),
            ("to", to.clone()),
            ("epoch", (epoch as f64).into()),
            ("frame", Uint8Array::from(bytes.as_slice()).into()),
            ("state", self.last_state.clone()),
        ]))
    }

    /// The leader's relay of what its session delivered.
    pub fn relay(&self, epoch: Option<u64>, items: &[Delivered]) {
        let (Some(epoch), false, true) = (epoch, items.is_empty(), self.has_followers) else {
            return;
        };
        let frames = Array::new();
        for item in items {
            if let Ok(bytes) = frame_of(item).encode() {
                frames.push(&Uint8Array::from(bytes.as_slice()));
            }
        }
        self.post(&message(&[
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

impl Drop for Tabs {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}
