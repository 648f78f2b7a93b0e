//! `run`: the long-running agent. Level-triggered: every file or kernel event means
//! "rescan, hash, diff"; a short window coalesces bursts; a periodic resync is the
//! safety net. One shutdown token is cloned into every task.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::http::AgentState;
use crate::agent::metrics::Metrics;
use crate::config::{HostSettings, RunSettings};
use crate::gating::Gates;
use crate::kernel::Kernel;
use crate::reconcile::plan::Operation;
use crate::reconcile::state::StateStore;
use crate::reconcile::{ItemState, Outcome, Reconciler, SyncError};
use crate::signals::AgentSignals;
use crate::{audit, defaults, preflight};
use dirwatch::{DirWatch, IncludeWatch};
use triggers::Triggers;

/// The inotify watches: the profiles directory, re-created when the directory is, and the
/// directories of the files the profiles include.
pub mod dirwatch;
/// `/metrics` in the classic text format for scrapers that do not ask for OpenMetrics.
pub mod exposition;
/// The read-only HTTP endpoints: `/healthz`, `/readyz`, `/profiles`, `/metrics`, `/denials`.
pub mod http;
/// Prometheus metrics of the sync loop.
pub mod metrics;
/// `apparmor_loader_profile_info`: which version of each managed profile this node enforces.
pub mod profile_info;
/// The HTTP server: accept loop, connection limits, response budget, descriptor budget.
pub mod serve;
/// The one coalescer of sync triggers: events, the resync tick, the retry after a failed state save.
pub mod triggers;

/// Why a sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Something changed in the profiles directory (or the watcher lost events).
    Files,
    /// The kernel's policy revision changed.
    Kernel,
    /// The periodic resync.
    Resync,
    /// SIGHUP: resync now.
    Hangup,
}

/// Runs until `shutdown` is cancelled. Profiles stay loaded when it returns. `signals` is the
/// agent's side of the one signal path ([`crate::signals`]): SIGHUP resyncs, an abort kills the parser.
pub async fn run(host: HostSettings, run: RunSettings, shutdown: CancellationToken, signals: AgentSignals) -> anyhow::Result<()> {
    let kernel = preflight::host_kernel(&host, preflight::Needs::Load)?;
    let settings = run.reconcile.reconciler(&host, kernel.toolchain())?;

    // Denials are counted per managed profile; the set is refreshed after every sync.
    let managed = audit::ProfileSet::default();
    let mut metrics = Metrics::new();
    let http_metrics = serve::HttpMetrics::register(metrics.registry_mut());
    let audit_metrics = audit::AuditMetrics::register(metrics.registry_mut(), managed.clone());
    let monitor_config = audit::MonitorConfig {
        source: run.audit.source.clone(),
        paths: run.audit.paths.clone(),
        read: audit::source::ReadOptions { poll_interval: defaults::AUDIT_IDLE_CHECK, ..Default::default() },
        ring_capacity: run.denials_buffer,
        ..Default::default()
    };
    // The monitor never stops the agent: a missing source is reported as down and retried.
    let monitor = audit::Monitor::start(monitor_config, audit_metrics, shutdown.child_token())
        .context("cannot start the denial monitor")?;
    let extra_routes = audit::http::router(monitor.view());
    // A sync that takes longer than this many parser timeouts is stuck, not slow.
    let stall_limit = host.parser_timeout * 20 + run.resync_interval;
    let shared = Arc::new(AgentState::new(metrics, stall_limit));
    let observer_shared = shared.clone();
    let fallback_shared = shared.clone();
    let kernel = kernel
        .with_observer(Arc::new(move |op, elapsed, _ok| observer_shared.metrics.observe_parser(op, elapsed)))
        .with_fallback_observer(Arc::new(move |files| fallback_shared.metrics.record_batch_fallback(files)));
    let revision = kernel.apparmor_dir().join("revision");
    let in_flight = kernel.in_flight();
    let abort = in_flight.clone();
    signals.on_abort(move || abort.kill());
    let reconciler = Reconciler::new(kernel, StateStore::new(&host.state_dir), settings)?.with_stop(shutdown.clone());

    // The directory is checked (and watched) before anything is served: a wrong path is a
    // clear error at once, not a pod that serves /healthz and then exits.
    let (tx, rx) = mpsc::channel(64);
    let dir_watch = DirWatch::start(&run.reconcile.profiles, run.reconcile.recursive, tx.clone())?;
    let app = http::router(shared.clone(), extra_routes);
    let server = start_server(&run.listen, app, http_metrics, shutdown.clone())?;
    tokio::spawn(dir_watch.follow());
    tokio::spawn(forward_hangups(signals, tx.clone(), shutdown.clone()));
    let includes = IncludeWatch::new(tx.clone())?;
    watch_revision(revision, tx);

    let triggers = Triggers::new(rx, run.resync_interval, run.debounce);
    let gates = Gates::start(host.node_features_file.clone(), run.node_taint.clone(), shutdown.clone())?;
    let published = Published { managed, gates };
    let worker = tokio::spawn(reconcile_loop(reconciler, shared.clone(), published, triggers, includes, shutdown.clone()));
    shutdown.cancelled().await;
    drain(worker, &in_flight).await?;
    server.await.context("HTTP server task panicked")?;
    // The monitor holds a child of `shutdown`, so it is stopping already; its threads wake at most
    // every AUDIT_IDLE_CHECK and the process exits without waiting for them.
    drop(monitor);
    Ok(())
}

