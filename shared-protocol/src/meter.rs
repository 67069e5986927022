//! The Telepost LP-100A wattmeter's serial protocol (power-meter side).
//!
//! The meter is polled with the single byte `P` (no terminator) at 115200 8N1
//! and replies with 43 ASCII characters, for example
//!
//! ```text
//! ;0100.00,046.9,087.5,3,EA4K  ,2,1,-2.3,1.15
//! ```
//!
//! complete when it starts with `;` and has 43 characters; fields are split on
//! commas. The first is the forward power in watts with two decimals (so the
//! 0.1 W zero-power threshold is representable) and the last is the SWR.
//! That reading of the reply follows the open-source KMeter client for the
//! LP-100A (see `docs/PROTOCOL.md`, "Hardware protocols"); the middle fields
//! (peak and average power, alarm and range settings, the callsign banner)
//! are carried through but not interpreted.
//!
//! [`Lp100Framer`] finds replies in a byte stream and resynchronises after
//! line noise; [`parse_lp100`] turns one into a [`MeterReading`] or a typed
//! error; [`format_lp100`] is the inverse, for simulators and tests.

/// The poll byte.
pub const LP100_POLL: u8 = b'P';
/// Length of a reply, the leading `;` included.
pub const LP100_REPLY_LEN: usize = 43;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterReading {
    /// Forward power, watts.
    pub watts: f64,
    /// Standing-wave ratio (1.0 = perfect match).
    pub swr: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeterError {
    #[error("an LP-100A reply is {LP100_REPLY_LEN} characters, this one is {0}")]
    Length(usize),
    #[error("an LP-100A reply starts with ';'")]
    Start,
    #[error("an LP-100A reply has 9 comma-separated fields, this one has {0}")]
    Fields(usize),
    #[error("the LP-100A's {0} field is not a number")]
    Number(&'static str),
    #[error("the LP-100A reported an impossible {0}")]
    Range(&'static str),
}

fn number(field: &str, name: &'static str) -> Result<f64, MeterError> {
    field
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or(MeterError::Number(name))
}

/// Parses one complete reply.
pub fn parse_lp100(reply: &[u8]) -> Result<MeterReading, MeterError> {
    if reply.len() != LP100_REPLY_LEN {
        return Err(MeterError::Length(reply.len()));
    }
    let text = std::str::from_utf8(reply).map_err(|_| MeterError::Number("power"))?;
    let body = text.strip_prefix(';').ok_or(MeterError::Start)?;
    let fields: Vec<&str> = body.split(',').collect();
    if fields.len() != 9 {
        return Err(MeterError::Fields(fields.len()));
    }
    let watts = number(fields[0], "power")?;
    let swr = number(fields[8], "SWR")?;
    if !(0.0..=9_999.99).contains(&watts) {
        return Err(MeterError::Range("power"));
    }
    if swr < 1.0 {
        return Err(MeterError::Range("SWR"));
    }
    Ok(MeterReading { watts, swr })
}

/// Formats a reply as the meter sends it (used by the simulator).
pub fn format_lp100(watts: f64, swr: f64) -> String {
    let watts = watts.clamp(0.0, 9_999.99);
    let swr = swr.clamp(1.0, 9.99);
    // The middle fields are five characters wide: keep them so, or the
    // reply would not be 43 characters.
    let (a, b) = ((watts * 0.5).min(999.9), (watts * 0.9).min(999.9));
    format!(";{watts:07.2},{a:05.1},{b:05.1},3,SIM   ,2,1,-2.3,{swr:.2}")
}

/// Cuts LP-100A replies out of a byte stream. Bytes before a `;` are line
/// noise and skipped; a reply interrupted by a new `;` is dropped and the new
/// one started, so one torn reply costs one reading, never the stream.
#[derive(Debug, Default)]
pub struct Lp100Framer {
    buf: Vec<u8>,
    /// Bytes thrown away while resynchronising.
    pub discarded: u64,
}

impl Lp100Framer {
    /// Feeds bytes; returns the complete replies.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b';' {
                self.discarded += self.buf.len() as u64;
                self.buf.clear();
                self.buf.push(b);
            } else if self.buf.is_empty() {
                self.discarded += 1;
            } else {
                self.buf.push(b);
                if self.buf.len() == LP100_REPLY_LEN {
                    out.push(std::mem::take(&mut self.buf));
                }
            }
        }
        out
    }

    /// A reply has started and not finished: if the line now stays quiet,
    /// it was torn.
    pub fn partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Forgets a partial reply (after a timeout).
    pub fn reset(&mut self) {
        self.discarded += self.buf.len() as u64;
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let r = parse_lp100(b";0000.00,046.9,087.5,3,EA4K  ,2,1,-2.3,1.00").unwrap();
        assert_eq!(
            r,
            MeterReading {
                watts: 0.0,
                swr: 1.0
            }
        );
        let r = parse_lp100(format_lp100(99.87, 1.23).as_bytes()).unwrap();
        assert_eq!(
            r,
            MeterReading {
                watts: 99.87,
                swr: 1.23
            }
        );
        assert_eq!(format_lp100(0.1, 1.0).len(), LP100_REPLY_LEN);
    }

    #[test]
    fn bad_replies_are_typed_errors() {
        assert_eq!(parse_lp100(b";0000.00"), Err(MeterError::Length(8)));
        let mut r = format_lp100(5.0, 1.5).into_bytes();
        r[0] = b'x';
        assert_eq!(parse_lp100(&r), Err(MeterError::Start));
        let mut r = format_lp100(5.0, 1.5).into_bytes();
        r[2] = b'z';
        assert_eq!(parse_lp100(&r), Err(MeterError::Number("power")));
        let mut r = format_lp100(5.0, 1.5).into_bytes();
        r[8] = b'.';
        assert_eq!(parse_lp100(&r), Err(MeterError::Fields(8)));
        let mut r = format_lp100(5.0, 1.5).into_bytes();
        r[39] = b'0';
        assert_eq!(parse_lp100(&r), Err(MeterError::Range("SWR")));
        assert!(parse_lp100(&[0xff; LP100_REPLY_LEN]).is_err());
    }

    #[test]
    fn the_framer_resynchronises_after_noise_and_torn_replies() {
        let good = format_lp100(100.0, 1.1);
        let mut f = Lp100Framer::default();
        let mut stream = b"\x00\xffjunk".to_vec();
        stream.extend_from_slice(&good.as_bytes()[..20]); // torn...
        stream.extend_from_slice(good.as_bytes()); // ...then a whole one
        let mut replies = Vec::new();
        for chunk in stream.chunks(7) {
            replies.extend(f.push(chunk));
        }
        assert_eq!(replies, vec![good.as_bytes().to_vec()]);
        assert_eq!(f.discarded, 6 + 20);
        assert!(!f.partial());
        f.push(b";0001");
        assert!(f.partial());
        f.reset();
        assert!(!f.partial());
    }
}
