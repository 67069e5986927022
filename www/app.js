// The station dashboard: the first user of the station-link npm package.
import init, { Link } from './pkg/station_link.js';
import { bandOf } from './bands.js';
import { Series, Timeline, range } from './charts.js';
import { mountToasts, toast } from './toasts.js';

// Offline-first: a service worker keeps the page loadable while the proxy is down.
if ('serviceWorker' in navigator) navigator.serviceWorker.register('./sw.js').catch(() => {});

const $ = (id) => document.getElementById(id);
const badge = $('badge');
const say = (text) => { $('live').textContent = text; };

// Toasts (toasts.js): `info`, `warn`, `error` and `alarm` (a transmitter the
// proxy had to unkey: kept until dismissed), in one polite live region.
mountToasts({ stackEl: $('toasts'), pastEl: $('notices-list'), pastCountEl: $('notices-count') });

await init();
const params = new URLSearchParams(location.search);
const options = { storagePrefix: 'dashboard' };
// ?token=SECRET moves into this browser's storage and out of the address
// bar at once, so history, bookmarks, screenshots and the service worker's
// cache never hold it; later visits use the stored one.
const TOKEN_KEY = 'dashboard.token';
if (params.get('token')) {
  options.token = params.get('token');
  try { localStorage.setItem(TOKEN_KEY, options.token); } catch { /* private mode: this visit only */ }
  params.delete('token');
  const rest = params.toString();
  history.replaceState(history.state, '', `${location.pathname}${rest ? `?${rest}` : ''}${location.hash}`);
} else {
  try { options.token = localStorage.getItem(TOKEN_KEY) ?? undefined; } catch { /* no storage */ }
  if (options.token === undefined) delete options.token;
}
// Backoff settings from the address (the tests use short ones).
for (const k of ['baseDelayMs', 'maxDelayMs', 'maxAttempts']) if (params.get(k)) options[k] = Number(params.get(k));
// ?fallback=host:port,host:port — other proxies on the same shared log, tried
// in turn when this one is gone.
if (params.get('fallback')) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  options.fallbackUrls = params.get('fallback').split(',').filter(Boolean).map((h) => `${scheme}://${h}/ws`);
}
const link = new Link(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`, options);
let readOnly = false;
let state = 'disconnected';
let ptt = false;
let radioLink = null;
let releasedAt = -Infinity; // when this dashboard last let go of PTT (performance.now())
let hold = null; // while PTT is held: { via: 'pointer' | 'space', keepalive, refused: null or the reason }
// A forward-power reading under this is no power (the proxy's default
// power_zero_threshold_w): SWR means nothing then and is not shown.
const POWER_SHOWN_W = 0.1;
let strength = null; // the last radio.meter
// When the values on the page were last known to be current (Unix ms):
// null while connected (they are live), else when the link was lost, or when
// the page that stored a restored state saw it last.
let asOf = null;

// Not connected: grey out what came from the proxy, say as of when, and
// offer "Retry now" (a phone has no Ctrl+Shift+D).
function showFreshness() {
  const live = state === 'connected';
  document.body.classList.toggle('stale', !live);
  $('retry-btn').hidden = live;
  $('as-of').textContent = !live && asOf ? `as of ${new Date(asOf).toLocaleTimeString('en-GB')}` : '';
}

function setControls() {
  const why = readOnly
    ? 'Controls are disabled: this dashboard\'s token is read-only (commands need the control role).'
    : state === 'connected' ? '' : 'Controls are disabled while the link is not connected.';
  // The radio's own controls also need the radio link; Reconnect does not.
  const radioWhy = why || (radioLink && radioLink !== 'connected'
    ? `Radio controls are disabled: the radio link is ${radioLink.replace('_', ' ')}.` : '');
  for (const el of document.querySelectorAll('#freq-form input, #freq-form button, #mode-in, #ptt-btn')) el.disabled = !!radioWhy;
  for (const el of document.querySelectorAll('.relink, #unkey-btn')) el.disabled = !!why;
  $('controls-why').textContent = radioWhy;
}

function showRadio(r) {
  if (!r) return;
  $('freq').textContent = (r.freq_hz / 1e6).toFixed(6);
  const band = bandOf(r.freq_hz);
  $('band').textContent = band ?? 'out of band';
  $('band').className = `band${band ? '' : ' none'}`;
  $('mode').textContent = r.mode;
  $('mode-in').value = r.mode;
  ptt = !!r.ptt;
  $('ptt').textContent = ptt ? 'TX' : 'RX';
  $('ptt').className = `ptt ${ptt ? 'on' : 'off'}`;
  showUnkey();
  showMeters();
}

// Receiving: the S-meter; transmitting: forward power (and SWR when there
// is power). The radio is never asked for its S-meter while transmitting.
function showMeters() {
  $('smeter-row').hidden = ptt || !strength;
  $('tx-row').hidden = !ptt;
}

/** `radio.meter {strength_db, s_units, over_s9_db}` as an S-meter reads. */
function sText(m) {
  return m.over_s9_db > 0 ? `S9+${m.over_s9_db} dB` : `S${m.s_units}`;
}
function showStrength(m) {
  if (!m || typeof m.strength_db !== 'number') return;
  strength = m;
  // -54 dB (S0) to +60 dB over S9, as on the radio's bar graph: S9 at the middle.
  const db = Math.max(-54, Math.min(60, m.strength_db));
  const pct = db <= 0 ? ((db + 54) / 54) * 50 : 50 + (db / 60) * 50;
  $('smeter-fill').style.width = `${pct.toFixed(1)}%`;
  $('smeter-fill').className = db > 0 ? 'over' : '';
  $('smeter-text').textContent = sText(m);
  const bar = $('smeter-bar');
  bar.setAttribute('aria-valuenow', String(db));
  bar.setAttribute('aria-valuetext', `${sText(m)} (${m.strength_db} dB relative to S9)`);
  showMeters();
}

// "Unkey now": shown while the radio reports TX and this dashboard is not
// holding PTT (another client keys it, a lost "off", the radio keyed at the
// microphone), so an operator always has a way to unkey. Not in the moment
// after this dashboard let go, while its own "off" is on its way.
const UNKEY_GRACE_MS = 1000;
function showUnkey() {
  $('unkey-btn').hidden = !(ptt && !hold && performance.now() - releasedAt >= UNKEY_GRACE_MS);
}

function showPower(p, live = true) {
  const w = Number(p.watts);
  const powered = w >= POWER_SHOWN_W;
  $('watts').textContent = w.toFixed(1);
  $('swr-box').hidden = !(powered && p.swr);
  $('swr').textContent = powered && p.swr ? Number(p.swr).toFixed(2) : '–';
  const level = p.level || 'normal';
  $('power-level').textContent = p.seconds_to_zero ? `${level}, falling: ~${p.seconds_to_zero} s to zero` : level;
  $('power-level').className = `level ${level}`;
  if (live) powerChart.push([w, powered && p.swr ? Number(p.swr) : null]);
}

// The plots (charts.js): each with its caption as the text alternative.
const fmtRange = (r, unit, digits = 0) => {
  if (!r) return 'no reading yet';
  const u = unit ? ` ${unit}` : '';
  return `now ${r.last.toFixed(digits)}${u}, ${r.min.toFixed(digits)}–${r.max.toFixed(digits)}${u} over the last 5 minutes`;
};
// The link goes stale after 1.5 ping intervals (the client's default 10 s) without a pong.
const STALE_MS = 15_000;
const powerChart = new Series({
  el: $('power-chart'),
  caption: $('power-cap'),
  series: [
    { label: 'forward power (W)', scale: 'W', stroke: '#60a5fa' },
    { label: 'SWR', scale: 'swr', stroke: '#fbbf24', axis: true },
  ],
  scales: { W: { range: (u, lo, hi) => [0, Math.max(10, hi)] }, swr: { range: (u, lo, hi) => [1, Math.max(3, hi)] } },
  describe: ([, w, swr]) => {
    const rw = range(w);
    const rs = range(swr);
    return `Forward power: ${fmtRange(rw, 'W', 1)}${rs ? `; SWR ${rs.last.toFixed(2)} (${rs.min.toFixed(2)}–${rs.max.toFixed(2)}) while transmitting` : '; no SWR while not transmitting'}`;
  },
});
const latencyChart = new Series({
  el: $('latency-chart'),
  caption: $('latency-cap'),
  series: [{ label: 'round trip (ms)', scale: 'ms', stroke: '#34d399', points: true, splits: () => [1, 10, 100, 1000, 10_000], values: (u, ticks) => ticks.map((t) => (t == null ? '' : t >= 1000 ? `${t / 1000} s` : `${t} ms`)) }],
  scales: { ms: { distr: 3, range: () => [1, STALE_MS * 1.5] } },
  lines: [{ value: STALE_MS, scale: 'ms', stroke: '#f87171' }],
  describe: ([, ms]) => `Round-trip latency: ${fmtRange(range(ms), 'ms')}; stale above ${(STALE_MS / 1000).toFixed(0)} s (dashed line)`,
});
const qualityChart = new Series({
  el: $('quality-chart'),
  caption: $('quality-cap'),
  series: [{ label: 'quality', scale: 'q', stroke: '#a78bfa', points: true }],
  scales: { q: { range: () => [0, 1] } },
  describe: ([, q]) => `Link quality: ${fmtRange(range(q), '', 2)}`,
});
const timeline = new Timeline($('timeline'), [['browser', 'This browser'], ['radio', 'Radio'], ['meter', 'Power meter']]);
// Redrawn once a second (not per event: at 1,000 events/s that would be
// the page's whole budget); the timeline's bands move 0.2 % a second, so
// every 5 s, and at once when a state changes.
let ticks = 0;
setInterval(() => {
  for (const c of [powerChart, latencyChart, qualityChart]) c.draw();
  if (++ticks % 5 === 0) timeline.draw();
}, 1000);

// The event list: one number per row (the event's seq), repeats of the
// same event (PTT keepalives, one each second while held) collapsed into
// the row they repeat ("radio.ptt on ×12"), a pause while reading, a filter.
let paused = false;
const held = []; // events that came while paused
const kindsSeen = new Set();
const summary = (e) => JSON.stringify(e.payload);
const REPEAT_LOOKBACK = 4;
// Rows are drawn in batches (every 50 ms), not once an event: at hundreds of
// events a second, only the newest MAX_ROWS of a batch are ever seen. A
// timer, not requestAnimationFrame, which a background tab never runs.
const MAX_ROWS = 200;
let pending = [];
function logEvent(e) {
  pending.push(e);
  if (pending.length === 1) setTimeout(flushEvents, 50);
}
function flushEvents() {
  const batch = pending.length > MAX_ROWS ? pending.slice(-MAX_ROWS) : pending;
  pending = [];
  for (const e of batch) showEvent(e);
  const list = $('events');
  while (list.children.length > MAX_ROWS) list.lastChild.remove();
}
function showEvent(e) {
  if (!kindsSeen.has(e.kind)) {
    kindsSeen.add(e.kind);
    const o = document.createElement('option');
    o.value = e.kind;
    $('kinds').append(o);
  }
  if (paused) {
    held.push(e);
    if (held.length > 200) held.shift();
    $('pause-btn').textContent = `Resume (${held.length} new)`;
    return;
  }
  const text = summary(e);
  // A repeat of one of the last few rows (keepalives come between the
  // radio's state changes): that row counts it and moves to the top.
  let same = $('events').firstElementChild;
  for (let i = 0; same && i < REPEAT_LOOKBACK; i++, same = same.nextElementSibling) {
    if (same.dataset.kind === e.kind && same.dataset.text === text) break;
  }
  if (same && !(same.dataset.kind === e.kind && same.dataset.text === text)) same = null;
  if (same) {
    const n = Number(same.dataset.count) + 1;
    same.dataset.count = n;
    same.dataset.seq = e.seq;
    same.querySelector('.n').textContent = `#${e.seq}`;
    same.querySelector('.times').textContent = ` ×${n}`;
    $('events').prepend(same);
    return;
  }
  const li = document.createElement('li');
  li.dataset.kind = e.kind;
  li.dataset.seq = e.seq;
  li.dataset.text = text;
  li.dataset.count = 1;
  const n = document.createElement('span');
  n.className = 'n';
  n.textContent = `#${e.seq}`;
  const kind = document.createElement('strong');
  kind.textContent = ` ${e.kind} `;
  const body = document.createElement('span');
  body.textContent = text;
  const times = document.createElement('span');
  times.className = 'times';
  li.append(n, kind, body, times);
  li.hidden = !matchesFilter(e.kind);
  $('events').prepend(li);
}
$('pause-btn').addEventListener('click', () => {
  paused = !paused;
  $('pause-btn').setAttribute('aria-pressed', String(paused));
  $('pause-btn').textContent = paused ? 'Resume (0 new)' : 'Pause';
  if (!paused) {
    for (const e of held.splice(-MAX_ROWS)) showEvent(e);
    held.length = 0;
  }
});

