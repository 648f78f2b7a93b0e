//! A pure parser of AppArmor audit records, and the rule that decides who made each one.
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
//! **Origin.** The kernel makes AppArmor decisions as type 1400 (AVC) records; user space cannot send that
//! type (the kernel accepts only 1100–1199 and 2100–2999 from a process holding `CAP_AUDIT_WRITE`). A
//! USER_AVC (1107) is a process's message: the kernel prefixes it with the sender's `pid= uid= auid= ses=
//! subj=` (those are the kernel's) and then copies the sender's text verbatim into `msg='...'` — newlines,
//! quotes, a fake `type=1400 audit(...): apparmor="DENIED"` included. So a record's [`Origin`] is decided
//! from its type, read where the sender cannot write it (the netlink header, the start of a kernel-facility
//! kmsg record, the start of an auditd log line), never from the text; and a USER_AVC's `pid`/`uid` are the
//! kernel-stamped outer fields. A line of unknown provenance (plain dmesg, syslog) is never `Kernel`:
//! whole-file formats are judged in [`super::saved`].
//!
//! Body tokens and fields: [`super::fields`].

pub use super::fields::{decode_hex, encode_untrusted};

mod parse;
pub(super) use parse::parse_typed;
pub use parse::{
    KmsgHeader, audit_log_prefix, kmsg_audit_prefix, looks_like_apparmor, parse_audit_log_line, parse_kernel_message, parse_kmsg,
    parse_line, parse_netlink_payload, parse_text, parse_written_by_process, split_kmsg, unescape_kmsg,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The kernel's audit record type for AppArmor (`AUDIT_AVC`-range, `AUDIT_APPARMOR_*` share 1400).
pub const AUDIT_TYPE_AVC: u16 = 1400;
/// The audit record type userspace mediators (dbus-daemon) use for AppArmor decisions.
pub const AUDIT_TYPE_USER_AVC: u16 = 1107;

/// True for the record types the kernel accepts from a process over netlink (`AUDIT_FIRST_USER_MSG`..
/// `AUDIT_LAST_USER_MSG`, `AUDIT_FIRST_USER_MSG2`..`AUDIT_LAST_USER_MSG2`): their text is the sender's.
pub fn is_user_type(t: u16) -> bool {
    (1100..=1199).contains(&t) || (2100..=2999).contains(&t)
}

/// Who made a record. Decided from the record type and the form it arrived in, never from text a sender
/// controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The kernel made it: a type 1400 record from the netlink header, a kernel-facility kmsg record, an
    /// auditd log, or a saved format that keeps that proof (see [`super::saved`]).
    Kernel,
    /// Looks like a kernel record, but its form cannot prove it (plain dmesg, journal text, syslog): user
    /// space can write lines that read the same.
    #[default]
    Unproven,
    /// Userspace-reported: a USER_AVC (or text a process wrote to the kernel log or the journal). The
    /// AppArmor fields are the sender's claim; only `pid`, `uid` and `sender_label` are the kernel's.
    Userspace,
}

impl Origin {
    /// `kernel`, `unproven` or `userspace` (the JSON spelling).
    pub fn as_str(&self) -> &'static str {
        match self {
            Origin::Kernel => "kernel",
            Origin::Unproven => "unproven",
            Origin::Userspace => "userspace",
        }
    }
}

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
    /// Who made the record; everything below is the kernel's word only for [`Origin::Kernel`].
    #[serde(default)]
    pub origin: Origin,
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
    /// `pid=`: the task; for a USER_AVC the sending process, as the kernel stamped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// USER_AVC: the sender's uid, as the kernel stamped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// USER_AVC: the sender's security label (`subj=`), as the kernel stamped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_label: Option<String>,
    /// USER_AVC: the `pid=` the sender wrote inside `msg='...'` (dbus-daemon: the peer it mediated); a claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_pid: Option<u32>,
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

#[cfg(test)]
pub(crate) mod tests;
