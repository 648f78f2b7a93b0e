//! The one signal path of the binary (`run`, `denials`, `suggest`; README, "Signals"):
//!
//! - SIGTERM or SIGINT: the stop token is cancelled. `run` drains: the sync in flight finishes its
//!   parser call (no new one starts) and the agent exits 0, profiles staying loaded; `denials
//!   --follow` and `suggest` end.
//! - A second SIGTERM or SIGINT: abort at once with status 130. Under `run` the parser's process
//!   group is killed first, so no parser is left behind.
//! - SIGHUP, under `run` only: resync now (rescan the directory and the kernel), logged. The
//!   configuration is not re-read: flags and environment cannot change under a running process,
//!   and a half-applied config file would be worse than a restart. The other commands keep the
//!   default action (a closed terminal ends them).

use std::sync::{Arc, Mutex};

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The exit status after a second signal (128 + SIGINT, what shells report for Ctrl-C).
pub const ABORT_STATUS: i32 = 130;

/// What `run` adds to the signal path: SIGHUP wakes [`AgentSignals::hangup`], and an abort first
/// runs the hook set by [`AgentSignals::on_abort`] (killing the parser in flight). Made before the
/// agent exists, filled in by it.
#[derive(Clone, Default)]
pub struct AgentSignals {
    hangup: Arc<Notify>,
    abort: Arc<Mutex<Option<AbortHook>>>,
}

type AbortHook = Box<dyn Fn() + Send>;

impl AgentSignals {
    /// Waits for the next SIGHUP; one that came while nobody waited is not lost.
    pub async fn hangup(&self) {
        self.hangup.notified().await;
    }

    /// Sets what a second signal does before the process exits.
    pub fn on_abort(&self, hook: impl Fn() + Send + 'static) {
        *self.abort.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
    }

    fn abort(&self) {
        if let Some(hook) = &*self.abort.lock().unwrap_or_else(|e| e.into_inner()) {
            hook();
        }
    }
}

/// Blocks SIGINT and SIGTERM (and SIGHUP when `agent` is given) in this thread, inherited by every
/// thread spawned after, so call it first; one thread takes them. The first SIGINT or SIGTERM
/// cancels `stop`; a second aborts at once ([`ABORT_STATUS`]).
pub fn cancel_on_signals(stop: &CancellationToken, agent: Option<&AgentSignals>) -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if agent.is_some() {
        set.add(Signal::SIGHUP);
    }
    set.thread_block().context("cannot block signals")?;
    let (stop, agent) = (stop.clone(), agent.cloned());
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || take_signals(&set, &stop, agent.as_ref()))
        .context("cannot start the signal thread")?;
    Ok(())
}

fn take_signals(set: &SigSet, stop: &CancellationToken, agent: Option<&AgentSignals>) {
    let mut stopping = false;
    while let Ok(signal) = set.wait() {
        match (signal, agent) {
            (Signal::SIGHUP, Some(_)) if stopping => tracing::info!("SIGHUP while shutting down: ignored"),
            (Signal::SIGHUP, Some(agent)) => {
                tracing::info!("SIGHUP: resyncing now");
                agent.hangup.notify_one();
            }
            (Signal::SIGHUP, None) => {}
            _ if !stopping => {
                stopping = true;
                if agent.is_some() {
                    tracing::info!(signal = %signal, "draining (a second SIGTERM or SIGINT aborts)");
                }
                stop.cancel();
            }
            _ => {
                if let Some(agent) = agent {
                    tracing::warn!("second signal: killing the parser in flight and exiting");
                    agent.abort();
                }
                eprintln!("second signal: aborting");
                std::process::exit(ABORT_STATUS);
            }
        }
    }
}
