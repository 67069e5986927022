//! Configuration: built-in defaults, then a TOML file, then environment
//! variables and flags (highest wins). `edge-proxy --print-config` shows the
//! result; `edge-proxy.example.toml` documents every key.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::auth::{Role, TokenConfig};
use crate::eventlog::NatsConfig;
use crate::hooks::HookConfig;
use edge_proxy::hardware::RadioBackend;

/// Command line. Every flag also reads an `EDGE_PROXY_*` environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "edge-proxy",
    version,
    about = "Keeps browser dashboards connected to a radio and a power meter through every kind of failure.",
    long_about = "Terminates the dashboards' WebSockets, gives every event a durable, gap-free sequence number, \
                  replays what a client missed after a disconnect or a restart, and bridges to the station's hardware.\n\n\
                  Configuration comes from built-in defaults, then --config FILE (TOML), then environment variables \
                  and flags. `--print-config` shows the result."
)]
pub struct Cli {
    /// TOML configuration file (see edge-proxy.example.toml).
    #[arg(global = true, long, short, env = "EDGE_PROXY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for HTTP and WebSocket (e.g. 127.0.0.1:8080, or port 0 for any free port).
    #[arg(global = true, long, env = "EDGE_PROXY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory of the durable event log (created if missing).
    #[arg(global = true, long, env = "EDGE_PROXY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The event log: "embedded" (a file in --data-dir, the default) or
    /// nats://host:port for a NATS JetStream stream shared by several proxies.
    /// (EDGE_PROXY_LOG is the log-level filter, hence EDGE_PROXY_EVENT_LOG.)
    #[arg(global = true, long, env = "EDGE_PROXY_EVENT_LOG")]
    pub log: Option<String>,
    /// This proxy's name among several on one JetStream log.
    #[arg(global = true, long, env = "EDGE_PROXY_NAME")]
    pub proxy_name: Option<String>,
    /// Directory of the dashboard's static files, served at /.
    #[arg(global = true, long, env = "EDGE_PROXY_WWW")]
    pub www: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(global = true, long, env = "EDGE_PROXY_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Run with simulated hardware (radio and power meter), for the demo.
    #[arg(global = true, long, env = "EDGE_PROXY_DEMO")]
    pub demo: bool,
    /// The radio: a serial port for a Kenwood-style CAT radio (e.g. /dev/ttyUSB0),
    /// or host:port of Hamlib's rigctld with --radio-backend rigctld.
    #[arg(global = true, long, env = "EDGE_PROXY_RADIO_PORT")]
    pub radio_port: Option<String>,
    /// The radio's serial speed (kenwood backend; the radio's menu must match).
    #[arg(global = true, long, env = "EDGE_PROXY_RADIO_BAUD")]
    pub radio_baud: Option<u32>,
    /// How the radio is reached: kenwood (CAT on a serial port) or rigctld (Hamlib, TCP).
    #[arg(global = true, long, env = "EDGE_PROXY_RADIO_BACKEND")]
    pub radio_backend: Option<RadioBackend>,
    /// Where forward power comes from: radio (its own meter), lp100 (a Telepost LP-100A on --meter-port) or none.
    #[arg(global = true, long, env = "EDGE_PROXY_METER")]
    pub meter: Option<MeterSource>,
    /// Serial port of the LP-100A wattmeter (with --meter lp100).
    #[arg(global = true, long, env = "EDGE_PROXY_METER_PORT")]
    pub meter_port: Option<String>,
    /// Serve Hamlib's NET rigctl protocol here (e.g. 127.0.0.1:4532) for WSJT-X,
    /// fldigi, loggers: they share the radio through the proxy. Off when unset.
    #[arg(global = true, long, env = "EDGE_PROXY_RIGCTL_LISTEN")]
    pub rigctl_listen: Option<SocketAddr>,
    /// A virtual Kenwood TS-2000 serial port at this path (a symlink to a
    /// pseudo-terminal) for serial-only programs.
    #[arg(global = true, long, env = "EDGE_PROXY_VIRTUAL_CAT")]
    pub virtual_cat: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(global = true, long)]
    pub print_config: bool,
    /// Serve HTTPS and WSS with this certificate chain (PEM; with --tls-key).
    #[arg(global = true, long, env = "EDGE_PROXY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key for --tls-cert (PEM). SIGHUP reloads both.
    #[arg(global = true, long, env = "EDGE_PROXY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Write the bound address to this file once listening (for scripts and tests).
    #[arg(global = true, long, env = "EDGE_PROXY_PORT_FILE")]
    pub port_file: Option<PathBuf>,
    /// What to do instead of serving (none: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands. The flags above apply to them too (`edge-proxy doctor
/// --config FILE`): they read the configuration exactly as the server does.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check this configuration against the machine: the serial devices
    /// (there, permissions, other programs holding them), ports, the data
    /// directory and free disk, NATS, rigctld, the clock. One line per check,
    /// OK/WARN/FAIL with the fix; exits non-zero on any FAIL.
    Doctor,
}