/// The drain after the first signal: the compile in flight finishes and no further one starts
/// (the one-file-at-a-time fallback of a batch included), while policy already compiled is
/// still loaded; after the grace period the parser is killed.
async fn drain(
    worker: tokio::task::JoinHandle<anyhow::Result<()>>,
    in_flight: &crate::kernel::process::InFlight,
) -> anyhow::Result<()> {
    in_flight.drain();
    tracing::info!("shutting down: finishing the parser call in flight; profiles stay loaded");
    match tokio::time::timeout(crate::defaults::SHUTDOWN_GRACE, worker).await {
        Ok(joined) => joined.context("reconcile loop panicked")?,
        Err(_) => {
            // A parser that hangs would hold the exit until --parser-timeout; the kubelet's
            // grace period is usually shorter.
            tracing::warn!("the sync in flight did not finish in time; exiting anyway");
            in_flight.kill();
            Ok(())
        }
    }
}

/// Turns each SIGHUP into a sync (logged by the signal thread) until shutdown.
async fn forward_hangups(signals: AgentSignals, tx: mpsc::Sender<Trigger>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = signals.hangup() => {
                // A full channel already holds a pending sync.
                let _ = tx.try_send(Trigger::Hangup);
            }
        }
    }
}

/// Binds every listen address and starts the HTTP server with limits fitted to the descriptor budget.
fn start_server(
    addrs: &[std::net::SocketAddr],
    app: axum::Router,
    metrics: serve::HttpMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let limits = serve::Limits::for_this_process(addrs.len());
    let listeners = addrs
        .iter()
        .map(|a| serve::bind(*a).with_context(|| format!("cannot listen on {a}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bound: Vec<String> = listeners.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.to_string()).collect();
    tracing::info!(addrs = ?bound, max_connections = limits.max_connections, "serving /healthz /readyz /profiles /metrics /denials");
    Ok(tokio::spawn(serve::serve(listeners, app, limits, metrics, shutdown)))
}

/// Wakes a sync whenever the kernel's policy revision changes (someone loaded or removed a
/// profile), so drift is repaired in well under the resync period. The kernel's
/// `revision` file is pollable; a plain file (a test's fake kernel) is not, and then the
/// periodic resync alone catches drift.
fn watch_revision(path: PathBuf, tx: mpsc::Sender<Trigger>) {
    let spawned = std::thread::Builder::new().name("revision".into()).spawn(move || {
        let file = match std::fs::OpenOptions::new().read(true).custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits()).open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::info!(path = %path.display(), error = %e, "kernel revision not watchable; relying on the periodic resync");
                return;
            }
        };
        watch_revision_fd(&path, file, &tx);
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the revision watcher; relying on the periodic resync");
    }
}

/// Sends [`Trigger::Kernel`] for every new value of the revision file `file` (opened
/// non-blocking) until the receiver is gone or the file turns out not to be pollable.
///
/// No coalescing here: the reconcile loop's [`Triggers`] does it. A batch load bumps the revision
/// once per profile and each bump is one wake-up (poll, a read of a few bytes, a `try_send` that
/// finds the channel full once a trigger is queued), cheap next to the loads that cause it; bumps
/// that land before the read are one wake-up. The thread never blocks on the channel.
fn watch_revision_fd(path: &Path, mut file: File, tx: &mpsc::Sender<Trigger>) {
    let mut buf = [0u8; 32];
    // The first read returns the current revision (or EAGAIN while it is still 0).
    let _ = file.read(&mut buf);
    loop {
        let mut fds = [nix::poll::PollFd::new(file.as_fd(), nix::poll::PollFlags::POLLIN)];
        if let Err(e) = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            if e == nix::errno::Errno::EINTR {
                continue;
            }
            tracing::warn!(error = %e, "poll on the kernel revision failed; relying on the periodic resync");
            return;
        }
        match file.read(&mut buf) {
            Ok(n) if n > 0 => match tx.try_send(Trigger::Kernel) {
                // Full: a trigger is queued already, and the sync it starts rescans everything.
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
            // POLLIN without a new value: a regular file, not the kernel's revision file.
            Ok(_) => {
                tracing::info!(path = %path.display(), "kernel revision file is not pollable; relying on the periodic resync");
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading the kernel revision failed; relying on the periodic resync");
                return;
            }
        }
    }
}

/// Where a sync's result goes besides the HTTP state: the denial monitor's set of managed profiles
/// and the node's gates (feature file, taint).
struct Published {
    managed: audit::ProfileSet,
    gates: Gates,
}

async fn reconcile_loop<K: Kernel + 'static>(
    reconciler: Reconciler<K>,
    shared: Arc<AgentState>,
    mut published: Published,
    mut triggers: Triggers,
    mut includes: IncludeWatch,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let reconciler = Arc::new(Mutex::new(reconciler));
    while let Some(trigger) = triggers.next(&shutdown).await {
        shared.sync_started();
        let started = Instant::now();
        let r = reconciler.clone();
        let result =
            tokio::task::spawn_blocking(move || r.lock().expect("reconciler lock").sync()).await.context("sync panicked")?;
        includes.update(reconciler.lock().expect("reconciler lock").include_dirs());
        if publish(&shared, &mut published, trigger, started, result) {
            triggers.retry_soon();
        }
    }
    shared.loops_stopped();
    Ok(())
}

