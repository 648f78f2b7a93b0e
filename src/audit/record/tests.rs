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
type Row = (&'static str, &'static str, Option<&'static str>, Option<&'static str>, Option<&'static str>, Option<&'static str>);

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
    assert_eq!((r.audit_type, r.origin), (Some(AUDIT_TYPE_USER_AVC), Origin::Userspace));
    // The kernel-stamped sender, not the pid it wrote inside msg='...' (dbus-daemon's peer).
    assert_eq!((r.pid, r.uid, r.reported_pid), (Some(1), Some(103), Some(2)));
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

/// How the kernel prints a message on /dev/kmsg: every byte below space, from 127 up, and `\` as `\xNN`.
pub(crate) fn escape_kmsg(text: &str) -> String {
    text.bytes()
        .map(|b| if !(b' '..127).contains(&b) || b == b'\\' { format!("\\x{b:02x}") } else { char::from(b).to_string() })
        .collect()
}

/// What the kernel makes of a USER_AVC from pid 812, uid 65534: the text is the sender's, verbatim.
pub(crate) fn user_avc_payload(text: &str) -> String {
    format!("audit(1795834070.095:41): pid=812 uid=65534 auid=4294967295 ses=4294967295 subj=unconfined msg='{text}'")
}

/// A forged denial as a sender would write it.
pub(crate) const FORGED: &str =
    r#"apparmor="DENIED" operation="capable" class="cap" profile="web" pid=1 comm="forged" capability=21 capname="sys_admin""#;
/// A forged kernel AVC hidden after a newline; `tail=` swallows the quote the kernel closes `msg=` with.
pub(crate) const FORGED_NL: &str = "x'\naudit: type=1400 audit(1795834070.095:42): apparmor=\"DENIED\" operation=\"open\" profile=\"web\" name=\"/etc/shadow\" pid=1 comm=\"forged\" requested_mask=\"r\" denied_mask=\"r\" tail=";

