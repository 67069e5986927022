//! The data directory: there (or creatable), writable for real (a probe the
//! size of the log's own disk-full probe is written and fsync'd, so a full
//! disk fails here, not only a read-only one), and with room to spare.

use std::io::Write;
use std::path::Path;

use super::finding::Finding;

/// Below this much free space the log may soon fail (it needs room for the
/// retained events and redb's growth).
pub const LOW_SPACE_BYTES: u64 = 100 * 1024 * 1024;
/// What the probe writes: enough that a nearly full filesystem refuses it.
const PROBE_BYTES: usize = 64 * 1024;

pub fn data_dir(dir: &Path) -> Vec<Finding> {
    let check = format!("data directory {}", dir.display());
    if !dir.exists() {
        // The proxy creates it: its parent must let it.
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        return match nix::unistd::access(parent, nix::unistd::AccessFlags::W_OK) {
            Ok(()) if parent.is_dir() => {
                let mut found = vec![Finding::ok(
                    check,
                    format!("missing; the proxy creates it in {}", parent.display()),
                )];
                found.extend(free_space(parent));
                found
            }
            _ => vec![Finding::fail(
                check,
                format!(
                    "missing, and {} does not let this user create it",
                    parent.display()
                ),
                format!(
                    "create it for the service user: sudo install -d -o USER {}",
                    dir.display()
                ),
            )],
        };
    }
    if !dir.is_dir() {
        return vec![Finding::fail(
            check,
            "is not a directory",
            "point data_dir (or --data-dir) at a directory",
        )];
    }
    let mut found = vec![probe(&check, dir)];
    found.extend(free_space(dir));
    found
}

/// Writes, fsyncs and removes a probe file.
fn probe(check: &str, dir: &Path) -> Finding {
    let path = dir.join(format!(".doctor-probe-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&[0u8; PROBE_BYTES])?;
        file.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    match result {
        Ok(()) => Finding::ok(check, "writable"),
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => Finding::fail(
            check,
            format!("the disk is full ({e})"),
            "free space on that filesystem (the proxy cannot log events while it is full)",
        ),
        Err(e) => Finding::fail(
            check,
            format!("not writable ({e})"),
            format!(
                "give the service user the directory: sudo chown -R USER {} \
                 (a systemd unit: StateDirectory=)",
                dir.display()
            ),
        ),
    }
}

/// Free space on the directory's filesystem, against [`LOW_SPACE_BYTES`].
fn free_space(dir: &Path) -> Option<Finding> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    // The fields are 32-bit on 32-bit targets (a Pi on armhf).
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stat.blocks_available()) * u64::from(stat.fragment_size());
    let check = format!("free disk at {}", dir.display());
    let shown = format!("{:.1} MiB free", free as f64 / (1024.0 * 1024.0));
    Some(if free < LOW_SPACE_BYTES {
        Finding::warn(
            check,
            shown,
            format!(
                "keep at least {} MiB free there (or lower retention_ms / max_events)",
                LOW_SPACE_BYTES / (1024 * 1024)
            ),
        )
    } else {
        Finding::ok(check, shown)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::Status;

    #[test]
    fn a_writable_directory_is_ok_and_the_probe_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let found = data_dir(dir.path());
        assert_eq!(found[0].status, Status::Ok, "{found:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_directory_in_a_writable_parent_will_be_created() {
        let dir = tempfile::tempdir().unwrap();
        let found = data_dir(&dir.path().join("data"));
        assert_eq!(found[0].status, Status::Ok, "{found:?}");
        assert!(found[0].detail.contains("creates it"));
    }

    #[test]
    fn a_file_is_not_a_data_directory() {
        let file = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(data_dir(file.path())[0].status, Status::Fail);
    }
}
