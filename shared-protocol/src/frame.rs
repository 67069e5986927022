//! Wire frames: one MessagePack value per binary WebSocket message.
//!
//! Every frame travels in a two-element envelope `[version, body]` so a peer
//! speaking another protocol version is told apart before its body is read,
//! on every frame and not only on the first. `body` is what
//! `rmp_serde::to_vec_named` writes for these types (an enum variant is a
//! one-key map `{"Variant": {field: value, ...}}`), produced and read by the
//! hand-written [`crate::codec`]. docs/PROTOCOL.md is the full reference.
//!
//! The decoder never panics: truncated, oversized, wrong-version, unknown-variant,
//! too-deep and trailing-garbage input each give a distinct [`DecodeError`].

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. Carried in every frame's envelope.
pub const PROTOCOL_VERSION: u16 = 1;

/// Default largest frame a peer accepts, in bytes (the proxy announces its own
/// limit in [`Welcome::limits`]).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Deepest nesting a payload may have. Keeps a hostile frame from exhausting
/// the stack of a browser or a proxy worker thread.
pub const MAX_DEPTH: usize = 32;

/// An application value: any MessagePack value (maps, arrays, strings, numbers).
pub type Payload = rmpv::Value;

// ---------------------------------------------------------------- client -> proxy

/// Frames a client sends to the proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    Hello(Hello),
    Publish(Publish),
    /// Cumulative: every event with `seq <= upto` has been delivered.
    Ack {
        upto: u64,
    },
    Ping(Ping),
    Pong(Ping),
}

/// First frame on every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Persistent across reconnects and page reloads (kept in localStorage).
    pub client_id: String,
    /// Shared-secret token; required when the proxy is configured with tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Where the client stopped, if it has ever received anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// The client's wall clock (Unix ms) when it sent this frame: one sample
    /// from which the proxy learns how far the client's clock is from its
    /// own, so that deadlines are judged without trusting either clock
    /// (docs/PROTOCOL.md, "Deadlines without trusting clocks").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<u64>,
    /// The client reads several frames from one message
    /// ([`ServerFrame::decode_each`]): the proxy may then put the frames of
    /// one wake-up into one message, instead of one message each.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub epoch: u64,
    /// The highest `seq` the application has been given.
    pub last_seq: u64,
}

/// An event or command from the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publish {
    /// Per-client counter, strictly increasing; the proxy applies each
    /// `(client_id, client_seq)` at most once.
    pub client_seq: u64,
    pub kind: String,
    pub payload: Payload,
    pub delivery: Delivery,
    /// Deadline on the client's own wall clock (Unix ms); past it the proxy
    /// rejects the command. The proxy never compares it with its own clock
    /// directly: see `ttl_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// The lifetime the client gave the command when it created it, so
    /// `expires_at_ms - ttl_ms` is the client's clock at that moment (a clock
    /// sample, like `Hello.t`). Required for transmit commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// How hard the client tries to get a publish through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Kept in the outbox (and localStorage) until the proxy accepts it.
    Reliable,
    /// Sent if connected, dropped otherwise.
    Volatile,
}

/// Ping and pong share a body; the pong echoes the ping's nonce and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    pub nonce: u32,
    /// The sender's clock when the ping left, in ms; echoed unchanged.
    pub t: u64,
}

// ---------------------------------------------------------------- proxy -> client

/// Frames the proxy sends to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    Welcome(Welcome),
    Event(Event),
    Snapshot(Snapshot),
    Gap(Gap),
    /// Every publish with `client_seq <= upto` is done: applied, or rejected
    /// with a [`ServerFrame::Rejected`] sent before this frame.
    Accepted {
        upto: u64,
    },
    Rejected(Rejected),
    Ping(Ping),
    Pong(Ping),
    /// Sent just before the proxy closes the connection.
    Error(ErrorFrame),
    /// Come back later, not at once: sent before the proxy closes for a
    /// restart, or instead of a session when it is over its handshake
    /// budget. The client waits `retry_after_ms` plus a uniformly random
    /// share of `jitter_ms` instead of its own backoff, so a restart of a
    /// proxy with a thousand dashboards does not become a reconnect storm.
    Drain(Drain),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    pub retry_after_ms: u64,
    pub jitter_ms: u64,
    pub reason: DrainReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainReason {
    /// The proxy is stopping or restarting.
    Shutdown,
    /// Too many handshakes this second (admission control).
    Overload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Identifies this connection in the proxy's logs and `/stats`.
    pub session: String,
    /// Changes only when the log's history is lost (a fresh store).
    pub epoch: u64,
    /// The newest durable `seq` at the time of the welcome.
    pub head_seq: u64,
    /// True when what follows is a replay from `resume.last_seq + 1`.
    pub resumed: bool,
    /// The proxy's ping interval; the client may use it as its own.
    pub heartbeat_ms: u32,
    pub limits: Limits,
    /// What this client's token allows, so a dashboard can disable its
    /// controls up front. Absent from older proxies.
    #[serde(default)]
    pub access: Option<Access>,
}

