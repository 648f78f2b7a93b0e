use super::*;
use crate::audit::record;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const POLL: Duration = Duration::from_millis(20);

fn opts() -> ReadOptions {
    ReadOptions { poll_interval: POLL, ..ReadOptions::default() }
}

fn kline(seq: u64, name: &str) -> String {
    format!(
        "5,{seq},{},-;audit: type=1400 audit(1795834070.095:{seq}): apparmor=\"DENIED\" operation=\"open\" profile=\"t\" name=\"{name}\" pid=92 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0\n",
        seq * 1000
    )
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn recv_names(rx: &Receiver<AuditRecord>, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => out.push(r.name.unwrap_or_default()),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn spec_parses() {
    assert_eq!("auto".parse(), Ok(SourceSpec::Auto));
    assert_eq!("kmsg".parse(), Ok(SourceSpec::Kmsg));
    assert_eq!("netlink".parse(), Ok(SourceSpec::Netlink));
    assert_eq!("off".parse(), Ok(SourceSpec::Off));
    assert_eq!("/var/log/audit/audit.log".parse(), Ok(SourceSpec::File("/var/log/audit/audit.log".into())));
    assert!("".parse::<SourceSpec>().is_err());
    assert_eq!(SourceSpec::File("/x".into()).to_string(), "/x");
}

#[test]
fn kmsg_reads_only_new_records_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kmsg");
    std::fs::write(&path, kline(1, "/old")).unwrap();
    let paths = SourcePaths { kmsg: path.clone(), ..SourcePaths::default() };
    let stop = CancellationToken::new();
    let src = start(&SourceSpec::Kmsg, &paths, &opts(), stop.clone()).unwrap().unwrap();
    assert_eq!(src.kind, SourceKind::Kmsg);
    let mut text = kline(2, "/a");
    text.push_str(" SUBSYSTEM=audit\n"); // continuation line
    text.push_str("6,3,0,-;usb 1-1: not audit\n");
    text.push_str(&kline(2, "/dup")); // same seq again: not delivered twice
    text.push_str(&kline(6, "/b")); // 4 and 5 were overwritten
    // Written by userspace (facility 1): ignored even though it looks like a denial.
    text.push_str(&kline(7, "/forged").replacen("5,7,", "13,7,", 1));
    text.push_str("5,8,0,-;audit: type=1400 audit(1.000:8): apparmor=\"DENIED\" name=\"/trunc\n");
    // A line split across two writes.
    let split = kline(9, "/c");
    let (a, b) = split.split_at(40);
    append(&path, &text);
    append(&path, a);
    std::thread::sleep(POLL * 3);
    append(&path, b);
    assert_eq!(recv_names(&src.rx, 3), ["/a", "/b", "/c"]);
    stop.cancel();
    let stats = src.stats.clone();
    src.join();
    assert_eq!(stats.lost.load(Ordering::Relaxed), 2, "seq 4 and 5 were overwritten");
    assert_eq!(stats.parse_errors.load(Ordering::Relaxed), 1);
    assert!(!stats.is_up());
}

#[test]
fn kmsg_from_start_without_follow_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kmsg");
    std::fs::write(&path, format!("{}{}", kline(1, "/x"), kline(2, "/y"))).unwrap();
    let paths = SourcePaths { kmsg: path, ..SourcePaths::default() };
    let o = ReadOptions { from_start: true, follow: false, lossless: true, ..opts() };
    let src = start(&SourceSpec::Kmsg, &paths, &o, CancellationToken::new()).unwrap().unwrap();
    let got: Vec<String> = src.rx.iter().map(|r| r.name.unwrap()).collect();
    assert_eq!(got, ["/x", "/y"]);
}

