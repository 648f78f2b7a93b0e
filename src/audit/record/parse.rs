//! The wrappers a record arrives in (kmsg, dmesg, audit.log, netlink) unwrapped down to its type,
//! stamp and body; the body's fields read into an [`AuditRecord`].

use super::{AUDIT_TYPE_AVC, AUDIT_TYPE_USER_AVC, AuditRecord, AuditStamp, Origin, ParseError, is_user_type};
use crate::audit::fields::{Tokens, apply_field};

/// The header fields of one `/dev/kmsg` record: `PRI,SEQ,TIMESTAMP_USEC,FLAGS[,...];MESSAGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KmsgHeader {
    /// Syslog priority: facility << 3 | level. Facility 0 is the kernel: a process writing to /dev/kmsg
    /// gets LOG_USER unless it asks for another non-zero facility (`devkmsg_write`), so facility 0 cannot
    /// be forged from user space. (It still covers USER_AVC text the kernel echoes: see [`Origin`].)
    pub priority: u32,
    /// The record's sequence number: strictly increasing, gaps mean records were overwritten.
    pub seq: u64,
    /// Microseconds since boot.
    pub ts_usec: u64,
}

impl KmsgHeader {
    /// The syslog facility (0 = kernel).
    pub fn facility(&self) -> u32 {
        self.priority >> 3
    }
}

/// Splits a `/dev/kmsg` line into its header and message. Returns `None` when the line is not in kmsg
/// form (for example a continuation line starting with a space, which carries device properties).
pub fn split_kmsg(line: &str) -> Option<(KmsgHeader, &str)> {
    let semi = line.find(';')?;
    let (head, msg) = (&line[..semi], &line[semi + 1..]);
    let mut parts = head.split(',');
    let priority = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let ts_usec = parts.next()?.parse().ok()?;
    // The flags field ('-' or 'c') must exist; later fields (caller id) are allowed.
    parts.next()?;
    Some((KmsgHeader { priority, seq, ts_usec }, msg))
}