/// Where forward power readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MeterSource {
    /// The radio's own meter, through its backend.
    Radio,
    /// A Telepost LP-100A wattmeter on `meter_port`.
    Lp100,
    /// No power readings (and no power alarms).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

/// The whole configuration. Every field has a default; see
/// `edge-proxy.example.toml` for what each one does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// "embedded", or nats://host:port for a shared JetStream log.
    pub log: String,
    /// With a NATS log that cannot be reached at start: run on the embedded
    /// log instead (with a loud warning) rather than refuse to start.
    pub log_fallback_embedded: bool,
    /// The JetStream stream and its one subject.
    pub nats_stream: String,
    pub nats_subject: String,
    pub nats_connect_timeout_ms: u64,
    /// How long a publish is retried while NATS is unreachable.
    pub nats_publish_timeout_ms: u64,
    /// NATS authentication: user and password, a token, or a `.creds` file
    /// (credentials in the `log` URL work too; all are redacted in logs).
    pub nats_user: Option<String>,
    pub nats_password: Option<String>,
    pub nats_token: Option<String>,
    pub nats_creds_file: Option<PathBuf>,
    /// NATS over TLS: a CA bundle (PEM) to trust, and whether TLS is required.
    pub nats_tls_ca: Option<PathBuf>,
    pub nats_tls_required: bool,
    /// This proxy's name (NATS connection name, message ids, `/stats`).
    pub proxy_name: String,
    pub www: Option<PathBuf>,
    pub log_format: LogFormat,
    pub demo: bool,
    /// The proxy pings each client this often.
    pub heartbeat_ms: u64,
    /// A client silent this long is stale and its connection is closed.
    pub stale_after_ms: u64,
    pub max_frame_bytes: u32,
    pub max_publish_per_sec: u32,
    /// A client further behind than this gets a Gap and a Snapshot.
    pub max_behind: u32,
    /// Events per replay page: a client gets the next page only when it has
    /// acknowledged the one before (at most two pages unacknowledged).
    pub replay_page: u32,
    /// Publishes a client may have sent and not yet seen answered (announced
    /// in `Welcome.limits.publish_window`); the session's publish queue.
    pub publish_window: u32,
    /// Outbound bytes a session may have queued and unwritten: above a
    /// quarter of it no more events are queued for that client; above it the
    /// client is too slow and is closed (`stale`).
    pub max_pending_bytes: u64,
    /// On a shared log: how long a client resuming past this proxy's mirror
    /// waits for it to catch up before it is sent away with a `Drain`.
    pub mirror_wait_ms: u64,
    /// A client this far behind is "hot": superseded volatile events are
    /// coalesced for it.
    pub cool_above_lag: u32,
    /// Events older than this are trimmed from the log.
    pub retention_ms: u64,
    /// The station state (the last value of every kind, what a Snapshot
    /// carries): at most this many kinds and bytes; a publish that would
    /// grow it further is refused with `state_full`.
    pub max_state_kinds: usize,
    pub max_state_bytes: u64,
    /// Kinds logged and delivered but never kept as last values nor put in
    /// a Snapshot (so they do not count toward the state's limits): exact
    /// kinds (`"note"`) or prefixes (`"chat.*"`). The station's own kinds
    /// (`radio.*`, `meter.*`, `link.*`, `watchdog.*`) are always kept.
    pub stateless_kinds: Vec<String>,
    /// The publishers table (each client's last applied `client_seq`, what
    /// deduplication needs) forgets a client this long after its last
    /// publish...
    pub publisher_ttl_ms: u64,
    /// ...and keeps at most this many clients (the longest silent go first).
    pub max_publishers: u64,
    /// Bytes of events kept in memory (the tail, a shared log's mirror).
    pub log_memory_bytes: u64,
    /// The log keeps at most this many events.
    pub max_events: u64,
    /// Origins allowed to open a WebSocket besides the proxy's own; "*" allows all.
    pub allowed_origins: Vec<String>,
    /// HTTPS and WSS: the certificate chain and the private key, PEM files
    /// (reloaded on SIGHUP). Without them, plain HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Host names the proxy answers for, besides IP literals, `localhost`,
    /// this machine's hostname and `hostname.local` (DNS-rebinding defence):
    /// exact names or `*.example.org`.
    pub allowed_hosts: Vec<String>,
    /// Shared-secret tokens. When none are set, a client without one has
    /// the control role if the proxy listens on loopback only, else read.
    pub tokens: Vec<TokenConfig>,
    /// A secret for `/stats` and `/metrics` alone (Prometheus' bearer_token),
    /// besides the tokens.
    pub metrics_token: Option<String>,
    /// More `[[tokens]]` from a file of their own, so the main configuration
    /// can be world-readable; under systemd, `LoadCredential=tokens.toml:PATH`
    /// puts it in `$CREDENTIALS_DIRECTORY`, which is read by itself.
    pub tokens_file: Option<PathBuf>,
    /// Most new connections accepted per second; the excess get a `Drain`
    /// frame saying when to come back.
    pub max_handshakes_per_sec: u32,
    /// The same, for each source address, so one host cannot use up the
    /// whole budget.
    pub max_handshakes_per_sec_per_source: u32,
    /// A connection must finish its first request's headers this soon.
    pub header_timeout_ms: u64,
    /// Most open connections (refused with HTTP 503 beyond); 0: what the
    /// open-files limit allows (raised to its hard limit at start).
    pub max_connections: usize,
    /// Threads that serve the clients; 0: one per core. The hardware and
    /// the maintenance tick have a thread of their own either way.
    pub worker_threads: usize,
    /// On a graceful shutdown, clients are told to come back after this long
    /// (plus a spread that keeps them under `max_handshakes_per_sec`).
    pub drain_retry_after_ms: u64,
    /// TX watchdog: unkey when the keying client has not repeated PTT-on for this long.
    pub tx_keepalive_ms: u64,
    /// TX watchdog's time-out timer: unkey after this long on the air, then
    /// refuse that client's PTT-on until it releases.
    pub tx_max_ms: u64,
    /// How the radio is reached.
    pub radio_backend: RadioBackend,
    /// The radio's serial port (kenwood) or rigctld's host:port; none: no
    /// radio bridge (with `demo`, a simulated radio on a pseudo-terminal).
    pub radio_port: Option<String>,
    pub radio_baud: u32,
    /// How often the radio's state is polled (without auto information;
    /// 100 ms for 3 s after a change was seen).
    pub radio_poll_ms: u64,
    /// How often while a transmission keyed through the proxy is on (TX-drop detection).
    pub radio_poll_tx_ms: u64,
    /// Kenwood: ask the radio to report its changes itself (`AI2;`), so
    /// they reach dashboards at once and the idle poll is only a check
    /// every `max(radio_poll_ms, 2000)` ms.
    pub radio_auto_info: bool,
    /// Hardware links (radio, meter): reconnect backoff and attempts
    /// before a link is `failed`.
    pub link_backoff_base_ms: u64,
    pub link_backoff_max_ms: u64,
    pub link_retries: u32,
    /// Where forward power comes from.
    pub meter: MeterSource,
    /// The LP-100A's serial port (with `meter = "lp100"`).
    pub meter_port: Option<String>,
    /// How often the power meter is read.
    pub meter_poll_ms: u64,
    /// Below this, a reading while transmitting counts as no power.
    pub power_zero_threshold_w: f64,
    /// Power readings are logged (`meter.power`) when they change
    /// meaningfully, and an unchanged one at least this often; every
    /// reading still reaches the alarms, `/stats` and `/metrics`.
    pub power_heartbeat_ms: u64,
    /// The rig port (Hamlib NET rigctl) for programs; none: off.
    pub rigctl_listen: Option<SocketAddr>,
    /// What programs on the rig port may do: `control` (the default) or `read`.
    pub rigctl_role: Role,
    /// Source networks allowed on the rig port besides loopback ("192.168.1.0/24").
    pub rigctl_allow: Vec<String>,
    /// A virtual Kenwood TS-2000 serial port (a symlink at this path).
    pub virtual_cat: Option<PathBuf>,
    /// Commands run on hardware link events (see `hooks.rs`).
    pub hooks: Vec<HookConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            log: "embedded".into(),
            log_fallback_embedded: false,
            nats_stream: "STATION".into(),
            nats_subject: "station.events".into(),
            nats_connect_timeout_ms: 5_000,
            nats_publish_timeout_ms: 30_000,
            nats_user: None,
            nats_password: None,
            nats_token: None,
            nats_creds_file: None,
            nats_tls_ca: None,
            nats_tls_required: false,
            proxy_name: "edge-proxy".into(),
            www: None,
            log_format: LogFormat::Human,
            demo: false,
            heartbeat_ms: 30_000,
            stale_after_ms: 90_000,
            max_frame_bytes: shared_protocol::MAX_FRAME_BYTES as u32,
            max_publish_per_sec: 50,
            max_behind: 1_000,
            replay_page: 256,
            publish_window: 1_024,
            max_pending_bytes: 4 * 1024 * 1024,
            mirror_wait_ms: 3_000,
            cool_above_lag: 256,
            retention_ms: 5 * 60_000,
            max_state_kinds: 256,
            max_state_bytes: 256 * 1024,
            stateless_kinds: Vec::new(),
            publisher_ttl_ms: 24 * 3_600_000,
            max_publishers: 10_000,
            log_memory_bytes: 64 * 1024 * 1024,
            max_events: 100_000,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tokens: Vec::new(),
            metrics_token: None,
            tokens_file: None,
            max_handshakes_per_sec: 500,
            max_handshakes_per_sec_per_source: 100,
            header_timeout_ms: 10_000,
            max_connections: 0,
            worker_threads: 0,
            drain_retry_after_ms: 1_000,
            tx_keepalive_ms: 3_000,
            tx_max_ms: 180_000,
            radio_backend: RadioBackend::Kenwood,
            radio_port: None,
            radio_baud: 38_400,
            radio_poll_ms: 500,
            radio_poll_tx_ms: 50,
            radio_auto_info: true,
            link_backoff_base_ms: 100,
            link_backoff_max_ms: 10_000,
            link_retries: 10,
            meter: MeterSource::Radio,
            meter_port: None,
            meter_poll_ms: 1_000,
            power_zero_threshold_w: 0.1,
            power_heartbeat_ms: 60_000,
            rigctl_listen: None,
            rigctl_role: Role::Control,
            rigctl_allow: Vec::new(),
            virtual_cat: None,
            hooks: Vec::new(),
        }
    }
}

