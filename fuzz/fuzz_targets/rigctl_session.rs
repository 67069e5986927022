//! Feeds arbitrary bytes to the rig port's sans-IO core as a program on the
//! network would: cut into lines by the bounded line buffer, each line
//! handled by a session (rigctl protocol) and the same bytes by the virtual
//! Kenwood port. Neither may panic; the line buffer must stay within its
//! limit; every answer must end in a newline (rigctl) or `;` (CAT).
//!
//! The core is included by path (it is `edge_proxy::rigcore`) so that the
//! fuzz build does not compile the whole proxy.
#![no_main]

#[path = "../../edge-proxy/src/rigport/core/mod.rs"]
#[allow(dead_code)]
mod rigcore;

use libfuzzer_sys::fuzz_target;
use rigcore::caps::Caps;
use rigcore::line::{Line, LineBuffer};
use rigcore::request::Level;
use rigcore::session::{Session, Step};
use rigcore::station::Station;
use rigcore::vcat::VirtualCat;

fuzz_target!(|data: &[u8]| {
    let mut station = Station::default();
    station.on_radio_state(Some(14_074_000), Some("USB"), Some(false));
    station.on_power(Some(5.0), Some(1.3));
    let caps = Caps::new(&[Level::Swr, Level::RfPowerMeterWatts], 2000);
    let control = data.first().is_some_and(|b| b & 1 == 1);
    let mut session = Session::new(control);
    let mut lines = LineBuffer::new(1024);
    let mut out = Vec::new();
    for chunk in data.chunks(97) {
        lines.push(chunk, &mut out);
        assert!(lines.pending() <= 1024);
    }
    for line in out {
        let Line::Text(text) = line else { break };
        match session.handle(&text, &station, &caps) {
            Step::Nothing => {}
            Step::Answer(a) | Step::Quit(a) | Step::Named(_, a) => assert!(a.ends_with(b"\n")),
            Step::Set(_, pending) => assert!(pending.finish(Err(-5)).ends_with(b"\n")),
        }
    }
    let mut cat = VirtualCat::new(2000);
    let (answers, _) = cat.input(data, &station, 0);
    for a in answers {
        assert!(a.is_empty() || a.ends_with(b";"));
    }
});
