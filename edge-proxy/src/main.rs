//! `edge-proxy`: the process that runs next to the radio.
//!
//! Start-up order: configuration, logging, metrics, the durable log (a clear
//! error if it cannot be opened), background maintenance, then the listener.
//! SIGINT/SIGTERM begin a graceful shutdown: sessions are told to reconnect
//! later with a proper close code, the log commits what is queued, and the
//! process exits.

mod app;
mod auth;
mod bridge;
mod clock;
mod config;
mod doctor;
mod eventlog;
mod hooks;
mod http;
mod policy;
mod programs;
mod registry;
mod rigport;
mod session;
mod station;
mod telemetry;
mod watchdog;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::watch;

use crate::app::AppState;
use crate::clock::Clock;
use crate::config::{Cli, Config, LogFormat, MeterSource};
use crate::eventlog::{EventLog, LogConfig};

fn main() -> Result<std::process::ExitCode> {
    let cli = Cli::parse();
    if let Some(config::Command::Doctor) = cli.command {
        return doctor::main(&cli);
    }
    let config = Config::load(&cli)?;
    if cli.print_config {
        print!("{}", config.redacted()?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    init_logging(config.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        runtime.worker_threads(config.worker_threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config, cli.port_file))?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_PROXY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The embedded log, or the shared JetStream one (`log = "nats://..."`), with
/// the embedded one as a loudly announced fallback if so configured.
async fn open_log(config: &Config, log_config: LogConfig) -> Result<EventLog> {
    let embedded = || {
        EventLog::open(&config.data_dir, log_config)
            .with_context(|| format!("opening the event log in {}", config.data_dir.display()))
    };
    let Some(nats) = config.nats() else {
        return embedded();
    };
    tracing::info!(url = %nats.shown_url(), stream = %nats.stream, "joining the shared event log on NATS JetStream");
    match EventLog::connect(&nats, log_config).await {
        Ok(log) => Ok(log),
        Err(e) if config.log_fallback_embedded => {
            tracing::error!(
                error = %e,
                data_dir = %config.data_dir.display(),
                "NATS JetStream is unavailable: FALLING BACK TO THE EMBEDDED LOG. This proxy is on its own: \
                 other proxies do not see its events and its clients cannot fail over to them"
            );
            embedded()
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "joining the shared event log at {} (start nats-server with -js, or set log_fallback_embedded = true)",
            nats.shown_url()
        ))),
    }
}

/// On a shared log, the radio and meter this proxy bridges must be its own:
/// refuses to start if another live proxy has claimed them.
async fn claim_hardware(config: &Config, log: &EventLog) -> Result<()> {
    let EventLog::JetStream(shared) = log else {
        return Ok(());
    };
    let has_radio = config.radio_port.is_some() || config.demo;
    let has_meter = config.meter == MeterSource::Lp100;
    for (what, has) in [("radio", has_radio), ("meter", has_meter)] {
        if has {
            shared
                .claim(what, &config.proxy_name)
                .await
                .with_context(|| {
                    format!("claiming the {what} for proxy {:?}", config.proxy_name)
                })?;
        }
    }
    Ok(())
}

async fn run(config: Config, port_file: Option<std::path::PathBuf>) -> Result<()> {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    telemetry::describe();
    telemetry::register();
    let log_config = LogConfig {
        retention_ms: config.retention_ms,
        max_events: config.max_events,
        memory_bytes: config.log_memory_bytes,
        publishers: eventlog::PublisherLimits {
            ttl_ms: config.publisher_ttl_ms,
            max: config.max_publishers,
        },
        ..LogConfig::default()
    };
    let station = eventlog::StatelessKinds::names_station_kinds(&config.stateless_kinds);
    if !station.is_empty() {
        tracing::warn!(
            patterns = ?station,
            "stateless_kinds names station kinds (radio.*, meter.*, link.*, watchdog.*): those stay in every snapshot anyway"
        );
    }
    let log = open_log(&config, log_config).await?;
    tracing::info!(
        backend = log.backend(),
        epoch = log.epoch(),
        head = log.head(),
        "event log open"
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let config = Arc::new(config);
    let state = Arc::new(AppState::new(
        config.clone(),
        log.clone(),
        shutdown_rx.clone(),
        prometheus,
    ));

    // The proxy's periodic work has a thread of its own (see `station`).
    let station = station::Station::start()?;
    station
        .handle
        .spawn(maintenance(state.clone(), station.clock(state.clock)));
    claim_hardware(&config, &log).await?;
    let (links, _demo_hardware, bridge) =
        bridge::start(&config, &log, state.clock, &station, &shutdown_rx)?;
    let _ = state.links.set(links);
    if let Some(unkey) = bridge.unkey.clone() {
        state.watchdog.attach_radio(unkey);
    }
    // Programs (WSJT-X, loggers) share the radio through the rig port.
    let _rig_port = rigport::start(&state).await?;
    if let Some(path) = port_file {
        std::fs::write(&path, addr.to_string())
            .with_context(|| format!("writing the port file {}", path.display()))?;
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(http::tls::Tls::load(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("tls_cert and tls_key go together: set both, or neither"),
    };
    let (http, ws) = if tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    if config.www.is_some() {
        println!("dashboard: {http}://{addr}/");
    }
    println!(
        "websocket: {ws}://{addr}/ws   stats: {http}://{addr}/stats   metrics: {http}://{addr}/metrics"
    );
    if config.tokens.is_empty() {
        tracing::info!(
            "no tokens configured: every client may send commands (Origin checks still apply)"
        );
    }

    let app =
        http::router(state.clone()).into_make_service_with_connect_info::<http::listener::Remote>();
    let signal_state = state.clone();
    let lost_history = Arc::new(std::sync::Mutex::new(None::<String>));
    let lost_reason = lost_history.clone();
    let watched_log = log.clone();
    let signal = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            reason = watched_log.lost() => {
                tracing::error!("{reason}; restarting is the way to its new epoch: shutting down");
                if let Ok(mut slot) = lost_reason.lock() {
                    *slot = Some(reason);
                }
            }
        }
        tracing::info!(
            sessions = signal_state.registry.live_connections(),
            "shutdown requested: telling sessions when to come back, then closing them"
        );
        signal_state.begin_shutdown(&shutdown_tx);
    };
    let fd_limit = http::listener::raise_fd_limit();
    let limits = http::listener::Limits {
        header_timeout: Duration::from_millis(config.header_timeout_ms),
        max_connections: match config.max_connections {
            0 => http::listener::connections_for(fd_limit),
            n => n,
        },
        max_unfinished: match config.max_connections {
            0 => http::listener::connections_for(fd_limit),
            n => n,
        } / 2
            + 1,
    };
    tracing::info!(
        fd_limit,
        max_connections = limits.max_connections,
        "accepting connections"
    );
    let listener = http::listener::Guarded::new(listener, limits, tls.clone());
    if let Some(tls) = tls {
        tokio::spawn(reload_tls_on_sighup(tls));
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await?;
    // The radio link unkeys a transmitting radio and waits for it to report
    // receive before it lets go of the port (it began at the signal).
    if !bridge.finished(Duration::from_secs(5)).await {
        tracing::error!("the radio link did not finish leaving the radio in receive within 5 s");
    }
    // Upgraded WebSockets outlive the HTTP server; give them a moment to
    // send their close frames.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while state.registry.live_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    log.close().await;
    tracing::info!(head = log.head(), "event log closed; bye");
    let lost = lost_history.lock().ok().and_then(|mut l| l.take());
    match lost {
        // Exit non-zero: a supervisor (systemd's Restart=on-failure) starts
        // the proxy again on the new stream.
        Some(reason) => Err(anyhow::anyhow!(reason)),
        None => Ok(()),
    }
}

/// SIGHUP: read the TLS certificate and key again (a renewed certificate);
/// open connections keep theirs, new ones get the new one.
async fn reload_tls_on_sighup(tls: Arc<http::tls::Tls>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => {
                    tracing::info!("EVENT_TLS_RELOADED: new connections get the new certificate")
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "reloading the TLS certificate failed; keeping the old one")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// How often a log that has not grown on disk is trimmed (for retention by
/// age and the publishers' TTL), which also writes the volatile readings
/// held in memory: a fifth of `retention_ms`, between 1 s and 60 s, so an
/// event goes at most that long after it expired. One transaction a
/// minute, however many readings came: an idle station's SD card sees one
/// write a minute. A log that grew on disk, or cannot store, is trimmed
/// every second.
fn idle_trim_every(retention_ms: u64) -> Duration {
    Duration::from_millis(retention_ms / 5).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Retention and registry clean-up, once a second.
async fn maintenance(state: Arc<AppState>, clock: Clock) {
    // On the station thread's grid, with the hardware polls.
    let mut tick = clock.ticker(Duration::from_secs(1));
    let mut shutdown = state.shutdown.clone();
    let mut trimmed_at: Option<(u64, tokio::time::Instant)> = None;
    let idle_every = idle_trim_every(state.config.retention_ms);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        // Skipping the trim of an idle log spares the log writer a wake-up
        // a second; a log that cannot store is retried through the trim
        // (the disk-full probe), so it is never skipped.
        let head = state.log.durable_head();
        let due = trimmed_at.is_none_or(|(at_head, at)| {
            at_head != head || at.elapsed() >= idle_every || state.log.problem().is_some()
        });
        if due {
            if let Err(e) = state.log.trim().await {
                tracing::warn!(error = %e, "trimming the event log failed");
            }
            // As of after the trim, which wrote the readings held back.
            trimmed_at = Some((state.log.durable_head(), tokio::time::Instant::now()));
        }
        state.registry.sweep(state.clock.now());
    }
}
