//! A pure parser of AppArmor audit records.
//!
//! The same record reaches us in several wrappers:
//!
//! * `/dev/kmsg`: `5,1234,5678,-;audit: type=1400 audit(1795834070.095:3): apparmor="DENIED" ...`
//! * dmesg / syslog / journal: `[ 12.34] audit: type=1400 audit(...): apparmor=...`, `kernel: audit: ...`,
//!   `audit[315954]: AVC apparmor=...`
//! * audit.log: `type=AVC msg=audit(...): apparmor="DENIED" ...`, and for userspace mediators (dbus)
//!   `type=USER_AVC msg=audit(...): pid=1 uid=0 ... msg='apparmor="DENIED" operation="dbus_method_call" ...'`
//! * a netlink payload: `audit(...): apparmor="DENIED" ...` with the type carried by the netlink header.
//!
//! The body is a list of `key=value` pairs. The kernel prints a string it does not trust (a path, a
//! command name, a profile name) quoted when every byte is printable ASCII other than `"` and space, and
//! otherwise as bare uppercase hex: `name=2F746D702F612062` is `"/tmp/a b"`. Because such values can never
//! contain a space or a quote, a hostile file name or command name cannot inject a field — the tokenizer
//! below relies on that and takes the first occurrence of a key.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kernel's audit record type for AppArmor (`AUDIT_AVC`-range, `AUDIT_APPARMOR_*` share 1400).
pub const AUDIT_TYPE_AVC: u16 = 1400;
/// The audit record type userspace mediators (dbus-daemon) use for AppArmor decisions.
pub const AUDIT_TYPE_USER_AVC: u16 = 1107;

/// What AppArmor decided (the `apparmor=` field).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Decision {
    /// An `audit` rule matched; the access was allowed and logged on purpose.
    Audit,
    /// Complain mode: the access would have been denied but was allowed.
    Allowed,
    /// Enforce mode: the access was denied.
    #[default]
    Denied,
    /// A hint record.
    Hint,
    /// Policy management (load, replace, remove).
    Status,
    /// An internal error.
    Error,
    /// The task was killed (kill mode).
    Killed,
    /// Any other value, kept verbatim so a new kernel does not turn records into errors.
    Other(String),
}

impl Decision {
    /// Parses the value of the `apparmor=` field.
    pub fn from_field(s: &str) -> Decision {
        match s {
            "AUDIT" => Decision::Audit,
            "ALLOWED" => Decision::Allowed,
            "DENIED" => Decision::Denied,
            "HINT" => Decision::Hint,
            "STATUS" => Decision::Status,
            "ERROR" => Decision::Error,
            "KILLED" => Decision::Killed,
            other => Decision::Other(other.to_owned()),
        }
    }

    /// The kernel's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Decision::Audit => "AUDIT",
            Decision::Allowed => "ALLOWED",
            Decision::Denied => "DENIED",
            Decision::Hint => "HINT",
            Decision::Status => "STATUS",
            Decision::Error => "ERROR",
            Decision::Killed => "KILLED",
            Decision::Other(s) => s,
        }
    }

    /// True for the records the monitor is about: a denial, or what complain mode let through.
    pub fn is_violation(&self) -> bool {
        matches!(self, Decision::Denied | Decision::Allowed | Decision::Killed)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Decision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Decision::from_field(&s))
    }
}

/// The `audit(SECONDS.MILLIS:SERIAL)` stamp: when the kernel emitted the record, and the serial that
/// ties together the several records of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AuditStamp {
    /// Seconds since the Unix epoch.
    pub secs: u64,
    /// Milliseconds within that second.
    pub millis: u32,
    /// The audit event serial number.
    pub serial: u64,
}

impl AuditStamp {
    /// The stamp as a `SystemTime`.
    pub fn system_time(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.secs) + std::time::Duration::from_millis(self.millis.into())
    }

    /// RFC 3339 with milliseconds, UTC (`2026-11-28T03:07:50.095Z`).
    pub fn rfc3339(&self) -> String {
        humantime::format_rfc3339_millis(self.system_time()).to_string()
    }
}

