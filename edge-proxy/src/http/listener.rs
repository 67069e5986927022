//! The TCP listener in front of the HTTP server, with the limits a proxy on
//! a LAN needs against clients that never finish a request:
//!
//! - **Header timeout**: a connection must finish its first request's
//!   headers within `header_timeout` of connecting, or it is closed (a raw
//!   TCP connection that sends nothing, or stops mid request line, is not
//!   held forever).
//! - **A bounded number of connections** (`max_connections`), refused with
//!   a short HTTP 503 beyond it, and among them a bounded number that have
//!   not finished a request yet: a new one displaces the oldest of those,
//!   so a flood of idle sockets can never lock a dashboard out.
//! - TCP_NODELAY on every socket: small frames must leave at once.
//! - TLS when configured ([`super::tls`]): handshakes run side by side,
//!   each bounded by the header timeout, so a slow one never holds up the
//!   accept loop.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// Connections that have not finished their first request's headers.
    pub max_unfinished: usize,
}

/// The peer's address, for handlers (`ConnectInfo<Remote>`).
#[derive(Debug, Clone, Copy)]
pub struct Remote(pub SocketAddr);

impl Connected<IncomingStream<'_, Guarded>> for Remote {
    fn connect_info(stream: IncomingStream<'_, Guarded>) -> Self {
        Remote(*stream.remote_addr())
    }
}

/// A connection still waiting for its first request: whoever holds the
/// flag can close it.
struct Unfinished {
    evicted: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<std::task::Waker>>>,
}

#[derive(Default)]
struct Live {
    total: AtomicUsize,
    unfinished: Mutex<VecDeque<Unfinished>>,
}

type Handshake = futures_util::future::BoxFuture<
    'static,
    (
        Result<io::Result<tokio_rustls::server::TlsStream<TcpStream>>, tokio::time::error::Elapsed>,
        Admitted,
        SocketAddr,
    ),
>;

pub struct Guarded {
    inner: TcpListener,
    limits: Limits,
    live: Arc<Live>,
    tls: Option<Arc<super::tls::Tls>>,
    handshakes: futures_util::stream::FuturesUnordered<Handshake>,
}

/// A connection counted against the limits, not yet serving HTTP.
struct Admitted {
    ticket: Ticket,
    header: Header,
}

