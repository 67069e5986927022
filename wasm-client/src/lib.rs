//! The browser client: a thin I/O shell around `shared-protocol`.
//!
//! Every decision (when to reconnect, what to resend, whether the link is
//! stale, the quality score) is made by `shared_protocol::client::ClientSession`;
//! this crate only moves bytes, fires one timer, persists to localStorage and
//! calls JavaScript listeners.
//!
//! | module | job |
//! |---|---|
//! | [`link`] | the `Link` class: the JS API |
//! | [`js`] | conversions to and from plain JS values (by hand: no serde in the wasm), calling listeners |
//! | [`options`] | constructor options and their defaults |
//! | [`storage`] | localStorage, used defensively |
//! | [`console`] | the devtools console API |
//! | `tabs` | one connection for all tabs: leader election, relay, handover |

pub mod console;
pub mod js;
pub mod link;
pub mod options;
pub mod storage;
mod tabs;

pub use link::Link;

/// Talc instead of the default dlmalloc: the same job in about a third of
/// the code (the package's size target is 60 KiB gzipped), and faster.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
