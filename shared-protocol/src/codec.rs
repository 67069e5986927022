//! The frame codec, written by hand: a small MessagePack writer and reader
//! of our own.
//!
//! Why not `rmp_serde`: serde's derive instantiates a generic deserializer
//! per frame type, which made up half of the browser module (about 225 KB of
//! 475 KB) and sits on the proxy's hot path. The bytes are exactly what
//! `rmp_serde::to_vec_named` writes for the same types (a property test
//! compares the two), so the wire format in docs/PROTOCOL.md is unchanged:
//! `[version, {"Variant": {"field": value, ...}}]`, optional fields omitted,
//! unknown fields skipped.
//!
//! Why our own reader: `rmp`'s and `rmpv`'s readers go through `std::io`,
//! whose errors (and their formatting) were a tenth of the browser module.
//! Reading from a slice, the only failures are "ran out of bytes"
//! ([`DecodeError::Truncated`]) and "not what this field needs"
//! ([`DecodeError::Malformed`], naming the field and what was found).

use rmp::Marker;

use crate::frame::*;
use crate::receiver::Delivered;

// ---------------------------------------------------------------- encoding

struct W(Vec<u8>);

/// MessagePack writing, byte for byte as `rmp::encode` (and so `rmp_serde`
/// and `rmpv`) writes it: always the shortest form. Our own because `rmp`'s
/// writers go through `std::io::Write` and its error types, which the
/// browser module would carry for writes into a `Vec` that cannot fail.
impl W {
    /// `marker`, then the low `width` bytes of `v`, big-endian.
    fn be(&mut self, marker: u8, v: u64, width: usize) {
        self.0.push(marker);
        self.0.extend_from_slice(&v.to_be_bytes()[8 - width..]);
    }
    /// A length: the one-byte form below `fix.0` (`fix.1 | n`), else the
    /// 8-bit form where the type has one (`m8` non-zero), else 16 bits
    /// (`m16`) or 32 (`m16 + 1`).
    fn len(&mut self, n: usize, fix: (usize, u8), m8: u8, m16: u8) {
        if n < fix.0 {
            self.0.push(fix.1 | n as u8);
        } else if m8 != 0 && n < 0x100 {
            self.be(m8, n as u64, 1);
        } else if n < 0x1_0000 {
            self.be(m16, n as u64, 2);
        } else {
            self.be(m16 + 1, n as u64, 4);
        }
    }
    fn str(&mut self, s: &str) {
        self.len(s.len(), (32, 0xa0), 0xd9, 0xda);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn nil(&mut self) {
        self.0.push(0xc0);
    }
    fn boolean(&mut self, v: bool) {
        self.0.push(0xc2 | u8::from(v));
    }
    fn uint(&mut self, v: u64) {
        match v {
            0..=0x7f => self.0.push(v as u8),
            0x80..=0xff => self.be(0xcc, v, 1),
            0x100..=0xffff => self.be(0xcd, v, 2),
            0x1_0000..=0xffff_ffff => self.be(0xce, v, 4),
            _ => self.be(0xcf, v, 8),
        }
    }
    /// A negative integer (two's complement in the low bytes).
    fn negative(&mut self, v: i64) {
        let bits = v as u64;
        match v {
            -32..=-1 => self.0.push(bits as u8),
            -0x80..=-33 => self.be(0xd0, bits, 1),
            -0x8000..=-0x81 => self.be(0xd1, bits, 2),
            -0x8000_0000..=-0x8001 => self.be(0xd2, bits, 4),
            _ => self.be(0xd3, bits, 8),
        }
    }
    fn array(&mut self, n: usize) {
        self.len(n, (16, 0x90), 0, 0xdc);
    }
    fn map(&mut self, n: usize) {
        self.len(n, (16, 0x80), 0, 0xde);
    }
    /// Byte for byte what `rmpv::encode::write_value` writes.
    fn payload(&mut self, v: &Payload) {
        match v {
            Payload::Nil => self.nil(),
            Payload::Boolean(b) => self.boolean(*b),
            Payload::Integer(i) => match (i.as_u64(), i.as_i64()) {
                (Some(u), _) => self.uint(u),
                (None, Some(n)) => self.negative(n),
                (None, None) => {}
            },
            Payload::F32(f) => self.be(0xca, u64::from(f.to_bits()), 4),
            Payload::F64(f) => self.be(0xcb, f.to_bits(), 8),
            Payload::String(s) => {
                let bytes = s.as_bytes();
                self.len(bytes.len(), (32, 0xa0), 0xd9, 0xda);
                self.0.extend_from_slice(bytes);
            }
            Payload::Binary(b) => {
                self.len(b.len(), (0, 0), 0xc4, 0xc5);
                self.0.extend_from_slice(b);
            }
            Payload::Array(items) => {
                self.array(items.len());
                for item in items {
                    self.payload(item);
                }
            }
            Payload::Map(entries) => {
                self.map(entries.len());
                for (k, v) in entries {
                    self.payload(k);
                    self.payload(v);
                }
            }
            Payload::Ext(ty, data) => {
                match data.len() {
                    1 => self.0.push(0xd4),
                    2 => self.0.push(0xd5),
                    4 => self.0.push(0xd6),
                    8 => self.0.push(0xd7),
                    16 => self.0.push(0xd8),
                    n => self.len(n, (0, 0), 0xc7, 0xc8),
                }
                self.0.push(*ty as u8);
                self.0.extend_from_slice(data);
            }
        }
    }
    /// Starts `{"Variant": {` with `fields` fields.
    fn variant(&mut self, name: &str, fields: u32) {
        self.map(1);
        self.str(name);
        self.map(fields as usize);
    }
    fn field_uint(&mut self, name: &str, v: u64) {
        self.str(name);
        self.uint(v);
    }
    fn field_str(&mut self, name: &str, v: &str) {
        self.str(name);
        self.str(v);
    }
    fn event(&mut self, x: &Event) {
        self.variant("Event", 4);
        self.field_uint("seq", x.seq);
        self.field_str("kind", &x.kind);
        self.field_uint("ts_ms", x.ts_ms);
        self.str("payload");
        self.payload(&x.payload);
    }

    fn snapshot(&mut self, upto: u64, state: &State) {
        self.variant("Snapshot", 2);
        self.field_uint("upto", upto);
        self.str("state");
        self.map(state.len());
        for (k, v) in state {
            self.str(k);
            self.payload(v);
        }
    }

    fn gap(&mut self, g: &Gap) {
        self.variant("Gap", 3);
        self.field_uint("from", g.from);
        self.field_uint("to", g.to);
        self.field_str("reason", g.reason.as_str());
    }

    fn ping(&mut self, name: &str, p: &Ping) {
        self.variant(name, 2);
        self.field_uint("nonce", u64::from(p.nonce));
        self.field_uint("t", p.t);
    }
}

fn envelope() -> W {
    let mut w = W(Vec::with_capacity(64));
    w.array(2);
    w.uint(u64::from(PROTOCOL_VERSION));
    w
}

/// The frame that carries a delivered item, as `encode_server` writes it,
/// straight from the item: the browser relays and stores only these three
/// frames, and a copy into a `ServerFrame` first linked the encoder of all
/// ten (and the clones) into the wasm.
pub fn encode_delivered(item: &Delivered) -> Vec<u8> {
    let mut w = envelope();
    match item {
        Delivered::Event(x) => w.event(x),
        Delivered::Gap(x) => w.gap(x),
        Delivered::Snapshot(x) => w.snapshot(x.upto, &x.state),
    }
    w.0
}

/// A snapshot frame of `upto` and `state` (what `encode_server` writes).
pub fn encode_snapshot(upto: u64, state: &State) -> Vec<u8> {
    let mut w = envelope();
    w.snapshot(upto, state);
    w.0
}

pub fn encode_client(frame: &ClientFrame) -> Vec<u8> {
    let mut w = envelope();
    match frame {
        ClientFrame::Hello(h) => {
            w.variant(
                "Hello",
                1 + u32::from(h.token.is_some())
                    + u32::from(h.resume.is_some())
                    + u32::from(h.t.is_some())
                    + u32::from(h.batch),
            );
            w.field_str("client_id", &h.client_id);
            if let Some(token) = &h.token {
                w.field_str("token", token);
            }
            if let Some(r) = &h.resume {
                w.str("resume");
                w.map(2);
                w.field_uint("epoch", r.epoch);
                w.field_uint("last_seq", r.last_seq);
            }
            if let Some(t) = h.t {
                w.field_uint("t", t);
            }
            if h.batch {
                w.str("batch");
                w.boolean(true);
            }
        }
        ClientFrame::Publish(p) => {
            w.variant(
                "Publish",
                4 + u32::from(p.expires_at_ms.is_some()) + u32::from(p.ttl_ms.is_some()),
            );
            w.field_uint("client_seq", p.client_seq);
            w.field_str("kind", &p.kind);
            w.str("payload");
            w.payload(&p.payload);
            w.field_str("delivery", p.delivery.as_str());
            if let Some(t) = p.expires_at_ms {
                w.field_uint("expires_at_ms", t);
            }
            if let Some(ttl) = p.ttl_ms {
                w.field_uint("ttl_ms", ttl);
            }
        }
        ClientFrame::Ack { upto } => {
            w.variant("Ack", 1);
            w.field_uint("upto", *upto);
        }
        ClientFrame::Ping(p) => w.ping("Ping", p),
        ClientFrame::Pong(p) => w.ping("Pong", p),
    }
    w.0
}

pub fn encode_server(frame: &ServerFrame) -> Vec<u8> {
    let mut w = envelope();
    match frame {
        ServerFrame::Welcome(x) => {
            w.variant("Welcome", 7);
            w.field_str("session", &x.session);
            w.field_uint("epoch", x.epoch);
            w.field_uint("head_seq", x.head_seq);
            w.str("resumed");
            w.boolean(x.resumed);
            w.field_uint("heartbeat_ms", u64::from(x.heartbeat_ms));
            w.str("limits");
            w.map(4 + usize::from(x.limits.publish_window.is_some()));
            w.field_uint("max_frame_bytes", u64::from(x.limits.max_frame_bytes));
            w.field_uint(
                "max_publish_per_sec",
                u64::from(x.limits.max_publish_per_sec),
            );
            w.field_uint("max_behind", u64::from(x.limits.max_behind));
            w.field_uint("retention_ms", x.limits.retention_ms);
            if let Some(window) = x.limits.publish_window {
                w.field_uint("publish_window", u64::from(window));
            }
            w.str("access");
            match x.access {
                Some(a) => w.str(a.as_str()),
                None => w.nil(),
            }
        }
        ServerFrame::Event(x) => w.event(x),
        ServerFrame::Snapshot(x) => w.snapshot(x.upto, &x.state),
        ServerFrame::Gap(x) => w.gap(x),
        ServerFrame::Accepted { upto } => {
            w.variant("Accepted", 1);
            w.field_uint("upto", *upto);
        }
        ServerFrame::Rejected(x) => {
            w.variant("Rejected", 2);
            w.field_uint("client_seq", x.client_seq);
            w.field_str("reason", x.reason.as_str());
        }
        ServerFrame::Ping(p) => w.ping("Ping", p),
        ServerFrame::Pong(p) => w.ping("Pong", p),
        ServerFrame::Error(x) => {
            w.variant("Error", 2);
            w.field_str("code", x.code.as_str());
            w.field_str("message", &x.message);
        }
        ServerFrame::Drain(x) => {
            w.variant("Drain", 3);
            w.field_uint("retry_after_ms", x.retry_after_ms);
            w.field_uint("jitter_ms", x.jitter_ms);
            w.field_str("reason", x.reason.as_str());
        }
    }
    w.0
}

// ---------------------------------------------------------------- names

/// Each enum's wire names, in both directions. `as_str` is public: the
/// browser shell shows these names to JavaScript.
macro_rules! names {
    ($from:ident, $ty:ident, { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// The name on the wire (what serde writes).
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }

            /// The value of a wire name; `None` for a name it does not have.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($name => Some($ty::$variant),)* _ => None }
            }
        }
        fn $from(s: &str) -> Res<$ty> {
            $ty::from_name(s).ok_or_else(|| unknown_name(stringify!($ty), s))
        }
    };
}

