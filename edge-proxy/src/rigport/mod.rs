//! The rig port: the proxy as the one owner of the radio that every
//! program can use (issue #18). WSJT-X, fldigi, GridTracker and loggers
//! speak Hamlib's NET rigctl protocol to [`tcp`] (`rigctl_listen`);
//! serial-only programs open the virtual Kenwood TS-2000 port of [`pty`]
//! (`virtual_cat`). Either way:
//!
//! - reads are answered from the station state the log holds ([`view`]),
//!   never with a serial round trip of their own;
//! - sets are commands in the log, named after the program ([`control`]),
//!   applied by the radio link like a dashboard's and confirmed when the
//!   radio's state shows them;
//! - PTT is under the TX watchdog with the program as keeper;
//! - `/stats` and `/metrics` list the programs ([`programs`]).
//!
//! The protocol decisions are the sans-IO core in `core/`
//! (`edge_proxy::rigcore`); these modules are the I/O around it.

pub mod control;
mod pty;
mod tcp;
mod view;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use edge_proxy::rigcore::caps::Caps;
use edge_proxy::rigcore::request::Level;
use edge_proxy::rigcore::station::Station;
use tokio::sync::watch;

use crate::app::AppState;
use crate::auth::Role;
use crate::clock::Clock;
use crate::config::MeterSource;
pub use crate::programs::Programs;

/// What every connection of both ports shares.
pub struct Shared {
    pub control: control::Control,
    pub programs: Programs,
    pub clock: Clock,
    pub control_role: bool,
    pub shutdown: watch::Receiver<bool>,
    meter: MeterSource,
    /// This proxy owns the radio, so its S-meter is read (`radio.meter`).
    radio: bool,
}

impl Shared {
    /// What `\dump_state` advertises: the levels this station can answer
    /// (from its configuration, or, on a proxy without the hardware, from
    /// what the log has shown of it).
    pub fn caps(&self, station: &Station) -> Caps {
        let mut levels = Vec::new();
        if self.meter != MeterSource::None || station.watts.is_some() {
            levels.extend([Level::RfPowerMeterWatts, Level::RfPowerMeter]);
        }
        if self.meter == MeterSource::Lp100 || station.swr.is_some() {
            levels.push(Level::Swr);
        }
        if self.radio || station.strength_db.is_some() {
            levels.push(Level::Strength);
        }
        Caps::new(&levels, self.control.confirm.as_millis() as u64)
    }
}

/// The running ports (kept alive by `main`).
pub struct RigPort {
    _virtual: Option<pty::VirtualPort>,
}

/// How long a set waits for the radio: 2 s, but well inside the keepalive
/// (a program waiting for its answer sends nothing else meanwhile).
fn confirm_timeout(keepalive_ms: u64) -> Duration {
    Duration::from_millis((keepalive_ms / 2).clamp(250, 2_000))
}

/// Starts what the configuration asks for; `None` when neither port is.
pub async fn start(state: &Arc<AppState>) -> anyhow::Result<Option<RigPort>> {
    let config = &state.config;
    if config.rigctl_listen.is_none() && config.virtual_cat.is_none() {
        return Ok(None);
    }
    let shared = Arc::new(Shared {
        control: control::Control {
            log: state.log.clone(),
            watchdog: state.watchdog.clone(),
            view: view::follow(state.log.clone(), state.shutdown.clone()),
            confirm: confirm_timeout(config.tx_keepalive_ms),
            keepalive: Duration::from_millis(config.tx_keepalive_ms),
        },
        programs: state.programs.clone(),
        clock: state.clock,
        control_role: config.rigctl_role == Role::Control,
        shutdown: state.shutdown.clone(),
        meter: config.meter,
        radio: config.radio_port.is_some() || config.demo,
    });
    let mut listening = None;
    if config.rigctl_listen.is_some() {
        crate::telemetry::register_rig_port("rigctl");
    }
    if config.virtual_cat.is_some() {
        crate::telemetry::register_rig_port("virtual_cat");
    }
    if let Some(addr) = config.rigctl_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for programs on rigctl_listen = {addr}"))?;
        let bound = listener.local_addr()?;
        println!("rig port (Hamlib NET rigctl, model 2): {bound}");
        tracing::info!(%bound, role = ?config.rigctl_role, "rig port open");
        listening = Some(bound.to_string());
        tokio::spawn(tcp::serve(
            listener,
            shared.clone(),
            config.rigctl_allow()?,
            state.shutdown.clone(),
        ));
    }
    let virtual_port = match &config.virtual_cat {
        Some(path) => {
            let port = pty::start(path, shared.clone())
                .with_context(|| format!("creating the virtual CAT port {}", path.display()))?;
            println!("virtual Kenwood TS-2000 port: {}", path.display());
            Some(port)
        }
        None => None,
    };
    state.programs.set_listening(
        listening,
        config.virtual_cat.as_ref().map(|p| p.display().to_string()),
    );
    Ok(Some(RigPort {
        _virtual: virtual_port,
    }))
}
