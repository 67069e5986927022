//! `station-sim`: simulated station hardware on pseudo-terminals.
//!
//! `station-sim radio` serves a Kenwood TS-2000; `station-sim station` adds a
//! Telepost LP-100A wattmeter reading the radio's output. Point Hamlib
//! (`rigctl -m 2014 -r PATH`) or the edge proxy at the paths it prints.
//! Faults are injected by typing commands on standard input (`help` lists
//! them), so a demo or a test can trip the transmitter on cue.

use std::io::BufRead;
use std::sync::atomic::Ordering;

use anyhow::Result;
use clap::{Parser, Subcommand};
use station_sim::kenwood::Radio;
use station_sim::pty::{PtyMeter, PtyRadio};

#[derive(Parser)]
#[command(about = "Simulated station hardware on pseudo-terminals, with fault injection on stdin")]
struct Cli {
    #[command(subcommand)]
    device: Device,
}

#[derive(Subcommand)]
enum Device {
    /// A Kenwood TS-2000 style CAT radio.
    Radio {
        /// Also make this symlink to the radio's pty (e.g. /tmp/radio).
        #[arg(long)]
        link: Option<std::path::PathBuf>,
    },
    /// The radio and an LP-100A wattmeter that reads its RF output.
    Station {
        /// Also make this symlink to the radio's pty.
        #[arg(long)]
        link: Option<std::path::PathBuf>,
        /// Also make this symlink to the meter's pty.
        #[arg(long)]
        meter_link: Option<std::path::PathBuf>,
    },
}

const HELP: &str = "commands: vfo HZ (turn VFO A's knob; in AI mode the radio reports it unasked), mode NAME (USB, CW, ...), ptt on|off (the front panel's PTT), \
                    signal N (a steady signal: the S-meter reads N of 0..30 while receiving; 15 is S9), pa-fail (keyed, no RF out), pa-ok, tx-drop (trip the transmitter mid-frame), \
                    silent (radio stops answering), answer (it answers again), noise (garbage on the radio's line), \
                    status, help";

fn main() -> Result<()> {
    let (link, meter_link, with_meter) = match Cli::parse().device {
        Device::Radio { link } => (link, None, false),
        Device::Station { link, meter_link } => (link, meter_link, true),
    };
    // A live band: the S-meter fades around S9 over a noise floor.
    let radio = PtyRadio::start(Radio {
        fading: true,
        ..Radio::default()
    })?;
    if let Some(link) = &link {
        radio.symlink(link)?;
    }
    println!("radio: TS-2000 on {}", radio.path.display());
    println!(
        "  try: rigctl -m 2014 -r {} -s 38400 f F 7074000 f t T 1 t",
        radio.path.display()
    );
    let meter = if with_meter {
        let meter = PtyMeter::start(radio.radio.clone())?;
        if let Some(link) = &meter_link {
            meter.symlink(link)?;
        }
        println!("meter: LP-100A on {}", meter.path.display());
        Some(meter)
    } else {
        None
    };
    println!("{HELP}");
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let command = line.trim();
        match command {
            "" => continue,
            "help" => {
                println!("{HELP}");
                continue;
            }
            "pa-fail" | "pa-ok" => {
                if let Ok(mut r) = radio.radio.lock() {
                    r.pa_failed = command == "pa-fail";
                }
            }
            "tx-drop" => radio.drop_tx_mid_frame(),
            "silent" | "answer" => radio
                .faults
                .silent
                .store(command == "silent", Ordering::Relaxed),
            "noise" => {
                if let Ok(mut g) = radio.faults.garbage.lock() {
                    g.extend_from_slice(b"\x00\xff\x13FA00;");
                }
            }
            "status" => {}
            "ptt on" | "ptt off" => radio.front_ptt(command == "ptt on"),
            _ if command.starts_with("vfo ") => match command["vfo ".len()..].trim().parse::<u64>()
            {
                Ok(hz @ 1..=99_999_999_999) => radio.turn_vfo(hz),
                _ => {
                    println!("vfo takes a frequency in Hz, e.g. vfo 7074000");
                    continue;
                }
            },
            _ if command.starts_with("mode ") => {
                match shared_protocol::cat::mode_digit(command["mode ".len()..].trim()) {
                    Some(digit) => radio.select_mode(digit),
                    None => {
                        println!("mode takes LSB, USB, CW, FM, AM, FSK, CW-R or FSK-R");
                        continue;
                    }
                }
            }
            _ if command.starts_with("signal ") => {
                match command["signal ".len()..].trim().parse::<u32>() {
                    Ok(bars @ 0..=30) => {
                        if let Ok(mut r) = radio.radio.lock() {
                            r.smeter = bars;
                            r.fading = false;
                        }
                    }
                    _ => {
                        println!("signal takes 0..30 (S9 is 15, S9+60 dB is 30)");
                        continue;
                    }
                }
            }
            _ => {
                println!("unknown command {command:?}; {HELP}");
                continue;
            }
        }
        if let Ok(r) = radio.radio.lock() {
            println!(
                "ok: {} Hz, mode {}, {}, RF out {:.0} W, signal {}, AI{}{}",
                r.vfo_a_hz,
                r.mode,
                if r.tx { "TX" } else { "RX" },
                r.rf_out_w(),
                r.smeter,
                r.ai,
                if r.pa_failed {
                    " (amplifier failed)"
                } else {
                    ""
                }
            );
        }
    }
    // Standard input closed: keep serving until killed.
    let _keep = meter;
    loop {
        std::thread::park();
    }
}
