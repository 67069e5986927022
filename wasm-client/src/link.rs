//! `Link`: the JS-facing class. It owns one `ClientSession` and does only
//! what the session asks: open or close the one WebSocket, send bytes,
//! persist, arm one timer, and tell listeners. Listeners are called with no
//! borrow held, so they may call back into the link.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use js_sys::{Array, Function, Reflect, Uint8Array};
use shared_protocol::client::{ClientSession, Input, LinkState, Notice, Output};
use shared_protocol::frame::{Delivery, Payload};
use shared_protocol::receiver::Delivered;
use shared_protocol::Millis;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::js::{
    access_to_js, delivered_to_js, emit_all, history_to_js, list, metrics_to_js, num, obj,
    payload_from_js, payload_to_js, publish_to_js, show, unknown, Listeners,
};
use crate::options::LinkOptions;
use crate::storage::Store;
use crate::tabs::relay::Folded;
use crate::tabs::{Action, Role, Tabs, RELAYED};

/// Lines kept for `exportLogs()`.
const LOG_LINES: usize = 500;
/// The position is written to localStorage at most this often (a write
/// costs about 12 µs in Chromium, more than everything else an event
/// costs), and at once when the page is hidden or goes away.
const CURSOR_FLUSH_MS: u32 = 50;

/// A gloo timeout with its callback boxed first. `Timeout::new` is generic
/// over the callback, and each of the link's eight timers carried its own
/// copy of wasm-bindgen's closure plumbing (about 2 KB of the module).
pub(crate) fn timeout(ms: u32, f: impl FnOnce() + 'static) -> Timeout {
    let f: Box<dyn FnOnce()> = Box::new(f);
    Timeout::new(ms, f)
}

/// The events a listener can be added for.
const EVENTS: [&str; 11] = [
    "state",
    "event",
    "snapshot",
    "gap",
    "reconnected",
    "maxAttemptsReached",
    "quality",
    "latency",
    "accepted",
    "rejected",
    "error",
];

fn known_event(name: &str) -> Result<(), JsError> {
    if EVENTS.contains(&name) {
        return Ok(());
    }
    Err(JsError::new(&unknown(
        "event",
        name,
        "state, event, snapshot, gap, reconnected, maxAttemptsReached, quality, \
         latency, accepted, rejected, error",
    )))
}

/// Checks `send`'s options: an object (or nothing) with only `delivery` and
/// `ttlMs`. `{ ttl: 2000 }` would otherwise send a PTT with no deadline.
fn check_send_options(options: &JsValue) -> Result<(), JsError> {
    if options.is_undefined() || options.is_null() {
        return Ok(());
    }
    if !options.is_object() {
        return Err(JsError::new("send options must be an object"));
    }
    for key in js_sys::Object::keys(&js_sys::Object::from(options.clone())).iter() {
        let key = key.as_string().unwrap_or_default();
        if key != "delivery" && key != "ttlMs" {
            return Err(JsError::new(&unknown(
                "send option",
                &key,
                "delivery, ttlMs",
            )));
        }
    }
    Ok(())
}

/// A seed for the session's jitter.
fn random_seed() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64
}