// Why the link is down, as far as a page can tell: a failed WebSocket
// upgrade only says "closed (1006)", so the page asks /healthz: no answer
// at all, an address the proxy refuses, a proxy that cannot store, or one
// that is up and turned the connection away. A refused token comes as its
// own error. Each with what to do.
let tokenRefused = false;
let diagnosing = false;
async function diagnose() {
  if (diagnosing || tokenRefused) return;
  diagnosing = true;
  let text;
  try {
    const res = await fetch(`${location.origin}/healthz`, { cache: 'no-store' });
    if (res.status === 503) text = `The proxy is up but cannot store events: ${(await res.text()).trim()}. Free some disk space (or check NATS); it recovers by itself.`;
    else if (res.status === 403) text = `The proxy refuses this address (${location.host}): add it to allowed_hosts in its configuration.`;
    else if (res.ok) text = 'The proxy answers but turned this connection away (too many connections, or this page is not in its allowed_origins). Retrying.';
    else text = `The proxy answered HTTP ${res.status}. Retrying.`;
  } catch {
    text = `No answer from the proxy at ${location.host}: is it running, and is this its address? Retrying by itself.`;
  }
  diagnosing = false;
  if (state !== 'connected') showWhy(text);
}
function showWhy(text) {
  $('conn-why').textContent = text;
  $('conn-why').hidden = !text;
}

