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
}
