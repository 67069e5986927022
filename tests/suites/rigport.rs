//! The rig port (issue #18) against real Hamlib clients: Debian's
//! `rigctl -m 2` (the NET rigctl code WSJT-X, fldigi and loggers link),
//! the Python bindings of the same library, and `rigctl -m 2014` (Hamlib's
//! TS-2000 driver) on the virtual Kenwood port. Behind the proxy is the
//! simulated TS-2000 on a pseudo-terminal and an LP-100A reading its
//! output; every check of the radio asks the simulator's own state.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::client::key_ptt;
use e2e::{Proxy, TestClient};
use shared_protocol::frame::Payload;
use station_sim::kenwood::Radio;
use station_sim::pty::{PtyMeter, PtyRadio};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const SECS: Duration = Duration::from_secs(20);
const PYTHON: &str = "/usr/bin/python3";

/// A simulated station behind a proxy with the rig port and the virtual
/// Kenwood port open, and a dashboard connected to it.
struct Station {
    _dir: tempfile::TempDir,
    sim: PtyRadio,
    _meter: PtyMeter,
    proxy: Proxy,
    op: TestClient,
    /// The rig port's address.
    rig: String,
    /// The virtual Kenwood port's path.
    cat: PathBuf,
}

fn stats(proxy: &Proxy) -> serde_json::Value {
    let (_, body) = proxy.get("/stats");
    serde_json::from_str(&body).unwrap()
}

async fn station(keepalive_ms: u64, extra: &str) -> Station {
    assert!(
        std::path::Path::new("/usr/bin/rigctl").exists(),
        "rigctl is missing: `cargo xtask setup` installs it (Debian package libhamlib-utils)"
    );
    let dir = tempfile::tempdir().unwrap();
    let sim = PtyRadio::start(Radio::default()).unwrap();
    let meter = PtyMeter::start(sim.radio.clone()).unwrap();
    let cat = dir.path().join("cat");
    let proxy = Proxy::start(&format!(
        "radio_port = \"{}\"\nradio_poll_ms = 100\nmeter = \"lp100\"\nmeter_port = \"{}\"\n\
         meter_poll_ms = 200\nrigctl_listen = \"127.0.0.1:0\"\nvirtual_cat = \"{}\"\n\
         tx_keepalive_ms = {keepalive_ms}\n{extra}",
        sim.path.display(),
        meter.path.display(),
        cat.display()
    ));
    let rig = stats(&proxy)["programs"]["rigctl_listen"]
        .as_str()
        .expect("the rig port's address in /stats")
        .to_string();
    let mut op = TestClient::new("operator");
    op.connect(&proxy.ws_url()).await.unwrap();
    assert!(
        op.pump_until(SECS, |c| freq(c).is_some() && swr_known(c))
            .await
            .unwrap(),
        "the radio's state and an SWR reading reach the log"
    );
    Station {
        _dir: dir,
        sim,
        _meter: meter,
        proxy,
        op,
        rig,
        cat,
    }
}

fn freq(c: &TestClient) -> Option<u64> {
    c.latest("radio.state").and_then(|s| s["freq_hz"].as_u64())
}

fn swr_known(c: &TestClient) -> bool {
    c.latest("meter.power")
        .is_some_and(|p| p["swr"].as_f64().is_some())
}

fn events_of(c: &TestClient, kind: &str) -> Vec<Payload> {
    c.events()
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.payload.clone())
        .collect()
}

