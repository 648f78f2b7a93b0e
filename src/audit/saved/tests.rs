use super::*;
use crate::audit::record::Origin::{self, Kernel, Unproven, Userspace};
use crate::audit::record::tests::{FORGED, FORGED_NL, escape_kmsg, user_avc_payload};

const AVC: &str = r#"audit(1795834070.095:3): apparmor="DENIED" operation="open" profile="web" name="/etc/hosts" pid=92 comm="cat" requested_mask="r" denied_mask="r""#;

/// Reads `text` as a saved file; returns the format, whether it was demoted, and (origin, name) per record.
fn read(text: &str) -> (Format, bool, Vec<(Origin, String)>) {
    let r = read_records(io::Cursor::new(text.as_bytes().to_vec())).unwrap();
    let recs = r.records.iter().map(|r| (r.origin, r.name.clone().or(r.capname.clone()).unwrap_or_default())).collect();
    (r.format, r.demoted, recs)
}

/// The kernel's echo of a USER_AVC from pid 812 on /dev/kmsg (kernel facility, text escaped).
fn kmsg_user(text: &str) -> String {
    format!("6,9,0,-;audit: type=1107 {}", escape_kmsg(&user_avc_payload(text)))
}

/// The same echo as plain dmesg shows it: syslog(2) splits the text at its newlines, each line with the
/// record's prefix.
fn dmesg_user(prefix: &str, text: &str) -> String {
    format!("audit: type=1107 {}", user_avc_payload(text)).lines().map(|l| format!("{prefix}{l}\n")).collect()
}

#[test]
fn each_format_proves_what_it_can() {
    let kmsg = format!(
        "5,1,0,-;audit: type=1400 {AVC}\n SUBSYSTEM=x\n{}\n13,3,0,-;audit: type=1400 {}\n",
        kmsg_user(FORGED),
        AVC.replace("hosts", "user-write")
    );
    assert_eq!(
        read(&kmsg),
        (
            Format::Kmsg,
            false,
            vec![(Kernel, "/etc/hosts".into()), (Userspace, "sys_admin".into()), (Userspace, "/etc/user-write".into())]
        )
    );

    let log = format!(
        "type=AVC msg={AVC}\ntype=SYSCALL msg=audit(1.0:3): arch=c000003e\ntype=USER_AVC msg={}\n",
        user_avc_payload(FORGED_NL).replace('\n', " ")
    );
    assert_eq!(read(&log), (Format::AuditLog, false, vec![(Kernel, "/etc/hosts".into()), (Userspace, "/etc/shadow".into())]));

    // Plain dmesg: nothing is provable, and the line the forger started with a newline is just text.
    let dmesg = format!("[    1.000000] audit: type=1400 {AVC}\n{}", dmesg_user("[    2.000000] ", FORGED_NL));
    assert_eq!(read(&dmesg), (Format::Text, false, vec![(Unproven, "/etc/hosts".into()), (Unproven, "/etc/shadow".into())]));
}

#[test]
fn dmesg_decoded_trusts_only_kernel_lines_that_start_a_record() {
    let kern = |ts: &str, msg: &str| format!("kern  :notice: [{ts}] {msg}\n");
    let text = [
        kern("    1.000000", &format!("audit: type=1400 {AVC}")),
        // dmesg -S (syslog(2)): a multi-line USER_AVC repeats its prefix on every line.
        dmesg_user("kern  :notice: [    2.000000] ", FORGED_NL),
        // util-linux through /dev/kmsg indents the further lines instead.
        format!("kern  :notice: [    3.000000] audit: type=1107 {}\n", user_avc_payload("x'")),
        format!("                              audit: type=1400 {}\n", AVC.replace("hosts", "indented")),
        // A process's write to /dev/kmsg, and a kernel line without a timestamp (dmesg -x -t).
        format!("user  :notice: [    4.000000] audit: type=1400 {}\n", AVC.replace("hosts", "user-write")),
        format!("kern  :notice: audit: type=1400 {}\n", AVC.replace("hosts", "no-ts")),
        kern("    5.000000", &format!("audit: type=1400 {}", AVC.replace("hosts", "real"))),
    ]
    .concat();
    let (format, demoted, recs) = read(&text);
    assert_eq!((format, demoted), (Format::DmesgDecoded, false));
    assert_eq!(
        recs,
        vec![
            (Kernel, "/etc/hosts".into()),
            (Unproven, "/etc/shadow".into()),
            (Unproven, "/etc/indented".into()),
            (Userspace, "/etc/user-write".into()),
            (Unproven, "/etc/no-ts".into()),
            (Kernel, "/etc/real".into()),
        ]
    );
}

