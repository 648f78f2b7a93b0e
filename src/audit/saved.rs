//! Saved logs (`suggest --from`, `denials` on a file): which format a file is in, and which of its records
//! that format can prove the kernel made.
//!
//! Only a format whose writer keeps one record per line and says who wrote it can prove a record's origin:
//! a raw `/dev/kmsg` dump (the kernel escapes control characters and stamps the facility), auditd's log
//! (auditd replaces newlines with spaces; the type is the netlink header's), `journalctl -o json` and
//! `-o export` (journald's trusted `_TRANSPORT` and `_AUDIT_TYPE`, and `SYSLOG_FACILITY` of kernel
//! records), and `dmesg -x` with timestamps (a facility per line). Any other text — plain `dmesg`,
//! `journalctl`'s short output, syslog files — can hold lines a process wrote: text written to /dev/kmsg
//! prints just like the kernel's once the facility is dropped, and the kernel prints a USER_AVC's text
//! verbatim, so a newline in it starts a line that can read `audit: type=1400 ...`, or `type=AVC msg=...`,
//! or a whole kmsg record.
//!
//! That holds for whole files, so the format is decided for the whole file: the first line picks it, and
//! a line that does not fit makes the rest plain text and tells the caller to take the kernel origin away
//! from the records already read ([`LineParser::take_demotion`]). In `dmesg -x` output a record that spans
//! lines repeats its prefix when read through syslog(2) (`dmesg -S`), so a line with the same timestamp as
//! the line before it proves nothing; a filter such as `grep` can still drop that line before, which is
//! why the README prefers a kmsg dump or the journal's JSON.

use super::record::{self, AuditRecord, ParseError, looks_like_apparmor, split_kmsg};
use super::source::MAX_LINE;
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, Read};

/// The format of a saved log, decided for the whole file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Raw `/dev/kmsg` records: `PRI,SEQ,USEC,FLAGS;MESSAGE`.
    Kmsg,
    /// auditd's log: `type=AVC msg=audit(...): ...`.
    AuditLog,
    /// `journalctl -o json`: one JSON object per line.
    JournalJson,
    /// `journalctl -o export`: `FIELD=value` lines, entries separated by an empty line.
    JournalExport,
    /// `dmesg -x`: `kern  :notice: [   12.345678] ...`.
    DmesgDecoded,
    /// Anything else: plain `dmesg`, `journalctl` short output, syslog.
    Text,
}

impl Format {
    /// The name used in reports (`kmsg`, `audit-log`, `journal-json`, `journal-export`, `dmesg-decoded`, `text`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Kmsg => "kmsg",
            Format::AuditLog => "audit-log",
            Format::JournalJson => "journal-json",
            Format::JournalExport => "journal-export",
            Format::DmesgDecoded => "dmesg-decoded",
            Format::Text => "text",
        }
    }

    /// What the format is and what it proves, for the `suggest` report.
    pub fn describe(&self) -> &'static str {
        match self {
            Format::Kmsg => "raw /dev/kmsg records: the kernel facility proves the kernel wrote a line",
            Format::AuditLog => "auditd log: the record type is the kernel's",
            Format::JournalJson => "journalctl -o json: journald's _TRANSPORT, _AUDIT_TYPE and SYSLOG_FACILITY say who wrote it",
            Format::JournalExport => {
                "journalctl -o export: journald's _TRANSPORT, _AUDIT_TYPE and SYSLOG_FACILITY say who wrote it"
            }
            Format::DmesgDecoded => "dmesg -x: the facility of each line says who wrote it",
            Format::Text => {
                "plain text (dmesg, journalctl, syslog): it does not say who wrote a line, and user space can write lines that read the same"
            }
        }
    }
}

/// Facility names `dmesg -x` prints.
const DMESG_FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "res0", "res1", "res2",
    "res3", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];
/// Level names `dmesg -x` prints.
const DMESG_LEVELS: &[&str] = &["emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"];

/// Reads a saved log line by line (pure: the caller does the I/O). Records come out with their origin
/// as the file's format can prove it.
#[derive(Debug, Default)]
pub struct LineParser {
    format: Option<Format>,
    demoted: bool,
    prev_dmesg_ts: Option<String>,
    entry: Option<JournalFields>,
    binary_field: Option<String>,
}

impl LineParser {
    /// A parser that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The file's format so far ([`Format::Text`] before the first line, and after a line broke it).
    pub fn format(&self) -> Format {
        self.format.unwrap_or(Format::Text)
    }

