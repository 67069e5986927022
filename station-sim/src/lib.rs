//! Simulated station hardware for the demo and the tests.
//!
//! | module | job |
//! |---|---|
//! | [`hamlib`] | a real `rigctld` with Hamlib's dummy rig, for the rigctld backend's tests |
//! | [`kenwood`] | a Kenwood TS-2000 style CAT radio: command framing with resync, and the radio's state (pure, no I/O) |
//! | [`lp100`] | a Telepost LP-100A wattmeter that reads the simulated radio's RF output |
//! | [`pty`] | serves a simulator on a real pseudo-terminal, with fault injection |

pub mod hamlib;
pub mod kenwood;
pub mod lp100;
pub mod pty;
