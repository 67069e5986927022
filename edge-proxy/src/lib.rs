//! The edge proxy's reusable parts, as a library: the hardware backends the
//! bridge drives, and the rig port's sans-IO core (here so that the fuzz
//! target can reach it). (The binary's own modules live under `main.rs`.)

pub mod hardware;
#[path = "rigport/core/mod.rs"]
pub mod rigcore;