link.on('state', ({ state: s, reason, access }) => {
  if (s === 'connected') { tokenRefused = false; showWhy(''); } else if (s !== 'connecting') diagnose();
  if (state === 'connected' && s !== 'connected') asOf = Date.now();
  if (s === 'connected') asOf = null;
  state = s;
  showFreshness();
  // A hold never outlives the connection: it is not resumed after a reconnect.
  if (s !== 'connected') release(`link ${s}`);
  // The proxy says what this dashboard's token allows: no need to learn it
  // from a refused command.
  if (access) readOnly = access === 'read';
  badge.textContent = s;
  badge.className = `badge ${s}`;
  say(`Connection ${s}`);
  setControls();
  if (s === 'connected') link.testConnection().catch(() => {});
  timeline.enter('browser', s, { reconnect: s === 'reconnecting' });
  if (reason) badge.title = reason;
});
link.on('event', (e) => {
  if (e.kind === 'radio.state') showRadio(e.payload);
  if (e.kind === 'meter.power') showPower(e.payload);
  if (e.kind === 'radio.meter') showStrength(e.payload);
  // Readings are shown in their meters and plots, not listed.
  if (e.kind !== 'meter.power' && e.kind !== 'radio.meter') logEvent(e);
});
// Hardware links by name: where their state and health are shown.
const linkCells = { radio: ['link-state', 'link-health'], meter: ['meter-state', 'meter-health'] };
function showLink(name, l) {
  if (!l || !linkCells[name]) return;
  const [stateCell, healthCell] = linkCells[name];
  $(stateCell).textContent = l.state;
  $(healthCell).textContent = l.health;
  timeline.enter(name, l.state, { reconnect: l.type === 'EVENT_RECONNECT_START' });
  if (name === 'radio') { radioLink = l.state; setControls(); }
}

