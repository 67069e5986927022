//! `Link`: the JS-facing class. It owns one `ClientSession` and does only
//! what the session asks: open or close the one WebSocket, send bytes,
//! persist, arm one timer, and tell listeners. Listeners are called with no
//! borrow held, so they may call back into the link.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};

use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use serde::Serialize;
use shared_protocol::client::{ClientSession, Input, LinkState, Notice, Output};
use shared_protocol::frame::{Delivery, Payload};
use shared_protocol::receiver::Delivered;
use shared_protocol::Millis;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::options::LinkOptions;
use crate::storage::Store;
use crate::tabs::{get, message, Role, Tabs};

/// Lines kept for `exportLogs()`.
const LOG_LINES: usize = 500;
/// The position is written to localStorage at most this often (a write
/// costs about 12 µs in Chromium, more than everything else an event
/// costs), and at once when the page is hidden or goes away.
const CURSOR_FLUSH_MS: u32 = 50;

fn now_ms() -> Millis {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0, |p| p.now() as Millis)
}

fn to_js<T: Serialize>(value: &T) -> JsValue {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    value
        .serialize(&serializer)
        .or_else(|_| value.serialize(&serde_wasm_bindgen::Serializer::new()))
        .unwrap_or(JsValue::NULL)
}

/// An event's payload as a plain JS value, by hand: about twice as fast as
/// going through serde for the one conversion every event needs.
fn payload_to_js(p: &Payload) -> JsValue {
    match p {
        Payload::Nil => JsValue::NULL,
        Payload::Boolean(b) => (*b).into(),
        Payload::Integer(i) => i
            .as_i64()
            .map(|v| v as f64)
            .or_else(|| i.as_u64().map(|v| v as f64))
            .unwrap_or(f64::NAN)
            .into(),
        Payload::F32(v) => f64::from(*v).into(),
        Payload::F64(v) => (*v).into(),
        Payload::String(s) => match s.as_str() {
            Some(s) => JsValue::from_str(s),
            None => Uint8Array::from(s.as_bytes()).into(),
        },
        Payload::Binary(b) | Payload::Ext(_, b) => Uint8Array::from(b.as_slice()).into(),
        Payload::Array(items) => items.iter().map(payload_to_js).collect::<Array>().into(),
        Payload::Map(entries) => {
            let o = Object::new();
            for (k, v) in entries {
                let key = match k {
                    Payload::String(s) => JsValue::from_str(s.as_str().unwrap_or_default()),
                    other => JsValue::from_str(&other.to_string()),
                };
                let _ = Reflect::set(&o, &key, &payload_to_js(v));
            }
            o.into()
        }
    }
}

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

struct Socket {
    id: u32,
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    fn close(self, code: u16, reason: &str) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let code = if code == 1000 || (3000..=4999).contains(&code) {
            code
        } else {
            4000
        };
        let _ = self.ws.close_with_code_and_reason(code, reason);
    }
}

#[derive(Serialize)]
struct LogLine {
    at_ms: u64,
    level: &'static str,
    message: String,
}

pub(crate) struct Inner {
    session: ClientSession,
    /// The proxy's URL first, then `fallbackUrls`; `current` is in use.
    urls: Vec<String>,
    current: usize,
    options: LinkOptions,
    store: Store,
    socket: Option<Socket>,
    timer: Option<(Millis, gloo_timers::callback::Timeout)>,
    /// Shared so that a pump takes a cheap handle, not a copy.
    listeners: Rc<Listeners>,
    latency_waiters: Vec<Function>,
    log: VecDeque<LogLine>,
    wall_offset: u64,
    weak: Weak<RefCell<Inner>>,
    _page_hooks: Vec<Closure<dyn FnMut()>>,
    /// Tab sharing (`shareTabs`), where the browser supports it.
    tabs: Option<Tabs>,
    /// Items delivered in this pump, for the leader to relay.
    relay: Vec<Delivered>,
    /// The application wants the link connected (applied on promotion).
    want_connect: bool,
    /// A position not yet written to localStorage, and the timer that will.
    cursor_to_save: Option<(u64, u64)>,
    cursor_timer: Option<gloo_timers::callback::Timeout>,
}

