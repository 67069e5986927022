// The station dashboard: the first user of the station-link npm package.
import init, { Link } from './pkg/station_link.js';

const $ = (id) => document.getElementById(id);
const badge = $('badge');
const say = (text) => { $('live').textContent = text; };

function toast(text, kind = 'info') {
  const t = document.createElement('div');
  t.className = `toast ${kind}`;
  t.textContent = text;
  $('toasts').append(t);
  setTimeout(() => t.remove(), 5000);
}

await init();
const link = new Link(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`, { storagePrefix: 'dashboard' });
let state = 'disconnected';
let ptt = false;
const power = [];

function setControls() {
  const why = state === 'connected' ? '' : 'Controls are disabled while the link is not connected.';
  for (const el of document.querySelectorAll('#freq-form input, #freq-form button, #mode-in, #ptt-btn')) el.disabled = !!why;
  $('controls-why').textContent = why;
}

function showRadio(r) {
  if (!r) return;
  $('freq').textContent = (r.freq_hz / 1e6).toFixed(6);
  $('mode').textContent = r.mode;
  $('mode-in').value = r.mode;
  ptt = !!r.ptt;
  $('ptt').textContent = ptt ? 'TX' : 'RX';
  $('ptt').className = `ptt ${ptt ? 'on' : 'off'}`;
}

function showPower(w) {
  $('watts').textContent = Number(w).toFixed(1);
  power.push(Number(w));
  if (power.length > 60) power.shift();
  const c = $('spark').getContext('2d');
  const { width, height } = c.canvas;
  c.clearRect(0, 0, width, height);
  const max = Math.max(10, ...power);
  c.beginPath();
  power.forEach((v, i) => c.lineTo((i / 59) * width, height - (v / max) * (height - 4) - 2));
  c.strokeStyle = '#3b82f6';
  c.lineWidth = 2;
  c.stroke();
}

function logEvent(e) {
  const li = document.createElement('li');
  li.textContent = `#${e.seq} ${e.kind} ${JSON.stringify(e.payload)}`;
  $('events').prepend(li);
  while ($('events').children.length > 200) $('events').lastChild.remove();
}

link.on('state', ({ state: s, reason }) => {
  state = s;
  badge.textContent = s;
  badge.className = `badge ${s}`;
  say(`Connection ${s}`);
  setControls();
  if (s === 'connected') link.testConnection().catch(() => {});
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${s}: ${reason}`;
  $('timeline').prepend(li);
});
link.on('event', (e) => {
  if (e.kind === 'radio.state') showRadio(e.payload);
  if (e.kind === 'meter.power') showPower(e.payload.watts);
  if (e.kind !== 'meter.power') logEvent(e);
});
link.on('snapshot', ({ state: s }) => {
  showRadio(s['radio.state']);
  if (s['meter.power']) showPower(s['meter.power'].watts);
});
link.on('gap', (g) => toast(`Missed events ${g.from}–${g.to} (${g.reason})`, 'warn'));
link.on('reconnected', (r) => toast(`Reconnected after ${(r.downtimeMs / 1000).toFixed(1)} s`));
link.on('maxAttemptsReached', (m) => toast(`Gave up after ${m.attempts} attempts; reload or press Force reconnect`, 'error'));
link.on('event', (e) => {
  if (e.kind === 'link.radio') {
    $('link-state').textContent = e.payload.state;
    $('link-health').textContent = e.payload.health;
    if (e.payload.type === 'EVENT_MAX_RETRIES_EXCEEDED') toast('Radio link: gave up reconnecting', 'error');
    if (e.payload.type === 'EVENT_TX_DROP_DETECTED') toast('TX dropped: reconnecting the radio (fast path)', 'warn');
  }
  if (e.kind === 'watchdog.unkeyed') toast(`TX watchdog unkeyed the radio (${e.payload.reason})`, 'warn');
});
link.on('rejected', (r) => toast(`Command ${r.clientSeq} rejected: ${r.reason}`, 'warn'));
link.on('error', (e) => { if (e.kind !== 'notSent') toast(`${e.kind}: ${e.message}`, 'error'); });
link.on('quality', (q) => {
  $('quality').style.width = `${Math.round(q.score * 100)}%`;
  $('quality').className = q.score >= 0.8 ? 'good' : q.score >= 0.5 ? 'fair' : 'poor';
  $('quality').parentElement.setAttribute('aria-valuenow', q.score.toFixed(2));
});
link.on('latency', (l) => {
  $('latency').textContent = `${l.rttMs} ms`;
  $('latency').className = `latency ${l.rttMs < 100 ? 'good' : l.rttMs < 300 ? 'fair' : 'poor'}`;
});

$('freq-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  link.send('radio.set_freq', { hz: Math.round(Number($('freq-in').value) * 1000) });
});
$('mode-in').addEventListener('change', () => link.send('radio.set_mode', { mode: $('mode-in').value }));
// PTT: volatile with a 2 s deadline; never queued, never replayed.
const key = (on) => link.send('radio.ptt', { on }, { delivery: 'volatile', ttlMs: 2000 });
// While held, PTT-on is repeated every second: the proxy's TX watchdog
// unkeys a transmitter whose client stops repeating it (a frozen tab, a
// dropped network), so a lost "off" can never leave the radio keyed.
const btn = $('ptt-btn');
let keepalive = null;
btn.addEventListener('pointerdown', () => {
  btn.setAttribute('aria-pressed', 'true');
  key(true);
  keepalive = setInterval(() => key(true), 1000);
});
for (const ev of ['pointerup', 'pointerleave']) btn.addEventListener(ev, () => {
  if (btn.getAttribute('aria-pressed') !== 'true') return;
  btn.setAttribute('aria-pressed', 'false');
  clearInterval(keepalive);
  key(false);
});

document.addEventListener('keydown', (ev) => {
  if (ev.ctrlKey && ev.shiftKey && ev.key.toLowerCase() === 'd') {
    ev.preventDefault();
    $('debug').hidden = !$('debug').hidden;
  }
});
$('debug').addEventListener('click', async (ev) => {
  const act = ev.target.dataset?.act;
  if (act === 'reconnect') link.forceReconnect();
  if (act === 'disconnect') link.simulateDisconnect(5000);
  if (act === 'clear') link.clearBuffer();
  if (act === 'latency') link.testConnection().then((ms) => toast(`Round trip ${ms} ms`), (e) => toast(String(e), 'error'));
  if (act === 'export') {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(link.exportLogs());
    a.download = 'station-link-logs.json';
    a.click();
  }
});
setInterval(() => { if (!$('debug').hidden) $('metrics').textContent = JSON.stringify(link.metrics(), null, 1); }, 1000);
setControls();
window.dashboardLink = link;
