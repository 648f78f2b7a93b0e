//! Parser process counts: a compile batch stays one process when a file in it is bad, and a
//! change of one file among many costs one compile. (Loads here are `-B` processes only because
//! the tests' securityfs is a plain directory; on a real kernel they are writes to securityfs.)

mod common;

use common::{CallKind, TestEnv, profile, show};

#[test]
fn one_bad_file_in_a_cold_batch_costs_no_extra_processes() {
    let env = TestEnv::new();
    for i in 0..20 {
        env.write(&format!("p{i:02}"), &profile(&format!("p{i:02}"), &["/tmp/x r"]));
    }
    // Compiles, but the kernel refuses its policy.
    env.write("bad-load", &format!("{}# fake: fail-load\n", profile("bad-load", &["/tmp/y r"])));
    env.write("incl", "include <local/incl>\nprofile incl {\n  /tmp/z r,\n}\n");
    env.write("syntax", "profile syntax {\n  /tmp/z r\n}\n");
    let o = env.run(&["sync", "--profiles", env.path("").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("failed   bad-load"), "{text}");
    assert!(text.contains("failed   syntax") && text.contains("profiles/syntax:"), "the error names file and line: {text}");
    // The parser goes on past bad files: one compile, never a process per file.
    assert_eq!(env.count(CallKind::Compile), 1, "{:?}", env.calls_of(CallKind::Compile));
    assert_eq!(env.count(CallKind::Names), 0, "{:?}", env.calls());
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
    // The first compile stops at a-syntax (first by name) with an error naming it; the files after
    // it got no policy and no error, so one more compile takes just them.
    let compiles = env.calls_of(CallKind::Compile);
    assert_eq!(compiles.len(), 2, "{compiles:?}");
    let bad = std::fs::read_to_string(env.path("a-syntax")).unwrap();
    assert!(!compiles[1].has_content(&bad) && compiles[1].inputs.len() == 10, "{compiles:?}");
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
    let after: Vec<_> = env.calls()[before..].iter().filter(|c| c.kind() == CallKind::Compile).cloned().collect();
    assert_eq!(after.len(), 1, "{after:?}");
    let changed = std::fs::read_to_string(env.path("p123")).unwrap();
    assert_eq!(after[0].inputs, vec![common::sha256_hex(changed.as_bytes())], "{after:?}");
}
