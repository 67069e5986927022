//! Serial devices: there, a character device, usable by this user, and not
//! held open by another program.
//!
//! The device is never opened: opening a tty raises DTR and RTS, which on
//! many stations keys the transmitter or resets an interface. Permissions
//! are asked of the kernel with `access(2)` instead, and holders are found
//! by reading `/proc/*/fd`.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{access, AccessFlags, Gid, Group, Uid, User};

use super::finding::Finding;

/// Programs that open USB serial adapters by themselves as they appear.
const GRABBERS: [(&str, &str); 2] = [
    (
        "ModemManager",
        "ModemManager probes every new USB serial adapter as a modem: \
         sudo systemctl stop ModemManager && sudo systemctl mask ModemManager \
         (or keep it and exclude the adapter with a udev rule setting ENV{ID_MM_DEVICE_IGNORE}=\"1\")",
    ),
    (
        "brltty",
        "brltty claims USB serial adapters it takes for braille displays: \
         sudo systemctl stop brltty-udev.service brltty.service && \
         sudo systemctl mask brltty-udev.service brltty.service (or sudo apt remove brltty)",
    ),
];

/// A process with the device open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub name: String,
}

/// Everything about one configured device (`what`: "radio" or "meter").
pub fn device(what: &str, path: &Path) -> Vec<Finding> {
    let check = format!("{what} port {}", path.display());
    // `metadata` follows symlinks: a dangling /dev/serial/by-id link counts
    // as missing, which is what it is.
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![Finding::fail(
                check,
                "does not exist",
                format!(
                    "plug the {what} in and power it; stable names are in /dev/serial/by-id/ \
                     (ls -l /dev/serial/by-id/), then set that path"
                ),
            )]
        }
        Err(e) => {
            return vec![Finding::fail(
                check,
                format!("cannot be looked at: {e}"),
                "check the path and the permissions of the directories above it",
            )]
        }
    };
    if !meta.file_type().is_char_device() {
        return vec![Finding::fail(
            check,
            "is not a character device (a serial port is one)",
            "point the setting at the adapter's device, e.g. /dev/ttyUSB0 or a /dev/serial/by-id/ link",
        )];
    }
    let mut found = vec![permissions(&check, path, &meta)];
    found.push(holders_finding(&check, path));
    found
}

/// Whether this user may read and write the device; if not, who may.
pub fn permissions(check: &str, path: &Path, meta: &std::fs::Metadata) -> Finding {
    let owner = User::from_uid(Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.uid().to_string(), |u| u.name);
    let group = group_name(meta.gid());
    let mode = meta.permissions().mode() & 0o777;
    let seen = format!("{owner}:{group}, mode {mode:04o}");
    match access(path, AccessFlags::R_OK | AccessFlags::W_OK) {
        Ok(()) => Finding::ok(
            check,
            format!("a character device, readable and writable ({seen})"),
        ),
        Err(e) => {
            let me = current_user();
            let in_group = nix::unistd::getgroups()
                .map(|groups| groups.contains(&Gid::from_raw(meta.gid())))
                .unwrap_or(false);
            let fix = if in_group {
                format!(
                    "{me} is in {group} but the device does not let the group read and write \
                     (mode {mode:04o}): check the udev rule that sets its mode"
                )
            } else {
                format!(
                    "add the service user to the `{group}` group (usually dialout): \
                     sudo usermod -aG {group} {me}, then log in again; \
                     a systemd unit: SupplementaryGroups={group}"
                )
            };
            Finding::fail(
                check,
                format!("{me} may not read and write it ({e}; {seen})"),
                fix,
            )
        }
    }
}

fn group_name(gid: u32) -> String {
    Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}

fn current_user() -> String {
    let uid = Uid::current();
    User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}

/// Who else has the device open, as one finding.
fn holders_finding(device: &str, path: &Path) -> Finding {
    let check = &format!("{device} open elsewhere");
    let (holders, hidden) = lasting_holders(path);
    if let Some(h) = holders.first() {
        let list = holders
            .iter()
            .map(|h| format!("{} (pid {})", h.name, h.pid))
            .collect::<Vec<_>>()
            .join(", ");
        let fix = match GRABBERS.iter().find(|(name, _)| *name == h.name) {
            Some((_, fix)) => fix.to_string(),
            None if h.name == "edge-proxy" => {
                "that is an edge proxy: stop it first (sudo systemctl stop edge-proxy) \
                 and run doctor again"
                    .to_string()
            }
            None => format!(
                "close that program (kill {}); programs share the radio through the proxy's \
                 rig port (rigctl_listen) instead of its serial port",
                h.pid
            ),
        };
        return Finding::fail(check, format!("held open by {list}"), fix);
    }
    let running: Vec<Holder> = processes()
        .into_iter()
        .filter(|p| GRABBERS.iter().any(|(name, _)| *name == p.name))
        .collect();
    if let Some(g) = running.first() {
        let fix = GRABBERS
            .iter()
            .find(|(name, _)| *name == g.name)
            .map_or("", |(_, fix)| fix);
        return Finding::warn(
            check,
            format!(
                "not open elsewhere now, but {} (pid {}) is running and may grab it when it is plugged in again",
                g.name, g.pid
            ),
            fix,
        );
    }
    if hidden > 0 {
        return Finding::warn(
            check,
            format!("no other holder seen, but {hidden} processes could not be looked into"),
            "run doctor as root (sudo) to see every process's open files",
        );
    }
    Finding::ok(check, "no other process has it open")
}

