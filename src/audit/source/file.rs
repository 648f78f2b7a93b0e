//! The audit.log follower.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::{Disconnected, LineBuffer, ReadOptions, Sink, SourceError};
use crate::audit::saved::LineParser;

/// Follows an audit log file like `tail -F`: from its end, across rotation (the path now names another
/// inode: the old file is read to its end first, then the new one from its start) and truncation.
/// Its lines go through a [`LineParser`]: auditd's log proves its records' types; should a line appear
/// that auditd does not write, nothing later in the file is taken as kernel-made.
pub struct FileFollower {
    pub(super) path: PathBuf,
    file: File,
    id: (u64, u64),
    pos: u64,
    lines: LineBuffer,
    parser: LineParser,
}

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
        let err = |source| SourceError::Open { what: "audit log", path: path.to_owned(), source };
        let mut file = File::open(path).map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        let pos = if opts.from_start { 0 } else { file.seek(SeekFrom::End(0)).map_err(err)? };
        let (id, lines, parser) = ((meta.dev(), meta.ino()), LineBuffer::default(), LineParser::new());
        Ok(FileFollower { path: path.to_owned(), file, id, pos, lines, parser })
    }

    /// Delivers the unterminated last line, if any.
    fn finish(&mut self, sink: &Sink) {
        let FileFollower { lines, parser, path, .. } = self;
        let _ = lines.finish(|l| follow_line(parser, path, sink, l));
    }

    fn drain(&mut self, sink: &Sink, buf: &mut [u8]) -> io::Result<Result<(), Disconnected>> {
        loop {
            match self.file.read(buf) {
                Ok(0) => return Ok(Ok(())),
                Ok(n) => {
                    self.pos += n as u64;
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

    pub(super) fn run(mut self, sink: &Sink, opts: &ReadOptions, stop: &CancellationToken) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.is_cancelled() {
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
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(meta) if meta.len() < self.pos => {
                    // Truncated in place (copytruncate): start over at the beginning.
                    self.file.seek(SeekFrom::Start(0))?;
                    self.pos = 0;
                    self.lines.clear();
                }
                // Unchanged, or between rename and re-creation: keep the old file.
                _ => {}
            }
        }
        Ok(())
    }
}