names!(delivery_from, Delivery, { Reliable => "reliable", Volatile => "volatile" });
names!(access_from, Access, { Read => "read", Control => "control" });
names!(drain_reason_from, DrainReason, { Shutdown => "shutdown", Overload => "overload" });
names!(gap_reason_from, GapReason, {
    Retention => "retention", EpochChanged => "epoch_changed", TooFarBehind => "too_far_behind", Coalesced => "coalesced",
});
names!(reject_from, RejectReason, {
    Expired => "expired", Forbidden => "forbidden", RateLimited => "rate_limited", Invalid => "invalid", Unavailable => "unavailable",
    TxTimeout => "tx_timeout", StateFull => "state_full",
});
names!(error_code_from, ErrorCode, {
    Malformed => "malformed", TooLarge => "too_large", UnsupportedVersion => "unsupported_version",
    ProtocolViolation => "protocol_violation", Unauthorized => "unauthorized", Stale => "stale",
    Replaced => "replaced", ShuttingDown => "shutting_down", Unavailable => "unavailable",
});

// ---------------------------------------------------------------- decoding

/// A decode error on its way up the reader, boxed: each of the decoder's
/// hundred-odd `?` then moves one pointer instead of the whole error.
/// `decode_with` unboxes it.
#[derive(Debug)]
pub(crate) struct Bad(Box<DecodeError>);

