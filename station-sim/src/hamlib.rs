//! A real third-party peer: Hamlib's `rigctld` (Debian `libhamlib-utils`)
//! with its dummy rig, on a free port of 127.0.0.1, for the rigctld backend's
//! tests. `-P RIG` matters: without it the dummy rig has no PTT.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct DummyRig {
    child: Child,
    /// `127.0.0.1:PORT`, for the proxy's `radio_port`.
    pub addr: String,
}

impl DummyRig {
    /// Starts `rigctld -m 1 -P RIG` and waits until it accepts connections.
    pub fn start() -> Result<DummyRig> {
        DummyRig::start_with(&["-m", "1", "-P", "RIG"])
    }

    /// Starts `rigctld -m 2014 -r DEVICE`: Hamlib's own TS-2000 driver on a
    /// (simulated) radio's serial port, as an operator runs it.
    pub fn ts2000(device: &str) -> Result<DummyRig> {
        DummyRig::start_with(&["-m", "2014", "-r", device])
    }

    /// Starts `rigctld` with `args` on a free loopback port.
    pub fn start_with(args: &[&str]) -> Result<DummyRig> {
        if !std::path::Path::new("/usr/bin/rigctld").exists() {
            bail!("rigctld is missing: `cargo xtask setup` installs it (Debian package libhamlib-utils)");
        }
        // Another program may take the port between the probe and the
        // bind: then that rigctld exits, and another port is tried.
        let mut tries = 0;
        loop {
            match DummyRig::spawn_on(args, fresh_port()?) {
                Ok(rig) => return Ok(rig),
                Err(e) if tries >= 2 => return Err(e),
                Err(_) => tries += 1,
            }
        }
    }

    fn spawn_on(args: &[&str], port: u16) -> Result<DummyRig> {
        let child = Command::new("rigctld")
            .args(args)
            .args(["-T", "127.0.0.1", "-t", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting rigctld")?;
        let mut rig = DummyRig {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Ours answering, not another's on the same port: a rigctld that
        // could not bind exits.
        while !rig.answers() || rig.child.try_wait()?.is_some() {
            if Instant::now() > deadline || rig.child.try_wait()?.is_some() {
                bail!("rigctld did not start on {}", rig.addr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(rig)
    }

    /// Ready means answering a command (the frequency), not just accepting
    /// a connection: a test's first command must not race the start-up
    /// (seen once under load as a reset connection).
    fn answers(&self) -> bool {
        use std::io::{BufRead, BufReader, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"f\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.trim().parse::<u64>().is_ok()
    }
}

/// A free loopback port no other rigctld of this process was given: tests
/// run in parallel threads, and a port released by one test's probe could
/// be handed to the next before its rigctld binds it (then both would talk
/// to one rigctld, and the first to finish would reset the other's
/// connections).
fn fresh_port() -> Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

impl Drop for DummyRig {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