impl Inner {
    fn role(&self) -> Role {
        self.tabs.as_ref().map_or(Role::Leader, |t| t.role)
    }

    /// Writes the pending position now.
    fn flush_cursor(&mut self) -> Result<(), String> {
        self.cursor_timer = None;
        match self.cursor_to_save.take() {
            Some((epoch, last_seq)) => self.store.save_cursor(epoch, last_seq),
            None => Ok(()),
        }
    }
}

/// Emits that followers also get (the leader relays them).
const RELAYED: &[&str] = &[
    "state",
    "reconnected",
    "maxAttemptsReached",
    "latency",
    "quality",
    "rejected",
];

type Listeners = HashMap<String, Vec<Function>>;

/// Calls the listeners for each emit, with no borrow held.
fn emit_all(listeners: &Listeners, emits: Vec<(&str, JsValue)>) {
    for (name, value) in emits {
        if let Some(fns) = listeners.get(name) {
            for f in fns {
                if let Err(e) = f.call1(&JsValue::NULL, &value) {
                    web_sys::console::error_2(
                        &format!("station-link: a '{name}' listener threw").into(),
                        &e,
                    );
                }
            }
        }
    }
}

/// An event, gap or snapshot as its JS listener gets it.
fn delivered_to_js(d: Delivered, emits: &mut Vec<(&'static str, JsValue)>) {
    match d {
        Delivered::Event(e) => emits.push((
            "event",
            obj(&[
                ("seq", (e.seq as f64).into()),
                ("kind", e.kind.as_str().into()),
                ("tsMs", (e.ts_ms as f64).into()),
                ("payload", payload_to_js(&e.payload)),
            ]),
        )),
        Delivered::Gap(g) => emits.push(("gap", to_js(&g))),
        Delivered::Snapshot(s) => emits.push(("snapshot", to_js(&s))),
    }
}

/// A resilient link to the edge proxy.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Link {
    inner: Rc<RefCell<Inner>>,
}

