// What the application gets from the frames the proxy sends, value for
// value: the package in Chromium, fed hand-written MessagePack frames
// through a stand-in WebSocket (so every form the wire allows can be sent:
// 64-bit integers, f32, ext, keys that are not strings), against the values the Rust conversion gave before the JS reader
// (wasm-client/js/delivered.js) replaced it. The same test passes against a
// package built before that change (STATION_LINK_PKG=...), and bad frames
// (too deep, cut short, a string that is not UTF-8: the frame decoder
// refuses those) are an `error` event, never an exception.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { installPackage, launch, serveDir, until } from './harness.js';

// ---------------------------------------------------------------- frames

// A MessagePack writer with every form spelled out: `{ $u64 }`, `{ $i64 }`
// (BigInt), `{ $f32 }`, `{ $ext: [type, bytes] }`, `{ $str: bytes }` (any
// bytes as a string), `{ $map: [[key, value], ...] }` (any keys), Uint8Array
// (binary); plain objects are maps with string keys.
function mp(v, out = []) {
  const be = (marker, x, width) => {
    out.push(marker);
    for (let i = width - 1; i >= 0; i--) out.push(Number((BigInt(x) >> BigInt(8 * i)) & 255n));
  };
  const len = (n, fix, fixMax, m8, m16) => {
    if (fix !== null && n < fixMax) out.push(fix | n);
    else if (m8 !== null && n < 256) be(m8, n, 1);
    else if (n < 65536) be(m16, n, 2);
    else be(m16 + 1, n, 4);
  };
  const str = (bytes) => { len(bytes.length, 0xa0, 32, 0xd9, 0xda); out.push(...bytes); };
  if (v === null) out.push(0xc0);
  else if (typeof v === 'boolean') out.push(v ? 0xc3 : 0xc2);
  else if (typeof v === 'string') str(new TextEncoder().encode(v));
  else if (typeof v === 'number' && Number.isSafeInteger(v) && !Object.is(v, -0)) {
    if (v >= 0) {
      if (v < 128) out.push(v); else if (v < 256) be(0xcc, v, 1); else if (v < 65536) be(0xcd, v, 2);
      else if (v < 2 ** 32) be(0xce, v, 4); else be(0xcf, v, 8);
    } else if (v >= -32) out.push(v & 255);
    else if (v >= -128) be(0xd0, BigInt.asUintN(8, BigInt(v)), 1);
    else if (v >= -32768) be(0xd1, BigInt.asUintN(16, BigInt(v)), 2);
    else if (v >= -(2 ** 31)) be(0xd2, BigInt.asUintN(32, BigInt(v)), 4);
    else be(0xd3, BigInt.asUintN(64, BigInt(v)), 8);
  } else if (typeof v === 'number') {
    const d = new DataView(new ArrayBuffer(8)); d.setFloat64(0, v); out.push(0xcb, ...new Uint8Array(d.buffer));
  } else if (v instanceof Uint8Array) { len(v.length, null, 0, 0xc4, 0xc5); out.push(...v); }
  else if (Array.isArray(v)) { len(v.length, 0x90, 16, null, 0xdc); v.forEach((x) => mp(x, out)); }
  else if ('$u64' in v) be(0xcf, v.$u64, 8);
  else if ('$i64' in v) be(0xd3, BigInt.asUintN(64, v.$i64), 8);
  else if ('$f32' in v) { const d = new DataView(new ArrayBuffer(4)); d.setFloat32(0, v.$f32); out.push(0xca, ...new Uint8Array(d.buffer)); }
  else if ('$str' in v) str(v.$str);
  else if ('$ext' in v) {
    const [type, data] = v.$ext;
    const fixed = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[data.length];
    if (fixed) out.push(fixed); else len(data.length, null, 0, 0xc7, 0xc8);
    out.push(type, ...data);
  } else if ('$map' in v) { len(v.$map.length, 0x80, 16, null, 0xde); for (const [k, x] of v.$map) { mp(k, out); mp(x, out); } }
  else { const ks = Object.keys(v); len(ks.length, 0x80, 16, null, 0xde); for (const k of ks) { mp(k, out); mp(v[k], out); } }
  return out;
}
const frame = (v) => mp([1, v]);
const event = (seq, kind, payload) => frame({ Event: { seq, kind, ts_ms: 1_796_000_000_000 + seq, payload } });
const bytes = (...b) => new Uint8Array(b);
const nest = (depth) => (depth === 0 ? 1 : [nest(depth - 1)]);

