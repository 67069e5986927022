//! Serves a simulated radio on a real pseudo-terminal (`openpty`), so the
//! code under test opens a `/dev/pts/N` path exactly as it would a USB
//! serial adapter. Faults can be injected while it runs.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios;

use shared_protocol::cat::Framer;

use crate::kenwood::Radio;

/// Faults to inject, shared with the serving thread.
#[derive(Debug, Default)]
pub struct Faults {
    /// Stop answering (the radio is powered but mute).
    pub silent: AtomicBool,
    /// Bytes of noise to send before the next answer.
    pub garbage: Mutex<Vec<u8>>,
    /// Close the line: the other side sees EOF/EIO, like a pulled cable.
    pub unplugged: AtomicBool,
}

pub struct PtyRadio {
    /// The path to open, e.g. `/dev/pts/7`.
    pub path: PathBuf,
    pub radio: Arc<Mutex<Radio>>,
    pub faults: Arc<Faults>,
    pub commands: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    // Kept open so the master does not see a hang-up before a client opens the path.
    _slave: OwnedFd,
}

impl PtyRadio {
    pub fn start(radio: Radio) -> Result<PtyRadio> {
        let pty = nix::pty::openpty(None, None).context("openpty")?;
        let mut attrs = termios::tcgetattr(pty.slave.as_fd()).context("tcgetattr")?;
        termios::cfmakeraw(&mut attrs);
        termios::tcsetattr(pty.slave.as_fd(), termios::SetArg::TCSANOW, &attrs)
            .context("tcsetattr")?;
        let path = nix::unistd::ttyname(pty.slave.as_fd()).context("ttyname")?;
        let radio = Arc::new(Mutex::new(radio));
        let faults = Arc::new(Faults::default());
        let commands = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, f, c, s) = (
            radio.clone(),
            faults.clone(),
            commands.clone(),
            stop.clone(),
        );
        let master = pty.master;
        let thread = std::thread::Builder::new()
            .name("pty-radio".into())
            .spawn(move || serve(master, r, f, c, s))
            .context("starting the pty thread")?;
        Ok(PtyRadio {
            path,
            radio,
            faults,
            commands,
            stop,
            thread: Some(thread),
            _slave: pty.slave,
        })
    }
}

impl Drop for PtyRadio {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    master: OwnedFd,
    radio: Arc<Mutex<Radio>>,
    faults: Arc<Faults>,
    commands: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut file = std::fs::File::from(master);
    let mut framer = Framer::default();
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) && !faults.unplugged.load(Ordering::Relaxed) {
        let ready = {
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0)
        };
        if ready == 0 {
            continue;
        }
        let n = match file.read(&mut buf) {
            Ok(0) => continue,
            Ok(n) => n,
            // EIO: nobody has the slave open right now; wait for a client.
            Err(_) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
        };
        for cmd in framer.push(&buf[..n]) {
            commands.fetch_add(1, Ordering::Relaxed);
            let answer = radio.lock().map(|mut r| r.handle(&cmd)).unwrap_or(None);
            if faults.silent.load(Ordering::Relaxed) {
                continue;
            }
            let noise = faults
                .garbage
                .lock()
                .map(|mut g| std::mem::take(&mut *g))
                .unwrap_or_default();
            if !noise.is_empty() {
                let _ = file.write_all(&noise);
            }
            if let Some(answer) = answer {
                let _ = file.write_all(answer.as_bytes());
            }
        }
    }
    // Dropping the master closes the line.
}