/// Runs `rigctl` to the end; returns its output lines (stdout) and stderr.
async fn rigctl(args: &[&str]) -> (bool, Vec<String>, String) {
    let out = Command::new("rigctl").args(args).output().await.unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rigctl -m 2` through the open sequence and then what WSJT-X sends
/// (../shared/RIGCTL.md): the resolution probe, the start-up frequency and
/// `PKTUSB`, the polls, PTT with the meter reads, unkey.
#[tokio::test]
async fn rigctl_m2_opens_and_runs_the_wsjtx_sequence_on_the_real_radio() {
    let Station {
        _dir,
        _meter,
        sim,
        mut op,
        rig,
        proxy,
        cat: _cat,
    } = station(3_000, "").await;
    #[rustfmt::skip]
    let script = [
        "F", "14074055.000000", "f", "F", "14074000.000000", "f",
        "M", "PKTUSB", "-1", "m", "v", "s", "t",
        "T", "1", "t", "l", "SWR", "l", "RFPOWER_METER_WATTS",
        "T", "0", "t",
    ];
    let mut args = vec!["-m", "2", "-r", rig.as_str()];
    args.extend(script);
    let (ok, lines, stderr) = rigctl(&args).await;
    assert!(ok, "rigctl failed: {lines:?}\n{stderr}");
    assert!(
        !stderr.to_lowercase().contains("error"),
        "the open and every command went without errors: {stderr}"
    );
    // f, f, m (mode and passband), v, s (split and TX VFO), t, t after T 1.
    assert_eq!(&lines[..3], ["14074055", "14074000", "PKTUSB"], "{lines:?}");
    assert!(lines[3].parse::<i64>().is_ok(), "a passband: {lines:?}");
    assert_eq!(&lines[4..9], ["VFOA", "0", "VFOA", "0", "1"], "{lines:?}");
    let swr: f64 = lines[9].parse().unwrap();
    assert!((1.0..1.5).contains(&swr), "the LP-100A's SWR: {lines:?}");
    let watts: f64 = lines[10].parse().unwrap();
    assert!((0.0..=110.0).contains(&watts), "forward power: {lines:?}");
    assert_eq!(lines.len(), 12, "{lines:?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("0"),
        "unkeyed: {lines:?}"
    );

    // The radio itself: on 14.074 MHz in USB (data is USB on a TS-2000), receiving.
    let radio = sim.radio.lock().unwrap().clone();
    assert_eq!(
        (radio.vfo_a_hz, radio.mode, radio.tx),
        (14_074_000, 2, false)
    );

    // The dashboard saw every set, named after the program, and the radio keyed.
    assert!(op
        .pump_until(SECS, |c| events_of(c, "radio.ptt")
            .iter()
            .any(|p| p["on"].as_bool() == Some(false)))
        .await
        .unwrap());
    let freqs: Vec<u64> = events_of(&op, "radio.set_freq")
        .iter()
        .filter_map(|p| p["hz"].as_u64())
        .collect();
    assert_eq!(freqs, [14_074_055, 14_074_000]);
    let by = events_of(&op, "radio.set_freq")[0]["by"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(by.starts_with("rig:127.0.0.1:"), "attributed: {by}");
    let mode = &events_of(&op, "radio.set_mode")[0];
    assert_eq!(
        (mode["mode"].as_str(), mode["data"].as_bool()),
        (Some("USB"), Some(true))
    );
    assert!(
        events_of(&op, "radio.state")
            .iter()
            .any(|s| s["ptt"].as_bool() == Some(true)),
        "the radio reported transmitting to the dashboard"
    );
    let rigctl_programs = stats(&proxy)["programs"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["port"] == "rigctl")
        .count();
    assert_eq!(rigctl_programs, 0, "rigctl has gone");
}

/// A Python program on Hamlib's bindings, driven line by line so that each
/// set can be checked on the radio before the next.
const PY_PROGRAM: &str = r#"
import sys, time, Hamlib
Hamlib.rig_set_debug(Hamlib.RIG_DEBUG_NONE)
rig = Hamlib.Rig(2)
rig.set_conf("rig_pathname", sys.argv[1])
rig.open()
print("open", rig.error_status, flush=True)
for line in sys.stdin:
    cmd, *arg = line.split()
    if cmd == "freq":
        rig.set_freq(Hamlib.RIG_VFO_CURR, float(arg[0]))
        print(rig.error_status, int(rig.get_freq()), flush=True)
    elif cmd == "mode":
        rig.set_mode(getattr(Hamlib, "RIG_MODE_" + arg[0]))
        print(rig.error_status, Hamlib.rig_strrmode(rig.get_mode()[0]), flush=True)
    elif cmd == "ptt":
        rig.set_ptt(Hamlib.RIG_VFO_CURR, int(arg[0]))
        print(rig.error_status, rig.get_ptt(Hamlib.RIG_VFO_CURR), flush=True)
    elif cmd == "swr":
        print(rig.error_status, rig.get_level_f(Hamlib.RIG_LEVEL_SWR), flush=True)
    elif cmd == "poll":
        # Poll like WSJT-X (every 200 ms) until killed or stopped.
        print("polling", flush=True)
        while True:
            rig.get_ptt(Hamlib.RIG_VFO_CURR)
            time.sleep(0.2)
"#;

struct Py {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Py {
    async fn start(rig: &str) -> Py {
        let mut child = Command::new(PYTHON)
            .args(["-u", "-c", PY_PROGRAM, rig])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with Hamlib (Debian python3-hamlib; `cargo xtask setup`)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut py = Py {
            child,
            stdin,
            stdout,
        };
        assert_eq!(
            py.line().await,
            "open 0",
            "Hamlib.Rig(2) opened (\\dump_state parsed)"
        );
        py
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(SECS, self.stdout.read_line(&mut line))
            .await
            .expect("the program answers")
            .unwrap();
        line.trim().to_string()
    }

    async fn say(&mut self, command: &str) -> String {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        self.line().await
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

#[tokio::test]
async fn python_hamlib_sets_and_reads_frequency_mode_ptt_and_the_meters_swr() {
    let Station {
        _dir,
        _meter,
        sim,
        op: _op,
        rig,
        proxy: _proxy,
        cat: _cat,
    } = station(3_000, "").await;
    let mut py = Py::start(&rig).await;
    let radio = || sim.radio.lock().unwrap().clone();

    assert_eq!(py.say("freq 7074000").await, "0 7074000");
    assert_eq!(
        radio().vfo_a_hz,
        7_074_000,
        "on the radio when set_freq returned"
    );
    assert_eq!(py.say("mode CW").await, "0 CW");
    assert_eq!(radio().mode, 3);
    assert_eq!(py.say("mode PKTLSB").await, "0 PKTLSB");
    assert_eq!(radio().mode, 1, "data in LSB");
    assert_eq!(py.say("ptt 1").await, "0 1");
    assert!(radio().tx, "keyed");
    let swr = py.say("swr").await;
    let value: f64 = swr.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        swr.starts_with("0 ") && (1.0..1.5).contains(&value),
        "{swr}"
    );
    assert_eq!(py.say("ptt 0").await, "0 0");
    assert!(!radio().tx, "unkeyed");
}

/// A program that keys and is then killed is unkeyed at once (its
/// connection closed), well within `tx_keepalive_ms` + 500 ms; one that
/// keeps polling stays keyed past the keepalive (any command counts as
/// alive); frozen (SIGSTOP), it is unkeyed within `tx_keepalive_ms` +
/// 500 ms. Asked of the radio's own state; the unkey names the program.
#[tokio::test]
async fn a_program_that_keys_and_dies_or_freezes_is_unkeyed_and_named() {
    let keepalive = Duration::from_millis(1_000);
    let Station {
        _dir,
        _meter,
        sim,
        mut op,
        rig,
        proxy: _proxy,
        cat: _cat,
    } = station(keepalive.as_millis() as u64, "").await;
    let tx = || sim.radio.lock().unwrap().tx;

    // Killed while keyed.
    let mut py = Py::start(&rig).await;
    assert_eq!(py.say("ptt 1").await, "0 1");
    assert!(tx());
    py.signal("-KILL");
    let killed = Instant::now();
    assert!(op.pump_until(SECS, |_| !tx()).await.unwrap());
    let took = killed.elapsed();
    assert!(
        took < keepalive + Duration::from_millis(500),
        "unkeyed {took:?} after the kill"
    );
    let unkeyed = |c: &TestClient, reason: &str| {
        events_of(c, "watchdog.unkeyed")
            .iter()
            .any(|p| p["reason"].as_str() == Some(reason))
    };
    assert!(op
        .pump_until(SECS, |c| unkeyed(c, "session_ended"))
        .await
        .unwrap());
    let notice = events_of(&op, "watchdog.unkeyed")[0].clone();
    assert!(
        notice["client_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("rig:127.0.0.1:")),
        "the unkey names the program: {notice:?}"
    );
    drop(py);

    // Polling while keyed: alive past the keepalive.
    let mut py = Py::start(&rig).await;
    assert_eq!(py.say("ptt 1").await, "0 1");
    assert_eq!(py.say("poll").await, "polling");
    let keyed = Instant::now();
    let held = op.pump_until(3 * keepalive, |_| !tx()).await.unwrap();
    assert!(
        !held && tx(),
        "a polling program stays keyed (unkeyed after {:?})",
        keyed.elapsed()
    );
    // Frozen: silent from now on.
    py.signal("-STOP");
    let frozen = Instant::now();
    assert!(op.pump_until(SECS, |_| !tx()).await.unwrap());
    let took = frozen.elapsed();
    assert!(
        took < keepalive + Duration::from_millis(500),
        "unkeyed {took:?} after the program froze"
    );
    assert!(op.pump_until(SECS, |c| unkeyed(c, "silent")).await.unwrap());
    py.signal("-KILL");
}

/// Polls `f`, `m`, `t` every `period` on its own connection until told to
/// stop; returns how many answers it got and the slowest one.
async fn poller(
    rig: String,
    period: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (u64, Duration) {
    let stream = TcpStream::connect(&rig).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let (mut answers, mut slowest) = (0u64, Duration::ZERO);
    let mut tick = tokio::time::interval(period);
    let mut line = String::new();
    while !*stop.borrow() {
        tick.tick().await;
        let at = Instant::now();
        wr.write_all(b"f\nm\nt\n").await.unwrap();
        // f: 1 line, m: 2, t: 1.
        for _ in 0..4 {
            line.clear();
            tokio::time::timeout(SECS, rd.read_line(&mut line))
                .await
                .expect("an answer")
                .unwrap();
            assert!(!line.starts_with("RPRT"), "an error answer: {line}");
        }
        slowest = slowest.max(at.elapsed());
        answers += 1;
    }
    (answers, slowest)
}

/// CAT commands per second on the radio's pty over `window`, while the
/// dashboard is pumped.
async fn cat_rate(sim: &PtyRadio, op: &mut TestClient, window: Duration) -> f64 {
    let before = sim.commands.load(Ordering::Relaxed);
    let start = Instant::now();
    let _ = op.pump_until(window, |_| false).await.unwrap();
    let n = sim.commands.load(Ordering::Relaxed) - before;
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test]
async fn ten_programs_polling_at_10_hz_do_not_add_cat_traffic() {
    let Station {
        _dir,
        _meter,
        sim,
        mut op,
        rig,
        proxy: _proxy,
        cat: _cat,
    } = station(3_000, "").await;
    let window = Duration::from_secs(3);
    let alone = cat_rate(&sim, &mut op, window).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let pollers: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(poller(
                rig.clone(),
                Duration::from_millis(100),
                stop.clone(),
            ))
        })
        .collect();
    let busy = cat_rate(&sim, &mut op, window).await;
    stop_tx.send_replace(true);
    let mut total = 0;
    for p in pollers {
        let (answers, slowest) = p.await.unwrap();
        total += answers;
        assert!(
            slowest < Duration::from_millis(500),
            "a poll took {slowest:?}"
        );
    }
    assert!(
        total >= 10 * 20,
        "the programs were polling: {total} answers"
    );
    eprintln!("CAT commands/s: {alone:.1} with the dashboard alone, {busy:.1} with 10 programs polling at 10 Hz");
    assert!(
        busy <= alone * 1.3 + 2.0,
        "the radio's CAT traffic grew with the programs: {alone:.1}/s -> {busy:.1}/s"
    );
}

#[tokio::test]
async fn garbage_huge_lines_and_binary_get_errors_or_a_close_and_disturb_no_one() {
    let Station {
        _dir,
        _meter,
        sim: _sim,
        mut op,
        rig,
        proxy,
        cat: _cat,
    } = station(3_000, "").await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let bystander = tokio::spawn(poller(rig.clone(), Duration::from_millis(100), stop));

    // One bad line at a time: each gets a negative RPRT, and the
    // connection still answers a good command after it.
    let stream = TcpStream::connect(&rig).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = String::new();
    for bad in [
        &b"garbage\n"[..],
        b"\x00\x01\x02\xff\xfe\n",
        b"\\no_such_command\n",
        b"F abc\n",
        b"M WFM 0\n",
        b"T 9\n",
        b"L RFPOWER 0.5\n",
        b"+\\dump_caps\n",
        b"~!@#\n",
    ] {
        wr.write_all(bad).await.unwrap();
        line.clear();
        tokio::time::timeout(SECS, rd.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        let code: i32 = line
            .trim()
            .strip_prefix("RPRT ")
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{bad:?} answered {line:?}"));
        assert!(code < 0, "{bad:?}: {line:?}");
    }
    // Still serving after the garbage, in the plain and the extended forms.
    wr.write_all(b"f\n+f\n;\\get_vfo_info VFOA\n\\get_lock_mode\n")
        .await
        .unwrap();
    let mut answers = Vec::new();
    for _ in 0..6 {
        line.clear();
        rd.read_line(&mut line).await.unwrap();
        answers.push(line.trim_end().to_string());
    }
    assert_eq!(
        answers,
        [
            "14074000",
            "get_freq:",
            "Frequency: 14074000",
            "RPRT 0",
            "get_vfo_info: VFOA;Freq: 14074000;Mode: USB;Width: 2400;Split: 0;SatMode: 0;RPRT 0",
            "0",
        ]
    );

    // A program that names itself is listed with its name and last command.
    wr.write_all(b"\\client_version garbage-test 1.0\n")
        .await
        .unwrap();
    line.clear();
    rd.read_line(&mut line).await.unwrap();
    assert_eq!(line.trim(), "RPRT 0");
    let listed = stats(&proxy)["programs"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "garbage-test 1.0" && p["port"] == "rigctl");
    assert!(listed, "{}", stats(&proxy)["programs"]);

    // A megabyte without a newline: an error, then the connection is closed.
    let megabyte = vec![b'f'; 1 << 20];
    let _ = wr.write_all(&megabyte).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(SECS, rd.read_to_end(&mut rest))
        .await
        .expect("closed, not hung");
    assert!(read.is_ok() || !rest.is_empty());
    assert_eq!(String::from_utf8_lossy(&rest).trim(), "RPRT -1");

    // Binary bytes: answered with errors or closed, never hung.
    let mut junk = TcpStream::connect(&rig).await.unwrap();
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let _ = junk.write_all(&bytes).await;
    let _ = junk.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(SECS, junk.read_to_end(&mut answer))
        .await
        .expect("closed, not hung");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.lines().all(|l| l.starts_with("RPRT -")),
        "binary bytes get negative codes: {answer:?}"
    );

    // The bystander program and the dashboard were not disturbed.
    stop_tx.send_replace(true);
    let (answers, slowest) = bystander.await.unwrap();
    assert!(
        answers > 0 && slowest < Duration::from_secs(1),
        "{answers} {slowest:?}"
    );
    assert!(op.is_connected());
    assert!(op
        .pump_until(SECS, |c| swr_known(c) && c.is_connected())
        .await
        .unwrap());
}

#[tokio::test]
async fn rigctl_m2014_drives_the_radio_through_the_virtual_kenwood_port() {
    let Station {
        _dir,
        _meter,
        sim,
        mut op,
        rig: _rig,
        proxy,
        cat,
    } = station(3_000, "").await;
    let cat = cat.display().to_string();
    let target = std::fs::read_link(&cat).expect("virtual_cat is a symlink");
    assert!(target.starts_with("/dev/pts/"), "{target:?}");
    let ts2000 = |cmds: &'static [&'static str]| {
        let mut args = vec!["-m".to_string(), "2014".into(), "-r".into(), cat.clone()];
        args.extend(["-s", "38400"].iter().map(|s| s.to_string()));
        args.extend(cmds.iter().map(|s| s.to_string()));
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            rigctl(&args).await
        }
    };
    let (ok, lines, err) = ts2000(&["f", "F", "7074000", "f", "M", "CW", "0", "m"]).await;
    assert!(ok, "{lines:?} {err}");
    assert_eq!(lines[0], "14074000", "{lines:?}");
    assert_eq!(lines[1], "7074000", "{lines:?}");
    assert_eq!(lines[2], "CW", "{lines:?}");
    let radio = || sim.radio.lock().unwrap().clone();
    assert!(op
        .pump_until(SECS, |_| radio().vfo_a_hz == 7_074_000 && radio().mode == 3)
        .await
        .unwrap());

    let (ok, lines, err) = ts2000(&["T", "1", "t"]).await;
    assert!(ok, "{lines:?} {err}");
    assert_eq!(lines, ["1"]);
    assert!(op.pump_until(SECS, |_| radio().tx).await.unwrap(), "keyed");
    let (ok, lines, err) = ts2000(&["T", "0", "t"]).await;
    assert!(ok && lines == ["0"], "{lines:?} {err}");
    assert!(
        op.pump_until(SECS, |_| !radio().tx).await.unwrap(),
        "unkeyed"
    );
    // The radio may show all of that before the operator's client has read
    // a frame: wait for the command itself to reach the client.
    assert!(op
        .pump_until(SECS, |c| !events_of(c, "radio.set_freq").is_empty())
        .await
        .unwrap());
    let by = events_of(&op, "radio.set_freq")[0]["by"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(by, format!("cat:{cat}"));
    let listed = stats(&proxy)["programs"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["port"] == "virtual_cat");
    assert!(listed);
}

/// The radio's S-meter (issue #20): polled while receiving into
/// `radio.meter`, answered to `rigctl -m 2`'s `l STRENGTH` (dB relative to
/// S9, as rigctld's) and to Hamlib's TS-2000 driver on the virtual port,
/// and never read while the radio transmits.
#[tokio::test]
async fn the_s_meter_reaches_rigctl_and_is_not_polled_while_transmitting() {
    let Station {
        _dir,
        _meter,
        sim,
        mut op,
        rig,
        proxy: _proxy,
        cat,
    } = station(3_000, "").await;
    let strength = |c: &TestClient| {
        c.latest("radio.meter")
            .and_then(|m| m["strength_db"].as_i64())
    };
    for (bars, db, s_units, over) in [(20, 20, 9, 20), (9, -24, 5, 0)] {
        sim.radio.lock().unwrap().smeter = bars;
        assert!(
            op.pump_until(SECS, |c| strength(c) == Some(db))
                .await
                .unwrap(),
            "radio.meter follows the radio: {:?}",
            op.latest("radio.meter")
        );
        let m = op.latest("radio.meter").unwrap();
        assert_eq!(
            (m["s_units"].as_i64(), m["over_s9_db"].as_i64()),
            (Some(s_units), Some(over))
        );
        let (ok, lines, err) = rigctl(&["-m", "2", "-r", rig.as_str(), "l", "STRENGTH"]).await;
        assert!(ok, "{lines:?} {err}");
        assert_eq!(lines, [db.to_string()], "rigctl -m 2: l STRENGTH");
    }
    // Hamlib's own TS-2000 driver on the virtual port reads the radio's
    // bars, and its calibration of them (Debian's Hamlib 4.5.4 draws a
    // straight line from -54 to +54 dB; the proxy uses the 9-point
    // TS2000_STR_CAL of later Hamlib) puts them at about S5 as well.
    let cat = cat.display().to_string();
    let (ok, lines, err) = rigctl(&[
        "-m", "2014", "-r", &cat, "-s", "38400", "l", "RAWSTR", "l", "STRENGTH",
    ])
    .await;
    assert!(ok && lines.len() == 2, "{lines:?} {err}");
    assert_eq!(
        lines[0], "9",
        "rigctl -m 2014 on the virtual port: the radio's own bars"
    );
    let db: i32 = lines[1].parse().unwrap();
    assert!((-30..=-18).contains(&db), "about S5: {db} dB");

    // Keyed: the meter shows RF output, and the proxy does not ask it.
    let reads = || sim.radio.lock().unwrap().sm_reads;
    key_ptt(&mut op, true).await;
    assert!(op
        .pump_until(SECS, |_| sim.radio.lock().unwrap().tx)
        .await
        .unwrap());
    let before = reads();
    // Three S-meter periods on the air, keeping the transmission alive.
    let on_air_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < on_air_until {
        key_ptt(&mut op, true).await;
        op.pump_until(Duration::from_millis(500), |_| false)
            .await
            .unwrap();
        assert!(sim.radio.lock().unwrap().tx, "still transmitting");
    }
    assert_eq!(reads(), before, "no S-meter read while transmitting");
    key_ptt(&mut op, false).await;
    assert!(
        op.pump_until(SECS, |_| reads() > before).await.unwrap(),
        "read again once receiving"
    );
}

/// A second program opening the radio's serial port beside the proxy is
/// refused (the kernel lets root through an exclusive tty, so the second
/// opener runs as `nobody`), and the proxy's link is not disturbed.
#[tokio::test]
async fn a_second_opener_of_the_radios_serial_port_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let Station {
        _dir,
        _meter,
        sim,
        op: _op,
        rig: _rig,
        proxy,
        cat: _cat,
    } = station(3_000, "").await;
    std::fs::set_permissions(&sim.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = stats(&proxy)["links"]["radio"]["reconnects"].as_u64();
    let out = Command::new("rigctl")
        .args(["-m", "2014", "-r"])
        .arg(&sim.path)
        .args(["-s", "38400", "f"])
        .uid(65534)
        .gid(65534)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && !stdout.contains("14074000"),
        "the second opener got the line: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = stats(&proxy);
    assert_eq!(after["links"]["radio"]["state"], "connected");
    assert_eq!(after["links"]["radio"]["reconnects"].as_u64(), before);
}

/// On a shared JetStream log, a program on proxy B's rig port (B has no
/// hardware) tunes and keys the radio that proxy A owns: its sets are
/// commands in the stream, its reads come from B's mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_on_another_proxy_of_a_shared_log_commands_the_radio() {
    let nats = e2e::Nats::start();
    let sim = PtyRadio::start(Radio::default()).unwrap();
    let on_nats = |name: &str, extra: &str| {
        format!(
            "log = \"{}\"\nproxy_name = \"{name}\"\ntx_keepalive_ms = 3000\n{extra}",
            nats.url()
        )
    };
    let _a = Proxy::start(&on_nats(
        "site-a",
        &format!(
            "radio_port = \"{}\"\nradio_poll_ms = 100\nmeter = \"none\"\n",
            sim.path.display()
        ),
    ));
    let b = Proxy::start(&on_nats(
        "site-b",
        "meter = \"none\"\nrigctl_listen = \"127.0.0.1:0\"\n",
    ));
    let rig = stats(&b)["programs"]["rigctl_listen"]
        .as_str()
        .unwrap()
        .to_string();
    let mut op = TestClient::new("operator-b");
    op.connect(&b.ws_url()).await.unwrap();
    assert!(
        op.pump_until(SECS, |c| freq(c).is_some()).await.unwrap(),
        "B's mirror has the radio's state"
    );
    let (ok, lines, err) = rigctl(&[
        "-m", "2", "-r", &rig, "F", "7074000", "f", "M", "CW", "0", "m", "T", "1", "t",
    ])
    .await;
    assert!(ok, "{lines:?} {err}");
    assert_eq!(lines[0], "7074000", "{lines:?}");
    assert_eq!(lines[1], "CW", "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("1"), "{lines:?}");
    let radio = || sim.radio.lock().unwrap().clone();
    assert_eq!(
        (radio().vfo_a_hz, radio().mode),
        (7_074_000, 3),
        "on A's radio"
    );
    // rigctl has exited: its connection closed, the radio is unkeyed.
    assert!(op.pump_until(SECS, |_| !radio().tx).await.unwrap());
}

// ------------------------------------------------------------------ benchmark

/// p50 and p99 of `samples`, in ms.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples
            .get(i)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    (at(0.5), at(0.99))
}

/// One poller's `f` latencies at 10 Hz for `window`.
async fn f_latencies(rig: String, window: Duration) -> Vec<Duration> {
    let stream = TcpStream::connect(&rig).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // Spread the pollers over the period, as independent programs are.
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..100))).await;
    let end = Instant::now() + window;
    let mut out = Vec::new();
    let mut line = String::new();
    while Instant::now() < end {
        tick.tick().await;
        let at = Instant::now();
        wr.write_all(b"f\n").await.unwrap();
        line.clear();
        rd.read_line(&mut line).await.unwrap();
        out.push(at.elapsed());
    }
    out
}

/// `F` to the frequency being on the radio itself (the simulator's state),
/// and to the answer, `rounds` times, alternating between two frequencies.
async fn set_latencies(rig: &str, sim: &PtyRadio, rounds: usize) -> (Vec<Duration>, Vec<Duration>) {
    let stream = TcpStream::connect(rig).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let (mut out, mut answered) = (Vec::new(), Vec::new());
    let mut line = String::new();
    for i in 0..rounds {
        let hz = if i % 2 == 0 { 7_074_000 } else { 7_075_000 };
        let at = Instant::now();
        wr.write_all(format!("F {hz}\n").as_bytes()).await.unwrap();
        while sim.radio.lock().unwrap().vfo_a_hz != hz {
            assert!(at.elapsed() < SECS, "the set never reached the radio");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        out.push(at.elapsed());
        line.clear();
        rd.read_line(&mut line).await.unwrap();
        answered.push(at.elapsed());
        assert_eq!(line.trim(), "RPRT 0");
    }
    (out, answered)
}

async fn wait_for_port(addr: &str) {
    let deadline = Instant::now() + SECS;
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Measures one server (the proxy's rig port or rigctld) on `sim`.
async fn measure(name: &str, rig: &str, sim: &PtyRadio, window: Duration) {
    let (mut sets, mut answered) = set_latencies(rig, sim, 40).await;
    let (p50, p99) = percentiles(&mut sets);
    let (a50, a99) = percentiles(&mut answered);
    println!("| {name} | F set to on the radio | p50 {p50:.2} ms, p99 {p99:.2} ms; to RPRT 0 p50 {a50:.2} ms, p99 {a99:.2} ms |");
    for n in [0usize, 1, 10, 50] {
        let before = sim.commands.load(Ordering::Relaxed);
        let start = Instant::now();
        let pollers: Vec<_> = (0..n)
            .map(|_| tokio::spawn(f_latencies(rig.to_string(), window)))
            .collect();
        let mut all = Vec::new();
        for p in pollers {
            all.extend(p.await.unwrap());
        }
        if n == 0 {
            tokio::time::sleep(window).await;
        }
        let rate =
            (sim.commands.load(Ordering::Relaxed) - before) as f64 / start.elapsed().as_secs_f64();
        if n == 0 {
            println!("| {name} | no programs | radio CAT {rate:.1} commands/s |");
            continue;
        }
        let (p50, p99) = percentiles(&mut all);
        println!(
            "| {name} | {n} programs polling f at 10 Hz | f p50 {p50:.2} ms, p99 {p99:.2} ms; radio CAT {rate:.1} commands/s; {} answers |",
            all.len()
        );
    }
}

/// The figures of docs/BENCHMARKS.md ("Rig port against rigctld"):
/// `cargo build --release -p edge-proxy && EDGE_PROXY_BIN=target/release/edge-proxy
/// cargo test -p e2e --test rigport -- --ignored --nocapture`.
/// The same simulated TS-2000 on one pty, first behind the proxy's rig port,
/// then behind Debian's `rigctld -m 2014`, in one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it by hand (see docs/BENCHMARKS.md)"]
async fn benchmark_rig_port_against_rigctld() {
    let window = Duration::from_secs(5);
    let sim = PtyRadio::start(Radio::default()).unwrap();
    println!("| server | load | figures |\n|---|---|---|");
    {
        let proxy = Proxy::start(&format!(
            "radio_port = \"{}\"\nmeter = \"none\"\nrigctl_listen = \"127.0.0.1:0\"\n",
            sim.path.display()
        ));
        let rig = stats(&proxy)["programs"]["rigctl_listen"]
            .as_str()
            .unwrap()
            .to_string();
        wait_for_port(&rig).await;
        let mut op = TestClient::new("bench");
        op.connect(&proxy.ws_url()).await.unwrap();
        assert!(op.pump_until(SECS, |c| freq(c).is_some()).await.unwrap());
        measure("edge-proxy rig port", &rig, &sim, window).await;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut rigctld = Command::new("rigctld")
        .args(["-m", "2014", "-r"])
        .arg(&sim.path)
        .args(["-s", "38400", "-T", "127.0.0.1", "-t", &port.to_string()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    wait_for_port(&addr).await;
    measure("rigctld -m 2014", &addr, &sim, window).await;
    let _ = rigctld.kill().await;
}

/// `rigctl_role = "read"`: programs read the station but their sets are
/// refused with a negative code, and the radio itself is not touched.
#[tokio::test]
async fn a_read_only_rig_port_answers_reads_and_refuses_sets() {
    let Station {
        _dir,
        _meter,
        sim,
        op: _op,
        rig,
        proxy: _proxy,
        cat: _cat,
    } = station(3_000, "rigctl_role = \"read\"\n").await;
    let (_, lines, err) = rigctl(&["-m", "2", "-r", &rig, "f", "F", "7074000", "T", "1"]).await;
    assert_eq!(
        lines.first().map(String::as_str),
        Some("14074000"),
        "{lines:?} {err}"
    );
    // Hamlib reports the proxy's refusal: RPRT -19, a security error.
    let refused = |what: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{what}: error")))
    };
    assert!(
        refused("set_freq") && refused("set_ptt"),
        "both sets refused: {lines:?} {err}"
    );
    assert!(
        lines.iter().any(|l| l.contains("returning(-19)")),
        "as a security error: {lines:?}"
    );
    // Ask the radio: still where it was, not keyed.
    let radio = sim.radio.lock().unwrap().clone();
    assert_eq!((radio.vfo_a_hz, radio.tx), (14_074_000, false));
}

/// This machine's address on its network (not loopback), if it has one:
/// the first IPv4 address `hostname -I` lists.
fn lan_address() -> Option<std::net::IpAddr> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

/// Off loopback the rig port has no authentication, so only `rigctl_allow`'s
/// networks get in: a program from this machine's LAN address is turned
/// away until its network is allowed; loopback always gets in.
#[tokio::test]
async fn off_loopback_only_allowed_networks_reach_the_rig_port() {
    let Some(lan) = lan_address() else {
        eprintln!("skipped: this machine has no non-loopback address");
        return;
    };
    let sim = PtyRadio::start(Radio::default()).unwrap();
    let answers = |allow: String| {
        let sim_path = sim.path.display().to_string();
        async move {
            let proxy = Proxy::start(&format!(
                "radio_port = \"{sim_path}\"\nradio_poll_ms = 100\nmeter = \"none\"\n\
                 rigctl_listen = \"0.0.0.0:0\"\n{allow}"
            ));
            let port = stats(&proxy)["programs"]["rigctl_listen"]
                .as_str()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok())
                .expect("the rig port's address in /stats");
            let ask = |ip: std::net::IpAddr| async move {
                let mut stream = TcpStream::connect((ip, port)).await.unwrap();
                let _ = stream.write_all(b"f\n").await;
                let mut line = String::new();
                let read =
                    tokio::time::timeout(SECS, BufReader::new(&mut stream).read_line(&mut line))
                        .await
                        .expect("answered or closed, not hung");
                read.map(|_| line.trim().to_string()).unwrap_or_default()
            };
            // Until the radio has been read, `f` has nothing to answer.
            let deadline = Instant::now() + SECS;
            let mut answers = vec![ask([127, 0, 0, 1].into()).await];
            while answers[0].starts_with("RPRT") && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                answers[0] = ask([127, 0, 0, 1].into()).await;
            }
            answers.push(ask(lan).await);
            answers
        }
    };
    // (Without any rigctl_allow the proxy refuses to start on 0.0.0.0.)
    assert_eq!(
        answers("rigctl_allow = [\"10.255.255.0/24\"]\n".into()).await,
        ["14074000", ""],
        "loopback in, {lan} (outside the allowed network) turned away: closed"
    );
    let net = match lan {
        std::net::IpAddr::V4(v4) => format!("{}/32", v4),
        std::net::IpAddr::V6(v6) => format!("{}/128", v6),
    };
    assert_eq!(
        answers(format!("rigctl_allow = [\"{net}\"]\n")).await,
        ["14074000", "14074000"],
        "{net} allowed"
    );
}
