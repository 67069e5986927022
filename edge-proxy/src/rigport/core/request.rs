//! One line of Hamlib's NET rigctl protocol, as its clients send it
//! (`rigs/dummy/netrigctl.c`; the server side is `tests/rigctl_parse.c`):
//!
//! - one command per line, a one-letter short name (`f`, `F 14074000`) or a
//!   long one after a backslash (`\get_freq`, `\dump_state`);
//! - a leading `+` asks for the extended (labelled) response ending in
//!   `RPRT n`; a leading `;`, `|` or `,` does too, with that character
//!   between the answer's parts instead of a newline;
//! - a VFO may precede the arguments (`F VFOA 14074000`; clients that saw
//!   `\chk_vfo` answer 1 always send one): it is accepted and, since the
//!   station has one VFO for programs, must be the current one;
//! - frequencies may carry decimals (`F 14074000.000000`, as WSJT-X sends).
//!
//! Parsing never fails: what cannot be understood becomes a negative code
//! for the answer (`-1` garbage or bad arguments, `-11` a real Hamlib
//! command this station does not offer).

use super::code;

/// The levels (`l NAME`) a program can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Signal strength relative to S9, dB (an integer).
    Strength,
    Swr,
    /// Forward power, watts.
    RfPowerMeterWatts,
    /// Forward power, 0..1 of the radio's maximum.
    RfPowerMeter,
}

impl Level {
    pub fn parse(name: &str) -> Option<Level> {
        Some(match name {
            "STRENGTH" => Level::Strength,
            "SWR" => Level::Swr,
            "RFPOWER_METER_WATTS" => Level::RfPowerMeterWatts,
            "RFPOWER_METER" => Level::RfPowerMeter,
            _ => return None,
        })
    }

    /// Hamlib's `setting_t` bit, for the capability mask.
    pub fn bit(self) -> u64 {
        match self {
            Level::Swr => 1 << 28,
            Level::Strength => 1 << 30,
            Level::RfPowerMeter => 1 << 32,
            Level::RfPowerMeterWatts => 1 << 39,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    GetFreq,
    SetFreq(u64),
    GetMode,
    /// In the station's vocabulary, and whether the data variant was asked for.
    SetMode {
        mode: &'static str,
        data: bool,
    },
    GetVfo,
    /// Only the current VFO: accepted, changes nothing.
    SetVfo,
    GetSplit,
    /// Only "split off": accepted, changes nothing.
    SetSplitOff,
    GetPtt,
    SetPtt(bool),
    GetLevel(Level),
    GetPowerstat,
    ChkVfo,
    DumpState,
    GetVfoInfo,
    GetLockMode,
    /// `\client_version NAME`: the program says who it is.
    ClientVersion(String),
    Quit,
}

impl Command {
    /// Whether the command changes the radio (needs the control role).
    pub fn is_set(&self) -> bool {
        matches!(
            self,
            Command::SetFreq(_) | Command::SetMode { .. } | Command::SetPtt(_)
        )
    }
}

/// A parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The extended response's separator (`\n` for `+`), if asked for.
    pub sep: Option<u8>,
    /// The long name, for the extended response's header (empty if unknown).
    pub name: &'static str,
    /// The arguments as given, for the extended response's header.
    pub args: String,
    pub command: Result<Command, i32>,
}

/// Longest command name looked at (Hamlib's are under 32).
const MAX_NAME: usize = 32;

/// `(short, long)` of the commands served (`\0`: long name only).
const SERVED: &[(char, &str)] = &[
    ('F', "set_freq"),
    ('f', "get_freq"),
    ('M', "set_mode"),
    ('m', "get_mode"),
    ('V', "set_vfo"),
    ('v', "get_vfo"),
    ('S', "set_split_vfo"),
    ('s', "get_split_vfo"),
    ('T', "set_ptt"),
    ('t', "get_ptt"),
    ('l', "get_level"),
    ('q', "quit"),
    ('Q', "quit"),
    ('\0', "get_powerstat"),
    ('\0', "chk_vfo"),
    ('\0', "dump_state"),
    ('\0', "get_vfo_info"),
    ('\0', "get_lock_mode"),
    ('\0', "client_version"),
];

/// Parses one line (without its `\n`). `None` for a blank line, which
/// rigctld ignores too.
pub fn parse(line: &[u8]) -> Option<Request> {
    let bad = |name: &'static str| Request {
        sep: None,
        name,
        args: String::new(),
        command: Err(code::EINVAL),
    };
    let Ok(text) = std::str::from_utf8(line) else {
        return Some(bad(""));
    };
    let text = text.trim_matches([' ', '\t', '\r']);
    if text.is_empty() {
        return None;
    }
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Some(bad(""));
    }
    let (sep, text) = match text.as_bytes()[0] {
        b'+' => (Some(b'\n'), &text[1..]),
        c @ (b';' | b'|' | b',') => (Some(c), &text[1..]),
        _ => (None, text),
    };
    let text = text.trim_start();
    let (name, rest) = if let Some(long) = text.strip_prefix('\\') {
        let end = long.find([' ', '\t']).unwrap_or(long.len());
        let (name, rest) = long.split_at(end);
        match SERVED.iter().find(|(_, l)| *l == name) {
            Some((_, l)) => (*l, rest),
            None => {
                let known = !name.is_empty()
                    && name.len() <= MAX_NAME
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                return Some(Request {
                    sep,
                    name: "",
                    args: String::new(),
                    command: Err(if known { code::ENAVAIL } else { code::EINVAL }),
                });
            }
        }
    } else {
        let Some(c) = text.chars().next() else {
            return Some(Request { sep, ..bad("") });
        };
        let rest = &text[c.len_utf8()..];
        match SERVED.iter().find(|(s, _)| *s == c) {
            Some((_, l)) => (*l, rest),
            None => {
                // A letter of Hamlib's command table the station does not offer.
                let known = c.is_ascii_alphanumeric() || "_*".contains(c);
                return Some(Request {
                    sep,
                    name: "",
                    args: String::new(),
                    command: Err(if known { code::ENAVAIL } else { code::EINVAL }),
                });
            }
        }
    };
    let args: Vec<&str> = rest.split_whitespace().collect();
    Some(Request {
        sep,
        name,
        args: args.join(" "),
        command: command(name, &args),
    })
}

