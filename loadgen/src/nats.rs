//! A throwaway `nats-server -js` for the `log-backends` scenario.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Nats {
    child: Child,
    pub url: String,
    _store: tempfile::TempDir,
}

impl Nats {
    pub fn start() -> Result<Nats> {
        // Debian puts it in /usr/sbin, not on every user's PATH.
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
            let debian = "/usr/sbin/nats-server";
            if std::path::Path::new(debian).exists() {
                debian
            } else {
                "nats-server"
            }
            .into()
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let store = tempfile::tempdir()?;
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {bin} (`cargo xtask setup` installs nats-server)")
            })?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not listen within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _store: store,
        })
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
