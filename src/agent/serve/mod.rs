//! The HTTP server: the agent's own accept loop around axum's router, so that no client can take
//! what the reconcile loop needs.
//!
//! - **Connections** are capped ([`Limits::max_connections`], sized to the descriptor budget in
//!   [`fds`]). The accept loop stops accepting while the cap (plus a little slack for connections
//!   being closed) is taken, so further connections wait in the kernel's listen queue at no cost to
//!   the agent. When full, a new connection evicts the oldest connection of the client address
//!   holding the most ([`admission`]).
//! - **Time**: a client must send its request head within [`Limits::header_timeout`]; a connection
//!   serves one request (no keep-alive: the kubelet and Prometheus reconnect anyway) and is closed
//!   after [`Limits::deadline`] whatever it is doing, which bounds a client that never reads.
//! - **Memory**: each connection's buffers are capped ([`Limits::connection_buffer`]) and every large
//!   response holds a share of a fixed budget ([`budget`]) until it has been handed to the socket.
//! - **Shutdown**: on the shutdown token the loops stop accepting and open connections get
//!   [`Limits::drain`] to finish.

/// Which connections are kept, and which one makes room.
pub mod admission;
/// The shared memory budget of response bodies.
pub mod budget;
/// The server's share of the file descriptors.
pub mod fds;
/// The server's metrics.
pub mod metrics;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::defaults;
use admission::{Admission, Slot};
use budget::Budget;
pub use metrics::{Closed, HttpMetrics};

/// The server's limits; [`Limits::default`] holds the named defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections kept at once.
    pub max_connections: usize,
    /// Evicted connections that may still be closing on top of `max_connections`.
    pub eviction_slack: usize,
    /// Time for the whole request head.
    pub header_timeout: Duration,
    /// Lifetime of a connection (one request and its answer).
    pub deadline: Duration,
    /// Largest read and write buffer of one connection; a larger request head is refused.
    pub connection_buffer: usize,
    /// Bytes of response bodies held at once.
    pub response_budget: usize,
    /// Responses up to this size skip the budget.
    pub small_response: usize,
    /// Piece size in which bodies are handed to a connection.
    pub body_chunk: usize,
    /// Time open connections get to finish at shutdown.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: defaults::HTTP_MAX_CONNECTIONS,
            eviction_slack: defaults::HTTP_EVICTION_SLACK,
            header_timeout: defaults::HTTP_HEADER_TIMEOUT,
            deadline: defaults::HTTP_CONNECTION_DEADLINE,
            connection_buffer: defaults::HTTP_CONNECTION_BUFFER,
            response_budget: defaults::HTTP_RESPONSE_BUDGET,
            small_response: defaults::HTTP_SMALL_RESPONSE,
            body_chunk: defaults::HTTP_BODY_CHUNK,
            drain: defaults::HTTP_SHUTDOWN_DRAIN,
        }
    }
}