#[test]
fn journal_json_trusts_journalds_own_fields() {
    let entry = |fields: serde_json::Value| format!("{fields}\n");
    let text = [
        entry(serde_json::json!({"_TRANSPORT": "audit", "_AUDIT_TYPE": "1400", "MESSAGE": format!("AVC {}", AVC.split_once(": ").unwrap().1)})),
        entry(serde_json::json!({"_TRANSPORT": "audit", "_AUDIT_TYPE": "1107", "MESSAGE": format!("USER_AVC pid=812 uid=65534 auid=1 ses=1 msg='{FORGED}'")})),
        entry(serde_json::json!({"_TRANSPORT": "kernel", "SYSLOG_FACILITY": "0", "MESSAGE": format!("audit: type=1400 {}", AVC.replace("hosts", "kernel"))})),
        // journald unescapes kmsg: the echoed USER_AVC with its newline is still one entry, still 1107.
        entry(serde_json::json!({"_TRANSPORT": "kernel", "SYSLOG_FACILITY": "0", "MESSAGE": format!("audit: type=1107 {}", user_avc_payload(FORGED_NL))})),
        entry(serde_json::json!({"_TRANSPORT": "kernel", "SYSLOG_FACILITY": "1", "MESSAGE": format!("audit: type=1400 {}", AVC.replace("hosts", "kmsg-write"))})),
        entry(serde_json::json!({"_TRANSPORT": "syslog", "SYSLOG_FACILITY": "0", "MESSAGE": format!("audit: type=1400 {}", AVC.replace("hosts", "syslog"))})),
        // Binary MESSAGE as a byte array; an entry without _TRANSPORT.
        entry(serde_json::json!({"_TRANSPORT": "kernel", "SYSLOG_FACILITY": "0", "MESSAGE": format!("audit: type=1400 {}", AVC.replace("hosts", "bytes")).into_bytes()})),
        entry(serde_json::json!({"MESSAGE": format!("audit: type=1400 {}", AVC.replace("hosts", "no-transport"))})),
        entry(serde_json::json!({"_TRANSPORT": "kernel", "SYSLOG_FACILITY": "0", "MESSAGE": "usb 1-1: new device"})),
    ]
    .concat();
    let (format, demoted, recs) = read(&text);
    assert_eq!((format, demoted), (Format::JournalJson, false));
    assert_eq!(
        recs,
        vec![
            (Kernel, "/etc/hosts".into()),
            (Userspace, "sys_admin".into()),
            (Kernel, "/etc/kernel".into()),
            (Userspace, "/etc/shadow".into()),
            (Userspace, "/etc/kmsg-write".into()),
            (Userspace, "/etc/syslog".into()),
            (Kernel, "/etc/bytes".into()),
            (Unproven, "/etc/no-transport".into()),
        ]
    );
}

#[test]
fn journal_export_with_binary_fields() {
    let mut bytes = Vec::new();
    // A kernel entry, then a USER_AVC echo whose MESSAGE holds a newline (exported as a binary field).
    bytes.extend(format!("__CURSOR=s=1\n_TRANSPORT=kernel\nSYSLOG_FACILITY=0\nMESSAGE=audit: type=1400 {AVC}\n\n").bytes());
    let msg = format!("audit: type=1107 {}", user_avc_payload(FORGED_NL));
    bytes.extend(b"__CURSOR=s=2\n_TRANSPORT=kernel\nSYSLOG_FACILITY=0\nMESSAGE\n");
    bytes.extend((msg.len() as u64).to_le_bytes());
    bytes.extend(msg.bytes());
    bytes.extend(b"\n\n");
    // The last entry has no closing empty line.
    bytes.extend(
        format!("_TRANSPORT=audit\n_AUDIT_TYPE=1400\nMESSAGE=AVC {}\n", AVC.split_once(": ").unwrap().1.replace("hosts", "last"))
            .bytes(),
    );
    let r = read_records(io::Cursor::new(bytes)).unwrap();
    let got: Vec<_> = r.records.iter().map(|r| (r.origin, r.name.clone().or(r.capname.clone()))).collect();
    assert_eq!((r.format, r.demoted), (Format::JournalExport, false));
    assert_eq!(
        got,
        vec![(Kernel, Some("/etc/hosts".into())), (Userspace, Some("/etc/shadow".into())), (Kernel, Some("/etc/last".into()))]
    );
}