    /// Feeds one line (without its newline). `None` for anything that is not an AppArmor record (yet:
    /// a journal export entry ends at an empty line).
    pub fn line(&mut self, line: &str) -> Option<Result<AuditRecord, ParseError>> {
        let format = match self.format {
            Some(f) => f,
            None if line.trim().is_empty() => return None,
            None => *self.format.insert(detect(line)),
        };
        let parsed = match format {
            Format::Kmsg => kmsg_line(line),
            Format::AuditLog => {
                fit_if(line.is_empty() || record::audit_log_prefix(line).is_some(), || record::parse_audit_log_line(line))
            }
            Format::JournalJson => self.json_line(line),
            Format::JournalExport => self.export_line(line),
            Format::DmesgDecoded => self.dmesg_line(line),
            Format::Text => Some(record::parse_text(line)),
        };
        match parsed {
            Some(r) => r.transpose(),
            None => {
                // This line is not what the format's writer produces: nothing in the file proves anything.
                self.format = Some(Format::Text);
                self.demoted = true;
                self.entry = None;
                self.binary_field = None;
                record::parse_text(line).transpose()
            }
        }
    }

    /// True right after a journal export line that names a binary field: the caller reads its 64-bit
    /// little-endian length and data and hands the data to [`LineParser::binary`].
    pub fn wants_binary(&self) -> bool {
        self.binary_field.is_some()
    }

    /// The data of the binary field [`LineParser::wants_binary`] asked for.
    pub fn binary(&mut self, data: &[u8]) {
        if let Some(name) = self.binary_field.take() {
            self.entry.get_or_insert_default().set(&name, String::from_utf8_lossy(data).into_owned());
        }
    }

    /// The end of the input: a journal export entry not followed by an empty line.
    pub fn finish(&mut self) -> Option<Result<AuditRecord, ParseError>> {
        self.binary_field = None;
        self.entry.take().and_then(|e| e.record())
    }

    /// True once after a line broke the file's format: records already read from it must lose their
    /// kernel origin (see [`demote`]).
    pub fn take_demotion(&mut self) -> bool {
        std::mem::take(&mut self.demoted)
    }

    fn json_line(&mut self, line: &str) -> Fit {
        if line.trim().is_empty() {
            return Some(Ok(None));
        }
        let obj = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line).ok()?;
        let mut fields = JournalFields::default();
        for (k, v) in &obj {
            if let Some(v) = json_field(v) {
                fields.set(k, v);
            }
        }
        Some(fields.record().transpose())
    }

    fn export_line(&mut self, line: &str) -> Fit {
        if self.binary_field.take().is_some() {
            // The caller did not read the binary value: the stream is not what journalctl wrote.
            return None;
        }
        if line.is_empty() {
            return Some(self.entry.take().and_then(|e| e.record()).transpose());
        }
        match line.split_once('=') {
            Some((key, value)) if is_journal_field(key) => {
                self.entry.get_or_insert_default().set(key, value.to_owned());
                Some(Ok(None))
            }
            None if is_journal_field(line) => {
                self.binary_field = Some(line.to_owned());
                Some(Ok(None))
            }
            _ => None,
        }
    }

    fn dmesg_line(&mut self, line: &str) -> Fit {
        if line.trim().is_empty() {
            return Some(Ok(None));
        }
        if line.starts_with([' ', '\t']) {
            // util-linux indents the further lines of a multi-line record: whatever they say, a process
            // may have written it.
            return Some(record::parse_text(line.trim_start()));
        }
        let (facility, rest) = dmesg_prefix(line)?;
        let (ts, msg) = dmesg_timestamp(rest);
        // The same timestamp as the line before: possibly the next line of one multi-line record.
        let continues = ts.is_some() && ts == self.prev_dmesg_ts.as_deref();
        self.prev_dmesg_ts = ts.map(str::to_owned);
        Some(match facility {
            "kern" if ts.is_some() && !continues => record::parse_kernel_message(msg),
            "kern" => record::parse_text(msg),
            _ => record::parse_written_by_process(msg),
        })
    }
}

/// Takes the kernel origin away from records of a file whose format broke: they become unproven
/// (userspace-reported ones stay so).
pub fn demote(records: &mut [AuditRecord]) {
    for r in records {
        if r.origin == record::Origin::Kernel {
            r.origin = record::Origin::Unproven;
        }
    }
}

