//! The station as every program on the rig port sees it: one copy, fed
//! from the log (the shell follows the log and calls these), so a read is
//! answered from memory and ten programs polling cost the radio nothing.

/// What is known of the station; `None` until the log has said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Station {
    pub freq_hz: Option<u64>,
    /// In the station's vocabulary (`USB`, `CW-R`, `FSK` ...).
    pub mode: Option<String>,
    /// The station mode in which a program asked for data (`PKTUSB` is
    /// `USB` with this set to `USB`); see [`super::modes`].
    pub data_mode: Option<String>,
    pub ptt: bool,
    /// The last forward-power reading, in watts.
    pub watts: Option<f64>,
    /// The last SWR reading (an LP-100A has one; a radio's own meter not).
    pub swr: Option<f64>,
    /// Signal strength relative to S9, in dB, when the log has it.
    pub strength_db: Option<i32>,
}

impl Station {
    /// A `radio.state` event: what the radio reported.
    pub fn on_radio_state(&mut self, freq_hz: Option<u64>, mode: Option<&str>, ptt: Option<bool>) {
        if let Some(hz) = freq_hz {
            self.freq_hz = Some(hz);
        }
        if let Some(mode) = mode {
            // The radio left the mode the data request was for.
            if self.data_mode.as_deref().is_some_and(|d| d != mode) {
                self.data_mode = None;
            }
            self.mode = Some(mode.to_string());
        }
        if let Some(ptt) = ptt {
            self.ptt = ptt;
        }
    }

    /// A `radio.set_mode` command (from anyone): whether it asked for data.
    pub fn on_set_mode(&mut self, mode: &str, data: bool) {
        self.data_mode =
            (data && super::modes::has_data_variant(mode)).then(|| mode.to_ascii_uppercase());
    }

    /// A `meter.power` reading.
    pub fn on_power(&mut self, watts: Option<f64>, swr: Option<f64>) {
        if let Some(w) = watts.filter(|w| w.is_finite()) {
            self.watts = Some(w);
        }
        if let Some(s) = swr.filter(|s| s.is_finite()) {
            self.swr = Some(s);
        }
    }

    /// Whether the data variant of the current mode is what was asked for.
    pub fn data(&self) -> bool {
        self.mode.is_some() && self.data_mode == self.mode
    }

    /// The mode as Hamlib names it, with its passband.
    pub fn hamlib_mode(&self) -> Option<(&'static str, u32)> {
        super::modes::to_hamlib(self.mode.as_deref()?, self.data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_variant_lasts_while_the_radio_stays_in_its_mode() {
        let mut s = Station::default();
        s.on_radio_state(Some(14_074_000), Some("USB"), Some(false));
        assert_eq!(s.hamlib_mode(), Some(("USB", 2400)));
        s.on_set_mode("USB", true);
        assert_eq!(s.hamlib_mode(), Some(("PKTUSB", 2400)));
        s.on_radio_state(None, Some("USB"), None);
        assert_eq!(s.hamlib_mode().unwrap().0, "PKTUSB", "still USB");
        s.on_radio_state(None, Some("CW"), None);
        assert_eq!(s.hamlib_mode().unwrap().0, "CW");
        s.on_radio_state(None, Some("USB"), None);
        assert_eq!(s.hamlib_mode().unwrap().0, "USB", "left USB: forgotten");
        s.on_set_mode("LSB", true);
        s.on_radio_state(None, Some("LSB"), None);
        assert_eq!(s.hamlib_mode().unwrap().0, "PKTLSB");
        s.on_set_mode("LSB", false);
        assert_eq!(s.hamlib_mode().unwrap().0, "LSB");
    }

    #[test]
    fn meter_readings_keep_the_last_finite_value() {
        let mut s = Station::default();
        s.on_power(Some(50.0), Some(1.2));
        s.on_power(Some(f64::NAN), None);
        assert_eq!((s.watts, s.swr), (Some(50.0), Some(1.2)));
    }
}
