//! Serves a simulated device on a real pseudo-terminal (`openpty`), so the
//! code under test opens a `/dev/pts/N` path exactly as it would a USB
//! serial adapter. Faults can be injected while it runs.
//!
//! [`PtyRadio`] is the TS-2000 ([`crate::kenwood`]); [`PtyMeter`] is an
//! LP-100A wattmeter ([`crate::lp100`]) that reads the RF output of a radio
//! it shares state with, so keying the radio moves the meter.

use std::io::{Read, Write};
use std::ops::Deref;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios;

use crate::kenwood::{Cat, Radio};
use crate::lp100::Lp100;

/// A simulated device: what it answers to the bytes it receives.
pub trait Device: Send + 'static {
    /// Feeds bytes from the line; returns one entry per complete command,
    /// the bytes to answer with (empty for a set, which gets no answer).
    fn input(&mut self, bytes: &[u8]) -> Vec<Vec<u8>>;

    /// What the device says unasked (a radio's auto information), to send
    /// now; the serving thread asks after every wake-up.
    fn unsolicited(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

/// Faults to inject, shared with the serving thread.
#[derive(Debug, Default)]
pub struct Faults {
    /// Stop answering (the device is powered but mute).
    pub silent: AtomicBool,
    /// Bytes of noise to send before the next answer.
    pub garbage: Mutex<Vec<u8>>,
    /// Send only the first half of the next answer, then carry on normally:
    /// a frame torn mid-way, as when a transmitter trips and the radio's
    /// CPU resets.
    pub tear_next: AtomicBool,
    /// Close the line: the other side sees EOF/EIO, like a pulled cable
    /// ([`Faults::unplug`] does it at once; set directly, within a second).
    pub unplugged: AtomicBool,
    /// Wakes the serving thread (unplug, stop): it waits on the line
    /// without a timeout to poll, so an idle device costs no wake-ups.
    waker: Option<UnixStream>,
}

impl Faults {
    /// Pulls the cable now.
    pub fn unplug(&self) {
        self.unplugged.store(true, Ordering::Relaxed);
        self.wake();
    }

    fn wake(&self) {
        if let Some(mut waker) = self.waker.as_ref() {
            let _ = waker.write_all(&[1]);
        }
    }
}

/// A device served on a pseudo-terminal by a thread of its own.
pub struct PtyDevice {
    /// The path to open, e.g. `/dev/pts/7`.
    pub path: PathBuf,
    pub faults: Arc<Faults>,
    /// Commands received so far.
    pub commands: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    // Kept open so the master does not see a hang-up before a client opens the path.
    _slave: OwnedFd,
}

impl PtyDevice {
    pub fn start(name: &str, device: impl Device) -> Result<PtyDevice> {
        let pty = open_pty()?;
        let mut attrs = termios::tcgetattr(pty.slave.as_fd()).context("tcgetattr")?;
        termios::cfmakeraw(&mut attrs);
        termios::tcsetattr(pty.slave.as_fd(), termios::SetArg::TCSANOW, &attrs)
            .context("tcsetattr")?;
        let path = nix::unistd::ttyname(pty.slave.as_fd()).context("ttyname")?;
        let (waker, woken) = UnixStream::pair().context("the pty thread's waker")?;
        woken
            .set_nonblocking(true)
            .context("the pty thread's waker")?;
        let faults = Arc::new(Faults {
            waker: Some(waker),
            ..Faults::default()
        });
        let commands = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, c, s) = (faults.clone(), commands.clone(), stop.clone());
        let master = pty.master;
        let thread = std::thread::Builder::new()
            .name(format!("pty-{name}"))
            .spawn(move || serve(master, woken, device, f, c, s))
            .context("starting the pty thread")?;
        Ok(PtyDevice {
            path,
            faults,
            commands,
            stop,
            thread: Some(thread),
            _slave: pty.slave,
        })
    }

    /// Makes `link` a symlink to this device, as udev does for a USB adapter.
    pub fn symlink(&self, link: &std::path::Path) -> Result<()> {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&self.path, link)
            .with_context(|| format!("linking {} to {}", link.display(), self.path.display()))
    }
}

impl Drop for PtyDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.faults.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The two ends of a new pseudo-terminal.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

/// Opens a pseudo-terminal with both ends close-on-exec from the start
/// (not set afterwards, which races with another thread starting a
/// program): no program started from this process (a proxy under test, a
/// second opener, a tool) inherits the line and holds it.
fn open_pty() -> Result<Pty> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = nix::pty::posix_openpt(flags).context("posix_openpt")?;
    nix::pty::grantpt(&master).context("grantpt")?;
    nix::pty::unlockpt(&master).context("unlockpt")?;
    let path = nix::pty::ptsname_r(&master).context("ptsname")?;
    let slave = nix::fcntl::open(path.as_str(), flags, nix::sys::stat::Mode::empty())
        .with_context(|| format!("opening {path}"))?;
    Ok(Pty {
        master: master.into(),
        slave,
    })
}