impl From<DecodeError> for Bad {
    #[inline(never)]
    fn from(e: DecodeError) -> Bad {
        Bad(Box::new(e))
    }
}

impl From<Bad> for DecodeError {
    fn from(b: Bad) -> DecodeError {
        *b.0
    }
}

type Res<T> = Result<T, Bad>;

/// A cursor over the frame: reading advances the slice.
pub(crate) struct R<'a>(&'a [u8]);

/// What a marker starts, for "expected X, found Y" errors.
fn found(m: Marker) -> &'static str {
    match m {
        Marker::Null => "nil",
        Marker::True | Marker::False => "a boolean",
        Marker::FixPos(_) | Marker::FixNeg(_) => "an integer",
        Marker::U8 | Marker::U16 | Marker::U32 | Marker::U64 => "an integer",
        Marker::I8 | Marker::I16 | Marker::I32 | Marker::I64 => "an integer",
        Marker::F32 | Marker::F64 => "a float",
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => "a string",
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => "binary",
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => "an array",
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => "a map",
        Marker::Reserved => "the reserved byte 0xc1",
        _ => "an extension",
    }
}

fn wrong(what: &str, expected: &str, m: Marker) -> Bad {
    DecodeError::Malformed(format!("{what}: expected {expected}, found {}", found(m))).into()
}

