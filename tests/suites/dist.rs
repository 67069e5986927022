//! The Debian packages (`cargo xtask dist`), checked as an operator meets
//! them: what each `.deb` holds (the binary for its architecture, the unit,
//! the conffile, the dashboard, the service user and the maintainer scripts),
//! the amd64 binary run from its extracted files with its own config, the
//! packaged unit through systemd-analyze, and the arm64 binary under
//! qemu-user serving the dashboard and driving a simulated radio on a pty.
//!
//! The packages are read from `$STATION_LINK_DIST` (`cargo xtask test` sets
//! it to target/dist-check, where it has just packaged its debug builds), or
//! from target/dist; without them each test says so and skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::client::set_freq;
use e2e::tools::{run_ok, systemd_analyze, tool, verify_and_score};
use e2e::{Proxy, TestClient};
use station_sim::hamlib::DummyRig;
use station_sim::kenwood::Radio;
use station_sim::pty::PtyRadio;

const SECS: Duration = Duration::from_secs(60);
const WWW: &str = "usr/share/station-link/www";
const CONFFILE: &str = "etc/station-link/edge-proxy.toml";
const SYSUSERS: &str = "usr/lib/sysusers.d/station-link.conf";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dist_dir() -> PathBuf {
    std::env::var_os("STATION_LINK_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/dist"))
}

/// The package for `arch` (`amd64`, `arm64`), or `None` with a note.
fn package(arch: &str) -> Option<PathBuf> {
    let dir = dist_dir();
    let suffix = format!("_{arch}.deb");
    let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("edge-proxy_") && n.ends_with(&suffix)
            })
        })
    });
    if found.is_none() {
        eprintln!(
            "SKIPPED: no edge-proxy_*{suffix} in {}: run `cargo xtask dist` (or `cargo xtask dist --check`, as `cargo xtask test` does)",
            dir.display()
        );
    }
    found
}

fn dpkg_deb() -> Option<PathBuf> {
    tool("dpkg-deb", &["/usr/bin/dpkg-deb"], "dpkg")
}

/// A package unpacked: its files (`dpkg-deb -x`) and its control files,
/// maintainer scripts among them, in `DEBIAN/` (`dpkg-deb -e`).
struct Unpacked {
    dir: tempfile::TempDir,
    deb: PathBuf,
}

impl Unpacked {
    fn new(dpkg_deb: &Path, deb: &Path) -> Unpacked {
        let dir = tempfile::tempdir().unwrap();
        run_ok(Command::new(dpkg_deb).arg("-x").arg(deb).arg(dir.path()));
        run_ok(
            Command::new(dpkg_deb)
                .arg("-e")
                .arg(deb)
                .arg(dir.path().join("DEBIAN")),
        );
        Unpacked {
            dir,
            deb: deb.to_path_buf(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn text(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel))
            .unwrap_or_else(|e| panic!("{} has no readable {rel}: {e}", self.deb.display()))
    }

    /// The unit, wherever this Debian release's debhelper puts units.
    fn unit(&self) -> PathBuf {
        ["lib/systemd/system", "usr/lib/systemd/system"]
            .iter()
            .map(|d| self.path(d).join("edge-proxy.service"))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{} has no edge-proxy.service", self.deb.display()))
    }

    /// A control field (`dpkg-deb -f`).
    fn field(&self, dpkg_deb: &Path, name: &str) -> String {
        run_ok(Command::new(dpkg_deb).arg("-f").arg(&self.deb).arg(name))
            .trim()
            .to_string()
    }

    /// The packaged config, as an operator would edit it for this test:
    /// the dashboard where this package was unpacked (the proxy harness
    /// passes a temporary --data-dir and a free --listen port itself, as the
    /// unit passes --data-dir).
    fn config(&self) -> String {
        let packaged = self.text(CONFFILE);
        let www = format!("www = \"/{WWW}\"\n");
        assert_eq!(packaged.matches(&www).count(), 1, "the conffile sets {www}");
        packaged.replace(&www, &format!("www = \"{}\"\n", self.path(WWW).display()))
    }
}

/// ELF `e_machine` of the file at `path`: 62 x86-64, 183 AArch64.
fn elf_machine(path: &Path) -> u16 {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is not ELF", path.display());
    assert_eq!(bytes[4], 2, "64-bit");
    assert_eq!(bytes[5], 1, "little-endian");
    u16::from_le_bytes([bytes[18], bytes[19]])
}

/// The newest `GLIBC_2.N` symbol version the binary asks for (the version
/// names are in its dynamic string table, which stripping keeps).
fn newest_glibc(path: &Path) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    let pattern = b"GLIBC_2.";
    bytes
        .windows(pattern.len())
        .enumerate()
        .filter(|(_, w)| w == pattern)
        .filter_map(|(at, _)| {
            let digits: String = bytes[at + pattern.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| b as char)
                .collect();
            digits.parse().ok()
        })
        .max()
        .expect("no GLIBC_ versions: not linked against glibc?")
}