/// What a line parsed to, or `None` when it does not fit the file's format.
type Fit = Option<Result<Option<AuditRecord>, ParseError>>;

/// `parse()` when the line fits.
fn fit_if(fits: bool, parse: impl FnOnce() -> Result<Option<AuditRecord>, ParseError>) -> Fit {
    fits.then(parse)
}

fn kmsg_line(line: &str) -> Fit {
    match split_kmsg(line) {
        Some((hdr, msg)) => Some(record::parse_kmsg(&hdr, msg)),
        // ` KEY=value` lines carry a record's device properties.
        None => fit_if(line.is_empty() || line.starts_with(' '), || Ok(None)),
    }
}

/// The format the first line of a file is in.
fn detect(line: &str) -> Format {
    if line.starts_with('{') {
        Format::JournalJson
    } else if split_kmsg(line).is_some() {
        Format::Kmsg
    } else if record::audit_log_prefix(line).is_some() {
        Format::AuditLog
    } else if line.split_once('=').is_some_and(|(k, _)| is_journal_field(k)) {
        Format::JournalExport
    } else if dmesg_prefix(line).is_some() {
        Format::DmesgDecoded
    } else {
        Format::Text
    }
}

/// A journal field name: `[A-Z0-9_]`, not starting with a digit, at most 64 bytes.
fn is_journal_field(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// `kern  :notice: REST` → (`kern`, `REST`).
fn dmesg_prefix(line: &str) -> Option<(&str, &str)> {
    let (facility, rest) = line.split_once(':')?;
    let facility = facility.trim_end_matches(' ');
    let (level, rest) = rest.split_once(':')?;
    let known = DMESG_FACILITIES.contains(&facility) && DMESG_LEVELS.contains(&level.trim_end_matches(' '));
    known.then_some(())?;
    Some((facility, rest.strip_prefix(' ')?))
}

/// `[   12.345678] MESSAGE` → (`12.345678`, `MESSAGE`); without a monotonic timestamp, (None, whole).
fn dmesg_timestamp(rest: &str) -> (Option<&str>, &str) {
    let parsed = rest.strip_prefix('[').and_then(|r| r.split_once(']')).and_then(|(ts, msg)| {
        let ts = ts.trim_start();
        let (secs, frac) = ts.split_once('.')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(secs) && digits(frac)).then(|| (ts, msg.strip_prefix(' ').unwrap_or(msg)))
    });
    match parsed {
        Some((ts, msg)) => (Some(ts), msg),
        None => (None, rest),
    }
}

/// A JSON field value as text: a string, or the byte array journalctl prints for binary data. Anything
/// else (a field with several values, a number) is not used.
fn json_field(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => {
            let bytes: Option<Vec<u8>> = items.iter().map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok())).collect();
            bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
        }
        _ => None,
    }
}

/// The fields of one journal entry that decide a record's origin (others are not kept).
#[derive(Debug, Default)]
struct JournalFields {
    message: Option<String>,
    transport: Option<String>,
    audit_type: Option<String>,
    facility: Option<String>,
}

impl JournalFields {
    /// Keeps the first value of the fields it needs.
    fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            "MESSAGE" => &mut self.message,
            "_TRANSPORT" => &mut self.transport,
            "_AUDIT_TYPE" => &mut self.audit_type,
            "SYSLOG_FACILITY" => &mut self.facility,
            _ => return,
        };
        slot.get_or_insert(value);
    }

    /// The record, its origin from journald's trusted fields: `_TRANSPORT=audit` entries carry the
    /// netlink type in `_AUDIT_TYPE` and `TYPE_NAME text` in MESSAGE; `_TRANSPORT=kernel` entries are
    /// kmsg records whose facility journald copied into `SYSLOG_FACILITY`; other transports are processes.
    fn record(&self) -> Option<Result<AuditRecord, ParseError>> {
        let msg = self.message.as_deref()?;
        if !looks_like_apparmor(msg) {
            return None;
        }
        let parsed = match (self.transport.as_deref(), self.facility.as_deref()) {
            (Some("audit"), _) => match self.audit_type.as_deref().and_then(|t| t.parse().ok()) {
                Some(ty) => record::parse_typed(ty, msg.split_once(' ').map_or("", |(_, text)| text)),
                None => record::parse_text(msg),
            },
            (Some("kernel"), Some("0")) => record::parse_kernel_message(msg),
            (Some("kernel"), None) | (None, _) => record::parse_text(msg),
            (Some(_), _) => record::parse_written_by_process(msg),
        };
        parsed.transpose()
    }
}

