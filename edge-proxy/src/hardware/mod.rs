//! Hardware backends: how the proxy talks to a radio. Each backend is a thin
//! I/O client; the decisions (when to reconnect, what a TX drop is) live in
//! `shared_protocol::link` and `shared_protocol::power`.
//!
//! | backend | protocol |
//! |---|---|
//! | [`kenwood`] | Kenwood-style ASCII CAT over a serial port (`tokio-serial`) |
//! | [`rigctld`] | Hamlib's `rigctld` over TCP, extended response protocol (covers hundreds of radios) |

pub mod kenwood;
pub mod rigctld;
