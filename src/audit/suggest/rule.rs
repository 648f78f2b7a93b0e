//! One record to one rule: capability, network, signal, ptrace or file, with paths globbed and quoted.

use std::fmt::Write as _;

use super::RuleKind;
use crate::audit::record::AuditRecord;

/// Capability names by number (`include/uapi/linux/capability.h`), for records that give only the number.
const CAPABILITIES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The name of capability `n`, if known.
pub fn capability_name(n: u32) -> Option<&'static str> {
    CAPABILITIES.get(n as usize).copied()
}

/// File permissions accumulated for one path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct FilePerms {
    pub(super) m: bool,
    pub(super) r: bool,
    pub(super) w: bool,
    pub(super) a: bool,
    pub(super) l: bool,
    pub(super) k: bool,
    pub(super) x: bool,
}

impl FilePerms {
    /// Reads a kernel file mask (`r`, `wc`, `::rw`, `x`). The kernel's `c` (create) and `d` (delete)
    /// are granted by `w` in policy.
    fn from_mask(mask: &str) -> FilePerms {
        let mut p = FilePerms::default();
        for c in mask.chars() {
            match c {
                'r' => p.r = true,
                'w' | 'c' | 'd' => p.w = true,
                'a' => p.a = true,
                'l' => p.l = true,
                'k' => p.k = true,
                'm' => p.m = true,
                'x' => p.x = true,
                _ => {}
            }
        }
        p
    }

    /// Both sets of permissions.
    pub(super) fn union(self, o: FilePerms) -> FilePerms {
        FilePerms {
            m: self.m || o.m,
            r: self.r || o.r,
            w: self.w || o.w,
            a: self.a || o.a,
            l: self.l || o.l,
            k: self.k || o.k,
            x: self.x || o.x,
        }
    }

    fn is_empty(&self) -> bool {
        *self == FilePerms::default()
    }

    /// Policy spelling, in the conventional order; `w` implies `a` (the parser rejects both together).
    pub(super) fn render(&self) -> String {
        let mut s = String::new();
        for (on, c) in [(self.m, 'm'), (self.r, 'r'), (self.w, 'w'), (self.a && !self.w, 'a'), (self.l, 'l'), (self.k, 'k')] {
            if on {
                s.push(c);
            }
        }
        if self.x {
            s.push_str("ix");
        }
        s
    }
}

/// What one record asks for: a rule as printed, or a file rule still to merge.
pub(super) enum Rule {
    Simple(RuleKind, String),
    /// Globbed path (unquoted, globs live) and permissions.
    File(String, FilePerms),
}

pub(super) fn classify(rec: &AuditRecord) -> Result<Rule, String> {
    let op = rec.operation.as_deref().unwrap_or("");
    if op == "capable" || rec.capname.is_some() || rec.class.as_deref() == Some("cap") {
        return capability_rule(rec);
    }
    if let Some(family) = rec.family.as_deref() {
        return network_rule(rec, family);
    }
    if op == "signal" || op == "ptrace" {
        return Ok(peer_rule(rec, op));
    }
    file_rule(rec, op)
}

fn capability_rule(rec: &AuditRecord) -> Result<Rule, String> {
    let name = rec.capname.clone().or_else(|| rec.capability.and_then(capability_name).map(str::to_owned));
    match name {
        Some(n) if n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => {
            Ok(Rule::Simple(RuleKind::Capability, format!("capability {n},")))
        }
        _ => Err("capability record without a known capability name".into()),
    }
}

fn network_rule(rec: &AuditRecord, family: &str) -> Result<Rule, String> {
    if !is_word(family) {
        return Err(format!("network record with unusual family {family:?}"));
    }
    let rule = match rec.sock_type.as_deref() {
        Some(t) if is_word(t) && !t.starts_with("unknown") => format!("network {family} {t},"),
        _ => format!("network {family},"),
    };
    Ok(Rule::Simple(RuleKind::Network, rule))
}

/// A `signal` or `ptrace` rule (`op` is one of those).
fn peer_rule(rec: &AuditRecord, op: &str) -> Rule {
    let default_access = if op == "signal" { "send" } else { "trace" };
    let access = rec.effective_mask().filter(|m| is_word(m)).unwrap_or(default_access);
    let mut rule = format!("{op} ({access})");
    if op == "signal" {
        if let Some(sig) = rec.signal.as_deref().filter(|s| is_word(s)) {
            let _ = write!(rule, " set=({sig})");
        }
    }
    if let Some(peer) = rec.peer.as_deref() {
        let _ = write!(rule, " peer={}", quote_label(peer));
    }
    rule.push(',');
    Rule::Simple(RuleKind::Peer, rule)
}

fn file_rule(rec: &AuditRecord, op: &str) -> Result<Rule, String> {
    let Some(name) = rec.name.as_deref() else {
        return Err(if rec.info.is_some() || !op.is_empty() {
            format!("operation={op:?} without a path (name=(null) or none)")
        } else {
            "record without operation or path".into()
        });
    };
    let perms = rec.effective_mask().map(FilePerms::from_mask).unwrap_or_default();
    if !name.starts_with('/') {
        if rec.info.as_deref().is_some_and(|i| i.contains("disconnected")) {
            return Err("disconnected path (consider flags=(attach_disconnected))".into());
        }
        return Err(format!("operation={op:?} on a non-path object"));
    }
    if perms.is_empty() {
        return Err(format!("operation={op:?} with no file permission in its mask"));
    }
    if name.chars().any(|c| c.is_control() || c == '\u{FFFD}') {
        return Err("path with control or non-UTF-8 bytes (write this rule by hand)".into());
    }
    Ok(Rule::File(glob_path(name), perms))
}

/// `[a-z0-9_.-]+`: safe to print unquoted in a rule.
fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn quote_label(s: &str) -> String {
    if s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b',') { s.to_owned() } else { format!("{:?}", s) }
}

/// Characters that are globbing or syntax in a policy path: a literal one from a file name is escaped
/// so a file called `*` does not turn into a rule for every file.
const GLOB_SPECIAL: &[char] = &['*', '?', '[', ']', '{', '}', '^', '\\', '"', '@'];

/// Replaces per-process path components by variables and escapes the rest:
/// `/proc/1234/task/1240/stat` → `/proc/@{pid}/task/@{tid}/stat`, other all-digit components → `[0-9]*`.
fn glob_path(path: &str) -> String {
    let comps: Vec<&str> = path.split('/').collect();
    let mut out = Vec::with_capacity(comps.len());
    for (i, c) in comps.iter().enumerate() {
        let numeric = !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit());
        let prev = if i > 0 { comps[i - 1] } else { "" };
        let prev2 = if i > 1 { comps[i - 2] } else { "" };
        let glob = if !numeric {
            None
        } else if prev == "proc" && i == 2 {
            Some("@{pid}")
        } else if prev == "task" && i == 4 && prev2.bytes().all(|b| b.is_ascii_digit()) && comps[1] == "proc" {
            Some("@{tid}")
        } else {
            Some("[0-9]*")
        };
        match glob {
            Some(g) => out.push(g.to_owned()),
            None => {
                out.push(c.chars().flat_map(|ch| (GLOB_SPECIAL.contains(&ch).then_some('\\')).into_iter().chain([ch])).collect())
            }
        }
    }
    out.join("/")
}

/// Quotes a (globbed, escaped) path when it holds characters the policy lexer would split on.
pub(super) fn quote_path(p: &str) -> String {
    let plain = p.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:~%=@{}[]*?\\^".contains(c));
    if plain { p.to_owned() } else { format!("\"{p}\"") }
}