/// A file of `[[tokens]]` (see `tokens_file`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenConfig>,
    metrics_token: Option<String>,
}

impl Config {
    /// Adds the tokens of `tokens_file`, or of systemd's credential
    /// `tokens.toml` when the service has one.
    fn load_tokens_file(&mut self) -> Result<()> {
        let from_systemd = std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(|dir| PathBuf::from(dir).join("tokens.toml"))
            .filter(|p| p.exists());
        for path in self.tokens_file.clone().into_iter().chain(from_systemd) {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the tokens file {}", path.display()))?;
            let file: TokensFile = toml::from_str(&text)
                .with_context(|| format!("in the tokens file {}", path.display()))?;
            self.tokens.extend(file.tokens);
            if file.metrics_token.is_some() {
                self.metrics_token = file.metrics_token;
            }
        }
        Ok(())
    }

    pub fn load(cli: &Cli) -> Result<Config> {
        let mut config = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("in config file {}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(listen) = cli.listen {
            config.listen = listen;
        }
        if let Some(cert) = &cli.tls_cert {
            config.tls_cert = Some(cert.clone());
        }
        if let Some(key) = &cli.tls_key {
            config.tls_key = Some(key.clone());
        }
        config.load_tokens_file()?;
        if let Some(dir) = &cli.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(log) = &cli.log {
            config.log = log.clone();
        }
        if let Some(name) = &cli.proxy_name {
            config.proxy_name = name.clone();
        }
        if let Some(www) = &cli.www {
            config.www = Some(www.clone());
        }
        if let Some(format) = cli.log_format {
            config.log_format = format;
        }
        config.demo |= cli.demo;
        if let Some(port) = &cli.radio_port {
            config.radio_port = Some(port.clone());
        }
        if let Some(baud) = cli.radio_baud {
            config.radio_baud = baud;
        }
        if let Some(backend) = cli.radio_backend {
            config.radio_backend = backend;
        }
        if let Some(meter) = cli.meter {
            config.meter = meter;
        }
        if let Some(port) = &cli.meter_port {
            config.meter_port = Some(port.clone());
        }
        if let Some(listen) = cli.rigctl_listen {
            config.rigctl_listen = Some(listen);
        }
        if let Some(path) = &cli.virtual_cat {
            config.virtual_cat = Some(path.clone());
        }
        config.validate()?;
        Ok(config)
    }

