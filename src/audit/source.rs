//! Where AppArmor records come from: the kernel log (`/dev/kmsg`), the kernel audit multicast group over
//! netlink, or the audit daemon's log file. Each source is opened in the caller's thread (so an error is
//! reported at once and `auto` can fall back) and then read by one blocking thread that parses lines and
//! sends records into a bounded channel. A stop flag ends the thread within one poll interval.

use super::record::{self, AuditRecord, ParseError};
use super::saved::LineParser;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The kernel log device.
pub const DEV_KMSG: &str = "/dev/kmsg";
/// Where auditd writes its log.
pub const AUDIT_LOG: &str = "/var/log/audit/audit.log";
/// procfs, used to check the network namespace (netlink) and whether auditd runs (`auto`).
pub const PROC: &str = "/proc";
/// The audit multicast group for read-only listeners (`AUDIT_NLGRP_READLOG`); needs `CAP_AUDIT_READ`.
pub const AUDIT_NLGRP_READLOG: u32 = 1;
/// Records buffered between a source thread and its consumer.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 4096;
/// How often an idle source looks at its stop flag (and a file follower at the file).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// After a wake-up, how long a kmsg or netlink reader lets records pile up before reading
/// them all: a batch profile load then costs a few wake-ups, not one per record.
pub const BURST_WINDOW: Duration = Duration::from_millis(20);
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
        std::thread::sleep(BURST_WINDOW);
    }
    Ok(())
}
/// A line longer than this is discarded (the kernel's own limit is about 1 KiB per record).
pub const MAX_LINE: usize = 64 * 1024;

/// A cheap, cloneable stop request shared by a source thread, a monitor and whoever stops them.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag not yet raised.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks every holder to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// True once [`StopFlag::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The `--audit-source` setting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourceSpec {
    /// netlink, then kmsg (or the audit log first when auditd runs), then the audit log.
    #[default]
    Auto,
    /// `/dev/kmsg`.
    Kmsg,
    /// The audit multicast group.
    Netlink,
    /// No monitoring.
    Off,
    /// Follow this audit log file.
    File(PathBuf),
}

impl FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => SourceSpec::Auto,
            "kmsg" => SourceSpec::Kmsg,
            "netlink" => SourceSpec::Netlink,
            "off" => SourceSpec::Off,
            "" => return Err("empty audit source (use auto, kmsg, netlink, off or a file path)".into()),
            path => SourceSpec::File(PathBuf::from(path)),
        })
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Auto => f.write_str("auto"),
            SourceSpec::Kmsg => f.write_str("kmsg"),
            SourceSpec::Netlink => f.write_str("netlink"),
            SourceSpec::Off => f.write_str("off"),
            SourceSpec::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The host paths the sources use; tests point them at temp files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePaths {
    /// The kernel log device ([`DEV_KMSG`]).
    pub kmsg: PathBuf,
    /// The audit log `auto` falls back to ([`AUDIT_LOG`]).
    pub audit_log: PathBuf,
    /// procfs ([`PROC`]).
    pub proc_root: PathBuf,
}