/// One of `max_connections`, given back when dropped.
struct Ticket(Arc<Live>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.total.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Guarded {
    pub fn new(inner: TcpListener, limits: Limits, tls: Option<Arc<super::tls::Tls>>) -> Self {
        Guarded {
            inner,
            limits,
            live: Arc::default(),
            tls,
            handshakes: Default::default(),
        }
    }

    fn admit(&self, tcp: &TcpStream) -> Option<Admitted> {
        if self.live.total.load(Ordering::Acquire) >= self.limits.max_connections {
            metrics::counter!("proxy_connections_refused_total", "reason" => "max_connections")
                .increment(1);
            let body = "too many connections; try again shortly\n";
            let response = format!(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            // A fresh socket takes this much without waiting; if not, the
            // peer is gone anyway.
            let _ = tcp.try_write(response.as_bytes());
            return None;
        }
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        let evicted = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(Mutex::new(None));
        if let Ok(mut unfinished) = self.live.unfinished.lock() {
            // Forget those that finished or went away.
            unfinished.retain(|u| Arc::strong_count(&u.evicted) > 1);
            while unfinished.len() >= self.limits.max_unfinished {
                let Some(oldest) = unfinished.pop_front() else {
                    break;
                };
                oldest.evicted.store(true, Ordering::Release);
                if let Some(w) = oldest.waker.lock().ok().and_then(|mut w| w.take()) {
                    w.wake();
                }
                metrics::counter!("proxy_connections_refused_total", "reason" => "displaced_unfinished")
                    .increment(1);
            }
            unfinished.push_back(Unfinished {
                evicted: evicted.clone(),
                waker: waker.clone(),
            });
        }
        self.live.total.fetch_add(1, Ordering::AcqRel);
        Some(Admitted {
            ticket: Ticket(self.live.clone()),
            header: Header {
                deadline: Box::pin(tokio::time::sleep(self.limits.header_timeout)),
                matched: 0,
                evicted,
                waker,
            },
        })
    }
}

impl axum::serve::Listener for Guarded {
    type Io = GuardedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use futures_util::StreamExt;
        loop {
            tokio::select! {
                accepted = self.inner.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        let Some(admitted) = self.admit(&tcp) else {
                            continue;
                        };
                        let Some(tls) = &self.tls else {
                            return (GuardedIo::new(Stream::Plain(tcp), admitted), addr);
                        };
                        let acceptor = tls.acceptor();
                        let limit = self.limits.header_timeout;
                        self.handshakes.push(Box::pin(async move {
                            let done = tokio::time::timeout(limit, acceptor.accept(tcp)).await;
                            (done, admitted, addr)
                        }));
                    }
                    Err(e) => {
                        // Out of file descriptors, most likely: wait for
                        // some to close instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed; the proxy's file descriptor limit may be too low (LimitNOFILE)");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some((done, admitted, addr)) = self.handshakes.next(), if !self.handshakes.is_empty() => {
                    match done {
                        Ok(Ok(tls)) => {
                            return (GuardedIo::new(Stream::Tls(Box::new(tls)), admitted), addr)
                        }
                        Ok(Err(e)) => {
                            metrics::counter!("proxy_connections_refused_total", "reason" => "tls_handshake").increment(1);
                            tracing::debug!(%addr, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics::counter!("proxy_connections_refused_total", "reason" => "header_timeout").increment(1);
                        }
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Until the first request's headers are complete.
struct Header {
    deadline: Pin<Box<Sleep>>,
    /// How much of `\r\n\r\n` the bytes so far end with.
    matched: usize,
    evicted: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<std::task::Waker>>>,
}

/// The socket, plain or inside TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

pub struct GuardedIo {
    stream: Stream,
    _ticket: Ticket,
    header: Option<Header>,
}

impl GuardedIo {
    fn new(stream: Stream, admitted: Admitted) -> Self {
        GuardedIo {
            stream,
            _ticket: admitted.ticket,
            header: Some(admitted.header),
        }
    }
}

/// Calls the same method on either kind of stream.
macro_rules! both {
    ($self:expr, $s:ident => $call:expr) => {
        match &mut $self.stream {
            Stream::Plain($s) => $call,
            Stream::Tls($s) => $call,
        }
    };
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(header) = &mut this.header {
            if header.evicted.load(Ordering::Acquire) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "displaced by newer connections before finishing a request",
                )));
            }
            if header.deadline.as_mut().poll(cx).is_ready() {
                metrics::counter!("proxy_connections_refused_total", "reason" => "header_timeout")
                    .increment(1);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no complete request within the header timeout",
                )));
            }
            if let Ok(mut w) = header.waker.lock() {
                *w = Some(cx.waker().clone());
            }
        }
        let before = buf.filled().len();
        let result = both!(this, s => Pin::new(s).poll_read(cx, buf));
        if let (Poll::Ready(Ok(())), Some(header)) = (&result, &mut this.header) {
            const END: &[u8] = b"\r\n\r\n";
            for &b in &buf.filled()[before..] {
                header.matched = if b == END[header.matched] {
                    header.matched + 1
                } else if b == b'\r' {
                    1
                } else {
                    0
                };
                if header.matched == END.len() {
                    this.header = None;
                    break;
                }
            }
        }
        result
    }
}

use std::future::Future;

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Raises the soft limit on open files to the hard limit, so that
/// `max_connections` is not capped by a low default (systemd's soft limit is
/// 1024). Returns the soft limit in force afterwards.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// `max_connections` when the configuration leaves it at 0: what the
/// file descriptor limit allows, minus room for the log, the hardware and
/// the process itself.
pub fn connections_for(fd_limit: u64) -> usize {
    fd_limit.saturating_sub(64).clamp(16, 100_000) as usize
}
