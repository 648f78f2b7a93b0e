//! One readable line per record, for `apparmor-loader denials` on a terminal and for log messages.
//!
//! Names and command names come from the confined process and are decoded from hex, so they can hold
//! anything — including terminal escape sequences and newlines. Every such field goes through [`clean`].

use super::cgroup::ContainerRef;
use super::record::{AuditRecord, Origin};
use std::fmt::Write as _;

/// Makes an untrusted string safe to print on one line: control characters, `"` and `\` are escaped,
/// and the result is quoted when it is empty or holds a space.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    if out.is_empty() || out.contains(' ') { format!("\"{out}\"") } else { out }
}

/// `2026-11-28T03:07:50.095Z DENIED web open /etc/shadow mask=r pid=92 comm=cat pod=... container=...`
///
/// The subject depends on the class: a path, `capability=net_raw`, `network=inet/raw`,
/// `signal=term peer=...`. Missing parts are left out. A record the kernel did not make is marked right
/// after the time: `USERSPACE-REPORTED` (then `pid`/`uid`/`sender` are the sending process, and
/// `claimed_pid` what it wrote) or `UNPROVEN`.
pub fn format_record(rec: &AuditRecord, container: Option<&ContainerRef>) -> String {
    let mut s = String::new();
    match &rec.timestamp {
        Some(t) => s.push_str(&t.rfc3339()),
        None => s.push('-'),
    }
    match rec.origin {
        Origin::Kernel => {}
        Origin::Unproven => s.push_str(" UNPROVEN"),
        Origin::Userspace => s.push_str(" USERSPACE-REPORTED"),
    }
    let _ = write!(
        s,
        " {} {} {}",
        rec.decision,
        clean(rec.profile.as_deref().unwrap_or("?")),
        clean(rec.operation.as_deref().unwrap_or("?"))
    );
    write_object(&mut s, rec);
    write_task(&mut s, rec);
    if let Some(c) = rec.comm.as_deref() {
        let _ = write!(s, " comm={}", clean(c));
    }
    if let Some(c) = container {
        if let Some(uid) = c.pod_uid.as_deref() {
            let _ = write!(s, " pod={uid}");
        }
        if let Some(id) = c.short_id() {
            let _ = write!(s, " container={id}");
        }
    }
    s
}

/// What was asked for: capability, network, path, mask, signal, peer, target and the kernel's info.
fn write_object(s: &mut String, rec: &AuditRecord) {
    if let Some(cap) = rec.capname.as_deref() {
        let _ = write!(s, " capability={}", clean(cap));
    } else if let Some(n) = rec.capability {
        let _ = write!(s, " capability={n}");
    }
    if let Some(f) = rec.family.as_deref() {
        let _ = write!(s, " network={}", clean(f));
        if let Some(t) = rec.sock_type.as_deref() {
            let _ = write!(s, "/{}", clean(t));
        }
    }
    if let Some(n) = rec.name.as_deref() {
        let _ = write!(s, " {}", clean(n));
    }
    if let Some(m) = rec.effective_mask() {
        let _ = write!(s, " mask={}", clean(m));
    }
    if let Some(sig) = rec.signal.as_deref() {
        let _ = write!(s, " signal={}", clean(sig));
    }
    if let Some(p) = rec.peer.as_deref() {
        let _ = write!(s, " peer={}", clean(p));
    }
    if let Some(t) = rec.target.as_deref() {
        let _ = write!(s, " target={}", clean(t));
    }
    if let Some(i) = rec.info.as_deref() {
        let _ = write!(s, " info={}", clean(i));
    }
}

/// ` pid=… uid=… sender=… claimed_pid=…`: the task, and for a USER_AVC its sender as the kernel stamped
/// it and the pid it claimed.
fn write_task(s: &mut String, rec: &AuditRecord) {
    if let Some(p) = rec.pid {
        let _ = write!(s, " pid={p}");
    }
    if let Some(u) = rec.uid {
        let _ = write!(s, " uid={u}");
    }
    if let Some(l) = rec.sender_label.as_deref() {
        let _ = write!(s, " sender={}", clean(l));
    }
    if let Some(p) = rec.reported_pid {
        let _ = write!(s, " claimed_pid={p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::parse_line;

    #[test]
    fn one_line_per_class() {
        let rows: &[(&str, &str)] = &[
            (
                r#"5,3,0,-;audit: type=1400 audit(1795834070.095:3): apparmor="DENIED" operation="open" profile="t" name="/secret" pid=92 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
                "2026-11-28T02:47:50.095Z DENIED t open /secret mask=r pid=92 comm=cat",
            ),
            (
                r#"type=AVC msg=audit(1.000:2): apparmor="ALLOWED" operation="capable" profile="web" pid=9 comm="ping" capability=13  capname="net_raw""#,
                "1970-01-01T00:00:01.000Z ALLOWED web capable capability=net_raw pid=9 comm=ping",
            ),
            // Text of unknown provenance says so.
            (
                r#"apparmor="DENIED" operation="create" profile="web" pid=9 comm="ping" family="inet" sock_type="raw" protocol=1 requested="create" denied="create""#,
                "- UNPROVEN DENIED web create network=inet/raw mask=create pid=9 comm=ping",
            ),
            (
                r#"apparmor="DENIED" operation="exec" info="no new privs" error=-1 profile="p" name=2F746D702F612062 pid=1 comm=1B5B326A requested_mask="x" denied_mask="x" target="q""#,
                r#"- UNPROVEN DENIED p exec "/tmp/a b" mask=x target=q info="no new privs" pid=1 comm=\u{1b}[2j"#,
            ),
            // A USER_AVC: the sender's kernel-stamped identity, its claimed pid apart.
            (
                "6,9,0,-;audit: type=1107 audit(1.000:4): pid=812 uid=65534 auid=4294967295 ses=4294967295 subj=unconfined msg='apparmor=\"DENIED\" operation=\"capable\" profile=\"t\" pid=1 comm=\"x\" capname=\"sys_admin\"\\x0a'",
                "1970-01-01T00:00:01.000Z USERSPACE-REPORTED DENIED t capable capability=sys_admin pid=812 uid=65534 sender=unconfined claimed_pid=1 comm=x",
            ),
        ];
        for (line, want) in rows {
            let r = parse_line(line).unwrap().unwrap();
            assert_eq!(format_record(&r, None), *want);
        }
    }

    #[test]
    fn container_suffix_and_cleaning() {
        let r = parse_line(r#"apparmor="DENIED" operation="open" profile="t" name=2F610A62 pid=1"#).unwrap().unwrap();
        let c = ContainerRef { container_id: Some("ab".repeat(32)), pod_uid: Some("u-1".into()), runtime: None };
        assert_eq!(format_record(&r, Some(&c)), "- UNPROVEN DENIED t open /a\\u{a}b pid=1 pod=u-1 container=abababababab");
        assert_eq!(clean(""), "\"\"");
        assert_eq!(clean("a\"b\\"), "a\\\"b\\\\");
    }
}
