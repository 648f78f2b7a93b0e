//! Profile sets at node scale, with the agent and the fake parser: identities follow includes
//! (an include edit reloads exactly its dependants in one parser call; a broken include keeps
//! the last good version, naming the include and line), failures are remembered by identity
//! (no parser for a broken file until it changes, across resyncs and restarts), and the
//! compiled-policy cache serves a reboot (damaged entries are compiled again, never loaded).

mod common;

use std::fs;
use std::time::Duration;

use common::{CallKind, DEADLINE, TestEnv, file_entry, profile, show, wait_for, write_atomic};

fn with_include(name: &str, include: &str) -> String {
    format!("profile {name} {{\n  include {include}\n  /tmp/{name} r,\n}}\n")
}

fn compiled_files(env: &TestEnv, skip: usize) -> Vec<Vec<String>> {
    env.calls_of(CallKind::Compile).iter().skip(skip).map(|c| c.inputs.clone()).collect()
}

#[test]
fn an_include_edit_replaces_exactly_its_dependants_in_one_parser_call() {
    let env = TestEnv::new();
    let abstractions = env.tmp.path().join("abstractions-cm");
    fs::create_dir_all(abstractions.join("corp")).unwrap();
    fs::write(abstractions.join("corp/base"), "  /etc/corp/** r,\n").unwrap();
    // What the tests' profile() includes, for the fake parser that now has a search path.
    fs::create_dir_all(abstractions.join("abstractions")).unwrap();
    fs::write(abstractions.join("abstractions/base"), "").unwrap();
    env.write("a", &with_include("a", "<corp/base>"));
    env.write("b", &with_include("b", "<corp/base>"));
    env.write("c", &profile("c", &["/tmp/c r"]));
    // An abstraction shipped beside the profiles: an include source, not a failed file.
    env.write("shared", "  /srv/shared/** r,\n");
    env.write("d", &with_include("d", "\"shared\""));
    let dir = abstractions.to_str().unwrap();
    let mut agent = env.spawn_agent(&["--include-dir", dir, "--resync-interval", "1h"]);
    agent.wait_ready();
    let v = agent.profiles();
    assert_eq!(file_entry(&v, "shared").unwrap()["state"], "include", "{v}");
    let a_includes = file_entry(&v, "a").unwrap()["includes"].to_string();
    assert!(a_includes.contains("abstractions-cm/corp/base"), "{v}");
    assert!(file_entry(&v, "d").unwrap()["includes"].to_string().contains("profiles/shared"), "{v}");
    let before = env.kernel.sha1s();
    let compiles = env.count(CallKind::Compile);

    write_atomic(&abstractions.join("corp/base"), b"  /etc/corp/** rw,\n");
    wait_for(DEADLINE, "a and b replaced", || {
        let now = env.kernel.sha1s();
        if now["a"] != before["a"] && now["b"] != before["b"] { Ok(()) } else { Err(format!("{now:?}")) }
    });
    std::thread::sleep(Duration::from_millis(300));
    let after = env.kernel.sha1s();
    assert_eq!((&after["c"], &after["d"]), (&before["c"], &before["d"]), "only the dependants are replaced");
    let new = compiled_files(&env, compiles);
    assert_eq!(new.len(), 1, "one parser call for both dependants: {new:?}");
    assert_eq!(new[0].len(), 2, "{new:?}");

    // The same for the include source in the profiles directory.
    let compiles = env.count(CallKind::Compile);
    write_atomic(&env.path("shared"), b"  /srv/shared/** rw,\n");
    wait_for(DEADLINE, "d replaced", || {
        if env.kernel.sha1("d") != Some(before["d"].clone()) { Ok(()) } else { Err("not yet".into()) }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(compiled_files(&env, compiles).len(), 1);
    assert_eq!(env.kernel.sha1("a"), Some(after["a"].clone()));
}

#[test]
fn a_broken_include_keeps_the_last_good_version_and_names_the_include_and_line() {
    let env = TestEnv::new();
    let abstractions = env.tmp.path().join("abs");
    fs::create_dir_all(&abstractions).unwrap();
    fs::write(abstractions.join("corp"), "  /etc/corp/** r,\n").unwrap();
    env.write("a", &with_include("a", "<corp>"));
    let mut agent = env.spawn_agent(&["--include-dir", abstractions.to_str().unwrap(), "--resync-interval", "1h"]);
    agent.wait_ready();
    let good = env.kernel.sha1("a").unwrap();
    write_atomic(&abstractions.join("corp"), b"  /etc/corp/** r,\n  /etc/oops r\n");
    let entry = agent.wait_file_state("a", "stale");
    let error = entry["error"].as_str().unwrap();
    assert!(error.contains("profiles/a") && error.contains("abs/corp:2"), "{entry}");
    assert_eq!(env.kernel.sha1("a"), Some(good), "the last good version stays enforced");
    assert_eq!(agent.get("/readyz").unwrap().0, 200, "stale keeps readiness");
}

#[test]
fn broken_files_are_not_compiled_again_until_they_change() {
    let env = TestEnv::new();
    for i in 0..20 {
        env.write(&format!("p{i:02}"), &profile(&format!("p{i:02}"), &["/tmp/x r"]));
    }
    for i in 0..5 {
        env.write(&format!("broken{i}"), &format!("profile broken{i} {{\n  /tmp/z r\n}}\n"));
    }
    let mut agent = env.spawn_agent(&["--resync-interval", "1s"]);
    agent.wait_file_state("broken4", "failed");
    agent.wait_file_state("p19", "loaded");
    assert_eq!(env.count(CallKind::Compile), 1, "{:?}", env.calls());
    // Idle with resyncs every second: no parser at all.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(env.count(CallKind::Compile), 1, "resyncs compile nothing: {:?}", env.calls());
    // One edited good file: one parser process, for that file only.
    env.write("p03", &profile("p03", &["/tmp/y r"]));
    wait_for(DEADLINE, "p03 compiled", || if env.count(CallKind::Compile) == 2 { Ok(()) } else { Err("not yet".into()) });
    let last = compiled_files(&env, 1);
    assert_eq!(last, vec![vec![common::sha256_hex(profile("p03", &["/tmp/y r"]).as_bytes())]]);
    agent.stop();

    // A restart compiles nothing, and the errors are still reported.
    let calls = env.count(CallKind::Compile);
    let mut agent = env.spawn_agent(&["--resync-interval", "1h"]);
    let entry = agent.wait_file_state("broken2", "failed");
    assert!(entry["error"].as_str().unwrap().contains("profiles/broken2:2"), "{entry}");
    assert_eq!(agent.get("/readyz").unwrap().0, 503);
    assert_eq!(env.count(CallKind::Compile), calls, "{:?}", env.calls());
    // Fixing a broken file compiles just it.
    env.write("broken2", "profile broken2 {\n  /tmp/z r,\n}\n");
    agent.wait_file_state("broken2", "loaded");
    assert_eq!(compiled_files(&env, 2).len(), 1);
}

#[test]
fn after_a_reboot_the_cache_loads_everything_and_a_damaged_entry_is_compiled_again() {
    let env = TestEnv::new();
    for i in 0..10 {
        env.write(&format!("p{i}"), &profile(&format!("p{i}"), &[&format!("/tmp/{i} r")]));
    }
    let sync = |env: &TestEnv| env.run(&["sync", "--profiles", env.path("").to_str().unwrap()]);
    let o = sync(&env);
    assert!(o.status.success(), "{}", show(&o));
    let sha1s = env.kernel.sha1s();
    assert_eq!(env.count(CallKind::Compile), 1);

    // A reboot: the kernel forgets everything, the state dir stays.
    let reboot = || {
        fs::write(env.kernel.apparmor().join("profiles"), "").unwrap();
        fs::remove_dir_all(env.kernel.apparmor().join("policy/profiles")).unwrap();
        fs::create_dir_all(env.kernel.apparmor().join("policy/profiles")).unwrap();
    };
    reboot();
    let o = sync(&env);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(env.count(CallKind::Compile), 1, "every profile from the cache: {:?}", env.calls());
    assert_eq!(env.kernel.sha1s(), sha1s, "the cache gives what a fresh compile gives");

    // A truncated entry and a foreign one are never loaded: those files are compiled again.
    let cache = env.state.join("policy-cache");
    let mut entries: Vec<_> = fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    assert_eq!(entries.len(), 10);
    let bytes = fs::read(&entries[0]).unwrap();
    fs::write(&entries[0], &bytes[..bytes.len() / 2]).unwrap();
    fs::copy(&entries[2], &entries[1]).unwrap();
    reboot();
    let o = sync(&env);
    assert!(o.status.success(), "{}", show(&o));
    let recompiled = compiled_files(&env, 1);
    assert_eq!(recompiled.len(), 1, "{recompiled:?}");
    assert_eq!(recompiled[0].len(), 2, "{recompiled:?}");
    assert_eq!(env.kernel.sha1s(), sha1s);
}

#[test]
fn cache_size_is_validated() {
    let env = TestEnv::new();
    let o = env.run(&["sync", "--profiles", env.path("").to_str().unwrap(), "--cache-size", "99999999999999999999"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let o = env.run(&["sync", "--profiles", env.path("").to_str().unwrap(), "--cache-size", "lots"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

/// A batch of real profiles on a slow node takes many times one file's compile time: the parser's
/// deadline grows with the batch, so a healthy batch is not killed and retried file by file.
#[test]
fn the_parser_deadline_grows_with_the_batch() {
    let env = TestEnv::new();
    for i in 0..3 {
        env.write(&format!("p{i}"), &profile(&format!("p{i}"), &["/tmp/x r"]));
    }
    let mut cmd = env.command(&["sync", "--profiles", env.path("").to_str().unwrap(), "--parser-timeout", "1s"]);
    // 3 files at 0.6 s each: 1.8 s, more than one timeout, less than three.
    cmd.env("FAKE_PARSER_FILE_DELAY_MS", "600");
    let o = common::run_with_deadline(cmd);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(env.count(CallKind::Compile), 1, "{:?}", env.calls());
    assert!(env.kernel.has("p0") && env.kernel.has("p2"));
}

/// `check` searches the include dirs `run` searches: the same `--include-dir` (or
/// `APPARMOR_LOADER_INCLUDE_DIR`, or `include_dir:` in the config file) is passed as `-I`.
#[test]
fn check_searches_the_include_dirs_run_does() {
    let env = TestEnv::new();
    let abstractions = env.tmp.path().join("abstractions-cm");
    fs::create_dir_all(abstractions.join("corp")).unwrap();
    fs::write(abstractions.join("corp/base"), "  /etc/corp/** r,\n").unwrap();
    let empty = env.tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    env.write("a", &with_include("a", "<corp/base>"));
    let a = env.path("a");
    let check = |dir: &std::path::Path| env.run(&["check", a.to_str().unwrap(), "--include-dir", dir.to_str().unwrap()]);
    let o = check(&abstractions);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = check(&empty);
    assert_eq!(o.status.code(), Some(1), "the include is looked for in the given dir only: {}", show(&o));
    let config = env.tmp.path().join("config.yaml");
    fs::write(&config, format!("include_dir: [{}]\n", abstractions.display())).unwrap();
    let o = env.run(&["check", a.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}
