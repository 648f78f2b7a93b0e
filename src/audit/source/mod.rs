//! Where AppArmor records come from: the kernel log (`/dev/kmsg`), the kernel audit multicast group over
//! netlink, or the audit daemon's log file. Each source is opened in the caller's thread (so an error is
//! reported at once and `auto` can fall back) and then read by one blocking thread that parses lines and
//! sends records into a bounded channel. A cancelled token ends the thread within one poll interval.

use super::record::{AuditRecord, ParseError};
use crate::defaults;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod file;
mod kmsg;
mod netlink;
mod spec;

pub use file::FileFollower;
pub use kmsg::KmsgReader;
pub use netlink::{NetlinkMessage, NetlinkReader, split_netlink};
use spec::{Opened, choose_auto};
pub use spec::{SourceSpec, auditd_running};

/// The audit multicast group for read-only listeners (`AUDIT_NLGRP_READLOG`); needs `CAP_AUDIT_READ`.
pub const AUDIT_NLGRP_READLOG: u32 = 1;
/// A drain of at least this many reads means a storm: read on without the window, because a
/// netlink socket's buffer (rmem_max, ~200 KiB) holds only a few hundred records.
const STORM_READS: u32 = 32;
/// The receive buffer asked for on the netlink socket (the kernel caps it at rmem_max).
const NETLINK_RCVBUF: usize = 4 << 20;

/// Waits for more input; lets a small burst pile up first unless the last drain was a storm.
fn wait_for_burst(fd: &impl std::os::fd::AsFd, drained: &mut u32, poll_interval: Duration) -> io::Result<()> {
    let storm = *drained >= STORM_READS;
    *drained = 0;
    wait_readable(fd, poll_interval)?;
    if !storm {
        std::thread::sleep(defaults::AUDIT_BURST_WINDOW);
    }
    Ok(())
}

/// A line longer than this is discarded (the kernel's own limit is about 1 KiB per record).
pub const MAX_LINE: usize = 64 * 1024;

/// The host paths the sources use; tests point them at temp files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePaths {
    /// The kernel log device ([`defaults::DEV_KMSG`]).
    pub kmsg: PathBuf,
    /// The audit log `auto` falls back to ([`defaults::AUDIT_LOG`]).
    pub audit_log: PathBuf,
    /// procfs ([`defaults::PROC`]).
    pub proc_root: PathBuf,
}

impl Default for SourcePaths {
    fn default() -> Self {
        SourcePaths { kmsg: defaults::DEV_KMSG.into(), audit_log: defaults::AUDIT_LOG.into(), proc_root: defaults::PROC.into() }
    }
}

/// How a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Read what is already there (the kernel buffer, the whole file) instead of only new records.
    pub from_start: bool,
    /// Keep waiting for new records; when false the source ends at the current end.
    pub follow: bool,
    /// Block when the channel is full instead of dropping (and counting) the record. For the CLI; the
    /// agent drops, so a slow consumer can never stall the reader behind the kernel.
    pub lossless: bool,
    /// Records the channel to the consumer holds before the source drops (or, lossless, waits);
    /// 0 counts as 1. [`defaults::AUDIT_CHANNEL_CAPACITY`] by default.
    pub channel_capacity: usize,
    /// How often an idle source checks its stop token and a followed file for rotation.
    pub poll_interval: Duration,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            from_start: false,
            follow: true,
            lossless: false,
            channel_capacity: defaults::AUDIT_CHANNEL_CAPACITY,
            poll_interval: defaults::AUDIT_POLL_INTERVAL,
        }
    }
}

/// Which kind of source is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// The audit multicast group.
    Netlink,
    /// `/dev/kmsg` (or a file in its format).
    Kmsg,
    /// An audit log file.
    File,
}

impl SourceKind {
    /// `netlink`, `kmsg` or `file` (the metric label).
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceKind::Netlink => "netlink",
            SourceKind::Kmsg => "kmsg",
            SourceKind::File => "file",
        }
    }
}

/// Counters a source thread keeps; read by the monitor for metrics and health.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Lines (kmsg records, netlink messages, file lines) read, AppArmor or not.
    pub lines: AtomicU64,
    /// AppArmor records parsed, counted before sending: those then `dropped` are included.
    pub records: AtomicU64,
    /// AppArmor lines that failed to parse.
    pub parse_errors: AtomicU64,
    /// Records dropped because the channel was full.
    pub dropped: AtomicU64,
    /// Records the kernel overwrote before we read them (kmsg sequence gaps, netlink ENOBUFS).
    pub lost: AtomicU64,
    /// Netlink datagrams a userspace process sent straight to our socket (source port id not 0): the
    /// kernel never sends those, so they are forgeries and are dropped unread.
    pub spoofed: AtomicU64,
    up: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl SourceStats {
    /// True while the reader thread runs.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }
    /// Why the reader thread stopped, if it failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Opening or seeking a file or device failed. The I/O error is part of the message (not a
    /// chained source), so that each reason of [`SourceError::NoneAvailable`] carries it and a
    /// chain printed whole says it once.
    #[error("{what} {}: {error}", path.display())]
    Open {
        /// `kmsg` or `audit log`.
        what: &'static str,
        /// The device or file opened: `/dev/kmsg` (or a file in its format), or an audit log.
        path: PathBuf,
        /// Why opening, reading its metadata or seeking to its end failed.
        error: io::Error,
    },
    /// The netlink socket could not be created or bound.
    #[error("netlink audit socket: {0}")]
    Netlink(String),
    /// No source could be opened; one reason per source tried.
    #[error("no audit source available: {}", .0.join("; "))]
    NoneAvailable(Vec<String>),
    /// The reader thread could not be started.
    #[error("starting the reader thread: {0}")]
    Spawn(io::Error),
}

