//! Hamlib's own TS-2000 driver judges the simulator: if `rigctl -m 2014`
//! can read and set the frequency, key and unkey, and read the mode through
//! a real pseudo-terminal, the simulator speaks real CAT.

use std::process::Command;

use station_sim::kenwood::Radio;
use station_sim::pty::PtyRadio;

/// Runs `rigctl -m 2014` on the simulator's pty with `commands`: its
/// non-empty output lines, and its stderr.
fn rigctl(sim: &PtyRadio, commands: &[&str]) -> (Vec<String>, String) {
    let out = Command::new("rigctl")
        .args(["-m", "2014", "-r"])
        .arg(&sim.path)
        .args(["-s", "38400"])
        .args(commands)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rigctl failed: {stdout}\n{stderr}");
    let lines = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    (lines, stderr)
}

#[test]
fn hamlibs_ts2000_driver_drives_the_simulator() {
    assert!(
        std::path::Path::new("/usr/bin/rigctl").exists(),
        "rigctl is missing: `cargo xtask setup` installs it (Debian package libhamlib-utils)"
    );
    let sim = PtyRadio::start(Radio::default()).unwrap();
    let (lines, stderr) = rigctl(
        &sim,
        &[
            "f", "F", "7074000", "f", "t", "T", "1", "t", "T", "0", "t", "m",
        ],
    );
    assert_eq!(
        lines[0], "14074000",
        "initial frequency; all output: {lines:?}\n{stderr}"
    );
    assert_eq!(lines[1], "7074000", "frequency after F 7074000");
    assert_eq!(lines[2], "0", "PTT off");
    assert_eq!(lines[3], "1", "PTT on after T 1");
    assert_eq!(lines[4], "0", "PTT off after T 0");
    assert_eq!(lines[5], "USB", "mode");
    let radio = sim.radio.lock().unwrap().clone();
    assert_eq!(radio.vfo_a_hz, 7_074_000);
    assert!(!radio.tx);
}

#[test]
fn garbage_on_the_line_is_survived() {
    let sim = PtyRadio::start(Radio::default()).unwrap();
    sim.faults
        .garbage
        .lock()
        .unwrap()
        .extend_from_slice(b"\x00\xff\x13garbage");
    let out = Command::new("rigctl")
        .args(["-m", "2014", "-r"])
        .arg(&sim.path)
        .args(["-s", "38400", "f", "f"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.trim() == "14074000"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A radio left in auto-information mode (by the edge proxy, or by the
/// operator): Hamlib's driver asks `AI;` at open, turns it off for its
/// session and puts it back at close, so its answers are never mixed with
/// the radio's own reports; and a knob turned in the session is read.
#[test]
fn hamlibs_ts2000_driver_copes_with_a_radio_in_auto_information_mode() {
    let sim = PtyRadio::start(Radio {
        ai: 2,
        ..Radio::default()
    })
    .unwrap();
    sim.turn_vfo(7_030_000);
    let (lines, stderr) = rigctl(
        &sim,
        &["f", "F", "14074000", "f", "T", "1", "t", "T", "0", "t"],
    );
    assert_eq!(
        lines,
        ["7030000", "14074000", "1", "0"],
        "all output: {lines:?}\n{stderr}"
    );
    let radio = sim.radio.lock().unwrap().clone();
    assert_eq!(radio.vfo_a_hz, 14_074_000);
    assert!(!radio.tx);
    assert_ne!(radio.ai, 0, "Hamlib put auto information back on at close");
}