/// A VFO name as Hamlib spells it (`rig_strvfo`): `Some(true)` for the one
/// programs get (the current, A, main), `Some(false)` for another.
fn vfo(arg: &str) -> Option<bool> {
    match arg {
        "VFOA" | "currVFO" | "VFO" | "Main" | "MainA" | "RX" | "TX" => Some(true),
        "VFOB" | "VFOC" | "Sub" | "SubA" | "SubB" | "MainB" | "MEM" | "None" | "otherVFO" => {
            Some(false)
        }
        _ => None,
    }
}

/// Drops a leading VFO argument; `Err` if it names a VFO the station does
/// not give programs.
fn skip_vfo<'a>(args: &'a [&'a str]) -> Result<&'a [&'a str], i32> {
    match args.first().and_then(|a| vfo(a)) {
        Some(true) => Ok(&args[1..]),
        Some(false) => Err(code::ENAVAIL),
        None => Ok(args),
    }
}

fn command(name: &str, args: &[&str]) -> Result<Command, i32> {
    let one = |args: &[&str]| -> Result<String, i32> {
        args.first().map(|a| a.to_string()).ok_or(code::EINVAL)
    };
    match name {
        "get_freq" => skip_vfo(args).map(|_| Command::GetFreq),
        "set_freq" => {
            let args = skip_vfo(args)?;
            let hz: f64 = one(args)?.parse().map_err(|_| code::EINVAL)?;
            if !(1.0..=99_999_999_999.0).contains(&hz) {
                return Err(code::EINVAL);
            }
            Ok(Command::SetFreq(hz.round() as u64))
        }
        "get_mode" => skip_vfo(args).map(|_| Command::GetMode),
        "set_mode" => {
            let args = skip_vfo(args)?;
            let (mode, data) = super::modes::from_hamlib(&one(args)?).ok_or(code::EINVAL)?;
            // The passband, if given, must be a number; the radio keeps its filter.
            if let Some(pb) = args.get(1) {
                pb.parse::<i64>().map_err(|_| code::EINVAL)?;
            }
            Ok(Command::SetMode { mode, data })
        }
        "get_vfo" => Ok(Command::GetVfo),
        "set_vfo" => match vfo(&one(args)?) {
            Some(true) => Ok(Command::SetVfo),
            Some(false) => Err(code::ENAVAIL),
            None => Err(code::EINVAL),
        },
        "get_split_vfo" => skip_vfo(args).map(|_| Command::GetSplit),
        "set_split_vfo" => {
            let args = skip_vfo(args)?;
            match one(args)?.as_str() {
                "0" => Ok(Command::SetSplitOff),
                // Split is not offered: the station has one VFO for programs.
                "1" => Err(code::ENAVAIL),
                _ => Err(code::EINVAL),
            }
        }
        "get_ptt" => skip_vfo(args).map(|_| Command::GetPtt),
        "set_ptt" => {
            let args = skip_vfo(args)?;
            match one(args)?.as_str() {
                "0" => Ok(Command::SetPtt(false)),
                // 1 = on, 2 = on (mic), 3 = on (data): all key the transmitter.
                "1" | "2" | "3" => Ok(Command::SetPtt(true)),
                _ => Err(code::EINVAL),
            }
        }
        "get_level" => {
            let args = skip_vfo(args)?;
            Level::parse(&one(args)?)
                .map(Command::GetLevel)
                .ok_or(code::EINVAL)
        }
        "quit" => Ok(Command::Quit),
        "get_powerstat" => Ok(Command::GetPowerstat),
        "chk_vfo" => Ok(Command::ChkVfo),
        "dump_state" => Ok(Command::DumpState),
        "get_vfo_info" => skip_vfo(args).map(|_| Command::GetVfoInfo),
        "get_lock_mode" => Ok(Command::GetLockMode),
        "client_version" => {
            // The program's name, bounded and printable (it reaches the log and /stats).
            let name: String = args.join(" ").chars().take(64).collect();
            (!name.is_empty())
                .then_some(Command::ClientVersion(name))
                .ok_or(code::EINVAL)
        }
        _ => Err(code::ENAVAIL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Result<Command, i32> {
        parse(line.as_bytes()).unwrap().command
    }

    #[test]
    fn short_and_long_names_and_vfo_arguments() {
        assert_eq!(cmd("f"), Ok(Command::GetFreq));
        assert_eq!(cmd("\\get_freq"), Ok(Command::GetFreq));
        assert_eq!(cmd("f VFOA"), Ok(Command::GetFreq));
        assert_eq!(cmd("F 14074000.000000"), Ok(Command::SetFreq(14_074_000)));
        assert_eq!(cmd("F VFOA 14074000"), Ok(Command::SetFreq(14_074_000)));
        assert_eq!(cmd("\\set_freq 7074000"), Ok(Command::SetFreq(7_074_000)));
        assert_eq!(cmd("F14074000"), Ok(Command::SetFreq(14_074_000)));
        assert_eq!(
            cmd("M PKTUSB -1"),
            Ok(Command::SetMode {
                mode: "USB",
                data: true
            })
        );
        assert_eq!(
            cmd("M CWR 500"),
            Ok(Command::SetMode {
                mode: "CW-R",
                data: false
            })
        );
        assert_eq!(cmd("T 1"), Ok(Command::SetPtt(true)));
        assert_eq!(cmd("T 2"), Ok(Command::SetPtt(true)));
        assert_eq!(cmd("T 3"), Ok(Command::SetPtt(true)));
        assert_eq!(cmd("T 0"), Ok(Command::SetPtt(false)));
        assert_eq!(cmd("l SWR"), Ok(Command::GetLevel(Level::Swr)));
        assert_eq!(
            cmd("l VFOA RFPOWER_METER_WATTS"),
            Ok(Command::GetLevel(Level::RfPowerMeterWatts))
        );
        assert_eq!(cmd("\\chk_vfo"), Ok(Command::ChkVfo));
        assert_eq!(cmd("\\get_vfo_info VFOA"), Ok(Command::GetVfoInfo));
        assert_eq!(cmd("S 0 VFOA"), Ok(Command::SetSplitOff));
        assert_eq!(cmd("q"), Ok(Command::Quit));
        assert_eq!(
            cmd("\\client_version WSJT-X 2.6.1"),
            Ok(Command::ClientVersion("WSJT-X 2.6.1".into()))
        );
    }

    #[test]
    fn extended_prefixes() {
        let r = parse(b"+f").unwrap();
        assert_eq!(
            (r.sep, r.name, r.command),
            (Some(b'\n'), "get_freq", Ok(Command::GetFreq))
        );
        let r = parse(b";\\get_mode").unwrap();
        assert_eq!((r.sep, r.name), (Some(b';'), "get_mode"));
        let r = parse(b"+F 7074000").unwrap();
        assert_eq!(r.args, "7074000");
    }

    #[test]
    fn everything_else_is_a_negative_code() {
        assert_eq!(cmd("F abc"), Err(code::EINVAL));
        assert_eq!(cmd("F -5"), Err(code::EINVAL));
        assert_eq!(cmd("F inf"), Err(code::EINVAL));
        assert_eq!(cmd("F"), Err(code::EINVAL));
        assert_eq!(cmd("M WFM 0"), Err(code::EINVAL));
        assert_eq!(cmd("T 7"), Err(code::EINVAL));
        assert_eq!(cmd("f VFOB"), Err(code::ENAVAIL));
        assert_eq!(cmd("S 1 VFOB"), Err(code::ENAVAIL));
        assert_eq!(cmd("L RFPOWER 0.5"), Err(code::ENAVAIL));
        assert_eq!(cmd("\\dump_caps"), Err(code::ENAVAIL));
        assert_eq!(cmd("\\no-such!"), Err(code::EINVAL));
        assert_eq!(cmd("~"), Err(code::EINVAL));
        assert_eq!(cmd("\u{1}\u{2}"), Err(code::EINVAL));
        assert_eq!(
            parse(&[0xff, 0xfe, b'f']).unwrap().command,
            Err(code::EINVAL)
        );
        assert_eq!(parse(b"   "), None);
    }
}
