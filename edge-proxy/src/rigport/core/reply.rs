//! Answers in rigctld's format (Hamlib 4.5, `tests/rigctl_parse.c`):
//!
//! - a get answers its values, one per line, and no `RPRT` line;
//! - a set answers `RPRT 0`; any failure answers `RPRT -n` alone;
//! - extended (`+`): a header `name: args`, then `Label: value` lines, then
//!   `RPRT n`; with `;`/`|`/`,` the parts are joined by that character and
//!   the `RPRT` line ends the answer.

/// What a command produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A get's values with their labels (`("Frequency", "14074000")`).
    Values(Vec<(&'static str, String)>),
    /// A get whose value is printed without a label even in the extended
    /// form (rigctld's `get_level`, `chk_vfo`).
    Bare(String),
    /// A set's result (0, or a negative code).
    Status(i32),
    /// A block printed as it is (`\dump_state`).
    Block(String),
}

/// Renders the answer to `out`. `header` is `(name, args)` for the
/// extended form; `rprt` whether an extended answer ends in `RPRT 0`
/// (rigctld leaves it off `\chk_vfo`).
pub fn render(sep: Option<u8>, header: (&str, &str), body: &Body, rprt: bool, out: &mut Vec<u8>) {
    let Some(sep) = sep else {
        match body {
            Body::Values(values) => {
                for (_, v) in values {
                    out.extend_from_slice(v.as_bytes());
                    out.push(b'\n');
                }
            }
            Body::Bare(v) => {
                out.extend_from_slice(v.as_bytes());
                out.push(b'\n');
            }
            Body::Status(code) => out.extend_from_slice(format!("RPRT {code}\n").as_bytes()),
            Body::Block(text) => out.extend_from_slice(text.as_bytes()),
        }
        return;
    };
    let (name, args) = header;
    if rprt && !name.is_empty() {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        if !args.is_empty() {
            out.push(b' ');
            out.extend_from_slice(args.as_bytes());
        }
        out.push(sep);
    }
    let code = match body {
        Body::Values(values) => {
            for (label, v) in values {
                out.extend_from_slice(format!("{label}: {v}").as_bytes());
                out.push(sep);
            }
            0
        }
        Body::Bare(v) => {
            out.extend_from_slice(v.as_bytes());
            out.push(sep);
            0
        }
        Body::Status(code) => *code,
        Body::Block(text) => {
            out.extend_from_slice(text.as_bytes());
            0
        }
    };
    if rprt || code != 0 {
        out.extend_from_slice(format!("RPRT {code}\n").as_bytes());
    } else if sep != b'\n' {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sep: Option<u8>, header: (&str, &str), body: Body) -> String {
        let mut out = Vec::new();
        render(sep, header, &body, true, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_answers_as_rigctld_gives_them() {
        let freq = Body::Values(vec![("Frequency", "145000000".into())]);
        assert_eq!(text(None, ("get_freq", ""), freq.clone()), "145000000\n");
        let mode = Body::Values(vec![("Mode", "FM".into()), ("Passband", "15000".into())]);
        assert_eq!(text(None, ("get_mode", ""), mode.clone()), "FM\n15000\n");
        assert_eq!(
            text(None, ("set_freq", "7074000"), Body::Status(0)),
            "RPRT 0\n"
        );
        assert_eq!(text(None, ("set_freq", "x"), Body::Status(-1)), "RPRT -1\n");
        assert_eq!(
            text(Some(b'\n'), ("get_freq", ""), freq),
            "get_freq:\nFrequency: 145000000\nRPRT 0\n"
        );
        assert_eq!(
            text(Some(b'\n'), ("set_freq", "14074000"), Body::Status(0)),
            "set_freq: 14074000\nRPRT 0\n"
        );
        assert_eq!(
            text(
                Some(b'\n'),
                ("get_level", "RFPOWER_METER_WATTS"),
                Body::Bare("54.687500".into())
            ),
            "get_level: RFPOWER_METER_WATTS\n54.687500\nRPRT 0\n"
        );
        assert_eq!(
            text(Some(b';'), ("get_mode", ""), mode),
            "get_mode:;Mode: FM;Passband: 15000;RPRT 0\n"
        );
        assert_eq!(
            text(Some(b'\n'), ("set_ptt", "1"), Body::Status(-9)),
            "set_ptt: 1\nRPRT -9\n"
        );
    }
}
