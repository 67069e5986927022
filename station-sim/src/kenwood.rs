//! Kenwood-style ASCII CAT (TS-2000 / TS-590 family): commands are ASCII,
//! terminated by `;`. A query is the bare command and is answered with the
//! command and its value; a set carries parameters and gets no answer; an
//! unknown or malformed command is answered with `?;`.
//!
//! Framing is `shared_protocol::cat::Framer` (shared with the proxy's
//! serial backend); [`Radio`] holds the state and answers. Checked against Hamlib's own TS-2000 driver
//! (`rigctl -m 2014`) in `tests/hamlib.rs`.
//!
//! Auto information (`AI1;`/`AI2;`, as a TS-2000 has it): the radio then
//! says what changed without being asked. A change on the front panel
//! ([`Radio::turn_vfo`], [`Radio::select_mode`], [`Radio::front_ptt`], a
//! tripped transmitter) is sent as `FA`, `MD` or `IF` with AI2 (`IF` for
//! TX/RX, which has no answer of its own) and always as `IF` with AI1 (the
//! older form); a set over CAT that changed something is echoed with an
//! `IF`. These go out in the order they happened, before the answer to any
//! later command ([`Radio::take_unsolicited`]). Hamlib's driver asks `AI;`
//! at open, turns it off (`AI0;`) and puts it back (`AI1;`) at close.

use std::sync::{Arc, Mutex};

use shared_protocol::cat::Framer;

use crate::pty::Device;

/// The radio on a serial line: CAT framing in front of a shared [`Radio`].
pub struct Cat {
    framer: Framer,
    radio: Arc<Mutex<Radio>>,
}

impl Cat {
    pub fn new(radio: Arc<Mutex<Radio>>) -> Self {
        Cat {
            framer: Framer::default(),
            radio,
        }
    }
}

impl Device for Cat {
    fn input(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.framer
            .push(bytes)
            .iter()
            .map(|cmd| {
                let Ok(mut r) = self.radio.lock() else {
                    return Vec::new();
                };
                // What the radio said by itself before this command came in
                // goes out first, then the answer, then a set's echo.
                let mut out = r.take_unsolicited();
                out.push_str(&r.handle(cmd).unwrap_or_default());
                out.push_str(&r.take_unsolicited());
                out.into_bytes()
            })
            .collect()
    }

    fn unsolicited(&mut self) -> Vec<u8> {
        self.radio
            .lock()
            .map(|mut r| r.take_unsolicited().into_bytes())
            .unwrap_or_default()
    }
}

/// What changed, for auto information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Freq,
    Mode,
    TxRx,
}

/// The simulated radio's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Radio {
    pub vfo_a_hz: u64,
    pub vfo_b_hz: u64,
    /// 1 LSB, 2 USB, 3 CW, 4 FM, 5 AM, 6 FSK, 7 CW-R, 9 FSK-R.
    pub mode: u8,
    pub tx: bool,
    pub power_w: u32,
    /// The signal on the frequency, on the S-meter's 0..=30 scale (S9 at 15).
    pub smeter: u32,
    /// The band noise, on the same scale: the meter never reads below it.
    pub noise_floor: u32,
    /// Whether the signal fades: each `SM0;` then reads a step of a slow
    /// QSB cycle around `smeter` (deterministic, so a test can predict it).
    pub fading: bool,
    /// How many times the meter was read (`SM0;`, receiving or not; the
    /// fading's phase).
    pub sm_reads: u64,
    pub ai: u8,
    /// The `ID` answer: 019 is a TS-2000.
    pub id: u16,
    /// Fault: keyed but no RF comes out (a failed amplifier, an open feed
    /// line). The power meter then reads zero while the radio says TX.
    pub pa_failed: bool,
    /// Auto-information frames not sent yet, oldest first (see the module
    /// doc); the line takes them with [`Radio::take_unsolicited`].
    pub unsolicited: Vec<String>,
}

impl Default for Radio {
    fn default() -> Self {
        Radio {
            vfo_a_hz: 14_074_000,
            vfo_b_hz: 7_074_000,
            mode: 2,
            tx: false,
            power_w: 100,
            smeter: 15,
            noise_floor: 4,
            fading: false,
            sm_reads: 0,
            ai: 0,
            id: 19,
            pa_failed: false,
            unsolicited: Vec::new(),
        }
    }
}