/// One parsed AppArmor audit record. Every field except `decision` is optional because each operation
/// class logs a different subset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The audit record type when the wrapper said (1400 kernel AVC, 1107 USER_AVC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_type: Option<u16>,
    /// When and which event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<AuditStamp>,
    /// `apparmor=`: DENIED, ALLOWED, AUDIT, STATUS, ...
    pub decision: Decision,
    /// `operation=`: open, exec, capable, create, connect, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// `class=` (newer kernels): file, net, cap, signal, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// `namespace=`: the policy namespace, when not the root one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `profile=`: the confining profile (label), hex-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// `name=`: the object (usually a path), hex-decoded; `None` for `name=(null)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `requested_mask=` (or `requested=` on newer kernels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_mask: Option<String>,
    /// `denied_mask=` (or `denied=` on newer kernels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_mask: Option<String>,
    /// `pid=`: the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `comm=`: the task's command name, hex-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// `capability=`: the capability number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<u32>,
    /// `capname=`: the capability name (`net_raw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capname: Option<String>,
    /// `family=`: socket address family (`inet`, `unix`, `netlink`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// `sock_type=`: `stream`, `dgram`, `raw`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock_type: Option<String>,
    /// `protocol=`: the socket protocol number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    /// `info=`: the kernel's explanation (`no new privs`, `Failed name lookup - disconnected path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
    /// `error=`: the errno the operation failed with (negative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<i64>,
    /// `target=`: the exec transition target, hex-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `peer=`: the other side of a signal/ptrace/unix operation, hex-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// `signal=`: the signal name for signal mediation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// `fsuid=`: the task's filesystem uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsuid: Option<u32>,
    /// `ouid=`: the file owner's uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ouid: Option<u32>,
}

impl AuditRecord {
    /// The mask that was refused (`denied_mask`), else what was asked (`requested_mask`).
    pub fn effective_mask(&self) -> Option<&str> {
        self.denied_mask.as_deref().or(self.requested_mask.as_deref())
    }
}

/// Why an AppArmor record could not be parsed. The caller counts these; they are never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `audit(` was present but not followed by `SECONDS.MILLIS:SERIAL):`.
    #[error("malformed audit(...) stamp")]
    BadStamp,
    /// A quoted value had no closing quote (the kernel truncates lines past about 1 KiB).
    #[error("unterminated quoted value for field {0:?}")]
    Unterminated(String),
    /// A token that is not `key=value`.
    #[error("token without '=' at byte {0}")]
    MissingEquals(usize),
    /// A numeric field with a non-numeric value.
    #[error("field {0:?} is not a number")]
    BadNumber(String),
    /// `apparmor=` with an empty value.
    #[error("empty apparmor= value")]
    EmptyDecision,
}

/// The header fields of one `/dev/kmsg` record: `PRI,SEQ,TIMESTAMP_USEC,FLAGS[,...];MESSAGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KmsgHeader {
    /// Syslog priority: facility << 3 | level. Facility 0 is the kernel; userspace writes to /dev/kmsg
    /// are forced to a non-zero facility, so facility 0 cannot be forged from userspace.
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

/// Parses one line in any of the supported forms.
///
/// Returns `Ok(None)` for a line that is not an AppArmor record (decided without allocating), `Err` for
/// an AppArmor record that is malformed, `Ok(Some)` otherwise.
pub fn parse_line(line: &str) -> Result<Option<AuditRecord>, ParseError> {
    parse_with_type(line, None)
}

/// Parses a netlink audit message payload whose type came from the netlink header. Types other than
/// 1400 (AVC) and 1107 (USER_AVC) are not AppArmor and give `Ok(None)`.
pub fn parse_netlink_payload(msg_type: u16, payload: &str) -> Result<Option<AuditRecord>, ParseError> {
    if msg_type != AUDIT_TYPE_AVC && msg_type != AUDIT_TYPE_USER_AVC {
        return Ok(None);
    }
    parse_with_type(payload, Some(msg_type))
}

/// The cheap test every line passes through first: no allocation, one substring search.
pub fn looks_like_apparmor(line: &str) -> bool {
    line.contains("apparmor=")
}

