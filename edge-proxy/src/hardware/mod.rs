//! Hardware backends: how the proxy talks to a radio and a power meter. Each
//! backend is a thin I/O client; the decisions (when to reconnect, what a TX
//! drop is, when power is critical) live in `shared_protocol::link` and
//! `shared_protocol::power`.
//!
//! | backend | protocol |
//! |---|---|
//! | [`kenwood`] | Kenwood-style ASCII CAT over a serial port (`tokio-serial`) |
//! | [`rigctld`] | Hamlib's `rigctld` over TCP, extended response protocol (covers hundreds of radios) |
//! | [`lp100`] | the Telepost LP-100A wattmeter over a serial port |
//!
//! [`Radio`] puts the two radio backends behind one interface for the bridge.

pub mod kenwood;
pub mod lp100;
pub mod rigctld;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use kenwood::{CatError, Kenwood};
use rigctld::{RigError, Rigctld};

/// Opens a serial port (8N1) exclusively (`TIOCEXCL`): a second program
/// opening the radio's port beside the proxy gets "busy" instead of a line
/// shared with the proxy, where both read each other's answers (the radio
/// link then reconnects and raises false TX drops). Programs share the
/// radio through the rig port (`rigctl_listen`, `virtual_cat`) instead.
/// (The kernel lets root open an exclusive tty anyway.)
pub fn open_serial(path: &str, baud: u32) -> Result<tokio_serial::SerialStream, OpenError> {
    use tokio_serial::SerialPortBuilderExt;
    let named = |source| OpenError {
        path: path.to_string(),
        source,
    };
    let mut port = tokio_serial::new(path, baud)
        .open_native_async()
        .map_err(named)?;
    #[cfg(unix)]
    port.set_exclusive(true).map_err(named)?;
    Ok(port)
}

/// [`open_serial`] on tokio's blocking pool: opening a tty is a blocking
/// system call (a USB adapter's driver can take its time), and the thread
/// that runs the links must not wait on it.
pub async fn open_serial_off_thread(
    path: &str,
    baud: u32,
) -> Result<tokio_serial::SerialStream, OpenError> {
    let owned = path.to_string();
    tokio::task::spawn_blocking(move || open_serial(&owned, baud))
        .await
        .unwrap_or_else(|e| {
            Err(OpenError {
                path: path.to_string(),
                source: tokio_serial::Error::new(
                    tokio_serial::ErrorKind::Unknown,
                    format!("the open did not finish: {e}"),
                ),
            })
        })
}

/// A serial port that would not open. The operator reads this in the log
/// (and in the link's `last_event`) with nothing else to go on, so it names
/// the device and, for the two common causes, says what to do.
#[derive(Debug, thiserror::Error)]
#[error("cannot open serial port {path}: {source}{}", open_hint(.source))]
pub struct OpenError {
    pub path: String,
    #[source]
    pub source: tokio_serial::Error,
}

impl OpenError {
    fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self.source.kind {
            tokio_serial::ErrorKind::Io(kind) => Some(kind),
            _ => None,
        }
    }

    /// Another program holds the port open.
    pub fn is_busy(&self) -> bool {
        self.io_kind() == Some(std::io::ErrorKind::ResourceBusy)
            || self
                .source
                .description
                .to_ascii_lowercase()
                .contains("busy")
    }
}

/// What to do about a port that would not open (empty when nothing useful
/// can be said).
fn open_hint(e: &tokio_serial::Error) -> &'static str {
    let kind = match e.kind {
        tokio_serial::ErrorKind::Io(kind) => Some(kind),
        tokio_serial::ErrorKind::NoDevice => Some(std::io::ErrorKind::NotFound),
        _ => None,
    };
    let text = e.description.to_ascii_lowercase();
    if kind == Some(std::io::ErrorKind::PermissionDenied) || text.contains("permission denied") {
        "; the service user may not use it: add that user to the `dialout` group \
         (sudo usermod -aG dialout USER, then log in again; a systemd unit: \
         SupplementaryGroups=dialout)"
    } else if kind == Some(std::io::ErrorKind::NotFound) || text.contains("no such file") {
        "; is the device plugged in and powered? Stable names are in /dev/serial/by-id/"
    } else {
        ""
    }
}

