//! Mode names: Hamlib's (what programs say) and the station's (the Kenwood
//! names the dashboards, the log and the radio link use: `USB`, `CW-R`,
//! `FSK` ...).
//!
//! A TS-2000 has no separate data mode on `MD`: data is sent in USB or LSB.
//! Programs such as WSJT-X ask for `PKTUSB` ("Data/Pkt" mode) and read the
//! mode back to check it took; answering `USB` would make them think the
//! radio refused. So `PKTUSB` is the radio in `USB` plus a note in the log
//! (`radio.set_mode {mode: "USB", data: true}`), and the mode reads back as
//! `PKTUSB` until the radio leaves `USB` or someone sets a plain mode.

/// Hamlib's `rmode_t` bits for the modes the station offers.
pub const RIG_MODE_AM: u64 = 1 << 0;
pub const RIG_MODE_CW: u64 = 1 << 1;
pub const RIG_MODE_USB: u64 = 1 << 2;
pub const RIG_MODE_LSB: u64 = 1 << 3;
pub const RIG_MODE_RTTY: u64 = 1 << 4;
pub const RIG_MODE_FM: u64 = 1 << 5;
pub const RIG_MODE_CWR: u64 = 1 << 7;
pub const RIG_MODE_RTTYR: u64 = 1 << 8;
pub const RIG_MODE_PKTLSB: u64 = 1 << 10;
pub const RIG_MODE_PKTUSB: u64 = 1 << 11;

/// `(Hamlib name, station name, data variant, Hamlib bit, passband Hz)`.
const TABLE: &[(&str, &str, bool, u64, u32)] = &[
    ("USB", "USB", false, RIG_MODE_USB, 2400),
    ("LSB", "LSB", false, RIG_MODE_LSB, 2400),
    ("CW", "CW", false, RIG_MODE_CW, 500),
    ("CWR", "CW-R", false, RIG_MODE_CWR, 500),
    ("RTTY", "FSK", false, RIG_MODE_RTTY, 500),
    ("RTTYR", "FSK-R", false, RIG_MODE_RTTYR, 500),
    ("AM", "AM", false, RIG_MODE_AM, 6000),
    ("FM", "FM", false, RIG_MODE_FM, 12000),
    ("PKTUSB", "USB", true, RIG_MODE_PKTUSB, 2400),
    ("PKTLSB", "LSB", true, RIG_MODE_PKTLSB, 2400),
];

/// Every mode offered, as Hamlib's mode mask.
pub fn all_modes() -> u64 {
    TABLE.iter().fold(0, |mask, m| mask | m.3)
}

/// A Hamlib mode name as `(station mode, data)`; `None` if the station
/// has no such mode. Case-sensitive, as Hamlib's `rig_parse_mode` is.
pub fn from_hamlib(name: &str) -> Option<(&'static str, bool)> {
    TABLE.iter().find(|m| m.0 == name).map(|m| (m.1, m.2))
}

/// The station's mode (and whether a program asked for its data variant)
/// as a Hamlib name, with the passband a program should expect.
pub fn to_hamlib(station: &str, data: bool) -> Option<(&'static str, u32)> {
    TABLE
        .iter()
        .find(|m| m.1.eq_ignore_ascii_case(station) && m.2 == data)
        .or_else(|| {
            TABLE
                .iter()
                .find(|m| m.1.eq_ignore_ascii_case(station) && !m.2)
        })
        .map(|m| (m.0, m.4))
}

/// Whether `station` has a data variant a program can ask for.
pub fn has_data_variant(station: &str) -> bool {
    TABLE
        .iter()
        .any(|m| m.2 && m.1.eq_ignore_ascii_case(station))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hamlib_mode_maps_there_and_back() {
        for (hamlib, _, _, _, _) in TABLE {
            let (station, data) = from_hamlib(hamlib).unwrap();
            assert_eq!(to_hamlib(station, data).unwrap().0, *hamlib);
        }
        assert_eq!(from_hamlib("PKTUSB"), Some(("USB", true)));
        assert_eq!(from_hamlib("CWR"), Some(("CW-R", false)));
        assert_eq!(to_hamlib("FSK-R", false).unwrap().0, "RTTYR");
        assert_eq!(
            to_hamlib("CW", true).unwrap().0,
            "CW",
            "no data variant: plain"
        );
        assert_eq!(from_hamlib("WFM"), None);
        assert_eq!(from_hamlib("usb"), None, "Hamlib's names are upper case");
        assert_eq!(to_hamlib("?", false), None);
    }

    #[test]
    fn the_mask_has_the_packet_modes() {
        let mask = all_modes();
        assert_ne!(mask & RIG_MODE_PKTUSB, 0);
        assert_ne!(mask & RIG_MODE_PKTLSB, 0);
        assert_eq!(mask, 0xdbf);
    }
}