/// The holders of `path` seen twice, 100 ms apart: a process that is being
/// started holds all of its parent's descriptors between its fork and its
/// exec, and is no holder of the line.
fn lasting_holders(path: &Path) -> (Vec<Holder>, usize) {
    let me = std::process::id();
    let (first, hidden) = holders(path, me);
    if first.is_empty() {
        return (first, hidden);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (again, hidden) = holders(path, me);
    (
        again.into_iter().filter(|h| first.contains(h)).collect(),
        hidden,
    )
}

/// The processes other than `exclude` with `path` open, and how many
/// processes' open files could not be read (other users', without root).
/// A process holding the master side of a pseudo-terminal is that pty's
/// device (a simulator), not a second opener, and is left out.
pub fn holders(path: &Path, exclude: u32) -> (Vec<Holder>, usize) {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let pty_index = target
        .to_str()
        .and_then(|p| p.strip_prefix("/dev/pts/"))
        .and_then(|n| n.parse::<u32>().ok());
    let mut found = Vec::new();
    let mut hidden = 0;
    for proc in processes() {
        if proc.pid == exclude {
            continue;
        }
        let fds = match std::fs::read_dir(format!("/proc/{}/fd", proc.pid)) {
            Ok(fds) => fds,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                hidden += 1;
                continue;
            }
            // It exited meanwhile.
            Err(_) => continue,
        };
        let mut holds = false;
        let mut is_master = false;
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if link == target {
                holds = true;
            } else if pty_index.is_some()
                && (link == Path::new("/dev/ptmx") || link == Path::new("/dev/pts/ptmx"))
            {
                is_master |= master_index(proc.pid, &fd.file_name()) == pty_index;
            }
        }
        if holds && !is_master {
            found.push(proc);
        }
    }
    (found, hidden)
}

/// Which pty a master file descriptor drives (`tty-index` in its fdinfo).
fn master_index(pid: u32, fd: &std::ffi::OsStr) -> Option<u32> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_str()?)).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("tty-index:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Every process, with its name (`/proc/PID/comm`).
fn processes() -> Vec<Holder> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            Some(Holder {
                pid,
                name: name.trim_end().to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::Status;

    #[test]
    fn a_missing_device_fails_naming_it() {
        let found = device("radio", Path::new("/dev/ttyUSB-not-here"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].status, Status::Fail);
        assert!(found[0].to_string().contains("/dev/ttyUSB-not-here"));
        assert!(found[0].to_string().contains("/dev/serial/by-id/"));
    }

    #[test]
    fn a_regular_file_is_not_a_serial_port() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let found = device("meter", file.path());
        assert_eq!(found[0].status, Status::Fail);
        assert!(found[0].detail.contains("not a character device"));
    }

    #[test]
    fn the_process_on_the_other_end_of_a_pty_is_not_a_holder() {
        let sim =
            station_sim::pty::PtyRadio::start(station_sim::kenwood::Radio::default()).unwrap();
        let (found, _) = holders(&sim.path, 0);
        assert!(
            !found.iter().any(|h| h.pid == std::process::id()),
            "the simulator holds the master: {found:?}"
        );
        // Another process with it open is one.
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::fs::File::open(&sim.path).unwrap())
            .spawn()
            .unwrap();
        let (found, _) = holders(&sim.path, 0);
        let _ = other.kill();
        let _ = other.wait();
        assert!(found.iter().any(|h| h.pid == other.id()), "{found:?}");
    }

    #[test]
    fn a_device_this_process_holds_is_found_with_its_pid() {
        // /dev/null is a character device every process may open.
        let held = std::fs::File::open("/dev/null").unwrap();
        let (found, _) = holders(Path::new("/dev/null"), 0);
        assert!(
            found.iter().any(|h| h.pid == std::process::id()),
            "{found:?}"
        );
        drop(held);
    }
}