// ---------------------------------------------------------------- payloads
// [name, payload as sent, the value the application got from the Rust
// conversion]. Integers become the double nearest them; a map's keys become
// what JS makes of them as property keys.

const cases = [
  ['scalars', [null, true, false, 0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1],
    [null, true, false, 0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1]],
  ['big integers', [{ $u64: 2n ** 64n - 1n }, { $u64: 2n ** 53n + 1n }, { $u64: 2n ** 53n + 3n }, { $u64: 1_796_000_000_123n },
    { $i64: -(2n ** 63n) }, { $i64: -(2n ** 63n) + 1n }, { $i64: -(2n ** 53n) - 1n }, { $i64: -(2n ** 40n) - 5n }, { $i64: -(2n ** 32n) - 1n }],
    [2 ** 64, 2 ** 53, 2 ** 53 + 4, 1_796_000_000_123, -(2 ** 63), -(2 ** 63), -(2 ** 53), -(2 ** 40) - 5, -(2 ** 32) - 1]],
  ['floats', [1.5, -0, 0.1, 1e300, -Infinity, NaN, { $f32: 0.1 }, { $f32: -2.5 }, { $f32: Infinity }, { $f32: 3e38 }],
    [1.5, -0, 0.1, 1e300, -Infinity, NaN, Math.fround(0.1), -2.5, Infinity, Math.fround(3e38)]],
  ['strings', ['', 'a', 'héllo', 'ж', '😀 wide', '\uFEFFbom kept', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(300), 'long non-ASCII: ' + 'é'.repeat(40), 'a\u0000b'],
    ['', 'a', 'héllo', 'ж', '😀 wide', '\uFEFFbom kept', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(300), 'long non-ASCII: ' + 'é'.repeat(40), 'a\u0000b']],
  ['binary and ext', [bytes(), bytes(1, 2, 3), new Uint8Array(300).fill(7), { $ext: [5, [9]] }, { $ext: [-1 & 255, [1, 2]] }, { $ext: [1, [1, 2, 3, 4]] }, { $ext: [2, new Array(8).fill(8)] }, { $ext: [3, new Array(16).fill(6)] }, { $ext: [4, [1, 2, 3]] }, { $ext: [4, []] }],
    [bytes(), bytes(1, 2, 3), new Uint8Array(300).fill(7), bytes(9), bytes(1, 2), bytes(1, 2, 3, 4), new Uint8Array(8).fill(8), new Uint8Array(16).fill(6), bytes(1, 2, 3), bytes()]],
  ['nested maps and arrays', { a: { b: { c: [1, { d: [null, [], {}] }] } }, list: [[1, [2, [3]]]], empty: {} },
    { a: { b: { c: [1, { d: [null, [], {}] }] } }, list: [[1, [2, [3]]]], empty: {} }],
  ['keys that are not strings', { $map: [[1, 'one'], [-7, 'minus'], [1.5, 'float'], [null, 'nil'], [true, 't'], [bytes(1, 2), 'bin'], [[1, 'a'], 'array'], [{ k: 1 }, 'map'], [{ $u64: 2n ** 64n - 1n }, 'big'], ['1', 'string one wins']] },
    { 1: 'string one wins', '-7': 'minus', 1.5: 'float', null: 'nil', true: 't', '1,2': 'bin', '1,a': 'array', '[object Object]': 'map', 18446744073709552000: 'big' }],
  ['long and repeated keys', { $map: [['k'.repeat(40), 1], ['ключ', 2], ['dup', 1], ['dup', 2], ['constructor', 3], ['toString', 4], ['hasOwnProperty', 5]] },
    { ['k'.repeat(40)]: 1, 'ключ': 2, dup: 2, constructor: 3, toString: 4, hasOwnProperty: 5 }],
  ['a map of 20 entries and an array of 20', { $map: Array.from({ length: 20 }, (_, i) => [`key${i}`, Array.from({ length: 20 }, (_, j) => i * j)]) },
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`key${i}`, Array.from({ length: 20 }, (_, j) => i * j)]))],
  ['32 levels deep (the limit)', nest(32), nest(32)],
  ['a plain number, a string, nil', 42, 42],
];