#[wasm_bindgen]
extern "C" {
    /// `performance.now()` in one call: through `web_sys::window()` it was
    /// three crossings and an `instanceof`, twice an event.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

pub(crate) fn now_ms() -> Millis {
    performance_now() as Millis
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

struct LogLine {
    at_ms: u64,
    level: &'static str,
    event: &'static str,
    detail: JsValue,
}

pub(crate) struct Inner {
    pub(crate) session: ClientSession,
    /// The proxy's URL first, then `fallbackUrls`; `current` is in use.
    urls: Vec<String>,
    current: usize,
    pub(crate) options: LinkOptions,
    pub(crate) store: Store,
    socket: Option<Socket>,
    timer: Option<(Millis, Timeout)>,
    /// Shared so that a pump takes a cheap handle, not a copy.
    pub(crate) listeners: Rc<Listeners>,
    pub(crate) latency_waiters: Vec<Function>,
    log: Vec<LogLine>,
    pub(crate) wall_offset: u64,
    weak: Weak<RefCell<Inner>>,
    _page_hooks: Vec<Closure<dyn FnMut()>>,
    /// Tab sharing (`shareTabs`), where the browser supports it.
    pub(crate) tabs: Option<Tabs>,
    /// The lease's timer and when it fires.
    lease_timer: Option<(Millis, Timeout)>,
    /// The last value of every kind, as of the newest delivery: what a
    /// joining tab is synced with and what a reload shows at once.
    folded: Folded,
    /// Items delivered in this pump, for the leader to relay.
    relay: Vec<Delivered>,
    /// The application wants the link connected (applied on promotion).
    pub(crate) want_connect: bool,
    /// A position not yet written to localStorage, and the timer that will.
    cursor_to_save: Option<(u64, u64)>,
    cursor_timer: Option<Timeout>,
}

impl Inner {
    fn role(&self) -> Role {
        self.tabs.as_ref().map_or(Role::Leader, Tabs::role)
    }

    /// Writes the pending position now.
    fn flush_cursor(&mut self) -> Result<(), String> {
        self.cursor_timer = None;
        match self.cursor_to_save.take() {
            Some((epoch, last_seq)) => {
                self.store
                    .save_cursor(epoch, last_seq, (self.folded.upto, &self.folded.state))
            }
            None => Ok(()),
        }
    }
}

/// A resilient link to the edge proxy.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Link {
    pub(crate) inner: Rc<RefCell<Inner>>,
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
                    timeout(0, move || {
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
            delivered_to_js(&d, emits);
            // Relayed only once a tab has joined (it starts from a sync).
            if inner.tabs.as_ref().is_some_and(|t| t.has_followers) {
                inner.relay.push(d.clone());
            }
            inner.folded.observe(d);
        }
        Output::PersistCursor { epoch, last_seq } => {
            inner.cursor_to_save = Some((epoch, last_seq));
            if inner.cursor_timer.is_none() {
                let weak = inner.weak.clone();
                inner.cursor_timer = Some(timeout(CURSOR_FLUSH_MS, move || {
                    if let Some(rc) = weak.upgrade() {
                        Link::flush_cursor(&rc);
                    }
                }));
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
    let logged = emits.len();
    notice_emits(inner, notice, emits);
    // The log keeps what the application was told, as it was told: the
    // emitted value itself (no message formatted per notice in the module).
    for (name, value) in &emits[logged..] {
        let level = match *name {
            "state" | "reconnected" => "info",
            "rejected" => "warn",
            "maxAttemptsReached" | "error" => "error",
            _ => continue,
        };
        let line = LogLine {
            at_ms: now_ms() + inner.wall_offset,
            level,
            event: name,
            detail: value.clone(),
        };
        shared_protocol::push_bounded(&mut inner.log, LOG_LINES, line);
    }
}

fn notice_emits(inner: &mut Inner, notice: Notice, emits: &mut Vec<(&'static str, JsValue)>) {
    match notice {
        Notice::State { state, reason } => {
            let access = access_to_js(inner.session.access());
            emits.push((
                "state",
                obj(&[
                    ("state", state.as_str().into()),
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
                ("reason", reason.as_str().into()),
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
        Notice::Error { kind, message } => {
            if kind == "replaced" {
                // Perhaps by another tab that led beside this one for a
                // moment: once the lease has settled, a leader that heard
                // such a rival connects again.
                let weak = inner.weak.clone();
                timeout(2 * crate::tabs::lease::SETTLE_MS as u32, move || {
                    let Some(rc) = weak.upgrade() else { return };
                    let rival = rc
                        .try_borrow_mut()
                        .is_ok_and(|mut i| i.tabs.as_mut().is_some_and(|t| t.lease.take_rival()));
                    if rival {
                        Link::feed(&rc, Input::Connect);
                    }
                })
                .forget();
            }
            emits.push((
                "error",
                obj(&[("kind", kind.into()), ("message", message.into())]),
            ))
        }
    }
}

fn open_socket(url: &str, id: u32, weak: Weak<RefCell<Inner>>) -> Result<Socket, String> {
    let ws = WebSocket::new(url).map_err(|e| format!("cannot open {url}: {}", show(&e)))?;
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
            timeout(0, move || {
                if let Some(rc) = weak.upgrade() {
                    Link::feed(&rc, input);
                }
            })
            .forget();
            return;
        }
        Link::pump(rc);
    }

    pub(crate) fn pump(rc: &Rc<RefCell<Inner>>) {
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
                if let Some(tabs) = inner.tabs.as_mut().filter(|t| t.role() == Role::Leader) {
                    tabs.relay(inner.session.epoch(), &inner.relay);
                    for (name, value) in emits.iter().filter(|(n, _)| RELAYED.contains(n)) {
                        tabs.relay_emit(name, value);
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

    /// Hands a command to the leader tab, if this tab is a follower.
    fn forward(&self, name: &str, ms: f64) -> bool {
        let inner = self.inner.borrow();
        match inner.tabs.as_ref().filter(|t| t.role() == Role::Follower) {
            Some(tabs) => {
                tabs.forward(name, ms);
                true
            }
            None => false,
        }
    }

    /// A message from another tab of this dashboard.
    fn on_tab_message(rc: &Rc<RefCell<Inner>>, msg: JsValue) {
        let mut actions = Vec::new();
        {
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
            if let Some(tabs) = inner.tabs.as_mut() {
                tabs.on_message(&msg, epoch, &inner.folded, now_ms(), &mut actions);
            }
        }
        Link::act(rc, actions);
    }

    /// Carries out what the tab protocol decided, then anything the session
    /// says after it.
    fn act(rc: &Rc<RefCell<Inner>>, actions: Vec<Action>) {
        let mut emits: Vec<(&'static str, JsValue)> = Vec::new();
        let mut feeds = Vec::new();
        let listeners = {
            let Ok(mut inner) = rc.try_borrow_mut() else {
                return;
            };
            let inner = &mut *inner;
            for action in actions {
                match action {
                    Action::Deliver(d) => {
                        delivered_to_js(&d, &mut emits);
                        inner.folded.observe(d);
                    }
                    Action::Emit(name, value) => {
                        if name == "latency" {
                            let rtt = crate::js::get(&value, "rttMs");
                            for resolve in inner.latency_waiters.drain(..) {
                                let _ = resolve.call1(&JsValue::NULL, &rtt);
                            }
                        }
                        emits.push((name, value));
                    }
                    Action::Feed(input) => feeds.push(input),
                    Action::Lead { position } => {
                        if let Some(position) = position {
                            // Resume from what this tab has delivered, not
                            // from what the old leader stored.
                            let (mut persisted, _) =
                                inner.store.load(inner.options.client_id.as_deref());
                            persisted.epoch = Some(position.epoch);
                            persisted.last_seq = position.last_seq;
                            if let Ok(config) = inner.options.client_config() {
                                inner.session = ClientSession::new(
                                    config,
                                    persisted,
                                    now_ms(),
                                    inner.wall_offset,
                                    random_seed(),
                                );
                            }
                        }
                        if inner.want_connect {
                            feeds.insert(0, Input::Connect);
                        }
                    }
                    Action::StepDown => {
                        inner.session.handle_input(Input::Close, now_ms());
                        let position = inner.session.persisted();
                        let position = position.epoch.map(|epoch| shared_protocol::frame::Resume {
                            epoch,
                            last_seq: position.last_seq,
                        });
                        if let Some(tabs) = inner.tabs.as_mut() {
                            tabs.follow_from(position, now_ms());
                        }
                    }
                }
            }
            Link::arm_lease(inner);
            inner.listeners.clone()
        };
        emit_all(&listeners, emits);
        for input in feeds {
            Link::feed(rc, input);
        }
        Link::pump(rc);
    }

    /// Keeps one timer at the lease's next deadline.
    fn arm_lease(inner: &mut Inner) {
        let Some(at) = inner.tabs.as_ref().and_then(|t| t.lease.poll_timeout()) else {
            inner.lease_timer = None;
            return;
        };
        if inner.lease_timer.as_ref().is_some_and(|(t, _)| *t == at) {
            return;
        }
        let delay = at.saturating_sub(now_ms()).min(i32::MAX as u64) as u32;
        let weak = inner.weak.clone();
        let armed = timeout(delay, move || {
            if let Some(rc) = weak.upgrade() {
                let mut actions = Vec::new();
                if let Ok(mut inner) = rc.try_borrow_mut() {
                    inner.lease_timer = None;
                    if let Some(tabs) = inner.tabs.as_mut() {
                        tabs.lease.handle_timeout(now_ms());
                        tabs.poll_lease(&mut actions);
                    }
                }
                Link::act(&rc, actions);
            }
        });
        inner.lease_timer = Some((at, armed));
    }

    /// The tab stops taking part in the election (the page goes away or the
    /// link is closed); a leader says so, and another tab takes over at once.
    fn resign(rc: &Rc<RefCell<Inner>>) {
        let mut actions = Vec::new();
        if let Ok(mut inner) = rc.try_borrow_mut() {
            if let Some(tabs) = inner.tabs.as_mut() {
                tabs.lease.resign();
                tabs.poll_lease(&mut actions);
            }
        }
        Link::act(rc, actions);
    }

    fn arm_timer(inner: &mut Inner) {
        let Some(at) = inner.session.poll_timeout() else {
            inner.timer = None;
            return;
        };
        // A timer due no later than the deadline is kept (it clears itself
        // when it fires): early, the session does nothing and the timer is
        // armed again. Every event moves the heartbeat's deadline a little
        // later, and a new timer for each (and the clock read for it,
        // `performance.now()` costs Chromium about 2 µs) was a fifth of an
        // event's cost.
        if inner.timer.as_ref().is_some_and(|(t, _)| *t <= at) {
            return;
        }
        let delay = at.saturating_sub(now_ms()).min(i32::MAX as u64) as u32;
        let weak = inner.weak.clone();
        let armed = timeout(delay, move || {
            if let Some(rc) = weak.upgrade() {
                if let Ok(mut inner) = rc.try_borrow_mut() {
                    inner.timer = None;
                    inner.session.handle_timeout(now_ms());
                }
                Link::pump(&rc);
            }
        });
        inner.timer = Some((at, armed));
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
        // A leading tab resigns, so another takes over at once.
        let hook = Closure::<dyn FnMut()>::new(move || {
            if let Some(rc) = weak.upgrade() {
                Link::flush_cursor(&rc);
                Link::resign(&rc);
            }
        });
        let _ = window.add_event_listener_with_callback("pagehide", hook.as_ref().unchecked_ref());
        hooks.push(hook);
        // The network is back, or the operator is looking at the page
        // again (focus; visibility below): try now, not at the next backoff.
        for (event, input) in [
            ("online", Input::NetworkUp),
            ("offline", Input::NetworkDown),
            ("focus", Input::Visible),
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
                    // `hidden` rather than `visibilityState`: the same answer (the
                    // state is "visible" or "hidden"), without web-sys's enum
                    // conversion and its panic path in the wasm.
                    if !doc.hidden() {
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
        let options = LinkOptions::from_js(&options)
            .map_err(|e| JsError::new(&format!("bad option: {e}")))?;
        let config = options.client_config().map_err(|e| JsError::new(&e))?;
        let now = now_ms();
        // The tab channel's handler needs the link, which needs the store,
        // which depends on whether tabs share: the link is put here once made.
        let weak_slot: Rc<RefCell<Weak<RefCell<Inner>>>> = Rc::default();
        let tabs = if options.share_tabs {
            let weak = weak_slot.clone();
            Tabs::start(&options.storage_prefix, now, move |msg| {
                if let Some(rc) = weak.borrow().upgrade() {
                    Link::on_tab_message(&rc, msg);
                }
            })
        } else {
            None
        };
        // A tab that does not share keeps its own identity (sessionStorage).
        let (store, store_problem) = Store::open(&options.storage_prefix, tabs.is_none());
        let (persisted, mut problems) = store.load(options.client_id.as_deref());
        problems.extend(store_problem);
        // What the last page showed, as of where this one resumes.
        let restored = persisted
            .epoch
            .and_then(|_| store.load_state(persisted.last_seq));
        let folded = Folded {
            upto: persisted.last_seq,
            state: restored
                .as_ref()
                .map(|(s, _)| s.state.clone())
                .unwrap_or_default(),
        };
        let wall_offset = (js_sys::Date::now() as u64).saturating_sub(now);
        let session = ClientSession::new(config, persisted, now, wall_offset, random_seed());
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
                log: Vec::new(),
                wall_offset,
                weak: weak.clone(),
                _page_hooks: Vec::new(),
                tabs,
                lease_timer: None,
                folded,
                relay: Vec::new(),
                want_connect: options.auto_connect,
                cursor_to_save: None,
                cursor_timer: None,
            })
        });
        *weak_slot.borrow_mut() = Rc::downgrade(&inner);
        let link = Link { inner };
        Link::install_page_hooks(&link.inner);
        // The election's first claim is out; its timer decides.
        Link::arm_lease(&mut link.inner.borrow_mut());
        if let Some(name) = &options.console_name {
            crate::console::install(name, link.clone());
        }
        if !problems.is_empty() || restored.is_some() {
            // Reported after construction, so listeners added right away hear it.
            let weak = Rc::downgrade(&link.inner);
            timeout(0, move || {
                if let Some(rc) = weak.upgrade() {
                    let listeners = rc.borrow().listeners.clone();
                    if let Some((snapshot, at)) = restored {
                        // The station as the last page left it: shown at
                        // once, before any socket (`restored`, `asOfMs`).
                        let mut emits = Vec::new();
                        delivered_to_js(&Delivered::Snapshot(snapshot), &mut emits);
                        for (_, value) in &emits {
                            let _ = Reflect::set(value, &"restored".into(), &JsValue::TRUE);
                            let _ = Reflect::set(value, &"asOfMs".into(), &num(at));
                        }
                        emit_all(&listeners, emits);
                    }
                    for message in &problems {
                        web_sys::console::warn_1(&format!("station-link: {message}").into());
                        let value = obj(&[
                            ("kind", "storage".into()),
                            ("message", message.as_str().into()),
                        ]);
                        for f in listeners.of("error") {
                            let _ = f.call1(&JsValue::NULL, &value);
                        }
                    }
                }
            })
            .forget();
        }
        if options.auto_connect && link.inner.borrow().tabs.is_none() {
            // (A shared tab connects when, and if, it wins the election.)
            let weak = Rc::downgrade(&link.inner);
            timeout(0, move || {
                if let Some(rc) = weak.upgrade() {
                    Link::feed(&rc, Input::Connect);
                }
            })
            .forget();
        }
        Ok(link)
    }

    pub fn connect(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.want_connect = true;
        if let Some(tabs) = inner.tabs.as_mut() {
            if tabs.lease.stopped() {
                // Closed earlier: stand for the leadership again.
                tabs.lease.restart(now_ms());
                let mut actions = Vec::new();
                tabs.poll_lease(&mut actions);
                drop(inner);
                Link::act(&self.inner, actions);
                return;
            }
            if tabs.role() == Role::Follower {
                return;
            }
        }
        drop(inner);
        Link::feed(&self.inner, Input::Connect);
    }

    /// Closes the link. A leader tab also gives up the leadership, so
    /// another tab takes the connection over.
    pub fn close(&self) {
        self.inner.borrow_mut().want_connect = false;
        Link::feed(&self.inner, Input::Close);
        Link::flush_cursor(&self.inner);
        Link::resign(&self.inner);
    }

    /// Publishes an event or command. `options`: `{ delivery: "reliable" |
    /// "volatile", ttlMs }`. Reliable publishes wait in the outbox (and
    /// localStorage) until the proxy accepts them; `radio.ptt` is never stored.
    pub fn send(&self, kind: String, payload: JsValue, options: JsValue) -> Result<(), JsError> {
        check_send_options(&options)?;
        let payload: Payload = if payload.is_undefined() {
            Payload::Nil
        } else {
            payload_from_js(&payload).map_err(|e| JsError::new(&format!("payload: {e}")))?
        };
        let get = |key: &str| {
            Reflect::get(&options, &JsValue::from_str(key))
                .ok()
                .filter(|v| !v.is_undefined())
        };
        let delivery = match get("delivery").and_then(|v| v.as_string()) {
            None => Delivery::Reliable,
            Some(name) => Delivery::from_name(&name).ok_or_else(|| {
                JsError::new(&format!(
                    "delivery must be 'reliable' or 'volatile', not '{name}'"
                ))
            })?,
        };
        let ttl_ms = get("ttlMs")
            .and_then(|v| v.as_f64())
            .map(|v| v.max(0.0) as u64);
        if let Some(tabs) = self
            .inner
            .borrow_mut()
            .tabs
            .as_mut()
            .filter(|t| t.role() == Role::Follower)
        {
            tabs.send(
                &kind,
                payload_to_js(&payload),
                delivery.as_str(),
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
                timeout(5_000, move || {
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
            timeout(5_000, move || {
                let _ = reject.call1(&JsValue::NULL, &JsError::new("no pong within 5 s").into());
            })
            .forget();
            Link::feed(&inner, Input::LatencyTest);
        })
    }

    /// Counters, latency, quality and its inputs.
    pub fn metrics(&self) -> JsValue {
        metrics_to_js(&self.inner.borrow_mut().session.metrics(now_ms()))
    }

    /// `{ state, url, clientId, lastSeq, outbox }`.
    pub fn status(&self) -> JsValue {
        let inner = self.inner.borrow();
        let p = inner.session.persisted();
        obj(&[
            ("state", inner.session.state().as_str().into()),
            ("url", inner.urls[inner.current].as_str().into()),
            ("clientId", p.client_id.as_str().into()),
            ("lastSeq", (p.last_seq as f64).into()),
            ("outbox", (p.outbox.len() as f64).into()),
            ("role", inner.role().as_str().into()),
            ("access", access_to_js(inner.session.access())),
            ("shared", inner.tabs.is_some().into()),
        ])
    }

    /// The bounded lifecycle history (JSON-serialisable).
    pub fn history(&self) -> JsValue {
        list(self.inner.borrow().session.history(), history_to_js)
    }

    /// Reliable publishes waiting for the proxy.
    pub fn buffer(&self) -> JsValue {
        list(self.inner.borrow().session.outbox(), publish_to_js)
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
            let log = |l: &LogLine| {
                obj(&[
                    ("at_ms", num(l.at_ms)),
                    ("level", l.level.into()),
                    ("event", l.event.into()),
                    ("detail", l.detail.clone()),
                ])
            };
            let value = obj(&[
                ("exportedAtMs", num(now + inner.wall_offset)),
                ("url", inner.urls[inner.current].as_str().into()),
                (
                    "storagePrefix",
                    inner.options.storage_prefix.as_str().into(),
                ),
                ("metrics", metrics_to_js(&inner.session.metrics(now))),
                ("history", list(inner.session.history(), history_to_js)),
                ("log", list(inner.log.iter(), log)),
                ("buffer", list(inner.session.outbox(), publish_to_js)),
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
    /// Another name throws: a typo must not leave a listener that never runs.
    pub fn on(&self, name: String, listener: Function) -> Result<(), JsError> {
        known_event(&name)?;
        let mut inner = self.inner.borrow_mut();
        Rc::make_mut(&mut inner.listeners).add(name, listener);
        Ok(())
    }

    pub fn off(&self, name: String, listener: Function) -> Result<(), JsError> {
        known_event(&name)?;
        let mut inner = self.inner.borrow_mut();
        Rc::make_mut(&mut inner.listeners).remove(&name, &listener);
        Ok(())
    }
}

impl crate::console::Target for Link {
    fn metrics(&self) -> JsValue {
        Link::metrics(self)
    }
    fn force_reconnect(&self) {
        Link::force_reconnect(self)
    }
    fn buffer(&self) -> JsValue {
        Link::buffer(self)
    }
    fn clear_buffer(&self) {
        Link::clear_buffer(self)
    }
    fn simulate_disconnect(&self, ms: f64) {
        Link::simulate_disconnect(self, ms)
    }
    fn history(&self) -> JsValue {
        Link::history(self)
    }
    fn export_logs(&self) -> Result<web_sys::Blob, JsError> {
        Link::export_logs(self)
    }
}