#[test]
fn a_line_that_breaks_the_format_takes_the_proof_from_the_whole_file() {
    // `dmesg -t` or `journalctl -o cat`: a USER_AVC's text after its newline starts a line of its own,
    // which can look like anything — a kmsg record, an auditd line.
    let text = format!(
        "5,1,0,-;audit: type=1400 {AVC}\naudit: type=1107 {}\n",
        user_avc_payload(&format!("x\n5,2,0,-;audit: type=1400 {}", AVC.replace("hosts", "forged") + " tail="))
    );
    assert_eq!(read(&text), (Format::Text, true, vec![(Unproven, "/etc/hosts".into()), (Unproven, "/etc/forged".into())]));
    let text = format!(
        "type=AVC msg={AVC}\naudit: type=1107 {}\n",
        user_avc_payload(&format!("x\ntype=AVC msg={} tail=", AVC.replace("hosts", "forged")))
    );
    assert_eq!(read(&text), (Format::Text, true, vec![(Unproven, "/etc/hosts".into()), (Unproven, "/etc/forged".into())]));
    // Starting as plain text, nothing later is believed either.
    let text = format!("audit: type=1107 {}\n", user_avc_payload(&format!("x\n5,2,0,-;audit: type=1400 {AVC} tail=")));
    assert_eq!(read(&text), (Format::Text, false, vec![(Unproven, "/etc/hosts".into())]));
    // Broken JSON and export streams too.
    let text = format!(
        "{}\nnot json\n",
        serde_json::json!({"_TRANSPORT": "audit", "_AUDIT_TYPE": "1400", "MESSAGE": format!("AVC {}", AVC.split_once(": ").unwrap().1)})
    );
    assert_eq!(read(&text), (Format::Text, true, vec![(Unproven, "/etc/hosts".into())]));
    let text = format!("_TRANSPORT=audit\n_AUDIT_TYPE=1400\nMESSAGE=AVC {}\n\nnot a field\n", AVC.split_once(": ").unwrap().1);
    assert_eq!(read(&text), (Format::Text, true, vec![(Unproven, "/etc/hosts".into())]));
}

#[test]
fn oversized_lines_are_skipped_whole() {
    let text = format!("5,1,0,-;audit: type=1400 {}\n5,2,0,-;audit: type=1400 {AVC}\n", "x".repeat(MAX_LINE + 10));
    assert_eq!(read(&text), (Format::Kmsg, false, vec![(Kernel, "/etc/hosts".into())]));
    // A huge binary field is skipped, the entry still read (without it).
    let mut bytes = b"_TRANSPORT=kernel\nSYSLOG_FACILITY=0\nMESSAGE\n".to_vec();
    bytes.extend(((MAX_LINE + 1) as u64).to_le_bytes());
    bytes.extend(vec![b'a'; MAX_LINE + 1]);
    bytes.extend(format!("\n\n_TRANSPORT=kernel\nSYSLOG_FACILITY=0\nMESSAGE=audit: type=1400 {AVC}\n\n").bytes());
    let r = read_records(io::Cursor::new(bytes)).unwrap();
    assert_eq!((r.format, r.records.len(), r.records[0].origin), (Format::JournalExport, 1, Kernel));
}

#[test]
fn malformed_records_are_counted_not_fatal() {
    let text = format!("5,1,0,-;audit: type=1400 audit(x:1): apparmor=\"DENIED\"\n5,2,0,-;audit: type=1400 {AVC}");
    let r = read_records(io::Cursor::new(text.into_bytes())).unwrap();
    assert_eq!((r.parse_errors, r.records.len()), (1, 1));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a USER_AVC's sender writes, no saved form of its echo yields a kernel record: not the
        /// kmsg dump, not auditd's log, not plain or decoded dmesg (split at its newlines), not the journal.
        #[test]
        fn no_saved_form_of_user_text_is_kernel(
            text in r#"(\n|'|"|x|apparmor="DENIED" |type=1400 |type=AVC msg=|audit: |audit\(1\.0:9\): |5,1,0,-;|kern  :notice: \[ *9\.000000\] |profile="web" |name="/etc/shadow" ){0,16}"#,
        ) {
            let payload = user_avc_payload(&text);
            let forms = [
                kmsg_user(&text),
                format!("type=USER_AVC msg={}", payload.replace('\n', " ")),
                dmesg_user("[    2.000000] ", &text),
                dmesg_user("", &text),
                dmesg_user("kern  :notice: [    2.000000] ", &text),
                format!("{}\n", serde_json::json!({"_TRANSPORT": "kernel", "SYSLOG_FACILITY": "0", "MESSAGE": format!("audit: type=1107 {payload}")})),
            ];
            for form in forms {
                let r = read_records(io::Cursor::new(form.clone().into_bytes())).unwrap();
                for rec in &r.records {
                    prop_assert!(rec.origin != Kernel, "{:?} from {:?}", rec, form);
                }
            }
        }
    }
}

/// An endless input (`/dev/zero`, no newline ever) ends at the cap with an error, and at once
/// when stopped.
#[test]
fn guarded_reader_ends_endless_input() {
    let endless = io::BufReader::new(Guarded::new(io::repeat(0), 1 << 20, || false));
    let err = read_records(endless).unwrap_err();
    assert!(err.to_string().contains("larger than 1048576 bytes"), "{err}");
    let stopped = io::BufReader::new(Guarded::new(io::repeat(b'x'), u64::MAX, || true));
    assert_eq!(read_records(stopped).unwrap_err().to_string(), "interrupted");
    let small = Guarded::new(io::Cursor::new(format!("type=AVC msg={AVC}\n").into_bytes()), 1 << 20, || false);
    assert_eq!(read_records(io::BufReader::new(small)).unwrap().records.len(), 1);
}