// ---------------------------------------------------------------- the page

// A value as JSON that keeps what JSON would lose (Uint8Array, -0, NaN,
// Infinity, undefined, a prototype set by a `__proto__` key, key order).
const tagSource = `function tag(v) {
  if (v === undefined) return { $undefined: true };
  if (typeof v === 'number') return Object.is(v, -0) ? { $num: '-0' } : Number.isFinite(v) ? v : { $num: String(v) };
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Uint8Array) return { $bytes: [...v], $own: v.byteOffset === 0 && v.byteLength === v.buffer.byteLength };
  if (Array.isArray(v)) return v.map(tag);
  const proto = Object.getPrototypeOf(v);
  return { $entries: Object.keys(v).map((k) => [k, tag(v[k])]), ...(proto === Object.prototype ? {} : { $proto: proto === null ? null : tag(proto) }) };
}`;
// eslint-disable-next-line no-new-func
const tag = new Function(`${tagSource}; return tag;`)();

let dir;
let server;
let browser;
let page;

before(async () => {
  dir = installPackage();
  writeFileSync(join(dir, 'decode.html'), `<!doctype html><meta charset="utf-8"><script type="module">
${tagSource}
window.tag = tag;
class StandIn {
  constructor() { window.socket = this; this.closed = []; setTimeout(() => this.onopen?.({}), 0); }
  set binaryType(_) {}
  send() {}
  close(code, reason) { this.closed.push([code, reason]); }
}
window.WebSocket = StandIn;
import init, { Link } from './node_modules/station-link/station_link.js';
await init();
window.start = async (welcome) => {
  window.got = { event: [], gap: [], snapshot: [], error: [] };
  window.link?.close();
  const link = window.link = new Link('ws://stand-in/ws', { consoleName: null, shareTabs: false, storagePrefix: 'decode-' + Math.random() });
  for (const name of Object.keys(got)) link.on(name, (v) => got[name].push(v));
  await new Promise((r) => setTimeout(r, 20));
  window.feed(welcome);
};
window.feed = (bytes) => { window.socket.onmessage({ data: new Uint8Array(bytes).buffer }); };
window.ready = true;
</script>`);
  server = await serveDir(dir);
  browser = await launch();
  page = await browser.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  await page.goto(`http://127.0.0.1:${server.address().port}/decode.html`);
  await until(page, () => window.ready);
});

after(async () => {
  await browser?.close();
  server?.close();
});

const welcome = frame({ Welcome: { session: 's', epoch: 7, head_seq: 0, resumed: false, heartbeat_ms: 30000,
  limits: { max_frame_bytes: 65536, max_publish_per_sec: 50, max_behind: 100000, retention_ms: 300000 }, access: 'control' } });

test('every payload form reaches the event listener as the Rust conversion made it', async () => {
  await page.evaluate((w) => window.start(w), welcome);
  const frames = cases.map(([, payload], i) => event(i + 1, `kind.${i}`, payload));
  await page.evaluate((fs) => fs.forEach(window.feed), frames);
  await until(page, (n) => window.got.event.length === n, cases.length);
  const got = await page.evaluate(() => window.got.event.map(tag));
  assert.deepEqual(await page.evaluate(() => window.got.error), []);
  cases.forEach(([name, , expected], i) => {
    assert.deepEqual(got[i], tag({ seq: i + 1, kind: `kind.${i}`, tsMs: 1_796_000_000_000 + i + 1, payload: expected }), name);
  });
  assert.deepEqual(page.errors, []);
});

