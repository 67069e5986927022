//! The hardware bridge: the one place the proxy talks to the station's
//! hardware. Everything it learns becomes an event in the log; every command
//! it carries out was read from the log first (so it is logged before it
//! acts, and sessions never touch hardware).
//!
//! | module | job |
//! |---|---|
//! | [`radio`] | the radio link: warm open, state polling, commands, TX-drop detection |
//! | [`meter`] | the power-meter link (a Telepost LP-100A on a serial port) |
//! | [`power`] | readings into `shared_protocol::power::PowerMonitor`: `meter.power`, alarms |
//! | [`gate`] | which readings are logged: news or a slow heartbeat, not every poll |
//! | [`logq`] | the bounded queue through which every hardware event reaches the log (no loop waits for the log) |
//!
//! Each link runs `shared_protocol::link::LinkManager` for its decisions,
//! wrapped in [`HwLink`] (open, close, log every `EVENT_*` as a
//! `link.<name>` event, restart when a failed device comes back). Power alarms are noted on
//! the link whose meter produced the reading; a critical alarm while the radio
//! is on the air is a TX drop, and the radio link takes its fast path.

pub mod gate;
pub mod logq;
pub mod meter;
pub mod power;
pub mod radio;
pub mod smeter;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rmpv::Value;
use serde::Serialize;
use shared_protocol::backoff::BackoffConfig;
use shared_protocol::link::{LinkConfig, LinkEvent, LinkEventType, LinkManager, LinkOutput};
use shared_protocol::power::PowerConfig;
use shared_protocol::ServerFrame;
use station_sim::pty::{PtyMeter, PtyRadio};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{Config, MeterSource};
use crate::eventlog::{EventLog, Logged, NewEvent};
use crate::hooks::Hooks;
use crate::station::Station;
use edge_proxy::hardware::RadioBackend;
use logq::LogQueue;

/// What `/stats` shows of a link.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkStatus {
    pub backend: String,
    pub port: String,
    pub state: String,
    pub health: u8,
    pub reconnects: u64,
    pub last_event: Option<String>,
}

pub type SharedStatus = Arc<Mutex<LinkStatus>>;

/// The links the bridge runs, for `/stats`.
#[derive(Default)]
pub struct Links {
    pub radio: Option<SharedStatus>,
    pub meter: Option<SharedStatus>,
    pub power: Option<power::SharedPower>,
}

fn new_status(backend: &str, port: &str) -> SharedStatus {
    Arc::new(Mutex::new(LinkStatus {
        backend: backend.to_string(),
        port: port.to_string(),
        ..Default::default()
    }))
}

/// Mirrors the link manager into the status and the per-link gauges.
fn publish_status(name: &'static str, status: &SharedStatus, link: &LinkManager) {
    let state = link.state().as_str();
    if let Ok(mut s) = status.lock() {
        if s.state != state {
            if !s.state.is_empty() {
                metrics::gauge!("link_state", "link" => name, "state" => s.state.clone()).set(0.0);
            }
            s.state = state.to_string();
        }
        s.health = link.health_score();
        s.reconnects = link.reconnects();
    }
    metrics::gauge!("link_state", "link" => name, "state" => state).set(1.0);
    metrics::gauge!("link_health_score", "link" => name).set(f64::from(link.health_score()));
    metrics::counter!("link_reconnects_total", "link" => name).absolute(link.reconnects());
}

/// Logs one link event as a reliable `link.<name>` event, runs the
/// operator's hooks for it, and keeps it in the status.
fn record(
    log: &LogQueue,
    hooks: &Hooks,
    name: &'static str,
    status: &SharedStatus,
    link: &LinkManager,
    event: LinkEvent,
) {
    let kind = event.kind.as_str();
    // The device path is in every line: an operator with two adapters must
    // know which one failed.
    let port = status.lock().map(|s| s.port.clone()).unwrap_or_default();
    let trouble = matches!(
        event.kind,
        LinkEventType::ReconnectFailed
            | LinkEventType::MaxRetriesExceeded
            | LinkEventType::TxDropDetected
            | LinkEventType::PowerCritical
    ) || event.state == shared_protocol::link::LinkState::Failed;
    if trouble {
        tracing::warn!(link = name, %port, state = event.state.as_str(), reconnects = event.reconnects, context = %event.context, "{kind}");
    } else {
        tracing::info!(link = name, %port, state = event.state.as_str(), reconnects = event.reconnects, context = %event.context, "{kind}");
    }
    metrics::counter!("link_events_total", "link" => name, "type" => kind).increment(1);
    if let Ok(mut s) = status.lock() {
        s.last_event = Some(format!("{kind}: {}", event.context));
    }
    // `/stats` agrees with the event before anyone can have seen it.
    publish_status(name, status, link);
    hooks.run(name, &event);
    let payload = Value::Map(vec![
        ("type".into(), kind.into()),
        ("link".into(), name.into()),
        ("at_ms".into(), event.at.into()),
        ("state".into(), event.state.as_str().into()),
        ("reconnects".into(), event.reconnects.into()),
        ("health".into(), u64::from(link.health_score()).into()),
        ("context".into(), event.context.as_str().into()),
    ]);
    log.push(NewEvent::reliable(format!("link.{name}"), payload));
}

