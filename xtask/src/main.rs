//! `cargo xtask <task>`: the project's one-command entry points.
//!
//! - `cargo xtask demo`: builds everything and runs the edge proxy with
//!   simulated hardware, serving the dashboard at a printed URL.
//! - `cargo xtask test`: installs what is missing, then runs every check and
//!   test (format, clippy, native, property, end-to-end, browser) and prints
//!   one summary line.
//! - `cargo xtask dist`: Debian packages for amd64 and arm64 in target/dist.

mod bench;
mod dist;
mod names;
mod setup;
mod tasks;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Project tasks for the connection layer", long_about = None)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run the edge proxy with simulated hardware and serve the dashboard.
    Demo {
        /// Port for the dashboard and WebSocket endpoint.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Two proxies on one NATS JetStream log (a local nats-server): site A
        /// with the simulated hardware on --port, site B on the next port.
        #[arg(long)]
        shared: bool,
    },
    /// Install missing tools, then run every check and test.
    Test {
        /// Skip `cargo fmt --check` and clippy (quicker local runs).
        #[arg(long)]
        no_lint: bool,
    },
    /// Install the tools the tests and the demo need (wasm target, wasm-bindgen-cli, Chromium).
    Setup,
    /// Build the npm package of the browser client into wasm-client/pkg.
    Pkg,
    /// Build the Debian packages (amd64 and arm64, a Raspberry Pi) into target/dist.
    Dist {
        /// Package the debug builds into target/dist-check instead, as the
        /// test command does for the `dist` suite (quicker; not for installing).
        #[arg(long)]
        check: bool,
    },
    /// Benchmark the edge proxy against Socket.IO 4: the same Node client
    /// code and flow control on both, interleaved rounds (bench/compare).
    Bench(bench::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Demo { port, shared } => tasks::demo(port, shared),
        Task::Test { no_lint } => tasks::test(!no_lint),
        Task::Setup => setup::all(),
        Task::Pkg => tasks::pkg().map(|_| ()),
        Task::Dist { check } => dist::dist_all(if check {
            dist::Build::Check
        } else {
            dist::Build::Dist
        })
        .map(|_| ()),
        Task::Bench(args) => bench::bench(args),
    }
}
