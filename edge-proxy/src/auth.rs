//! Who may connect and what they may do.
//!
//! Tokens are shared secrets with a role. Commands (anything that changes
//! the station: `radio.*`, `link.*`) need the control role; the read role may
//! watch and publish notes. With no tokens configured, a client without one
//! gets the *anonymous role*: control when the proxy listens on loopback
//! only (the zero-config demo), read otherwise, so nobody on the LAN can key
//! the transmitter without a token. The Host and Origin checks keep other
//! web sites out, DNS rebinding included.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Read,
    Control,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    matches!(
        kind,
        "radio.state" | "radio.meter" | "meter.power" | "watchdog.unkeyed"
    ) || (kind.starts_with("link.") && kind != "link.reconnect")
}

/// Which credential a client presented: its identity for the purposes of
/// owning a `client_id` and its publish dedup state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    Anonymous,
    /// A stable fingerprint of the token's secret (the same on every proxy
    /// sharing the configuration), never the secret.
    Token(u64),
}

impl Credential {
    /// The name a client's publishes are deduplicated under: the bare
    /// `client_id` for anonymous clients (as before tokens existed), else
    /// namespaced by the token, so that another credential presenting the
    /// same `client_id` can never touch its dedup state.
    pub fn dedup_id(self, client_id: &str) -> String {
        match self {
            Credential::Anonymous => client_id.to_string(),
            Credential::Token(f) => format!("{client_id}@t{f:016x}"),
        }
    }
}

/// Resolves a client's token to a role and a credential; `None` means
/// refuse the client. `anonymous` is the role of a client without a token
/// when no tokens are configured.
pub fn role_for(
    tokens: &[TokenConfig],
    presented: Option<&str>,
    anonymous: Role,
) -> Option<(Role, Credential)> {
    if tokens.is_empty() {
        return Some((anonymous, Credential::Anonymous));
    }
    let presented = presented?;
    tokens
        .iter()
        .find(|t| constant_time_eq(t.secret.as_bytes(), presented.as_bytes()))
        .map(|t| (t.role, Credential::Token(fingerprint(&t.secret))))
}

/// FNV-1a over the secret: stable across processes (unlike `RandomState`),
/// and the fingerprint of one secret says nothing useful about another.
fn fingerprint(secret: &str) -> u64 {
    secret.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether a client-chosen name (`client_id`, `kind`) can be shown and
/// logged as it is: no control characters (a newline would forge a log line).
pub fn printable(name: &str) -> bool {
    !name.chars().any(char::is_control)
}

/// The host names the proxy answers for: a request whose `Host` is anything
/// else is refused, which is what stops DNS rebinding (a foreign page whose
/// name was made to resolve to the proxy controls both `Host` and `Origin`,
/// but not the name). Allowed: IP literals, `localhost` (and `*.localhost`),
/// this machine's hostname and `hostname.local`, and `allowed_hosts`
/// (exact names, or `*.example.org` for a domain's subdomains).
#[derive(Debug, Clone)]
pub struct Hosts {
    names: Vec<String>,
}

impl Hosts {
    pub fn new(configured: &[String], own_hostname: Option<&str>) -> Self {
        let mut names: Vec<String> = configured.iter().map(|h| h.to_ascii_lowercase()).collect();
        names.push("localhost".into());
        names.push("*.localhost".into());
        if let Some(own) = own_hostname.map(str::trim).filter(|h| !h.is_empty()) {
            let own = own.to_ascii_lowercase();
            names.push(format!("{own}.local"));
            names.push(own);
        }
        Hosts { names }
    }

    /// This machine's hostname, for [`Hosts::new`].
    pub fn own_hostname() -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok()
    }

    /// `host` as in a `Host` header or an origin: a name or IP, maybe a port.
    pub fn allows(&self, host: &str) -> bool {
        let name = strip_port(host).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        if name.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        self.names
            .iter()
            .any(|allowed| match allowed.strip_prefix("*.") {
                Some(domain) => name
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => allowed == name,
            })
    }
}

/// `name:port` → `name`, `[v6]:port` → `v6`.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Compares two secrets in constant time.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    constant_time_eq(a.as_bytes(), b.as_bytes())
}

/// Compares secrets without an early exit, so timing does not leak a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Origin check on the WebSocket upgrade. Allowed: no Origin header
/// (native clients), an origin whose host is one the proxy answers for
/// ([`Hosts`]: never merely "the same as the `Host` header", which a
/// rebinding page controls), anything listed, or everything when the list
/// holds "*".
pub fn origin_allowed(origin: Option<&str>, hosts: &Hosts, allowed: &[String]) -> bool {
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
    origin != "null" && hosts.allows(origin_host)
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
        let role = |presented| role_for(&tokens, presented, Role::Control).map(|(r, _)| r);
        assert_eq!(role(Some("watcher-secret")), Some(Role::Read));
        assert_eq!(role(Some("operator-secret")), Some(Role::Control));
        assert_eq!(role(Some("operator-secreT")), None);
        assert_eq!(role(None), None);
        assert_eq!(
            role_for(&[], None, Role::Read),
            Some((Role::Read, Credential::Anonymous))
        );
        let (_, watcher) = role_for(&tokens, Some("watcher-secret"), Role::Read).unwrap();
        let (_, operator) = role_for(&tokens, Some("operator-secret"), Role::Read).unwrap();
        assert_ne!(watcher.dedup_id("dash"), operator.dedup_id("dash"));
        assert_eq!(Credential::Anonymous.dedup_id("dash"), "dash");
        assert!(!watcher.dedup_id("dash").contains("secret"));
    }

    #[test]
    fn hosts_refuse_rebinding_names() {
        let hosts = Hosts::new(
            &["shack.example.org".into(), "*.ham.test".into()],
            Some("raspberrypi\n"),
        );
        for ok in [
            "127.0.0.1:8080",
            "192.168.1.20",
            "[::1]:8080",
            "localhost:8080",
            "dash.localhost",
            "raspberrypi.local:8080",
            "RaspberryPi:8080",
            "shack.example.org",
            "pi.ham.test:80",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "evil.test:8080",
            "ham.test",
            "example.org",
            "raspberrypi.local.evil.test",
            "localhost.evil.test",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
    }

    #[test]
    fn printable_names() {
        assert!(printable("dash-1 ü"));
        assert!(!printable("dash\nEVENT_FORGED"));
        assert!(!printable("a\u{1b}[31m"));
    }

    #[test]
    fn origins() {
        let none: Vec<String> = vec![];
        let hosts = Hosts::new(&[], None);
        assert!(origin_allowed(None, &hosts, &none));
        assert!(origin_allowed(Some("http://127.0.0.1:8080"), &hosts, &none));
        assert!(!origin_allowed(Some("https://evil.example"), &hosts, &none));
        // A rebinding page: its origin is its own name, which is not ours.
        assert!(!origin_allowed(
            Some("http://evil.test:8080"),
            &hosts,
            &none
        ));
        let listed = vec!["https://shack.example".to_string()];
        assert!(origin_allowed(
            Some("https://shack.example"),
            &hosts,
            &listed
        ));
        assert!(origin_allowed(
            Some("https://anything"),
            &hosts,
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