link.on('snapshot', ({ state: s, restored, asOfMs }) => {
  // A reload shows the station at once: the state the last page stored.
  if (restored && state !== 'connected') { asOf = asOfMs; showFreshness(); }
  showRadio(s['radio.state']);
  showLink('radio', s['link.radio']);
  showLink('meter', s['link.meter']);
  if (s['meter.power']) showPower(s['meter.power'], false);
  if (s['radio.meter']) showStrength(s['radio.meter']);
});
link.on('gap', (g) => toast(`Missed events ${g.from}–${g.to} (${g.reason})`, 'warn'));
link.on('reconnected', (r) => toast(`Reconnected after ${(r.downtimeMs / 1000).toFixed(1)} s`));
link.on('maxAttemptsReached', (m) => toast(`The proxy did not answer ${m.attempts} attempts; still trying every 30 s (or press Retry now)`, 'error'));
$('retry-btn').addEventListener('click', () => link.forceReconnect());
link.on('event', (e) => {
  if (e.kind === 'link.radio' || e.kind === 'link.meter') {
    const name = e.kind.slice(5);
    const label = name === 'radio' ? 'Radio link' : 'Power meter';
    showLink(name, e.payload);
    const t = e.payload.type;
    if (t === 'EVENT_MAX_RETRIES_EXCEEDED') toast(`${label}: gave up reconnecting; press Reconnect`, 'error');
    if (t === 'EVENT_TX_DROP_DETECTED') toast(`TX dropped (${e.payload.context}): reconnecting the radio (fast path)`, 'warn');
    if (t === 'EVENT_POWER_WARNING') toast(`Power warning: ${e.payload.context}`, 'warn');
    if (t === 'EVENT_POWER_CRITICAL') toast(`Power critical: ${e.payload.context}`, 'error');
  }
  if (e.kind === 'watchdog.unkeyed') toast(unkeyedText(e.payload), 'alarm');
});
// watchdog.unkeyed {client_id, reason, transmitted_ms}: the proxy unkeyed the radio on its own.
const UNKEYED = {
  silent: 'The keying dashboard stopped repeating PTT (a frozen tab or a lost network): unkeyed',
  session_ended: 'The keying dashboard disconnected while transmitting: unkeyed',
  max_tx_time: 'Transmit time-out: the transmission reached the maximum time: unkeyed',
  keepalive_lost: 'No PTT keepalive reached the radio for too long: unkeyed',
  max_on_air: 'The radio stayed on the air past the maximum time: unkeyed',
  shutting_down: 'The proxy is shutting down while the radio was transmitting: unkeyed',
  no_keeper_at_start: 'The radio was transmitting with nobody keying it: unkeyed',
  log_gap: 'The proxy lost track of who was keying the radio (a gap in its event log): unkeyed',
};
function unkeyedText({ reason, transmitted_ms: ms } = {}) {
  const text = UNKEYED[reason] || `TX watchdog unkeyed the radio (${reason})`;
  return ms > 0 ? `${text} after ${(ms / 1000).toFixed(1)} s on the air` : text;
}
const matchesFilter = (kind) => kind.includes($('filter').value.trim());
$('filter').addEventListener('input', () => {
  for (const li of $('events').children) li.hidden = !matchesFilter(li.dataset.kind);
});
link.on('rejected', (r) => {
  // A read-only token: say so and disable the controls instead of failing on.
  if (r.reason === 'forbidden') { readOnly = true; setControls(); }
  if (isPttRefusal(r)) pttRefused(r.reason);
  // One toast per reason, counting: a burst is "150 refused: rate_limited".
  else toast(`Command ${r.clientSeq} rejected: ${r.reason}`, 'warn', { key: `rejected:${r.reason}`, counted: (n) => (n === 1 ? `Command ${r.clientSeq} rejected: ${r.reason}` : `${n} refused: ${r.reason.replace('_', ' ')}`) });
});
link.on('error', (e) => {
  if (e.kind === 'unauthorized') {
    tokenRefused = true;
    showWhy('The proxy refused this dashboard\'s token (or it needs one): open the page once as ?token=YOUR_TOKEN; ask the station\'s operator for one.');
  }
  if (e.kind !== 'notSent') toast(`${e.kind}: ${e.message}`, 'error');
});
// The score's uptime term counts the page's own first connection attempt
// (the moments before the first Welcome) as downtime, so a fresh 5 ms
// link scored "fair". Until the link has ever reconnected, that is not a
// link problem: the bar shows the score without it.
const UPTIME_WEIGHT = 0.3; // shared_protocol::quality::WEIGHT_UPTIME
function shownQuality(q) {
  const fresh = link.metrics().reconnects === 0 && state === 'connected';
  return Math.min(1, fresh ? q.score + UPTIME_WEIGHT * (1 - q.uptime) : q.score);
}
link.on('quality', (q) => {
  const score = shownQuality(q);
  $('quality').style.width = `${Math.round(score * 100)}%`;
  $('quality').className = score >= 0.8 ? 'good' : score >= 0.5 ? 'fair' : 'poor';
  $('quality').parentElement.setAttribute('aria-valuenow', score.toFixed(2));
  $('quality').parentElement.setAttribute('aria-valuetext', `${Math.round(score * 100)} percent`);
  qualityChart.push([score]);
});
link.on('latency', (l) => {
  $('latency').textContent = `${l.rttMs} ms`;
  $('latency').className = `latency ${l.rttMs < 100 ? 'good' : l.rttMs < 300 ? 'fair' : 'poor'}`;
  latencyChart.push([Math.max(1, l.rttMs)]);
});

