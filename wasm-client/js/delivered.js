// A delivered item's frame (`[1, {"Event": {...}}]`, `Gap`, `Snapshot`, as
// the wasm's encoder writes them) read straight into the value its listener
// gets, in one crossing: building the object and its payload a field at a
// time through wasm-bindgen (a `Reflect.set` and a string crossing per key)
// was most of an event's cost (docs/BENCHMARKS.md). The values are the ones
// the Rust conversion made: maps → plain objects (keys as JS makes property
// keys of them), arrays, binary and ext → Uint8Array
// (a copy), integers and floats → numbers, strings → strings (not UTF-8 → a
// Uint8Array of the bytes), nil → null. The frame has passed the wasm's
// decoder (depth limit and all), so it is well formed.
//
// `cargo xtask pkg` pastes this file into the glue in place of its import
// (xtask/src/tasks.rs, `inline_snippets`): the names must not clash there.
let mpBytes, mpView, mpAt, mpText, mpDecoded = 2 ** 31;
const mpCache = [];

// `w` bytes, big-endian; two's complement when `signed` (8 bytes: the
// number nearest the exact value, as Rust's `as f64` gives it).
function mpInt(w, signed) {
  let x = w > 2 ? mpView.getUint32(mpAt) : w > 1 ? mpView.getUint16(mpAt) : mpBytes[mpAt];
  if (w > 4) x = (signed ? mpView.getInt32(mpAt) : x) * 4294967296 + mpView.getUint32(mpAt + 4);
  else if (signed && x >= 2 ** (8 * w - 1)) x -= 2 ** (8 * w);
  mpAt += w;
  return x;
}

function mpStr(len) {
  const end = mpAt + len;
  if (len < 32) {
    // Short strings (field names, kinds) from a small cache of the ASCII
    // ones seen, so that a key is the same string each time: V8 sets a
    // property much faster by a key it has seen.
    const slot = (len * 961 + mpBytes[mpAt] * 31 + mpBytes[end - 1] + mpBytes[mpAt + (len >> 1)]) & 1023;
    let s = mpCache[slot];
    if (s !== undefined && s.length === len) {
      let i = 0;
      while (i < len && s.charCodeAt(i) === mpBytes[mpAt + i]) i++;
      if (i === len) return (mpAt = end), s;
    }
    for (let i = mpAt; i < end; i++) if (mpBytes[i] > 127) return mpUtf8(end);
    s = String.fromCharCode.apply(null, mpBytes.subarray(mpAt, (mpAt = end)));
    return (mpCache[slot] = s);
  }
  return mpUtf8(end);
}

function mpUtf8(end) {
  const bytes = mpBytes.subarray(mpAt, (mpAt = end));
  // A new decoder every 1 GiB: Safari's fails after 2 GiB (wasm-bindgen's
  // glue does the same).
  if ((mpDecoded += bytes.length) > 2 ** 30) {
    mpText = new TextDecoder('utf-8', { ignoreBOM: true, fatal: true });
    mpDecoded = bytes.length;
  }
  try {
    return mpText.decode(bytes);
  } catch {
    return bytes.slice();
  }
}

function mpList(len) {
  const a = [];
  while (len--) a.push(mpValue());
  return a;
}

// Each entry set as `Reflect.set` did for the Rust conversion, whose result
// and exceptions it ignored (a frozen `Object.prototype`, a `__proto__` key):
// a plain store in a `try` is that, and V8 makes it many times faster.
function mpMap(len) {
  const o = {};
  while (len--) {
    const k = mpValue();
    const v = mpValue();
    try {
      o[k] = v;
    } catch {}
  }
  return o;
}

function mpBin(len) {
  return mpBytes.slice(mpAt, (mpAt += len));
}

function mpValue() {
  const m = mpBytes[mpAt++];
  if (m < 0x80) return m;
  if (m > 0xdf) return m - 256;
  if (m < 0x90) return mpMap(m & 15);
  if (m < 0xa0) return mpList(m & 15);
  if (m < 0xc0) return mpStr(m & 31);
  if (m < 0xc4) return m < 0xc1 ? null : m > 0xc2;
  // bin 8/16/32
  if (m < 0xc7) return mpBin(mpInt(1 << (m - 0xc4)));
  // ext 8/16/32: the length, then the type, dropped
  if (m < 0xca) {
    const len = mpInt(1 << (m - 0xc7));
    mpAt++;
    return mpBin(len);
  }
  if (m < 0xcc) {
    const x = m < 0xcb ? mpView.getFloat32(mpAt) : mpView.getFloat64(mpAt);
    mpAt += m < 0xcb ? 4 : 8;
    return x;
  }
  if (m < 0xd4) return mpInt(1 << (m & 3), m > 0xcf);
  // fixext 1/2/4/8/16
  if (m < 0xd9) return mpAt++, mpBin(1 << (m - 0xd4));
  if (m < 0xdc) return mpStr(mpInt(1 << (m - 0xd9)));
  return (m < 0xde ? mpList : mpMap)(mpInt(m & 1 ? 4 : 2));
}

export function delivered(frame) {
  // One view of the wasm's memory for every frame (a new one after it grew).
  if (frame.buffer !== mpBytes?.buffer) {
    mpBytes = new Uint8Array(frame.buffer);
    mpView = new DataView(frame.buffer);
  }
  const at = frame.byteOffset;
  // An event, as shared-protocol's encoder always lays it out:
  // `[1, {"Event": {"seq": _, "kind": _, "ts_ms": _, "payload": _}}]`, the
  // names skipped (the only frame with an "E" there).
  if (mpBytes[at + 4] === 69) {
    mpAt = at + 14;
    const seq = mpValue();
    mpAt += 5;
    const kind = mpValue();
    mpAt += 6;
    const tsMs = mpValue();
    mpAt += 8;
    return { seq, kind, tsMs, payload: mpValue() };
  }
  // A gap or a snapshot: the map under its name is the value.
  mpAt = at;
  const item = mpValue()[1];
  return item.Gap || item.Snapshot;
}
