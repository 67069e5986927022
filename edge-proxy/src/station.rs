//! The station thread: a single-threaded tokio runtime for the proxy's
//! periodic work, the hardware bridge (the radio link, the meter link, their
//! log queue) and the once-a-second maintenance tick. Clients are served by
//! the multi-thread runtime, which an idle proxy leaves asleep.
//!
//! Why a thread of its own:
//! - An idle station polls the radio and the meter and runs its maintenance
//!   together, on one grid. On the multi-thread runtime each of those bursts
//!   woke every worker (one to run a task, another to steal the next),
//!   about twice the wake-ups of one thread: an idle cost a Raspberry Pi
//!   left on 24/7 pays all day.
//! - The radio's owner never waits for a worker that a thousand dashboards
//!   keep busy: a poll, a PTT-off from the log and the watchdog's direct
//!   unkey are served by this thread alone.
//!
//! Both links share it, so neither may block it: serial ports are opened
//! and closed on tokio's blocking pool (`hardware::open_serial_off_thread`,
//! `bridge::close_off_thread`), and writes are never flushed (`tcdrain`).
//!
//! Everything crossing to the rest of the proxy is a channel, a watch or a
//! lock, which work between runtimes. The runtime lives until the process
//! ends; at shutdown `main` waits for the radio task itself (its unkey), not
//! for this thread.

use anyhow::Context;
use tokio::runtime::Handle;
use tokio::time::Instant;

/// The running station thread.
pub struct Station {
    pub handle: Handle,
    /// Just after its time driver started (see `Clock::on_wheel`).
    pub wheel: Instant,
}

impl Station {
    pub fn start() -> anyhow::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("station".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let wheel = Instant::now();
                match runtime {
                    Ok(runtime) => {
                        let _ = tx.send(Ok((runtime.handle().clone(), wheel)));
                        runtime.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .context("starting the station thread")?;
        let (handle, wheel) = rx
            .recv()
            .context("the station thread ended at start")?
            .context("starting the station thread's runtime")?;
        Ok(Station { handle, wheel })
    }

    /// `clock`, with its polls on this thread's timer wheel.
    pub fn clock(&self, clock: crate::clock::Clock) -> crate::clock::Clock {
        clock.on_wheel(self.wheel)
    }
}