/// Handles a session output that needs no JS callback; returns what to emit.
fn perform(inner: &mut Inner, out: Output, emits: &mut Vec<(&'static str, JsValue)>) {
    match out {
        Output::OpenSocket { socket } => {
            if let Some(old) = inner.socket.take() {
                old.close(1000, "replaced by a new attempt");
            }
            match open_socket(&inner.urls[inner.current], socket, inner.weak.clone()) {
                Ok(s) => inner.socket = Some(s),
                Err(message) => {
                    emits.push((
                        "error",
                        obj(&[("kind", "socket".into()), ("message", message.into())]),
                    ));
                    // Report it as a closed socket so the backoff takes over.
                    let weak = inner.weak.clone();
                    gloo_timers::callback::Timeout::new(0, move || {
                        if let Some(rc) = weak.upgrade() {
                            Link::feed(
                                &rc,
                                Input::SocketClosed {
                                    socket,
                                    code: 1006,
                                    reason: "could not open".into(),
                                },
                            );
                        }
                    })
                    .forget();
                }
            }
        }
        Output::CloseSocket {
            socket,
            code,
            reason,
        } => {
            if inner.socket.as_ref().is_some_and(|s| s.id == socket) {
                if let Some(s) = inner.socket.take() {
                    s.close(code, &reason);
                }
            }
        }
        Output::Transmit { socket, bytes } => {
            if let Some(s) = inner.socket.as_ref().filter(|s| s.id == socket) {
                // A failed send means the socket is going; its close event follows.
                let _ = s.ws.send_with_u8_array(&bytes);
            }
        }
        Output::Deliver(d) => {
            if let Some(tabs) = inner.tabs.as_mut() {
                tabs.folded.observe(&d);
                inner.relay.push(d.clone());
            }
            delivered_to_js(d, emits);
        }
        Output::PersistCursor { epoch, last_seq } => {
            inner.cursor_to_save = Some((epoch, last_seq));
            if inner.cursor_timer.is_none() {
                let weak = inner.weak.clone();
                inner.cursor_timer = Some(gloo_timers::callback::Timeout::new(
                    CURSOR_FLUSH_MS,
                    move || {
                        if let Some(rc) = weak.upgrade() {
                            Link::flush_cursor(&rc);
                        }
                    },
                ));
            }
        }
        Output::PersistOutbox {
            next_client_seq,
            outbox,
        } => {
            if let Err(e) = inner.store.save_outbox(next_client_seq, &outbox) {
                emits.push((
                    "error",
                    obj(&[("kind", "storage".into()), ("message", e.into())]),
                ));
            }
        }
        Output::Notify(notice) => notice_to_js(inner, notice, emits),
    }
}

fn notice_to_js(inner: &mut Inner, notice: Notice, emits: &mut Vec<(&'static str, JsValue)>) {
    let (level, message) = match &notice {
        Notice::State { state, reason } => ("info", format!("state {state:?}: {reason}")),
        Notice::Reconnected {
            attempts,
            downtime_ms,
        } => (
            "info",
            format!("reconnected after {attempts} attempts, {downtime_ms} ms down"),
        ),
        Notice::MaxAttemptsReached { attempts } => {
            ("error", format!("gave up after {attempts} attempts"))
        }
        Notice::Error { kind, message } => ("error", format!("{kind}: {message}")),
        Notice::Rejected { client_seq, reason } => {
            ("warn", format!("publish {client_seq} rejected: {reason:?}"))
        }
        Notice::OutboxOverflow { client_seq, kind } => (
            "warn",
            format!("outbox full: dropped publish {client_seq} ({kind})"),
        ),
        Notice::NotSent { kind, reason } => ("warn", format!("{kind} not sent: {reason}")),
        Notice::Latency { .. } | Notice::Quality(_) | Notice::Accepted { .. } => {
            ("debug", String::new())
        }
    };
    if level != "debug" {
        if inner.log.len() == LOG_LINES {
            inner.log.pop_front();
        }
        inner.log.push_back(LogLine {
            at_ms: now_ms() + inner.wall_offset,
            level,
            message,
        });
    }
    match notice {
        Notice::State { state, reason } => {
            let access = inner.session.access().map_or(JsValue::NULL, |a| to_js(&a));
            emits.push((
                "state",
                obj(&[
                    ("state", to_js(&state)),
                    ("reason", reason.into()),
                    ("access", access),
                ]),
            ))
        }
        Notice::Reconnected {
            attempts,
            downtime_ms,
        } => emits.push((
            "reconnected",
            obj(&[
                ("attempts", attempts.into()),
                ("downtimeMs", (downtime_ms as f64).into()),
            ]),
        )),
        Notice::MaxAttemptsReached { attempts } => {
            emits.push(("maxAttemptsReached", obj(&[("attempts", attempts.into())])))
        }
        Notice::Latency { rtt_ms, summary } => {
            let value = obj(&[
                ("rttMs", (rtt_ms as f64).into()),
                (
                    "smoothedMs",
                    summary.smoothed_ms.map_or(JsValue::NULL, JsValue::from),
                ),
                (
                    "p50Ms",
                    summary.p50_ms.map_or(JsValue::NULL, |v| (v as f64).into()),
                ),
                (
                    "p95Ms",
                    summary.p95_ms.map_or(JsValue::NULL, |v| (v as f64).into()),
                ),
            ]);
            for resolve in inner.latency_waiters.drain(..) {
                let _ = resolve.call1(&JsValue::NULL, &(rtt_ms as f64).into());
            }
            emits.push(("latency", value));
        }
        Notice::Quality(q) => emits.push((
            "quality",
            obj(&[
                ("score", q.score.into()),
                ("stability", q.stability.into()),
                ("ackRate", q.ack_rate.into()),
                ("uptime", q.uptime.into()),
                ("activity", q.activity.into()),
            ]),
        )),
        Notice::Accepted { upto } => {
            emits.push(("accepted", obj(&[("upto", (upto as f64).into())])))
        }
        Notice::Rejected { client_seq, reason } => emits.push((
            "rejected",
            obj(&[
                ("clientSeq", (client_seq as f64).into()),
                ("reason", to_js(&reason)),
            ]),
        )),
        Notice::OutboxOverflow { client_seq, kind } => emits.push((
            "error",
            obj(&[
                ("kind", "outboxOverflow".into()),
                (
                    "message",
                    format!("outbox full: dropped publish {client_seq} ({kind})").into(),
                ),
            ]),
        )),
        Notice::NotSent { kind, reason } => emits.push((
            "error",
            obj(&[
                ("kind", "notSent".into()),
                ("message", format!("{kind}: {reason}").into()),
            ]),
        )),
        Notice::Error { kind, message } => emits.push((
            "error",
            obj(&[("kind", kind.into()), ("message", message.into())]),
        )),
    }
}

/// A follower's relayed send as a session input.
fn publish_input(msg: &JsValue) -> Option<Input> {
    let kind = get(msg, "kind").as_string()?;
    let payload = get(msg, "payload");
    let payload: Payload = if payload.is_undefined() {
        Payload::Nil
    } else {
        serde_wasm_bindgen::from_value(payload).ok()?
    };
    let delivery = match get(msg, "delivery").as_string().as_deref() {
        Some("volatile") => Delivery::Volatile,
        _ => Delivery::Reliable,
    };
    let ttl_ms = get(msg, "ttlMs").as_f64().map(|v| v.max(0.0) as u64);
    Some(Input::Publish {
        kind,
        payload,
        delivery,
        ttl_ms,
    })
}

fn open_socket(url: &str, id: u32, weak: Weak<RefCell<Inner>>) -> Result<Socket, String> {
    let ws = WebSocket::new(url).map_err(|e| format!("cannot open {url}: {e:?}"))?;
    ws.set_binary_type(BinaryType::Arraybuffer);
    let w = weak.clone();
    let on_open = Closure::<dyn FnMut()>::new(move || {
        if let Some(rc) = w.upgrade() {
            Link::feed(&rc, Input::SocketOpened { socket: id });
        }
    });
    let w = weak.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        if let Some(rc) = w.upgrade() {
            let bytes = Uint8Array::new(&e.data()).to_vec();
            Link::feed(&rc, Input::Received { socket: id, bytes });
        }
    });
    let w = weak;
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
        if let Some(rc) = w.upgrade() {
            if let Ok(mut inner) = rc.try_borrow_mut() {
                // This proxy failed us: the next attempt goes to the next one.
                inner.current = (inner.current + 1) % inner.urls.len();
            }
            Link::feed(
                &rc,
                Input::SocketClosed {
                    socket: id,
                    code: e.code(),
                    reason: e.reason(),
                },
            );
        }
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    Ok(Socket {
        id,
        ws,
        _on_open: on_open,
        _on_message: on_message,
        _on_close: on_close,
    })
}