for (const b of document.querySelectorAll('.relink')) {
  b.addEventListener('click', () => link.send('link.reconnect', { link: b.dataset.link }));
}
$('freq-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  link.send('radio.set_freq', { hz: Math.round(Number($('freq-in').value) * 1000) });
});
$('mode-in').addEventListener('change', () => link.send('radio.set_mode', { mode: $('mode-in').value }));
// PTT ("Hold to transmit"): held with the pointer (mouse, touch, pen) or
// with Space while the button has focus. PTT is volatile with a 2 s
// deadline; never queued, never replayed. While held, PTT-on is repeated
// every second: the proxy's TX watchdog unkeys a transmitter whose client
// stops repeating it (a frozen tab, a dropped network), so a lost "off" can
// never leave the radio keyed. Every way the hold can end (letting go, the
// pointer leaving or being cancelled, focus or the page going away, the link
// dropping) goes through release(), which is safe to call any number of times.
const key = (on) => link.send('radio.ptt', { on }, { delivery: 'volatile', ttlMs: 2000 });
const pttBtn = $('ptt-btn');

function press(via) {
  if (hold || pttBtn.disabled) return;
  hold = { via, keepalive: setInterval(() => key(true), 1000), refused: null };
  pttToasted = false;
  pttBtn.setAttribute('aria-pressed', 'true');
  key(true);
  showUnkey();
}