impl<'a> R<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        R(bytes)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.0.len()
    }

    /// Moves past one MessagePack value without building it (to find where
    /// a frame ends), at most `MAX_DEPTH` levels below the frame's own.
    pub(crate) fn skip_value(&mut self, depth: usize) -> Res<()> {
        if depth > MAX_DEPTH + 4 {
            return Err(DecodeError::TooDeep.into());
        }
        let (values, bytes) = match self.marker()? {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::U8 | Marker::I8 => (0, 1),
            Marker::U16 | Marker::I16 => (0, 2),
            Marker::U32 | Marker::I32 | Marker::F32 => (0, 4),
            Marker::U64 | Marker::I64 | Marker::F64 => (0, 8),
            Marker::FixStr(n) => (0, usize::from(n)),
            Marker::Str8 | Marker::Bin8 => (0, self.len(1)?),
            Marker::Str16 | Marker::Bin16 => (0, self.len(2)?),
            Marker::Str32 | Marker::Bin32 => (0, self.len(4)?),
            Marker::FixArray(n) => (usize::from(n), 0),
            Marker::Array16 => (self.len(2)?, 0),
            Marker::Array32 => (self.len(4)?, 0),
            Marker::FixMap(n) => (2 * usize::from(n), 0),
            Marker::Map16 => (self.pairs(2)?, 0),
            Marker::Map32 => (self.pairs(4)?, 0),
            Marker::FixExt1 => (0, 2),
            Marker::FixExt2 => (0, 3),
            Marker::FixExt4 => (0, 5),
            Marker::FixExt8 => (0, 9),
            Marker::FixExt16 => (0, 17),
            Marker::Ext8 => (0, self.ext_len(1)?),
            Marker::Ext16 => (0, self.ext_len(2)?),
            Marker::Ext32 => (0, self.ext_len(4)?),
            Marker::Reserved => return Err(wrong("value", "a value", Marker::Reserved)),
        };
        self.take(bytes)?;
        for _ in 0..values {
            self.skip_value(depth + 1)?;
        }
        Ok(())
    }

    /// A map's key and value count (`n` bytes of length): more than a
    /// 32-bit `usize` holds is more than any message has.
    fn pairs(&mut self, n: usize) -> Res<usize> {
        let len = self.len(n)?;
        len.checked_mul(2)
            .ok_or_else(|| DecodeError::Truncated.into())
    }

    /// An extension's bytes after its length (`n` bytes of it): the type
    /// byte and the data.
    fn ext_len(&mut self, n: usize) -> Res<usize> {
        let len = self.len(n)?;
        len.checked_add(1)
            .ok_or_else(|| DecodeError::Truncated.into())
    }

    /// The next `n` bytes, or `Truncated`.
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated.into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// A big-endian unsigned number `n` bytes wide.
    fn be(&mut self, n: usize) -> Res<u64> {
        let bytes = self.take(n)?;
        Ok(bytes.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn len(&mut self, n: usize) -> Res<usize> {
        self.be(n).map(|v| v as usize)
    }

    fn marker(&mut self) -> Res<Marker> {
        Ok(Marker::from_u8(self.take(1)?[0]))
    }

    /// The frame's envelope `[version, body]`: checks the version and leaves
    /// the cursor on the body.
    pub(crate) fn envelope(&mut self) -> Res<()> {
        let n = match self.marker()? {
            Marker::FixArray(n) => usize::from(n),
            Marker::Array16 => self.len(2)?,
            Marker::Array32 => self.len(4)?,
            m => return Err(wrong("envelope", "an array", m)),
        };
        if n != 2 {
            return Err(DecodeError::Malformed(format!("envelope has {n} elements, not 2")).into());
        }
        let version = self.uint("version")?;
        if version != u64::from(PROTOCOL_VERSION) {
            return Err(DecodeError::UnsupportedVersion {
                got: version,
                supported: PROTOCOL_VERSION,
            }
            .into());
        }
        Ok(())
    }

    fn map_len(&mut self, what: &str) -> Res<u32> {
        match self.marker()? {
            Marker::FixMap(n) => Ok(u32::from(n)),
            Marker::Map16 => self.be(2).map(|n| n as u32),
            Marker::Map32 => self.be(4).map(|n| n as u32),
            m => Err(wrong(what, "a map", m)),
        }
    }

    fn str_bytes(&mut self, m: Marker) -> Option<Res<&'a [u8]>> {
        let len = match m {
            Marker::FixStr(n) => Ok(usize::from(n)),
            Marker::Str8 => self.len(1),
            Marker::Str16 => self.len(2),
            Marker::Str32 => self.len(4),
            _ => return None,
        };
        Some(len.and_then(|len| self.take(len)))
    }

    fn str(&mut self, what: &str) -> Res<&'a str> {
        let m = self.marker()?;
        let bytes = self
            .str_bytes(m)
            .ok_or_else(|| wrong(what, "a string", m))??;
        std::str::from_utf8(bytes)
            .map_err(|_| DecodeError::Malformed(format!("{what}: not UTF-8")).into())
    }

    /// Any integer marker whose value is >= 0 (what `rmp::decode::read_int`
    /// accepts for a `u64`).
    fn uint(&mut self, what: &str) -> Res<u64> {
        let m = self.marker()?;
        let signed = match m {
            Marker::FixPos(n) => return Ok(u64::from(n)),
            Marker::U8 => return self.be(1),
            Marker::U16 => return self.be(2),
            Marker::U32 => return self.be(4),
            Marker::U64 => return self.be(8),
            Marker::FixNeg(n) => i64::from(n),
            Marker::I8 => i64::from(self.be(1)? as u8 as i8),
            Marker::I16 => i64::from(self.be(2)? as u16 as i16),
            Marker::I32 => i64::from(self.be(4)? as u32 as i32),
            Marker::I64 => self.be(8)? as i64,
            m => return Err(wrong(what, "an integer", m)),
        };
        u64::try_from(signed)
            .map_err(|_| DecodeError::Malformed(format!("{what}: negative")).into())
    }

    fn boolean(&mut self, what: &str) -> Res<bool> {
        match self.marker()? {
            Marker::True => Ok(true),
            Marker::False => Ok(false),
            m => Err(wrong(what, "a boolean", m)),
        }
    }

    fn payload(&mut self) -> Res<Payload> {
        self.value(0)
    }

    /// Any MessagePack value, as `rmpv` would read it (a string that is not
    /// UTF-8 is an error here: JSON, JS and the dashboard cannot carry it).
    /// `depth` is how many containers hold this value: a payload's own
    /// outermost array or map is at 0, so 32 levels end at depth 31.
    fn value(&mut self, depth: usize) -> Res<Payload> {
        let m = self.marker()?;
        if let Some(bytes) = self.str_bytes(m) {
            return match std::str::from_utf8(bytes?) {
                Ok(s) => Ok(Payload::from(s)),
                Err(_) => {
                    Err(DecodeError::Malformed("payload: a string is not UTF-8".into()).into())
                }
            };
        }
        let (len, ext) = match m {
            Marker::Null => return Ok(Payload::Nil),
            Marker::True => return Ok(Payload::Boolean(true)),
            Marker::False => return Ok(Payload::Boolean(false)),
            Marker::FixPos(n) => return Ok(Payload::from(n)),
            Marker::FixNeg(n) => return Ok(Payload::from(n)),
            Marker::U8 => return Ok(Payload::from(self.be(1)?)),
            Marker::U16 => return Ok(Payload::from(self.be(2)?)),
            Marker::U32 => return Ok(Payload::from(self.be(4)?)),
            Marker::U64 => return Ok(Payload::from(self.be(8)?)),
            Marker::I8 => return Ok(Payload::from(self.be(1)? as u8 as i8)),
            Marker::I16 => return Ok(Payload::from(self.be(2)? as u16 as i16)),
            Marker::I32 => return Ok(Payload::from(self.be(4)? as u32 as i32)),
            Marker::I64 => return Ok(Payload::from(self.be(8)? as i64)),
            Marker::F32 => return Ok(Payload::F32(f32::from_bits(self.be(4)? as u32))),
            Marker::F64 => return Ok(Payload::F64(f64::from_bits(self.be(8)?))),
            Marker::Bin8 => (self.len(1)?, false),
            Marker::Bin16 => (self.len(2)?, false),
            Marker::Bin32 => (self.len(4)?, false),
            Marker::FixArray(n) => return self.array(usize::from(n), depth),
            Marker::Array16 => return self.len(2).and_then(|n| self.array(n, depth)),
            Marker::Array32 => return self.len(4).and_then(|n| self.array(n, depth)),
            Marker::FixMap(n) => return self.map(usize::from(n), depth),
            Marker::Map16 => return self.len(2).and_then(|n| self.map(n, depth)),
            Marker::Map32 => return self.len(4).and_then(|n| self.map(n, depth)),
            Marker::FixExt1 => (1, true),
            Marker::FixExt2 => (2, true),
            Marker::FixExt4 => (4, true),
            Marker::FixExt8 => (8, true),
            Marker::FixExt16 => (16, true),
            Marker::Ext8 => (self.len(1)?, true),
            Marker::Ext16 => (self.len(2)?, true),
            Marker::Ext32 => (self.len(4)?, true),
            m => return Err(wrong("payload", "a value", m)),
        };
        if ext {
            let ty = self.take(1)?[0] as i8;
            return Ok(Payload::Ext(ty, self.take(len)?.to_vec()));
        }
        Ok(Payload::Binary(self.take(len)?.to_vec()))
    }

    fn array(&mut self, n: usize, depth: usize) -> Res<Payload> {
        if depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep.into());
        }
        // Every element takes at least one byte: a hostile length cannot
        // make us reserve more than the frame's size.
        let mut items = Vec::with_capacity(n.min(self.remaining()));
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Payload::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Res<Payload> {
        if depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep.into());
        }
        let mut entries = Vec::with_capacity(n.min(self.remaining() / 2));
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            entries.push((k, self.value(depth + 1)?));
        }
        Ok(Payload::Map(entries))
    }

    /// `nil` reads as `None` (serde's reading of an `Option`).
    fn is_nil(&mut self) -> bool {
        if let Some((&0xc0, rest)) = self.0.split_first() {
            self.0 = rest;
            return true;
        }
        false
    }

    /// Skips one value of any type (an unknown field's).
    fn skip(&mut self) -> Res<()> {
        self.payload().map(drop)
    }

    fn opt_uint(&mut self, what: &str) -> Res<Option<u64>> {
        if self.is_nil() {
            return Ok(None);
        }
        self.uint(what).map(Some)
    }

    fn opt_str(&mut self, what: &str) -> Res<Option<String>> {
        if self.is_nil() {
            return Ok(None);
        }
        self.str(what).map(|s| Some(s.to_string()))
    }

    fn u32(&mut self, what: &str) -> Res<u32> {
        let v = self.uint(what)?;
        u32::try_from(v)
            .map_err(|_| DecodeError::Malformed(format!("{what}: {v} does not fit 32 bits")).into())
    }

    /// Reads `{"Variant": {...}}` up to the field map; returns the name and
    /// field count. An unknown name is reported before its body is read.
    fn variant(&mut self, known: &[&str], side: &str) -> Res<(&'a str, u32)> {
        let n = self.map_len("frame")?;
        if n != 1 {
            return Err(
                DecodeError::Malformed(format!("frame is a map of {n} entries, not 1")).into(),
            );
        }
        let name = self.str("frame name")?;
        if !known.contains(&name) {
            return Err(DecodeError::UnknownVariant(format!("{side} frame \"{name}\"")).into());
        }
        let fields = self.map_len(name)?;
        Ok((name, fields))
    }

    fn ping(&mut self, fields: u32) -> Res<Ping> {
        let (mut nonce, mut t) = (None, None);
        for _ in 0..fields {
            match self.str("field")? {
                "nonce" => nonce = Some(self.u32("nonce")?),
                "t" => t = Some(self.uint("t")?),
                _ => self.skip()?,
            }
        }
        Ok(Ping {
            nonce: need(nonce, "nonce")?,
            t: need(t, "t")?,
        })
    }
}

