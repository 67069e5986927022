//! A small tmpfs for the suites that fill a disk (`disk_full`, `doctor`):
//! mounting needs root, so [`Mount::tmpfs`] is `None` where it cannot.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted at a path, unmounted on drop.
pub struct Mount(PathBuf);

impl Mount {
    /// A tmpfs of `size` (`mount -o size=`) at `path`, or `None` if it
    /// cannot be mounted (not root).
    pub fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(path.to_path_buf()))
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Grows or shrinks it in place, keeping its files.
    pub fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