/// The payload of a logged event, for the commands the bridge reads back.
fn payload_of(event: &Logged) -> Option<(String, Value)> {
    match ServerFrame::decode(&event.frame, usize::MAX) {
        Ok(ServerFrame::Event(e)) => Some((e.kind, e.payload)),
        _ => None,
    }
}

/// Whether `kind`/`payload` is the operator's "reconnect this link" command.
fn is_reconnect(kind: &str, payload: &Value, name: &str) -> bool {
    kind == "link.reconnect" && payload["link"].as_str() == Some(name)
}

/// The link manager's configuration from the proxy's.
fn link_config(config: &Config) -> LinkConfig {
    LinkConfig {
        backoff: BackoffConfig {
            base_ms: config.link_backoff_base_ms,
            max_ms: config.link_backoff_max_ms,
            max_attempts: Some(config.link_retries),
            ..BackoffConfig::HARDWARE
        },
        ..LinkConfig::default()
    }
}

/// What both hardware links share around their `LinkManager`: carrying
/// out its outputs (open and identify the device, close it, log every
/// `EVENT_*`), mirroring it into `/stats`, and restarting it when a failed
/// device comes back. The tasks add what is theirs: polling and commands.
pub(crate) struct HwLink {
    name: &'static str,
    pub link: LinkManager,
    status: SharedStatus,
    reappear: Reappear,
    log: LogQueue,
    hooks: Hooks,
    clock: Clock,
}

impl HwLink {
    /// `device_path`: the serial port to watch while failed (none for TCP).
    pub fn new(
        name: &'static str,
        config: LinkConfig,
        status: SharedStatus,
        device_path: Option<&str>,
        log: LogQueue,
        hooks: Hooks,
        clock: Clock,
    ) -> Self {
        crate::telemetry::register_link(name);
        HwLink {
            name,
            link: LinkManager::new(config, fastrand::u64(..)),
            status,
            reappear: Reappear::new(device_path),
            log,
            hooks,
            clock,
        }
    }

    /// Carries out what the link manager decided, opening `device` with
    /// `open` (which must identify it within the manager's timeout). Returns
    /// whether an open was attempted, i.e. `device` may be a new one.
    pub async fn carry_out<T, E, F>(
        &mut self,
        device: &mut Option<T>,
        mut open: impl FnMut() -> F,
    ) -> bool
    where
        T: Send + 'static,
        E: std::fmt::Display,
        F: std::future::Future<Output = Result<T, E>>,
    {
        let mut opened = false;
        while let Some(out) = self.link.poll_output() {
            match out {
                LinkOutput::Open { timeout_ms, .. } => {
                    close_off_thread(device);
                    opened = true;
                    let result =
                        tokio::time::timeout(Duration::from_millis(timeout_ms), open()).await;
                    let now = self.clock.now();
                    match result {
                        Ok(Ok(d)) => {
                            *device = Some(d);
                            self.link.opened(now);
                        }
                        Ok(Err(e)) => {
                            self.reappear.observe();
                            self.link.failed(now, &e.to_string());
                        }
                        Err(_) => self
                            .link
                            .failed(now, &format!("no answer within {timeout_ms} ms")),
                    }
                }
                LinkOutput::Close => close_off_thread(device),
                LinkOutput::Event(event) => record(
                    &self.log,
                    &self.hooks,
                    self.name,
                    &self.status,
                    &self.link,
                    event,
                ),
            }
        }
        publish_status(self.name, &self.status, &self.link);
        opened
    }

    /// About once a second while the link is failed: restarts it if its
    /// device has come back.
    pub fn check_failed(&mut self) {
        if self.reappear.came_back() {
            tracing::info!(link = self.name, "the device reappeared: reconnecting");
            self.link.start(self.clock.now());
        }
    }
}

/// Watches a failed serial link's device path: when it comes back after
/// being gone (udev recreates `/dev/ttyUSB0` when the cable is plugged in
/// again), the link is restarted without waiting for an operator.
struct Reappear {
    path: Option<std::path::PathBuf>,
    gone: bool,
}

impl Reappear {
    /// `None` for links that are not a device path (rigctld over TCP).
    pub fn new(path: Option<&str>) -> Self {
        Reappear {
            path: path.map(std::path::PathBuf::from),
            gone: false,
        }
    }

    /// Notes whether the device is there (after each failed attempt).
    pub fn observe(&mut self) {
        // `exists` follows symlinks: a dangling udev link counts as gone.
        if self.path.as_ref().is_some_and(|p| !p.exists()) {
            self.gone = true;
        }
    }

    /// Call about once a second while the link is failed; true when the
    /// device has come back since it was seen gone.
    pub fn came_back(&mut self) -> bool {
        self.observe();
        let present = self.path.as_ref().is_some_and(|p| p.exists());
        present && std::mem::take(&mut self.gone)
    }
}

