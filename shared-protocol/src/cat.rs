//! Kenwood-style ASCII CAT framing (TS-2000 / TS-590 family, Elecraft K3):
//! commands and answers are printable ASCII terminated by `;`. Shared by the
//! proxy's serial backend and the radio simulator.
//!
//! [`Framer`] cuts a byte stream into frames and resynchronises after line
//! noise (non-printable bytes drop the partial frame; what follows may still
//! be a whole frame) and after over-long frames (skipped up to their `;`).

/// Longest command accepted before the framer gives up on it.
const MAX_COMMAND: usize = 64;

/// Cuts bytes into `;`-terminated commands.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// The current command grew past `MAX_COMMAND`: skip it up to its `;`.
    overlong: bool,
    /// Bytes thrown away while resynchronising.
    pub discarded: u64,
}

impl Framer {
    /// A frame has started and not ended: if the line now stays quiet, it
    /// was torn.
    pub fn partial(&self) -> bool {
        !self.buf.is_empty() && !self.overlong
    }

    /// Forgets a partial frame (after a timeout).
    pub fn reset(&mut self) {
        self.discarded += self.buf.len() as u64;
        self.buf.clear();
        self.overlong = false;
    }

    /// Feeds bytes; returns the complete commands (without the `;`).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b';' => {
                    if !self.buf.is_empty() && !self.overlong {
                        // Only printable ASCII reaches here (see below).
                        out.push(String::from_utf8_lossy(&self.buf).into_owned());
                    }
                    self.buf.clear();
                    self.overlong = false;
                }
                b'\r' | b'\n' => {}
                0x20..=0x7e if self.overlong => self.discarded += 1,
                0x20..=0x7e if self.buf.len() < MAX_COMMAND => self.buf.push(b),
                0x20..=0x7e => {
                    self.discarded += self.buf.len() as u64 + 1;
                    self.buf.clear();
                    self.overlong = true;
                }
                _ => {
                    // Line noise: drop the partial command; what follows the
                    // noise may still be a whole command.
                    self.discarded += self.buf.len() as u64 + 1;
                    self.buf.clear();
                }
            }
        }
        out
    }
}

/// Parses an `IF;` answer (38 characters): `(frequency Hz, transmitting, mode)`.
/// The TX/RX flag is at index 28 and the mode at 29, as Hamlib's Kenwood
/// backend reads them.
pub fn parse_if(answer: &str) -> Option<(u64, bool, u8)> {
    let body = answer.strip_prefix("IF")?;
    if body.len() < 35 || !body.is_ascii() {
        return None;
    }
    let hz = body[..11].parse().ok()?;
    let tx = match &body[26..27] {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let mode = body[27..28].parse().ok()?;
    Some((hz, tx, mode))
}

/// Which VFO an `IF;` answer says is in use (the digit after the mode):
/// 0 VFO A, 1 VFO B, 2 a memory channel.
pub fn if_vfo(answer: &str) -> Option<u8> {
    let body = answer.strip_prefix("IF")?;
    body.get(28..29)?.parse().ok()
}

/// A frame that tells part of the radio's state: an answer to a query, or
/// the same frame sent unasked in auto-information mode (`AI1;`/`AI2;`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// `FA`: VFO A's frequency.
    VfoA(u64),
    /// `FB`: VFO B's frequency.
    VfoB(u64),
    /// `MD`: the mode digit.
    Mode(u8),
    /// `IF`: the frequency in use, TX/RX, the mode and which VFO.
    Status {
        hz: u64,
        tx: bool,
        mode: u8,
        vfo: u8,
    },
}

