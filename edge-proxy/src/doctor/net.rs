//! The network side: the proxy's own ports free to bind, and the servers it
//! depends on answering (NATS for a shared log, rigctld for that backend).
//! Every wait is bounded by [`TIMEOUT`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

use super::finding::Finding;
use edge_proxy::hardware::rigctld::Rigctld;

/// The longest any network check waits.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Whether `addr` can be bound now (`what`: "listen", "rigctl_listen").
pub fn port_free(what: &str, addr: SocketAddr) -> Finding {
    let check = format!("{what} {addr}");
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Finding::ok(check, "free to bind"),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Finding::fail(
            check,
            "already in use",
            format!(
                "stop what listens there (sudo ss -ltnp 'sport = :{}' names it; a running \
                 edge-proxy counts), or choose another port",
                addr.port()
            ),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Finding::fail(
            check,
            format!("may not be bound by this user ({e})"),
            "use a port above 1023, or give the service CAP_NET_BIND_SERVICE",
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => Finding::fail(
            check,
            format!("this machine has no such address ({e})"),
            "listen on an address of this machine, 0.0.0.0 or 127.0.0.1",
        ),
        Err(e) => Finding::fail(
            check,
            format!("cannot be bound: {e}"),
            "choose another address",
        ),
    }
}

/// `host:port` of each server in a NATS URL list
/// (`nats://user:pass@host:4222,nats://other`), credentials dropped.
pub fn nats_servers(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|one| {
            let rest = one.split_once("://").map_or(one, |(_, r)| r);
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            let host = host.trim_end_matches('/');
            if host
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                host.to_string()
            } else {
                format!("{host}:4222")
            }
        })
        .collect()
}

/// A NATS server answers with its `INFO` line (sent before any TLS).
pub async fn nats_server(server: &str) -> Result<String, String> {
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(server))
        .await
        .map_err(|_| format!("no connection within {TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    let mut reader = BufReader::new(stream);
    tokio::time::timeout(TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| format!("connected, but no INFO within {TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let info = line.strip_prefix("INFO ").ok_or_else(|| {
        format!(
            "connected, but it is not a NATS server (it said {:?})",
            line.trim_end()
        )
    })?;
    let info: serde_json::Value = serde_json::from_str(info.trim()).unwrap_or_default();
    let mut seen = format!(
        "NATS {}",
        info["version"].as_str().unwrap_or("(version unknown)")
    );
    if info["jetstream"].as_bool() == Some(true) {
        seen.push_str(" with JetStream");
    }
    Ok(seen)
}

/// Every server of the shared log's URL; one unreachable among reachable
/// ones is a warning, all unreachable a failure.
pub async fn nats(url: &str) -> Vec<Finding> {
    let servers = nats_servers(url);
    let mut results = Vec::new();
    for server in &servers {
        results.push((server, nats_server(server).await));
    }
    let any_up = results.iter().any(|(_, r)| r.is_ok());
    results
        .into_iter()
        .map(|(server, result)| {
            let check = format!("NATS server {server}");
            match result {
                Ok(seen) if seen.contains("JetStream") => Finding::ok(check, format!("answers: {seen}")),
                Ok(seen) => Finding::warn(
                    check,
                    format!("answers: {seen}, but does not say JetStream is on"),
                    "start nats-server with -js (JetStream), e.g. nats-server -js -sd /var/lib/nats",
                ),
                Err(e) if any_up => Finding::warn(
                    check,
                    e,
                    "the other servers of the list answer; check this one",
                ),
                Err(e) => Finding::fail(
                    check,
                    e,
                    "start it (nats-server -js -sd /var/lib/nats), check the address and firewall, \
                     or set log = \"embedded\"",
                ),
            }
        })
        .collect()
}

/// rigctld answers a frequency read.
pub async fn rigctld(addr: &str) -> Finding {
    let check = format!("rigctld {addr}");
    let fix = "start rigctld for the radio (rigctld -m MODEL -r /dev/ttyUSB0 -t PORT; \
               rigctl -l lists models) and check radio_port";
    let mut rig = match Rigctld::connect(addr, TIMEOUT).await {
        Ok(rig) => rig,
        Err(e) => return Finding::fail(check, format!("no connection: {e}"), fix),
    };
    // `f`, the frequency: what the bridge asks first.
    match rig.command("f").await {
        Ok(answer) => Finding::ok(check, format!("answers ({})", answer.join(", "))),
        Err(e) => Finding::fail(
            check,
            format!("connected, but the radio did not answer: {e}"),
            "rigctld is up but cannot reach the radio: check its -m model, -r port and -s speed",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::Status;

    #[test]
    fn nats_urls_become_host_and_port() {
        assert_eq!(
            nats_servers("nats://u:p@nats-host:4222,nats://other"),
            ["nats-host:4222", "other:4222"]
        );
        assert_eq!(nats_servers("127.0.0.1:5000"), ["127.0.0.1:5000"]);
    }

    #[test]
    fn a_bound_port_is_in_use_and_a_free_one_is_free() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let found = port_free("listen", addr);
        assert_eq!(found.status, Status::Fail);
        assert!(found.detail.contains("in use"));
        drop(held);
        assert_eq!(port_free("listen", addr).status, Status::Ok);
    }

    #[tokio::test]
    async fn a_tcp_server_that_is_not_nats_is_told_apart() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n").await;
        });
        let err = nats_server(&addr.to_string()).await.unwrap_err();
        assert!(err.contains("not a NATS server"), "{err}");
    }

    #[tokio::test]
    async fn nothing_listening_fails_nats() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let found = nats(&format!("nats://{addr}")).await;
        assert_eq!(found[0].status, Status::Fail, "{found:?}");
    }
}