#[test]
fn full_channel_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kmsg");
    let text: String = (1..=10).map(|i| kline(i, &format!("/f{i}"))).collect();
    std::fs::write(&path, text).unwrap();
    let paths = SourcePaths { kmsg: path, ..SourcePaths::default() };
    let o = ReadOptions { from_start: true, follow: false, channel_capacity: 4, ..opts() };
    let src = start(&SourceSpec::Kmsg, &paths, &o, CancellationToken::new()).unwrap().unwrap();
    let stats = src.stats.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.is_up() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    assert_eq!(src.rx.try_iter().count(), 4);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 6);
}

fn avc(serial: u64, name: &str) -> String {
    format!(
        "type=AVC msg=audit(1795834070.095:{serial}): apparmor=\"DENIED\" operation=\"open\" profile=\"t\" name=\"{name}\" pid=1 comm=\"c\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0\n"
    )
}

#[test]
fn file_follower_survives_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    std::fs::write(&path, avc(1, "/before-start")).unwrap();
    let stop = CancellationToken::new();
    let src = start(&SourceSpec::File(path.clone()), &SourcePaths::default(), &opts(), stop.clone()).unwrap().unwrap();
    assert_eq!(src.kind, SourceKind::File);
    append(&path, &format!("type=SYSCALL msg=audit(1.000:2): arch=c000003e syscall=257\n{}", avc(3, "/one")));
    assert_eq!(recv_names(&src.rx, 1), ["/one"]);

    // Rotation the way auditd does it: rename, then a new file. A last line lands in the old file
    // right after the rename.
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    append(&rotated, &avc(4, "/late-in-old"));
    std::thread::sleep(POLL * 2);
    std::fs::write(&path, avc(5, "/new-file")).unwrap();
    assert_eq!(recv_names(&src.rx, 2), ["/late-in-old", "/new-file"]);

    // copytruncate.
    std::thread::sleep(POLL * 3);
    std::fs::write(&path, "").unwrap();
    std::thread::sleep(POLL * 3);
    append(&path, &avc(6, "/after-truncate"));
    assert_eq!(recv_names(&src.rx, 1), ["/after-truncate"]);
    stop.cancel();
    src.join();
}

#[test]
fn auto_falls_back_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    std::fs::create_dir_all(proc_root.join("1")).unwrap();
    let log = dir.path().join("audit.log");
    std::fs::write(&log, "").unwrap();
    // No kmsg: auto must reach the file (netlink may or may not work on this machine).
    let paths = SourcePaths { kmsg: dir.path().join("no-kmsg"), audit_log: log.clone(), proc_root: proc_root.clone() };
    let stop = CancellationToken::new();
    let src = start(&SourceSpec::Auto, &paths, &opts(), stop.clone()).unwrap().unwrap();
    assert!(matches!(src.kind, SourceKind::File | SourceKind::Netlink), "{:?}", src.kind);
    stop.cancel();
    src.join();

    // Nothing available at all.
    let paths = SourcePaths { kmsg: dir.path().join("no-kmsg"), audit_log: dir.path().join("no-log"), proc_root };
    match start(&SourceSpec::Auto, &paths, &opts(), CancellationToken::new()) {
        Err(SourceError::NoneAvailable(why)) => {
            assert!(why.iter().any(|w| w.contains("no-kmsg")) && why.iter().any(|w| w.contains("no-log")), "{why:?}")
        }
        Ok(Some(s)) => assert_eq!(s.kind, SourceKind::Netlink, "only netlink can succeed here"),
        other => panic!("{other:?}"),
    }
    assert!(start(&SourceSpec::Off, &SourcePaths::default(), &opts(), CancellationToken::new()).unwrap().is_none());
}

#[test]
fn auditd_detection() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("1")).unwrap();
    std::fs::write(dir.path().join("1/comm"), "systemd\n").unwrap();
    assert!(!auditd_running(dir.path()));
    std::fs::create_dir_all(dir.path().join("812")).unwrap();
    std::fs::write(dir.path().join("812/comm"), "auditd\n").unwrap();
    assert!(auditd_running(dir.path()));
}