fn parse_with_type(line: &str, known_type: Option<u16>) -> Result<Option<AuditRecord>, ParseError> {
    if !looks_like_apparmor(line) {
        return Ok(None);
    }
    // Drop the kmsg prefix when present so its fields never look like part of the record.
    let line = match split_kmsg(line) {
        Some((_, msg)) => msg,
        None => line,
    };
    let (stamp, body_start) = match find_stamp(line)? {
        Some((stamp, end)) => (Some(stamp), end),
        None => (None, 0),
    };
    let first_key = line.find("apparmor=").unwrap_or(0);
    let audit_type = known_type.or_else(|| record_type(&line[..first_key]));
    let body = &line[body_start..];
    let Some(start) = find_apparmor_key(body) else {
        // `apparmor=` only inside some other token: not a record of ours.
        return Ok(None);
    };
    // In a USER_AVC the AppArmor fields sit inside msg='...'; the closing quote ends them.
    let in_user_msg = start > 0 && body.as_bytes()[start - 1] == b'\'';
    let mut rec = AuditRecord { audit_type, timestamp: stamp, ..AuditRecord::default() };
    let mut seen_decision = false;
    for tok in Tokens::new(&body[start..], in_user_msg) {
        let (key, value) = tok?;
        apply_field(&mut rec, key, value, &mut seen_decision)?;
    }
    if !seen_decision {
        // find_apparmor_key guarantees the key is the first token; reaching here means it was empty.
        return Err(ParseError::EmptyDecision);
    }
    Ok(Some(rec))
}

/// Finds `audit(SECS.MILLIS:SERIAL):` and returns the stamp and the byte offset just after it.
fn find_stamp(line: &str) -> Result<Option<(AuditStamp, usize)>, ParseError> {
    // Only look before the first `apparmor=`: a stamp-like text later would be inside a value.
    let limit = line.find("apparmor=").unwrap_or(line.len());
    let Some(pos) = line[..limit].find("audit(") else { return Ok(None) };
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
    Ok(Some((AuditStamp { secs, millis, serial }, end)))
}

fn parse_digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The record type from a `type=1400` / `type=AVC` / `type=USER_AVC` / `type=UNKNOWN[1400]` prefix.
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

/// The offset of an `apparmor=` key that starts a token (at the start, or after a space or the `'`
/// that opens a USER_AVC msg), so `name="/x/apparmor=y"` does not count.
fn find_apparmor_key(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut from = 0;
    while let Some(rel) = body[from..].find("apparmor=") {
        let at = from + rel;
        if at == 0 || matches!(bytes[at - 1], b' ' | b'\'' | b'\t') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// A value as written: quoted text, or a bare token (number, hex, `(null)`, `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Quoted(&'a str),
    Bare(&'a str),
}

struct Tokens<'a> {
    s: &'a str,
    pos: usize,
    in_user_msg: bool,
    done: bool,
}

impl<'a> Tokens<'a> {
    fn new(s: &'a str, in_user_msg: bool) -> Self {
        Tokens { s, pos: 0, in_user_msg, done: false }
    }
}

/// Bytes that end the AppArmor part of a line: the USER_AVC closing quote is handled separately;
/// 0x1d is auditd's separator before its "enriched" (interpreted) fields.
fn is_end_marker(b: u8) -> bool {
    b == 0x1d || b == b'\n' || b == b'\r'
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Result<(&'a str, Value<'a>), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let bytes = self.s.as_bytes();
        while self.pos < bytes.len() && (bytes[self.pos] == b' ' || bytes[self.pos] == b'\t') {
            self.pos += 1;
        }
        if self.pos >= bytes.len() || is_end_marker(bytes[self.pos]) || (self.in_user_msg && bytes[self.pos] == b'\'') {
            self.done = true;
            return None;
        }
        let key_start = self.pos;
        while self.pos < bytes.len()
            && (bytes[self.pos].is_ascii_alphanumeric() || bytes[self.pos] == b'_' || bytes[self.pos] == b'-')
        {
            self.pos += 1;
        }
        if self.pos == key_start || self.pos >= bytes.len() || bytes[self.pos] != b'=' {
            self.done = true;
            return Some(Err(ParseError::MissingEquals(key_start)));
        }
        let key = &self.s[key_start..self.pos];
        self.pos += 1; // '='
        if self.pos < bytes.len() && bytes[self.pos] == b'"' {
            let vstart = self.pos + 1;
            // The kernel never puts a quote inside a quoted value (it hex-encodes such strings instead).
            match self.s[vstart..].find('"') {
                Some(rel) => {
                    self.pos = vstart + rel + 1;
                    Some(Ok((key, Value::Quoted(&self.s[vstart..vstart + rel]))))
                }
                None => {
                    self.done = true;
                    Some(Err(ParseError::Unterminated(key.to_owned())))
                }
            }
        } else {
            let vstart = self.pos;
            while self.pos < bytes.len()
                && bytes[self.pos] != b' '
                && bytes[self.pos] != b'\t'
                && !is_end_marker(bytes[self.pos])
                && !(self.in_user_msg && bytes[self.pos] == b'\'')
            {
                self.pos += 1;
            }
            Some(Ok((key, Value::Bare(&self.s[vstart..self.pos]))))
        }
    }
}