impl Default for SourcePaths {
    fn default() -> Self {
        SourcePaths { kmsg: DEV_KMSG.into(), audit_log: AUDIT_LOG.into(), proc_root: PROC.into() }
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
    /// Channel capacity.
    pub channel_capacity: usize,
    /// How often an idle source checks its stop flag and a followed file for rotation.
    pub poll_interval: Duration,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            from_start: false,
            follow: true,
            lossless: false,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            poll_interval: DEFAULT_POLL_INTERVAL,
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
    /// Records parsed and sent.
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
        /// The path.
        path: PathBuf,
        /// The error.
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
    /// Parsed records.
    pub rx: Receiver<AuditRecord>,
    /// Counters.
    pub stats: Arc<SourceStats>,
    stop: StopFlag,
    handle: Option<JoinHandle<()>>,
}

impl RunningSource {
    /// Asks the reader thread to stop (it notices within one poll interval).
    pub fn stop(&self) {
        self.stop.stop();
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
    stop: StopFlag,
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

enum Opened {
    Kmsg(KmsgReader),
    Netlink(NetlinkReader),
    File(FileFollower),
}

fn choose_auto(paths: &SourcePaths, opts: &ReadOptions) -> Result<Opened, SourceError> {
    let mut why = Vec::new();
    // Multicast audit records reach only the host network namespace. `auto` uses netlink
    // only when it can confirm that (an unreadable /proc/1/ns/net proves nothing), so it
    // never settles on a socket that silently receives nothing.
    let netns = |p: &str| std::fs::read_link(paths.proc_root.join(p)).ok();
    let confirmed = matches!((netns("self/ns/net"), netns("1/ns/net")), (Some(mine), Some(init)) if mine == init);
    let netlink = if confirmed {
        NetlinkReader::open(&paths.proc_root)
    } else {
        Err(SourceError::Netlink("cannot confirm the host network namespace (/proc/1/ns/net unreadable or different); pass --audit-source netlink to force it".into()))
    };
    match netlink {
        Ok(n) => {
            tracing::info!(source = "netlink", "audit source: kernel audit multicast group (works with or without auditd)");
            return Ok(Opened::Netlink(n));
        }
        Err(e) => why.push(format!("netlink: {e}")),
    }
    // With auditd running the kernel hands records to it and no longer prints them to the kernel log, so
    // its file is the better second choice then.
    let auditd = auditd_running(&paths.proc_root);
    let mut order: Vec<SourceKind> = vec![SourceKind::Kmsg, SourceKind::File];
    if auditd {
        order.reverse();
        why.push("auditd is running (the kernel log gets no audit records)".into());
    }
    for kind in order {
        let res = match kind {
            SourceKind::Kmsg => KmsgReader::open(&paths.kmsg, opts).map(Opened::Kmsg),
            _ => FileFollower::open(&paths.audit_log, opts).map(Opened::File),
        };
        match res {
            Ok(o) => {
                tracing::info!(source = kind.as_str(), reasons = %why.join("; "), "audit source chosen by auto");
                return Ok(o);
            }
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(SourceError::NoneAvailable(why))
}

/// True when a process named `auditd` runs (looked up in `<proc_root>/*/comm`).
pub fn auditd_running(proc_root: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir(proc_root) else { return false };
    dir.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == "auditd"))
}

fn spawn(opened: Opened, opts: &ReadOptions, stop: StopFlag) -> Result<RunningSource, SourceError> {
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

// ---------------------------------------------------------------------------------------------------
// /dev/kmsg

/// Reads `/dev/kmsg` (or a regular file of kmsg-format lines, for tests). Tracks sequence numbers so a
/// record is never delivered twice and overwritten ones are counted; only kernel-facility records are
/// trusted (userspace can write to /dev/kmsg, but never with facility 0).
pub struct KmsgReader {
    path: PathBuf,
    file: File,
    last_seq: Option<u64>,
    lines: LineBuffer,
}

impl KmsgReader {
    /// Opens `path` non-blocking, at its end unless `opts.from_start`.
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<Self, SourceError> {
        let err = |error| SourceError::Open { what: "kmsg", path: path.to_owned(), error };
        let mut file = File::options().read(true).custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits()).open(path).map_err(err)?;
        if !opts.from_start {
            // On /dev/kmsg SEEK_END means "after the last record": only new records will be read.
            file.seek(SeekFrom::End(0)).map_err(err)?;
        }
        Ok(KmsgReader { path: path.to_owned(), file, last_seq: None, lines: LineBuffer::default() })
    }

    fn run(mut self, sink: &Sink, opts: &ReadOptions, stop: &StopFlag) -> io::Result<()> {
        // One read returns one record on /dev/kmsg, and fails with EINVAL if the buffer is too small for it.
        let mut buf = vec![0u8; 16 * 1024];
        let mut drained = 0u32;
        while !stop.is_stopped() {
            match self.file.read(&mut buf) {
                Ok(0) => {
                    // A regular file at its end (/dev/kmsg itself reports EAGAIN instead).
                    if !opts.follow {
                        break;
                    }
                    std::thread::sleep(opts.poll_interval);
                }
                Ok(n) => {
                    drained += 1;
                    let KmsgReader { lines, last_seq, .. } = &mut self;
                    if lines.push(&buf[..n], |line| handle_kmsg_line(line, last_seq, sink)).is_err() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !opts.follow {
                        break;
                    }
                    wait_for_burst(&self.file, &mut drained, opts.poll_interval)?;
                }
                // EPIPE: records were overwritten before we read them; the next read continues with the
                // oldest one still there. The sequence gap is counted in handle_kmsg_line.
                Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => {
                    self.lines.clear();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn handle_kmsg_line(line: &str, last_seq: &mut Option<u64>, sink: &Sink) -> Result<(), Disconnected> {
    // Continuation lines (" SUBSYSTEM=...") carry device properties, never audit text.
    let Some((hdr, msg)) = record::split_kmsg(line) else { return Ok(()) };
    sink.stats.lines.fetch_add(1, Ordering::Relaxed);
    if let Some(last) = *last_seq {
        if hdr.seq <= last {
            return Ok(()); // already delivered
        }
        if hdr.seq > last + 1 {
            sink.stats.lost.fetch_add(hdr.seq - last - 1, Ordering::Relaxed);
        }
    }
    *last_seq = Some(hdr.seq);
    // A record a process wrote to /dev/kmsg carries no kernel stamp at all: not even userspace-reported.
    if hdr.facility() != 0 || !record::looks_like_apparmor(msg) {
        return Ok(());
    }
    sink.deliver(record::parse_kmsg(&hdr, msg))
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

// ---------------------------------------------------------------------------------------------------
// audit.log follower

/// Follows an audit log file like `tail -F`: from its end, across rotation (the path now names another
/// inode: the old file is read to its end first, then the new one from its start) and truncation.
/// Its lines go through a [`LineParser`]: auditd's log proves its records' types; should a line appear
/// that auditd does not write, nothing later in the file is taken as kernel-made.
pub struct FileFollower {
    path: PathBuf,
    file: File,
    id: (u64, u64),
    pos: u64,
    /// The last bytes read (up to [`TAIL_CHECK`]): still there at the same offset unless the
    /// file was truncated and written again, even past the old offset.
    tail: Vec<u8>,
    lines: LineBuffer,
    parser: LineParser,
}

/// How many of the last bytes read are compared before each read to detect a truncation that
/// the file's size no longer shows (truncated, then regrown past the old offset).
const TAIL_CHECK: usize = 64;

/// Parses one followed line and delivers the result; says once when the file stops being trustworthy.
fn follow_line(parser: &mut LineParser, path: &Path, sink: &Sink, line: &str) -> Result<(), Disconnected> {
    sink.stats.lines.fetch_add(1, Ordering::Relaxed);
    let parsed = parser.line(line).transpose();
    if parser.take_demotion() {
        tracing::warn!(path = %path.display(), "the audit log holds a line auditd does not write; its records are no longer taken as kernel-made");
    }
    sink.deliver(parsed)
}

impl FileFollower {
    /// Opens `path`, at its end unless `opts.from_start`.
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<Self, SourceError> {
        let err = |error| SourceError::Open { what: "audit log", path: path.to_owned(), error };
        let mut file = File::open(path).map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        let pos = if opts.from_start { 0 } else { file.seek(SeekFrom::End(0)).map_err(err)? };
        let (id, lines, parser) = ((meta.dev(), meta.ino()), LineBuffer::default(), LineParser::new());
        let mut f = FileFollower { path: path.to_owned(), file, id, pos, tail: Vec::new(), lines, parser };
        f.tail = f.bytes_before(pos).map_err(err)?;
        Ok(f)
    }

    /// Up to [`TAIL_CHECK`] bytes of the file ending at `pos`, read without moving the offset.
    fn bytes_before(&self, pos: u64) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let n = pos.min(TAIL_CHECK as u64) as usize;
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match self.file.read_at(&mut buf[got..], pos - n as u64 + got as u64)? {
                0 => break,
                k => got += k,
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// Whether the file was truncated since the last read: shorter than what was read, or the
    /// last bytes read are no longer there.
    fn truncated(&self) -> io::Result<bool> {
        if self.file.metadata()?.len() < self.pos {
            return Ok(true);
        }
        Ok(self.bytes_before(self.pos)? != self.tail)
    }

    /// Starts over at the beginning of a truncated file. What was written after the last read
    /// and before the truncation is gone: counted as lost once, as its number is unknown.
    fn restart(&mut self, sink: &Sink) -> io::Result<()> {
        tracing::warn!(path = %self.path.display(), "audit log truncated; reading it from the start (records written just before are lost)");
        sink.stats.lost.fetch_add(1, Ordering::Relaxed);
        self.file.seek(SeekFrom::Start(0))?;
        self.pos = 0;
        self.tail.clear();
        self.lines.clear();
        Ok(())
    }

    fn remember_tail(&mut self, chunk: &[u8]) {
        if chunk.len() >= TAIL_CHECK {
            self.tail = chunk[chunk.len() - TAIL_CHECK..].to_vec();
        } else {
            self.tail.extend_from_slice(chunk);
            let extra = self.tail.len().saturating_sub(TAIL_CHECK);
            self.tail.drain(..extra);
        }
    }

    /// Delivers the unterminated last line, if any.
    fn finish(&mut self, sink: &Sink) {
        let FileFollower { lines, parser, path, .. } = self;
        let _ = lines.finish(|l| follow_line(parser, path, sink, l));
    }

    fn drain(&mut self, sink: &Sink, buf: &mut [u8]) -> io::Result<Result<(), Disconnected>> {
        if self.truncated()? {
            self.restart(sink)?;
        }
        loop {
            match self.file.read(buf) {
                Ok(0) => return Ok(Ok(())),
                Ok(n) => {
                    self.pos += n as u64;
                    self.remember_tail(&buf[..n]);
                    let FileFollower { lines, parser, path, .. } = self;
                    if let Err(d) = lines.push(&buf[..n], |l| follow_line(parser, path, sink, l)) {
                        return Ok(Err(d));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn run(mut self, sink: &Sink, opts: &ReadOptions, stop: &StopFlag) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.is_stopped() {
            if self.drain(sink, &mut buf)?.is_err() {
                return Ok(());
            }
            if !opts.follow {
                self.finish(sink);
                return Ok(());
            }
            std::thread::sleep(opts.poll_interval);
            match std::fs::metadata(&self.path) {
                Ok(meta) if (meta.dev(), meta.ino()) != self.id => {
                    // Rotated: finish the old file (auditd may have written after our last read), then switch.
                    if self.drain(sink, &mut buf)?.is_err() {
                        return Ok(());
                    }
                    self.finish(sink);
                    match File::open(&self.path) {
                        Ok(f) => {
                            let m = f.metadata()?;
                            tracing::info!(path = %self.path.display(), "audit log rotated; following the new file");
                            self.file = f;
                            self.id = (m.dev(), m.ino());
                            self.pos = 0;
                            self.tail.clear();
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                // Truncated in place (copytruncate) is checked before every read, in drain().
                // Unchanged, or between rename and re-creation: keep the old file.
                _ => {}
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------
// netlink

/// One message of a netlink datagram: `(type, payload)`.
pub type NetlinkMessage<'a> = (u16, &'a [u8]);

/// Splits a netlink datagram into its messages (`struct nlmsghdr` in native byte order: len u32,
/// type u16, flags u16, seq u32, pid u32, then the payload, padded to 4 bytes). Trailing NULs are cut
/// from the payload. A header whose length is inconsistent ends the walk with the rest as one payload.
pub fn split_netlink(buf: &[u8]) -> Vec<NetlinkMessage<'_>> {
    const HDR: usize = 16;
    let mut out = Vec::new();
    let trim = |p: &'_ [u8]| -> usize { p.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) };
    let mut rest = buf;
    while rest.len() >= HDR {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < HDR || len > rest.len() {
            let payload = &rest[HDR..];
            out.push((ty, &payload[..trim(payload)]));
            break;
        }
        let payload = &rest[HDR..len];
        out.push((ty, &payload[..trim(payload)]));
        let aligned = (len + 3) & !3;
        if aligned >= rest.len() {
            break;
        }
        rest = &rest[aligned..];
    }
    out
}

/// Reads the audit multicast group. Needs `CAP_AUDIT_READ` and the host's network namespace (the
/// kernel only multicasts audit records in the initial one).
pub struct NetlinkReader {
    fd: std::os::fd::OwnedFd,
}

impl NetlinkReader {
    /// Creates the socket and joins the read-only group.
    pub fn open(proc_root: &Path) -> Result<Self, SourceError> {
        use nix::sys::socket::{AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, socket};
        use std::os::fd::AsRawFd;
        let netns = |p: &str| std::fs::read_link(proc_root.join(p)).ok();
        // Unreadable (no hostPID, no permission): no evidence either way, so try.
        if matches!((netns("self/ns/net"), netns("1/ns/net")), (Some(mine), Some(init)) if mine != init) {
            return Err(SourceError::Netlink(
                "not in the host network namespace, where the kernel multicasts audit records (run with hostNetwork)".into(),
            ));
        }
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkAudit,
        )
        .map_err(|e| SourceError::Netlink(format!("socket: {e}")))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1 << (AUDIT_NLGRP_READLOG - 1))).map_err(|e| {
            SourceError::Netlink(match e {
                nix::errno::Errno::EPERM => "joining the read-log group needs CAP_AUDIT_READ".to_owned(),
                e => format!("bind to group {AUDIT_NLGRP_READLOG}: {e}"),
            })
        })?;
        // A larger buffer rides out short storms; capped by rmem_max, so failure is harmless.
        let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBuf, &NETLINK_RCVBUF);
        Ok(NetlinkReader { fd })
    }

    fn run(self, sink: &Sink, opts: &ReadOptions, stop: &StopFlag) -> io::Result<()> {
        use nix::sys::socket::{NetlinkAddr, recvfrom};
        use std::os::fd::AsRawFd;
        let mut buf = vec![0u8; 64 * 1024];
        let mut drained = 0u32;
        while !stop.is_stopped() {
            // The socket is non-blocking (SOCK_NONBLOCK), so this never waits.
            match recvfrom::<NetlinkAddr>(self.fd.as_raw_fd(), &mut buf) {
                Ok((n, from)) => {
                    drained += 1;
                    // Port id 0 is the kernel. Any other sender is a process unicasting to our port
                    // (possible with CAP_NET_ADMIN in the host network namespace): never a record.
                    if from.is_none_or(|a| a.pid() != 0) {
                        if sink.stats.spoofed.fetch_add(1, Ordering::Relaxed) == 0 {
                            tracing::warn!(
                                sender = from.map_or(0, |a| a.pid()),
                                "dropped a netlink audit message not sent by the kernel"
                            );
                        }
                        continue;
                    }
                    for (ty, payload) in split_netlink(&buf[..n]) {
                        sink.stats.lines.fetch_add(1, Ordering::Relaxed);
                        if sink.deliver(record::parse_netlink_payload(ty, &String::from_utf8_lossy(payload))).is_err() {
                            return Ok(());
                        }
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => {
                    if !opts.follow {
                        break;
                    }
                    wait_for_burst(&self.fd, &mut drained, opts.poll_interval)?;
                }
                // The socket buffer overflowed: records were lost, the socket still works.
                Err(nix::errno::Errno::ENOBUFS) => {
                    sink.stats.lost.fetch_add(1, Ordering::Relaxed);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    const POLL: Duration = Duration::from_millis(20);

    fn opts() -> ReadOptions {
        ReadOptions { poll_interval: POLL, ..ReadOptions::default() }
    }

    fn kline(seq: u64, name: &str) -> String {
        format!(
            "5,{seq},{},-;audit: type=1400 audit(1795834070.095:{seq}): apparmor=\"DENIED\" operation=\"open\" profile=\"t\" name=\"{name}\" pid=92 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0\n",
            seq * 1000
        )
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn recv_names(rx: &Receiver<AuditRecord>, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(r) => out.push(r.name.unwrap_or_default()),
                Err(_) => break,
            }
        }
        out
    }

    #[test]
    fn spec_parses() {
        assert_eq!("auto".parse(), Ok(SourceSpec::Auto));
        assert_eq!("kmsg".parse(), Ok(SourceSpec::Kmsg));
        assert_eq!("netlink".parse(), Ok(SourceSpec::Netlink));
        assert_eq!("off".parse(), Ok(SourceSpec::Off));
        assert_eq!("/var/log/audit/audit.log".parse(), Ok(SourceSpec::File("/var/log/audit/audit.log".into())));
        assert!("".parse::<SourceSpec>().is_err());
        assert_eq!(SourceSpec::File("/x".into()).to_string(), "/x");
    }

    #[test]
    fn kmsg_reads_only_new_records_and_never_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        std::fs::write(&path, kline(1, "/old")).unwrap();
        let paths = SourcePaths { kmsg: path.clone(), ..SourcePaths::default() };
        let stop = StopFlag::new();
        let src = start(&SourceSpec::Kmsg, &paths, &opts(), stop.clone()).unwrap().unwrap();
        assert_eq!(src.kind, SourceKind::Kmsg);
        let mut text = kline(2, "/a");
        text.push_str(" SUBSYSTEM=audit\n"); // continuation line
        text.push_str("6,3,0,-;usb 1-1: not audit\n");
        text.push_str(&kline(2, "/dup")); // same seq again: not delivered twice
        text.push_str(&kline(6, "/b")); // 4 and 5 were overwritten
        // Written by userspace (facility 1): ignored even though it looks like a denial.
        text.push_str(&kline(7, "/forged").replacen("5,7,", "13,7,", 1));
        text.push_str("5,8,0,-;audit: type=1400 audit(1.000:8): apparmor=\"DENIED\" name=\"/trunc\n");
        // A line split across two writes.
        let split = kline(9, "/c");
        let (a, b) = split.split_at(40);
        append(&path, &text);
        append(&path, a);
        std::thread::sleep(POLL * 3);
        append(&path, b);
        assert_eq!(recv_names(&src.rx, 3), ["/a", "/b", "/c"]);
        stop.stop();
        let stats = src.stats.clone();
        src.join();
        assert_eq!(stats.lost.load(Ordering::Relaxed), 2, "seq 4 and 5 were overwritten");
        assert_eq!(stats.parse_errors.load(Ordering::Relaxed), 1);
        assert!(!stats.is_up());
    }

    #[test]
    fn kmsg_from_start_without_follow_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        std::fs::write(&path, format!("{}{}", kline(1, "/x"), kline(2, "/y"))).unwrap();
        let paths = SourcePaths { kmsg: path, ..SourcePaths::default() };
        let o = ReadOptions { from_start: true, follow: false, lossless: true, ..opts() };
        let src = start(&SourceSpec::Kmsg, &paths, &o, StopFlag::new()).unwrap().unwrap();
        let got: Vec<String> = src.rx.iter().map(|r| r.name.unwrap()).collect();
        assert_eq!(got, ["/x", "/y"]);
    }

    #[test]
    fn full_channel_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        let text: String = (1..=10).map(|i| kline(i, &format!("/f{i}"))).collect();
        std::fs::write(&path, text).unwrap();
        let paths = SourcePaths { kmsg: path, ..SourcePaths::default() };
        let o = ReadOptions { from_start: true, follow: false, channel_capacity: 4, ..opts() };
        let src = start(&SourceSpec::Kmsg, &paths, &o, StopFlag::new()).unwrap().unwrap();
        let stats = src.stats.clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats.is_up() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        assert_eq!(src.rx.try_iter().count(), 4);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 6);
    }

    fn avc(serial: u64, name: &str) -> String {
        format!(
            "type=AVC msg=audit(1795834070.095:{serial}): apparmor=\"DENIED\" operation=\"open\" profile=\"t\" name=\"{name}\" pid=1 comm=\"c\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0\n"
        )
    }

    #[test]
    fn file_follower_survives_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, avc(1, "/before-start")).unwrap();
        let stop = StopFlag::new();
        let src = start(&SourceSpec::File(path.clone()), &SourcePaths::default(), &opts(), stop.clone()).unwrap().unwrap();
        assert_eq!(src.kind, SourceKind::File);
        append(&path, &format!("type=SYSCALL msg=audit(1.000:2): arch=c000003e syscall=257\n{}", avc(3, "/one")));
        assert_eq!(recv_names(&src.rx, 1), ["/one"]);

        // Rotation the way auditd does it: rename, then a new file. A last line lands in the old file
        // right after the rename.
        let rotated = dir.path().join("audit.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        append(&rotated, &avc(4, "/late-in-old"));
        std::thread::sleep(POLL * 2);
        std::fs::write(&path, avc(5, "/new-file")).unwrap();
        assert_eq!(recv_names(&src.rx, 2), ["/late-in-old", "/new-file"]);

        // copytruncate.
        std::thread::sleep(POLL * 3);
        std::fs::write(&path, "").unwrap();
        std::thread::sleep(POLL * 3);
        append(&path, &avc(6, "/after-truncate"));
        assert_eq!(recv_names(&src.rx, 1), ["/after-truncate"]);
        stop.stop();
        src.join();
    }

    /// Truncated and written again past the old offset between two reads: the size alone cannot
    /// tell, the last bytes read can. Every record of the new content is read, the loss counted.
    #[test]
    fn truncation_regrown_past_the_old_offset_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, avc(1, "/old")).unwrap();
        let o = ReadOptions { poll_interval: Duration::from_millis(300), ..ReadOptions::default() };
        let src = start(&SourceSpec::File(path.clone()), &SourcePaths::default(), &o, StopFlag::new()).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // One write: the same inode, truncated, with more than before.
        let new: String = (10..14).map(|i| avc(i, &format!("/new{i}"))).collect();
        std::fs::write(&path, new).unwrap();
        assert_eq!(recv_names(&src.rx, 4), ["/new10", "/new11", "/new12", "/new13"]);
        assert_eq!(src.stats.lost.load(Ordering::Relaxed), 1);
        src.stop();
        src.join();
    }

    #[test]
    fn auto_falls_back_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path().join("proc");
        std::fs::create_dir_all(proc_root.join("1")).unwrap();
        let log = dir.path().join("audit.log");
        std::fs::write(&log, "").unwrap();
        // No kmsg: auto must reach the file (netlink may or may not work on this machine).
        let paths = SourcePaths { kmsg: dir.path().join("no-kmsg"), audit_log: log.clone(), proc_root: proc_root.clone() };
        let stop = StopFlag::new();
        let src = start(&SourceSpec::Auto, &paths, &opts(), stop.clone()).unwrap().unwrap();
        assert!(matches!(src.kind, SourceKind::File | SourceKind::Netlink), "{:?}", src.kind);
        stop.stop();
        src.join();

        // Nothing available at all.
        let paths = SourcePaths { kmsg: dir.path().join("no-kmsg"), audit_log: dir.path().join("no-log"), proc_root };
        match start(&SourceSpec::Auto, &paths, &opts(), StopFlag::new()) {
            Err(SourceError::NoneAvailable(why)) => {
                assert!(why.iter().any(|w| w.contains("no-kmsg")) && why.iter().any(|w| w.contains("no-log")), "{why:?}")
            }
            Ok(Some(s)) => assert_eq!(s.kind, SourceKind::Netlink, "only netlink can succeed here"),
            other => panic!("{other:?}"),
        }
        assert!(start(&SourceSpec::Off, &SourcePaths::default(), &opts(), StopFlag::new()).unwrap().is_none());
    }

    #[test]
    fn auditd_detection() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("1")).unwrap();
        std::fs::write(dir.path().join("1/comm"), "systemd\n").unwrap();
        assert!(!auditd_running(dir.path()));
        std::fs::create_dir_all(dir.path().join("812")).unwrap();
        std::fs::write(dir.path().join("812/comm"), "auditd\n").unwrap();
        assert!(auditd_running(dir.path()));
    }

    #[test]
    fn netlink_in_another_netns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("self/ns")).unwrap();
        std::fs::create_dir_all(dir.path().join("1/ns")).unwrap();
        std::os::unix::fs::symlink("net:[4026531840]", dir.path().join("1/ns/net")).unwrap();
        std::os::unix::fs::symlink("net:[4026532999]", dir.path().join("self/ns/net")).unwrap();
        let err = NetlinkReader::open(dir.path()).err().expect("must refuse");
        assert!(err.to_string().contains("hostNetwork"), "{err}");
    }

    #[test]
    fn netlink_datagrams_split() {
        fn msg(ty: u16, payload: &str, pad_nul: bool) -> Vec<u8> {
            let mut p = payload.as_bytes().to_vec();
            if pad_nul {
                p.push(0);
            }
            let len = 16 + p.len();
            let mut v = Vec::new();
            v.extend_from_slice(&(len as u32).to_ne_bytes());
            v.extend_from_slice(&ty.to_ne_bytes());
            v.extend_from_slice(&[0; 10]);
            v.extend_from_slice(&p);
            while v.len() % 4 != 0 {
                v.push(0);
            }
            v
        }
        let a = "audit(1.000:1): apparmor=\"DENIED\" operation=\"open\" profile=\"p\" name=\"/x\"";
        let mut buf = msg(1400, a, true);
        buf.extend(msg(1300, "audit(1.000:1): arch=c000003e", false));
        let got = split_netlink(&buf);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (1400, a.as_bytes()));
        assert_eq!(got[1].0, 1300);
        let rec = record::parse_netlink_payload(got[0].0, std::str::from_utf8(got[0].1).unwrap()).unwrap().unwrap();
        assert_eq!(rec.name.as_deref(), Some("/x"));
        // Garbage never panics.
        assert!(split_netlink(&[1, 2, 3]).is_empty());
        let mut bad = msg(1400, a, false);
        bad[0] = 0xff; // length beyond the buffer
        assert_eq!(split_netlink(&bad).len(), 1);
    }

    /// Sends a USER_AVC message to the kernel audit subsystem (needs CAP_AUDIT_WRITE). The kernel
    /// multicasts it to the read-log group and, with no auditd, prints it to the kernel log with
    /// facility 0: a real-kernel end-to-end check of both sources without AppArmor, and of the
    /// forgery every such sender can attempt.
    pub(crate) fn send_user_avc(body: &str) -> nix::Result<()> {
        use nix::sys::socket::{AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, sendto, socket};
        use std::os::fd::AsRawFd;
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkAudit)?;
        let mut payload = body.as_bytes().to_vec();
        payload.push(0);
        let mut msg = Vec::new();
        msg.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&record::AUDIT_TYPE_USER_AVC.to_ne_bytes());
        msg.extend_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&payload);
        sendto(fd.as_raw_fd(), &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
        Ok(())
    }

    /// Receives until the record named `/tag` arrives (other tests may send their own meanwhile);
    /// returns it and every name seen before it.
    fn recv_tagged(rx: &Receiver<AuditRecord>, tag: &str) -> (AuditRecord, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        loop {
            let rec = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the tagged record");
            if rec.name.as_deref() == Some(&format!("/{tag}")) {
                return (rec, seen);
            }
            seen.push(rec.name.unwrap_or_default());
        }
    }

    fn user_avc_body(tag: &str) -> String {
        format!(
            r#"apparmor="DENIED" operation="open" profile="aal-selftest" name="/{tag}" pid=1 comm="selftest" requested_mask="r" denied_mask="r""#
        )
    }

    /// A process that unicasts an AppArmor record straight to the agent's port (the kernel allows it
    /// with CAP_NET_ADMIN) is not the kernel: its message is dropped and counted, never delivered.
    #[test]
    fn netlink_unicast_from_userspace_is_dropped() {
        use nix::sys::socket::{
            AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, getsockname, sendto, socket,
        };
        use std::os::fd::AsRawFd;
        let Ok(reader) = NetlinkReader::open(Path::new("/nonexistent")) else {
            eprintln!("skipped: no audit netlink here");
            return;
        };
        let port = getsockname::<NetlinkAddr>(reader.fd.as_raw_fd()).unwrap().pid();
        let body = format!("audit(1.000:1): {}", user_avc_body("unicast"));
        let mut msg = Vec::new();
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&1400u16.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(body.as_bytes());
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkAudit).unwrap();
        if sendto(fd.as_raw_fd(), &msg, &NetlinkAddr::new(port, 0), MsgFlags::empty()).is_err() {
            eprintln!("skipped: this sandbox refuses user-to-user netlink");
            return;
        }
        let (tx, rx) = sync_channel(8);
        let sink = Sink { tx, stats: Arc::new(SourceStats::default()), lossless: false };
        let o = ReadOptions { follow: false, ..opts() };
        reader.run(&sink, &o, &StopFlag::new()).unwrap();
        assert!(rx.try_recv().is_err(), "a forged unicast must not become a record");
        assert_eq!(sink.stats.spoofed.load(Ordering::Relaxed), 1);
        assert_eq!(sink.stats.records.load(Ordering::Relaxed), 0);
    }

    #[test]
    #[ignore = "needs root, kernel audit and the host network namespace; run with --ignored"]
    fn real_netlink_multicast_delivers_user_avc() {
        let src =
            start(&SourceSpec::Netlink, &SourcePaths::default(), &opts(), StopFlag::new()).expect("netlink source").unwrap();
        let tag = format!("netlink-{}", std::process::id());
        send_user_avc(&user_avc_body(&tag)).expect("send USER_AVC");
        let (rec, _) = recv_tagged(&src.rx, &tag);
        assert_eq!((rec.audit_type, rec.origin), (Some(record::AUDIT_TYPE_USER_AVC), record::Origin::Userspace));
        assert_eq!((rec.pid, rec.reported_pid), (Some(std::process::id()), Some(1)), "the kernel-stamped sender");
        assert!(rec.timestamp.is_some());
        src.stop();
        src.join();
    }

    #[test]
    #[ignore = "needs root, kernel audit, no auditd, and a real /dev/kmsg; run with --ignored"]
    fn real_kmsg_reads_new_kernel_records_only() {
        let o = ReadOptions { poll_interval: Duration::from_millis(50), ..ReadOptions::default() };
        let src = start(&SourceSpec::Kmsg, &SourcePaths::default(), &o, StopFlag::new()).expect("kmsg source").unwrap();
        // A userspace write lands with facility 1: read (counted as a line) but never trusted.
        std::fs::OpenOptions::new()
            .write(true)
            .open(DEV_KMSG)
            .unwrap()
            .write_all(format!("audit: type=1400 audit(1.000:1): {}\n", user_avc_body("forged")).as_bytes())
            .unwrap();
        let tag = format!("kmsg-{}", std::process::id());
        send_user_avc(&user_avc_body(&tag)).expect("send USER_AVC");
        let (rec, before) = recv_tagged(&src.rx, &tag);
        assert_eq!((rec.audit_type, rec.origin), (Some(record::AUDIT_TYPE_USER_AVC), record::Origin::Userspace));
        assert_eq!(rec.pid, Some(std::process::id()), "the kernel-stamped sender");
        assert!(!before.iter().any(|n| n == "/forged"), "a userspace-written line must not be delivered: {before:?}");
        assert!(src.stats.lines.load(Ordering::Relaxed) >= 2);
        assert_eq!(src.stats.lost.load(Ordering::Relaxed), 0);
        src.stop();
        src.join();
    }

    #[test]
    fn line_buffer_bounds_long_lines() {
        let mut lb = LineBuffer::default();
        let mut got = Vec::new();
        let big = vec![b'x'; MAX_LINE + 10];
        let _ = lb.push(&big, |l| {
            got.push(l.len());
            Ok(())
        });
        let _ = lb.push(b"tail\nok\n", |l| {
            got.push(l.len());
            Ok(())
        });
        assert_eq!(got, [2], "the over-long line is dropped whole, the next one kept");
    }
}