#[test]
fn netlink_in_another_netns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("self/ns")).unwrap();
    std::fs::create_dir_all(dir.path().join("1/ns")).unwrap();
    std::os::unix::fs::symlink("net:[4026531840]", dir.path().join("1/ns/net")).unwrap();
    std::os::unix::fs::symlink("net:[4026532999]", dir.path().join("self/ns/net")).unwrap();
    let err = NetlinkReader::open(dir.path()).err().expect("must refuse");
    assert!(err.to_string().contains("hostNetwork"), "{err}");
}

#[test]
fn netlink_datagrams_split() {
    fn msg(ty: u16, payload: &str, pad_nul: bool) -> Vec<u8> {
        let mut p = payload.as_bytes().to_vec();
        if pad_nul {
            p.push(0);
        }
        let len = 16 + p.len();
        let mut v = Vec::new();
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&[0; 10]);
        v.extend_from_slice(&p);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }
    let a = "audit(1.000:1): apparmor=\"DENIED\" operation=\"open\" profile=\"p\" name=\"/x\"";
    let mut buf = msg(1400, a, true);
    buf.extend(msg(1300, "audit(1.000:1): arch=c000003e", false));
    let got = split_netlink(&buf);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], (1400, a.as_bytes()));
    assert_eq!(got[1].0, 1300);
    let rec = record::parse_netlink_payload(got[0].0, std::str::from_utf8(got[0].1).unwrap()).unwrap().unwrap();
    assert_eq!(rec.name.as_deref(), Some("/x"));
    // Garbage never panics.
    assert!(split_netlink(&[1, 2, 3]).is_empty());
    let mut bad = msg(1400, a, false);
    bad[0] = 0xff; // length beyond the buffer
    assert_eq!(split_netlink(&bad).len(), 1);
}

/// Sends a USER_AVC message to the kernel audit subsystem (needs CAP_AUDIT_WRITE). The kernel
/// multicasts it to the read-log group and, with no auditd, prints it to the kernel log with
/// facility 0: a real-kernel end-to-end check of both sources without AppArmor, and of the
/// forgery every such sender can attempt.
pub(crate) fn send_user_avc(body: &str) -> nix::Result<()> {
    use nix::sys::socket::{AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, sendto, socket};
    use std::os::fd::AsRawFd;
    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkAudit)?;
    let mut payload = body.as_bytes().to_vec();
    payload.push(0);
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&record::AUDIT_TYPE_USER_AVC.to_ne_bytes());
    msg.extend_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&payload);
    sendto(fd.as_raw_fd(), &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
    Ok(())
}

/// Receives until the record named `/tag` arrives (other tests may send their own meanwhile);
/// returns it and every name seen before it.
fn recv_tagged(rx: &Receiver<AuditRecord>, tag: &str) -> (AuditRecord, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let rec = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the tagged record");
        if rec.name.as_deref() == Some(&format!("/{tag}")) {
            return (rec, seen);
        }
        seen.push(rec.name.unwrap_or_default());
    }
}

fn user_avc_body(tag: &str) -> String {
    format!(
        r#"apparmor="DENIED" operation="open" profile="aal-selftest" name="/{tag}" pid=1 comm="selftest" requested_mask="r" denied_mask="r""#
    )
}

