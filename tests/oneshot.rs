//! The one-shot subcommands (`sync`, `diff`, `check`, `status`, `unload`) and the CLI surface
//! (env vars, config file, exit codes), against the fake kernel and parser.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;

use common::*;
use serde_json::Value;

fn out(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn sync(env: &TestEnv, extra: &[&str]) -> std::process::Output {
    let p = env.profiles.to_str().unwrap().to_string();
    let mut args = vec!["sync", "--profiles", &p];
    args.extend_from_slice(extra);
    env.run(&args)
}

fn two(env: &TestEnv) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    files.insert("alpha".to_string(), profile("alpha", &["/alpha r"]));
    files.insert("beta".to_string(), "profile beta {\n  ^hat {\n  }\n}\nprofile beta2 {\n}\n".to_string());
    for (f, c) in &files {
        env.write(f, c);
    }
    files
}

#[test]
fn sync_loads_and_second_sync_is_a_no_op() {
    let env = TestEnv::new();
    let files = two(&env);
    let o = sync(&env, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let (listing, shas) = expected_kernel(&files);
    assert_eq!(env.kernel.listing(), listing);
    assert_eq!(env.kernel.sha1s(), shas);
    assert_eq!(env.count(CallKind::Compile), 1, "{:?}", env.calls());
    assert_eq!(env.count(CallKind::Load), 2, "one load per file: {:?}", env.calls());
    assert!(env.state.join("state.json").is_file(), "state file written");

    let n = env.calls().len();
    let rev = env.kernel.revision();
    let o = sync(&env, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let new: Vec<Call> = env.calls()[n..].to_vec();
    assert!(new.iter().all(|c| c.kind() == CallKind::Version), "no parser but the preflight: {new:?}");
    assert_eq!(env.kernel.revision(), rev);
}

#[test]
fn sync_with_a_bad_file_exits_1_and_loads_the_rest() {
    let env = TestEnv::new();
    two(&env);
    env.write("bad", "profile bad {\n  /x r,\n  /y r\n}\n");
    let o = sync(&env, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(out(&o).contains("bad"), "names the bad file: {}", show(&o));
    assert!(env.kernel.has("alpha") && env.kernel.has("beta") && env.kernel.has("beta2"));
    assert!(!env.kernel.has("bad"));
}

#[test]
fn sync_refuses_foreign_and_exits_1() {
    let env = TestEnv::new();
    env.kernel.seed_foreign("docker-default", "enforce");
    let sha = env.kernel.sha1("docker-default");
    two(&env);
    env.write("docker", &profile("docker-default", &[]));
    let o = sync(&env, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(out(&o).contains("docker-default"), "{}", show(&o));
    assert_eq!(env.kernel.sha1("docker-default"), sha);
    assert!(env.kernel.has("alpha"));
    // Adopted, it loads.
    let o = sync(&env, &["--adopt", "docker-*"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_ne!(env.kernel.sha1("docker-default"), sha);
}

/// A name padded with spaces would be a second name for the foreign profile wherever a line is
/// trimmed (the listing, the in-use scan): refused with the file named, nothing loaded.
#[test]
fn a_padded_profile_name_is_refused_before_any_load() {
    let env = TestEnv::new();
    env.kernel.seed_foreign("docker-default", "enforce");
    let sha = env.kernel.sha1("docker-default");
    two(&env);
    env.write("docker", "profile \" docker-default\" {\n  /tmp/** r,\n}\n");
    let o = sync(&env, &["--unload-removed"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let text = show(&o);
    assert!(text.contains("docker") && text.contains("starts or ends with a space"), "{text}");
    assert_eq!(env.kernel.sha1("docker-default"), sha);
    assert!(env.kernel.has("alpha") && !env.kernel.names().iter().any(|n| n.trim() != n), "{:?}", env.kernel.names());
}

/// The parser runs inside the profiles directory; a state dir given relative to where the
/// command was started must still be where the private copies are found.
#[test]
fn a_relative_state_dir_still_compiles() {
    let env = TestEnv::new();
    two(&env);
    let parent = env.state.parent().unwrap();
    let rel = env.state.file_name().unwrap().to_str().unwrap();
    let p = env.profiles.to_str().unwrap();
    let mut cmd = env.command_except(&["sync", "--profiles", p, "--state-dir", rel], &["--state-dir"]);
    cmd.current_dir(parent);
    let o = common::run_with_deadline(cmd);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(env.kernel.has("alpha") && env.kernel.has("beta"));
    assert!(env.state.join("state.json").is_file(), "the state lands in the relative dir");
}

#[test]
fn sync_unload_removed_and_orphans() {
    let env = TestEnv::new();
    two(&env);
    assert_eq!(sync(&env, &[]).status.code(), Some(0));
    env.remove("beta");
    let o = sync(&env, &[]);
    assert_eq!(o.status.code(), Some(0), "an orphan is not a failure: {}", show(&o));
    assert!(env.kernel.has("beta") && env.kernel.has("beta//hat"), "orphans stay by default");
    assert_eq!(env.count(CallKind::Remove), 0);
    let o = sync(&env, &["--unload-removed"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(env.kernel.names(), vec!["alpha"]);
}

#[test]
fn scan_skips_and_rejects_the_right_files() {
    let env = TestEnv::new();
    env.write("good", &profile("good", &[]));
    let bad = "this is not a profile\n";
    for skipped in [".hidden", "good~", ".good.swp", "good.swp", "good.dpkg-new", "good.dpkg-old"] {
        fs::write(env.path(skipped), bad).unwrap();
    }
    fs::create_dir(env.path("sub")).unwrap();
    fs::write(env.path("sub/inner"), profile("inner", &[])).unwrap();
    // Rejected: escaping symlink, too big, not UTF-8.
    let outside = env.tmp.path().join("outside");
    fs::write(&outside, profile("outside", &[])).unwrap();
    symlink(&outside, env.path("escape")).unwrap();
    let mut big = profile("big", &[]);
    while big.len() < 5000 {
        big.push_str("# padding padding padding padding padding padding\n");
    }
    fs::write(env.path("big"), &big).unwrap();
    fs::write(env.path("binary"), b"profile bin {\n  /\xff\xfe r,\n}\n").unwrap();
    // Allowed: a symlink that stays inside the dir.
    fs::create_dir(env.path("data")).unwrap();
    fs::write(env.path("data/linked"), profile("linked", &[])).unwrap();
    symlink("data/linked", env.path("linked")).unwrap();

    let o = sync(&env, &["--max-file-size", "4096"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let text = out(&o);
    for rejected in ["escape", "big", "binary"] {
        assert!(text.contains(rejected), "{rejected} is named: {}", show(&o));
    }
    assert_eq!(env.kernel.names(), vec!["good", "linked"], "{}", show(&o));
    for c in env.calls() {
        for f in c.files() {
            assert!(
                !f.ends_with('~') && !f.contains(".swp") && !f.contains(".dpkg-") && !f.ends_with(".hidden"),
                "ignored file reached the parser: {c:?}"
            );
        }
    }

    let o = sync(&env, &["--max-file-size", "4096", "--recursive"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(env.kernel.has("inner"), "--recursive descends: {}", show(&o));
}

#[test]
fn diff_shows_the_plan_and_changes_nothing() {
    let env = TestEnv::new();
    two(&env);
    let p = env.profiles.to_str().unwrap().to_string();
    let o = env.run(&["diff", "--profiles", &p]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let text = out(&o);
    for name in ["alpha", "beta"] {
        assert!(text.contains(name), "{name} in the plan: {text}");
    }
    assert_eq!(env.kernel.revision(), 0);
    assert_eq!(env.count(CallKind::Load) + env.count(CallKind::Remove), 0);
    assert!(!env.state.join("state.json").exists(), "diff writes no state");

    assert_eq!(sync(&env, &[]).status.code(), Some(0));
    env.write("alpha", &profile("alpha", &["/alpha r", "/alpha2 r"]));
    let rev = env.kernel.revision();
    let o = env.run(&["diff", "--profiles", &p]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(out(&o).contains("alpha"), "{}", show(&o));
    assert_eq!(env.kernel.revision(), rev);
}

#[test]
fn check_compiles_only_and_reports_file_line() {
    let env = TestEnv::new();
    let good = env.tmp.path().join("good");
    fs::write(&good, profile("good", &[])).unwrap();
    let bad = env.tmp.path().join("bad");
    fs::write(&bad, "# x\n\nprofile bad {\n  /x r\n}\n").unwrap();
    // No securityfs, no state dir: check needs neither.
    let parser = fake_parser();
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(args).arg("--parser").arg(&parser).env("FAKE_PARSER_LOG", &env.calls);
        run_with_deadline(cmd)
    };
    let o = run(&["check", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = run(&["check", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let want = format!("{}:4:", bad.display());
    assert!(out(&o).contains(&want), "expected `{want} message`: {}", show(&o));
    assert!(env.calls().iter().all(|c| c.kind() == CallKind::Check || c.kind() == CallKind::Version), "{:?}", env.calls());
    assert!(env.count(CallKind::Check) >= 2);
}

fn find_named<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => {
            if m.get("name").and_then(Value::as_str) == Some(name) {
                return Some(v);
            }
            m.values().find_map(|x| find_named(x, name))
        }
        Value::Array(a) => a.iter().find_map(|x| find_named(x, name)),
        _ => None,
    }
}

#[test]
fn status_lists_kernel_profiles_managed_and_foreign() {
    let env = TestEnv::new();
    env.kernel.seed_foreign("docker-default", "complain");
    two(&env);
    assert_eq!(sync(&env, &[]).status.code(), Some(0));
    let o = env.run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("status --json is JSON ({e}): {}", show(&o)));
    let dd = find_named(&v, "docker-default").unwrap_or_else(|| panic!("docker-default in {v}"));
    assert!(dd.to_string().contains("foreign"), "docker-default is foreign: {dd}");
    assert!(dd.to_string().contains("complain"), "with its kernel mode: {dd}");
    let alpha = find_named(&v, "alpha").unwrap_or_else(|| panic!("alpha in {v}"));
    assert!(!alpha.to_string().contains("foreign"), "alpha is managed: {alpha}");
    assert!(alpha.to_string().contains("loaded"), "alpha is loaded: {alpha}");

    let o = env.run(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let text = out(&o);
    assert!(text.contains("alpha") && text.contains("docker-default") && text.contains("beta2"), "{text}");
}

#[test]
fn unload_removes_managed_and_needs_force_for_foreign() {
    let env = TestEnv::new();
    env.kernel.seed_foreign("docker-default", "enforce");
    two(&env);
    assert_eq!(sync(&env, &[]).status.code(), Some(0));
    let o = env.run(&["unload", "beta"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!env.kernel.has("beta") && !env.kernel.has("beta//hat"));
    assert!(env.kernel.has("beta2") && env.kernel.has("alpha"));

    let o = env.run(&["unload", "docker-default"]);
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert!(env.kernel.has("docker-default"), "foreign needs --force");
    let o = env.run(&["unload", "docker-default", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!env.kernel.has("docker-default"));
}

#[test]
fn every_flag_from_environment_and_host_flags_after_the_subcommand() {
    let env = TestEnv::new();
    two(&env);
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("sync")
        .env("APPARMOR_LOADER_PROFILES", &env.profiles)
        .env("APPARMOR_LOADER_SECURITYFS", &env.kernel.root)
        .env("APPARMOR_LOADER_PARSER", fake_parser())
        .env("APPARMOR_LOADER_STATE_DIR", &env.state)
        .env("APPARMOR_LOADER_PROC", &env.proc_.root)
        .env("FAKE_PARSER_LOG", &env.calls);
    let o = run_with_deadline(cmd);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(env.kernel.has("alpha"));

    // Host flags after the subcommand; global ones (logging) anywhere.
    env.write("gamma", &profile("gamma", &[]));
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["--log-level", "debug", "sync"]).args(env.env_args()).arg("--profiles").arg(&env.profiles);
    cmd.env("FAKE_PARSER_LOG", &env.calls);
    let o = run_with_deadline(cmd);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(env.kernel.has("gamma"));
}

/// Each subcommand lists and takes only its own flags: a host flag it would ignore is a usage
/// error naming the flag, before anything runs.
#[test]
fn a_flag_the_subcommand_does_not_use_is_refused() {
    let help = |sub: &str| {
        let o = std::process::Command::new(BIN).args([sub, "--help"]).output().unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let denials = help("denials");
    for absent in ["--parser", "--state-dir", "--parser-timeout", "--securityfs", "--profiles"] {
        assert!(!denials.contains(absent), "denials --help lists {absent}:\n{denials}");
    }
    assert!(denials.contains("--proc") && denials.contains("--audit-source") && denials.contains("--log-level"));
    let check = help("check");
    assert!(check.contains("--parser") && check.contains("--parser-timeout") && !check.contains("--state-dir"), "{check}");
    let run = help("run");
    for flag in ["--securityfs", "--parser", "--state-dir", "--proc", "--parser-timeout", "--node-features-file", "--listen"] {
        assert!(run.contains(flag), "run --help lacks {flag}");
    }
    for (args, flag) in [
        (&["denials", "--parser", "/x"][..], "--parser"),
        (&["check", "--state-dir", "/x", "f"][..], "--state-dir"),
        (&["status", "--parser-jobs", "2"][..], "--parser-jobs"),
        (&["--proc", "/x", "sync", "--profiles", "/p"][..], "--proc"),
    ] {
        let o = std::process::Command::new(BIN).args(args).env_remove("APPARMOR_LOADER_PARSER").output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(flag), "{args:?}: {}", show(&o));
    }
}

#[test]
fn config_file_sets_flags_and_modes() {
    let env = TestEnv::new();
    two(&env);
    let cfg = env.tmp.path().join("cfg.yaml");
    fs::write(
        &cfg,
        format!(
            "profiles: {}\nsecurityfs: {}\nparser: {}\nstate_dir: {}\nproc: {}\nmodes:\n  beta: complain\n",
            env.profiles.display(),
            env.kernel.root.display(),
            fake_parser().display(),
            env.state.display(),
            env.proc_.root.display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("sync").arg("--config").arg(&cfg).env("FAKE_PARSER_LOG", &env.calls);
    let o = run_with_deadline(cmd);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(env.kernel.mode("beta").as_deref(), Some("complain"));
    assert_eq!(env.kernel.mode("beta2").as_deref(), Some("complain"), "the mode applies to the file's load (-C)");
    assert_eq!(env.kernel.mode("alpha").as_deref(), Some("enforce"));

    // --default-mode complain from the command line beats nothing in the config.
    env.write("delta", &profile("delta", &[]));
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("sync").arg("--config").arg(&cfg).arg("--default-mode").arg("complain").env("FAKE_PARSER_LOG", &env.calls);
    let o = run_with_deadline(cmd);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(env.kernel.mode("delta").as_deref(), Some("complain"));
}

#[test]
fn exit_codes_for_usage_and_environment_errors() {
    let env = TestEnv::new();
    two(&env);
    // Usage: missing --profiles, unknown flag.
    let o = env.run(&["sync"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let o = env.run(&["sync", "--profiles", env.profiles.to_str().unwrap(), "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    // Environment: no parser.
    let mut cmd = env.command_except(&["sync", "--profiles", env.profiles.to_str().unwrap()], &["--parser"]);
    cmd.arg("--parser").arg(env.tmp.path().join("nope"));
    let o = run_with_deadline(cmd);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    // Environment: securityfs without apparmor (not the default path: no mount attempt).
    let empty = env.tmp.path().join("empty-sfs");
    fs::create_dir(&empty).unwrap();
    let mut cmd = env.command_except(&["sync", "--profiles", env.profiles.to_str().unwrap()], &["--securityfs"]);
    cmd.arg("--securityfs").arg(&empty);
    let o = run_with_deadline(cmd);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let e = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(e.contains("apparmor") || e.contains("securityfs"), "{}", show(&o));
    assert_eq!(env.kernel.revision(), 0);
}

#[test]
fn help_explains_flags() {
    let o = run_with_deadline({
        let mut c = std::process::Command::new(BIN);
        c.args(["run", "--help"]);
        c
    });
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let text = out(&o);
    for flag in
        ["--profiles", "--unload-removed", "--adopt", "--listen", "--resync-interval", "--parser-timeout", "APPARMOR_LOADER_"]
    {
        assert!(text.contains(flag), "{flag} in run --help:\n{text}");
    }
}

#[test]
fn renaming_a_profile_inside_its_file() {
    let env = TestEnv::new();
    env.write("app", &profile("old-name", &["/x r"]));
    assert_eq!(sync(&env, &[]).status.code(), Some(0));
    env.write("app", &profile("new-name", &["/x r"]));
    let o = sync(&env, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(env.kernel.has("new-name"));
    assert!(env.kernel.has("old-name"), "the old name is an orphan: left loaded by default");
    let o = sync(&env, &["--unload-removed"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(env.kernel.names(), vec!["new-name"]);
}

#[test]
fn mode_changes_from_the_config_are_applied_both_ways() {
    let env = TestEnv::new();
    two(&env);
    assert_eq!(sync(&env, &[]).status.code(), Some(0));
    let sha = env.kernel.sha1("alpha");
    let cfg = env.tmp.path().join("cfg.yaml");
    fs::write(&cfg, "modes:\n  alpha: complain\n").unwrap();
    let n = env.count(CallKind::Load);
    let o = sync(&env, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(env.kernel.mode("alpha").as_deref(), Some("complain"));
    assert_eq!(env.count(CallKind::Load), n + 1, "only alpha is reloaded: {:?}", env.calls());
    let o = sync(&env, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(env.kernel.mode("alpha").as_deref(), Some("enforce"), "back to enforce without the config");
    assert_eq!(env.kernel.sha1("alpha"), sha);
    assert_eq!(env.kernel.mode("beta").as_deref(), Some("enforce"));
}

#[test]
fn unreadable_state_file_is_not_silently_replaced() {
    // A corrupt state file must not make the agent forget what it owns and then treat its own
    // profiles as foreign (refusing every file) or overwrite the evidence: it either refuses to
    // run (non-zero exit) or recovers ownership from the kernel.
    let env = TestEnv::new();
    two(&env);
    assert_eq!(sync(&env, &[]).status.code(), Some(0));
    let state = env.state.join("state.json");
    fs::write(&state, "{ this is not json").unwrap();
    let o = sync(&env, &[]);
    if o.status.success() {
        assert!(env.kernel.has("alpha") && env.kernel.has("beta"));
    } else {
        assert_eq!(fs::read_to_string(&state).unwrap(), "{ this is not json", "evidence kept: {}", show(&o));
        assert!(out(&o).contains("state"), "says the state file is the problem: {}", show(&o));
    }
    assert_eq!(env.count(CallKind::Remove), 0);
}

#[test]
fn kernel_listing_with_every_mode_and_odd_names() {
    let env = TestEnv::new();
    for (name, mode) in [
        ("k", "kill"),
        ("u", "unconfined"),
        ("pr", "prompt"),
        ("mx", "mixed"),
        ("/usr/bin/with space", "enforce"),
        ("snap.lxd.lxc", "complain"),
        ("parent//child", "enforce"),
    ] {
        env.kernel.seed_foreign(name, mode);
    }
    two(&env);
    let o = sync(&env, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = env.run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
    for (name, mode) in
        [("k", "kill"), ("u", "unconfined"), ("pr", "prompt"), ("mx", "mixed"), ("/usr/bin/with space", "enforce")]
    {
        let e = find_named(&v, name).unwrap_or_else(|| panic!("{name} in {v}"));
        assert!(e.to_string().contains(mode), "{name} has mode {mode}: {e}");
        assert!(e.to_string().contains("foreign"), "{e}");
    }
    assert_eq!(env.kernel.mode("k").as_deref(), Some("kill"));
}

#[test]
fn json_logs_are_one_json_object_a_line() {
    let env = TestEnv::new();
    two(&env);
    env.write("bad", "profile bad {\n  /x r\n}\n");
    let o = sync(&env, &["--log-format", "json", "--log-level", "debug"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "{}", show(&o));
    let mut has_file_field = false;
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
        assert!(v.get("level").is_some() && v.get("timestamp").is_some(), "{l}");
        has_file_field |= v.get("file").and_then(Value::as_str).is_some_and(|f| f.ends_with("bad"));
    }
    assert!(has_file_field, "the failure is logged with a file field: {err}");
}

#[test]
fn in_use_check_reads_both_attr_files() {
    let env = TestEnv::new();
    two(&env);
    assert_eq!(sync(&env, &[]).status.code(), Some(0));
    // Newer kernels: /proc/<pid>/attr/apparmor/current.
    let d = env.proc_.root.join("777/task/777/attr/apparmor");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("current"), "beta//hat (complain)\n").unwrap();
    // Older kernels: /proc/<pid>/attr/current, with a stacked label.
    env.proc_.confine(778, "docker-default//&alpha (enforce)");
    env.remove("beta");
    env.remove("alpha");
    let o = sync(&env, &["--unload-removed"]);
    assert_eq!(o.status.code(), Some(0), "in use is not a failure: {}", show(&o));
    assert!(env.kernel.has("beta") && env.kernel.has("alpha"), "both still confine a task");
    assert!(!env.kernel.has("beta2"), "beta2 confines nothing");
    fs::remove_dir_all(env.proc_.root.join("777")).unwrap();
    env.proc_.exit(778);
    let o = sync(&env, &["--unload-removed"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(env.kernel.names().is_empty(), "{:?}", env.kernel.names());
}

/// Linux 6.8 and later show `policy/profiles/*/sha256` and no `sha1`: loads are verified
/// against it (a sync exits 0 and owns what it loaded), and `inspect --kernel` matches it.
#[test]
fn a_kernel_with_only_sha256_hashes_verifies_and_inspects() {
    let env = TestEnv::new();
    fs::write(env.kernel.apparmor().join(".fake-sha256"), "").unwrap();
    let files = two(&env);
    let o = sync(&env, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let hashes = env.kernel.sha1s();
    assert_eq!(hashes.keys().collect::<Vec<_>>(), ["alpha", "beta", "beta2"]);
    assert!(hashes.values().all(|h| h.len() == 64), "SHA-256 only: {hashes:?}");
    let d = fs::read_dir(env.kernel.apparmor().join("policy/profiles")).unwrap().next().unwrap().unwrap().path();
    assert!(!d.join("sha1").exists() && d.join("sha256").is_file());
    let state: Value = serde_json::from_str(&fs::read_to_string(env.state.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        state["profiles"]["alpha"]["kernel_sha1"].as_str(),
        Some(hashes["alpha"].as_str()),
        "owned, with the kernel's hash"
    );
    // A second sync sees nothing to do: the kernel's SHA-256 is the compiled policy's.
    let rev = env.kernel.revision();
    let o = sync(&env, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(env.kernel.revision(), rev);

    let alpha = env.profiles.join("alpha");
    let o = env.run(&["inspect", "--kernel", "--json", alpha.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["profiles"][0]["kernel"], "loaded");
    assert_eq!(v[0]["profiles"][0]["sha256"].as_str(), Some(hashes["alpha"].as_str()));
    let _ = files;
}

/// A parser that says what an AppArmor 4 parser says with `--warn=rule-not-enforced` on a kernel
/// lacking userns and dbus mediation, then runs the fake parser. `GARBLE=1`: the two warnings come
/// interleaved, as parallel compile workers write them.
fn warning_parser(env: &TestEnv) -> std::path::PathBuf {
    let path = env.tmp.path().join("warning-parser");
    let script = format!(
        r#"#!/bin/sh
case " $* " in *" -Q "*)
  for a in "$@"; do
    [ -f "$a" ] || continue
    grep -q 'userns,' "$a" && uns=$a
    grep -q 'dbus send,' "$a" && bus=$a
  done
  if [ -n "$GARBLE" ] && [ -n "$uns" ] && [ -n "$bus" ]; then
    printf 'Warning from profile uns (%s' "$uns" >&2
    printf 'Warning from profile bus (%s): dbus rules not enforced\n): userns rules not enforced\n' "$bus" >&2
  else
    [ -n "$uns" ] && echo "Warning from profile uns ($uns): userns rules not enforced" >&2
    [ -n "$bus" ] && echo "Warning from profile bus ($bus): dbus rules not enforced" >&2
  fi;;
esac
exec {} "$@"
"#,
        fake_parser().display()
    );
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// A rule the kernel would leave out fails its file, which is never loaded; a dbus rule (no
/// upstream kernel enforces one; the distributions' profiles are full of them) is no error; and a
/// warning cut in two loads nothing on trust: every file is compiled again, alone.
#[test]
fn a_rule_the_kernel_would_not_enforce_fails_its_file() {
    for garble in [false, true] {
        let env = TestEnv::new();
        env.write("uns", &profile("uns", &["/x r", "userns"]));
        env.write("bus", &profile("bus", &["/x r", "dbus send"]));
        env.write("plain", &profile("plain", &["/x r"]));
        let mut cmd = env.command_except(&["sync", "--profiles", env.profiles.to_str().unwrap()], &["--parser"]);
        cmd.env("APPARMOR_LOADER_PARSER", warning_parser(&env));
        if garble {
            cmd.env("GARBLE", "1");
        }
        let o = run_with_deadline(cmd);
        let text = out(&o);
        assert_eq!(o.status.code(), Some(1), "garble={garble}: {text}");
        assert!(text.contains("profile uns: userns rules not enforced"), "garble={garble}: {text}");
        assert!(!env.kernel.has("uns"), "garble={garble}: uns loaded without its rule: {text}");
        assert!(env.kernel.has("bus") && env.kernel.has("plain"), "garble={garble}: {text}");
        let compiles: Vec<Vec<String>> =
            env.calls().into_iter().map(|c| c.argv).filter(|argv| argv.iter().any(|a| a == "-Q")).collect();
        assert!(compiles.iter().all(|a| a.iter().any(|x| x == "-j1") && a.iter().any(|x| x == "--warn=rule-not-enforced")));
        // Cut: the batch, then each file alone (the fake's singles do not garble: one file, one warning).
        assert_eq!(compiles.len(), if garble { 4 } else { 1 }, "garble={garble}: {compiles:?}");
    }
}