impl Link {
    /// Feeds one input and carries out everything that follows. A follower
    /// tab's session stays idle: the leader's carries the link.
    pub(crate) fn feed(rc: &Rc<RefCell<Inner>>, input: Input) {
        if let Ok(mut inner) = rc.try_borrow_mut() {
            if inner.role() == Role::Follower {
                return;
            }
            inner.session.handle_input(input, now_ms());
        } else {
            // Re-entered from inside a perform step: retry on a clean stack.
            let weak = Rc::downgrade(rc);
            gloo_timers::callback::Timeout::new(0, move || {
                if let Some(rc) = weak.upgrade() {
                    Link::feed(&rc, input);
                }
            })
            .forget();
            return;
        }
        Link::pump(rc);
    }

    fn pump(rc: &Rc<RefCell<Inner>>) {
        loop {
            let mut emits = Vec::new();
            let listeners = {
                let Ok(mut inner) = rc.try_borrow_mut() else {
                    return;
                };
                let inner = &mut *inner;
                while let Some(out) = inner.session.poll_output() {
                    perform(inner, out, &mut emits);
                }
                Link::arm_timer(inner);
                if let Some(tabs) = inner.tabs.as_mut().filter(|t| t.role == Role::Leader) {
                    tabs.relay(inner.session.epoch(), &inner.relay);
                    for (name, value) in emits.iter().filter(|(n, _)| RELAYED.contains(n)) {
                        if *name == "state" {
                            tabs.last_state = value.clone();
                        }
                        if !tabs.has_followers {
                            continue;
                        }
                        tabs.post(&message(&[
                            ("t", "emit".into()),
                            ("name", (*name).into()),
                            ("value", value.clone()),
                        ]));
                    }
                }
                inner.relay.clear();
                inner.listeners.clone()
            };
            if emits.is_empty() {
                return;
            }
            emit_all(&listeners, emits);
        }
    }

