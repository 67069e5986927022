//! The virtual Kenwood serial port's shell: a pseudo-terminal (served by
//! `station_sim::pty::PtyDevice`'s thread, the same one the simulators
//! use) whose path is a stable symlink at `virtual_cat`, answering through
//! [`edge_proxy::rigcore::vcat::VirtualCat`].
//!
//! Answers come from the station state at once, on the pty's thread; sets
//! and signs of life go to an async task over a bounded channel (the pty
//! thread waits when it is full: nothing a program sends is dropped), which
//! carries them out like the rig port's, without waiting for the radio's
//! confirmation (a Kenwood set has no answer). A serial line has no
//! "closed" to see, so a program that keys and dies is unkeyed by the
//! watchdog's keepalive: every command it sends counts as alive.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use edge_proxy::rigcore::session::Set;
use edge_proxy::rigcore::station::Station;
use edge_proxy::rigcore::vcat::VirtualCat;
use station_sim::pty::{Device, PtyDevice};
use tokio::sync::{mpsc, watch};

use super::control::{Keyer, Program};
use super::Shared;
use crate::clock::Clock;
use crate::programs::ProgramStatus;

enum Msg {
    /// The program sent these commands (for the list) and is alive.
    Alive(Vec<u8>),
    Set(Set),
}

/// Signs of life are passed on at most this often.
const ALIVE_EVERY: Duration = Duration::from_millis(200);

struct CatDevice {
    cat: VirtualCat,
    view: watch::Receiver<Station>,
    clock: Clock,
    tx: mpsc::Sender<Msg>,
    last_alive: Option<std::time::Instant>,
}

impl Device for CatDevice {
    fn input(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let station = self.view.borrow().clone();
        let (answers, sets) = self.cat.input(bytes, &station, self.clock.now());
        let due = self.last_alive.is_none_or(|at| at.elapsed() >= ALIVE_EVERY);
        if (due || !sets.is_empty()) && !answers.is_empty() {
            self.last_alive = Some(std::time::Instant::now());
            let _ = self.tx.blocking_send(Msg::Alive(bytes.to_vec()));
        }
        for set in sets {
            let _ = self.tx.blocking_send(Msg::Set(set));
        }
        answers
    }
}

/// The running virtual port; dropping it removes the symlink and closes it.
pub struct VirtualPort {
    link: PathBuf,
    _device: PtyDevice,
}

impl Drop for VirtualPort {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.link);
    }
}

pub fn start(link: &Path, shared: Arc<Shared>) -> anyhow::Result<VirtualPort> {
    let (tx, mut rx) = mpsc::channel(64);
    let device = CatDevice {
        cat: VirtualCat::new(shared.control.confirm.as_millis() as u64),
        view: shared.control.view.clone(),
        clock: shared.clock,
        tx,
        last_alive: None,
    };
    let pty = PtyDevice::start("virtual-cat", device).context("opening a pseudo-terminal")?;
    if let Some(dir) = link.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for virtual_cat", dir.display()))?;
    }
    pty.symlink(link)?;
    let program = Program {
        id: format!("cat:{}", link.display()),
        name: None,
    };
    let entry = shared.programs.add(ProgramStatus {
        port: "virtual_cat",
        address: link.display().to_string(),
        name: None,
        role: if shared.control_role {
            "control"
        } else {
            "read"
        },
        last_command: None,
        keyed: false,
        commands: 0,
        connected_at_ms: shared.clock.now(),
    });
    let mut shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        let mut keyer = Keyer::default();
        loop {
            let msg = tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => m,
                    None => break,
                },
                _ = shutdown.changed() => break,
            };
            match msg {
                Msg::Alive(bytes) => {
                    shared.control.alive(&mut keyer).await;
                    entry.command(bytes.trim_ascii(), keyer.keyed());
                }
                Msg::Set(set) if shared.control_role => {
                    if let Err(code) = shared
                        .control
                        .carry_out(&program, &mut keyer, set, false)
                        .await
                    {
                        tracing::warn!(code, "virtual CAT port: a set was not carried out");
                    }
                    entry.update(|s| s.keyed = keyer.keyed());
                }
                Msg::Set(_) => tracing::warn!(
                    "virtual CAT port is read-only (rigctl_role = \"read\"): set ignored"
                ),
            }
        }
        shared.control.ended(&mut keyer);
    });
    Ok(VirtualPort {
        link: link.to_path_buf(),
        _device: pty,
    })
}
