//! The signal policy of `run` (README, "Signals"):
//!
//! - SIGTERM or SIGINT: drain. The token is cancelled; the sync in flight finishes its parser
//!   call (no new one starts) and the agent exits 0. Profiles stay loaded.
//! - A second SIGTERM or SIGINT: the parser's process group is killed and the agent exits 130
//!   at once, leaving no parser behind.
//! - SIGHUP: resync now (rescan the directory and the kernel), logged. The configuration is
//!   not re-read: flags and environment cannot change under a running process, and a
//!   half-applied config file would be worse than a restart.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agent::Trigger;
use crate::kernel::process::InFlight;

/// The installed handlers. Installed first thing, so that a signal that arrives while the
/// agent starts is acted on once it runs, not the default action (death for SIGHUP).
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

/// The exit status after a second signal (128 + SIGINT, what shells report for Ctrl-C).
pub const ABORT_STATUS: i32 = 130;

impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Acts on signals until the process exits.
    pub async fn handle(mut self, shutdown: CancellationToken, in_flight: InFlight, tx: mpsc::Sender<Trigger>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => break,
                _ = self.int.recv() => break,
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: resyncing now");
                    // A full channel already holds a pending sync.
                    let _ = tx.try_send(Trigger::Hangup);
                }
            }
        }
        tracing::info!("signal received: draining (a second SIGTERM or SIGINT aborts)");
        shutdown.cancel();
        loop {
            tokio::select! {
                _ = self.term.recv() => break,
                _ = self.int.recv() => break,
                _ = self.hup.recv() => tracing::info!("SIGHUP while shutting down: ignored"),
            }
        }
        tracing::warn!("second signal: killing the parser in flight and exiting");
        in_flight.kill();
        std::process::exit(ABORT_STATUS);
    }
}