/// A process that unicasts an AppArmor record straight to the agent's port (the kernel allows it
/// with CAP_NET_ADMIN) is not the kernel: its message is dropped and counted, never delivered.
#[test]
fn netlink_unicast_from_userspace_is_dropped() {
    use nix::sys::socket::{AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, getsockname, sendto, socket};
    use std::os::fd::AsRawFd;
    let Ok(reader) = NetlinkReader::open(Path::new("/nonexistent")) else {
        eprintln!("skipped: no audit netlink here");
        return;
    };
    let port = getsockname::<NetlinkAddr>(reader.fd.as_raw_fd()).unwrap().pid();
    let body = format!("audit(1.000:1): {}", user_avc_body("unicast"));
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&1400u16.to_ne_bytes());
    msg.extend_from_slice(&[0; 10]);
    msg.extend_from_slice(body.as_bytes());
    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkAudit).unwrap();
    if sendto(fd.as_raw_fd(), &msg, &NetlinkAddr::new(port, 0), MsgFlags::empty()).is_err() {
        eprintln!("skipped: this sandbox refuses user-to-user netlink");
        return;
    }
    let (tx, rx) = sync_channel(8);
    let sink = Sink { tx, stats: Arc::new(SourceStats::default()), lossless: false };
    let o = ReadOptions { follow: false, ..opts() };
    reader.run(&sink, &o, &CancellationToken::new()).unwrap();
    assert!(rx.try_recv().is_err(), "a forged unicast must not become a record");
    assert_eq!(sink.stats.spoofed.load(Ordering::Relaxed), 1);
    assert_eq!(sink.stats.records.load(Ordering::Relaxed), 0);
}

#[test]
#[ignore = "needs root, kernel audit and the host network namespace; run with --ignored"]
fn real_netlink_multicast_delivers_user_avc() {
    let src =
        start(&SourceSpec::Netlink, &SourcePaths::default(), &opts(), CancellationToken::new()).expect("netlink source").unwrap();
    let tag = format!("netlink-{}", std::process::id());
    send_user_avc(&user_avc_body(&tag)).expect("send USER_AVC");
    let (rec, _) = recv_tagged(&src.rx, &tag);
    assert_eq!((rec.audit_type, rec.origin), (Some(record::AUDIT_TYPE_USER_AVC), record::Origin::Userspace));
    assert_eq!((rec.pid, rec.reported_pid), (Some(std::process::id()), Some(1)), "the kernel-stamped sender");
    assert!(rec.timestamp.is_some());
    src.stop();
    src.join();
}

#[test]
#[ignore = "needs root, kernel audit, no auditd, and a real /dev/kmsg; run with --ignored"]
fn real_kmsg_reads_new_kernel_records_only() {
    let o = ReadOptions { poll_interval: Duration::from_millis(50), ..ReadOptions::default() };
    let src = start(&SourceSpec::Kmsg, &SourcePaths::default(), &o, CancellationToken::new()).expect("kmsg source").unwrap();
    // A userspace write lands with facility 1: read (counted as a line) but never trusted.
    std::fs::OpenOptions::new()
        .write(true)
        .open(crate::defaults::DEV_KMSG)
        .unwrap()
        .write_all(format!("audit: type=1400 audit(1.000:1): {}\n", user_avc_body("forged")).as_bytes())
        .unwrap();
    let tag = format!("kmsg-{}", std::process::id());
    send_user_avc(&user_avc_body(&tag)).expect("send USER_AVC");
    let (rec, before) = recv_tagged(&src.rx, &tag);
    assert_eq!((rec.audit_type, rec.origin), (Some(record::AUDIT_TYPE_USER_AVC), record::Origin::Userspace));
    assert_eq!(rec.pid, Some(std::process::id()), "the kernel-stamped sender");
    assert!(!before.iter().any(|n| n == "/forged"), "a userspace-written line must not be delivered: {before:?}");
    assert!(src.stats.lines.load(Ordering::Relaxed) >= 2);
    assert_eq!(src.stats.lost.load(Ordering::Relaxed), 0);
    src.stop();
    src.join();
}

#[test]
fn line_buffer_bounds_long_lines() {
    let mut lb = LineBuffer::default();
    let mut got = Vec::new();
    let big = vec![b'x'; MAX_LINE + 10];
    let _ = lb.push(&big, |l| {
        got.push(l.len());
        Ok(())
    });
    let _ = lb.push(b"tail\nok\n", |l| {
        got.push(l.len());
        Ok(())
    });
    assert_eq!(got, [2], "the over-long line is dropped whole, the next one kept");
}
