//! The `--audit-source` setting and `auto`: which source to open, and why the others were passed over.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::netlink::in_host_netns;
use super::{FileFollower, KmsgReader, NetlinkReader, ReadOptions, SourceError, SourceKind, SourcePaths};

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

/// An opened source, not yet read.
pub(super) enum Opened {
    Kmsg(KmsgReader),
    Netlink(NetlinkReader),
    File(FileFollower),
}

pub(super) fn choose_auto(paths: &SourcePaths, opts: &ReadOptions) -> Result<Opened, SourceError> {
    let mut why = Vec::new();
    // Multicast audit records reach only the host network namespace. `auto` uses netlink
    // only when it can confirm that (an unreadable /proc/1/ns/net proves nothing), so it
    // never settles on a socket that silently receives nothing.
    let netlink = if in_host_netns(&paths.proc_root) == Some(true) {
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
