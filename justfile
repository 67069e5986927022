# Short recipes for people who use `just`; each is a thin alias.

# Run the demo: proxy with simulated hardware, dashboard at the printed URL.
demo:
    cargo xtask demo

# Install what is missing, then run every check and test.
test:
    cargo xtask test

# Tests without fmt/clippy (quicker while working).
quick:
    cargo xtask test --no-lint

# Property tests and unit tests of the protocol core only (seconds).
protocol:
    cargo test -p shared-protocol

# Fuzz the frame decoder (needs `cargo install cargo-fuzz`).
fuzz:
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run frame_decoder -- -max_total_time=60

# Build the npm package of the browser client into wasm-client/pkg.
pkg:
    cargo xtask pkg

# Benchmarks: the edge proxy against Socket.IO 4, the same Node client code on both, interleaved rounds.
bench:
    cargo xtask bench