fn need<T>(v: Option<T>, field: &str) -> Res<T> {
    v.ok_or_else(|| missing(field))
}

/// Out of line and not generic: `need` is instantiated for every field
/// type, and each copy carried its own formatting call (the browser
/// package's size target, docs/BENCHMARKS.md).
#[inline(never)]
fn missing(field: &str) -> Bad {
    DecodeError::Malformed(format!("missing field `{field}`")).into()
}

/// An unknown wire name of an enum, out of line (one copy for every enum).
#[inline(never)]
fn unknown_name(ty: &str, s: &str) -> Bad {
    DecodeError::UnknownVariant(format!("{ty} \"{s}\"")).into()
}

pub(crate) fn decode_client(r: &mut R<'_>) -> Res<ClientFrame> {
    let (name, fields) = r.variant(&["Hello", "Publish", "Ack", "Ping", "Pong"], "client")?;
    Ok(match name {
        "Hello" => {
            let (mut client_id, mut token, mut resume, mut t) = (None, None, None, None);
            let mut batch = false;
            for _ in 0..fields {
                match r.str("field")? {
                    "client_id" => client_id = Some(r.str("client_id")?.to_string()),
                    "token" => token = r.opt_str("token")?,
                    "t" => t = r.opt_uint("t")?,
                    // Not `boolean`: a second caller would change what the
                    // browser's wasm inlines, and cost it bytes.
                    "batch" => {
                        batch = match r.payload()? {
                            Payload::Boolean(b) => b,
                            Payload::Nil => false,
                            _ => {
                                return Err(DecodeError::Malformed(
                                    "batch: expected a boolean".into(),
                                )
                                .into())
                            }
                        }
                    }
                    "resume" => {
                        if !r.is_nil() {
                            let (mut epoch, mut last_seq) = (None, None);
                            for _ in 0..r.map_len("resume")? {
                                match r.str("field")? {
                                    "epoch" => epoch = Some(r.uint("epoch")?),
                                    "last_seq" => last_seq = Some(r.uint("last_seq")?),
                                    _ => r.skip()?,
                                }
                            }
                            resume = Some(Resume {
                                epoch: need(epoch, "epoch")?,
                                last_seq: need(last_seq, "last_seq")?,
                            });
                        }
                    }
                    _ => r.skip()?,
                }
            }
            ClientFrame::Hello(Hello {
                client_id: need(client_id, "client_id")?,
                token,
                resume,
                t,
                batch,
            })
        }
        "Publish" => {
            let (mut client_seq, mut kind, mut payload, mut delivery) = (None, None, None, None);
            let (mut expires_at_ms, mut ttl_ms) = (None, None);
            for _ in 0..fields {
                match r.str("field")? {
                    "client_seq" => client_seq = Some(r.uint("client_seq")?),
                    "kind" => kind = Some(r.str("kind")?.to_string()),
                    "payload" => payload = Some(r.payload()?),
                    "delivery" => delivery = Some(delivery_from(r.str("delivery")?)?),
                    "expires_at_ms" => expires_at_ms = r.opt_uint("expires_at_ms")?,
                    "ttl_ms" => ttl_ms = r.opt_uint("ttl_ms")?,
                    _ => r.skip()?,
                }
            }
            ClientFrame::Publish(Publish {
                client_seq: need(client_seq, "client_seq")?,
                kind: need(kind, "kind")?,
                payload: need(payload, "payload")?,
                delivery: need(delivery, "delivery")?,
                expires_at_ms,
                ttl_ms,
            })
        }
        "Ack" => {
            let mut upto = None;
            for _ in 0..fields {
                match r.str("field")? {
                    "upto" => upto = Some(r.uint("upto")?),
                    _ => r.skip()?,
                }
            }
            ClientFrame::Ack {
                upto: need(upto, "upto")?,
            }
        }
        "Ping" => ClientFrame::Ping(r.ping(fields)?),
        "Pong" => ClientFrame::Pong(r.ping(fields)?),
        other => {
            return Err(DecodeError::UnknownVariant(format!("client frame \"{other}\"")).into())
        }
    })
}

