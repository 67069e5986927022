//! `edge-proxy doctor`: what stands between this configuration and a
//! working station, one line per check (`OK`, `WARN` or `FAIL` with the
//! fix), after the effective configuration (secrets redacted, as
//! `--print-config` shows it). Exits non-zero when any check fails.
//!
//! It loads the configuration exactly as the server does (the same flags,
//! file and environment), so `edge-proxy doctor --config FILE` checks what
//! `edge-proxy --config FILE` would run. Nothing is changed and no serial
//! port is opened (see [`serial`]); every wait is bounded.
//!
//! | module | checks |
//! |---|---|
//! | [`finding`] | the typed result every check returns |
//! | [`serial`] | each configured serial device: there, a character device, readable and writable (else which group), held open by another process (ModemManager and brltty called out) |
//! | [`net`] | `listen` and `rigctl_listen` free to bind; the NATS servers of a shared log; rigctld for that backend |
//! | [`disk`] | the data directory writable (a fsync'd probe), free space |
//! | [`clock`] | the system clock synchronised |

pub mod clock;
pub mod disk;
pub mod finding;
pub mod net;
pub mod serial;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::config::{Cli, Config, MeterSource};
use edge_proxy::hardware::RadioBackend;
use finding::{Finding, Status};

/// Runs every check for `cli`'s configuration, printing as it goes.
pub fn main(cli: &Cli) -> Result<ExitCode> {
    let config = match Config::load(cli) {
        Ok(config) => config,
        Err(e) => {
            let fix =
                "correct the configuration (every key is documented in edge-proxy.example.toml)";
            println!("{}", Finding::fail("config", format!("{e:#}"), fix));
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("# effective configuration (secrets shown as ***)");
    print!("{}", config.redacted()?);
    println!();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let source = cli.config.as_ref().map_or(
        "built-in defaults, environment and flags".to_string(),
        |p| p.display().to_string(),
    );
    let mut worst = Status::Ok;
    let mut show = |found: Vec<Finding>| {
        for f in found {
            worst = worst.max(f.status);
            println!("{f}");
        }
    };
    show(vec![Finding::ok("config", format!("valid ({source})"))]);
    show(config_files(&config));
    show(radio(&config, &runtime));
    show(meter(&config));
    show(ports(&config));
    show(disk::data_dir(&config.data_dir));
    if config.nats().is_some() {
        show(runtime.block_on(net::nats(&config.log)));
    }
    show(vec![clock::finding(
        runtime.block_on(clock::synchronised(net::TIMEOUT)),
    )]);
    println!(
        "doctor: {}",
        match worst {
            Status::Ok => "all checks passed",
            Status::Warn => "no failures, but see the warnings",
            Status::Fail => "some checks FAILED: the proxy will not work as configured",
        }
    );
    Ok(if worst == Status::Fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Files the configuration names besides itself: the dashboard and TLS.
fn config_files(config: &Config) -> Vec<Finding> {
    let mut found = Vec::new();
    if let Some(www) = &config.www {
        let check = format!("www {}", www.display());
        found.push(if www.join("index.html").is_file() {
            Finding::ok(check, "the dashboard is there")
        } else {
            Finding::warn(
                check,
                "no index.html: the proxy serves no dashboard",
                "point www at the dashboard's directory (built with `cargo xtask pkg`), or remove the key",
            )
        });
    }
    for (what, path) in [("tls_cert", &config.tls_cert), ("tls_key", &config.tls_key)] {
        if let Some(path) = path {
            found.push(readable(what, path));
        }
    }
    found
}

fn readable(what: &str, path: &Path) -> Finding {
    let check = format!("{what} {}", path.display());
    match std::fs::File::open(path) {
        Ok(_) => Finding::ok(check, "readable"),
        Err(e) => Finding::fail(
            check,
            format!("cannot be read: {e}"),
            "fix the path, or let the service user read it (systemd: LoadCredential=)",
        ),
    }
}

fn radio(config: &Config, runtime: &tokio::runtime::Runtime) -> Vec<Finding> {
    match (&config.radio_port, config.radio_backend) {
        (None, _) if config.demo => vec![Finding::ok("radio", "simulated (demo)")],
        (None, _) => vec![Finding::ok(
            "radio",
            "none configured (no radio bridge; set radio_port to add one)",
        )],
        (Some(port), RadioBackend::Kenwood) => serial::device("radio", Path::new(port)),
        (Some(addr), RadioBackend::Rigctld) => vec![runtime.block_on(net::rigctld(addr))],
    }
}

fn meter(config: &Config) -> Vec<Finding> {
    match (config.meter, &config.meter_port) {
        (MeterSource::Lp100, Some(port)) => serial::device("meter", Path::new(port)),
        (MeterSource::Lp100, None) => vec![Finding::ok("meter", "simulated LP-100A (demo)")],
        (MeterSource::Radio, _) => vec![Finding::ok("meter", "the radio's own meter")],
        (MeterSource::None, _) => vec![Finding::ok("meter", "none (no power readings)")],
    }
}

fn ports(config: &Config) -> Vec<Finding> {
    let mut found = vec![net::port_free("listen", config.listen)];
    if let Some(rig) = config.rigctl_listen {
        found.push(net::port_free("rigctl_listen", rig));
    }
    found
}
