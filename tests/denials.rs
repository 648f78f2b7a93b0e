//! Denial monitoring through the agent: records from an audit source reach GET /denials and
//! the metrics (counted under the profile's name only when the agent manages it), and the
//! `denials` / `suggest` subcommands read the same records.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{TestEnv, profile, show, wait_for};

const DENIED_OPEN: &str = r#"type=AVC msg=audit(1795834070.095:3): apparmor="DENIED" operation="open" class="file" profile="web" name="/etc/secret" pid=92 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
const DENIED_CAP: &str = r#"type=AVC msg=audit(1795834071.000:4): apparmor="DENIED" operation="capable" class="cap" profile="web" pid=93 comm="ping" capability=13  capname="net_raw""#;
/// What auditd writes for a USER_AVC a process (pid 812, uid 65534) sent to imitate web's denials: the
/// text is the sender's, its newline already replaced by auditd.
const FORGED: &str = r#"type=USER_AVC msg=audit(1795834073.000:7): pid=812 uid=65534 auid=4294967295 ses=4294967295 subj=unconfined msg='apparmor="DENIED" operation="capable" class="cap" profile="web" pid=93 comm="ping" capability=21 capname="sys_admin" x type=AVC msg=audit(1795834073.000:8): apparmor="DENIED" operation="open" profile="web" name="/etc/shadow" pid=93'"#;
const FOREIGN: &str = r#"type=AVC msg=audit(1795834072.000:5): apparmor="DENIED" operation="open" class="file" profile="docker-default" name="/x" pid=94 comm="sh" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;

fn append(path: &std::path::Path, line: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap();
    writeln!(f, "{line}").unwrap();
}

#[test]
fn denials_reach_the_endpoint_and_bounded_metrics() {
    let env = TestEnv::new();
    env.write("web", &profile("web", &["/srv/** r"]));
    let log = env.path("").parent().unwrap().join("audit.log");
    std::fs::write(&log, "").unwrap();
    let mut agent = env.spawn_agent(&["--audit-source", log.to_str().unwrap()]);
    agent.wait_ready();
    // The follower starts at the end of the file: only records written from now on count.
    for line in [DENIED_OPEN, DENIED_CAP, FORGED, FOREIGN, "type=SYSCALL msg=audit(1795834072.000:6): arch=c000003e syscall=2"] {
        append(&log, line);
    }
    let body = wait_for(Duration::from_secs(20), "three denials in /denials", || {
        let (st, v) = agent.get_json("/denials")?;
        let n = v["records"].as_array().map_or(0, Vec::len);
        if st == 200 && n == 3 { Ok(v) } else { Err(format!("{st} {v}")) }
    });
    let recs = body["records"].as_array().unwrap();
    let ops: Vec<&str> = recs.iter().map(|r| r["operation"].as_str().unwrap_or("?")).collect();
    assert!(ops.contains(&"open") && ops.contains(&"capable"), "{body}");

    let (_, web_only) = agent.get_json("/denials?profile=web").unwrap();
    assert_eq!(web_only["records"].as_array().unwrap().len(), 2, "{web_only}");
    assert!(web_only["records"].as_array().unwrap().iter().all(|r| r["origin"] == "kernel"), "{web_only}");
    assert_eq!(web_only["source"]["userspace_reported"], 1, "{web_only}");
    // The forged USER_AVC is kept apart, with the sender's kernel-stamped pid and uid.
    let (_, user) = agent.get_json("/denials?origin=userspace&profile=web").unwrap();
    let user = user["records"].as_array().unwrap().clone();
    assert_eq!(user.len(), 1, "{user:?}");
    assert_eq!(
        (&user[0]["origin"], &user[0]["pid"], &user[0]["uid"], &user[0]["reported_pid"]),
        (&"userspace".into(), &812.into(), &65534.into(), &93.into())
    );

    let (st, metrics) = agent.get("/metrics").unwrap();
    assert_eq!(st, 200);
    let line =
        |needle: &str| metrics.lines().find(|l| l.starts_with("apparmor_loader_audit") && l.contains(needle)).map(str::to_string);
    let web = line("profile=\"web\"").unwrap_or_else(|| panic!("no audit series for the managed profile web:\n{metrics}"));
    assert!(web.contains("operation="), "{web}");
    assert!(
        !metrics.contains("profile=\"docker-default\""),
        "a profile the agent does not manage must not become a label:\n{metrics}"
    );
    assert!(metrics.contains("apparmor_loader_audit_userspace_reported_total 1"), "{metrics}");
    assert!(!metrics.contains(r#"operation="capable"} 2"#), "the forged capable denial is not counted:\n{metrics}");
    agent.stop();
}

#[test]
fn denials_and_suggest_by_hand_read_a_saved_log() {
    let env = TestEnv::new();
    let log = env.path("").parent().unwrap().join("kern.log");
    std::fs::write(&log, format!("{DENIED_OPEN}\n{DENIED_CAP}\n{FOREIGN}\n")).unwrap();

    let o = env.run(&["denials", "--audit-source", log.to_str().unwrap(), "--profile", "web"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("/etc/secret") && text.contains("net_raw"), "{text}");
    assert!(!text.contains("docker-default"), "{text}");

    let o = env.run(&["suggest", "--profile", "web", "--from", log.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("+  /etc/secret r,"), "{text}");
    assert!(text.contains("+  capability net_raw,"), "{text}");
    assert!(!text.contains("/x r,"), "another profile's denial is not suggested: {text}");

    // A forged USER_AVC is left out, unless asked for; then marked.
    std::fs::write(&log, format!("{DENIED_OPEN}\n{FORGED}\n")).unwrap();
    let o = env.run(&["suggest", "--profile", "web", "--from", log.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("sys_admin") && !text.contains("/etc/shadow"), "{text}");
    assert!(text.contains("#  ignored 1 userspace-reported record"), "{text}");
    let o = env.run(&["suggest", "--profile", "web", "--trust-userspace", "--from", log.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("?  capability sys_admin,"), "{text}");
    assert!(text.contains("+  /etc/secret r,"), "{text}");

    let o = env.run(&["suggest", "--profile", "web"]);
    assert_eq!(o.status.code(), Some(2), "--from or --live is required: {}", show(&o));
}
