//! A Telepost LP-100A wattmeter: answers each poll byte `P` with a 43-byte
//! reply (`shared_protocol::meter`), reading the forward power of the radio
//! it is connected to, with the small jitter of a real meter.

use std::sync::{Arc, Mutex};

use shared_protocol::meter::{format_lp100, LP100_POLL};

use crate::kenwood::Radio;
use crate::pty::Device;

pub struct Lp100 {
    radio: Arc<Mutex<Radio>>,
    rng: fastrand::Rng,
}

impl Lp100 {
    pub fn new(radio: Arc<Mutex<Radio>>) -> Self {
        Lp100 {
            radio,
            rng: fastrand::Rng::new(),
        }
    }

    /// The reply to one poll.
    pub fn reply(&mut self) -> String {
        let out = self.radio.lock().map(|r| r.rf_out_w()).unwrap_or(0.0);
        let watts = if out > 0.0 {
            out * (0.97 + self.rng.f64() * 0.04)
        } else {
            0.0
        };
        format_lp100(watts, 1.1 + self.rng.f64() * 0.1)
    }
}

impl Device for Lp100 {
    fn input(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .iter()
            .filter(|&&b| b == LP100_POLL)
            .map(|_| self.reply().into_bytes())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::meter::parse_lp100;

    #[test]
    fn follows_the_radio_s_output() {
        let radio = Arc::new(Mutex::new(Radio::default()));
        let mut meter = Lp100::new(radio.clone());
        let read = |m: &mut Lp100| parse_lp100(m.reply().as_bytes()).unwrap().watts;
        assert_eq!(read(&mut meter), 0.0);
        radio.lock().unwrap().tx = true;
        let w = read(&mut meter);
        assert!((96.0..=102.0).contains(&w), "{w}");
        radio.lock().unwrap().pa_failed = true;
        assert_eq!(read(&mut meter), 0.0, "keyed, but nothing comes out");
        assert_eq!(meter.input(b"PxP").len(), 2, "one reply per poll byte");
    }
}
