// Decode-and-dispatch cost per event in the browser: the packed npm package
// in Debian's Chromium, fed 10,000 Event frames at 10,000 events/s through a
// stand-in WebSocket (so only the client's own work is timed: MessagePack
// decode, dedup and ordering, acks, the call to the `event` listener),
// against a plain JSON.parse of the same events dispatched to the same
// listener, in the same page. Prints the ratio; `--json FILE` saves it.
//
//   cargo xtask pkg && (cd tests/browser && npm ci) && node bench/browser/decode.js
//
// `--throttle 4`: the page's CPU throttled 4x (DevTools
// `Emulation.setCPUThrottlingRate`), a phone stand-in. `--profile FILE`: a
// CPU profile (50 µs sampling) saved for DevTools, and the functions with
// the most self time in the timed station-link part printed (names need a
// build that keeps them). `STATION_LINK_PKG=DIR` measures another build.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { installPackage, launch, serveDir } from '../../tests/browser/harness.js';

const arg = (name) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const throttle = Number(arg('--throttle') ?? 1);
const profileFile = arg('--profile');

// The functions with the most self time in a CPU profile of the timed part
// of the station-link rounds (samples under `wasmBatch`,
// and the garbage collection right after one); `--profile FILE` also saves
// the whole profile, for DevTools.
function printProfile({ nodes, samples, timeDeltas }) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of nodes) for (const c of n.children || []) parent.set(c, n.id);
  const timed = (id) => {
    for (let n = id; n !== undefined; n = parent.get(n)) {
      if (byId.get(n).callFrame.functionName === 'wasmBatch') return true;
    }
    return false;
  };
  const self = new Map();
  let previous = false;
  samples.forEach((id, i) => {
    const f = byId.get(id).callFrame;
    const gc = f.functionName === '(garbage collector)';
    const counted = timed(id) || (gc && previous);
    previous = counted;
    if (!counted) return;
    const key = `${f.functionName || '(anonymous)'} ${f.url.split('/').pop()}:${f.lineNumber}`;
    self.set(key, (self.get(key) || 0) + (timeDeltas[i] || 0));
  });
  const total = [...self.values()].reduce((a, t) => a + t, 0);
  console.log(`profile: ${(total / 1000).toFixed(0)} ms in the timed part of the station-link rounds; top self time:`);
  for (const [k, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
    console.log(`  ${(100 * t / total).toFixed(1).padStart(5)} %  ${k}`);
  }
}

