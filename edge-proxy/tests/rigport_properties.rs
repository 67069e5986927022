//! Property tests of the rig port's sans-IO core: whatever a program sends,
//! every command line gets exactly one answer that a Hamlib client can read
//! (values, or `RPRT` with a negative code, never a positive one), memory
//! stays bounded, and the virtual Kenwood port never invents a set.

use edge_proxy::rigcore::caps::Caps;
use edge_proxy::rigcore::line::{Line, LineBuffer};
use edge_proxy::rigcore::request::Level;
use edge_proxy::rigcore::session::{Session, Set, Step};
use edge_proxy::rigcore::station::Station;
use edge_proxy::rigcore::vcat::VirtualCat;
use proptest::prelude::*;

fn station() -> Station {
    let mut s = Station::default();
    s.on_radio_state(Some(14_074_000), Some("USB"), Some(false));
    s.on_power(Some(0.0), Some(1.1));
    s
}

fn caps() -> Caps {
    Caps::new(&[Level::Swr, Level::RfPowerMeterWatts], 2000)
}

/// Lines that look like commands, and lines that do not.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[+;|,]?[a-zA-Z\\\\_]{1,3}( [A-Za-z0-9.\\-]{0,12}){0,3}".prop_map(String::into_bytes),
        prop::sample::select(vec![
            "f",
            "F 14074000",
            "m",
            "M PKTUSB -1",
            "t",
            "T 1",
            "T 0",
            "v",
            "s",
            "l SWR",
            "\\dump_state",
            "\\chk_vfo",
            "+f",
            ";m",
            "\\get_vfo_info VFOA",
            "q",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

/// Whether `answer` is something Hamlib's client reads as one answer: if it
/// has an `RPRT` line, that is the last line and its code is not positive.
fn well_formed(answer: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(answer) else {
        return false;
    };
    if !text.ends_with('\n') {
        return false;
    }
    let lines: Vec<&str> = text.lines().collect();
    match lines.iter().position(|l| l.starts_with("RPRT ")) {
        None => true,
        Some(at) => {
            at == lines.len() - 1 && lines[at][5..].parse::<i32>().is_ok_and(|code| code <= 0)
        }
    }
}

proptest! {
    #[test]
    fn every_line_gets_one_readable_answer(lines in proptest::collection::vec(line(), 1..40), control: bool) {
        let mut session = Session::new(control);
        for l in &lines {
            let blank = l.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'));
            match session.handle(l, &station(), &caps()) {
                Step::Nothing => prop_assert!(blank, "no answer to {:?}", String::from_utf8_lossy(l)),
                Step::Answer(a) | Step::Quit(a) | Step::Named(_, a) => {
                    prop_assert!(well_formed(&a), "{:?} -> {:?}", String::from_utf8_lossy(l), String::from_utf8_lossy(&a));
                }
                Step::Set(set, pending) => {
                    prop_assert!(control, "a read-only port handed out a set");
                    if let Set::Freq(hz) = set {
                        prop_assert!(hz > 0);
                    }
                    prop_assert!(well_formed(&pending.finish(Ok(()))));
                    prop_assert!(well_formed(&pending.finish(Err(-5))));
                }
            }
        }
    }

    #[test]
    fn the_line_buffer_never_holds_more_than_its_limit(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20), max in 1usize..200) {
        let mut buf = LineBuffer::new(max);
        let mut out = Vec::new();
        for c in &chunks {
            buf.push(c, &mut out);
            prop_assert!(buf.pending() <= max);
        }
        for l in &out {
            if let Line::Text(t) = l {
                prop_assert!(t.len() <= max && !t.contains(&b'\n'));
            }
        }
    }

    #[test]
    fn the_virtual_port_sets_only_what_a_command_asked_for(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut cat = VirtualCat::new(2000);
        let (answers, sets) = cat.input(&bytes, &station(), 0);
        let text = String::from_utf8_lossy(&bytes);
        for set in &sets {
            let asked = match set {
                Set::Freq(_) => text.contains("FA"),
                Set::Mode { .. } => text.contains("MD"),
                Set::Ptt(true) => text.contains("TX"),
                Set::Ptt(false) => text.contains("RX"),
            };
            prop_assert!(asked, "{set:?} from {text:?}");
        }
        for a in answers {
            prop_assert!(a.is_empty() || a.ends_with(b";"));
        }
    }
}
