//! Who may connect and what they may do.
//!
//! Tokens are shared secrets with a role. Commands (anything that changes
//! the station: `radio.*`, `link.*`) need the control role; the read role may
//! watch and publish notes. With no tokens configured every client has the
//! control role, and the Origin check is what keeps other web sites out.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Read,
    Control,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenConfig {
    pub secret: String,
    pub role: Role,
}

/// Kinds that act on the station and need the control role.
pub fn is_command_kind(kind: &str) -> bool {
    kind.starts_with("radio.") || kind.starts_with("link.")
}

/// Kinds only the proxy writes: what the hardware reported. A client
/// publishing one would be forging the station's state.
pub fn is_reserved_kind(kind: &str) -> bool {
    matches!(kind, "radio.state" | "meter.power" | "watchdog.unkeyed")
        || (kind.starts_with("link.") && kind != "link.reconnect")
}

/// Resolves a client's token to a role; `None` means refuse the client.
pub fn role_for(tokens: &[TokenConfig], presented: Option<&str>) -> Option<Role> {
    if tokens.is_empty() {
        return Some(Role::Control);
    }
    let presented = presented?;
    tokens
        .iter()
        .find(|t| constant_time_eq(t.secret.as_bytes(), presented.as_bytes()))
        .map(|t| t.role)
}

/// Compares secrets without an early exit, so timing does not leak a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Origin check on the WebSocket upgrade. Allowed: no Origin header
/// (native clients), the proxy's own origin (same host), anything listed,
/// or everything when the list holds "*".
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        let tokens = vec![
            TokenConfig {
                secret: "watcher-secret".into(),
                role: Role::Read,
            },
            TokenConfig {
                secret: "operator-secret".into(),
                role: Role::Control,
            },
        ];
        assert_eq!(role_for(&tokens, Some("watcher-secret")), Some(Role::Read));
        assert_eq!(
            role_for(&tokens, Some("operator-secret")),
            Some(Role::Control)
        );
        assert_eq!(role_for(&tokens, Some("operator-secreT")), None);
        assert_eq!(role_for(&tokens, None), None);
        assert_eq!(role_for(&[], None), Some(Role::Control));
    }

    #[test]
    fn origins() {
        let none: Vec<String> = vec![];
        assert!(origin_allowed(None, Some("127.0.0.1:8080"), &none));
        assert!(origin_allowed(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            &none
        ));
        assert!(!origin_allowed(
            Some("https://evil.example"),
            Some("127.0.0.1:8080"),
            &none
        ));
        let listed = vec!["https://shack.example".to_string()];
        assert!(origin_allowed(
            Some("https://shack.example"),
            Some("127.0.0.1:8080"),
            &listed
        ));
        assert!(origin_allowed(
            Some("https://anything"),
            None,
            &["*".to_string()]
        ));
    }

    #[test]
    fn commands() {
        assert!(is_command_kind("radio.set_freq"));
        assert!(is_command_kind("link.reconnect"));
        assert!(!is_command_kind("note"));
    }
}