/** Ends the hold, if there is one: stops the keepalive and sends PTT off. */
function release(reason) {
  if (!hold) return false;
  clearInterval(hold.keepalive);
  hold = null;
  pttBtn.setAttribute('aria-pressed', 'false');
  pttBtn.classList.remove('refused');
  pttBtn.dataset.released = reason;
  key(false);
  releasedAt = performance.now();
  setTimeout(showUnkey, UNKEY_GRACE_MS + 10);
  return true;
}
$('unkey-btn').addEventListener('click', () => key(false));

// A refused PTT. The rejection names only the publish's number, so: a
// `tx_timeout` (the proxy's time-out timer locked this client out) is always
// one, and so is `expired`, as PTT is the only deadline this page sends.
const isPttRefusal = (r) => (r.kind ? r.kind === 'radio.ptt' : r.reason === 'tx_timeout' || r.reason === 'expired');
let pttToasted = false; // one toast per press, not one per refused repeat

/** The proxy refused a PTT: stop repeating it until the button is let go, and say so once. */
function pttRefused(reason) {
  if (hold && !hold.refused) {
    hold.refused = reason;
    clearInterval(hold.keepalive);
    pttBtn.classList.add('refused');
  }
  if (pttToasted) return;
  pttToasted = true;
  toast(reason === 'tx_timeout' ? 'Transmit time-out: release PTT, then key again' : `PTT refused: ${reason}`, 'warn');
}