/// The files of the repository's `www/` (without the demo's copy of the
/// browser client in `www/pkg`), by name.
fn www_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("www"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"index.html".to_string()));
    names
}

#[test]
fn each_package_holds_its_binary_unit_conffile_dashboard_user_and_scripts() {
    let Some(dpkg_deb) = dpkg_deb() else { return };
    for (arch, machine) in [("amd64", 62), ("arm64", 183)] {
        let Some(deb) = package(arch) else { continue };
        let pkg = Unpacked::new(&dpkg_deb, &deb);
        assert_eq!(pkg.field(&dpkg_deb, "Package"), "edge-proxy");
        assert_eq!(pkg.field(&dpkg_deb, "Architecture"), arch);

        // The binary, built for this architecture, executable, and asking
        // for no newer glibc than the package depends on.
        let bin = pkg.path("usr/bin/edge-proxy");
        assert_eq!(elf_machine(&bin), machine, "{arch} binary's e_machine");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&bin).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o755);
        let depends = pkg.field(&dpkg_deb, "Depends");
        let declared: u32 = depends
            .split("libc6 (>= 2.")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|minor| minor.parse().ok())
            .unwrap_or_else(|| panic!("Depends names no libc6 (>= 2.N): {depends}"));
        let needed = newest_glibc(&bin);
        assert!(
            needed <= declared,
            "the {arch} binary needs GLIBC_2.{needed}, the package says libc6 (>= 2.{declared})"
        );
        assert!(depends.contains("systemd"), "{depends}");

        // The config: a conffile (upgrades keep the operator's edits), the
        // one in deploy/debian.
        let conffiles = pkg.text("DEBIAN/conffiles");
        assert!(
            conffiles.lines().any(|l| l == format!("/{CONFFILE}")),
            "conffiles: {conffiles}"
        );
        assert_eq!(
            pkg.text(CONFFILE),
            std::fs::read_to_string(repo().join("deploy/debian/edge-proxy.toml")).unwrap()
        );

        // The unit of deploy/debian.
        assert_eq!(
            std::fs::read_to_string(pkg.unit()).unwrap(),
            std::fs::read_to_string(repo().join("deploy/debian/edge-proxy.service")).unwrap()
        );

        // The dashboard: every file of www/, its chart library (which
        // index.html loads from ./vendor/), and the browser client it
        // imports from ./pkg/.
        let vendor =
            ["uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE"].map(|f| format!("vendor/{f}"));
        for name in www_files().into_iter().chain(vendor) {
            assert_eq!(
                std::fs::read(pkg.path(WWW).join(&name)).ok(),
                std::fs::read(repo().join("www").join(&name)).ok(),
                "{arch}: {WWW}/{name} differs from www/{name} or is missing"
            );
        }
        let wasm = std::fs::read(pkg.path(WWW).join("pkg/station_link_bg.wasm")).unwrap();
        assert_eq!(&wasm[..4], b"\0asm", "pkg/station_link_bg.wasm");
        let glue = std::fs::read_to_string(pkg.path(WWW).join("pkg/station_link.js")).unwrap();
        assert!(
            glue.contains("station_link_bg.wasm"),
            "the glue loads the wasm"
        );

        // The service user: sysusers.d, run by postinst before the unit is
        // started; removal stops the unit, purge deletes the event log.
        let sysusers = pkg.text(SYSUSERS);
        assert!(sysusers.lines().any(|l| l.starts_with("u station-link ")));
        assert!(sysusers.lines().any(|l| l == "m station-link dialout"));
        let postinst = pkg.text("DEBIAN/postinst");
        let users_at = postinst
            .find("systemd-sysusers")
            .expect("postinst runs systemd-sysusers");
        let start_at = postinst
            .find("deb-systemd-invoke $_dh_action edge-proxy.service")
            .expect("postinst starts edge-proxy.service");
        assert!(
            users_at < start_at,
            "the user exists before the unit starts"
        );
        assert!(postinst.contains("deb-systemd-helper enable edge-proxy.service"));
        assert!(pkg
            .text("DEBIAN/prerm")
            .contains("deb-systemd-invoke stop edge-proxy.service"));
        let postrm = pkg.text("DEBIAN/postrm");
        assert!(postrm.contains("rm -rf /var/lib/station-link"), "{postrm}");
        for script in ["postinst", "prerm", "postrm"] {
            let text = pkg.text(&format!("DEBIAN/{script}"));
            assert!(
                !text.contains("#DEBHELPER#"),
                "{script} still has its token"
            );
            run_ok(
                Command::new("sh")
                    .arg("-n")
                    .arg(pkg.path(&format!("DEBIAN/{script}"))),
            );
        }
    }
}