/// A simulated TS-2000 on a pseudo-terminal.
pub struct PtyRadio {
    pub radio: Arc<Mutex<Radio>>,
    line: PtyDevice,
}

impl PtyRadio {
    pub fn start(radio: Radio) -> Result<PtyRadio> {
        let radio = Arc::new(Mutex::new(radio));
        let line = PtyDevice::start("radio", Cat::new(radio.clone()))?;
        Ok(PtyRadio { radio, line })
    }

    /// A TX drop mid-frame: the transmitter trips (the radio falls back to
    /// receive) and the answer on the wire is cut in half (in AI mode, that
    /// can be the radio's own report of the change).
    pub fn drop_tx_mid_frame(&self) {
        self.faults.tear_next.store(true, Ordering::Relaxed);
        self.panel(Radio::trip);
    }

    /// The front panel: VFO A's knob turned to `hz`. In AI mode the radio
    /// tells the controller at once (`FA`), as a TS-2000 does.
    pub fn turn_vfo(&self, hz: u64) {
        self.panel(|r| r.turn_vfo(hz));
    }

    /// The front panel: a mode key (the `MD` digit).
    pub fn select_mode(&self, mode: u8) {
        self.panel(|r| r.select_mode(mode));
    }

    /// The front panel's PTT (or a foot switch).
    pub fn front_ptt(&self, tx: bool) {
        self.panel(|r| r.front_ptt(tx));
    }

    /// A change made on the radio itself; whatever it says of it goes out
    /// on the line now (the serving thread is woken for it).
    fn panel(&self, change: impl FnOnce(&mut Radio)) {
        if let Ok(mut r) = self.radio.lock() {
            change(&mut r);
        }
        self.faults.wake();
    }
}

impl Deref for PtyRadio {
    type Target = PtyDevice;
    fn deref(&self) -> &PtyDevice {
        &self.line
    }
}

/// A simulated LP-100A wattmeter on a pseudo-terminal, reading `radio`'s
/// RF output.
pub struct PtyMeter {
    line: PtyDevice,
}

impl PtyMeter {
    pub fn start(radio: Arc<Mutex<Radio>>) -> Result<PtyMeter> {
        Ok(PtyMeter {
            line: PtyDevice::start("meter", Lp100::new(radio))?,
        })
    }
}

impl Deref for PtyMeter {
    type Target = PtyDevice;
    fn deref(&self) -> &PtyDevice {
        &self.line
    }
}

fn serve(
    master: OwnedFd,
    mut woken: UnixStream,
    mut device: impl Device,
    faults: Arc<Faults>,
    commands: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut file = std::fs::File::from(master);
    let mut buf = [0u8; 512];
    let gone = || stop.load(Ordering::Relaxed) || faults.unplugged.load(Ordering::Relaxed);
    while !gone() {
        // The line or the waker; the timeout only bounds how late an
        // `unplugged` set without `unplug()` is noticed.
        let (line, wake) = {
            let mut fds = [
                PollFd::new(file.as_fd(), PollFlags::POLLIN),
                PollFd::new(woken.as_fd(), PollFlags::POLLIN),
            ];
            let _ = poll(&mut fds, PollTimeout::from(1_000u16));
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if wake {
            let _ = woken.read(&mut buf);
        }
        if gone() {
            continue;
        }
        // What the device said by itself since the last wake-up.
        let said = device.unsolicited();
        if !said.is_empty() {
            send(&mut file, &faults, &said);
        }
        if !line {
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
        for answer in device.input(&buf[..n]) {
            commands.fetch_add(1, Ordering::Relaxed);
            send(&mut file, &faults, &answer);
        }
    }
    // Dropping the master closes the line.
}

/// Writes what the device says (an answer, or its own report) through the
/// faults: nothing while silent, noise first when some is queued, torn in
/// half once when asked.
fn send(file: &mut std::fs::File, faults: &Faults, answer: &[u8]) {
    if faults.silent.load(Ordering::Relaxed) {
        return;
    }
    let noise = faults
        .garbage
        .lock()
        .map(|mut g| std::mem::take(&mut *g))
        .unwrap_or_default();
    if !noise.is_empty() {
        let _ = file.write_all(&noise);
    }
    if answer.is_empty() {
        return;
    }
    if faults.tear_next.swap(false, Ordering::Relaxed) {
        let _ = file.write_all(&answer[..answer.len() / 2]);
    } else {
        let _ = file.write_all(answer);
    }
}
