//! Whether the system clock is synchronised (NTP). The proxy's safety
//! timers run on the monotonic clock, but event timestamps and a shared
//! log's first PTT-on age are judged from the wall clock, so a Pi without an
//! RTC that has not synchronised yet shows wrong times.

use std::path::Path;
use std::time::Duration;

use super::finding::Finding;

/// What systemd-timesyncd leaves while the clock is synchronised.
const TIMESYNC_FLAG: &str = "/run/systemd/timesync/synchronized";

/// What `timedatectl` (or, without it, timesyncd's flag file) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync {
    Yes(&'static str),
    No(&'static str),
    Unknown(String),
}

/// Asks `timedatectl show -p NTPSynchronized --value` (bounded), then the
/// flag file.
pub async fn synchronised(timeout: Duration) -> Sync {
    let asked = tokio::time::timeout(
        timeout,
        tokio::process::Command::new("timedatectl")
            .args(["show", "-p", "NTPSynchronized", "--value"])
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let why = match asked {
        Ok(Ok(out)) if out.status.success() => match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => return Sync::Yes("timedatectl"),
            "no" => return Sync::No("timedatectl"),
            other => format!("timedatectl said {other:?}"),
        },
        Ok(Ok(out)) => format!(
            "timedatectl failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(Err(e)) => format!("no timedatectl ({e})"),
        Err(_) => format!("timedatectl did not answer within {timeout:?}"),
    };
    if Path::new(TIMESYNC_FLAG).exists() {
        return Sync::Yes("systemd-timesyncd");
    }
    Sync::Unknown(why)
}

pub fn finding(sync: Sync) -> Finding {
    let check = "system clock";
    let fix = "enable time synchronisation: sudo timedatectl set-ntp true \
               (systemd-timesyncd, chrony or ntpd), and check the network reaches an NTP server";
    match sync {
        Sync::Yes(who) => Finding::ok(check, format!("synchronised ({who})")),
        Sync::No(who) => Finding::warn(check, format!("not synchronised ({who})"), fix),
        Sync::Unknown(why) => Finding::warn(check, format!("synchronisation unknown: {why}"), fix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::Status;

    #[test]
    fn only_a_synchronised_clock_is_ok() {
        assert_eq!(finding(Sync::Yes("timedatectl")).status, Status::Ok);
        assert_eq!(finding(Sync::No("timedatectl")).status, Status::Warn);
        assert_eq!(finding(Sync::Unknown("x".into())).status, Status::Warn);
    }
}
