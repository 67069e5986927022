//! CPU time and resident memory of a process, from /proc.

use std::time::Instant;

pub struct ProcStats {
    pub rss_kib: u64,
    /// user + system CPU time, in clock ticks.
    ticks: u64,
    at: Instant,
}

impl ProcStats {
    pub fn of(pid: u32) -> ProcStats {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may contain spaces).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        let ticks = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        ProcStats {
            rss_kib,
            ticks,
            at: Instant::now(),
        }
    }

    /// CPU seconds (user + system) used between two samples.
    pub fn cpu_seconds_since(&self, earlier: &ProcStats) -> f64 {
        // Linux reports CPU time in USER_HZ ticks, 100 a second.
        self.ticks.saturating_sub(earlier.ticks) as f64 / 100.0
    }

    /// CPU use between two samples, in percent of one core (100 = one core busy).
    pub fn cpu_percent_since(&self, earlier: &ProcStats) -> f64 {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        // Linux reports CPU time in USER_HZ ticks, 100 a second.
        (self.ticks.saturating_sub(earlier.ticks)) as f64 / 100.0 / seconds * 100.0
    }
}