const isSpace = (ev) => ev.code === 'Space' || ev.key === ' ';
pttBtn.addEventListener('pointerdown', (ev) => { if (ev.button === 0) press('pointer'); });
pttBtn.addEventListener('pointerleave', () => { if (hold?.via === 'pointer') release('pointer left the button'); });
// Let go anywhere (or the browser takes the pointer over, e.g. for a
// scroll): on the window too, as a disabled button may not see it.
for (const type of ['pointerup', 'pointercancel']) {
  window.addEventListener(type, () => { if (hold?.via === 'pointer') release(type); }, true);
}
// A long press on a touch screen opens no menu (it would cancel the pointer).
pttBtn.addEventListener('contextmenu', (ev) => ev.preventDefault());
pttBtn.addEventListener('keydown', (ev) => {
  // Enter does nothing: a keyed button must never latch.
  if (!isSpace(ev) || ev.ctrlKey || ev.altKey || ev.metaKey) return;
  ev.preventDefault(); // no scrolling, no click
  if (!ev.repeat) press('space'); // a key's auto-repeat keys nothing: only a fresh press does
});
// Space let go wherever focus went by then, and whatever modifier is down by then.
document.addEventListener('keyup', (ev) => {
  if (!isSpace(ev) || hold?.via !== 'space') return;
  ev.preventDefault();
  release('space released');
}, true);
pttBtn.addEventListener('blur', () => { if (hold?.via === 'space') release('focus left the button'); });
window.addEventListener('blur', () => release('window lost focus'));
document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') release('page hidden'); });
window.addEventListener('pagehide', () => release('page hidden'));

document.addEventListener('keydown', (ev) => {
  if (ev.ctrlKey && ev.shiftKey && ev.key.toLowerCase() === 'd') {
    ev.preventDefault();
    $('debug').hidden = !$('debug').hidden;
    if (!$('debug').hidden) showMetrics();
  }
});
// Network tests, each with a progress bar and a summary.
const progress = $('test-progress');
function report(text) { $('test-result').textContent = text; }

// The throughput test measures the link, not the proxy's publish limit and
// not everyone's log: it is round trips (Ping/Pong, which the proxy answers
// at once, stores nowhere and does not rate-limit), one after another, as
// fast as the link carries them. Publishing test events instead would be
// capped at max_publish_per_sec (50/s by default), written into every
// dashboard's log and snapshot, and refused in bursts.
let testing = false;
async function throughputTest(n = 200) {
  if (testing) return;
  testing = true;
  const rtts = [];
  let failed = 0;
  progress.hidden = false;
  const t0 = performance.now();
  for (let i = 0; i < n && failed < 5; i++) {
    try { rtts.push(await link.testConnection()); } catch { failed++; }
    progress.value = (i + 1) / n;
  }
  const ms = performance.now() - t0;
  progress.hidden = true;
  testing = false;
  const sorted = [...rtts].sort((a, b) => a - b);
  const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
  report(`Throughput: ${rtts.length} of ${n} round trips in ${ms.toFixed(0)} ms (${(rtts.length / (ms / 1000)).toFixed(0)} round trips/s; RTT p50 ${pct(0.5)} ms, p95 ${pct(0.95)} ms${failed ? `; ${failed} failed` : ''})`);
  if (failed) toast(`Throughput test: ${failed} round trips failed`, 'warn', { key: 'throughput' });
}

