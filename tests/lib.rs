//! Shared harness for the end-to-end tests: start the real `edge-proxy`
//! binary on a free port with its own data directory, kill it (`SIGKILL`) or
//! stop it (`SIGTERM`), and talk to it with a native protocol client.

pub mod client;
pub mod mount;
pub mod nats;
pub mod proxy;
pub mod relay;
pub mod session_client;
pub mod tools;

pub use client::TestClient;
pub use nats::Nats;
pub use proxy::Proxy;
