//! Runs `apparmor_parser` as a child process with an absolute deadline and bounded output.
//!
//! The parser runs in its own process group so that a hung parser and the workers it forks
//! (`-j`) die together. Output is read with `poll()` from the calling thread: each stream is
//! kept up to a cap and the rest is drained and counted, so a parser that writes gigabytes
//! costs a fixed amount of memory. After the deadline the group is killed, the pipes are read
//! for a short grace period (a grandchild in its own session may hold them open forever) and
//! then closed, and the child is reaped: the call returns within `timeout + KILL_GRACE`
//! whatever the children do.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::KernelError;
use crate::defaults;

/// How long the pipes are still read, and the child waited for, after the kill.
const KILL_GRACE: Duration = Duration::from_millis(500);

/// What a finished parser process left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Standard output, up to the cap.
    pub stdout: Vec<u8>,
    /// Standard error, up to the cap.
    pub stderr: Vec<u8>,
    /// Bytes of standard error beyond the cap, read and dropped.
    pub stderr_cut: u64,
}

impl Output {
    /// Standard error as printable text (control characters escaped, so a parser's bytes can
    /// neither move a terminal's cursor nor forge log lines), with a marker when it was cut.
    pub fn stderr_text(&self) -> String {
        let mut text = super::parser_output::printable(&String::from_utf8_lossy(&self.stderr));
        if self.stderr_cut > 0 {
            text.push_str(&format!("\n… {} bytes of parser output cut", self.stderr_cut));
        }
        text
    }
}

/// The parser process running right now, so that shutdown can end a hung one at once and
/// no new one starts afterwards.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    pgid: Arc<AtomicI32>,
    stopping: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
}