/// A row of [`origin_table`]: why, which parser, the input, the expected origin and pid (None: no record).
type OriginRow = (&'static str, Via, String, Option<(Origin, Option<u32>)>);

/// Which parser a row goes through.
enum Via {
    Netlink(u16),
    Line,
    Text,
}

/// Every form a record can arrive in, and forgeries of each: the origin comes from the type and the form,
/// never from the text; a USER_AVC's pid is the kernel-stamped sender.
#[test]
fn origin_table() {
    use Origin::*;
    let user = |t: &str| user_avc_payload(t);
    let kmsg_user = |t: &str| format!("6,9,0,-;audit: type=1107 {}", escape_kmsg(&user(t)));
    let log_user = |t: &str| format!("type=USER_AVC msg={}", user(t).replace('\n', " "));
    let avc = r#"audit(1.000:3): apparmor="DENIED" operation="open" profile="web" name="/etc/hosts" pid=92 comm="cat" requested_mask="r" denied_mask="r""#;
    // (why, via, input, expected origin and pid; None: not a record)
    let rows: Vec<OriginRow> = vec![
        ("netlink AVC", Via::Netlink(1400), avc.into(), Some((Kernel, Some(92)))),
        ("netlink USER_AVC imitating a denial", Via::Netlink(1107), user(FORGED), Some((Userspace, Some(812)))),
        ("netlink USER_AVC with a kernel AVC after a newline", Via::Netlink(1107), user(FORGED_NL), Some((Userspace, Some(812)))),
        (
            "netlink USER_AVC whose text starts like a kernel AVC",
            Via::Netlink(1107),
            user(&format!("type=1400 {avc}")),
            Some((Userspace, Some(812))),
        ),
        (
            "netlink USER_AVC claiming pid= and uid= in its text",
            Via::Netlink(1107),
            user(&format!("pid=1 uid=0 {FORGED}")),
            Some((Userspace, Some(812))),
        ),
        ("other user types are not AppArmor records", Via::Netlink(1100), user(FORGED), None),
        ("other user types (second range)", Via::Netlink(2100), user(FORGED), None),
        ("a SYSCALL record", Via::Netlink(1300), avc.into(), None),
        ("kmsg: kernel AVC", Via::Line, format!("5,3,0,-;audit: type=1400 {avc}"), Some((Kernel, Some(92)))),
        (
            "kmsg: kernel AVC, kernels without the audit: prefix",
            Via::Line,
            format!("5,3,0,-;type=1400 {avc}"),
            Some((Kernel, Some(92))),
        ),
        (
            "kmsg: kernel AVC, caller id field",
            Via::Line,
            format!("5,3,0,-,caller=T7;audit: type=1400 {avc}"),
            Some((Kernel, Some(92))),
        ),
        ("kmsg: echoed USER_AVC (kernel facility)", Via::Line, kmsg_user(FORGED), Some((Userspace, Some(812)))),
        ("kmsg: echoed USER_AVC, escaped newline and fake AVC", Via::Line, kmsg_user(FORGED_NL), Some((Userspace, Some(812)))),
        (
            "kmsg: echoed USER_AVC, a quote closing msg= early",
            Via::Line,
            kmsg_user(&format!("x' {FORGED} '")),
            Some((Userspace, Some(812))),
        ),
        (
            "kmsg: a process's write (LOG_USER)",
            Via::Line,
            format!("13,4,0,-;audit: type=1400 {avc}"),
            Some((Userspace, Some(92))),
        ),
        (
            "kmsg: a process's write (another facility)",
            Via::Line,
            format!("30,4,0,-;audit: type=1400 {avc}"),
            Some((Userspace, Some(92))),
        ),
        (
            "kmsg: kernel facility, not an audit record's start",
            Via::Line,
            format!("5,3,0,-;x audit: type=1400 {avc}"),
            Some((Unproven, Some(92))),
        ),
        ("kmsg: an echoed user record of another type", Via::Line, format!("6,9,0,-;audit: type=1100 {}", user(FORGED)), None),
        ("audit.log: AVC", Via::Line, format!("type=AVC msg={avc}"), Some((Kernel, Some(92)))),
        ("audit.log: node= prefix", Via::Line, format!("node=h1 type=AVC msg={avc}"), Some((Kernel, Some(92)))),
        ("audit.log: UNKNOWN[1400]", Via::Line, format!("type=UNKNOWN[1400] msg={avc}"), Some((Kernel, Some(92)))),
        ("audit.log: USER_AVC (auditd replaced the newline)", Via::Line, log_user(FORGED_NL), Some((Userspace, Some(812)))),
        ("audit.log: UNKNOWN[1107]", Via::Line, format!("type=UNKNOWN[1107] msg={}", user(FORGED)), Some((Userspace, Some(812)))),
        ("audit.log: USER_AUTH carrying AppArmor text", Via::Line, format!("type=USER_AUTH msg={}", user(FORGED)), None),
        ("audit.log: an AVC shaped like a user message is nothing", Via::Line, format!("type=AVC msg={}", user(FORGED)), None),
        (
            "dmesg text: kernel-looking line",
            Via::Line,
            format!("[   12.345678] audit: type=1400 {avc}"),
            Some((Unproven, Some(92))),
        ),
        (
            "dmesg text: the forged line after the newline",
            Via::Line,
            FORGED_NL.split('\n').nth(1).unwrap_or_default().into(),
            Some((Unproven, Some(1))),
        ),
        ("text: an auditd-looking line read as text", Via::Text, format!("type=AVC msg={avc}"), Some((Unproven, Some(92)))),
        (
            "text: a kmsg-looking line read as text",
            Via::Text,
            format!("5,3,0,-;audit: type=1400 {avc}"),
            Some((Unproven, Some(92))),
        ),
        (
            "journal short: kernel",
            Via::Line,
            format!("Nov 28 03:07:50 h kernel: audit: type=1400 {avc}"),
            Some((Unproven, Some(92))),
        ),
        (
            "journal short: USER_AVC",
            Via::Line,
            format!("Nov 28 03:07:50 h audit[812]: USER_AVC pid=812 uid=65534 msg='{FORGED}'"),
            Some((Userspace, Some(812))),
        ),
        (
            "text claiming AVC but shaped like a user message",
            Via::Text,
            format!("type=AVC pid=7 msg='{FORGED}'"),
            Some((Userspace, Some(7))),
        ),
        ("text claiming another type", Via::Text, format!("type=1300 {avc}"), None),
    ];
    for (why, via, input, want) in rows {
        let got = match via {
            Via::Netlink(ty) => parse_netlink_payload(ty, &input),
            Via::Line => parse_line(&input),
            Via::Text => parse_text(&input),
        }
        .unwrap_or_else(|e| panic!("{why}: {e}: {input}"));
        assert_eq!(got.as_ref().map(|r| (r.origin, r.pid)), want, "{why}: {input:?}");
    }
}

#[test]
fn a_user_avc_keeps_the_senders_identity_apart_from_its_claims() {
    let r = parse_netlink_payload(1107, &user_avc_payload(FORGED)).unwrap().unwrap();
    assert_eq!((r.pid, r.uid, r.sender_label.as_deref(), r.reported_pid), (Some(812), Some(65534), Some("unconfined"), Some(1)));
    assert_eq!((r.profile.as_deref(), r.capname.as_deref()), (Some("web"), Some("sys_admin")), "the claim is still shown");
    // A label with a space (AppArmor's `NAME (MODE)`) is kept whole.
    let p = "audit(1.000:2): pid=9 uid=1000 auid=1000 ses=3 subj=dentest (enforce) msg='apparmor=\"DENIED\" operation=\"open\"'";
    let r = parse_netlink_payload(1107, p).unwrap().unwrap();
    assert_eq!((r.pid, r.sender_label.as_deref()), (Some(9), Some("dentest (enforce)")));
    // The sender's syntax errors are not the kernel's parse errors: the fields before one are kept.
    let p = user_avc_payload(r#"apparmor="DENIED" operation="open" pid=notanumber name="/x""#);
    let r = parse_netlink_payload(1107, &p).unwrap().unwrap();
    assert_eq!((r.operation.as_deref(), r.name, r.pid), (Some("open"), None, Some(812)));
    assert_eq!(parse_netlink_payload(1107, &user_avc_payload("no apparmor fields")), Ok(None));
    assert_eq!(parse_netlink_payload(1107, &user_avc_payload(r#"apparmor="" x"#)), Ok(None));
    // Older kernels: `user pid=...`.
    let r = parse_netlink_payload(1107, &format!("audit(1.000:2): user pid=4 uid=0 auid=0 msg='{FORGED}'")).unwrap().unwrap();
    assert_eq!(r.pid, Some(4));
}

mod prop {
    use super::super::tests;
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

        /// Whatever a USER_AVC's sender writes — newlines, quotes, fake stamps and types — no reader takes it
        /// for a kernel record, and its pid is the kernel-stamped sender's.
        #[test]
        fn user_text_is_never_a_kernel_record(
            text in r#"(\n|\r|'|"|x|apparmor="DENIED" |type=1400 |type=AVC msg=|audit: |audit\(1\.0:9\): |5,1,0,-;|pid=1 |profile="web" |operation="open" |name="/etc/shadow" |\\x0a|\x1d| ){0,16}"#,
        ) {
            let payload = tests::user_avc_payload(&text);
            let kmsg = format!("6,9,0,-;audit: type=1107 {}", tests::escape_kmsg(&payload));
            let log = format!("type=USER_AVC msg={}", payload.replace('\n', " "));
            for parsed in [parse_netlink_payload(1107, &payload), parse_line(&kmsg), parse_line(&log)] {
                if let Ok(Some(r)) = parsed {
                    prop_assert_eq!(r.origin, Origin::Userspace);
                    prop_assert_eq!(r.pid, Some(812));
                }
            }
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