    /// `rigctl_allow`, parsed.
    pub fn rigctl_allow(&self) -> Result<Vec<edge_proxy::rigcore::allow::Net>> {
        self.rigctl_allow
            .iter()
            .map(|n| n.parse().with_context(|| "in rigctl_allow"))
            .collect()
    }

    /// The JetStream log's settings, when `log` names a NATS server.
    pub fn nats(&self) -> Option<NatsConfig> {
        let url = self.log.strip_prefix("nats://")?;
        (!url.is_empty()).then(|| NatsConfig {
            url: self.log.clone(),
            stream: self.nats_stream.clone(),
            subject: self.nats_subject.clone(),
            proxy_name: self.proxy_name.clone(),
            connect_timeout_ms: self.nats_connect_timeout_ms,
            publish_timeout_ms: self.nats_publish_timeout_ms,
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            token: self.nats_token.clone(),
            creds_file: self.nats_creds_file.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            tls_required: self.nats_tls_required,
        })
    }

    /// The configuration as `--print-config` shows it: every secret (token
    /// secrets, `metrics_token`, NATS password and token, credentials in
    /// the log URL) replaced by `"***"`.
    pub fn redacted(&self) -> Result<String> {
        let mut copy = self.clone();
        for token in &mut copy.tokens {
            token.secret = "***".into();
        }
        let hide = |s: &mut Option<String>| {
            if s.is_some() {
                *s = Some("***".into());
            }
        };
        hide(&mut copy.metrics_token);
        hide(&mut copy.nats_password);
        hide(&mut copy.nats_token);
        copy.log = crate::eventlog::jetstream::redact_url(&copy.log);
        Ok(toml::to_string_pretty(&copy)?)
    }