const dir = installPackage();
const page = `<!doctype html><meta charset="utf-8"><script type="module">
// A minimal MessagePack writer for the frames (maps, strings, uints, floats).
function mp(v, out) {
  if (typeof v === 'string') { const b = new TextEncoder().encode(v); if (b.length < 32) out.push(0xa0 | b.length); else out.push(0xd9, b.length); out.push(...b); }
  else if (typeof v === 'number' && Number.isInteger(v) && v >= 0) {
    if (v < 128) out.push(v); else if (v < 65536) out.push(0xcd, v >> 8, v & 255);
    else if (v < 2 ** 32) out.push(0xce, (v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
    else { const hi = Math.floor(v / 2 ** 32), lo = v >>> 0; out.push(0xcf, (hi >>> 24) & 255, (hi >>> 16) & 255, (hi >>> 8) & 255, hi & 255, (lo >>> 24) & 255, (lo >>> 16) & 255, (lo >>> 8) & 255, lo & 255); }
  } else if (typeof v === 'number') { const d = new DataView(new ArrayBuffer(8)); d.setFloat64(0, v); out.push(0xcb, ...new Uint8Array(d.buffer)); }
  else if (typeof v === 'boolean') out.push(v ? 0xc3 : 0xc2);
  else if (Array.isArray(v)) { out.push(0x90 | v.length); v.forEach((x) => mp(x, out)); }
  else { const ks = Object.keys(v); out.push(0x80 | ks.length); for (const k of ks) { mp(k, out); mp(v[k], out); } }
  return out;
}
const frame = (v) => new Uint8Array(mp([1, v], [])).buffer;

class StandIn {
  constructor() { window.socket = this; this.sent = 0; setTimeout(() => this.onopen?.({}), 0); }
  set binaryType(_) {}
  send() { this.sent++; }
  close() {}
}
window.WebSocket = StandIn;

import init, { Link } from './node_modules/station-link/station_link.js';
await init();
const N = 10000;
const t0 = Date.now();
const event = (seq) => ({ seq, kind: 'meter.power', ts_ms: t0 + seq, payload: { watts: 97.25, swr: 1.12, level: 'normal', transmitting: true, n: seq } });

async function paced(process) {
  // 100 events every 10 ms: 10,000 events/s; busy time summed.
  let busy = 0;
  for (let i = 0; i < N; i += 100) {
    const start = performance.now();
    process(i, Math.min(i + 100, N));
    busy += performance.now() - start;
    await new Promise((r) => setTimeout(r, 10));
  }
  return busy * 1000 / N; // µs per event
}

async function wasmRun(round) {
  let seen = 0;
  const link = new Link('ws://bench/ws', { consoleName: null, shareTabs: false, storagePrefix: 'bench-' + round });
  link.on('event', () => { seen++; });
  await new Promise((r) => setTimeout(r, 20));
  const s = window.socket;
  s.onmessage({ data: frame({ Welcome: { session: 'b', epoch: 7, head_seq: 0, resumed: false, heartbeat_ms: 30000,
    limits: { max_frame_bytes: 65536, max_publish_per_sec: 50, max_behind: 100000, retention_ms: 300000 }, access: 'control' } }) });
  const frames = Array.from({ length: N }, (_, i) => frame({ Event: event(i + 1) }));
  const us = await paced(function wasmBatch(a, b) { for (let i = a; i < b; i++) s.onmessage({ data: frames[i] }); });
  link.close();
  if (seen !== N) throw new Error('wasm client delivered ' + seen);
  return us;
}

async function jsonRun() {
  let seen = 0;
  const listener = () => { seen++; };
  const texts = Array.from({ length: N }, (_, i) => JSON.stringify(event(i + 1)));
  const us = await paced((a, b) => { for (let i = a; i < b; i++) listener(JSON.parse(texts[i])); });
  if (seen !== N) throw new Error('json delivered ' + seen);
  return us;
}

const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const wasm = [], json = [];
for (let round = 0; round < 5; round++) { json.push(await jsonRun()); wasm.push(await wasmRun(round)); }
window.result = { wasm_us_per_event: median(wasm), json_us_per_event: median(json) };
</script>`;
writeFileSync(join(dir, 'decode.html'), page);

const server = await serveDir(dir);
const browser = await launch();
try {
  const p = await browser.newPage();
  p.on('pageerror', (e) => console.error('page error:', e.message));
  const cdp = await p.context().newCDPSession(p);
  if (throttle !== 1) await cdp.send('Emulation.setCPUThrottlingRate', { rate: throttle });
  if (profileFile) {
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 50 });
    await cdp.send('Profiler.start');
  }
  await p.goto(`http://127.0.0.1:${server.address().port}/decode.html`);
  await p.waitForFunction(() => window.result, null, { timeout: 600_000, polling: 100 });
  const r = await p.evaluate(() => window.result);
  if (profileFile) {
    const { profile } = await cdp.send('Profiler.stop');
    writeFileSync(profileFile, JSON.stringify(profile));
    printProfile(profile);
  }
  r.throttle = throttle;
  r.ratio = r.wasm_us_per_event / r.json_us_per_event;
  console.log(`decode and dispatch, 10,000 events at 10,000 events/s, median of 5 rounds${throttle !== 1 ? `, CPU throttled ${throttle}x` : ''}:`);
  console.log(`  station-link (MessagePack, dedup, ordering, acks): ${r.wasm_us_per_event.toFixed(2)} µs per event`);
  console.log(`  JSON.parse + the same listener:                    ${r.json_us_per_event.toFixed(2)} µs per event`);
  console.log(`  ratio: ${r.ratio.toFixed(2)}x`);
  if (arg('--json')) writeFileSync(arg('--json'), JSON.stringify(r, null, 2) + '\n');
} finally {
  await browser.close();
  server.close();
}
