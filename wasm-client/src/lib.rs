//! The browser client: a thin I/O shell around `shared-protocol`.
//!
//! This crate only moves bytes and fires timers; every decision lives in the
//! sans-IO state machines of `shared-protocol`. [`codec`] exposes the frame
//! codec to JavaScript (used by tests and by tools that speak the protocol
//! from JS).

pub mod codec;