test('a `__proto__` key sets the prototype, as Reflect.set did, and nothing else', async () => {
  await page.evaluate((w) => window.start(w), welcome);
  await page.evaluate((f) => window.feed(f), event(1, 'proto', { $map: [['__proto__', { inherited: 1 }], ['own', 2], ['a', { $map: [['__proto__', 'ignored'], ['b', 1]] }], ['c', { $map: [['__proto__', null]] }]] }));
  await until(page, () => window.got.event.length === 1);
  const [e] = await page.evaluate(() => window.got.event.map(tag));
  assert.deepEqual(e.$entries[3][1], {
    $entries: [['own', 2], ['a', { $entries: [['b', 1]] }], ['c', { $entries: [], $proto: null }]],
    $proto: { $entries: [['inherited', 1]] },
  });
  assert.equal(await page.evaluate(() => ({}).inherited), undefined, 'Object.prototype untouched');
});

test('gaps, snapshots and the buffer keep their shapes', async () => {
  await page.evaluate((w) => window.start(w), welcome);
  await page.evaluate((fs) => fs.forEach(window.feed), [
    frame({ Gap: { from: 1, to: 5, reason: 'retention' } }),
    frame({ Snapshot: { upto: 9, state: { 'meter.power': { watts: 97.25, swr: 1.12 }, 'radio.freq': { $u64: 2n ** 60n }, 'z.bin': bytes(1, 2) } } }),
    event(10, 'after', { n: 10 }),
  ]);
  await until(page, () => window.got.event.length === 1);
  const got = await page.evaluate(() => ({ gap: window.got.gap.map(tag), snapshot: window.got.snapshot.map(tag), event: window.got.event.map(tag) }));
  assert.deepEqual(got.gap, [tag({ from: 1, to: 5, reason: 'retention' })]);
  assert.deepEqual(got.snapshot, [tag({ upto: 9, state: { 'meter.power': { watts: 97.25, swr: 1.12 }, 'radio.freq': 2 ** 60, 'z.bin': bytes(1, 2) } })]);
  assert.deepEqual(got.event, [tag({ seq: 10, kind: 'after', tsMs: 1_796_000_000_010, payload: { n: 10 } })]);
  // A reliable send waiting while the socket is gone: buffer() shows its payload.
  const buffered = await page.evaluate(() => {
    window.link.close();
    window.link.send('note', { a: [1, 2.5, 'x', new Uint8Array([3])], b: { c: null } });
    return window.link.buffer().map(tag);
  });
  assert.deepEqual(buffered, [tag({ client_seq: buffered[0].$entries[0][1], kind: 'note', payload: { a: [1, 2.5, 'x', bytes(3)], b: { c: null } }, delivery: 'reliable', expires_at_ms: undefined })]);
});

test('a frame too deep or cut short is an error event, not an exception', async () => {
  for (const bad of [
    event(1, 'deep', nest(33)),
    event(1, 'deep map', JSON.parse('{"a":'.repeat(33) + '1' + '}'.repeat(33))),
    event(1, 'cut', { a: 'x'.repeat(40) }).slice(0, -10),
    event(1, 'not UTF-8', { $str: [0x61, 0xff] }),
    event(1, 'surrogate', { $str: [0xed, 0xa0, 0x80] }),
    event(1, 'key not UTF-8', { $map: [[{ $str: [0xc0, 0x80] }, 1]] }),
    [0x92, 0x01, 0xc1],
  ]) {
    await page.evaluate((w) => window.start(w), welcome);
    await page.evaluate((f) => window.feed(f), bad);
    await until(page, () => window.got.error.length === 1);
    const got = await page.evaluate(() => ({ error: window.got.error, events: window.got.event.length, closed: window.socket.closed }));
    assert.equal(got.error[0].kind, 'protocol', JSON.stringify(got.error));
    assert.equal(got.events, 0);
    // 1002, "undecodable frame": a page may only close with 1000 or 3000-4999, so 4000.
    assert.deepEqual(got.closed.map(([code]) => code), [4000]);
  }
  assert.deepEqual(page.errors, []);
});
