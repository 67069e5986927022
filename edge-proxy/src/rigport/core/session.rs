//! One program's connection to the rig port, sans IO: a line in, and out
//! either an answer to send or a set to carry out (through the log, by the
//! shell) whose result is then rendered by [`Pending::finish`].
//!
//! Reads are answered from the [`Station`] the caller passes (the proxy's
//! current state), never from the radio: ten programs polling cost the
//! radio no extra CAT traffic.

use super::caps::{dump_state, Caps};
use super::code;
use super::reply::{render, Body};
use super::request::{parse, Command, Level, Request};
use super::station::Station;

/// A change to the radio, to be logged as a command and confirmed.
#[derive(Debug, Clone, PartialEq)]
pub enum Set {
    Freq(u64),
    /// In the station's vocabulary, with whether data was asked for.
    Mode {
        mode: &'static str,
        data: bool,
    },
    Ptt(bool),
}

/// What the shell does with one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to send (a blank line).
    Nothing,
    /// Send these bytes.
    Answer(Vec<u8>),
    /// Carry out the set, then send `pending.finish(result)`.
    Set(Set, Pending),
    /// The program said its name; send these bytes.
    Named(String, Vec<u8>),
    /// Send these bytes, then close the connection.
    Quit(Vec<u8>),
}

/// How to answer a set once its result is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    sep: Option<u8>,
    name: &'static str,
    args: String,
}

impl Pending {
    /// `Ok(())` once the radio confirmed, or the negative code.
    pub fn finish(&self, result: Result<(), i32>) -> Vec<u8> {
        let mut out = Vec::new();
        let code = result.err().unwrap_or(code::OK);
        render(
            self.sep,
            (self.name, &self.args),
            &Body::Status(code),
            true,
            &mut out,
        );
        out
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    /// `\chk_vfo` was asked: `\dump_state` then has its protocol-1 lines.
    chk_vfo: bool,
    /// The port's role lets this program change the radio.
    control: bool,
}

impl Session {
    pub fn new(control: bool) -> Self {
        Session {
            chk_vfo: false,
            control,
        }
    }

