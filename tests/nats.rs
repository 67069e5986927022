//! A real `nats-server` with JetStream (Debian's package), on a free
//! loopback port with its store in a temporary directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
}

/// `NATS_SERVER_BIN`, or where Debian puts it (`/usr/sbin`, which is not on
/// every user's PATH), or `nats-server` on the PATH.
fn binary() -> PathBuf {
    let path = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
        let debian = "/usr/sbin/nats-server";
        if std::path::Path::new(debian).exists() {
            debian
        } else {
            "nats-server"
        }
        .into()
    });
    let found = Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{path} not found: `cargo xtask setup` installs it (apt-get install nats-server), or set NATS_SERVER_BIN"
    );
    PathBuf::from(path)
}

impl Nats {
    pub fn start() -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut nats = Nats {
            child: None,
            port,
            store: tempfile::tempdir().expect("tempdir"),
        };
        nats.spawn();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new(binary())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (nats-server finishes writing its store) and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while !matches!(child.try_wait(), Ok(Some(_))) {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// `kill -9`: no chance to write anything more.
    /// SIGSTOP: the server is frozen, not gone (connections stay open and
    /// every request hangs), as a stalled disk or an overloaded host does.
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Nats::pause`].
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status();
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `kill -9` and an empty store: every stream is gone.
    pub fn wipe(&mut self) {
        self.kill9();
        self.store = tempfile::tempdir().expect("tempdir");
    }

    /// Starts it again on the same port and store (stopping it first if it
    /// still runs).
    pub fn start_again(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.resume();
        self.kill9();
    }
}