/// Decodes the kernel's hex form of an untrusted string (`2F746D70` → `/tmp`). `None` when the text is
/// not an even-length run of hex digits. Bytes that are not UTF-8 become U+FFFD.
pub fn decode_hex(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks_exact(2) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out.push((hi * 16 + lo) as u8);
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Encodes a string the way the kernel's `audit_log_untrustedstring` does: quoted when every byte is
/// printable ASCII other than `"` and space, otherwise bare uppercase hex. Used by tests and fixtures.
pub fn encode_untrusted(s: &str) -> String {
    let needs_hex = s.bytes().any(|b| b <= 0x20 || b == b'"' || b >= 0x7f);
    if needs_hex { s.bytes().map(|b| format!("{b:02X}")).collect() } else { format!("\"{s}\"") }
}

/// A string field the kernel may hex-encode: decode bare hex, map `(null)` to `None`.
fn untrusted(v: Value<'_>) -> Option<String> {
    match v {
        Value::Quoted(s) => Some(s.to_owned()),
        Value::Bare("(null)") | Value::Bare("") => None,
        Value::Bare(s) => Some(decode_hex(s).unwrap_or_else(|| s.to_owned())),
    }
}

/// A string field the kernel writes itself (quoted literal); taken verbatim.
fn text(v: Value<'_>) -> Option<String> {
    match v {
        Value::Quoted(s) => Some(s.to_owned()),
        Value::Bare("(null)") | Value::Bare("") => None,
        Value::Bare(s) => Some(s.to_owned()),
    }
}

fn number<T: std::str::FromStr>(key: &str, v: Value<'_>) -> Result<Option<T>, ParseError> {
    let s = match v {
        Value::Quoted(s) | Value::Bare(s) => s,
    };
    if s.is_empty() || s == "?" || s == "(null)" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| ParseError::BadNumber(key.to_owned()))
}

/// Sets a field unless an earlier token already did (first occurrence wins).
fn set_once<T>(slot: &mut Option<T>, v: Option<T>) {
    if slot.is_none() {
        *slot = v;
    }
}