/// Takes the device, if open, and closes it on tokio's blocking pool:
/// closing a tty waits for its output to drain (up to the driver's
/// `closing_wait`, often 30 s, on a wedged USB adapter), and the thread that
/// runs both links, and unkeys the radio, must not wait on it.
pub(crate) fn close_off_thread<T: Send + 'static>(device: &mut Option<T>) {
    if let Some(device) = device.take() {
        drop(tokio::task::spawn_blocking(move || drop(device)));
    }
}

/// The demo's simulated hardware, kept alive while the proxy runs.
#[derive(Default)]
pub struct DemoHardware {
    _radio: Option<station_sim::pty::PtyRadio>,
    _meter: Option<station_sim::pty::PtyMeter>,
}

/// Starts the links the configuration asks for. With `demo` and no radio
/// configured, a simulated TS-2000 and LP-100A on pseudo-terminals stand in,
/// driven through the same backends as real hardware. The links run on the
/// station thread.
pub fn start(
    config: &Config,
    log: &EventLog,
    clock: Clock,
    station: &Station,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<(Links, DemoHardware, Running)> {
    let hooks = Hooks::new(config.hooks.clone());
    let power = power::PowerSettings {
        monitor: PowerConfig {
            poll_ms: config.meter_poll_ms,
            zero_threshold_w: config.power_zero_threshold_w,
            ..PowerConfig::default()
        },
        heartbeat_ms: config.power_heartbeat_ms,
    };
    let mut demo = DemoHardware::default();
    let (mut backend, mut radio_port) = (config.radio_backend, config.radio_port.clone());
    let (mut meter, mut meter_port) = (config.meter, config.meter_port.clone());
    if config.demo && radio_port.is_none() {
        // A live band: the S-meter fades around S9 over the noise.
        let radio = PtyRadio::start(station_sim::kenwood::Radio {
            fading: true,
            ..Default::default()
        })
        .context("starting the simulated radio")?;
        println!(
            "simulated radio (Kenwood TS-2000 CAT) on {}",
            radio.path.display()
        );
        (backend, radio_port) = (
            RadioBackend::Kenwood,
            Some(radio.path.display().to_string()),
        );
        if meter != MeterSource::None && meter_port.is_none() {
            let sim =
                PtyMeter::start(radio.radio.clone()).context("starting the simulated meter")?;
            println!(
                "simulated power meter (Telepost LP-100A) on {}",
                sim.path.display()
            );
            (meter, meter_port) = (MeterSource::Lp100, Some(sim.path.display().to_string()));
            demo._meter = Some(sim);
        }
        demo._radio = Some(radio);
    }
    let meter_poll = Duration::from_millis(config.meter_poll_ms);
    // Every task spawned from here on runs on the station thread.
    let _station = station.handle.enter();
    let clock = station.clock(clock);
    let queue = LogQueue::start(log.clone());
    let mut links = Links::default();
    let radio = radio_port.map(|port| {
        radio::start(
            radio::RadioSettings {
                backend,
                port,
                baud: config.radio_baud,
                poll: Duration::from_millis(config.radio_poll_ms),
                poll_on_air: Duration::from_millis(config.radio_poll_tx_ms),
                auto_info: config.radio_auto_info,
                meter_poll: (meter == MeterSource::Radio).then_some(meter_poll),
                power,
                link: link_config(config),
                tx_keepalive: Duration::from_millis(config.tx_keepalive_ms),
                tx_max: Duration::from_millis(config.tx_max_ms),
            },
            log.clone(),
            queue.clone(),
            clock,
            hooks.clone(),
            shutdown.clone(),
        )
    });
    let mut running = Running::default();
    if let Some(r) = &radio {
        links.radio = Some(r.status.clone());
        links.power = r.power.clone();
    }
    if let (MeterSource::Lp100, Some(port)) = (meter, meter_port) {
        let m = meter::start(
            meter::MeterSettings {
                port,
                poll: meter_poll,
                power,
                link: link_config(config),
            },
            radio.as_ref().map(|r| meter::RadioSide {
                on_air: r.on_air.clone(),
                tx_drop: r.tx_drop.clone(),
            }),
            log.clone(),
            queue,
            clock,
            hooks,
            shutdown.clone(),
        );
        links.meter = Some(m.status);
        links.power = Some(m.power);
    }
    if let Some(r) = radio {
        running.unkey = Some(r.unkey);
        running.radio = Some(r.done);
    }
    Ok((links, demo, running))
}

/// What the rest of the proxy keeps of the running bridge.
#[derive(Default)]
pub struct Running {
    /// The radio link's direct unkey line, for the TX watchdog.
    pub unkey: Option<tokio::sync::mpsc::Sender<String>>,
    radio: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// After shutdown began: waits (at most `within`) for the radio link to
    /// leave the radio in receive and close its port. Returns false if it
    /// did not finish in time.
    pub async fn finished(self, within: Duration) -> bool {
        match self.radio {
            Some(task) => tokio::time::timeout(within, task).await.is_ok(),
            None => true,
        }
    }
}
