//! `edge-proxy doctor` against real setups: the pty simulators, a missing
//! port, a port this user may not use, a port another process holds open,
//! a full data directory. The real binary, run as an operator would
//! (`edge-proxy doctor --config FILE`), its lines and exit code read.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::mount::Mount;
use station_sim::kenwood::Radio;
use station_sim::pty::{PtyMeter, PtyRadio};

/// A configuration file in a directory of its own (readable by anyone, so
/// doctor can also be run as another user).
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(config: &str) -> Setup {
        Setup::with_data(config, None)
    }

    /// With the data directory at `data` (else in the setup's directory).
    fn with_data(config: &str, data: Option<&Path>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let config_path = dir.path().join("edge-proxy.toml");
        let data = data.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        // Port 0: always free to bind, so the listen check cannot collide
        // with another test.
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{config}",
            data.display()
        );
        std::fs::write(&config_path, text).unwrap();
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Setup {
            dir,
            config: config_path,
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(e2e::proxy::binary());
        c.arg("doctor").arg("--config").arg(&self.config);
        c.env_remove("CREDENTIALS_DIRECTORY");
        c
    }
}

/// Runs doctor; returns whether it exited 0 and what it printed.
fn run(mut command: Command) -> (bool, String) {
    let out = command.output().expect("running edge-proxy doctor");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The report line of `check` (its status first).
fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| {
            l.get(6..)
                .and_then(|rest| rest.strip_prefix(check))
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .unwrap_or_else(|| panic!("no line for {check:?} in:\n{report}"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

fn simulators() -> (PtyRadio, PtyMeter, String) {
    let radio = PtyRadio::start(Radio::default()).unwrap();
    let meter = PtyMeter::start(radio.radio.clone()).unwrap();
    let config = format!(
        "radio_port = \"{}\"\nmeter = \"lp100\"\nmeter_port = \"{}\"\n\
         [[tokens]]\nsecret = \"doctor-secret-1\"\nrole = \"control\"\n",
        radio.path.display(),
        meter.path.display()
    );
    (radio, meter, config)
}

#[test]
fn a_good_setup_passes_and_shows_the_config_without_secrets() {
    let (radio, meter, config) = simulators();
    let setup = Setup::new(&config);
    let (ok, report) = run(setup.command());
    assert!(ok, "doctor failed a good setup:\n{report}");
    assert!(
        report.contains("radio_port = "),
        "the effective config:\n{report}"
    );
    assert!(
        report.contains("\"***\"") && !report.contains("doctor-secret-1"),
        "{report}"
    );
    for check in [
        "config".to_string(),
        format!("radio port {}", radio.path.display()),
        format!("radio port {} open elsewhere", radio.path.display()),
        format!("meter port {}", meter.path.display()),
        format!("meter port {} open elsewhere", meter.path.display()),
        "listen 127.0.0.1:0".to_string(),
        format!("data directory {}", setup.dir.path().join("data").display()),
    ] {
        let l = line(&report, &check);
        assert!(l.starts_with("OK "), "{l}\n{report}");
    }
    // Every check has a line: nothing silently skipped.
    let _ = line(&report, "system clock");
    assert!(!report.contains("FAIL"), "{report}");
}

#[test]
fn a_missing_port_fails_naming_its_path() {
    let setup = Setup::new("radio_port = \"/dev/ttyUSB-doctor-missing\"\nmeter = \"none\"\n");
    let (ok, report) = run(setup.command());
    assert!(!ok, "doctor passed a missing port:\n{report}");
    let l = line(&report, "radio port /dev/ttyUSB-doctor-missing");
    assert!(
        l.starts_with("FAIL") && l.contains("does not exist") && l.contains("/dev/serial/by-id/"),
        "{l}"
    );
}

#[test]
fn a_port_this_user_may_not_use_fails_naming_the_group() {
    let radio = PtyRadio::start(Radio::default()).unwrap();
    let path = radio.path.display().to_string();
    let setup = Setup::new(&format!("radio_port = \"{path}\"\nmeter = \"none\"\n"));
    let mut command = setup.command();
    let group = if is_root() {
        // As a USB serial adapter is: root:dialout 0660; and doctor run as
        // `nobody`, who is not in dialout (root may open anything).
        let chgrp = Command::new("chgrp")
            .arg("dialout")
            .arg(&path)
            .status()
            .unwrap();
        assert!(chgrp.success(), "chgrp dialout {path}");
        std::fs::set_permissions(&radio.path, std::fs::Permissions::from_mode(0o660)).unwrap();
        // (std drops the supplementary groups when root sets a uid.)
        command.uid(65534).gid(65534);
        "dialout".to_string()
    } else {
        std::fs::set_permissions(&radio.path, std::fs::Permissions::from_mode(0o000)).unwrap();
        String::new()
    };
    let (ok, report) = run(command);
    assert!(!ok, "doctor passed an unusable port:\n{report}");
    let l = line(&report, &format!("radio port {path}"));
    assert!(
        l.starts_with("FAIL") && l.contains("may not read and write"),
        "{l}"
    );
    assert!(
        l.contains(&format!("add the service user to the `{group}")),
        "{l}"
    );
}

#[test]
fn a_port_another_process_holds_fails_naming_it_and_its_pid() {
    let (radio, meter, config) = simulators();
    let setup = Setup::new(&config);
    // Another program with the radio's port open (as a second CAT program
    // or ModemManager would have it).
    let mut holder = Command::new("sleep")
        .arg("60")
        .stdin(std::fs::File::open(&radio.path).unwrap())
        .spawn()
        .unwrap();
    let (ok, report) = run(setup.command());
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!ok, "doctor passed a held port:\n{report}");
    let l = line(
        &report,
        &format!("radio port {} open elsewhere", radio.path.display()),
    );
    assert!(
        l.starts_with("FAIL") && l.contains(&format!("held open by sleep (pid {})", holder.id())),
        "{l}"
    );
    // The simulator on the other end of the pty is not "another process".
    let meter = line(
        &report,
        &format!("meter port {} open elsewhere", meter.path.display()),
    );
    assert!(meter.contains("no other process"), "{meter}");
}

#[test]
fn a_full_data_directory_fails() {
    let scratch = tempfile::tempdir().unwrap();
    let (data, _mount, expect) = match Mount::tmpfs(&scratch.path().join("small"), "256k") {
        Some(mount) => {
            let data = mount.path().join("data");
            std::fs::create_dir(&data).unwrap();
            // Fill it: write until the filesystem says no.
            let mut fill = std::fs::File::create(mount.path().join("fill")).unwrap();
            let block = vec![0u8; 16 * 1024];
            while std::io::Write::write_all(&mut fill, &block).is_ok() {}
            (data, Some(mount), "the disk is full")
        }
        None if std::env::var("E2E_ALLOW_NO_MOUNT").is_ok() && !is_root() => {
            // Not root: no tmpfs; a read-only directory instead.
            let data = scratch.path().join("data");
            std::fs::create_dir(&data).unwrap();
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
            (data, None, "not writable")
        }
        None => panic!("mounting a tmpfs failed (needs root); set E2E_ALLOW_NO_MOUNT=1 to accept a read-only directory instead"),
    };
    let setup = Setup::with_data("meter = \"none\"\n", Some(&data));
    let (ok, report) = run(setup.command());
    assert!(!ok, "doctor passed a full data directory:\n{report}");
    let l = line(&report, &format!("data directory {}", data.display()));
    assert!(l.starts_with("FAIL") && l.contains(expect), "{l}");
}

#[test]
fn rigctld_and_the_nats_server_are_asked_and_fail_when_gone() {
    let rig = station_sim::hamlib::DummyRig::start().unwrap();
    let mut nats = e2e::Nats::start();
    let setup = Setup::new(&format!(
        "radio_backend = \"rigctld\"\nradio_port = \"{}\"\nmeter = \"none\"\nlog = \"{}\"\n",
        rig.addr,
        nats.url()
    ));
    let server = nats.url().trim_start_matches("nats://").to_string();
    let (ok, report) = run(setup.command());
    assert!(ok, "{report}");
    assert!(
        line(&report, &format!("rigctld {}", rig.addr)).starts_with("OK "),
        "{report}"
    );
    let l = line(&report, &format!("NATS server {server}"));
    assert!(l.starts_with("OK ") && l.contains("JetStream"), "{l}");
    let addr = rig.addr.clone();
    drop(rig);
    nats.stop();
    let (ok, report) = run(setup.command());
    assert!(!ok, "{report}");
    assert!(
        line(&report, &format!("rigctld {addr}")).starts_with("FAIL"),
        "{report}"
    );
    assert!(
        line(&report, &format!("NATS server {server}")).starts_with("FAIL"),
        "{report}"
    );
}
