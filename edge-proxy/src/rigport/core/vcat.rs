//! The virtual Kenwood serial port (`virtual_cat`): a TS-2000 as Hamlib's
//! TS-2000 driver and serial-only loggers (N1MM ...) expect it, answering
//! from the proxy's station state and turning the program's sets into the
//! same commands as the rig port's.
//!
//! The CAT dialect is `station_sim::kenwood::Radio`'s, the one Hamlib's own
//! driver (`rigctl -m 2014`) is tested against: a local copy of it is kept
//! in step with the station before each command, its answer is sent, and a
//! change it makes to VFO A or the mode (or `TX`/`RX`) becomes a [`Set`].
//! A set value is shown back (a driver reads `FA;` right after setting it)
//! until the station confirms it or `hold_ms` passes, after which the
//! station's own value shows again: a refused set does not stay on screen.

use shared_protocol::cat::{mode_digit, mode_name, Framer};
use shared_protocol::Millis;
use station_sim::kenwood::Radio;

use super::session::Set;
use super::station::Station;

#[derive(Debug)]
pub struct VirtualCat {
    framer: Framer,
    radio: Radio,
    hold_ms: u64,
    freq: Option<(u64, Millis)>,
    mode: Option<(u8, Millis)>,
    tx: Option<(bool, Millis)>,
}

/// Keeps a set value until the station shows it or its time is up.
fn settle<T: PartialEq + Copy>(pending: &mut Option<(T, Millis)>, actual: Option<T>, now: Millis) {
    if let Some((want, until)) = *pending {
        if actual == Some(want) || now >= until {
            *pending = None;
        }
    }
}

impl VirtualCat {
    pub fn new(hold_ms: u64) -> Self {
        let radio = Radio {
            smeter: 0,
            noise_floor: 0,
            ..Radio::default()
        };
        VirtualCat {
            framer: Framer::default(),
            radio,
            hold_ms,
            freq: None,
            mode: None,
            tx: None,
        }
    }

    /// Brings the local copy in step with the station (but for values a
    /// set is still waiting on).
    fn refresh(&mut self, station: &Station, now: Millis) {
        let digit = station.mode.as_deref().and_then(mode_digit);
        settle(&mut self.freq, station.freq_hz, now);
        settle(&mut self.mode, digit, now);
        settle(&mut self.tx, Some(station.ptt), now);
        match (self.freq, station.freq_hz) {
            (Some((hz, _)), _) | (None, Some(hz)) => self.radio.vfo_a_hz = hz,
            _ => {}
        }
        match (self.mode, digit) {
            (Some((d, _)), _) | (None, Some(d)) => self.radio.mode = d,
            _ => {}
        }
        self.radio.tx = self.tx.map_or(station.ptt, |(on, _)| on);
        // The real radio's S-meter, as the proxy last read it.
        self.radio.smeter = station
            .strength_db
            .map_or(0, |db| u32::from(shared_protocol::cat::strength_bars(db)));
    }

    /// Bytes from the program: one answer per complete command (empty for
    /// a set, which a Kenwood radio does not answer) and the sets to carry out.
    pub fn input(
        &mut self,
        bytes: &[u8],
        station: &Station,
        now: Millis,
    ) -> (Vec<Vec<u8>>, Vec<Set>) {
        let mut answers = Vec::new();
        let mut sets = Vec::new();
        for command in self.framer.push(bytes) {
            self.refresh(station, now);
            let until = now + self.hold_ms;
            let (name, arg) = command.split_at(command.len().min(2));
            let answer = match (name, arg) {
                ("TX", "" | "0" | "1" | "2") => {
                    self.tx = Some((true, until));
                    sets.push(Set::Ptt(true));
                    None
                }
                ("RX", "") => {
                    self.tx = Some((false, until));
                    sets.push(Set::Ptt(false));
                    None
                }
                // Not offered: the program must not believe it took.
                ("FB" | "PC", a) if !a.is_empty() => Some("?;".to_string()),
                _ => {
                    let before = (self.radio.vfo_a_hz, self.radio.mode);
                    let answer = self.radio.handle(&command);
                    // The virtual port sends no auto information (the
                    // simulator's echoes of sets after an `AI2;`): dropped,
                    // so they cannot pile up.
                    self.radio.unsolicited.clear();
                    if self.radio.vfo_a_hz != before.0 {
                        self.freq = Some((self.radio.vfo_a_hz, until));
                        sets.push(Set::Freq(self.radio.vfo_a_hz));
                    }
                    if self.radio.mode != before.1 {
                        self.mode = Some((self.radio.mode, until));
                        sets.push(Set::Mode {
                            mode: mode_name(self.radio.mode),
                            data: false,
                        });
                    }
                    answer
                }
            };
            answers.push(answer.unwrap_or_default().into_bytes());
        }
        (answers, sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn station(hz: u64, mode: &str, ptt: bool) -> Station {
        let mut s = Station::default();
        s.on_radio_state(Some(hz), Some(mode), Some(ptt));
        s
    }

    fn say(cat: &mut VirtualCat, bytes: &str, s: &Station, now: Millis) -> (String, Vec<Set>) {
        let (answers, sets) = cat.input(bytes.as_bytes(), s, now);
        let text: Vec<String> = answers
            .into_iter()
            .map(|a| String::from_utf8(a).unwrap())
            .collect();
        (text.concat(), sets)
    }

    #[test]
    fn hamlibs_open_sequence_is_answered_from_the_station() {
        let mut cat = VirtualCat::new(2000);
        let s = station(7_074_000, "CW", false);
        let (text, sets) = say(&mut cat, "ID;PS;IF;AI;FA;FB;MD;", &s, 0);
        assert!(sets.is_empty());
        assert!(text.starts_with("ID019;PS1;IF00007074000"), "{text}");
        assert!(
            text.ends_with("AI0;FA00007074000;FB00007074000;MD3;"),
            "{text}"
        );
    }

    #[test]
    fn sets_become_commands_and_show_until_confirmed_or_expired() {
        let mut cat = VirtualCat::new(2000);
        let s = station(14_074_000, "USB", false);
        let (text, sets) = say(&mut cat, "FA00007074000;ID;FA;", &s, 0);
        assert_eq!(sets, [Set::Freq(7_074_000)]);
        assert_eq!(text, "ID019;FA00007074000;", "the set value shows at once");
        let (text, _) = say(&mut cat, "FA;", &s, 2_500);
        assert_eq!(
            text, "FA00014074000;",
            "never confirmed: the station's value"
        );
        let (_, sets) = say(&mut cat, "MD1;TX;", &s, 3_000);
        assert_eq!(
            sets,
            [
                Set::Mode {
                    mode: "LSB",
                    data: false
                },
                Set::Ptt(true)
            ]
        );
        let (text, _) = say(&mut cat, "IF;", &station(14_074_000, "LSB", true), 3_100);
        assert_eq!(&text[28..30], "11", "keyed, LSB: {text}");
        let (_, sets) = say(&mut cat, "RX;", &s, 3_200);
        assert_eq!(sets, [Set::Ptt(false)]);
    }

    #[test]
    fn what_is_not_offered_is_refused() {
        let mut cat = VirtualCat::new(2000);
        let s = station(14_074_000, "USB", false);
        let (text, sets) = say(&mut cat, "PC050;FB00007000000;ZZ;FAxyz;", &s, 0);
        assert_eq!(text, "?;?;?;?;");
        assert!(sets.is_empty());
    }
}