impl Limits {
    /// The default limits with the connection cap fitted to this process's descriptor limit for
    /// `listeners` listening sockets: the soft `RLIMIT_NOFILE` is raised (up to the hard limit) to hold
    /// [`defaults::FD_RESERVE`] plus the server's share, and the cap shrinks if it cannot.
    pub fn for_this_process(listeners: usize) -> Limits {
        let mut limits = Limits::default();
        let wanted = defaults::FD_RESERVE + fds::needed(limits.max_connections, limits.eviction_slack, listeners);
        match fds::raise_soft_limit(wanted) {
            Ok(l) => {
                if l.soft > l.before {
                    tracing::info!(from = l.before, to = l.soft, "raised the soft open-files limit");
                }
                limits.max_connections =
                    fds::connection_cap(l.soft, defaults::FD_RESERVE, limits.eviction_slack, listeners, limits.max_connections);
                if limits.max_connections < defaults::HTTP_MAX_CONNECTIONS {
                    tracing::warn!(
                        soft = l.soft,
                        hard = l.hard,
                        connections = limits.max_connections,
                        reserve = defaults::FD_RESERVE,
                        "the open-files limit is low: the HTTP server keeps fewer connections so the syncs keep their descriptors"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit; keeping the default HTTP connection cap"),
        }
        limits
    }
}

/// Opens a listening socket with the server's kernel buffer sizes and listen queue.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    // Accepted connections inherit these: small fixed buffers instead of the kernel's autotuning
    // (megabytes per socket), so unread answers and unread requests cost little kernel memory.
    socket.set_recv_buffer_size(defaults::HTTP_SOCKET_RECV_BUFFER)?;
    socket.set_send_buffer_size(defaults::HTTP_SOCKET_SEND_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(defaults::HTTP_BACKLOG)
}

/// What every accept loop and connection task shares.
struct Server {
    app: Router,
    http: http1::Builder,
    admission: Arc<Admission>,
    limits: Limits,
    metrics: HttpMetrics,
    shutdown: CancellationToken,
}

/// Serves `app` on `listeners` until `shutdown` is cancelled, then lets open connections finish
/// (at most [`Limits::drain`]).
pub async fn serve(listeners: Vec<TcpListener>, app: Router, limits: Limits, metrics: HttpMetrics, shutdown: CancellationToken) {
    let budget = Budget::new(limits.response_budget, limits.small_response, limits.body_chunk, metrics.clone());
    let app = app.layer(axum::middleware::from_fn_with_state(budget, budget::layer));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false)
        .max_buf_size(limits.connection_buffer);
    metrics.set_limit(limits.max_connections);
    let admission = Admission::new(limits.max_connections, limits.eviction_slack);
    let server = Arc::new(Server { app, http, admission: admission.clone(), limits, metrics, shutdown });
    let loops: Vec<_> = listeners.into_iter().map(|l| tokio::spawn(accept_loop(l, server.clone()))).collect();
    for l in loops {
        // An accept loop only ends on shutdown; a panic in one must not keep the others from draining.
        let _ = l.await;
    }
    // Every connection task ends within `drain` of the shutdown; the margin covers scheduling.
    if tokio::time::timeout(limits.drain + Duration::from_millis(500), admission.drained()).await.is_err() {
        tracing::warn!(open = admission.open(), "HTTP connections still open after the shutdown drain");
    }
}

async fn accept_loop(listener: TcpListener, server: Arc<Server>) {
    loop {
        tokio::select! {
            () = server.shutdown.cancelled() => return,
            () = server.admission.room() => {}
        }
        let accepted = tokio::select! {
            () = server.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let slot = server.admission.admit(peer.ip());
                if slot.evicted_other {
                    tracing::debug!(peer = %peer.ip(), "HTTP server full: closed the oldest connection of the busiest client");
                }
                server.metrics.opened();
                tokio::spawn(connection(stream, slot, server.clone()));
            }
            Err(e) => accept_failed(&e).await,
        }
    }
}

/// An accept error: out of descriptors or memory (something outside the server's budget used them)
/// waits a little instead of spinning; anything else (a connection reset before it was accepted)
/// concerns one client only.
async fn accept_failed(e: &io::Error) {
    use nix::errno::Errno;
    let exhausted = [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM].map(|n| n as i32);
    if e.raw_os_error().is_some_and(|n| exhausted.contains(&n)) {
        tracing::warn!(error = %e, "cannot accept HTTP connections; retrying in a second");
        tokio::time::sleep(Duration::from_secs(1)).await;
    } else {
        tracing::debug!(error = %e, "accept failed");
    }
}

/// Drives one connection to its end and records why it ended; dropping `slot` frees its place.
async fn connection(stream: TcpStream, slot: Slot, server: Arc<Server>) {
    let conn = server.http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(server.app.clone()));
    let mut conn = std::pin::pin!(conn);
    let why = tokio::select! {
        r = conn.as_mut() => outcome(r),
        () = tokio::time::sleep(server.limits.deadline) => Closed::Deadline,
        () = slot.evict.cancelled() => Closed::Evicted,
        () = server.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(server.limits.drain, conn.as_mut()).await {
                Ok(r) => outcome(r),
                Err(_) => Closed::Shutdown,
            }
        }
    };
    server.metrics.closed(why);
}

fn outcome(r: Result<(), hyper::Error>) -> Closed {
    match r {
        Ok(()) => Closed::Complete,
        Err(e) if e.is_timeout() => Closed::HeaderTimeout,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP connection error");
            Closed::Error
        }
    }
}

#[cfg(test)]
mod tests;