/// A running source: its records arrive on `rx`.
#[derive(Debug)]
pub struct RunningSource {
    /// What is being read.
    pub kind: SourceKind,
    /// Human-readable: which device/file/group, and for `auto` why it was chosen.
    pub description: String,
    /// AppArmor records, in the order read; disconnected once the reader thread ends.
    pub rx: Receiver<AuditRecord>,
    /// The reader thread's counters, shared with it: they move while it runs.
    pub stats: Arc<SourceStats>,
    stop: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl RunningSource {
    /// Asks the reader thread to stop (it notices within one poll interval).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits for the reader thread to end.
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Opens the source `spec` says and starts its reader thread. `Ok(None)` for `off`.
pub fn start(
    spec: &SourceSpec,
    paths: &SourcePaths,
    opts: &ReadOptions,
    stop: CancellationToken,
) -> Result<Option<RunningSource>, SourceError> {
    let opened = match spec {
        SourceSpec::Off => return Ok(None),
        SourceSpec::Kmsg => Opened::Kmsg(KmsgReader::open(&paths.kmsg, opts)?),
        SourceSpec::Netlink => Opened::Netlink(NetlinkReader::open(&paths.proc_root)?),
        SourceSpec::File(p) => Opened::File(FileFollower::open(p, opts)?),
        SourceSpec::Auto => choose_auto(paths, opts)?,
    };
    spawn(opened, opts, stop).map(Some)
}
fn spawn(opened: Opened, opts: &ReadOptions, stop: CancellationToken) -> Result<RunningSource, SourceError> {
    let (tx, rx) = sync_channel(opts.channel_capacity.max(1));
    let stats = Arc::new(SourceStats::default());
    let (kind, description) = match &opened {
        Opened::Kmsg(k) => (SourceKind::Kmsg, format!("kernel log {}", k.path.display())),
        Opened::Netlink(_) => (SourceKind::Netlink, "kernel audit multicast group (netlink)".to_owned()),
        Opened::File(f) => (SourceKind::File, format!("audit log {}", f.path.display())),
    };
    let sink = Sink { tx, stats: stats.clone(), lossless: opts.lossless };
    let thread_stop = stop.clone();
    let opts = *opts;
    stats.up.store(true, Ordering::SeqCst);
    let thread_stats = stats.clone();
    let handle = std::thread::Builder::new()
        .name(format!("audit-{}", kind.as_str()))
        .spawn(move || {
            let res = match opened {
                Opened::Kmsg(k) => k.run(&sink, &opts, &thread_stop),
                Opened::Netlink(n) => n.run(&sink, &opts, &thread_stop),
                Opened::File(f) => f.run(&sink, &opts, &thread_stop),
            };
            if let Err(e) = res {
                tracing::warn!(error = %e, "audit source stopped");
                *thread_stats.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            }
            thread_stats.up.store(false, Ordering::SeqCst);
        })
        .map_err(SourceError::Spawn)?;
    Ok(RunningSource { kind, description, rx, stats, stop, handle: Some(handle) })
}

/// Where a reader thread delivers: parses, counts, sends.
struct Sink {
    tx: SyncSender<AuditRecord>,
    stats: Arc<SourceStats>,
    lossless: bool,
}

/// The consumer went away: the reader should end.
struct Disconnected;

impl Sink {
    fn deliver(&self, parsed: Result<Option<AuditRecord>, ParseError>) -> Result<(), Disconnected> {
        match parsed {
            Ok(None) => Ok(()),
            Err(e) => {
                self.stats.parse_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "malformed AppArmor audit record");
                Ok(())
            }
            Ok(Some(rec)) => {
                self.stats.records.fetch_add(1, Ordering::Relaxed);
                if self.lossless {
                    return self.tx.send(rec).map_err(|_| Disconnected);
                }
                match self.tx.try_send(rec) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Full(_)) => {
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(TrySendError::Disconnected(_)) => Err(Disconnected),
                }
            }
        }
    }
}

/// Splits a byte stream into lines, bounded: a line over [`MAX_LINE`] is dropped whole.
#[derive(Debug, Default)]
struct LineBuffer {
    pending: Vec<u8>,
    discarding: bool,
}

impl LineBuffer {
    fn push(&mut self, mut data: &[u8], mut each: impl FnMut(&str) -> Result<(), Disconnected>) -> Result<(), Disconnected> {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            if self.discarding {
                self.discarding = false;
            } else if self.pending.is_empty() {
                each(&String::from_utf8_lossy(&data[..nl]))?;
            } else {
                self.pending.extend_from_slice(&data[..nl]);
                let line = std::mem::take(&mut self.pending);
                each(&String::from_utf8_lossy(&line))?;
            }
            data = &data[nl + 1..];
        }
        if !self.discarding {
            self.pending.extend_from_slice(data);
            if self.pending.len() > MAX_LINE {
                self.pending.clear();
                self.discarding = true;
            }
        }
        Ok(())
    }

    /// The unterminated last line, if any (at the end of a file that is not followed).
    fn finish(&mut self, each: impl FnOnce(&str) -> Result<(), Disconnected>) -> Result<(), Disconnected> {
        let line = std::mem::take(&mut self.pending);
        let was_discarding = std::mem::take(&mut self.discarding);
        if !line.is_empty() && !was_discarding { each(&String::from_utf8_lossy(&line)) } else { Ok(()) }
    }

    fn clear(&mut self) {
        self.pending.clear();
        self.discarding = false;
    }
}

fn wait_readable(file: &impl std::os::fd::AsFd, timeout: Duration) -> io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
    let t = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, t) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(test)]
pub(crate) mod tests;