fn digits(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

impl Radio {
    /// Answers one command; `None` for a set (no answer).
    pub fn handle(&mut self, cmd: &str) -> Option<String> {
        let (name, arg) = cmd.split_at(cmd.len().min(2));
        let bad = || Some("?;".to_string());
        match (name, arg) {
            ("FA", "") => Some(format!("FA{:011};", self.vfo_a_hz)),
            ("FB", "") => Some(format!("FB{:011};", self.vfo_b_hz)),
            ("FA", hz) => match digits(hz) {
                Some(hz) if hz <= 99_999_999_999 => {
                    let changed = std::mem::replace(&mut self.vfo_a_hz, hz) != hz;
                    self.echo(changed);
                    None
                }
                _ => bad(),
            },
            ("FB", hz) => match digits(hz) {
                Some(hz) if hz <= 99_999_999_999 => {
                    self.vfo_b_hz = hz;
                    None
                }
                _ => bad(),
            },
            ("MD", "") => Some(format!("MD{};", self.mode)),
            ("MD", m) => match digits(m) {
                Some(m @ 1..=9) if m != 8 => {
                    let changed = std::mem::replace(&mut self.mode, m as u8) != m as u8;
                    self.echo(changed);
                    None
                }
                _ => bad(),
            },
            ("TX", "" | "0" | "1" | "2") => {
                let changed = !std::mem::replace(&mut self.tx, true);
                self.echo(changed);
                None
            }
            ("RX", "") => {
                let changed = std::mem::replace(&mut self.tx, false);
                self.echo(changed);
                None
            }
            ("IF", "") => Some(self.if_status()),
            ("PC", "") => Some(format!("PC{:03};", self.power_w)),
            ("PC", w) => match digits(w) {
                Some(w @ 5..=100) => {
                    self.power_w = w as u32;
                    None
                }
                _ => bad(),
            },
            // While transmitting the main meter shows RF output (0..30 for 0..100 W).
            ("SM", "0" | "") => Some(format!("SM0{:04};", {
                self.sm_reads += 1;
                if self.tx {
                    (self.rf_out_w() * 30.0 / 100.0).round() as u32
                } else {
                    self.s_meter()
                }
            })),
            ("RM", "") => Some(format!("RM1{:04};", if self.tx { 5 } else { 0 })),
            ("ID", "") => Some(format!("ID{:03};", self.id)),
            ("PS", "") => Some("PS1;".into()),
            ("PS", "1") => None,
            ("AI", "") => Some(format!("AI{};", self.ai)),
            ("AI", a) => match digits(a) {
                Some(a @ 0..=4) => {
                    self.ai = a as u8;
                    None
                }
                _ => bad(),
            },
            ("FR", "") => Some("FR0;".into()),
            ("FT", "") => Some("FT0;".into()),
            ("FR" | "FT", "0" | "1") => None,
            ("SP", "") => Some("SP0;".into()),
            _ => bad(),
        }
    }

    /// A set over CAT changed something: with auto information on, the
    /// radio echoes its status (`IF`).
    fn echo(&mut self, changed: bool) {
        if changed && self.ai > 0 {
            let status = self.if_status();
            self.unsolicited.push(status);
        }
    }

    /// A change made on the radio itself: with auto information on, it is
    /// reported unasked.
    fn report(&mut self, change: Change) {
        let frame = match (self.ai, change) {
            (0, _) => return,
            (1, _) | (_, Change::TxRx) => self.if_status(),
            (_, Change::Freq) => format!("FA{:011};", self.vfo_a_hz),
            (_, Change::Mode) => format!("MD{};", self.mode),
        };
        self.unsolicited.push(frame);
    }

    /// The front panel: VFO A's knob turned to `hz`.
    pub fn turn_vfo(&mut self, hz: u64) {
        if hz <= 99_999_999_999 && std::mem::replace(&mut self.vfo_a_hz, hz) != hz {
            self.report(Change::Freq);
        }
    }

    /// The front panel: a mode key (1 LSB, 2 USB, 3 CW, ... as `MD`).
    pub fn select_mode(&mut self, mode: u8) {
        if matches!(mode, 1..=7 | 9) && std::mem::replace(&mut self.mode, mode) != mode {
            self.report(Change::Mode);
        }
    }

    /// The front panel's (or a foot switch's) PTT.
    pub fn front_ptt(&mut self, tx: bool) {
        if std::mem::replace(&mut self.tx, tx) != tx {
            self.report(Change::TxRx);
        }
    }

    /// The transmitter trips: the radio falls back to receive by itself
    /// (and says so in AI mode, like any change of TX/RX).
    pub fn trip(&mut self) {
        self.front_ptt(false);
    }

    /// The auto-information frames to send now, in the order they arose.
    pub fn take_unsolicited(&mut self) -> String {
        std::mem::take(&mut self.unsolicited).concat()
    }

    /// The receive S-meter reading (0..=30): the signal, fading when asked
    /// (a step per reading taken), never under the noise floor.
    pub fn s_meter(&self) -> u32 {
        /// One QSB cycle, in bars around the signal.
        const QSB: [i32; 12] = [0, 1, 2, 3, 2, 1, 0, -1, -3, -4, -3, -1];
        let fade = if self.fading {
            QSB[(self.sm_reads % QSB.len() as u64) as usize]
        } else {
            0
        };
        let signal = (self.smeter as i32 + fade).clamp(0, 30) as u32;
        signal.max(self.noise_floor).min(30)
    }

    /// Forward power leaving the radio, in watts: the power setting while
    /// keyed, nothing otherwise or with a failed amplifier.
    pub fn rf_out_w(&self) -> f64 {
        if self.tx && !self.pa_failed {
            f64::from(self.power_w)
        } else {
            0.0
        }
    }

    /// `IF;`: 38 characters, the TX/RX flag at index 28 (1 = TX). The layout
    /// is the one Hamlib's Kenwood backend parses:
    /// `IF` freq(11) step(4) rit(+5) rit_on xit_on 0 mem(2) tx mode vfo scan split tone tone_no(2) 0 `;`
    pub fn if_status(&self) -> String {
        format!(
            "IF{:011}{:04}+{:05}{}{}{}{:02}{}{}{}{}{}{}{:02}{};",
            self.vfo_a_hz,
            0,
            0,
            0,
            0,
            0,
            0,
            u8::from(self.tx),
            self.mode,
            0,
            0,
            0,
            0,
            0,
            0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_sets() {
        let mut r = Radio::default();
        assert_eq!(r.handle("FA").as_deref(), Some("FA00014074000;"));
        assert_eq!(r.handle("FA00007074000"), None);
        assert_eq!(r.vfo_a_hz, 7_074_000);
        assert_eq!(r.handle("MD3"), None);
        assert_eq!(r.handle("MD").as_deref(), Some("MD3;"));
        assert_eq!(r.handle("ID").as_deref(), Some("ID019;"));
        assert_eq!(r.handle("TX"), None);
        let status = r.handle("IF").unwrap();
        assert_eq!(status.len(), 38);
        assert_eq!(&status[28..29], "1", "TX flag at index 28: {status}");
        assert_eq!(r.handle("RX"), None);
        assert_eq!(&r.handle("IF").unwrap()[28..29], "0");
        assert_eq!(r.handle("ZZ").as_deref(), Some("?;"));
        assert_eq!(r.handle("FAabc").as_deref(), Some("?;"));
        assert_eq!(r.handle("MD8").as_deref(), Some("?;"));
    }

    #[test]
    fn auto_information_reports_changes_as_a_ts2000_does() {
        let mut r = Radio::default();
        r.turn_vfo(7_000_000);
        assert_eq!(r.take_unsolicited(), "", "AI0: nothing unasked");
        assert_eq!(r.handle("AI2"), None);
        r.turn_vfo(7_000_010);
        r.select_mode(3);
        r.front_ptt(true);
        let status = r.if_status();
        assert_eq!(
            r.take_unsolicited(),
            format!("FA00007000010;MD3;{status}"),
            "AI2: each change as its own answer, TX/RX as IF"
        );
        r.turn_vfo(7_000_010);
        assert_eq!(r.take_unsolicited(), "", "no change, nothing said");
        assert_eq!(r.handle("FA00014074000"), None);
        assert_eq!(
            r.take_unsolicited(),
            r.if_status(),
            "a CAT set that changed something is echoed with IF"
        );
        assert_eq!(r.handle("FA00014074000"), None);
        assert_eq!(r.take_unsolicited(), "", "one that changed nothing is not");
        assert_eq!(r.handle("AI1"), None);
        r.turn_vfo(14_074_100);
        assert_eq!(r.take_unsolicited(), r.if_status(), "AI1: always IF");
        assert_eq!(r.handle("AI").as_deref(), Some("AI1;"));
    }

    #[test]
    fn pushes_go_out_before_the_answer_to_a_later_command() {
        let radio = Arc::new(Mutex::new(Radio {
            ai: 2,
            ..Radio::default()
        }));
        let mut cat = Cat::new(radio.clone());
        radio.lock().unwrap().turn_vfo(7_074_000);
        assert_eq!(
            cat.input(b"FA;"),
            [b"FA00007074000;FA00007074000;".to_vec()],
            "the push, then the answer"
        );
        radio.lock().unwrap().turn_vfo(7_074_010);
        assert_eq!(cat.unsolicited(), b"FA00007074010;");
        assert!(cat.unsolicited().is_empty(), "sent once");
    }

    #[test]
    fn the_s_meter_reads_the_signal_over_the_noise_and_fades() {
        let mut r = Radio::default();
        assert_eq!(r.handle("SM0").as_deref(), Some("SM00015;"), "S9");
        r.smeter = 0;
        assert_eq!(
            r.handle("SM0").as_deref(),
            Some("SM00004;"),
            "the noise floor"
        );
        r.smeter = 12;
        r.fading = true;
        let readings: Vec<String> = (0..12).filter_map(|_| r.handle("SM0")).collect();
        let distinct: std::collections::BTreeSet<_> = readings.iter().collect();
        assert!(distinct.len() > 3, "it varies: {readings:?}");
        r.handle("TX");
        assert_eq!(
            r.handle("SM0").as_deref(),
            Some("SM00030;"),
            "keyed: RF out"
        );
    }
}