    /// One line from the program (without its `\n`).
    pub fn handle(&mut self, line: &[u8], station: &Station, caps: &Caps) -> Step {
        let Some(request) = parse(line) else {
            return Step::Nothing;
        };
        let Request {
            sep,
            name,
            args,
            command,
        } = request;
        let answer = |body: Body, rprt: bool| {
            let mut out = Vec::new();
            render(sep, (name, &args), &body, rprt, &mut out);
            out
        };
        let command = match command {
            Ok(c) => c,
            Err(code) => return Step::Answer(answer(Body::Status(code), true)),
        };
        if command.is_set() && !self.control {
            return Step::Answer(answer(Body::Status(code::ESECURITY), true));
        }
        let values = |v: Vec<(&'static str, String)>| Step::Answer(answer(Body::Values(v), true));
        let unknown = || Step::Answer(answer(Body::Status(code::EIO), true));
        match command {
            Command::GetFreq => match station.freq_hz {
                Some(hz) => values(vec![("Frequency", hz.to_string())]),
                None => unknown(),
            },
            Command::GetMode => match station.hamlib_mode() {
                Some((mode, passband)) => values(vec![
                    ("Mode", mode.to_string()),
                    ("Passband", passband.to_string()),
                ]),
                None => unknown(),
            },
            Command::GetVfo => values(vec![("VFO", "VFOA".into())]),
            Command::GetSplit => values(vec![("Split", "0".into()), ("TX VFO", "VFOA".into())]),
            Command::GetPtt => values(vec![("PTT", u8::from(station.ptt).to_string())]),
            Command::GetLevel(level) => match level_value(level, station, caps) {
                Ok(v) => Step::Answer(answer(Body::Bare(v), true)),
                Err(code) => Step::Answer(answer(Body::Status(code), true)),
            },
            Command::GetPowerstat => values(vec![("Power Status", "1".into())]),
            Command::ChkVfo => {
                self.chk_vfo = true;
                Step::Answer(answer(Body::Values(vec![("ChkVFO", "0".into())]), false))
            }
            Command::DumpState => Step::Answer(answer(
                Body::Block(dump_state(caps, self.chk_vfo)),
                sep.is_some(),
            )),
            Command::GetVfoInfo => match (station.freq_hz, station.hamlib_mode()) {
                (Some(hz), Some((mode, passband))) => values(vec![
                    ("Freq", hz.to_string()),
                    ("Mode", mode.to_string()),
                    ("Width", passband.to_string()),
                    ("Split", "0".into()),
                    ("SatMode", "0".into()),
                ]),
                _ => unknown(),
            },
            // rigctld adds an `RPRT 0` here that Hamlib's client never reads
            // (it logs leftover bytes): the value alone is what it expects.
            Command::GetLockMode => Step::Answer(answer(Body::Bare("0".into()), sep.is_some())),
            Command::SetVfo | Command::SetSplitOff => {
                Step::Answer(answer(Body::Status(code::OK), true))
            }
            Command::ClientVersion(who) => Step::Named(who, answer(Body::Status(code::OK), true)),
            Command::Quit => Step::Quit(answer(Body::Status(code::OK), true)),
            Command::SetFreq(hz) => Step::Set(Set::Freq(hz), Pending { sep, name, args }),
            Command::SetMode { mode, data } => {
                Step::Set(Set::Mode { mode, data }, Pending { sep, name, args })
            }
            Command::SetPtt(on) => Step::Set(Set::Ptt(on), Pending { sep, name, args }),
        }
    }
}

/// A level's value as rigctld prints it (`%f` for floats, `%d` for ints).
fn level_value(level: Level, station: &Station, caps: &Caps) -> Result<String, i32> {
    if !caps.has(level) {
        return Err(code::ENAVAIL);
    }
    // Receiving, nothing goes out: no reading yet still means 0 W.
    let watts = station
        .watts
        .or((!station.ptt).then_some(0.0))
        .ok_or(code::EIO);
    match level {
        Level::RfPowerMeterWatts => watts.map(|w| format!("{w:.6}")),
        // Of the radio's 100 W.
        Level::RfPowerMeter => watts.map(|w| format!("{:.6}", (w / 100.0).clamp(0.0, 1.0))),
        Level::Swr => station.swr.map(|s| format!("{s:.6}")).ok_or(code::EIO),
        Level::Strength => station
            .strength_db
            .map(|db| db.to_string())
            .ok_or(code::EIO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn station() -> Station {
        let mut s = Station::default();
        s.on_radio_state(Some(14_074_000), Some("USB"), Some(false));
        s.on_power(Some(0.0), Some(1.15));
        s
    }

    fn caps() -> Caps {
        Caps::new(&[Level::Swr, Level::RfPowerMeterWatts], 2000)
    }

    fn answer(session: &mut Session, line: &str) -> String {
        match session.handle(line.as_bytes(), &station(), &caps()) {
            Step::Answer(bytes) | Step::Quit(bytes) | Step::Named(_, bytes) => {
                String::from_utf8(bytes).unwrap()
            }
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn the_open_sequence_and_the_wsjtx_polls() {
        let mut s = Session::new(true);
        assert_eq!(answer(&mut s, "\\get_powerstat"), "1\n");
        assert_eq!(answer(&mut s, "\\chk_vfo"), "0\n");
        assert!(answer(&mut s, "\\dump_state").ends_with("done\n"));
        assert_eq!(answer(&mut s, "v"), "VFOA\n");
        assert_eq!(answer(&mut s, "f"), "14074000\n");
        assert_eq!(answer(&mut s, "m"), "USB\n2400\n");
        assert_eq!(answer(&mut s, "s"), "0\nVFOA\n");
        assert_eq!(answer(&mut s, "t"), "0\n");
        assert_eq!(answer(&mut s, "l SWR"), "1.150000\n");
        assert_eq!(answer(&mut s, "l RFPOWER_METER_WATTS"), "0.000000\n");
        assert_eq!(answer(&mut s, "l STRENGTH"), "RPRT -11\n", "not advertised");
        assert_eq!(answer(&mut s, "\\get_lock_mode"), "0\n");
        assert_eq!(
            answer(&mut s, "\\get_vfo_info VFOA"),
            "14074000\nUSB\n2400\n0\n0\n"
        );
        assert_eq!(
            answer(&mut s, "+f"),
            "get_freq:\nFrequency: 14074000\nRPRT 0\n"
        );
        assert_eq!(answer(&mut s, "S 0 VFOA"), "RPRT 0\n");
        assert_eq!(answer(&mut s, "q"), "RPRT 0\n");
    }

    #[test]
    fn sets_are_handed_to_the_shell_and_answered_after() {
        let mut s = Session::new(true);
        let Step::Set(set, pending) = s.handle(b"+F 7074000", &station(), &caps()) else {
            panic!()
        };
        assert_eq!(set, Set::Freq(7_074_000));
        assert_eq!(pending.finish(Ok(())), b"set_freq: 7074000\nRPRT 0\n");
        let Step::Set(set, pending) = s.handle(b"T 1", &station(), &caps()) else {
            panic!()
        };
        assert_eq!(set, Set::Ptt(true));
        assert_eq!(pending.finish(Err(code::ETIMEOUT)), b"RPRT -5\n");
    }

    #[test]
    fn a_read_only_port_refuses_sets_but_answers_reads() {
        let mut s = Session::new(false);
        assert_eq!(answer(&mut s, "F 7074000"), "RPRT -19\n");
        assert_eq!(answer(&mut s, "T 1"), "RPRT -19\n");
        assert_eq!(answer(&mut s, "f"), "14074000\n");
    }

    #[test]
    fn before_the_radio_has_reported_reads_are_errors_not_guesses() {
        let mut s = Session::new(true);
        let empty = Station::default();
        let Step::Answer(a) = s.handle(b"f", &empty, &caps()) else {
            panic!()
        };
        assert_eq!(a, b"RPRT -6\n");
    }
}