    fn validate(&self) -> Result<()> {
        anyhow::ensure!(self.heartbeat_ms > 0, "heartbeat_ms must be positive");
        anyhow::ensure!(
            self.worker_threads <= 1024,
            "worker_threads must be at most 1024 (0: one per core)"
        );
        anyhow::ensure!(
            self.radio_baud > 0,
            "radio_baud must be positive (38400 is the TS-2000's default)"
        );
        anyhow::ensure!(
            self.stale_after_ms > self.heartbeat_ms,
            "stale_after_ms ({}) must be longer than heartbeat_ms ({})",
            self.stale_after_ms,
            self.heartbeat_ms
        );
        anyhow::ensure!(
            self.max_frame_bytes >= 256,
            "max_frame_bytes must be at least 256"
        );
        anyhow::ensure!(
            self.log == "embedded" || self.nats().is_some(),
            "log must be \"embedded\" or a nats://host:port address, not {:?}",
            self.log
        );
        anyhow::ensure!(
            !self.proxy_name.is_empty() && !self.proxy_name.contains([' ', '.', '*', '>']),
            "proxy_name must be non-empty, without spaces, dots, * or >"
        );
        anyhow::ensure!(self.max_behind > 0, "max_behind must be positive");
        anyhow::ensure!(self.replay_page > 0, "replay_page must be positive");
        anyhow::ensure!(
            self.max_state_bytes <= 768 * 1024,
            "max_state_bytes ({}) must be at most 768 KiB: a Snapshot must fit the browser client's 1 MiB frame",
            self.max_state_bytes
        );
        crate::eventlog::StatelessKinds::parse(&self.stateless_kinds)?;
        anyhow::ensure!(self.max_publishers > 0, "max_publishers must be positive");
        anyhow::ensure!(
            self.publisher_ttl_ms >= self.retention_ms,
            "publisher_ttl_ms ({}) must be at least retention_ms ({}): a client whose events are still in the log keeps its deduplication",
            self.publisher_ttl_ms,
            self.retention_ms
        );
        anyhow::ensure!(
            (1..=65_536).contains(&self.publish_window),
            "publish_window must be 1 to 65536"
        );
        anyhow::ensure!(
            self.max_pending_bytes >= 4 * u64::from(self.max_frame_bytes),
            "max_pending_bytes ({}) must be at least 4x max_frame_bytes ({})",
            self.max_pending_bytes,
            self.max_frame_bytes
        );
        anyhow::ensure!(
            self.meter != MeterSource::Lp100 || self.meter_port.is_some() || self.demo,
            "meter = \"lp100\" needs meter_port (the LP-100A's serial port)"
        );
        anyhow::ensure!(
            self.radio_poll_ms >= 20 && self.radio_poll_tx_ms >= 20 && self.meter_poll_ms >= 20,
            "radio_poll_ms, radio_poll_tx_ms and meter_poll_ms must be at least 20"
        );
        anyhow::ensure!(
            self.link_backoff_base_ms > 0 && self.link_backoff_max_ms >= self.link_backoff_base_ms,
            "link_backoff_base_ms must be positive and at most link_backoff_max_ms"
        );
        anyhow::ensure!(
            self.power_heartbeat_ms >= 1_000,
            "power_heartbeat_ms must be at least 1000"
        );
        anyhow::ensure!(
            self.power_zero_threshold_w >= 0.0,
            "power_zero_threshold_w must not be negative"
        );
        let allow = self.rigctl_allow()?;
        if let Some(listen) = self.rigctl_listen {
            anyhow::ensure!(
                listen.ip().is_loopback() || !allow.is_empty(),
                "rigctl_listen = \"{listen}\" is reachable from the network and Hamlib's protocol has \
                 no authentication: list the programs' networks in rigctl_allow (e.g. [\"192.168.1.0/24\"])"
            );
        }
        for hook in &self.hooks {
            anyhow::ensure!(
                !hook.on.is_empty() && !hook.command.trim().is_empty(),
                "each [[hooks]] needs `on` (event types) and `command`"
            );
        }
        for token in &self.tokens {
            anyhow::ensure!(
                token.secret.len() >= 8,
                "token secrets must be at least 8 characters"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let text = include_str!("../edge-proxy.example.toml");
        let parsed: Config = toml::from_str(text).unwrap();
        let defaults = Config::default();
        assert_eq!(
            toml::to_string(&parsed).unwrap(),
            toml::to_string(&defaults).unwrap(),
            "the example documents the defaults exactly"
        );
    }

    /// The keys a config file sets or documents (`key = ...`, commented out or not).
    fn documented_keys(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| l.trim_start_matches("# "))
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
            .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_packaged_config_is_the_example_with_the_package_paths() {
        let example = include_str!("../edge-proxy.example.toml");
        let packaged = include_str!("../../deploy/debian/edge-proxy.toml");
        // Every key the example documents, in the same order.
        assert_eq!(documented_keys(packaged), documented_keys(example));
        assert!(documented_keys(example).contains(&"www".to_string()));
        // The defaults but for where the package puts things, and the LAN.
        let parsed: Config = toml::from_str(packaged).unwrap();
        parsed.validate().unwrap();
        let expected = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            data_dir: "/var/lib/station-link".into(),
            www: Some("/usr/share/station-link/www".into()),
            worker_threads: 1,
            ..Config::default()
        };
        assert_eq!(
            toml::to_string(&parsed).unwrap(),
            toml::to_string(&expected).unwrap()
        );
        // Off loopback and no tokens: dashboards on the LAN watch, nobody
        // commands the station until the operator adds a control token.
        assert!(!parsed.listen.ip().is_loopback() && parsed.tokens.is_empty());
    }

    #[test]
    fn a_rig_port_off_loopback_needs_an_allow_list() {
        let open: Config = toml::from_str("rigctl_listen = \"0.0.0.0:4532\"").unwrap();
        assert!(open.validate().is_err());
        let listed: Config =
            toml::from_str("rigctl_listen = \"0.0.0.0:4532\"\nrigctl_allow = [\"192.168.1.0/24\"]")
                .unwrap();
        listed.validate().unwrap();
        let bad: Config = toml::from_str("rigctl_allow = [\"lan\"]").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn radio_baud_comes_from_the_flag_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("proxy.toml");
        std::fs::write(&file, "radio_baud = 4800\n").unwrap();
        let file = file.display().to_string();
        let cli = Cli::try_parse_from(["edge-proxy", "--config", &file]).unwrap();
        assert_eq!(Config::load(&cli).unwrap().radio_baud, 4800);
        let cli =
            Cli::try_parse_from(["edge-proxy", "--config", &file, "--radio-baud", "9600"]).unwrap();
        assert_eq!(Config::load(&cli).unwrap().radio_baud, 9600);
        let cli = Cli::try_parse_from(["edge-proxy", "--radio-baud", "0"]).unwrap();
        assert!(Config::load(&cli).is_err(), "0 baud is refused");
    }

    #[test]
    fn unknown_keys_are_an_error() {
        let err = toml::from_str::<Config>("heartbeat_secs = 3").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