/// Undoes `/dev/kmsg`'s escaping of the message text: it prints a backslash and any non-printable byte
/// as `\xHH`. (A quoted audit value may legitimately contain a backslash, e.g. `name="/tmp/a\b"`.)
pub fn unescape_kmsg(msg: &str) -> std::borrow::Cow<'_, str> {
    if !msg.contains("\\x") {
        return std::borrow::Cow::Borrowed(msg);
    }
    let b = msg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let (Some(hi), Some(lo)) = ((b[i + 2] as char).to_digit(16), (b[i + 3] as char).to_digit(16)) {
                out.push((hi * 16 + lo) as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The cheap test every line passes through first: no allocation, one substring search.
pub fn looks_like_apparmor(line: &str) -> bool {
    line.contains("apparmor=")
}

/// Parses a netlink audit message whose type came from the netlink header, which the sender cannot set
/// to 1400. Types other than 1400 (AVC) and 1107 (USER_AVC) are not AppArmor decisions: `Ok(None)`.
pub fn parse_netlink_payload(msg_type: u16, payload: &str) -> Result<Option<AuditRecord>, ParseError> {
    parse_typed(msg_type, payload)
}

/// Parses one `/dev/kmsg` record: its header and its message as the device prints it (escaped).
///
/// A kernel-facility record that starts `audit: type=N audit(` is of type N — the kernel wrote that
/// prefix. Any other kernel-facility text is [`Origin::Unproven`]; a record a process wrote (facility
/// not 0) is at most [`Origin::Userspace`].
pub fn parse_kmsg(hdr: &KmsgHeader, msg: &str) -> Result<Option<AuditRecord>, ParseError> {
    if !looks_like_apparmor(msg) {
        return Ok(None);
    }
    let msg = unescape_kmsg(msg);
    if hdr.facility() != 0 {
        return parse_written_by_process(&msg);
    }
    parse_kernel_message(&msg)
}

/// Parses the text of a kernel log record whose kernel facility was proven elsewhere (kmsg header,
/// journald's `SYSLOG_FACILITY=0`, `dmesg -x`), already unescaped: typed when it starts the way the
/// kernel prints an audit record, otherwise [`parse_text`].
pub fn parse_kernel_message(msg: &str) -> Result<Option<AuditRecord>, ParseError> {
    match kmsg_audit_prefix(msg) {
        Some((ty, rest)) => parse_typed(ty, rest),
        None => parse_text(msg),
    }
}

/// Parses text a process is known to have written (a kmsg record with a user facility, a journal entry
/// of the syslog or native transport): whatever it says, at most [`Origin::Userspace`].
pub fn parse_written_by_process(line: &str) -> Result<Option<AuditRecord>, ParseError> {
    parse_text_as(line, true)
}

/// Parses one line of auditd's log. auditd writes one record per line (it replaces newlines in a
/// message with spaces) starting with the type it read from the netlink header, so a line that starts
/// `type=AVC msg=audit(` is a kernel AVC. A line of another shape is text of unknown provenance.
pub fn parse_audit_log_line(line: &str) -> Result<Option<AuditRecord>, ParseError> {
    if !looks_like_apparmor(line) {
        return Ok(None);
    }
    match audit_log_prefix(line) {
        Some((ty, rest)) => parse_typed(ty, rest),
        None => parse_text(line),
    }
}

/// Parses one line on its own, in whichever form it has: a kmsg record, an auditd log line, otherwise
/// text of unknown provenance ([`parse_text`]). `Ok(None)` for a line that is not an AppArmor record
/// (decided without allocating), `Err` for an AppArmor record that is malformed.
///
/// A file is a different matter: a line in the middle of plain dmesg output can have any shape (a
/// USER_AVC's text after a newline prints as a line of its own), so files go through
/// [`super::saved::LineParser`], which trusts a self-describing form only when the whole file has it.
pub fn parse_line(line: &str) -> Result<Option<AuditRecord>, ParseError> {
    match split_kmsg(line) {
        Some((hdr, msg)) => parse_kmsg(&hdr, msg),
        None => parse_audit_log_line(line),
    }
}

/// Parses text whose provenance nobody can prove (plain dmesg, syslog, journal short output): the
/// record is [`Origin::Unproven`], or [`Origin::Userspace`] when its own text says it is a user message.
pub fn parse_text(line: &str) -> Result<Option<AuditRecord>, ParseError> {
    parse_text_as(line, false)
}

/// The type of a kernel log message that starts the way the kernel prints an audit record
/// (`audit: type=N audit(`, or `type=N audit(` on kernels before the `audit: ` prefix), and the text
/// from `audit(` on.
pub fn kmsg_audit_prefix(msg: &str) -> Option<(u16, &str)> {
    let rest = msg.strip_prefix("audit: ").unwrap_or(msg).strip_prefix("type=")?;
    let (num, rest) = rest.split_once(' ')?;
    let ty = parse_digits(num)?;
    rest.starts_with("audit(").then_some((ty, rest))
}

/// The type of a line that starts the way auditd writes a record (`[node=NAME ]type=NAME msg=audit(`),
/// and the text from `audit(` on. A type name other than `AVC`, `USER_AVC` or `UNKNOWN[N]` gives 0
/// (a record, but not one of ours).
pub fn audit_log_prefix(line: &str) -> Option<(u16, &str)> {
    let line = match line.strip_prefix("node=") {
        Some(rest) => rest.split_once(' ')?.1,
        None => line,
    };
    let (name, rest) = line.strip_prefix("type=")?.split_once(' ')?;
    let rest = rest.strip_prefix("msg=")?;
    if !rest.starts_with("audit(") {
        return None;
    }
    let ty = match name {
        "AVC" => AUDIT_TYPE_AVC,
        "USER_AVC" => AUDIT_TYPE_USER_AVC,
        other => other.strip_prefix("UNKNOWN[").and_then(|v| v.strip_suffix(']')).and_then(parse_digits).unwrap_or(0),
    };
    Some((ty, rest))
}

/// A record whose type was read where its sender cannot write (a netlink header, the kernel's own prefix,
/// auditd's or journald's type field): 1400 is the kernel's, 1107 a process's, others are not ours.
/// `text` starts at the `audit(` stamp, when there is one.
pub(in crate::audit) fn parse_typed(ty: u16, text: &str) -> Result<Option<AuditRecord>, ParseError> {
    let origin = match ty {
        AUDIT_TYPE_AVC => Origin::Kernel,
        AUDIT_TYPE_USER_AVC => Origin::Userspace,
        _ => return Ok(None),
    };
    if !looks_like_apparmor(text) {
        return Ok(None);
    }
    let (timestamp, body) = if text.starts_with("audit(") {
        let (stamp, end) = stamp_at(text, 0)?;
        (Some(stamp), &text[end..])
    } else {
        (None, text)
    };
    let rec = AuditRecord { audit_type: Some(ty), origin, timestamp, ..AuditRecord::default() };
    match origin {
        Origin::Userspace => Ok(user_record(body, rec)),
        _ => kernel_record(body, rec),
    }
}

fn parse_text_as(line: &str, process_written: bool) -> Result<Option<AuditRecord>, ParseError> {
    if !looks_like_apparmor(line) {
        return Ok(None);
    }
    let first_key = line.find("apparmor=").unwrap_or(0);
    let claimed = record_type(&line[..first_key]);
    if claimed.is_some_and(|t| t != AUDIT_TYPE_AVC && !is_user_type(t)) {
        return Ok(None);
    }
    let (timestamp, body_start) = match find_stamp(line)? {
        Some((stamp, end)) => (Some(stamp), end),
        None => (None, 0),
    };
    let body = &line[body_start..];
    let Some(start) = find_apparmor_key(body, true) else {
        // `apparmor=` only inside some other token: not a record of ours.
        return Ok(None);
    };
    // A user message: its type says so, or its AppArmor fields open a `msg='...'`.
    let user_shaped = claimed.is_some_and(is_user_type) || (start > 0 && body.as_bytes()[start - 1] == b'\'');
    let origin = if process_written || user_shaped { Origin::Userspace } else { Origin::Unproven };
    let rec = AuditRecord { audit_type: claimed, origin, timestamp, ..AuditRecord::default() };
    if user_shaped { Ok(user_record(body, rec)) } else { kernel_record(body, rec) }
}

/// The AppArmor fields of a kernel-written body: `apparmor="DENIED" operation=...`.
fn kernel_record(body: &str, mut rec: AuditRecord) -> Result<Option<AuditRecord>, ParseError> {
    let Some(start) = find_apparmor_key(body, false) else { return Ok(None) };
    let mut seen_decision = false;
    for tok in Tokens::new(&body[start..], false) {
        let (key, value) = tok?;
        apply_field(&mut rec, key, value, &mut seen_decision)?;
    }
    if !seen_decision {
        // find_apparmor_key guarantees the key is the first token; reaching here means it was empty.
        return Err(ParseError::EmptyDecision);
    }
    Ok(Some(rec))
}

/// A user message: `pid=N uid=N auid=N ses=N subj=LABEL msg='TEXT'`. Everything before `msg='` is the
/// kernel's; TEXT is the sender's, read up to its first `'`. A malformed token in TEXT ends it (the
/// sender's syntax errors are not the kernel's parse errors); no `apparmor=` there means no record.
fn user_record(body: &str, mut rec: AuditRecord) -> Option<AuditRecord> {
    let at = body.find("msg='")?;
    let sender = Sender::parse(&body[..at]);
    let text = &body[at + "msg='".len()..];
    let start = find_apparmor_key(text, false)?;
    let mut seen_decision = false;
    for tok in Tokens::new(&text[start..], true) {
        let Ok((key, value)) = tok else { break };
        if apply_field(&mut rec, key, value, &mut seen_decision).is_err() {
            break;
        }
    }
    if !seen_decision {
        return None;
    }
    rec.reported_pid = rec.pid.take();
    rec.pid = sender.pid;
    rec.uid = sender.uid;
    rec.sender_label = sender.label;
    Some(rec)
}

/// The kernel-stamped identity of a user message's sender.
#[derive(Debug, Default)]
struct Sender {
    pid: Option<u32>,
    uid: Option<u32>,
    label: Option<String>,
}

impl Sender {
    /// Reads `pid=` and `uid=` (first occurrence) and the `subj=` label (the rest: AppArmor labels may
    /// hold a space, as in `name (enforce)`). The kernel prints pid and uid before subj, so nothing in
    /// the label can stand in for them.
    fn parse(outer: &str) -> Sender {
        let mut s = Sender::default();
        let mut pos = 0;
        for word in outer.split(' ') {
            let here = pos;
            pos += word.len() + 1;
            if word.starts_with("subj=") {
                let label = outer[here + "subj=".len()..].trim();
                s.label = (!label.is_empty()).then(|| label.to_owned());
                break;
            }
            match word.split_once('=') {
                Some(("pid", v)) if s.pid.is_none() => s.pid = parse_digits(v),
                Some(("uid", v)) if s.uid.is_none() => s.uid = parse_digits(v),
                _ => {}
            }
        }
        s
    }
}

/// Finds `audit(SECS.MILLIS:SERIAL):` before the first `apparmor=` and returns the stamp and the byte
/// offset just after it.
fn find_stamp(line: &str) -> Result<Option<(AuditStamp, usize)>, ParseError> {
    // Only look before the first `apparmor=`: a stamp-like text later would be inside a value.
    let limit = line.find("apparmor=").unwrap_or(line.len());
    match line[..limit].find("audit(") {
        Some(pos) => stamp_at(line, pos).map(Some),
        None => Ok(None),
    }
}

/// Parses the stamp that starts at `pos` (at `audit(`).
fn stamp_at(line: &str, pos: usize) -> Result<(AuditStamp, usize), ParseError> {
    let rest = &line[pos + "audit(".len()..];
    let close = rest.find(')').ok_or(ParseError::BadStamp)?;
    let inner = &rest[..close];
    let (time, serial) = inner.split_once(':').ok_or(ParseError::BadStamp)?;
    let (secs, frac) = time.split_once('.').unwrap_or((time, "0"));
    let secs: u64 = parse_digits(secs).ok_or(ParseError::BadStamp)?;
    let millis: u32 = parse_digits(frac).ok_or(ParseError::BadStamp)?;
    let serial: u64 = parse_digits(serial).ok_or(ParseError::BadStamp)?;
    if millis >= 1000 {
        return Err(ParseError::BadStamp);
    }
    let mut end = pos + "audit(".len() + close + 1;
    // The stamp is followed by ':' in every wrapper; tolerate its absence.
    if line[end..].starts_with(':') {
        end += 1;
    }
    Ok((AuditStamp { secs, millis, serial }, end))
}

fn parse_digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The type a text claims before its AppArmor fields: `type=1400` / `type=AVC` / `type=USER_AVC` /
/// `type=UNKNOWN[1400]`, or journald's `audit[PID]: AVC`. A claim, not a proof.
fn record_type(prefix: &str) -> Option<u16> {
    let Some(pos) = prefix.find("type=") else {
        // journald's rendering of a kernel record: `audit[PID]: AVC apparmor=...`.
        let p = prefix.trim_end();
        return if p.ends_with("USER_AVC") {
            Some(AUDIT_TYPE_USER_AVC)
        } else if p.ends_with(" AVC") || p == "AVC" {
            Some(AUDIT_TYPE_AVC)
        } else {
            None
        };
    };
    let v = prefix[pos + 5..].split([' ', ':']).next()?;
    match v {
        "AVC" => Some(AUDIT_TYPE_AVC),
        "USER_AVC" => Some(AUDIT_TYPE_USER_AVC),
        _ => {
            let v = v.strip_prefix("UNKNOWN[").and_then(|v| v.strip_suffix(']')).unwrap_or(v);
            v.parse().ok()
        }
    }
}

/// The offset of an `apparmor=` key that starts a token (at the start, or after a space or tab; with
/// `after_quote`, also after the `'` that opens a user message), so `name="/x/apparmor=y"` does not count.
fn find_apparmor_key(body: &str, after_quote: bool) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut from = 0;
    while let Some(rel) = body[from..].find("apparmor=") {
        let at = from + rel;
        if at == 0 || matches!(bytes[at - 1], b' ' | b'\t') || (after_quote && bytes[at - 1] == b'\'') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}
