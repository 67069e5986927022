//! `\dump_state`: the capability block Hamlib's NET client reads when it
//! opens (protocol 1, field order of `rigctl_parse.c`'s `dump_state` and
//! `netrigctl.c`'s `netrigctl_open`). The client copies it into the rig's
//! capabilities, so it must say what the station really does:
//!
//! - the frequency ranges of the radio (a TS-2000's: the Kenwood backend's
//!   radio) and the modes of [`super::modes`], `PKTUSB`/`PKTLSB` included;
//! - PTT through the rig (`ptt_type=0x1`), so programs key over the port;
//! - the levels that can be read: `RFPOWER_METER_WATTS` when there is a
//!   power meter, `SWR` when it measures SWR (an LP-100A), `STRENGTH` when
//!   the station reports it. A level a program sees advertised and then
//!   gets an error for makes WSJT-X drop the connection, so only what can
//!   be answered is advertised.
//! - `timeout`: how long a set may take to be confirmed by the radio.

use super::modes::all_modes;
use super::request::Level;

/// What the station offers programs right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Hamlib's `has_get_level` mask (see [`Level::bit`]).
    pub levels: u64,
    /// How long a set waits for the radio's confirmation, ms.
    pub timeout_ms: u64,
}

impl Caps {
    pub fn new(levels: &[Level], timeout_ms: u64) -> Self {
        Caps {
            levels: levels.iter().fold(0, |m, l| m | l.bit()),
            timeout_ms,
        }
    }

    pub fn has(&self, level: Level) -> bool {
        self.levels & level.bit() != 0
    }
}

/// `(start Hz, end Hz)` a TS-2000 receives on.
const RX: &[(u64, u64)] = &[
    (30_000, 60_000_000),
    (142_000_000, 152_000_000),
    (420_000_000, 450_000_000),
    (1_240_000_000, 1_300_000_000),
];
/// `(start Hz, end Hz)` it transmits on (IARU region 2 amateur bands).
const TX: &[(u64, u64)] = &[
    (1_800_000, 2_000_000),
    (3_500_000, 4_000_000),
    (5_330_000, 5_410_000),
    (7_000_000, 7_300_000),
    (10_100_000, 10_150_000),
    (14_000_000, 14_350_000),
    (18_068_000, 18_168_000),
    (21_000_000, 21_450_000),
    (24_890_000, 24_990_000),
    (28_000_000, 29_700_000),
    (50_000_000, 54_000_000),
    (144_000_000, 148_000_000),
    (430_000_000, 450_000_000),
];
/// VFO A and B.
const VFOS: u32 = 0x3;
/// Transmit power range, mW.
const POWER_MW: (u32, u32) = (5_000, 100_000);

/// The block, ending in `done` when the client sent `\chk_vfo` first (as
/// rigctld does: older clients do not read protocol-1 lines).
pub fn dump_state(caps: &Caps, after_chk_vfo: bool) -> String {
    use std::fmt::Write;
    let modes = all_modes();
    let mut s = String::with_capacity(2048);
    // protocol version, model (2: NET rigctl), old ITU region field
    s.push_str("1\n2\n0\n");
    for (lo, hi) in RX {
        let _ = writeln!(
            s,
            "{lo}.000000 {hi}.000000 0x{modes:x} -1 -1 0x{VFOS:x} 0x1"
        );
    }
    s.push_str("0 0 0 0 0 0 0\n");
    for (lo, hi) in TX {
        let _ = writeln!(
            s,
            "{lo}.000000 {hi}.000000 0x{modes:x} {} {} 0x{VFOS:x} 0x1",
            POWER_MW.0, POWER_MW.1
        );
    }
    s.push_str("0 0 0 0 0 0 0\n");
    // tuning steps: 1 Hz for every mode
    let _ = writeln!(s, "0x{modes:x} 1\n0 0");
    // filters: the passbands `m` reports
    for (mask, width) in [
        (0xc0c, 2400u32), // USB LSB PKTLSB PKTUSB
        (0x82, 500),      // CW CWR
        (0x110, 500),     // RTTY RTTYR
        (0x1, 6000),      // AM
        (0x20, 12000),    // FM
    ] {
        let _ = writeln!(s, "0x{mask:x} {width}");
    }
    s.push_str("0 0\n");
    // max_rit, max_xit, max_ifshift, announces, preamps, attenuators
    s.push_str("0\n0\n0\n0\n\n\n");
    // has_get_func, has_set_func, has_get_level, has_set_level, has_get_parm, has_set_parm
    let _ = write!(s, "0x0\n0x0\n0x{:x}\n0x0\n0x0\n0x0\n", caps.levels);
    if after_chk_vfo {
        let _ = write!(
            s,
            "vfo_ops=0x0\nptt_type=0x1\ntargetable_vfo=0x0\nhas_set_vfo=1\nhas_get_vfo=1\n\
             has_set_freq=1\nhas_get_freq=1\nhas_set_conf=0\nhas_get_conf=0\n\
             has_power2mW=0\nhas_mW2power=0\ntimeout={}\nrig_model=2\n\
             rigctld_version=station-link edge-proxy {}\ndone\n",
            caps.timeout_ms,
            env!("CARGO_PKG_VERSION")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the block the way `netrigctl_open` does, field by field.
    #[test]
    fn the_block_parses_as_hamlibs_client_reads_it() {
        let caps = Caps::new(&[Level::Swr, Level::RfPowerMeterWatts], 2000);
        let text = dump_state(&caps, true);
        let mut lines = text.split('\n');
        let mut next = || lines.next().unwrap();
        assert_eq!(next(), "1", "protocol 1");
        next();
        next();
        for list in 0..2 {
            loop {
                let fields: Vec<&str> = next().split_whitespace().collect();
                assert_eq!(fields.len(), 7, "range lines have 7 fields (list {list})");
                if fields.iter().all(|f| *f == "0") {
                    break;
                }
                let (lo, hi): (f64, f64) = (fields[0].parse().unwrap(), fields[1].parse().unwrap());
                assert!(lo < hi);
                let modes = u64::from_str_radix(fields[2].trim_start_matches("0x"), 16).unwrap();
                assert_ne!(modes & super::super::modes::RIG_MODE_PKTUSB, 0);
            }
        }
        for _ in 0..2 {
            while next().split_whitespace().collect::<Vec<_>>() != ["0", "0"] {}
        }
        for _ in 0..6 {
            next();
        }
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
        assert_eq!(hex(next()), 0);
        assert_eq!(hex(next()), 0);
        let levels = hex(next());
        assert_eq!(levels, (1 << 28) | (1 << 39), "SWR and RFPOWER_METER_WATTS");
        for _ in 0..3 {
            hex(next());
        }
        let mut rest: Vec<&str> = Vec::new();
        for line in lines.by_ref() {
            rest.push(line);
            if line == "done" {
                break;
            }
        }
        assert!(rest.contains(&"ptt_type=0x1"), "PTT through the rig");
        assert!(rest.contains(&"timeout=2000"));
        assert_eq!(rest.last(), Some(&"done"));
        assert!(
            rest.iter().all(|l| *l == "done" || l.contains('=')),
            "{rest:?}"
        );
        assert!(!dump_state(&caps, false).contains("done"));
    }
}