/// Logs a sync's result and publishes it to the HTTP state, the metrics and the denial monitor's
/// profile set, and brings the node's gates (feature file, taint) in line. True when the ownership
/// record could not be written, so the sync is retried soon.
fn publish(
    shared: &AgentState,
    published: &mut Published,
    trigger: Trigger,
    started: Instant,
    result: Result<Outcome, SyncError>,
) -> bool {
    match result {
        Ok(outcome) => {
            shared.metrics.record_sync(&outcome.counts, &outcome.report);
            let changed = !outcome.counts.ops.is_empty();
            let blocking: Vec<String> = outcome.report.blocking().map(|f| f.file.clone()).collect();
            if changed || !blocking.is_empty() || matches!(trigger, Trigger::Files | Trigger::Hangup) {
                tracing::info!(
                    trigger = ?trigger,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    loaded = outcome.counts.get(Operation::Load, true),
                    replaced = outcome.counts.get(Operation::Replace, true),
                    removed = outcome.counts.get(Operation::Remove, true),
                    failed = outcome.counts.failures(),
                    not_ready = ?blocking,
                    "sync done"
                );
            } else {
                tracing::debug!(trigger = ?trigger, elapsed_ms = started.elapsed().as_millis() as u64, "sync done, nothing changed");
            }
            let managed = outcome.report.profiles.iter().filter(|p| p.state != ItemState::Foreign).map(|p| p.name.clone());
            published.managed.replace(managed);
            published.gates.after_sync(&outcome.report);
            shared.publish(outcome.report);
            outcome.state_error.map(|e| shared.publish_error(e)).is_some()
        }
        Err(e) => {
            let message = format!("{:#}", anyhow::Error::from(e));
            tracing::error!(error = %message, "sync failed");
            shared.metrics.record_sync_error();
            shared.publish_error(message);
            false
        }
    }
}

#[cfg(test)]
mod tests;