#[test]
fn the_postinst_creates_the_station_link_user_in_dialout() {
    let Some(dpkg_deb) = dpkg_deb() else { return };
    let Some(deb) = package("amd64") else { return };
    let Some(_) = tool(
        "systemd-sysusers",
        &["/usr/bin/systemd-sysusers", "/bin/systemd-sysusers"],
        "systemd",
    ) else {
        return;
    };
    let pkg = Unpacked::new(&dpkg_deb, &deb);
    // The postinst's own sysusers line, run with DPKG_ROOT at the unpacked
    // tree (as dpkg --root does), on a copy of this machine's users and
    // groups (so dialout is the real one).
    let postinst = pkg.text("DEBIAN/postinst");
    let line = postinst
        .lines()
        .find(|l| l.contains("systemd-sysusers"))
        .unwrap()
        .trim();
    assert!(line.contains("DPKG_ROOT"), "{line}");
    let etc = pkg.path("etc");
    for file in ["passwd", "group", "shadow", "gshadow"] {
        if Path::new("/etc").join(file).exists() {
            std::fs::copy(Path::new("/etc").join(file), etc.join(file)).unwrap();
        }
    }
    run_ok(
        Command::new("sh")
            .args(["-e", "-c", line])
            .env("DPKG_ROOT", pkg.dir.path()),
    );
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("station-link:"))
        .unwrap_or_else(|| panic!("no station-link user in\n{passwd}"))
        .split(':')
        .collect();
    assert_eq!(user[5], "/var/lib/station-link", "home");
    assert!(user[6].ends_with("nologin"), "shell {}", user[6]);
    let uid: u32 = user[2].parse().unwrap();
    assert!(uid < 1000, "a system user (uid {uid})");
    let group = std::fs::read_to_string(etc.join("group")).unwrap();
    let dialout = group
        .lines()
        .find(|l| l.starts_with("dialout:"))
        .unwrap_or_else(|| panic!("no dialout group in\n{group}"));
    assert!(
        dialout
            .rsplit(':')
            .next()
            .unwrap()
            .split(',')
            .any(|m| m == "station-link"),
        "{dialout}"
    );
}

#[test]
fn the_packaged_unit_verifies_and_scores_three_or_better() {
    let Some(dpkg_deb) = dpkg_deb() else { return };
    let Some(deb) = package("amd64") else { return };
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let pkg = Unpacked::new(&dpkg_deb, &deb);
    let unit = std::fs::read_to_string(pkg.unit()).unwrap();
    for line in [
        "ExecStart=/usr/bin/edge-proxy --config /etc/station-link/edge-proxy.toml --data-dir /var/lib/station-link",
        "User=station-link",
        "StateDirectory=station-link",
        "ConfigurationDirectory=station-link",
        "#LoadCredential=tokens.toml:/etc/station-link/tokens.toml",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "the unit lacks {line}");
    }
    // `verify` wants the ExecStart binary to exist: the unpacked one.
    let bin = pkg.path("usr/bin/edge-proxy");
    let path = pkg.path("edge-proxy.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/edge-proxy", &bin.display().to_string()),
    )
    .unwrap();
    let (score, report) = verify_and_score(&analyze, &path);
    assert!(score <= 3.0, "exposure {score} > 3.0:\n{report}");
}

/// `GET path` must answer 200 with a body that starts with `start`.
fn serves(proxy: &Proxy, path: &str, start: &str) {
    let (status, body) = proxy.get(path);
    assert_eq!(status, 200, "GET {path}: {body}");
    assert!(body.starts_with(start), "GET {path}: {:.200}", body);
}

