//! What every scenario shares: the benchmark proxy's config, starting it,
//! progress bars, and the results (rows for the JSON file, and the runs
//! that failed the completeness check).

use std::path::Path;

use anyhow::{bail, Result};
use e2e::Proxy;
use serde_json::Value;

use crate::complete::Outcome;
use crate::proc_stats::ProcStats;

/// The publisher's window unless a scenario says otherwise: what `loadgen`
/// has always run with.
pub const DEFAULT_WINDOW: usize = 4_096;

/// Config for benchmark proxies: no publish rate limit in the way, a
/// publish window as wide as the publishers use, and nothing trimmed during
/// a run (the completeness check reads the whole log back afterwards).
pub const BENCH_CONFIG: &str = "max_publish_per_sec = 1000000\nmax_handshakes_per_sec = 100000\npublish_window = 4096\nmax_events = 100000000\nretention_ms = 3600000\n";

/// `base` with the keys `over` sets replaced by its values (TOML refuses a
/// key given twice). Both are flat `key = value` lines.
pub fn merge_config(base: &str, over: &str) -> String {
    let key = |line: &str| line.split('=').next().map(|k| k.trim().to_string());
    let overridden: Vec<String> = over.lines().filter_map(key).collect();
    let mut merged: String = base
        .lines()
        .filter(|line| key(line).is_none_or(|k| !overridden.contains(&k)))
        .map(|line| format!("{line}\n"))
        .collect();
    merged.push_str(over);
    if !merged.ends_with('\n') {
        merged.push('\n');
    }
    merged
}

/// Starts `bin` with `config` through the end-to-end harness (fresh data
/// directory, a free loopback port).
pub fn start_proxy(bin: &Path, config: &str) -> Result<Proxy> {
    if !bin.is_file() {
        bail!(
            "{} is missing: run `cargo build --release -p edge-proxy` first",
            bin.display()
        );
    }
    Ok(Proxy::start_with_binary(bin, config))
}

/// CPU time and RSS of the proxy process now.
pub fn proxy_stats(proxy: &Proxy) -> ProcStats {
    ProcStats::of(proxy.pid().unwrap_or(0))
}

pub fn progress(label: &str, seconds: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(seconds);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Microseconds as milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

/// Everything a scenario reports.
#[derive(Default)]
pub struct Results {
    /// One JSON object per run, for `--json`.
    pub rows: Vec<Value>,
    /// Runs that failed the completeness check, with what was wrong.
    pub incomplete: Vec<String>,
}

impl Results {
    /// Prints the run's completeness ("0 lost, 0 duplicated") and remembers
    /// a failure, so `loadgen` exits non-zero once every run is done.
    pub fn completeness(&mut self, run: &str, outcome: &Outcome) {
        println!("{:>8} {run}: {}", "", outcome.line());
        if !outcome.is_clean() {
            for problem in &outcome.problems {
                self.incomplete.push(format!("{run}: {problem}"));
            }
        }
    }
}
