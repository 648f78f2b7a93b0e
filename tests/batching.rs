//! Parser process counts: batches stay batches when one file in them is bad, and a change of
//! one file among many costs one parser process.

mod common;

use common::{CallKind, TestEnv, profile, show};

#[test]
fn one_bad_file_in_a_cold_batch_costs_no_extra_processes() {
    let env = TestEnv::new();
    for i in 0..20 {
        env.write(&format!("p{i:02}"), &profile(&format!("p{i:02}"), &["/tmp/x r"]));
    }
    // Compiles for -N but the load fails: only the parser can tell.
    env.write("bad-load", &format!("{}# fake: fail-load\n", profile("bad-load", &["/tmp/y r"])));
    // Not readable by the quick reader (a non-tunables include): goes through one batched -N.
    env.write("incl", "include <local/incl>\nprofile incl {\n  /tmp/z r,\n}\n");
    env.write("syntax", "profile syntax {\n  /tmp/z r\n}\n");
    let o = env.run(&["sync", "--profiles", env.path("").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("failed   bad-load"), "{text}");
    assert!(text.contains("failed   syntax") && text.contains("profiles/syntax:"), "the error names file and line: {text}");
    // The parser goes on past bad files: one batch, never a process per file.
    assert_eq!(env.count(CallKind::Load), 1, "{:?}", env.calls_of(CallKind::Load));
    assert!(env.count(CallKind::Names) <= 1, "at most one batched -N: {:?}", env.calls());
    for i in 0..20 {
        assert!(env.kernel.has(&format!("p{i:02}")));
    }
    assert!(env.kernel.has("incl"));
    assert!(!env.kernel.has("bad-load") && !env.kernel.has("syntax"));
}

#[test]
fn a_parser_that_stops_at_the_first_bad_file_costs_one_more_batch() {
    let env = TestEnv::new();
    for i in 0..10 {
        env.write(&format!("p{i:02}"), &profile(&format!("p{i:02}"), &["/tmp/x r"]));
    }
    env.write("a-syntax", "profile a-syntax {\n  /tmp/z r\n}\n");
    let mut cmd = env.command(&["sync", "--profiles", env.path("").to_str().unwrap()]);
    // An in-process parser exits at the first syntax error: later files are never loaded.
    cmd.env("FAKE_PARSER_NO_FORK", "1");
    let o = common::run_with_deadline(cmd);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    for i in 0..10 {
        assert!(env.kernel.has(&format!("p{i:02}")), "p{i:02} loaded after the retry: {}", show(&o));
    }
    let loads = env.calls_of(CallKind::Load);
    assert_eq!(loads.len(), 2, "{loads:?}");
    assert!(loads[1].files().iter().all(|f| !f.ends_with("a-syntax")), "{loads:?}");
}

#[test]
fn one_changed_file_among_many_costs_one_parser_process() {
    let env = TestEnv::new();
    for i in 0..300 {
        env.write(&format!("p{i:03}"), &profile(&format!("p{i:03}"), &["/tmp/x r"]));
    }
    let dir = env.path("");
    let dir = dir.to_str().unwrap();
    assert_eq!(env.run(&["sync", "--profiles", dir]).status.code(), Some(0));
    let before = env.calls().len();
    env.write("p123", &profile("p123", &["/tmp/x r", "/tmp/changed r"]));
    let o = env.run(&["sync", "--profiles", dir]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let after: Vec<_> = env.calls()[before..].iter().filter(|c| c.kind() != CallKind::Version).cloned().collect();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].kind(), CallKind::Load);
    assert!(after[0].files().iter().any(|f| f.ends_with("p123")), "{after:?}");
}
