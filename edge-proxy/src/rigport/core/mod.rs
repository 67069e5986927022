//! The rig port's sans-IO core: everything the rig port decides, as pure
//! functions and small state machines, with no sockets, timers or clock
//! reads (time is a parameter). It reads outside input (any program on the
//! network, any program on the virtual serial port), so it is unit- and
//! property-tested and fuzzed (`fuzz/fuzz_targets/rigctl_session.rs`).
//!
//! | module | job |
//! |---|---|
//! | [`line`] | cuts a byte stream into bounded `\n` lines (an over-long line is an error, never a growing buffer) |
//! | [`request`] | one line of Hamlib's NET rigctl protocol: short and long command names, `+` / `;` / `|` / `,` extended responses, VFO arguments |
//! | [`reply`] | answers in rigctld's format: values, `RPRT n`, the extended (labelled) form |
//! | [`modes`] | Hamlib mode names to the station's (Kenwood) names and back, `PKTUSB`/`PKTLSB` included |
//! | [`caps`] | `\dump_state` (protocol 1) advertising what the station really can do |
//! | [`station`] | the station as the rig port sees it (frequency, mode, PTT, meter) |
//! | [`session`] | one connection: a line in, an answer or a set to carry out |
//! | [`vcat`] | the virtual Kenwood TS-2000 serial port's answers and sets |
//! | [`allow`] | the source-network allow-list (`rigctl_allow`) |
//!
//! It lives in the library target (`edge_proxy::rigcore`) so that the fuzz
//! target can reach it; the I/O shell is the binary's `rigport` module.

pub mod allow;
pub mod caps;
pub mod line;
pub mod modes;
pub mod reply;
pub mod request;
pub mod session;
pub mod station;
pub mod vcat;

/// Hamlib's error codes as the protocol sends them (`RPRT -n`): always
/// negative; a positive code is taken for a protocol error by clients.
pub mod code {
    pub const OK: i32 = 0;
    /// Invalid parameter (`F abc`, garbage, an over-long line).
    pub const EINVAL: i32 = -1;
    /// The radio did not confirm within the timeout.
    pub const ETIMEOUT: i32 = -5;
    /// The log could not take the command.
    pub const EIO: i32 = -6;
    /// Protocol error.
    pub const EPROTO: i32 = -8;
    /// Refused: the TX watchdog's time-out lock-out.
    pub const ERJCTED: i32 = -9;
    /// A command this station does not offer.
    pub const ENAVAIL: i32 = -11;
    /// The port is read-only (`rigctl_role = "read"`).
    pub const ESECURITY: i32 = -19;
}
