//! The rig port's TCP shell: one task per program, around
//! [`edge_proxy::rigcore::session::Session`].
//!
//! Bounded everywhere, since anything on the network may connect: a line
//! is at most [`MAX_LINE`] bytes (longer: `RPRT -1`, then the connection is
//! closed), a connection holds one line buffer and one answer, a write that
//! does not drain within [`WRITE_TIMEOUT`] closes the connection (a stalled
//! program never holds up anyone else), and at most [`MAX_PROGRAMS`] are
//! served at once. Off loopback only `rigctl_allow`'s networks get in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge_proxy::rigcore::allow::{allowed, Net};
use edge_proxy::rigcore::code;
use edge_proxy::rigcore::line::{Line, LineBuffer};
use edge_proxy::rigcore::session::{Session, Step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::control::{Keyer, Program};
use super::Shared;
use crate::programs::ProgramStatus;

/// Longest command line accepted (Hamlib's are under 100 bytes).
pub const MAX_LINE: usize = 1024;
/// A program that does not read its answers for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Programs served at once.
const MAX_PROGRAMS: usize = 256;

pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    allow: Vec<Net>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "rig port: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        if !allowed(peer.ip(), &allow) {
            tracing::warn!(%peer, "rig port: refused a program from outside rigctl_allow");
            metrics::counter!("rig_connections_refused_total", "reason" => "not_allowed")
                .increment(1);
            continue;
        }
        if shared.programs.list().len() >= MAX_PROGRAMS {
            tracing::warn!(%peer, "rig port: too many programs connected");
            metrics::counter!("rig_connections_refused_total", "reason" => "too_many").increment(1);
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, peer, shared.clone(), shutdown.clone()));
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let control_role = shared.control_role;
    let mut program = Program {
        id: format!("rig:{peer}"),
        name: None,
    };
    let entry = shared.programs.add(ProgramStatus {
        port: "rigctl",
        address: peer.to_string(),
        name: None,
        role: if control_role { "control" } else { "read" },
        last_command: None,
        keyed: false,
        commands: 0,
        connected_at_ms: shared.clock.now(),
    });
    tracing::info!(%peer, "rig port: a program connected");
    let mut session = Session::new(control_role);
    let mut keyer = Keyer::default();
    let mut lines = LineBuffer::new(MAX_LINE);
    let mut buf = [0u8; 1024];
    let mut ready = Vec::new();
    'conn: loop {
        let n = tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = shutdown.changed() => break,
        };
        lines.push(&buf[..n], &mut ready);
        for line in ready.drain(..) {
            let text = match line {
                Line::Text(text) => text,
                Line::TooLong => {
                    tracing::warn!(%peer, "rig port: a line over {MAX_LINE} bytes; closing");
                    let _ = write(&mut stream, format!("RPRT {}\n", code::EINVAL).as_bytes()).await;
                    break 'conn;
                }
            };
            // Any command shows the program is alive.
            shared.control.alive(&mut keyer).await;
            let station = shared.control.view.borrow().clone();
            let caps = shared.caps(&station);
            let step = session.handle(&text, &station, &caps);
            let (answer, quit) = match step {
                Step::Nothing => continue,
                Step::Answer(a) => (a, false),
                Step::Quit(a) => (a, true),
                Step::Named(name, a) => {
                    tracing::info!(%peer, program = %name, "rig port: the program says who it is");
                    entry.update(|s| s.name = Some(name.clone()));
                    program.name = Some(name);
                    (a, false)
                }
                Step::Set(set, pending) => {
                    let result = shared
                        .control
                        .carry_out(&program, &mut keyer, set, true)
                        .await;
                    metrics::counter!("rig_sets_total", "result" => if result.is_ok() { "ok" } else { "error" })
                        .increment(1);
                    (pending.finish(result), false)
                }
            };
            entry.command(&text, keyer.keyed());
            if !write(&mut stream, &answer).await || quit {
                break 'conn;
            }
        }
    }
    shared.control.ended(&mut keyer);
    tracing::info!(%peer, "rig port: a program disconnected");
}
