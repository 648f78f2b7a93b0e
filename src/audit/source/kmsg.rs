//! The `/dev/kmsg` reader.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::{Disconnected, LineBuffer, ReadOptions, Sink, SourceError, wait_for_burst};
use crate::audit::record;

/// Reads `/dev/kmsg` (or a regular file of kmsg-format lines, for tests). Tracks sequence numbers so a
/// record is never delivered twice and overwritten ones are counted; only kernel-facility records are
/// trusted (userspace can write to /dev/kmsg, but never with facility 0).
pub struct KmsgReader {
    pub(super) path: PathBuf,
    file: File,
    last_seq: Option<u64>,
    lines: LineBuffer,
}

impl KmsgReader {
    /// Opens `path` non-blocking, at its end unless `opts.from_start`.
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<Self, SourceError> {
        let err = |source| SourceError::Open { what: "kmsg", path: path.to_owned(), source };
        let mut file = File::options().read(true).custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits()).open(path).map_err(err)?;
        if !opts.from_start {
            // On /dev/kmsg SEEK_END means "after the last record": only new records will be read.
            file.seek(SeekFrom::End(0)).map_err(err)?;
        }
        Ok(KmsgReader { path: path.to_owned(), file, last_seq: None, lines: LineBuffer::default() })
    }

    pub(super) fn run(mut self, sink: &Sink, opts: &ReadOptions, stop: &CancellationToken) -> io::Result<()> {
        // One read returns one record on /dev/kmsg, and fails with EINVAL if the buffer is too small for it.
        let mut buf = vec![0u8; 16 * 1024];
        let mut drained = 0u32;
        while !stop.is_cancelled() {
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
