//! The edge proxy's reusable parts, as a library: the hardware backends the
//! bridge drives. (The binary's own modules live under `main.rs`.)

pub mod hardware;
