//! The `key=value` tokenizer of an audit record body and the mapping of AppArmor's fields onto
//! [`AuditRecord`]. Pure; used by [`super::record`].
//!
//! The kernel prints a string it does not trust (a path, a command name, a profile name) quoted when every
//! byte is printable ASCII other than `"` and space, and otherwise as bare uppercase hex:
//! `name=2F746D702F612062` is `"/tmp/a b"`. Such a value can never hold a space or a quote, so a hostile
//! file name cannot inject a field into a kernel record; the tokenizer relies on that and the first
//! occurrence of a key wins. Text a process wrote (a USER_AVC message) has no such guarantee, which is why
//! its origin is kept apart (see [`super::record::Origin`]).

use super::record::{AuditRecord, Decision, ParseError};

/// A value as written: quoted text, or a bare token (number, hex, `(null)`, `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value<'a> {
    Quoted(&'a str),
    Bare(&'a str),
}

pub(super) struct Tokens<'a> {
    s: &'a str,
    pos: usize,
    in_user_msg: bool,
    done: bool,
}

impl<'a> Tokens<'a> {
    /// Tokens of `s`; `in_user_msg` makes a `'` end the list (the close of a USER_AVC `msg='...'`).
    pub(super) fn new(s: &'a str, in_user_msg: bool) -> Self {
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

pub(super) fn apply_field(rec: &mut AuditRecord, key: &str, v: Value<'_>, seen_decision: &mut bool) -> Result<(), ParseError> {
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