impl Report {
    /// Reads a whole frame (without its `;`) of exactly the shape its
    /// answers have, so a frame torn by noise (`FA0001`) is never taken for
    /// a report; anything else is `None`.
    pub fn parse(frame: &str) -> Option<Report> {
        let (name, body) = (frame.get(..2)?, frame.get(2..)?);
        let digits = |n: usize| body.len() == n && body.bytes().all(|b| b.is_ascii_digit());
        match name {
            "FA" if digits(11) => body.parse().ok().map(Report::VfoA),
            "FB" if digits(11) => body.parse().ok().map(Report::VfoB),
            "MD" if digits(1) => body.parse().ok().map(Report::Mode),
            "IF" if body.len() == 35 => {
                let (hz, tx, mode) = parse_if(frame)?;
                let vfo = if_vfo(frame)?;
                Some(Report::Status { hz, tx, mode, vfo })
            }
            _ => None,
        }
    }
}

/// The radio's state as its frames told it, each applied in the order it
/// arrived. On a serial line that is the order the radio said them, so the
/// last frame is the newest word whether it was an answer or sent unasked:
/// an `IF` answer that was asked for before a knob turn but arrives after
/// the radio's `FA` report of it was made after the turn, and nothing
/// older can overwrite something newer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatState {
    pub freq_hz: Option<u64>,
    pub tx: Option<bool>,
    pub mode: Option<u8>,
    /// 0 VFO A, 1 VFO B, 2 memory (from `IF`): an `FA` or `FB` report is the
    /// frequency in use only for its own VFO.
    pub vfo: Option<u8>,
}

impl CatState {
    /// Applies one report; returns whether the state changed.
    pub fn apply(&mut self, report: Report) -> bool {
        let before = *self;
        match report {
            Report::VfoA(hz) if self.vfo == Some(0) => self.freq_hz = Some(hz),
            Report::VfoB(hz) if self.vfo == Some(1) => self.freq_hz = Some(hz),
            Report::VfoA(_) | Report::VfoB(_) => {}
            Report::Mode(mode) => self.mode = Some(mode),
            Report::Status { hz, tx, mode, vfo } => {
                *self = CatState {
                    freq_hz: Some(hz),
                    tx: Some(tx),
                    mode: Some(mode),
                    vfo: Some(vfo),
                }
            }
        }
        *self != before
    }

    /// `(frequency Hz, transmitting, mode digit)` once all three are known
    /// (after the first `IF`).
    pub fn complete(&self) -> Option<(u64, bool, u8)> {
        Some((self.freq_hz?, self.tx?, self.mode?))
    }
}

/// The mode digit of `MD` and `IF` as a name.
pub fn mode_name(mode: u8) -> &'static str {
    match mode {
        1 => "LSB",
        2 => "USB",
        3 => "CW",
        4 => "FM",
        5 => "AM",
        6 => "FSK",
        7 => "CW-R",
        9 => "FSK-R",
        _ => "?",
    }
}

/// The mode digit for a name, if the radio has it.
pub fn mode_digit(name: &str) -> Option<u8> {
    (1..=9).find(|d| mode_name(*d).eq_ignore_ascii_case(name))
}

/// The TS-2000's S-meter calibration as Hamlib's TS-2000 driver has it
/// (`TS2000_STR_CAL`): the `SM0` bar reading (0..=30) and the signal in dB
/// relative to S9. Below S9 a bar is 2 S-units' worth of 6 dB every three
/// bars (S9 at 15); above it 20 dB every five bars (S9+60 dB at 30).
const STRENGTH_CAL: [(u16, i32); 9] = [
    (0, -54),
    (3, -48),
    (6, -36),
    (9, -24),
    (12, -12),
    (15, 0),
    (20, 20),
    (25, 40),
    (30, 60),
];

/// An `SM0` reading while receiving as dB relative to S9 (what rigctld's
/// `l STRENGTH` answers), interpolated in the calibration table, rounded.
pub fn strength_db(bars: u16) -> i32 {
    let bars = bars.min(30);
    let at = STRENGTH_CAL
        .iter()
        .position(|(b, _)| *b >= bars)
        .unwrap_or(STRENGTH_CAL.len() - 1);
    if at == 0 {
        return STRENGTH_CAL[0].1;
    }
    let ((b0, d0), (b1, d1)) = (STRENGTH_CAL[at - 1], STRENGTH_CAL[at]);
    let (b0, b1, bars) = (i32::from(b0), i32::from(b1), i32::from(bars));
    d0 + ((d1 - d0) * (bars - b0) + (b1 - b0) / 2) / (b1 - b0)
}