#[test]
fn the_amd64_package_serves_the_dashboard_from_its_own_files_and_config() {
    let Some(dpkg_deb) = dpkg_deb() else { return };
    let Some(deb) = package("amd64") else { return };
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("SKIPPED: the amd64 package runs on x86_64 only");
        return;
    }
    let pkg = Unpacked::new(&dpkg_deb, &deb);
    let proxy = Proxy::start_with_binary(&pkg.path("usr/bin/edge-proxy"), &pkg.config());
    serves(&proxy, "/healthz", "ok");
    let index = std::fs::read_to_string(repo().join("www/index.html")).unwrap();
    assert_eq!(proxy.get("/"), (200, index));
    serves(&proxy, "/app.js", "");
    serves(&proxy, "/pkg/station_link.js", "");
    serves(&proxy, "/pkg/station_link_bg.wasm", "\0asm");
}

/// `qemu-aarch64` and the arm64 C library it loads the binary with.
fn qemu() -> Option<Vec<String>> {
    let qemu = tool(
        "qemu-aarch64",
        &["/usr/bin/qemu-aarch64", "/usr/bin/qemu-aarch64-static"],
        "qemu-user",
    )?;
    let sysroot = "/usr/aarch64-linux-gnu";
    tool(
        "the arm64 C library",
        &["/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1"],
        "libc6-arm64-cross",
    )?;
    Some(vec![
        qemu.display().to_string(),
        "-L".into(),
        sysroot.into(),
    ])
}

#[tokio::test]
async fn the_arm64_binary_under_qemu_serves_the_dashboard_and_drives_a_pty_radio() {
    let Some(dpkg_deb) = dpkg_deb() else { return };
    let Some(deb) = package("arm64") else { return };
    let Some(qemu) = qemu() else { return };
    let pkg = Unpacked::new(&dpkg_deb, &deb);
    // A simulated TS-2000 on a pseudo-terminal (native, in this process),
    // reached through Hamlib's rigctld (`-m 2014`, its own TS-2000 driver)
    // and the proxy's rigctld backend. Not the kenwood backend's own serial
    // port: Debian 12's qemu-user (7.2) does not implement the TCGETS2
    // ioctl the serialport crate sets the speed with (the proxy under qemu
    // logs "cannot open serial port ...: Function not implemented"); a
    // Pi's kernel has it.
    let sim = PtyRadio::start(Radio::default()).unwrap();
    let rigctld = match DummyRig::ts2000(&sim.path.display().to_string()) {
        Ok(rig) => rig,
        Err(e) => {
            eprintln!("SKIPPED: {e:#}");
            return;
        }
    };
    let radio_line = "# radio_port = \"/dev/ttyUSB0\"\n";
    let backend_line = "radio_backend = \"kenwood\"\n";
    let config = pkg.config();
    assert_eq!(config.matches(radio_line).count(), 1);
    assert_eq!(config.matches(backend_line).count(), 1);
    let config = config
        .replace(radio_line, &format!("radio_port = \"{}\"\n", rigctld.addr))
        .replace(backend_line, "radio_backend = \"rigctld\"\n");
    let proxy = Proxy::start_under(&qemu, &pkg.path("usr/bin/edge-proxy"), &config);
    serves(&proxy, "/healthz", "ok");
    serves(&proxy, "/", "<!");
    serves(&proxy, "/pkg/station_link_bg.wasm", "\0asm");

    // On loopback without tokens the operator may command the station: a
    // frequency set through the proxy under qemu reaches the radio.
    let mut op = TestClient::new("operator");
    op.connect(&proxy.ws_url()).await.unwrap();
    let freq = |c: &TestClient| c.latest("radio.state").and_then(|s| s["freq_hz"].as_u64());
    assert!(
        op.pump_until(SECS, |c| freq(c) == Some(14_074_000))
            .await
            .unwrap(),
        "no radio.state from the simulated radio"
    );
    set_freq(&mut op, 7_074_000).await;
    assert!(
        op.pump_until(SECS, |c| freq(c) == Some(7_074_000))
            .await
            .unwrap(),
        "the set_freq never came back as radio.state"
    );
    assert_eq!(sim.radio.lock().unwrap().vfo_a_hz, 7_074_000);
}