impl InFlight {
    /// Kills the running parser's process group, if one runs, and refuses new ones.
    pub fn kill(&self) {
        self.stopping.store(true, Ordering::Release);
        let pgid = self.pgid.load(Ordering::Acquire);
        if pgid > 0 {
            tracing::warn!(pgid, "killing the parser still running at shutdown");
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }

    /// The drain of a shutdown: the running parser finishes and no further compile starts;
    /// loads of policy already compiled still run (they are quick, and finish the sync's work).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether no further compile may start: draining or killed.
    pub fn compiles_refused(&self) -> bool {
        self.draining.load(Ordering::Acquire) || self.stopping()
    }

    /// Whether [`InFlight::kill`] was called: no parser process may start any more.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// One parser invocation.
pub struct Invocation<'a> {
    /// The parser as resolved by [`resolve_parser`]; run directly, never through a shell.
    pub parser: &'a Path,
    /// Its arguments (never through a shell).
    pub args: Vec<OsString>,
    /// Its working directory (quoted relative includes resolve against it).
    pub cwd: Option<&'a Path>,
    /// How long the parser may run before its process group is killed: `--parser-timeout`, or a
    /// multiple of it for a batched compile.
    pub timeout: Duration,
    /// What it is doing, naming the file(s), for messages.
    pub what: String,
}

/// Runs the parser to completion or until the deadline.
pub fn run(inv: &Invocation<'_>, in_flight: &InFlight) -> Result<Output, KernelError> {
    let spawn_err = |source| KernelError::Spawn { parser: inv.parser.to_path_buf(), source };
    if in_flight.stopping() {
        return Err(KernelError::Stopped);
    }
    let mut cmd = Command::new(inv.parser);
    cmd.args(&inv.args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    if let Some(dir) = inv.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let pgid = Pid::from_raw(child.id() as i32);
    in_flight.pgid.store(pgid.as_raw(), Ordering::Release);
    // A kill between the check above and the store missed this group: end it here.
    if in_flight.stopping() {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let deadline = Instant::now() + inv.timeout;
    let streams = collect(&mut child, deadline, pgid);
    in_flight.pgid.store(0, Ordering::Release);
    let status = reap(&mut child, pgid, streams.timed_out);
    if streams.timed_out {
        return Err(KernelError::Timeout { parser: inv.parser.to_path_buf(), timeout: inv.timeout, what: inv.what.clone() });
    }
    let status = status.ok_or_else(|| KernelError::Timeout {
        parser: inv.parser.to_path_buf(),
        timeout: inv.timeout,
        what: inv.what.clone(),
    })?;
    Ok(Output { status, stdout: streams.stdout.data, stderr: streams.stderr.data, stderr_cut: streams.stderr.cut })
}

#[derive(Default)]
struct Capture {
    data: Vec<u8>,
    cut: u64,
    open: bool,
}

impl Capture {
    fn push(&mut self, chunk: &[u8]) {
        let room = defaults::PARSER_OUTPUT_CAP.saturating_sub(self.data.len());
        let keep = chunk.len().min(room);
        self.data.extend_from_slice(&chunk[..keep]);
        self.cut += (chunk.len() - keep) as u64;
    }
}

struct Streams {
    stdout: Capture,
    stderr: Capture,
    timed_out: bool,
}

/// Reads both pipes until they close, or until the deadline (then kills the group and reads
/// for the grace period only).
fn collect(child: &mut Child, deadline: Instant, pgid: Pid) -> Streams {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let mut s = Streams {
        stdout: Capture { open: out.is_some(), ..Capture::default() },
        stderr: Capture { open: err.is_some(), ..Capture::default() },
        timed_out: false,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut give_up = deadline;
    while s.stdout.open || s.stderr.open {
        let now = Instant::now();
        if now >= give_up {
            if s.timed_out {
                break;
            }
            s.timed_out = true;
            let _ = killpg(pgid, Signal::SIGKILL);
            give_up = now + KILL_GRACE;
            continue;
        }
        let wait = PollTimeout::try_from(give_up - now).unwrap_or(PollTimeout::MAX);
        let mut which = Vec::with_capacity(2);
        let mut pfds = Vec::with_capacity(2);
        if let (true, Some(o)) = (s.stdout.open, &out) {
            which.push(0);
            pfds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
        }
        if let (true, Some(e)) = (s.stderr.open, &err) {
            which.push(1);
            pfds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut pfds, wait) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<usize> =
            which.iter().zip(&pfds).filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty())).map(|(i, _)| *i).collect();
        drop(pfds);
        for i in ready {
            let (pipe, cap): (&mut dyn Read, &mut Capture) = match i {
                0 => (out.as_mut().expect("polled"), &mut s.stdout),
                _ => (err.as_mut().expect("polled"), &mut s.stderr),
            };
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => cap.open = false,
                Ok(n) => cap.push(&buf[..n]),
            }
        }
    }
    // Dropping the pipes closes our ends: a grandchild that kept them open gets EPIPE.
    drop(out.take());
    drop(err.take());
    s
}

/// Waits for the child; after a kill only for the grace period.
fn reap(child: &mut Child, pgid: Pid, killed: bool) -> Option<ExitStatus> {
    if !killed {
        return child.wait().ok();
    }
    let until = Instant::now() + KILL_GRACE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= until {
            let _ = killpg(pgid, Signal::SIGKILL);
            tracing::warn!(pid = child.id(), "the killed parser has not exited yet; leaving it to be reaped later");
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Finds the parser: an explicit path (or name looked up on `PATH`), else the default name
/// on `PATH`, else the fallback path.
pub fn resolve_parser(explicit: Option<&Path>) -> Option<PathBuf> {
    let lookup = |name: &Path| -> Option<PathBuf> {
        if name.components().count() > 1 {
            return name.is_file().then(|| name.to_path_buf());
        }
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
    };
    match explicit {
        Some(p) => lookup(p),
        None => lookup(Path::new(defaults::PARSER)).or_else(|| lookup(Path::new(defaults::PARSER_FALLBACK))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Result<Output, KernelError> {
        let inv = Invocation {
            parser: Path::new("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            cwd: None,
            timeout,
            what: "test".into(),
        };
        run(&inv, &InFlight::default())
    }

    #[test]
    fn captures_output_and_status() {
        let out = sh("echo out; echo err >&2; exit 3", Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn output_is_capped_and_the_rest_counted() {
        let cap = defaults::PARSER_OUTPUT_CAP as u64;
        let total = cap + 100_000;
        let out = sh(&format!("head -c {total} /dev/zero >&2"), Duration::from_secs(20)).unwrap();
        assert_eq!(out.stderr.len() as u64, cap);
        assert_eq!(out.stderr_cut, total - cap);
        assert!(out.stderr_text().ends_with(&format!("… {} bytes of parser output cut", total - cap)));
    }

    #[test]
    fn control_bytes_are_escaped() {
        let out = sh(r"printf 'f:1: bad \033[2J\033]0;title\007 \r\n' >&2; exit 1", Duration::from_secs(10)).unwrap();
        assert_eq!(out.stderr_text(), "f:1: bad \\x1b[2J\\x1b]0;title\\x07 \\x0d\n");
    }

    #[test]
    fn timeout_is_absolute_even_when_a_grandchild_holds_the_pipes() {
        // The grandchild starts its own session, so the group kill misses it, and it keeps
        // stderr open for a minute.
        let start = Instant::now();
        let err = sh("setsid sleep 60 & sleep 60", Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, KernelError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5), "returned after {:?}", start.elapsed());
    }

    #[test]
    fn a_stopping_handle_starts_nothing() {
        let in_flight = InFlight::default();
        in_flight.kill();
        let inv = Invocation {
            parser: Path::new("/bin/true"),
            args: vec![],
            cwd: None,
            timeout: Duration::from_secs(1),
            what: "x".into(),
        };
        assert!(matches!(run(&inv, &in_flight), Err(KernelError::Stopped)));
    }
}