/// What a client may do: watch and publish notes, or also command the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Control,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_frame_bytes: u32,
    pub max_publish_per_sec: u32,
    /// How many events behind a client may fall before it gets a snapshot.
    pub max_behind: u32,
    /// How long events are kept for replay.
    pub retention_ms: u64,
    /// Most publishes a client may have sent and not yet seen answered
    /// (`Accepted` or `Rejected`); a reliable publish over it closes the
    /// connection, a volatile one is refused. Absent from older proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_window: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Global, gap-free, strictly increasing within an epoch; starts at 1.
    pub seq: u64,
    pub kind: String,
    /// Wall-clock time the proxy logged it (Unix ms).
    pub ts_ms: u64,
    pub payload: Payload,
}

/// The last value of every state key, for a client that cannot resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The state reflects every event up to and including this `seq`.
    pub upto: u64,
    pub state: State,
}

/// The last payload of every kind: a map from kind to payload, kept sorted
/// by kind, so it encodes exactly as a `BTreeMap` would (a MessagePack map in
/// key order).
///
/// A sorted `Vec` rather than a `BTreeMap` because the browser client carries
/// this type: the B-tree's code was about 5.6 KB of the wasm module, a sorted
/// vector's is a few hundred bytes, and a station has tens of kinds, not
/// thousands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State(Vec<(String, Payload)>);

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Sets `kind`'s payload, replacing the one it had.
    pub fn insert(&mut self, kind: String, payload: Payload) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&kind)) {
            Ok(at) => self.0[at].1 = payload,
            Err(at) => self.0.insert(at, (kind, payload)),
        }
    }

    pub fn get(&self, kind: &str) -> Option<&Payload> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(kind))
            .ok()
            .map(|at| &self.0[at].1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(kind, payload)` in kind order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Payload)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl FromIterator<(String, Payload)> for State {
    /// Later pairs replace earlier ones with the same kind, as in a map.
    fn from_iter<I: IntoIterator<Item = (String, Payload)>>(pairs: I) -> State {
        let mut state = State::new();
        for (kind, payload) in pairs {
            state.insert(kind, payload);
        }
        state
    }
}

impl<'a> IntoIterator for &'a State {
    type Item = (&'a String, &'a Payload);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Payload)>,
        fn(&'a (String, Payload)) -> (&'a String, &'a Payload),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Serialize for State {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<State, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = State;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map from kind to payload")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<State, A::Error> {
                let mut state = State::new();
                while let Some((kind, payload)) = map.next_entry()? {
                    state.insert(kind, payload);
                }
                Ok(state)
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// Events `from..=to` will never be delivered. Never silent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
    pub reason: GapReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// Older than the retention window (age or count).
    Retention,
    /// The client's epoch is not the log's: its history was lost.
    EpochChanged,
    /// The client fell more than `max_behind` events behind.
    TooFarBehind,
    /// The client was slow ("hot"): volatile events superseded by a newer
    /// event of the same kind were skipped; the newest value was delivered.
    Coalesced,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub client_seq: u64,
    pub reason: RejectReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// `expires_at_ms` was in the past when the proxy saw it.
    Expired,
    /// The token's role may not send this kind (commands need `control`).
    Forbidden,
    /// Over the per-client publish rate.
    RateLimited,
    /// The command is not understood or its payload is wrong.
    Invalid,
    /// The target (e.g. the radio link) cannot take commands now.
    Unavailable,
    /// The transmit time-out timer fired for this client: PTT-on is refused
    /// until the client sends PTT-off (releases the key).
    TxTimeout,
    /// The station state (what a `Snapshot` carries) is at its limit of
    /// kinds or bytes, and this would grow it.
    StateFull,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The bytes were not a frame.
    Malformed,
    /// Larger than `limits.max_frame_bytes`.
    TooLarge,
    /// The envelope's version is not one the proxy speaks.
    UnsupportedVersion,
    /// The first frame was not `Hello`, or `Hello` came twice.
    ProtocolViolation,
    /// The token is missing or wrong.
    Unauthorized,
    /// The client was silent past the stale timeout.
    Stale,
    /// Another connection took over this `client_id`.
    Replaced,
    /// The proxy is shutting down.
    ShuttingDown,
    /// The proxy cannot store events now (e.g. its disk is full). Nothing
    /// unacknowledged was applied: keep the outbox and retry later.
    Unavailable,
}

// ---------------------------------------------------------------- codec

/// Why a byte string is not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is {len} bytes, larger than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame ended early")]
    Truncated,
    #[error("protocol version {got} is not supported (this side speaks {supported})")]
    UnsupportedVersion { got: u64, supported: u16 },
    #[error("unknown frame or field variant: {0}")]
    UnknownVariant(String),
    #[error("frame nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("{0} bytes after the end of the frame")]
    TrailingBytes(usize),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl DecodeError {
    /// The error code to send back to a peer whose frame failed to decode.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::TooLarge,
            DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::Malformed,
        }
    }
}

/// The hand-written encoder cannot fail; the type keeps `encode` fallible so
/// that a future encoder may report problems without an API change.
#[derive(Debug, thiserror::Error)]
#[error("frame could not be encoded: {0}")]
pub struct EncodeError(String);

fn decode_with<T>(
    bytes: &[u8],
    max_len: usize,
    body: impl FnOnce(&mut crate::codec::R<'_>) -> Result<T, crate::codec::Bad>,
) -> Result<T, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    let mut reader = crate::codec::R::new(bytes);
    reader.envelope()?;
    // No pre-pass for nesting: the reader counts the payload's depth and
    // stops at `MAX_DEPTH`, so a hostile frame recurses at most that deep.
    let value = body(&mut reader)?;
    if reader.remaining() > 0 {
        return Err(DecodeError::TrailingBytes(reader.remaining()));
    }
    Ok(value)
}

impl ClientFrame {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(crate::codec::encode_client(self))
    }

    /// Decodes one frame, rejecting anything larger than `max_len` bytes.
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Self, DecodeError> {
        decode_with(bytes, max_len, crate::codec::decode_client)
    }
}

/// The bytes of `ServerFrame::Snapshot(Snapshot { upto, state })`, without
/// building (and copying the state into) the frame.
pub fn encode_snapshot(upto: u64, state: &State) -> Vec<u8> {
    crate::codec::encode_snapshot(upto, state)
}

impl ServerFrame {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(crate::codec::encode_server(self))
    }

    /// Decodes one frame, rejecting anything larger than `max_len` bytes.
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Self, DecodeError> {
        decode_with(bytes, max_len, crate::codec::decode_server)
    }

    /// The frame at the front of `bytes`, at most `max_len` bytes long;
    /// `bytes` is left on what follows it. A message to a client that said
    /// `Hello{batch}` is one or more frames back to back (MessagePack values
    /// delimit themselves): read it with this until it is empty, or with
    /// [`ServerFrame::decode_each`]. The frame's extent is found first and
    /// then read by [`ServerFrame::decode`], so there is one frame reader
    /// (and the browser's wasm, which does not read batches, is unchanged).
    #[inline]
    pub fn decode_next(bytes: &mut &[u8], max_len: usize) -> Result<Self, DecodeError> {
        let mut reader = crate::codec::R::new(bytes);
        reader.skip_value(0)?;
        let (frame, rest) = bytes.split_at(bytes.len() - reader.remaining());
        let frame = ServerFrame::decode(frame, max_len)?;
        *bytes = rest;
        Ok(frame)
    }

    /// The frames of one message to a client that said `Hello{batch}`, in
    /// order; each at most `max_len` bytes, and the first error ends them.
    #[inline]
    pub fn decode_each(
        bytes: &[u8],
        max_len: usize,
    ) -> impl Iterator<Item = Result<ServerFrame, DecodeError>> + '_ {
        let mut rest = bytes;
        let mut more = true;
        std::iter::from_fn(move || {
            if !more {
                return None;
            }
            let frame = ServerFrame::decode_next(&mut rest, max_len);
            more = frame.is_ok() && !rest.is_empty();
            Some(frame)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `State` is a map sorted by kind: the same bytes as a `BTreeMap`,
    /// later values replacing earlier ones, read back whole.
    #[test]
    fn state_is_a_sorted_map() {
        let pairs = [("radio", 1), ("meter", 2), ("alarm", 3), ("meter", 4)]
            .map(|(k, v)| (k.to_string(), Payload::from(v)));
        let state: State = pairs.iter().cloned().collect();
        let map: std::collections::BTreeMap<_, _> = pairs.into_iter().collect();
        assert_eq!(state.len(), 3);
        assert_eq!(state.get("meter"), Some(&Payload::from(4)));
        assert_eq!(state.get("nothing"), None);
        assert_eq!(
            state.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["alarm", "meter", "radio"]
        );
        let bytes = rmp_serde::to_vec_named(&state).unwrap();
        assert_eq!(bytes, rmp_serde::to_vec_named(&map).unwrap());
        assert_eq!(rmp_serde::from_slice::<State>(&bytes).unwrap(), state);
        assert!(rmp_serde::from_slice::<State>(&[0x91, 0x01]).is_err());
    }

    fn hello() -> ClientFrame {
        ClientFrame::Hello(Hello {
            client_id: "dash-1".into(),
            token: None,
            resume: Some(Resume {
                epoch: 7,
                last_seq: 41,
            }),
            t: Some(1_700_000_000_000),
            batch: false,
        })
    }

    /// The browser shell shows these names to JavaScript with `as_str` and
    /// reads them back with `from_name`; a renamed variant must not give the
    /// JS API another name than the wire (serde's).
    #[test]
    fn hand_written_names_are_the_serde_names() {
        fn check<T: Serialize + Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            as_str: fn(T) -> &'static str,
            from_name: Option<fn(&str) -> Option<T>>,
        ) {
            for &v in all {
                let serde = serde_json::to_value(v).unwrap();
                assert_eq!(serde.as_str(), Some(as_str(v)));
                if let Some(from_name) = from_name {
                    assert_eq!(from_name(as_str(v)), Some(v));
                }
            }
        }
        use crate::client::LinkState as L;
        use ErrorCode as E;
        use GapReason as G;
        use RejectReason as R;
        check(
            &[Access::Read, Access::Control],
            Access::as_str,
            Some(Access::from_name),
        );
        check(
            &[Delivery::Reliable, Delivery::Volatile],
            Delivery::as_str,
            Some(Delivery::from_name),
        );
        check(
            &[DrainReason::Shutdown, DrainReason::Overload],
            DrainReason::as_str,
            Some(DrainReason::from_name),
        );
        check(
            &[G::Retention, G::EpochChanged, G::TooFarBehind, G::Coalesced],
            G::as_str,
            Some(G::from_name),
        );
        check(
            &[
                R::Expired,
                R::Forbidden,
                R::RateLimited,
                R::Invalid,
                R::Unavailable,
                R::TxTimeout,
                R::StateFull,
            ],
            R::as_str,
            Some(R::from_name),
        );
        let codes = [
            E::Malformed,
            E::TooLarge,
            E::UnsupportedVersion,
            E::ProtocolViolation,
            E::Unauthorized,
            E::Stale,
            E::Replaced,
            E::ShuttingDown,
            E::Unavailable,
        ];
        check(&codes, E::as_str, Some(E::from_name));
        let states = [
            L::Connecting,
            L::Connected,
            L::Reconnecting,
            L::Disconnected,
            L::Stale,
            L::Failed,
        ];
        check(&states, L::as_str, None);
    }

    #[test]
    fn round_trip_and_envelope() {
        let bytes = hello().encode().unwrap();
        assert_eq!(bytes[0], 0x92, "a two-element array");
        assert_eq!(bytes[1], PROTOCOL_VERSION as u8);
        assert_eq!(
            ClientFrame::decode(&bytes, MAX_FRAME_BYTES).unwrap(),
            hello()
        );
    }

    #[test]
    fn a_batched_message_reads_frame_by_frame_and_stops_at_the_first_error() {
        let ping = ServerFrame::Ping(Ping {
            nonce: 1,
            t: 1 << 40,
        })
        .encode()
        .unwrap();
        let accepted = ServerFrame::Accepted { upto: 7 }.encode().unwrap();
        let message = [ping.clone(), accepted.clone()].concat();
        let frames: Vec<_> = ServerFrame::decode_each(&message, usize::MAX)
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            frames,
            [
                ServerFrame::Ping(Ping {
                    nonce: 1,
                    t: 1 << 40
                }),
                ServerFrame::Accepted { upto: 7 }
            ]
        );
        // One frame is a batch of one, as `decode` reads it.
        let one: Vec<_> = ServerFrame::decode_each(&ping, usize::MAX).collect();
        assert_eq!(one, [ServerFrame::decode(&ping, usize::MAX)]);
        // An empty message is an error, not zero frames.
        let empty: Vec<_> = ServerFrame::decode_each(&[], usize::MAX).collect();
        assert!(matches!(empty[..], [Err(DecodeError::Truncated)]));
        // Garbage after a good frame: the frame, then one error, then nothing.
        let bad = [ping.clone(), vec![0xc1, 0x01, 0x02]].concat();
        let read: Vec<_> = ServerFrame::decode_each(&bad, usize::MAX).collect();
        assert_eq!(read.len(), 2);
        assert!(read[0].is_ok() && read[1].is_err());
        // A header claiming 4 billion entries in a few bytes: one error,
        // found at the end of the bytes, not after 4 billion steps.
        let claim: Vec<_> =
            ServerFrame::decode_each(&[0xdf, 0xff, 0xff, 0xff, 0xff], usize::MAX).collect();
        assert!(matches!(claim[..], [Err(DecodeError::Truncated)]));
        // The size limit is each frame's, not the message's.
        let limit = ping.len().max(accepted.len());
        assert!(ServerFrame::decode_each(&message, limit).all(|f| f.is_ok()));
        assert!(ping.len() > accepted.len());
        let read: Vec<_> = ServerFrame::decode_each(&message, ping.len() - 1).collect();
        assert!(matches!(read[..], [Err(DecodeError::TooLarge { .. })]));
        let backwards = [accepted.clone(), ping.clone()].concat();
        let read: Vec<_> = ServerFrame::decode_each(&backwards, ping.len() - 1).collect();
        assert!(matches!(
            read[..],
            [Ok(_), Err(DecodeError::TooLarge { .. })]
        ));
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let bytes = hello().encode().unwrap();
        for cut in 0..bytes.len() {
            let err = ClientFrame::decode(&bytes[..cut], MAX_FRAME_BYTES).unwrap_err();
            assert!(
                matches!(err, DecodeError::Truncated | DecodeError::Malformed(_)),
                "cut at {cut}: {err:?}"
            );
        }
        assert_eq!(
            ClientFrame::decode(&bytes[..3], MAX_FRAME_BYTES),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn oversized_is_rejected_before_parsing() {
        let bytes = hello().encode().unwrap();
        assert_eq!(
            ClientFrame::decode(&bytes, 4),
            Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: 4
            })
        );
    }

    #[test]
    fn wrong_version_is_named() {
        let mut bytes = hello().encode().unwrap();
        bytes[1] = 9;
        assert_eq!(
            ClientFrame::decode(&bytes, MAX_FRAME_BYTES),
            Err(DecodeError::UnsupportedVersion {
                got: 9,
                supported: PROTOCOL_VERSION
            })
        );
    }

    #[test]
    fn unknown_variant_is_named() {
        let mut out = Vec::new();
        rmp::encode::write_array_len(&mut out, 2).unwrap();
        rmp::encode::write_uint(&mut out, 1).unwrap();
        rmp::encode::write_map_len(&mut out, 1).unwrap();
        rmp::encode::write_str(&mut out, "Teleport").unwrap();
        rmp::encode::write_nil(&mut out).unwrap();
        assert!(matches!(
            ClientFrame::decode(&out, MAX_FRAME_BYTES),
            Err(DecodeError::UnknownVariant(_))
        ));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = hello().encode().unwrap();
        bytes.push(0xc0);
        assert_eq!(
            ClientFrame::decode(&bytes, MAX_FRAME_BYTES),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    /// A payload 10,000 levels deep is refused at level 33, where the
    /// reader stops (it recurses no deeper), and so is such a frame body.
    #[test]
    fn deep_nesting_is_rejected_without_recursion() {
        let deep = |out: &mut Vec<u8>| {
            for _ in 0..10_000 {
                rmp::encode::write_array_len(out, 1).unwrap();
            }
            rmp::encode::write_nil(out).unwrap();
        };
        let mut publish = Vec::new();
        rmp::encode::write_array_len(&mut publish, 2).unwrap();
        rmp::encode::write_uint(&mut publish, 1).unwrap();
        rmp::encode::write_map_len(&mut publish, 1).unwrap();
        rmp::encode::write_str(&mut publish, "Publish").unwrap();
        rmp::encode::write_map_len(&mut publish, 1).unwrap();
        rmp::encode::write_str(&mut publish, "payload").unwrap();
        deep(&mut publish);
        assert_eq!(
            ClientFrame::decode(&publish, usize::MAX),
            Err(DecodeError::TooDeep)
        );
        let mut body = Vec::new();
        rmp::encode::write_array_len(&mut body, 2).unwrap();
        rmp::encode::write_uint(&mut body, 1).unwrap();
        deep(&mut body);
        assert!(matches!(
            ClientFrame::decode(&body, usize::MAX),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn error_codes_follow_decode_errors() {
        assert_eq!(
            DecodeError::TooLarge { len: 2, max: 1 }.code(),
            ErrorCode::TooLarge
        );
        assert_eq!(
            DecodeError::UnsupportedVersion {
                got: 2,
                supported: 1
            }
            .code(),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(DecodeError::Truncated.code(), ErrorCode::Malformed);
    }
}

#[cfg(test)]
mod depth_tests {
    use super::*;

    fn nested(levels: usize) -> Payload {
        let mut p = Payload::from(1u64);
        for _ in 0..levels {
            p = Payload::Array(vec![p]);
        }
        p
    }

    fn publish(levels: usize) -> Vec<u8> {
        ClientFrame::Publish(Publish {
            client_seq: 1,
            kind: "note".into(),
            payload: nested(levels),
            delivery: Delivery::Reliable,
            expires_at_ms: None,
            ttl_ms: None,
        })
        .encode()
        .unwrap()
    }

    #[test]
    fn payloads_nest_32_levels_not_33_in_every_frame() {
        assert!(ClientFrame::decode(&publish(MAX_DEPTH), usize::MAX).is_ok());
        assert!(matches!(
            ClientFrame::decode(&publish(MAX_DEPTH + 1), usize::MAX),
            Err(DecodeError::TooDeep)
        ));
        let event = |levels| {
            ServerFrame::Event(Event {
                seq: 1,
                kind: "note".into(),
                ts_ms: 0,
                payload: nested(levels),
            })
            .encode()
            .unwrap()
        };
        assert!(ServerFrame::decode(&event(MAX_DEPTH), usize::MAX).is_ok());
        assert!(ServerFrame::decode(&event(MAX_DEPTH + 1), usize::MAX).is_err());
        let snapshot = |levels| {
            let mut state = State::new();
            state.insert("deep".into(), nested(levels));
            ServerFrame::Snapshot(Snapshot { upto: 1, state })
                .encode()
                .unwrap()
        };
        assert!(ServerFrame::decode(&snapshot(MAX_DEPTH), usize::MAX).is_ok());
        assert!(ServerFrame::decode(&snapshot(MAX_DEPTH + 1), usize::MAX).is_err());
        // The batch reader finds where the deepest allowed frames end.
        let batch = [event(MAX_DEPTH), snapshot(MAX_DEPTH)].concat();
        assert!(ServerFrame::decode_each(&batch, usize::MAX).all(|f| f.is_ok()));
        assert_eq!(ServerFrame::decode_each(&batch, usize::MAX).count(), 2);
        let too_deep = [snapshot(MAX_DEPTH + 1), event(1)].concat();
        assert!(matches!(
            ServerFrame::decode_each(&too_deep, usize::MAX).collect::<Vec<_>>()[..],
            [Err(DecodeError::TooDeep)]
        ));
    }
}