fn apply_field(rec: &mut AuditRecord, key: &str, v: Value<'_>, seen_decision: &mut bool) -> Result<(), ParseError> {
    match key {
        "apparmor" if !*seen_decision => {
            let s = match v {
                Value::Quoted(s) | Value::Bare(s) => s,
            };
            if s.is_empty() {
                return Err(ParseError::EmptyDecision);
            }
            rec.decision = Decision::from_field(s);
            *seen_decision = true;
        }
        "operation" => set_once(&mut rec.operation, text(v)),
        "class" => set_once(&mut rec.class, text(v)),
        "namespace" => set_once(&mut rec.namespace, untrusted(v)),
        "profile" | "label" => set_once(&mut rec.profile, untrusted(v)),
        "name" => set_once(&mut rec.name, untrusted(v)),
        "requested_mask" | "requested" => set_once(&mut rec.requested_mask, text(v)),
        "denied_mask" | "denied" => set_once(&mut rec.denied_mask, text(v)),
        "pid" => set_once(&mut rec.pid, number(key, v)?),
        "comm" => set_once(&mut rec.comm, untrusted(v)),
        "capability" => set_once(&mut rec.capability, number(key, v)?),
        "capname" => set_once(&mut rec.capname, text(v)),
        "family" => set_once(&mut rec.family, text(v)),
        "sock_type" => set_once(&mut rec.sock_type, text(v)),
        "protocol" => set_once(&mut rec.protocol, number(key, v)?),
        "info" => set_once(&mut rec.info, text(v)),
        "error" => set_once(&mut rec.error, number(key, v)?),
        "target" => set_once(&mut rec.target, untrusted(v)),
        "peer" | "peer_label" => set_once(&mut rec.peer, untrusted(v)),
        "signal" => set_once(&mut rec.signal, text(v)),
        "fsuid" => set_once(&mut rec.fsuid, number(key, v)?),
        "ouid" => set_once(&mut rec.ouid, number(key, v)?),
        // Everything else (fields of other classes, auditd's additions) is ignored on purpose.
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> AuditRecord {
        parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}")).unwrap_or_else(|| panic!("not a record: {line}"))
    }

    #[test]
    fn kmsg_file_denial() {
        let r = parse(
            r#"6,1234,5678,-;audit: type=1400 audit(1795834070.095:3): apparmor="DENIED" operation="open" profile="t" name="/secret" pid=92 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
        );
        assert_eq!(r.audit_type, Some(1400));
        assert_eq!(r.timestamp, Some(AuditStamp { secs: 1795834070, millis: 95, serial: 3 }));
        assert_eq!(r.decision, Decision::Denied);
        assert_eq!(r.operation.as_deref(), Some("open"));
        assert_eq!(r.profile.as_deref(), Some("t"));
        assert_eq!(r.name.as_deref(), Some("/secret"));
        assert_eq!(r.pid, Some(92));
        assert_eq!(r.comm.as_deref(), Some("cat"));
        assert_eq!(r.requested_mask.as_deref(), Some("r"));
        assert_eq!(r.denied_mask.as_deref(), Some("r"));
        assert_eq!(r.fsuid, Some(0));
        assert_eq!(r.ouid, Some(0));
    }

    /// (line, decision, operation, profile, name, denied mask)
    type Row =
        (&'static str, &'static str, Option<&'static str>, Option<&'static str>, Option<&'static str>, Option<&'static str>);

    #[test]
    fn table_of_real_shapes() {
        let rows: &[Row] = &[
            // dmesg with a timestamp, class= (kernel >= 4.x Ubuntu) and a namespace.
            (
                r#"[ 1657.793826] audit: type=1400 audit(1714412531.488:3023): apparmor="DENIED" operation="open" class="file" namespace="root//lxd-x_<var-snap-lxd-common-lxd>" profile="esm//ps" name="/sys/devices/system/node/" pid=48195 comm="ps" requested_mask="r" denied_mask="r" fsuid=1000000 ouid=0"#,
                "DENIED",
                Some("open"),
                Some("esm//ps"),
                Some("/sys/devices/system/node/"),
                Some("r"),
            ),
            // syslog form, exec of a shell.
            (
                r#"Nov 12 10:12:46 host kernel: [60510.393391] type=1400 audit(1415779966.460:83): apparmor="DENIED" operation="exec" profile="usr.bin.tor2web" name="/bin/dash" pid=3452 comm="python" requested_mask="x" denied_mask="x" fsuid=0 ouid=0"#,
                "DENIED",
                Some("exec"),
                Some("usr.bin.tor2web"),
                Some("/bin/dash"),
                Some("x"),
            ),
            // Double spaces, as some kernels print them.
            (
                r#"[    8.152359] audit: type=1400 audit(1448352647.733:62):  apparmor="DENIED" operation="exec" profile="/usr/share/hplip/systray.py"  name="/bin/ping" pid=1488 comm="hp-upgrade" requested_mask="x"  denied_mask="x" fsuid=1000 ouid=0"#,
                "DENIED",
                Some("exec"),
                Some("/usr/share/hplip/systray.py"),
                Some("/bin/ping"),
                Some("x"),
            ),
            // Complain mode exec with info, error and target; hex comm.
            (
                r#"audit: type=1400 audit(1584613214.444:232201): apparmor="ALLOWED" operation="exec" info="no new privs" error=-1 profile="snap.x.x" name="/bin/ping" pid=24332 comm=4C6561677565206F66204C6567656E requested_mask="x" denied_mask="x" fsuid=1000 ouid=0 target="snap.x.x//null-/bin/ping""#,
                "ALLOWED",
                Some("exec"),
                Some("snap.x.x"),
                Some("/bin/ping"),
                Some("x"),
            ),
            // audit.log form.
            (
                r#"type=AVC msg=audit(1348982151.183:2934): apparmor="DENIED" operation="open" parent=30751 profile="/usr/lib/firefox/firefox{,*[^s] [^h]}" name=2F746D702F666F6F20626172 pid=30833 comm="plugin-containe" requested_mask="r" denied_mask="r" fsuid=1000 ouid=0"#,
                "DENIED",
                Some("open"),
                Some("/usr/lib/firefox/firefox{,*[^s] [^h]}"),
                Some("/tmp/foo bar"),
                Some("r"),
            ),
            // Capability.
            (
                r#"audit: type=1400 audit(1714412531.488:3024): apparmor="DENIED" operation="capable" class="cap" profile="ps" pid=48195 comm="ps" capability=2  capname="dac_read_search""#,
                "DENIED",
                Some("capable"),
                Some("ps"),
                None,
                None,
            ),
            // Network create, older kernels.
            (
                r#"[ 13.484695] audit: type=1400 audit(1528925773.064:183): apparmor="DENIED" operation="create" profile="snap.bluez.bluez" pid=3537 comm="bluetoothd" family="bluetooth" sock_type="raw" protocol=1 requested_mask="create" denied_mask="create""#,
                "DENIED",
                Some("create"),
                Some("snap.bluez.bluez"),
                None,
                Some("create"),
            ),
            // Network create, newer kernels: requested=/denied=.
            (
                r#"audit: type=1400 audit(1740054455.567:405): apparmor="DENIED" operation="create" class="net" profile="wpa_supplicant" pid=13506 comm="wpa_supplicant" family="netlink" sock_type="raw" protocol=0 requested="create" denied="create""#,
                "DENIED",
                Some("create"),
                Some("wpa_supplicant"),
                None,
                Some("create"),
            ),
            // Journal form of the userspace-forwarded record, no stamp.
            (
                r#"Oct 26 02:31:36 h audit[315954]: AVC apparmor="DENIED" operation="exec" info="no new privs" error=-1 profile="snap.docker.dockerd" name="/pause" pid=315954 comm="runc:[2:INIT]" requested_mask="x" denied_mask="x" fsuid=0 ouid=0 target="docker-default""#,
                "DENIED",
                Some("exec"),
                Some("snap.docker.dockerd"),
                Some("/pause"),
                Some("x"),
            ),
            // Policy load.
            (
                r#"audit: type=1400 audit(1625030195.090:2): apparmor="STATUS" operation="profile_load" profile="unconfined" name="klogd" pid=1912 comm="apparmor_parser""#,
                "STATUS",
                Some("profile_load"),
                Some("unconfined"),
                Some("klogd"),
                None,
            ),
            // name=(null).
            (
                r#"audit: type=1400 audit(1.000:9): apparmor="DENIED" operation="open" profile="p" name=(null) pid=1 comm="x" requested_mask="r" denied_mask="r""#,
                "DENIED",
                Some("open"),
                Some("p"),
                None,
                Some("r"),
            ),
            // Signal with peer.
            (
                r#"audit: type=1400 audit(1616626099.646:222): apparmor="DENIED" operation="signal" profile="docker_titus" pid=2006590 comm="systemd-shutdow" requested_mask="send" denied_mask="send" signal=cont peer="docker_titus//sshd""#,
                "DENIED",
                Some("signal"),
                Some("docker_titus"),
                None,
                Some("send"),
            ),
            // USER_AVC from dbus-daemon in audit.log.
            (
                r#"type=USER_AVC msg=audit(1500000000.000:77): pid=1 uid=103 auid=4294967295 ses=4294967295 msg='apparmor="DENIED" operation="dbus_method_call"  bus="system" path="/org/freedesktop/DBus" interface="org.freedesktop.DBus" member="Hello" mask="send" name="org.freedesktop.DBus" pid=2 label="snap.x.y" peer_label="unconfined"  exe="/usr/bin/dbus-daemon" sauid=103 hostname=? addr=? terminal=?'"#,
                "DENIED",
                Some("dbus_method_call"),
                Some("snap.x.y"),
                Some("org.freedesktop.DBus"),
                None,
            ),
        ];
        for (line, decision, op, profile, name, mask) in rows {
            let r = parse(line);
            assert_eq!(r.decision.as_str(), *decision, "{line}");
            assert_eq!(r.operation.as_deref(), *op, "{line}");
            assert_eq!(r.profile.as_deref(), *profile, "{line}");
            assert_eq!(r.name.as_deref(), *name, "{line}");
            assert_eq!(r.denied_mask.as_deref(), *mask, "{line}");
        }
    }

    #[test]
    fn field_details() {
        let r = parse(
            r#"audit: type=1400 audit(1584613214.444:232201): apparmor="ALLOWED" operation="exec" info="no new privs" error=-1 profile="snap.x.x" name="/bin/ping" pid=24332 comm=4C6561677565206F66204C6567656E requested_mask="x" denied_mask="x" fsuid=1000 ouid=0 target="snap.x.x//null-/bin/ping""#,
        );
        assert_eq!(r.comm.as_deref(), Some("League of Legen"));
        assert_eq!(r.info.as_deref(), Some("no new privs"));
        assert_eq!(r.error, Some(-1));
        assert_eq!(r.target.as_deref(), Some("snap.x.x//null-/bin/ping"));

        let r = parse(
            r#"audit: type=1400 audit(1714412531.488:3024): apparmor="DENIED" operation="capable" class="cap" profile="ps" pid=48195 comm="ps" capability=2  capname="dac_read_search""#,
        );
        assert_eq!((r.capability, r.capname.as_deref(), r.class.as_deref()), (Some(2), Some("dac_read_search"), Some("cap")));

        let r = parse(
            r#"audit: type=1400 audit(1.5:2): apparmor="DENIED" operation="create" class="net" profile="p" pid=1 comm="ping" family="inet" sock_type="raw" protocol=1 requested="create" denied="create""#,
        );
        assert_eq!((r.family.as_deref(), r.sock_type.as_deref(), r.protocol), (Some("inet"), Some("raw"), Some(1)));
        assert_eq!(r.timestamp, Some(AuditStamp { secs: 1, millis: 5, serial: 2 }));

        let r = parse(
            r#"type=USER_AVC msg=audit(1500000000.000:77): pid=1 uid=103 msg='apparmor="DENIED" operation="dbus_method_call" mask="send" pid=2 label="snap.x.y" peer_label="unconfined" exe="/usr/bin/dbus-daemon" terminal=?'"#,
        );
        assert_eq!(r.audit_type, Some(AUDIT_TYPE_USER_AVC));
        // The pid inside msg='...' (the peer process), not the sender's pid before it.
        assert_eq!(r.pid, Some(2));
        assert_eq!(r.peer.as_deref(), Some("unconfined"));

        // Hex-encoded profile and name (a profile name with a space).
        let r = parse(
            r#"audit: type=1400 audit(1.000:1): apparmor="DENIED" operation="open" profile=6D7920617070 name=2F746D702F612062 pid=7 comm="sh" requested_mask="r" denied_mask="r""#,
        );
        assert_eq!(r.profile.as_deref(), Some("my app"));
        assert_eq!(r.name.as_deref(), Some("/tmp/a b"));

        // auditd's enriched section after 0x1d is not part of the record.
        let r = parse(
            "type=AVC msg=audit(1.000:1): apparmor=\"DENIED\" operation=\"open\" profile=\"p\" name=\"/x\" pid=1 comm=\"c\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0\x1dFSUID=\"root\" OUID=\"root\"",
        );
        assert_eq!(r.ouid, Some(0));
    }

    #[test]
    fn netlink_payloads() {
        let body = r#"audit(1795834070.095:3): apparmor="DENIED" operation="open" profile="t" name="/secret" pid=92 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
        let r = parse_netlink_payload(1400, body).unwrap().unwrap();
        assert_eq!(r.audit_type, Some(1400));
        assert_eq!(r.name.as_deref(), Some("/secret"));
        assert_eq!(parse_netlink_payload(1300, body).unwrap(), None, "SYSCALL records are not ours");
        let user = r#"audit(1.000:2): pid=1 uid=0 msg='apparmor="ALLOWED" operation="dbus_signal" label="p" peer_label="q"'"#;
        let r = parse_netlink_payload(1107, user).unwrap().unwrap();
        assert_eq!((r.decision, r.profile.as_deref()), (Decision::Allowed, Some("p")));
    }

    #[test]
    fn non_apparmor_lines_are_ignored() {
        for line in [
            "",
            "6,100,200,-;usb 1-1: new high-speed USB device number 2 using xhci_hcd",
            "audit: type=1300 audit(1.000:1): arch=c000003e syscall=2 success=no",
            r#"type=SYSCALL msg=audit(1.000:1): arch=c000003e syscall=257 comm="cat" exe="/usr/bin/cat""#,
            // `apparmor=` only inside a value.
            r#"audit: type=1300 audit(1.000:1): comm="x" exe="/opt/apparmor=1""#,
            "kernel: audit_printk_skb: 153 callbacks suppressed",
        ] {
            assert_eq!(parse_line(line), Ok(None), "{line:?}");
        }
    }

    #[test]
    fn malformed_apparmor_lines_are_errors() {
        let rows: &[(&str, ParseError)] = &[
            (
                r#"audit: type=1400 audit(1.000:1): apparmor="DENIED" operation="open" name="/very/long/trunc"#,
                ParseError::Unterminated("name".into()),
            ),
            (r#"audit: type=1400 audit(x:1): apparmor="DENIED""#, ParseError::BadStamp),
            (r#"audit: type=1400 audit(1.000): apparmor="DENIED""#, ParseError::BadStamp),
            (r#"audit: type=1400 audit(1.000:1): apparmor="DENIED" pid=abc"#, ParseError::BadNumber("pid".into())),
            (r#"audit: type=1400 audit(1.000:1): apparmor="DENIED" garbage here"#, ParseError::MissingEquals(18)),
            (r#"audit: type=1400 audit(1.000:1): apparmor="""#, ParseError::EmptyDecision),
            (r#"audit: type=1400 audit(1.000:1): apparmor= operation="open""#, ParseError::EmptyDecision),
        ];
        for (line, want) in rows {
            assert_eq!(parse_line(line).as_ref(), Err(want), "{line}");
        }
    }

    #[test]
    fn first_occurrence_wins() {
        let r = parse(r#"apparmor="DENIED" operation="open" profile="a" profile="b" name="/x" name="/y""#);
        assert_eq!((r.profile.as_deref(), r.name.as_deref()), (Some("a"), Some("/x")));
    }

    #[test]
    fn kmsg_unescape() {
        assert_eq!(unescape_kmsg(r#"name="/tmp/a\x5cb""#), r#"name="/tmp/a\b""#);
        assert_eq!(unescape_kmsg("plain"), "plain");
        assert_eq!(unescape_kmsg(r"tail \x5"), r"tail \x5");
        assert_eq!(unescape_kmsg(r"bad \xZZ"), r"bad \xZZ");
        let r = parse_line(&unescape_kmsg(r#"apparmor="DENIED" operation="open" profile="p" name="/a\x5cb""#)).unwrap().unwrap();
        assert_eq!(r.name.as_deref(), Some(r"/a\b"));
    }

    #[test]
    fn kmsg_split() {
        let (h, msg) = split_kmsg("5,1234,5678,-,caller=T12;audit: hello").unwrap();
        assert_eq!(h, KmsgHeader { priority: 5, seq: 1234, ts_usec: 5678 });
        assert_eq!(h.facility(), 0);
        assert_eq!(msg, "audit: hello");
        assert_eq!(split_kmsg(" SUBSYSTEM=usb"), None);
        assert_eq!(split_kmsg("12,1,2,-;user message").map(|(h, _)| h.facility()), Some(1));
        assert_eq!(split_kmsg("no header; at all"), None);
    }

    #[test]
    fn hex_round_trip_examples() {
        assert_eq!(encode_untrusted("/tmp/a b"), "2F746D702F612062");
        assert_eq!(encode_untrusted("/etc/fstab"), "\"/etc/fstab\"");
        assert_eq!(decode_hex("2F746D702F612062").as_deref(), Some("/tmp/a b"));
        assert_eq!(decode_hex("2F7"), None);
        assert_eq!(decode_hex("ZZ"), None);
    }

    #[test]
    fn serializes_to_json() {
        let r = parse(
            r#"audit: type=1400 audit(1795834070.095:3): apparmor="DENIED" operation="open" profile="t" name="/secret" pid=92 comm="cat" requested_mask="r" denied_mask="r""#,
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["decision"], "DENIED");
        assert_eq!(v["timestamp"]["serial"], 3);
        assert!(v.get("capability").is_none(), "absent fields are omitted");
        let back: AuditRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            /// Hostile text never panics the parser, whatever its shape.
            #[test]
            fn arbitrary_strings_never_panic(s in any::<String>()) {
                let _ = parse_line(&s);
                let _ = parse_netlink_payload(1400, &s);
            }

            /// Text built from the record's own alphabet reaches the deeper code paths.
            #[test]
            fn record_like_strings_never_panic(s in r#"(audit\(|[0-9]{1,3}[.:]|\): |apparmor=|name=|pid=|"|'|=| |[A-F0-9]{1,6}|msg='|type=AVC |\(null\)|\x1d){0,24}"#) {
                let _ = parse_line(&s);
            }

            /// A name the kernel had to hex-encode comes back exactly (for any byte string that is UTF-8).
            #[test]
            fn escaped_names_round_trip(name in any::<String>(), comm in "[ -~]{0,15}") {
                prop_assume!(!name.is_empty());
                let line = format!(
                    r#"audit: type=1400 audit(1.000:1): apparmor="DENIED" operation="open" profile={} name={} pid=1 comm={} requested_mask="r" denied_mask="r""#,
                    encode_untrusted("p"), encode_untrusted(&name), encode_untrusted(&comm),
                );
                let r = parse_line(&line).unwrap().unwrap();
                prop_assert_eq!(r.name.as_deref(), Some(name.as_str()));
                prop_assert_eq!(r.comm.as_deref(), Some(comm.as_str()));
            }
        }
    }
}