/// The `SM0` bar reading that shows `db` (relative to S9): the inverse of
/// [`strength_db`], for a radio that answers from a known signal.
pub fn strength_bars(db: i32) -> u16 {
    (0..=30u16)
        .min_by_key(|b| (strength_db(*b) - db).abs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_resynchronises_after_garbage() {
        let mut f = Framer::default();
        assert_eq!(f.push(b"FA;F"), ["FA"]);
        assert_eq!(f.push(b"B;\x00\xffMD;"), ["FB", "MD"]);
        assert_eq!(
            f.push(b"IF\xfe\x01;ID;"),
            ["ID"],
            "a command cut by noise is dropped, the next one read"
        );
        assert!(f.discarded > 0);
        let long = [b'A'; 200];
        assert!(f.push(&long).is_empty());
        assert_eq!(
            f.push(b"AAA;PS;"),
            ["PS"],
            "an over-long command is skipped whole"
        );
    }

    #[test]
    fn if_status_and_modes() {
        let status = "IF00014074000000000000000000021000000000;";
        assert_eq!(
            parse_if(&status[..status.len() - 1]),
            Some((14_074_000, false, 2))
        );
        assert_eq!(parse_if("IFgarbage"), None);
        assert_eq!(mode_digit("usb"), Some(2));
        assert_eq!(mode_name(3), "CW");
        assert_eq!(mode_digit("XYZ"), None);
    }

    #[test]
    fn reports_are_applied_in_arrival_order_and_only_for_the_vfo_in_use() {
        let status =
            |hz: u64, tx: u8, vfo: u8| format!("IF{hz:011}0000+0000000000{tx}2{vfo}000000");
        assert_eq!(Report::parse("FA0001"), None, "torn");
        assert_eq!(Report::parse("SM00015"), None, "not state");
        assert_eq!(
            Report::parse(&status(14_074_000, 1, 0)),
            Some(Report::Status {
                hz: 14_074_000,
                tx: true,
                mode: 2,
                vfo: 0
            })
        );
        let mut s = CatState::default();
        assert!(!s.apply(Report::VfoA(7_000_000)), "VFO unknown yet");
        assert_eq!(s.complete(), None);
        let r = |f: &str| Report::parse(f).unwrap();
        assert!(s.apply(r(&status(14_074_000, 0, 0))));
        assert_eq!(s.complete(), Some((14_074_000, false, 2)));
        assert!(s.apply(r("FA00014074100")));
        assert!(s.apply(r("MD3")));
        assert_eq!(s.complete(), Some((14_074_100, false, 3)));
        assert!(!s.apply(r("FB00007074000")), "VFO B is not in use");
        assert!(s.apply(r(&status(7_074_000, 0, 1))), "now it is");
        assert!(s.apply(r("FB00007074010")));
        assert!(!s.apply(r("FA00014000000")));
        assert_eq!(s.complete(), Some((7_074_010, false, 2)));
        // The last frame wins, whichever was asked for.
        let mut s = CatState::default();
        for f in [
            status(14_000_000, 0, 0),
            "FA00014000100".into(),
            status(14_000_200, 0, 0),
            "FA00014000300".into(),
        ] {
            s.apply(r(&f));
        }
        assert_eq!(s.freq_hz, Some(14_000_300));
    }

    #[test]
    fn s_meter_bars_are_hamlibs_dbs_relative_to_s9() {
        assert_eq!(strength_db(0), -54);
        assert_eq!(strength_db(15), 0, "S9");
        assert_eq!(strength_db(12), -12, "S7");
        assert_eq!(strength_db(20), 20, "S9+20");
        assert_eq!(strength_db(30), 60);
        assert_eq!(strength_db(99), 60, "clamped");
        assert_eq!(strength_db(1), -52);
        assert_eq!(strength_db(22), 28);
        for bars in 0..=30 {
            assert_eq!(strength_bars(strength_db(bars)), bars);
        }
    }
}