/// Which protocol `radio_port` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RadioBackend {
    /// Kenwood-style CAT on a serial port (`radio_port` is its path).
    Kenwood,
    /// Hamlib's rigctld (`radio_port` is host:port, e.g. 127.0.0.1:4532).
    Rigctld,
}

#[derive(Debug, thiserror::Error)]
pub enum RadioError {
    #[error(transparent)]
    Cat(#[from] CatError),
    #[error(transparent)]
    Rig(#[from] RigError),
    #[error("{0}")]
    BadCommand(String),
    /// The exchange did not finish in time (a write that never drained, a
    /// peer that stopped answering mid-exchange).
    #[error("the radio did not finish an exchange within {0:?}")]
    Hung(Duration),
}

impl RadioError {
    /// Whether the line itself is in doubt (reopen the link), as opposed to
    /// one refused or malformed exchange.
    pub fn link_down(&self) -> bool {
        match self {
            RadioError::Cat(e) => e.link_down(),
            RadioError::Rig(e) => {
                matches!(e, RigError::Io(_) | RigError::Timeout(_) | RigError::Closed)
            }
            RadioError::BadCommand(_) => false,
            RadioError::Hung(_) => true,
        }
    }
}

/// What the bridge polls.
#[derive(Debug, Clone, PartialEq)]
pub struct RadioStatus {
    pub freq_hz: u64,
    pub mode: String,
    pub ptt: bool,
}

/// One radio, whichever backend reaches it.
pub enum Radio {
    Kenwood(Kenwood<tokio_serial::SerialStream>),
    Rigctld(Rigctld),
}

impl Radio {
    /// Opens the link and identifies the radio: a warm link has answered
    /// before it reports connected. With `auto_info`, a Kenwood is asked to
    /// report its changes itself (`AI2;`, see [`Radio::reports`]).
    pub async fn open(
        backend: RadioBackend,
        port: &str,
        baud: u32,
        timeout: Duration,
        auto_info: bool,
    ) -> Result<Radio, RadioError> {
        match backend {
            RadioBackend::Kenwood => {
                let serial = open_serial_off_thread(port, baud)
                    .await
                    .map_err(|e| CatError::opening(port, e))?;
                let mut k = Kenwood::new(serial, timeout);
                k.identify().await?;
                if auto_info {
                    k.enable_auto_info().await?;
                }
                Ok(Radio::Kenwood(k))
            }
            RadioBackend::Rigctld => {
                let mut r = Rigctld::connect(port, timeout).await?;
                r.frequency().await?;
                Ok(Radio::Rigctld(r))
            }
        }
    }

    pub async fn status(&mut self) -> Result<RadioStatus, RadioError> {
        match self {
            Radio::Kenwood(k) => {
                let (freq_hz, ptt, mode) = k.status().await?;
                Ok(RadioStatus {
                    freq_hz,
                    mode: mode.to_string(),
                    ptt,
                })
            }
            Radio::Rigctld(r) => Ok(RadioStatus {
                freq_hz: r.frequency().await?,
                mode: hamlib_to_kenwood_mode(&r.mode().await?.0).to_string(),
                ptt: r.ptt().await?,
            }),
        }
    }

    /// Whether the radio reports its changes itself (a Kenwood that took
    /// `AI2;`), so polling it is only a check. rigctld never does.
    pub fn reports(&self) -> bool {
        match self {
            Radio::Kenwood(k) => k.auto_info(),
            Radio::Rigctld(_) => false,
        }
    }

    /// Resolves when the radio has reported a change by itself, with its
    /// state then; never for rigctld. Cancel-safe (for a `select!`).
    pub async fn changed(&mut self) -> Result<RadioStatus, RadioError> {
        match self {
            Radio::Kenwood(k) => {
                let (freq_hz, ptt, mode) = k.changed().await?;
                Ok(RadioStatus {
                    freq_hz,
                    mode: mode.to_string(),
                    ptt,
                })
            }
            Radio::Rigctld(_) => std::future::pending().await,
        }
    }

    /// Leaves the radio's settings as they were found (a Kenwood's `AI`),
    /// before the link is closed for good.
    pub async fn close(&mut self) -> Result<(), RadioError> {
        match self {
            Radio::Kenwood(k) => Ok(k.restore_auto_info().await?),
            Radio::Rigctld(_) => Ok(()),
        }
    }

    pub async fn set_frequency(&mut self, hz: u64) -> Result<(), RadioError> {
        match self {
            Radio::Kenwood(k) => Ok(k.set_frequency(hz).await?),
            Radio::Rigctld(r) => Ok(r.set_frequency(hz).await?),
        }
    }

    /// `mode` in the dashboards' vocabulary (the Kenwood names: USB, CW-R, FSK ...).
    pub async fn set_mode(&mut self, mode: &str) -> Result<(), RadioError> {
        match self {
            Radio::Kenwood(k) => Ok(k.set_mode(mode).await?),
            Radio::Rigctld(r) => Ok(r.set_mode(&kenwood_to_hamlib_mode(mode), 0).await?),
        }
    }

    pub async fn set_ptt(&mut self, on: bool) -> Result<(), RadioError> {
        match self {
            Radio::Kenwood(k) => Ok(k.set_ptt(on).await?),
            Radio::Rigctld(r) => Ok(r.set_ptt(on).await?),
        }
    }

    /// The receive S-meter in dB relative to S9 (rigctld's `STRENGTH`).
    /// Ask only while receiving: keyed, a Kenwood's meter shows power.
    pub async fn strength_db(&mut self) -> Result<i32, RadioError> {
        match self {
            Radio::Kenwood(k) => Ok(k.strength_db().await?),
            Radio::Rigctld(r) => Ok(r.strength_db().await?),
        }
    }

    /// Forward power from the radio's own meter, in watts.
    pub async fn power_watts(&mut self) -> Result<f64, RadioError> {
        match self {
            Radio::Kenwood(k) => Ok(k.power_watts().await?),
            Radio::Rigctld(r) => Ok(r.power_watts().await?),
        }
    }
}

/// Hamlib's mode names in the Kenwood vocabulary the dashboards use.
fn hamlib_to_kenwood_mode(mode: &str) -> &str {
    match mode {
        "CWR" => "CW-R",
        "RTTY" => "FSK",
        "RTTYR" => "FSK-R",
        other => other,
    }
}

fn kenwood_to_hamlib_mode(mode: &str) -> String {
    let mode = mode.to_ascii_uppercase();
    match mode.as_str() {
        "CW-R" => "CWR".into(),
        "FSK" => "RTTY".into(),
        "FSK-R" => "RTTYR".into(),
        _ => mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_port_is_named_with_where_to_look() {
        let e = open_serial("/dev/ttyUSB-not-there", 38_400).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/dev/ttyUSB-not-there") && text.contains("/dev/serial/by-id/"),
            "{text}"
        );
        // Through the backends' errors, the path and the hint survive.
        let text = CatError::opening("/dev/ttyUSB-not-there", e).to_string();
        assert!(text.contains("/dev/ttyUSB-not-there"), "{text}");
    }

    #[test]
    fn a_forbidden_port_is_named_with_the_group_to_join() {
        // Root opens anything, so the error is made rather than provoked.
        let e = OpenError {
            path: "/dev/ttyACM0".into(),
            source: tokio_serial::Error::new(
                tokio_serial::ErrorKind::Io(std::io::ErrorKind::PermissionDenied),
                "Permission denied",
            ),
        };
        let text = lp100::Lp100Error::from(e).to_string();
        assert!(
            text.contains("/dev/ttyACM0") && text.contains("`dialout` group"),
            "{text}"
        );
        assert!(!text.contains("by-id"), "{text}");
    }

    #[test]
    fn mode_names_map_both_ways() {
        for (hamlib, kenwood) in [
            ("CWR", "CW-R"),
            ("RTTY", "FSK"),
            ("RTTYR", "FSK-R"),
            ("USB", "USB"),
        ] {
            assert_eq!(hamlib_to_kenwood_mode(hamlib), kenwood);
            assert_eq!(kenwood_to_hamlib_mode(kenwood), hamlib);
        }
    }
}