pub(crate) fn decode_server(r: &mut R<'_>) -> Res<ServerFrame> {
    let known = [
        "Welcome", "Event", "Snapshot", "Gap", "Accepted", "Rejected", "Ping", "Pong", "Error",
        "Drain",
    ];
    let (name, fields) = r.variant(&known, "server")?;
    Ok(match name {
        "Welcome" => {
            let (mut session, mut epoch, mut head_seq, mut resumed, mut heartbeat_ms, mut limits) =
                (None, None, None, None, None, None);
            let mut access = None;
            for _ in 0..fields {
                match r.str("field")? {
                    "session" => session = Some(r.str("session")?.to_string()),
                    "epoch" => epoch = Some(r.uint("epoch")?),
                    "head_seq" => head_seq = Some(r.uint("head_seq")?),
                    "resumed" => resumed = Some(r.boolean("resumed")?),
                    "heartbeat_ms" => heartbeat_ms = Some(r.u32("heartbeat_ms")?),
                    "access" => {
                        access = match r.opt_str("access")? {
                            Some(a) => Some(access_from(&a)?),
                            None => None,
                        }
                    }
                    "limits" => {
                        let (mut a, mut b, mut c, mut dd, mut e) = (None, None, None, None, None);
                        for _ in 0..r.map_len("limits")? {
                            match r.str("field")? {
                                "max_frame_bytes" => a = Some(r.u32("max_frame_bytes")?),
                                "max_publish_per_sec" => b = Some(r.u32("max_publish_per_sec")?),
                                "max_behind" => c = Some(r.u32("max_behind")?),
                                "retention_ms" => dd = Some(r.uint("retention_ms")?),
                                "publish_window" => e = Some(r.u32("publish_window")?),
                                _ => r.skip()?,
                            }
                        }
                        limits = Some(Limits {
                            max_frame_bytes: need(a, "max_frame_bytes")?,
                            max_publish_per_sec: need(b, "max_publish_per_sec")?,
                            max_behind: need(c, "max_behind")?,
                            retention_ms: need(dd, "retention_ms")?,
                            publish_window: e,
                        });
                    }
                    _ => r.skip()?,
                }
            }
            ServerFrame::Welcome(Welcome {
                session: need(session, "session")?,
                epoch: need(epoch, "epoch")?,
                head_seq: need(head_seq, "head_seq")?,
                resumed: need(resumed, "resumed")?,
                heartbeat_ms: need(heartbeat_ms, "heartbeat_ms")?,
                limits: need(limits, "limits")?,
                access,
            })
        }
        "Event" => {
            let (mut seq, mut kind, mut ts_ms, mut payload) = (None, None, None, None);
            for _ in 0..fields {
                match r.str("field")? {
                    "seq" => seq = Some(r.uint("seq")?),
                    "kind" => kind = Some(r.str("kind")?.to_string()),
                    "ts_ms" => ts_ms = Some(r.uint("ts_ms")?),
                    "payload" => payload = Some(r.payload()?),
                    _ => r.skip()?,
                }
            }
            ServerFrame::Event(Event {
                seq: need(seq, "seq")?,
                kind: need(kind, "kind")?,
                ts_ms: need(ts_ms, "ts_ms")?,
                payload: need(payload, "payload")?,
            })
        }
        "Snapshot" => {
            let (mut upto, mut state) = (None, None);
            for _ in 0..fields {
                match r.str("field")? {
                    "upto" => upto = Some(r.uint("upto")?),
                    "state" => {
                        let mut map = State::new();
                        for _ in 0..r.map_len("state")? {
                            let k = r.str("state key")?.to_string();
                            map.insert(k, r.payload()?);
                        }
                        state = Some(map);
                    }
                    _ => r.skip()?,
                }
            }
            ServerFrame::Snapshot(Snapshot {
                upto: need(upto, "upto")?,
                state: need(state, "state")?,
            })
        }
        "Gap" => {
            let (mut from, mut to, mut reason) = (None, None, None);
            for _ in 0..fields {
                match r.str("field")? {
                    "from" => from = Some(r.uint("from")?),
                    "to" => to = Some(r.uint("to")?),
                    "reason" => reason = Some(gap_reason_from(r.str("reason")?)?),
                    _ => r.skip()?,
                }
            }
            ServerFrame::Gap(Gap {
                from: need(from, "from")?,
                to: need(to, "to")?,
                reason: need(reason, "reason")?,
            })
        }
        "Accepted" => {
            let mut upto = None;
            for _ in 0..fields {
                match r.str("field")? {
                    "upto" => upto = Some(r.uint("upto")?),
                    _ => r.skip()?,
                }
            }
            ServerFrame::Accepted {
                upto: need(upto, "upto")?,
            }
        }
        "Rejected" => {
            let (mut client_seq, mut reason) = (None, None);
            for _ in 0..fields {
                match r.str("field")? {
                    "client_seq" => client_seq = Some(r.uint("client_seq")?),
                    "reason" => reason = Some(reject_from(r.str("reason")?)?),
                    _ => r.skip()?,
                }
            }
            ServerFrame::Rejected(Rejected {
                client_seq: need(client_seq, "client_seq")?,
                reason: need(reason, "reason")?,
            })
        }
        "Ping" => ServerFrame::Ping(r.ping(fields)?),
        "Pong" => ServerFrame::Pong(r.ping(fields)?),
        "Error" => {
            let (mut code, mut message) = (None, None);
            for _ in 0..fields {
                match r.str("field")? {
                    "code" => code = Some(error_code_from(r.str("code")?)?),
                    "message" => message = Some(r.str("message")?.to_string()),
                    _ => r.skip()?,
                }
            }
            ServerFrame::Error(ErrorFrame {
                code: need(code, "code")?,
                message: need(message, "message")?,
            })
        }
        "Drain" => {
            let (mut retry_after_ms, mut jitter_ms, mut reason) = (None, None, None);
            for _ in 0..fields {
                match r.str("field")? {
                    "retry_after_ms" => retry_after_ms = Some(r.uint("retry_after_ms")?),
                    "jitter_ms" => jitter_ms = Some(r.uint("jitter_ms")?),
                    "reason" => reason = Some(drain_reason_from(r.str("reason")?)?),
                    _ => r.skip()?,
                }
            }
            ServerFrame::Drain(Drain {
                retry_after_ms: need(retry_after_ms, "retry_after_ms")?,
                jitter_ms: need(jitter_ms, "jitter_ms")?,
                reason: need(reason, "reason")?,
            })
        }
        other => {
            return Err(DecodeError::UnknownVariant(format!("server frame \"{other}\"")).into())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size class boundary of every type: the writer picks the same
    /// form as `rmpv` (the property tests' random values rarely land on
    /// them), and the reader reads it back.
    #[test]
    fn delivered_items_encode_as_their_server_frames() {
        let mut state = State::new();
        state.insert("radio.freq".into(), Payload::from(7_074_000));
        state.insert("radio.mode".into(), Payload::from("USB"));
        let items = [
            Delivered::Event(Event {
                seq: 300,
                kind: "radio.freq".into(),
                ts_ms: 1_700_000_000_000,
                payload: Payload::from(14_074_000),
            }),
            Delivered::Gap(Gap {
                from: 3,
                to: 70_000,
                reason: GapReason::TooFarBehind,
            }),
            Delivered::Snapshot(Snapshot { upto: 9, state }),
        ];
        for item in items {
            let frame = match item.clone() {
                Delivered::Event(x) => ServerFrame::Event(x),
                Delivered::Gap(x) => ServerFrame::Gap(x),
                Delivered::Snapshot(x) => ServerFrame::Snapshot(x),
            };
            assert_eq!(item.encode_frame(), frame.encode().unwrap());
            if let Delivered::Snapshot(s) = &item {
                assert_eq!(encode_snapshot(s.upto, &s.state), frame.encode().unwrap());
            }
        }
    }

    #[test]
    fn writer_matches_rmpv_at_every_boundary() {
        let mut values = vec![Payload::Nil, Payload::from(true), Payload::from(false)];
        for edge in [0x7f_u64, 0xff, 0xffff, 0xffff_ffff] {
            values.extend([edge, edge + 1].map(Payload::from));
        }
        values.push(Payload::from(u64::MAX));
        for edge in [-32_i64, -0x80, -0x8000, -0x8000_0000] {
            values.extend([edge, edge - 1].map(Payload::from));
        }
        values.extend([Payload::from(-1), Payload::from(i64::MIN)]);
        values.extend([Payload::F32(-1.5), Payload::F64(1e300)]);
        for n in [
            0, 1, 2, 4, 8, 15, 16, 17, 31, 32, 255, 256, 0xffff, 0x1_0000,
        ] {
            values.push(Payload::from("x".repeat(n)));
            values.push(Payload::Binary(vec![7; n]));
            values.push(Payload::Ext(-3, vec![7; n]));
            values.push(Payload::Array(vec![Payload::Nil; n]));
            values.push(Payload::Map(vec![(Payload::Nil, Payload::Nil); n]));
        }
        for value in values {
            let mut ours = W(Vec::new());
            ours.payload(&value);
            let mut theirs = Vec::new();
            rmpv::encode::write_value(&mut theirs, &value).unwrap();
            let shown: String = format!("{value:?}").chars().take(60).collect();
            assert!(ours.0 == theirs, "{shown} written differently");
            assert_eq!(R::new(&ours.0).payload().unwrap(), value);
        }
    }
}
