//! The stored form of one logged event.
//!
//! A record keeps the event's *encoded `Event` frame* as sent on the wire, so
//! replay and live fan-out forward bytes without re-encoding, plus the few
//! fields the proxy itself needs (time for retention, kind and volatility for
//! coalescing), in a fixed little header:
//!
//! ```text
//! flags u8 | ts_ms u64 BE | kind_len u16 BE | kind utf-8 | frame bytes
//! ```

use std::sync::Arc;

use bytes::Bytes;

use shared_protocol::frame::{EncodeError, Event, Payload, ServerFrame};

const FLAG_VOLATILE: u8 = 1;
/// Not kept as its kind's last value (see `eventlog/stateless.rs`).
const FLAG_STATELESS: u8 = 2;

/// An event waiting for a sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: String,
    pub payload: Payload,
    /// A superseded volatile event may be skipped for a slow client
    /// (coalesced) as long as its kind's newest value is delivered.
    pub volatile: bool,
    /// Logged and delivered, never kept as its kind's last value (a kind of
    /// `stateless_kinds`).
    pub stateless: bool,
}

impl NewEvent {
    pub fn reliable(kind: impl Into<String>, payload: Payload) -> Self {
        NewEvent {
            kind: kind.into(),
            payload,
            volatile: false,
            stateless: false,
        }
    }

    pub fn volatile(kind: impl Into<String>, payload: Payload) -> Self {
        NewEvent {
            kind: kind.into(),
            payload,
            volatile: true,
            stateless: false,
        }
    }
}

/// A durable event with its sequence number, shared by every session.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub seq: u64,
    pub ts_ms: u64,
    pub volatile: bool,
    /// Not part of the state (see [`NewEvent::stateless`]).
    pub stateless: bool,
    pub kind: Arc<str>,
    /// The encoded `ServerFrame::Event`, ready for the socket.
    pub frame: Bytes,
    /// Which proxy logged it, on a shared log (its `ts_ms` is that proxy's
    /// clock); `None` for this proxy's own embedded log. Not stored in the
    /// record: the JetStream mirror learns it from the message's id.
    pub origin: Option<Arc<str>>,
}

impl Logged {
    pub fn build(seq: u64, ts_ms: u64, event: &NewEvent) -> Result<Self, EncodeError> {
        let frame = ServerFrame::Event(Event {
            seq,
            kind: event.kind.clone(),
            ts_ms,
            payload: event.payload.clone(),
        })
        .encode()?;
        Ok(Logged {
            seq,
            ts_ms,
            volatile: event.volatile,
            stateless: event.stateless,
            kind: Arc::from(event.kind.as_str()),
            frame: Bytes::from(frame),
            origin: None,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let kind = self.kind.as_bytes();
        let kind_len = kind.len().min(u16::MAX as usize);
        let mut out = Vec::with_capacity(11 + kind_len + self.frame.len());
        let mut flags = 0;
        if self.volatile {
            flags |= FLAG_VOLATILE;
        }
        if self.stateless {
            flags |= FLAG_STATELESS;
        }
        out.push(flags);
        out.extend_from_slice(&self.ts_ms.to_be_bytes());
        out.extend_from_slice(&(kind_len as u16).to_be_bytes());
        out.extend_from_slice(&kind[..kind_len]);
        out.extend_from_slice(&self.frame);
        out
    }

    /// Parses a stored record; `None` if it is corrupt.
    pub fn from_bytes(seq: u64, bytes: &[u8]) -> Option<Self> {
        let flags = *bytes.first()?;
        let ts_ms = u64::from_be_bytes(bytes.get(1..9)?.try_into().ok()?);
        let kind_len = usize::from(u16::from_be_bytes(bytes.get(9..11)?.try_into().ok()?));
        let kind = std::str::from_utf8(bytes.get(11..11 + kind_len)?).ok()?;
        let frame = bytes.get(11 + kind_len..)?;
        Some(Logged {
            seq,
            ts_ms,
            volatile: flags & FLAG_VOLATILE != 0,
            stateless: flags & FLAG_STATELESS != 0,
            kind: Arc::from(kind),
            frame: Bytes::copy_from_slice(frame),
            origin: None,
        })
    }

    /// The same event under another `seq`, and its payload: what a proxy
    /// reading a shared log does with a record written before its `seq` was
    /// known. `None` if the record's frame is not an `Event`.
    pub fn resequenced(&self, seq: u64) -> Option<(Logged, Payload)> {
        let ServerFrame::Event(mut event) = ServerFrame::decode(&self.frame, usize::MAX).ok()?
        else {
            return None;
        };
        event.seq = seq;
        let payload = event.payload.clone();
        let frame = ServerFrame::Event(event).encode().ok()?;
        let logged = Logged {
            seq,
            ts_ms: self.ts_ms,
            volatile: self.volatile,
            stateless: self.stateless,
            kind: self.kind.clone(),
            frame: Bytes::from(frame),
            origin: self.origin.clone(),
        };
        Some((logged, payload))
    }

    /// Reads the timestamp without parsing the rest (for trimming).
    pub fn ts_of(bytes: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(bytes.get(1..9)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_frame_decodes() {
        let ev = NewEvent::volatile("meter.power", Payload::from(12.5));
        let logged = Logged::build(42, 1_700_000_000_000, &ev).unwrap();
        let bytes = logged.to_bytes();
        let back = Logged::from_bytes(42, &bytes).unwrap();
        assert_eq!(back, logged);
        let note = NewEvent {
            stateless: true,
            ..NewEvent::reliable("note", Payload::from("hi"))
        };
        let note = Logged::build(43, 1, &note).unwrap();
        let note = Logged::from_bytes(43, &note.to_bytes()).unwrap();
        assert!(note.stateless && !note.volatile);
        assert!(note.resequenced(44).unwrap().0.stateless);
        assert_eq!(Logged::ts_of(&bytes), Some(1_700_000_000_000));
        let frame = ServerFrame::decode(&back.frame, usize::MAX).unwrap();
        assert!(matches!(frame, ServerFrame::Event(e) if e.seq == 42 && e.kind == "meter.power"));
    }

    #[test]
    fn corrupt_records_are_none() {
        assert_eq!(Logged::from_bytes(1, &[]), None);
        assert_eq!(Logged::from_bytes(1, &[0, 1, 2]), None);
        assert_eq!(
            Logged::from_bytes(1, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, b'a']),
            None
        );
    }
}