// ---------------------------------------------------------------------------------------------------
// The I/O shell: reading a saved log.

/// The records of one saved log and what its format proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// The parsed records, in order, each with its origin.
    pub records: Vec<AuditRecord>,
    /// AppArmor lines that could not be parsed.
    pub parse_errors: u64,
    /// The file's format (plain text when a line broke the one its first line had).
    pub format: Format,
    /// True when a line broke the format the file started with.
    pub demoted: bool,
}

impl ReadResult {
    fn keep(&mut self, parsed: Option<Result<AuditRecord, ParseError>>) {
        match parsed {
            Some(Ok(rec)) => self.records.push(rec),
            Some(Err(_)) => self.parse_errors += 1,
            None => {}
        }
    }
}

/// Largest saved log `suggest --from` reads: auditd rotates at 8 MiB by default and a day of
/// `journalctl -o export` is tens of MiB; `/dev/zero` or a wrong path must end, not fill memory.
pub const MAX_SAVED_LOG: u64 = 1024 * 1024 * 1024;

/// A reader that fails once `cap` bytes were read or once `stopped()` says so (Ctrl-C), so reading
/// an endless or huge input ends with a clear error instead of running on.
pub struct Guarded<R, F> {
    inner: R,
    read: u64,
    cap: u64,
    stopped: F,
}

impl<R: Read, F: Fn() -> bool> Guarded<R, F> {
    /// Wraps `inner`.
    pub fn new(inner: R, cap: u64, stopped: F) -> Self {
        Guarded { inner, read: 0, cap, stopped }
    }
}

impl<R: Read, F: Fn() -> bool> Read for Guarded<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if (self.stopped)() {
            return Err(io::Error::other("interrupted"));
        }
        if self.read >= self.cap {
            return Err(io::Error::other(format!("larger than {} bytes; not a saved log", self.cap)));
        }
        let room = usize::try_from(self.cap - self.read).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..room])?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Reads a saved log (kmsg dump, auditd log, journalctl JSON or export, dmesg -x, any text). Lines over
/// [`MAX_LINE`] bytes, and journal binary fields as large, are skipped whole.
pub fn read_records(reader: impl BufRead) -> io::Result<ReadResult> {
    let mut reader = reader;
    let mut parser = LineParser::new();
    let mut out = ReadResult { records: Vec::new(), parse_errors: 0, format: Format::Text, demoted: false };
    let mut buf = Vec::new();
    while let Some(line) = next_line(&mut reader, &mut buf)? {
        let parsed = parser.line(&line);
        if parser.take_demotion() {
            demote(&mut out.records);
            out.demoted = true;
        }
        out.keep(parsed);
        if parser.wants_binary() {
            if let Some(data) = binary_value(&mut reader)? {
                parser.binary(&data);
            }
        }
    }
    out.keep(parser.finish());
    out.format = parser.format();
    Ok(out)
}

/// One line without its newline, lossily UTF-8; `None` at the end. A line longer than [`MAX_LINE`] is
/// skipped whole.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<String>> {
    loop {
        buf.clear();
        let n = reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
        if n == 0 {
            return Ok(None);
        }
        let ended = buf.last() == Some(&b'\n');
        if ended {
            buf.pop();
        }
        if ended || buf.len() <= MAX_LINE {
            return Ok(Some(String::from_utf8_lossy(buf).into_owned()));
        }
        skip_past_newline(reader)?;
    }
}

fn skip_past_newline(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

/// A journal export binary value: a 64-bit little-endian length, the data, a newline. `None` at the end
/// of the input; an empty value for one over [`MAX_LINE`] bytes (skipped).
fn binary_value(reader: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 8];
    if let Err(e) = reader.read_exact(&mut len) {
        return if e.kind() == io::ErrorKind::UnexpectedEof { Ok(None) } else { Err(e) };
    }
    let len = u64::from_le_bytes(len);
    let mut data = Vec::new();
    if len > MAX_LINE as u64 {
        io::copy(&mut reader.by_ref().take(len), &mut io::sink())?;
    } else {
        reader.by_ref().take(len).read_to_end(&mut data)?;
    }
    let mut nl = [0u8; 1];
    let _ = reader.read_exact(&mut nl);
    Ok(Some(data))
}

#[cfg(test)]
mod tests;
