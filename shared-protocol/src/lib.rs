//! The protocol and every connection policy of the system, as pure sans-IO code.
//!
//! Nothing in this crate opens a socket, starts a timer or reads a clock. Every
//! state machine takes the current time as a parameter (`now_ms`, milliseconds
//! on a monotonic clock chosen by the caller) and returns what should happen;
//! the browser client and the edge proxy are thin shells that move bytes and
//! fire timers. That is what lets the logic be tested with a fake clock and
//! property tests, natively and fast (the model is `quinn-proto` / `str0m`).
//!
//! | module | job |
//! |---|---|
//! | [`frame`] | wire frames, the versioned envelope, the typed decoder |
//! | [`client`] | the browser client's whole behaviour: one state machine |
//! | [`backoff`] | exponential backoff with jitter, attempt limits, profiles |
//! | [`heartbeat`] | ping schedule, pong timeout, staleness, RTT statistics |
//! | [`quality`] | the 0..1 link quality score and its inputs |
//! | [`health`] | the 0..100 health score with colour bands |
//! | [`receiver`] | receive side: exactly-once, in-order delivery by `seq`, gaps |
//! | [`txwatchdog`] | the dead-man switch that unkeys a transmitter nobody is holding |
//! | [`cat`] | Kenwood-style CAT framing with resync, `IF;` parsing, the state its answers and auto-information reports tell, in arrival order |
//! | [`link`] | the hardware link manager: states, backoff, TX-drop fast path, `EVENT_*` |
//! | [`meter`] | the Telepost LP-100A wattmeter protocol: poll, reply framing, parsing |
//! | [`power`] | the RF power monitor: zero-power warning and critical, trend |
//! | [`outbox`] | send side: `client_seq`, the reliable outbox, acceptance |
//! | [`peerclock`] | a peer's clock offset from its timestamps: deadlines judged without trusting clocks |
//! | [`radiopoll`] | when the radio link polls the radio's state and its S-meter (fast keyed, slow with auto information, adaptive without) |

pub mod backoff;
pub mod cat;
pub mod client;
mod codec;
pub mod frame;
pub mod health;
pub mod heartbeat;
pub mod link;
pub mod meter;
pub mod outbox;
pub mod peerclock;
pub mod power;
pub mod quality;
pub mod radiopoll;
pub mod receiver;
pub mod txwatchdog;

pub use frame::{ClientFrame, DecodeError, ServerFrame, MAX_FRAME_BYTES, PROTOCOL_VERSION};

/// Milliseconds on the caller's monotonic clock. Only differences matter.
pub type Millis = u64;

/// Event and command kinds that key a transmitter. They are never stored in an
/// outbox and never replayed: a buffered "key the transmitter" must not fire
/// minutes later (DESIGN.md, guarantee 4).
pub const TRANSMIT_KINDS: &[&str] = &["radio.ptt"];

/// Stable insertion sort by key. The lists sorted here are short (an RTT
/// window, an outbox) and usually sorted already; the standard library's
/// sorts would add about 7 KB to the browser module for no gain.
pub(crate) fn sort_small_by_key<T, K: Ord>(v: &mut [T], key: impl Fn(&T) -> K) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && key(&v[j - 1]) > key(&v[j]) {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// Appends to a bounded, oldest-first list, dropping (and returning) the
/// oldest entry when it is full. A `Vec` rather than a `VecDeque`: these
/// lists are short (a history, an RTT window, an outbox), so moving them down
/// by one costs nothing worth measuring, and `VecDeque`'s ring code was
/// 2.6 KB of the browser module.
pub fn push_bounded<T>(list: &mut Vec<T>, capacity: usize, item: T) -> Option<T> {
    let oldest = (list.len() >= capacity.max(1)).then(|| list.remove(0));
    list.push(item);
    oldest
}

/// Whether a publish of this kind keys a transmitter (see [`TRANSMIT_KINDS`]).
pub fn is_transmit_kind(kind: &str) -> bool {
    TRANSMIT_KINDS.contains(&kind)
}

/// Whether a command keys the transmitter: `radio.ptt {on: true}`. The one
/// definition the proxy's admission, its TX watchdog and its radio link
/// share (a `radio.ptt` whose `on` is not a boolean is refused where it
/// enters, so they can never disagree).
pub fn keys_transmitter(kind: &str, payload: &frame::Payload) -> bool {
    is_transmit_kind(kind) && payload["on"].as_bool() == Some(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_sort_is_stable_and_sorted() {
        let mut v = vec![(3, 'a'), (1, 'b'), (3, 'c'), (0, 'd'), (1, 'e')];
        super::sort_small_by_key(&mut v, |p| p.0);
        assert_eq!(v, [(0, 'd'), (1, 'b'), (1, 'e'), (3, 'a'), (3, 'c')]);
    }

    #[test]
    fn bounded_list_drops_the_oldest() {
        let mut v = Vec::new();
        assert_eq!(super::push_bounded(&mut v, 2, 1), None);
        assert_eq!(super::push_bounded(&mut v, 2, 2), None);
        assert_eq!(super::push_bounded(&mut v, 2, 3), Some(1));
        assert_eq!(v, [2, 3]);
        let mut one = vec![];
        super::push_bounded(&mut one, 0, 4);
        assert_eq!(
            super::push_bounded(&mut one, 0, 5),
            Some(4),
            "capacity 0 keeps one"
        );
        assert_eq!(one, [5]);
    }
}