    /// This tab got the leadership lock: it builds its session from where
    /// it stands (if it followed a leader) and connects.
    fn become_leader(rc: &Rc<RefCell<Inner>>, release: Function) {
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
            tabs.post(&message(&[("t", "leader".into())]));
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
    fn on_tab_message(rc: &Rc<RefCell<Inner>>, msg: JsValue) {
        let kind = get(&msg, "t").as_string().unwrap_or_default();
        let mut emits: Vec<(&'static str, JsValue)> = Vec::new();
        let mut feed = None;
        let listeners = {
            let Ok(mut inner) = rc.try_borrow_mut() else {
                // Busy: handle it on a clean stack.
                let weak = Rc::downgrade(rc);
                gloo_timers::callback::Timeout::new(0, move || {
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
                    tabs.post(&message(&[
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

    /// Hands a command to the leader tab, if this tab is a follower.
    fn forward(&self, name: &str, ms: f64) -> bool {
        let inner = self.inner.borrow();
        match inner.tabs.as_ref().filter(|t| t.role == Role::Follower) {
            Some(tabs) => {
                tabs.post(&message(&[
                    ("t", "cmd".into()),
                    ("name", name.into()),
                    ("ms", ms.into()),
                ]));
                true
            }
            None => false,
        }
    }

    fn arm_timer(inner: &mut Inner) {
        let Some(at) = inner.session.poll_timeout() else {
            inner.timer = None;
            return;
        };
        if inner.timer.as_ref().is_some_and(|(t, _)| *t == at) {
            return;
        }
        let delay = at.saturating_sub(now_ms()).min(i32::MAX as u64) as u32;
        let weak = inner.weak.clone();
        let timeout = gloo_timers::callback::Timeout::new(delay, move || {
            if let Some(rc) = weak.upgrade() {
                if let Ok(mut inner) = rc.try_borrow_mut() {
                    inner.timer = None;
                    inner.session.handle_timeout(now_ms());
                }
                Link::pump(&rc);
            }
        });
        inner.timer = Some((at, timeout));
    }

    /// Writes the pending position; a storage problem becomes an `error` event.
    fn flush_cursor(rc: &Rc<RefCell<Inner>>) {
        let (result, listeners) = {
            let Ok(mut inner) = rc.try_borrow_mut() else {
                return;
            };
            (inner.flush_cursor(), inner.listeners.clone())
        };
        if let Err(e) = result {
            let value = obj(&[("kind", "storage".into()), ("message", e.into())]);
            emit_all(&listeners, vec![("error", value)]);
        }
    }

    fn install_page_hooks(rc: &Rc<RefCell<Inner>>) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let mut hooks = Vec::new();
        // The page is going away (reload, close, navigation): the position
        // must be on disk so the next page resumes exactly after it.
        let weak = Rc::downgrade(rc);
        let hook = Closure::<dyn FnMut()>::new(move || {
            if let Some(rc) = weak.upgrade() {
                Link::flush_cursor(&rc);
            }
        });
        let _ = window.add_event_listener_with_callback("pagehide", hook.as_ref().unchecked_ref());
        hooks.push(hook);
        for (event, input) in [
            ("online", Input::NetworkUp),
            ("offline", Input::NetworkDown),
        ] {
            let weak = Rc::downgrade(rc);
            let hook = Closure::<dyn FnMut()>::new(move || {
                if let Some(rc) = weak.upgrade() {
                    Link::feed(&rc, input.clone());
                }
            });
            let _ = window.add_event_listener_with_callback(event, hook.as_ref().unchecked_ref());
            hooks.push(hook);
        }
        if let Some(document) = window.document() {
            let weak = Rc::downgrade(rc);
            let doc = document.clone();
            let hook = Closure::<dyn FnMut()>::new(move || {
                if let Some(rc) = weak.upgrade() {
                    if doc.visibility_state() == web_sys::VisibilityState::Visible {
                        Link::feed(&rc, Input::Visible);
                    } else {
                        // Hidden pages may be discarded without a pagehide.
                        Link::flush_cursor(&rc);
                    }
                }
            });
            let _ = document.add_event_listener_with_callback(
                "visibilitychange",
                hook.as_ref().unchecked_ref(),
            );
            hooks.push(hook);
        }
        if let Ok(mut inner) = rc.try_borrow_mut() {
            inner._page_hooks = hooks;
        }
    }
}

#[wasm_bindgen]
impl Link {
    /// Creates a link to `url` (e.g. `ws://127.0.0.1:8080/ws`). See the
    /// package README for every option and its default.
    #[wasm_bindgen(constructor)]
    pub fn new(url: String, options: JsValue) -> Result<Link, JsError> {
        let options: LinkOptions = if options.is_undefined() || options.is_null() {
            LinkOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options)
                .map_err(|e| JsError::new(&format!("bad option: {e}")))?
        };
        let config = options.client_config().map_err(|e| JsError::new(&e))?;
        let (store, store_problem) = Store::open(&options.storage_prefix);
        let (persisted, mut problems) = store.load(options.client_id.as_deref());
        problems.extend(store_problem);
        let now = now_ms();
        let wall_offset = (js_sys::Date::now() as u64).saturating_sub(now);
        let seed = (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64;
        let session = ClientSession::new(config, persisted, now, wall_offset, seed);
        let inner = Rc::new_cyclic(|weak| {
            RefCell::new(Inner {
                session,
                urls: std::iter::once(url)
                    .chain(options.fallback_urls.iter().cloned())
                    .collect(),
                current: 0,
                options: options.clone(),
                store,
                socket: None,
                timer: None,
                listeners: Rc::default(),
                latency_waiters: Vec::new(),
                log: VecDeque::new(),
                wall_offset,
                weak: weak.clone(),
                _page_hooks: Vec::new(),
                tabs: None,
                relay: Vec::new(),
                want_connect: options.auto_connect,
                cursor_to_save: None,
                cursor_timer: None,
            })
        });
        let link = Link { inner };
        Link::install_page_hooks(&link.inner);
        if options.share_tabs {
            let (on_message, on_leader) = (Rc::downgrade(&link.inner), Rc::downgrade(&link.inner));
            let tabs = Tabs::start(
                &options.storage_prefix,
                move |msg| {
                    if let Some(rc) = on_message.upgrade() {
                        Link::on_tab_message(&rc, msg);
                    }
                },
                move |release| match on_leader.upgrade() {
                    Some(rc) => Link::become_leader(&rc, release),
                    None => {
                        let _ = release.call0(&JsValue::NULL);
                    }
                },
            );
            if let Some(mut tabs) = tabs {
                tabs.join();
                link.inner.borrow_mut().tabs = Some(tabs);
            }
        }
        if let Some(name) = &options.console_name {
            crate::console::install(name, link.clone());
        }
        if !problems.is_empty() {
            // Reported after construction, so listeners added right away hear it.
            let weak = Rc::downgrade(&link.inner);
            gloo_timers::callback::Timeout::new(0, move || {
                if let Some(rc) = weak.upgrade() {
                    let listeners = rc
                        .borrow()
                        .listeners
                        .get("error")
                        .cloned()
                        .unwrap_or_default();
                    for message in &problems {
                        web_sys::console::warn_1(&format!("station-link: {message}").into());
                        let value = obj(&[
                            ("kind", "storage".into()),
                            ("message", message.as_str().into()),
                        ]);
                        for f in &listeners {
                            let _ = f.call1(&JsValue::NULL, &value);
                        }
                    }
                }
            })
            .forget();
        }
        if options.auto_connect {
            let weak = Rc::downgrade(&link.inner);
            gloo_timers::callback::Timeout::new(0, move || {
                if let Some(rc) = weak.upgrade() {
                    Link::feed(&rc, Input::Connect);
                }
            })
            .forget();
        }
        Ok(link)
    }

    pub fn connect(&self) {
        self.inner.borrow_mut().want_connect = true;
        Link::feed(&self.inner, Input::Connect);
    }

    /// Closes the link. A leader tab also gives up the leadership, so
    /// another tab takes the connection over.
    pub fn close(&self) {
        self.inner.borrow_mut().want_connect = false;
        Link::feed(&self.inner, Input::Close);
        Link::flush_cursor(&self.inner);
        let release = self
            .inner
            .borrow_mut()
            .tabs
            .as_mut()
            .and_then(|t| t.release.take());
        if let Some(release) = release {
            let _ = release.call0(&JsValue::NULL);
        }
    }

    /// Publishes an event or command. `options`: `{ delivery: "reliable" |
    /// "volatile", ttlMs }`. Reliable publishes wait in the outbox (and
    /// localStorage) until the proxy accepts them; `radio.ptt` is never stored.
    pub fn send(&self, kind: String, payload: JsValue, options: JsValue) -> Result<(), JsError> {
        let payload: Payload = if payload.is_undefined() {
            Payload::Nil
        } else {
            serde_wasm_bindgen::from_value(payload)
                .map_err(|e| JsError::new(&format!("payload: {e}")))?
        };
        let get = |key: &str| {
            Reflect::get(&options, &JsValue::from_str(key))
                .ok()
                .filter(|v| !v.is_undefined())
        };
        let delivery = match get("delivery").and_then(|v| v.as_string()).as_deref() {
            None | Some("reliable") => Delivery::Reliable,
            Some("volatile") => Delivery::Volatile,
            Some(other) => {
                return Err(JsError::new(&format!(
                    "delivery must be 'reliable' or 'volatile', not {other:?}"
                )))
            }
        };
        let ttl_ms = get("ttlMs")
            .and_then(|v| v.as_f64())
            .map(|v| v.max(0.0) as u64);
        if let Some(tabs) = self
            .inner
            .borrow_mut()
            .tabs
            .as_mut()
            .filter(|t| t.role == Role::Follower)
        {
            let delivery = if delivery == Delivery::Volatile {
                "volatile"
            } else {
                "reliable"
            };
            tabs.send(
                &kind,
                to_js(&payload),
                delivery,
                ttl_ms.map_or(JsValue::UNDEFINED, |v| (v as f64).into()),
            );
            return Ok(());
        }
        Link::feed(
            &self.inner,
            Input::Publish {
                kind,
                payload,
                delivery,
                ttl_ms,
            },
        );
        Ok(())
    }

    #[wasm_bindgen(js_name = forceReconnect)]
    pub fn force_reconnect(&self) {
        if self.forward("forceReconnect", 0.0) {
            return;
        }
        Link::feed(&self.inner, Input::ForceReconnect);
    }

    /// Drops the connection and stays away for `ms` milliseconds.
    #[wasm_bindgen(js_name = simulateDisconnect)]
    pub fn simulate_disconnect(&self, ms: f64) {
        if self.forward("simulateDisconnect", ms) {
            return;
        }
        Link::feed(
            &self.inner,
            Input::SimulateDisconnect {
                ms: ms.max(0.0) as u64,
            },
        );
    }

    /// Measures one round trip now; resolves with the RTT in ms, rejects
    /// after 5 s or when not connected.
    #[wasm_bindgen(js_name = testConnection)]
    pub fn test_connection(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        js_sys::Promise::new(&mut |resolve: Function, reject: Function| {
            if inner.borrow().role() == Role::Follower {
                // The leader measures; its relayed latency resolves this.
                inner.borrow_mut().latency_waiters.push(resolve);
                let reject = reject.clone();
                gloo_timers::callback::Timeout::new(5_000, move || {
                    let _ =
                        reject.call1(&JsValue::NULL, &JsError::new("no pong within 5 s").into());
                })
                .forget();
                Link {
                    inner: inner.clone(),
                }
                .forward("latency", 0.0);
                return;
            }
            let connected = inner.borrow().session.state() == LinkState::Connected;
            if !connected {
                let _ = reject.call1(&JsValue::NULL, &JsError::new("not connected").into());
                return;
            }
            inner.borrow_mut().latency_waiters.push(resolve);
            gloo_timers::callback::Timeout::new(5_000, move || {
                let _ = reject.call1(&JsValue::NULL, &JsError::new("no pong within 5 s").into());
            })
            .forget();
            Link::feed(&inner, Input::LatencyTest);
        })
    }

    /// Counters, latency, quality and its inputs.
    pub fn metrics(&self) -> JsValue {
        let metrics = self.inner.borrow_mut().session.metrics(now_ms());
        to_js(&metrics)
    }

    /// `{ state, url, clientId, lastSeq, outbox }`.
    pub fn status(&self) -> JsValue {
        let inner = self.inner.borrow();
        let p = inner.session.persisted();
        obj(&[
            ("state", to_js(&inner.session.state())),
            ("url", inner.urls[inner.current].as_str().into()),
            ("clientId", p.client_id.as_str().into()),
            ("lastSeq", (p.last_seq as f64).into()),
            ("outbox", (p.outbox.len() as f64).into()),
            ("role", inner.role().as_str().into()),
            (
                "access",
                inner.session.access().map_or(JsValue::NULL, |a| to_js(&a)),
            ),
            ("shared", inner.tabs.is_some().into()),
        ])
    }

    /// The bounded lifecycle history (JSON-serialisable).
    pub fn history(&self) -> JsValue {
        let inner = self.inner.borrow();
        let entries: Vec<_> = inner.session.history().cloned().collect();
        to_js(&entries)
    }

    /// Reliable publishes waiting for the proxy.
    pub fn buffer(&self) -> JsValue {
        let inner = self.inner.borrow();
        let outbox: Vec<_> = inner.session.outbox().cloned().collect();
        to_js(&outbox)
    }

    #[wasm_bindgen(js_name = clearBuffer)]
    pub fn clear_buffer(&self) {
        Link::feed(&self.inner, Input::ClearBuffer);
    }

    /// Everything useful for a bug report, as a downloadable JSON Blob.
    #[wasm_bindgen(js_name = exportLogs)]
    pub fn export_logs(&self) -> Result<web_sys::Blob, JsError> {
        let report = {
            let mut inner = self.inner.borrow_mut();
            let now = now_ms();
            let metrics = inner.session.metrics(now);
            let history: Vec<_> = inner.session.history().cloned().collect();
            let buffer: Vec<_> = inner.session.outbox().cloned().collect();
            let serializer = serde_wasm_bindgen::Serializer::json_compatible();
            let value = obj(&[
                ("exportedAtMs", ((now + inner.wall_offset) as f64).into()),
                ("url", inner.urls[inner.current].as_str().into()),
                (
                    "storagePrefix",
                    inner.options.storage_prefix.as_str().into(),
                ),
                (
                    "metrics",
                    metrics.serialize(&serializer).unwrap_or(JsValue::NULL),
                ),
                (
                    "history",
                    history.serialize(&serializer).unwrap_or(JsValue::NULL),
                ),
                (
                    "log",
                    inner
                        .log
                        .iter()
                        .collect::<Vec<_>>()
                        .serialize(&serializer)
                        .unwrap_or(JsValue::NULL),
                ),
                (
                    "buffer",
                    buffer.serialize(&serializer).unwrap_or(JsValue::NULL),
                ),
            ]);
            js_sys::JSON::stringify_with_replacer_and_space(
                &value,
                &JsValue::NULL,
                &JsValue::from(2),
            )
            .map_err(|_| JsError::new("could not serialise the report"))?
        };
        let parts = Array::of1(&report);
        let options = web_sys::BlobPropertyBag::new();
        options.set_type("application/json");
        web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)
            .map_err(|_| JsError::new("could not create the Blob"))
    }

    /// Adds a listener: `state`, `event`, `reconnected`, `maxAttemptsReached`,
    /// `gap`, `snapshot`, `quality`, `latency`, `accepted`, `rejected`, `error`.
    pub fn on(&self, name: String, listener: Function) {
        let mut inner = self.inner.borrow_mut();
        Rc::make_mut(&mut inner.listeners)
            .entry(name)
            .or_default()
            .push(listener);
    }

    pub fn off(&self, name: String, listener: Function) {
        let mut inner = self.inner.borrow_mut();
        if let Some(fns) = Rc::make_mut(&mut inner.listeners).get_mut(&name) {
            fns.retain(|f| f != &listener);
        }
    }
}