async function stabilityTest(durationMs = Number(params.get('stabilityMs') || 30_000)) {
  const rtts = [];
  let failed = 0;
  const reconnectsBefore = link.metrics().reconnects;
  progress.hidden = false;
  const t0 = performance.now();
  while (performance.now() - t0 < durationMs) {
    try { rtts.push(await link.testConnection()); } catch { failed++; }
    progress.value = Math.min(1, (performance.now() - t0) / durationMs);
    report(`Stability test running: ${rtts.length} pings, ${failed} failed`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  progress.hidden = true;
  const avg = rtts.length ? rtts.reduce((a, b) => a + b, 0) / rtts.length : NaN;
  report(`Stability (${(durationMs / 1000).toFixed(0)} s): ${rtts.length} pings ok, ${failed} failed, RTT min ${Math.min(...rtts)} / avg ${avg.toFixed(1)} / max ${Math.max(...rtts)} ms, ${link.metrics().reconnects - reconnectsBefore} reconnects`);
}

$('debug').addEventListener('click', async (ev) => {
  const act = ev.target.dataset?.act;
  if (act === 'throughput') throughputTest();
  if (act === 'stability') stabilityTest();
  if (act === 'reconnect') link.forceReconnect();
  if (act === 'disconnect') link.simulateDisconnect(5000);
  if (act === 'clear') link.clearBuffer();
  if (act === 'latency') link.testConnection().then((ms) => { report(`Latency: ${ms} ms round trip`); toast(`Round trip ${ms} ms`); }, (e) => toast(String(e), 'error'));
  if (act === 'export') {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(link.exportLogs());
    a.download = 'station-link-logs.json';
    a.click();
  }
});
// The debug panel's metrics: a table to read, the raw JSON behind a toggle.
const METRIC_ROWS = [
  ['state', 'State'], ['reconnects', 'Reconnects'], ['connected_for_ms', 'Connected for', 'ms'],
  ['rtt_last_ms', 'Round trip, last', 'ms'], ['rtt_p50_ms', 'Round trip, p50', 'ms'], ['rtt_p95_ms', 'Round trip, p95', 'ms'],
  ['quality', 'Quality score'], ['quality_stability', '… stability'], ['quality_ack_rate', '… acknowledged'],
  ['quality_uptime', '… uptime'], ['quality_activity', '… activity'],
  ['last_seq', 'Last event'], ['delivered', 'Events delivered'], ['duplicates', 'Duplicates dropped'], ['gaps', 'Gaps'],
  ['outbox', 'Outbox'], ['outbox_evicted', 'Outbox evicted'], ['frames_in', 'Frames in'], ['frames_out', 'Frames out'],
  ['bytes_in', 'Bytes in'], ['bytes_out', 'Bytes out'], ['pings_sent', 'Pings sent'], ['pongs_received', 'Pongs received'],
];
function metricText(v, unit) {
  if (v === null || v === undefined) return '–';
  if (unit === 'ms' && v >= 10_000) return `${(v / 1000).toFixed(0)} s`;
  if (typeof v === 'number' && !Number.isInteger(v)) return v.toFixed(2);
  return unit ? `${v} ${unit}` : String(v);
}
function showMetrics() {
  const m = link.metrics();
  const body = $('metrics-table').tBodies[0];
  body.replaceChildren(...METRIC_ROWS.map(([key, name, unit]) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = name;
    const td = document.createElement('td');
    td.textContent = metricText(m[key], unit);
    td.dataset.metric = key;
    tr.append(th, td);
    return tr;
  }));
  $('metrics').textContent = JSON.stringify(m, null, 1);
}
setInterval(() => { if (!$('debug').hidden) showMetrics(); }, 1000);
setControls();
showFreshness();
window.dashboardLink = link;
