//! Kinds that are logged and delivered but never part of the station state
//! (`stateless_kinds`): chat lines, notes, anything whose *last* value means
//! nothing to a dashboard that opens later. They are not kept as last values,
//! never in a `Snapshot`, and do not count toward `max_state_kinds` or
//! `max_state_bytes`, so an application can publish many of them without
//! filling the state.
//!
//! Decided by the operator's configuration where a publish enters, not by a
//! flag in the publish frame: the browser package has no room for another
//! field and send option, and what the state holds is the operator's call.

/// Prefixes of the kinds the proxy itself writes or acts on (the radio, the
/// power meter, the hardware links, the TX watchdog): always part of the
/// snapshot, whatever the configuration says, so a new dashboard always
/// learns the frequency, PTT state, power and link health at once.
pub const STATION_KIND_PREFIXES: &[&str] = &["radio.", "meter.", "link.", "watchdog."];

/// Whether `kind` is one of the station's own kinds.
pub fn is_station_kind(kind: &str) -> bool {
    STATION_KIND_PREFIXES.iter().any(|p| kind.starts_with(p))
}

/// A pattern of `stateless_kinds` that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("stateless_kinds: {pattern:?} {why} (use an exact kind such as \"note\" or a prefix such as \"chat.*\")")]
pub struct PatternError {
    pub pattern: String,
    pub why: &'static str,
}

/// The configured `stateless_kinds`: exact kinds (`"note"`) and prefixes
/// (`"chat.*"` matches `chat.` and everything under it, `"*"` every kind).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatelessKinds {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl StatelessKinds {
    pub fn parse(patterns: &[String]) -> Result<Self, PatternError> {
        let mut kinds = StatelessKinds::default();
        for pattern in patterns {
            let error = |why| PatternError {
                pattern: pattern.clone(),
                why,
            };
            if pattern.is_empty() {
                return Err(error("is empty"));
            }
            match pattern.strip_suffix('*') {
                Some(prefix) if prefix.contains('*') => {
                    return Err(error("has a '*' that is not at its end"))
                }
                Some(prefix) => kinds.prefixes.push(prefix.to_string()),
                None if pattern.contains('*') => {
                    return Err(error("has a '*' that is not at its end"))
                }
                None => kinds.exact.push(pattern.clone()),
            }
        }
        Ok(kinds)
    }

    /// Whether events of `kind` stay out of the state. Never true for the
    /// station's own kinds.
    pub fn matches(&self, kind: &str) -> bool {
        !is_station_kind(kind)
            && (self.exact.iter().any(|k| k == kind)
                || self.prefixes.iter().any(|p| kind.starts_with(p.as_str())))
    }

    /// Whether some station kind was named (it stays in the state anyway),
    /// for a warning at start.
    pub fn names_station_kinds(patterns: &[String]) -> Vec<&str> {
        patterns
            .iter()
            .map(String::as_str)
            .filter(|p| {
                let stem = p.strip_suffix('*').unwrap_or(p);
                is_station_kind(stem) || STATION_KIND_PREFIXES.iter().any(|s| s.starts_with(stem))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(patterns: &[&str]) -> StatelessKinds {
        StatelessKinds::parse(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_kinds_and_prefixes() {
        let k = kinds(&["note", "chat.*"]);
        assert!(k.matches("note"));
        assert!(!k.matches("notes"), "exact means exact");
        assert!(k.matches("chat.line"));
        assert!(k.matches("chat."));
        assert!(!k.matches("chat"), "the prefix includes its dot");
        assert!(!k.matches("spot"));
        assert!(!StatelessKinds::default().matches("note"));
    }

    #[test]
    fn station_kinds_are_always_in_the_state() {
        let k = kinds(&["*", "radio.*", "meter.power"]);
        assert!(k.matches("note"));
        for station in [
            "radio.state",
            "radio.ptt",
            "meter.power",
            "link.radio",
            "watchdog.unkeyed",
        ] {
            assert!(!k.matches(station), "{station}");
        }
        assert_eq!(
            StatelessKinds::names_station_kinds(&["*".into(), "radio.*".into(), "note".into()]),
            ["*", "radio.*"]
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a*b", "*.x", "a**"] {
            assert!(
                StatelessKinds::parse(&[bad.to_string()]).is_err(),
                "{bad:?}"
            );
        }
    }
}
