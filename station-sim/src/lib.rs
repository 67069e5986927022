//! Simulated station hardware for the demo and the tests.
//!
//! | module | job |
//! |---|---|
//! | [`kenwood`] | a Kenwood TS-2000 style CAT radio: command framing with resync, and the radio's state (pure, no I/O) |
//! | [`pty`] | serves a simulator on a real pseudo-terminal, with fault injection |

pub mod kenwood;
pub mod pty;
