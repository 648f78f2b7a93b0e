//! Integration tests of `apparmor-loader run` against a fake kernel and the fake parser.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const WORKERS: &str = "\
# two profiles and a hat
profile w1 {
  /srv/w1/** r,
}
profile w2 flags=(attach_disconnected) {
  /srv/w2/** rw,
  ^handling {
    /srv/w2/tmp/* rw,
  }
}
";

const NGINX: &str = "\
/usr/sbin/nginx flags=(complain) {
  capability net_bind_service,
  /etc/nginx/** r,
}
";

/// Writes the three-file set; returns file name -> content.
fn three(env: &TestEnv) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    files.insert("payment-api".to_string(), profile("payment-api", &["/etc/payment/** r", "network inet tcp"]));
    files.insert("workers".to_string(), WORKERS.to_string());
    files.insert("nginx".to_string(), NGINX.to_string());
    for (f, c) in &files {
        env.write(f, c);
    }
    files
}

fn str_of(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

/// Compile calls that were given `file`'s current content (the agent hands the parser a private
/// copy, so the content, not the path, says which file a call was about).
fn compiles_of(env: &TestEnv, file: &str) -> Vec<Call> {
    let content = fs::read_to_string(env.path(file)).unwrap_or_default();
    env.calls_of(CallKind::Compile).into_iter().filter(|c| c.has_content(&content)).collect()
}

#[test]
fn cold_start_loads_everything_in_one_parser_call() {
    let env = TestEnv::new();
    let files = three(&env);
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();

    let (listing, shas) = expected_kernel(&files);
    assert_eq!(env.kernel.listing(), listing);
    assert_eq!(env.kernel.sha1s(), shas);
    assert_eq!(env.kernel.mode("/usr/sbin/nginx").as_deref(), Some("complain"));

    let compiles = env.calls_of(CallKind::Compile);
    assert_eq!(compiles.len(), 1, "cold start of good files is one compile: {compiles:?}");
    assert_eq!(compiles[0].inputs.len(), 3, "{compiles:?}");
    assert_eq!(env.count(CallKind::Load), 3, "each file's policy is loaded as one unit");
    assert_eq!(env.count(CallKind::Remove), 0);

    let v = agent.profiles();
    assert!(v["last_sync"].is_string(), "last_sync: {v}");
    for (name, file) in [("payment-api", "payment-api"), ("w1", "workers"), ("w2", "workers"), ("/usr/sbin/nginx", "nginx")] {
        let p = profile_entry(&v, name).unwrap_or_else(|| panic!("{name} missing from {v}"));
        assert_eq!(p["state"], "loaded", "{p}");
        assert!(file_matches(&p["file"], file), "{p}");
        assert_eq!(str_of(&p["mode"]), env.kernel.mode(name).unwrap(), "{p}");
        let sha = p["sha256"].as_str().unwrap_or_else(|| panic!("sha256 in {p}"));
        assert_eq!(sha, sha256_hex(files[file].as_bytes()), "sha256 is of the file's content: {p}");
        assert!(p["loaded_at"].is_string(), "{p}");
        assert!(p["error"].is_null(), "{p}");
    }
    let w = file_entry(&v, "workers").unwrap_or_else(|| panic!("workers missing from {v}"));
    assert_eq!(w["state"], "loaded");
    let names: Vec<String> = w["names"].as_array().unwrap().iter().map(str_of).collect();
    assert_eq!(names, vec!["w1", "w2"], "{w}");
    assert_eq!(agent.get("/healthz").unwrap().0, 200);
}

#[test]
fn edit_of_one_file_among_many_costs_one_load() {
    let env = TestEnv::new();
    for i in 0..20 {
        env.write(&format!("f{i:02}"), &profile(&format!("p{i:02}"), &[&format!("/data/{i} r")]));
    }
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();
    let before_shas = env.kernel.sha1s();
    assert_eq!(before_shas.len(), 20);
    let n_calls = env.calls().len();

    let new = profile("p07", &["/data/7 r", "/data/7b rw"]);
    env.write("f07", &new);
    wait_until(DEADLINE, "p07 replaced in the kernel", || env.kernel.sha1("p07") != before_shas.get("p07").cloned());
    let want = sha256_hex(new.as_bytes());
    wait_for(DEADLINE, "/profiles to show the new sha256 of p07", || {
        let v = agent.profiles();
        let p = profile_entry(&v, "p07").cloned().unwrap_or_default();
        if p["sha256"] == want.as_str() && p["state"] == "loaded" { Ok(()) } else { Err(p.to_string()) }
    });

    let new_calls: Vec<Call> = env.calls()[n_calls..].to_vec();
    let compiles: Vec<&Call> = new_calls.iter().filter(|c| c.kind() == CallKind::Compile).collect();
    assert_eq!(compiles.len(), 1, "one compile for the edit: {new_calls:?}");
    assert_eq!(compiles[0].inputs, vec![sha256_hex(new.as_bytes())], "only the edited file: {new_calls:?}");
    assert_eq!(new_calls.iter().filter(|c| c.kind() == CallKind::Load).count(), 1, "{new_calls:?}");
    assert!(new_calls.iter().all(|c| c.kind() != CallKind::Remove && c.kind() != CallKind::Names), "{new_calls:?}");
    let after = env.kernel.sha1s();
    for (name, sha) in &before_shas {
        if name != "p07" {
            assert_eq!(after.get(name), Some(sha), "{name} must not be touched");
        }
    }
}

#[test]
fn deleted_file_is_orphaned_and_stays_loaded_by_default() {
    let env = TestEnv::new();
    three(&env);
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();
    env.remove("workers");
    agent.wait_profile_state("w1", "orphaned");
    agent.wait_profile_state("w2", "orphaned");
    assert!(env.kernel.has("w1") && env.kernel.has("w2") && env.kernel.has("w2//handling"));
    assert_eq!(env.count(CallKind::Remove), 0);
    assert_eq!(agent.get("/readyz").unwrap().0, 200, "an orphan does not make the node unready");
}

#[test]
fn deleted_file_is_unloaded_with_unload_removed() {
    let env = TestEnv::new();
    three(&env);
    let mut agent = env.spawn_agent(&["--unload-removed"]);
    agent.wait_ready();
    let pay = env.kernel.sha1("payment-api");
    env.remove("workers");
    wait_until(DEADLINE, "w1, w2 and w2//handling removed from the kernel", || {
        let l = env.kernel.listing();
        !l.contains_key("w1") && !l.contains_key("w2") && !l.contains_key("w2//handling")
    });
    assert!(env.count(CallKind::Remove) >= 1);
    wait_for(DEADLINE, "w1 and w2 gone from /profiles", || {
        let v = agent.profiles();
        if profile_entry(&v, "w1").is_none() && profile_entry(&v, "w2").is_none() && file_entry(&v, "workers").is_none() {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(env.kernel.sha1("payment-api"), pay);
    assert!(env.kernel.has("/usr/sbin/nginx"));
}

#[test]
fn in_use_profile_is_not_unloaded_until_its_tasks_exit() {
    let env = TestEnv::new();
    three(&env);
    env.proc_.confine(4242, "w2 (enforce)");
    // Only a worker thread of 4243 is in the hat: a profile can confine a single thread.
    env.proc_.confine(4243, "unconfined");
    env.proc_.confine_thread(4243, 4250, "w2//handling (enforce)");
    let mut agent = env.spawn_agent(&["--unload-removed", "--resync-interval", "1s"]);
    agent.wait_ready();
    env.remove("workers");
    // w1 is free to go; w2 is confining two tasks (one thread in its hat).
    wait_until(DEADLINE, "w1 removed", || !env.kernel.has("w1"));
    agent.wait_profile_state("w2", "in-use");
    assert!(env.kernel.has("w2") && env.kernel.has("w2//handling"));

    // The task in the profile itself exits; the one in the hat still pins it.
    env.proc_.exit(4242);
    let seen = agent.profiles()["last_sync"].clone();
    wait_until(DEADLINE, "another sync after the first task exited", || agent.profiles()["last_sync"] != seen);
    let seen = agent.profiles()["last_sync"].clone();
    wait_until(DEADLINE, "and one more", || agent.profiles()["last_sync"] != seen);
    assert!(env.kernel.has("w2"), "a task in w2//handling still uses w2");
    assert_eq!(profile_entry(&agent.profiles(), "w2").unwrap()["state"], "in-use");

    env.proc_.exit(4243);
    wait_until(DEADLINE, "w2 removed once no task uses it", || !env.kernel.has("w2") && !env.kernel.has("w2//handling"));
}

#[test]
fn foreign_name_is_refused_and_never_touched() {
    let env = TestEnv::new();
    env.kernel.seed_foreign("docker-default", "enforce");
    env.kernel.seed_foreign("snap.firefox.firefox", "complain");
    let foreign_sha = env.kernel.sha1("docker-default");
    env.write("docker", &profile("docker-default", &["/var/lib/docker/** r"]));
    env.write("good", &profile("good", &["/good r"]));
    let mut agent = env.spawn_agent(&[]);

    let f = agent.wait_file_state("docker", "refused");
    let err = str_of(&f["error"]);
    assert!(err.contains("docker-default"), "the reason names the profile: {f}");
    agent.wait_profile_state("good", "loaded");
    assert_eq!(env.kernel.sha1("docker-default"), foreign_sha);
    assert_eq!(env.kernel.mode("snap.firefox.firefox").as_deref(), Some("complain"));
    // Its names come from compiling it; its policy never reaches the kernel: one load, good's.
    assert_eq!(compiles_of(&env, "docker").len(), 1, "compiled once, for its names");
    assert_eq!(env.count(CallKind::Load), 1, "{:?}", env.calls());

    let v = agent.profiles();
    let snap = profile_entry(&v, "snap.firefox.firefox").unwrap_or_else(|| panic!("foreign profiles are listed: {v}"));
    assert_eq!(snap["state"], "foreign");
    let dd = profile_entry(&v, "docker-default").unwrap_or_else(|| panic!("docker-default listed: {v}"));
    assert!(dd["state"] == "foreign" || dd["state"] == "refused", "{dd}");

    let (st, body) = agent.get_json("/readyz").unwrap();
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["ready"], false);
    let reasons = body["reasons"].as_array().unwrap_or_else(|| panic!("reasons: {body}"));
    assert!(reasons.iter().any(|r| file_matches(&r["file"], "docker") && r["state"] == "refused"), "{body}");
}

#[test]
fn foreign_name_is_adopted_when_it_matches_adopt() {
    let env = TestEnv::new();
    env.kernel.seed_foreign("docker-default", "enforce");
    env.kernel.seed_foreign("snap.firefox.firefox", "complain");
    let foreign_sha = env.kernel.sha1("docker-default");
    let content = profile("docker-default", &["/var/lib/docker/** r"]);
    env.write("docker", &content);
    let mut agent = env.spawn_agent(&["--adopt", "docker-*", "--adopt", "nothing-else"]);
    agent.wait_ready();
    agent.wait_profile_state("docker-default", "loaded");
    let mut files = BTreeMap::new();
    files.insert("docker".to_string(), content);
    let (_, shas) = expected_kernel(&files);
    assert_ne!(env.kernel.sha1("docker-default"), foreign_sha);
    assert_eq!(env.kernel.sha1("docker-default"), shas.get("docker-default").cloned());
    assert_eq!(profile_entry(&agent.profiles(), "snap.firefox.firefox").unwrap()["state"], "foreign");
    assert_eq!(env.kernel.mode("snap.firefox.firefox").as_deref(), Some("complain"));
}

#[test]
fn bad_edit_keeps_the_last_good_version() {
    let env = TestEnv::new();
    three(&env);
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();
    let good_sha = env.kernel.sha1("payment-api");
    let old_entry = profile_entry(&agent.profiles(), "payment-api").unwrap().clone();

    // Line 4 lacks its comma.
    env.write("payment-api", "# v2\nprofile payment-api {\n  /etc/payment/** r,\n  /etc/oops r\n}\n");
    let f = agent.wait_file_state("payment-api", "stale");
    let err = str_of(&f["error"]);
    assert!(err.contains("payment-api"), "error names the file: {f}");
    assert!(err.contains("line 4") || err.contains(":4:") || err.contains(":4 "), "error gives the line: {f}");
    assert_eq!(env.kernel.sha1("payment-api"), good_sha, "the kernel keeps the last good version");
    let p = profile_entry(&agent.profiles(), "payment-api").unwrap().clone();
    assert_eq!(p["state"], "stale", "{p}");
    assert_eq!(p["sha256"], old_entry["sha256"], "sha256 of what is loaded: {p}");
    assert_eq!(agent.get("/readyz").unwrap().0, 200, "stale keeps readiness");
    assert!(env.kernel.has("w1") && env.kernel.has("/usr/sbin/nginx"));

    // A fix is picked up.
    let fixed = profile("payment-api", &["/etc/payment/** r", "/etc/oops r"]);
    env.write("payment-api", &fixed);
    agent.wait_file_state("payment-api", "loaded");
    wait_until(DEADLINE, "the fix in the kernel", || env.kernel.sha1("payment-api") != good_sha);
    let p = profile_entry(&agent.profiles(), "payment-api").unwrap().clone();
    assert_eq!(p["sha256"], sha256_hex(fixed.as_bytes()).as_str());
    assert!(p["error"].is_null(), "{p}");
}

#[test]
fn load_failure_after_compile_keeps_last_good_too() {
    let env = TestEnv::new();
    env.write("a", &profile("a", &["/a r"]));
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();
    let sha = env.kernel.sha1("a");
    env.write("a", &format!("# fake: fail-load\n{}", profile("a", &["/a r", "/b r"])));
    let f = agent.wait_file_state("a", "stale");
    assert!(str_of(&f["error"]).contains("the kernel refused the policy"), "{f}");
    assert_eq!(env.kernel.sha1("a"), sha);
}

#[test]
fn readiness_goes_from_503_to_200_and_back_on_a_failed_file() {
    let env = TestEnv::new();
    env.write("good", &profile("good", &["/good r"]));
    // A slow parser makes the first sync take a while, so the "not synced yet" state is visible.
    let mut agent = env.spawn_agent_with(&[], &[("FAKE_PARSER_DELAY_MS", "400")]);
    let mut seen = Vec::new();
    wait_for(DEADLINE, "/readyz 200", || {
        agent.assert_alive();
        match agent.get("/readyz") {
            Ok((st, body)) => {
                seen.push((st, body.clone()));
                if st == 200 { Ok(()) } else { Err(format!("{st} {body}")) }
            }
            Err(e) => Err(e.to_string()),
        }
    });
    let first = &seen[0];
    assert_eq!(first.0, 503, "before the first sync /readyz is 503; saw {seen:?}");
    let body: Value = serde_json::from_str(&first.1).unwrap_or_else(|e| panic!("503 body not JSON ({e}): {}", first.1));
    assert_eq!(body["ready"], false, "{body}");
    assert!(
        body["reasons"].as_array().unwrap().iter().any(|r| r["file"].is_null()),
        "a reason without a file says the first sync is not done: {body}"
    );

    // A file that never compiled: failed, and the node is not ready.
    env.write("broken", "profile broken {\n  /x r\n}\n");
    let (st, body) = wait_for(DEADLINE, "/readyz 503 naming broken", || {
        let (st, v) = agent.get_json("/readyz")?;
        let named = v["reasons"].as_array().is_some_and(|r| r.iter().any(|r| file_matches(&r["file"], "broken")));
        if st == 503 && named { Ok((st, v)) } else { Err(format!("{st} {v}")) }
    });
    assert_eq!(st, 503);
    let r = body["reasons"].as_array().unwrap().iter().find(|r| file_matches(&r["file"], "broken")).unwrap();
    assert_eq!(r["state"], "failed", "{body}");
    let err = str_of(&r["error"]);
    assert!(err.contains("broken") && (err.contains("line 2") || err.contains(":2:")), "{body}");
    agent.wait_file_state("broken", "failed");
    assert!(!env.kernel.has("broken"));
    assert!(env.kernel.has("good"));

    env.write("broken", &profile("broken", &["/x r"]));
    agent.wait_ready();
    assert!(env.kernel.has("broken"));
}

#[test]
fn restart_with_no_changes_replaces_nothing() {
    let env = TestEnv::new();
    three(&env);
    env.kernel.seed_foreign("docker-default", "enforce");
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();
    agent.stop();
    let n = env.calls().len();
    let rev = env.kernel.revision();
    let listing = env.kernel.listing();

    let mut agent = env.spawn_agent(&["--resync-interval", "1s"]);
    agent.wait_ready();
    let first = agent.profiles()["last_sync"].clone();
    wait_until(DEADLINE, "a periodic resync after the restart", || agent.profiles()["last_sync"] != first);
    let v = agent.profiles();
    for name in ["payment-api", "w1", "w2", "/usr/sbin/nginx"] {
        assert_eq!(profile_entry(&v, name).unwrap()["state"], "loaded", "{v}");
    }
    let new_calls = env.calls()[n..].to_vec();
    assert!(
        new_calls.iter().all(|c| c.kind() != CallKind::Load && c.kind() != CallKind::Remove),
        "a restart with nothing changed loads/removes nothing: {new_calls:?}"
    );
    assert_eq!(env.kernel.revision(), rev);
    assert_eq!(env.kernel.listing(), listing);
}

#[test]
fn hung_parser_times_out_and_the_rest_loads() {
    let env = TestEnv::new();
    env.write("good", &profile("good", &["/good r"]));
    env.write("hang", &format!("{}# fake: hang\n", profile("hang", &["/hang r"])));
    let start = Instant::now();
    let mut agent = env.spawn_agent(&["--parser-timeout", "1s"]);
    let f = agent.wait_file_state("hang", "failed");
    let err = str_of(&f["error"]).to_lowercase();
    assert!(err.contains("time"), "the error says it timed out: {f}");
    agent.wait_profile_state("good", "loaded");
    assert!(env.kernel.has("good") && !env.kernel.has("hang"));
    assert!(start.elapsed() < Duration::from_secs(15), "took {:?}", start.elapsed());
    assert_eq!(agent.get("/healthz").unwrap().0, 200);
    assert_eq!(agent.get("/readyz").unwrap().0, 503);
    let hung = compiles_of(&env, "hang");
    assert!(!hung.is_empty());
    for c in &hung {
        wait_until(DEADLINE, &format!("hung parser pid {} killed", c.pid), || process_gone(c.pid));
    }
}

#[test]
fn drift_is_repaired() {
    let env = TestEnv::new();
    three(&env);
    let mut agent = env.spawn_agent(&["--resync-interval", "1s"]);
    agent.wait_ready();
    let sha = env.kernel.sha1("payment-api").unwrap();
    let manual_log = env.tmp.path().join("manual-calls.jsonl");

    // Someone runs `apparmor_parser -R` on the node.
    let stub = env.tmp.path().join("stub");
    fs::write(&stub, "profile \"payment-api\" {}\n").unwrap();
    let o = run_fake_parser(
        &[&"-R".into(), &"--subdomainfs".into(), &env.kernel.apparmor().into(), &stub.clone().into()],
        Some(&manual_log),
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(!env.kernel.has("payment-api"));
    wait_until(DEADLINE, "payment-api restored", || env.kernel.sha1("payment-api").as_deref() == Some(sha.as_str()));
    // Let the repairing sync finish (it records what the kernel holds) before the next tampering.
    wait_drift_repairs(&mut agent, 1.0);

    // Someone replaces it with another version.
    let other = env.tmp.path().join("other");
    fs::write(&other, profile("payment-api", &["/ r"])).unwrap();
    let o = run_fake_parser(
        &[&"-r".into(), &"--subdomainfs".into(), &env.kernel.apparmor().into(), &other.into()],
        Some(&manual_log),
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_ne!(env.kernel.sha1("payment-api").as_deref(), Some(sha.as_str()));
    wait_until(DEADLINE, "our version of payment-api restored", || {
        env.kernel.sha1("payment-api").as_deref() == Some(sha.as_str())
    });
    wait_drift_repairs(&mut agent, 2.0);

    // A parent replaced without its hat is drift too (the kernel keeps old children on a
    // replace, but the parent's policy changed).
    let w2 = env.kernel.sha1("w2").unwrap();
    let before = env.calls().len();
    let hatless = env.tmp.path().join("hatless");
    fs::write(&hatless, "profile w2 {\n}\n").unwrap();
    let o = run_fake_parser(
        &[&"-r".into(), &"--subdomainfs".into(), &env.kernel.apparmor().into(), &hatless.into()],
        Some(&manual_log),
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_ne!(env.kernel.sha1("w2").as_deref(), Some(w2.as_str()));
    wait_until(DEADLINE, "w2 restored", || env.kernel.sha1("w2").as_deref() == Some(w2.as_str()));
    assert!(env.kernel.has("w2//handling"));
    let after: Vec<Call> = env.calls()[before..].to_vec();
    // The drifted file's policy comes from the compiled-policy cache: no parser compiles, and
    // only that file is loaded.
    assert!(!after.iter().any(|c| c.kind() == CallKind::Compile), "{after:?}");
    assert_eq!(after.iter().filter(|c| c.kind() == CallKind::Load).count(), 1, "only the drifted file is reloaded: {after:?}");

    wait_drift_repairs(&mut agent, 3.0);
}

/// Waits until the drift-repair counter in /metrics reaches `n`.
fn wait_drift_repairs(agent: &mut Agent, n: f64) {
    wait_for(DEADLINE, &format!("{n} drift repairs in /metrics"), || {
        agent.assert_alive();
        let (_, m) = agent.get("/metrics").map_err(|e| e.to_string())?;
        let v = metric_value(&m, "apparmor_loader_drift_repairs_total").ok_or("no drift repair metric")?;
        if v >= n { Ok(()) } else { Err(format!("{v}")) }
    })
}

#[test]
fn sigterm_exits_zero_and_profiles_stay() {
    let env = TestEnv::new();
    three(&env);
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();
    let listing = env.kernel.listing();
    let start = Instant::now();
    agent.stop();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(env.kernel.listing(), listing);
    assert_eq!(env.count(CallKind::Remove), 0);
}

#[test]
fn sigterm_finishes_the_parser_call_in_flight() {
    let env = TestEnv::new();
    env.write("a", &profile("a", &[]));
    let mut agent = env.spawn_agent_with(&[], &[("FAKE_PARSER_DELAY_MS", "1500")]);
    agent.wait_ready();
    env.write("b", &profile("b", &[]));
    wait_until(DEADLINE, "the load of b to start", || !compiles_of(&env, "b").is_empty());
    agent.sigterm();
    let st = agent.wait_exit(Duration::from_secs(8));
    assert!(st.success(), "exit status after SIGTERM: {st}");
    assert!(env.kernel.has("b"), "the parser call in flight was finished, not killed");
    assert!(env.kernel.has("a"));
}

#[test]
fn endpoints_are_read_only_and_metrics_bounded() {
    let env = TestEnv::new();
    env.write("a", &profile("a", &["/secret-token-xyzzy r"]));
    env.write("broken", "profile broken {\n  /x r\n}\n");
    let mut agent = env.spawn_agent(&[]);
    agent.wait_file_state("broken", "failed");
    let rev = env.kernel.revision();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/profiles", "/readyz", "/healthz", "/metrics"] {
            let (st, _) = http_request(&agent.addr, method, path).unwrap();
            assert!(st == 405 || st == 404, "{method} {path} -> {st}");
        }
    }
    assert_eq!(env.kernel.revision(), rev);
    let (st, m) = agent.get("/metrics").unwrap();
    assert_eq!(st, 200);
    assert!(m.contains("# TYPE"), "{m}");
    assert!(!m.contains("secret-token-xyzzy"), "no file contents in metrics:\n{m}");
    assert!(!m.contains("syntax error"), "no error strings in metrics:\n{m}");
    assert!(!m.contains("TOK_"), "no error strings in metrics:\n{m}");
    let (st, _) = agent.get("/nope").unwrap();
    assert_eq!(st, 404);
}

#[test]
fn complain_mode_from_config_file() {
    let env = TestEnv::new();
    three(&env);
    let cfg = env.tmp.path().join("config.yaml");
    fs::write(&cfg, "modes:\n  payment-api: complain\nresync_interval: 1s\n").unwrap();
    let mut agent = env.spawn_agent(&["--config", cfg.to_str().unwrap()]);
    agent.wait_ready();
    assert_eq!(env.kernel.mode("payment-api").as_deref(), Some("complain"));
    assert_eq!(env.kernel.mode("w1").as_deref(), Some("enforce"));
    // The parser writes no policy under -C: complain mode is set in the compiled policy.
    assert!(env.calls_of(CallKind::Compile).iter().all(|c| !c.complain()), "{:?}", env.calls());
    assert_eq!(compiles_of(&env, "payment-api").len(), 1);
    assert_eq!(profile_entry(&agent.profiles(), "payment-api").unwrap()["mode"], "complain");
}

#[test]
fn missing_parser_is_an_environment_error() {
    let env = TestEnv::new();
    three(&env);
    let mut cmd =
        env.command_except(&["run", "--profiles", env.profiles.to_str().unwrap(), "--listen", "127.0.0.1:0"], &["--parser"]);
    cmd.arg("--parser").arg(env.tmp.path().join("no-such-parser"));
    let o = run_with_deadline(cmd);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).to_lowercase().contains("parser"), "{}", show(&o));
}

#[test]
fn profile_moving_between_files_is_not_unloaded() {
    let env = TestEnv::new();
    env.write("old", &profile("mover", &["/m r"]));
    env.write("other", &profile("other", &[]));
    let mut agent = env.spawn_agent(&["--unload-removed"]);
    agent.wait_ready();
    let n_remove = env.count(CallKind::Remove);
    // In one go: a new file defines the profile, the old one goes away.
    let moved = profile("mover", &["/m r", "/m2 r"]);
    env.write("new", &moved);
    env.remove("old");
    let p = agent.wait_profile_state("mover", "loaded");
    wait_for(DEADLINE, "mover owned by new", || {
        let v = agent.profiles();
        let p = profile_entry(&v, "mover").cloned().unwrap_or_default();
        if file_matches(&p["file"], "new") && p["sha256"] == sha256_hex(moved.as_bytes()).as_str() {
            Ok(())
        } else {
            Err(p.to_string())
        }
    });
    drop(p);
    assert!(env.kernel.has("mover"));
    let mut files = BTreeMap::new();
    files.insert("new".to_string(), moved);
    assert_eq!(env.kernel.sha1("mover"), expected_kernel(&files).1.get("mover").cloned());
    assert_eq!(env.count(CallKind::Remove), n_remove, "moving a profile never removes it: {:?}", env.calls());
    assert_eq!(agent.get("/readyz").unwrap().0, 200);
}

#[test]
fn duplicate_name_in_two_files_refuses_one() {
    let env = TestEnv::new();
    env.write("one", &profile("dup", &["/one r"]));
    env.write("two", &profile("dup", &["/two r"]));
    env.write("fine", &profile("fine", &[]));
    let mut agent = env.spawn_agent(&[]);
    wait_for(DEADLINE, "one of the two files refused", || {
        let v = agent.profiles();
        let states: Vec<String> =
            ["one", "two"].iter().map(|f| file_entry(&v, f).map(|e| str_of(&e["state"])).unwrap_or_default()).collect();
        let refused = states.iter().filter(|s| *s == "refused").count();
        let loaded = states.iter().filter(|s| *s == "loaded").count();
        if refused == 1 && loaded == 1 { Ok(()) } else { Err(v.to_string()) }
    });
    assert!(env.kernel.has("fine") && env.kernel.has("dup"));
    let v = agent.profiles();
    let winner = if file_entry(&v, "one").unwrap()["state"] == "loaded" { "one" } else { "two" };
    let mut files = BTreeMap::new();
    files.insert(winner.to_string(), fs::read_to_string(env.path(winner)).unwrap());
    assert_eq!(env.kernel.sha1("dup"), expected_kernel(&files).1.get("dup").cloned(), "the kernel has the winner's version");
    let loser = if winner == "one" { "two" } else { "one" };
    assert_eq!(compiles_of(&env, loser).len(), 1, "compiled once, for its names");
    assert_eq!(env.count(CallKind::Load), 2, "fine and the winner are loaded, the loser never: {:?}", env.calls());
    assert_eq!(agent.get("/readyz").unwrap().0, 503);
}

#[test]
fn profile_dropped_from_a_file_is_orphaned_or_unloaded() {
    let env = TestEnv::new();
    three(&env);
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();
    env.write("workers", "profile w1 {\n  /srv/w1/** r,\n  /srv/w1/more r,\n}\n");
    agent.wait_profile_state("w2", "orphaned");
    agent.wait_profile_state("w1", "loaded");
    assert!(env.kernel.has("w2"));
    drop(agent);

    let env = TestEnv::new();
    three(&env);
    let mut agent = env.spawn_agent(&["--unload-removed"]);
    agent.wait_ready();
    env.write("workers", "profile w1 {\n  /srv/w1/** r,\n}\n");
    wait_until(DEADLINE, "w2 and its hat removed", || !env.kernel.has("w2") && !env.kernel.has("w2//handling"));
    assert!(env.kernel.has("w1"));
    agent.wait_file_state("workers", "loaded");
}

#[test]
fn files_defining_no_profile_are_reported_and_hold_nothing_else_back() {
    // The agent treats a file that defines no profile as a mistake (failed, named), not as
    // "nothing to do"; the rest of the directory still loads.
    let env = TestEnv::new();
    env.write("a", &profile("a", &[]));
    env.write("empty", "");
    env.write("comments", "# nothing here yet\n#include <tunables/global>\n");
    let mut agent = env.spawn_agent(&[]);
    agent.wait_profile_state("a", "loaded");
    assert_eq!(env.kernel.names(), vec!["a"]);
    for f in ["empty", "comments"] {
        let e = agent.wait_file_state(f, "failed");
        assert!(e["names"].as_array().unwrap().is_empty(), "{e}");
        assert!(
            file_matches(&Value::String(str_of(&e["error"]).split(':').next().unwrap().to_string()), f),
            "error names the file: {e}"
        );
    }
    let (st, body) = agent.get_json("/readyz").unwrap();
    assert_eq!(st, 503, "{body}");
    assert_eq!(env.count(CallKind::Load), 1, "only a is loaded: {:?}", env.calls());
}

#[test]
fn quoted_names_with_spaces_round_trip() {
    let env = TestEnv::new();
    env.write("spaced", "profile \"my app\" /opt/my\\ app/bin {\n  /opt/** r,\n  ^\"the hat\" {\n  }\n}\n");
    let mut agent = env.spawn_agent(&["--resync-interval", "1s"]);
    agent.wait_ready();
    assert!(env.kernel.has("my app"), "{:?}", env.kernel.listing());
    agent.wait_profile_state("my app", "loaded");
    // A resync finds it in the kernel and does not reload it.
    let n = env.count(CallKind::Load);
    let seen = agent.profiles()["last_sync"].clone();
    wait_until(DEADLINE, "a resync", || agent.profiles()["last_sync"] != seen);
    let seen = agent.profiles()["last_sync"].clone();
    wait_until(DEADLINE, "another resync", || agent.profiles()["last_sync"] != seen);
    assert_eq!(env.count(CallKind::Load), n, "no reload of a name with spaces: {:?}", env.calls());
}

#[test]
fn stale_survives_a_restart_and_edits_while_down_cost_one_load() {
    let env = TestEnv::new();
    three(&env);
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();
    env.write("payment-api", "profile payment-api {\n  broken\n}\n");
    agent.wait_file_state("payment-api", "stale");
    agent.stop();
    let good_sha = env.kernel.sha1("payment-api");
    let nginx_sha = env.kernel.sha1("/usr/sbin/nginx");

    // Edited while the agent was down.
    let w = "profile w1 {\n}\nprofile w2 {\n  ^handling {\n  }\n}\n";
    env.write("workers", w);
    let n = env.calls().len();
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();
    agent.wait_file_state("payment-api", "stale");
    agent.wait_file_state("workers", "loaded");
    assert_eq!(env.kernel.sha1("payment-api"), good_sha, "the last good version stays");
    assert_eq!(env.kernel.sha1("/usr/sbin/nginx"), nginx_sha);
    let compiles: Vec<Call> = env.calls()[n..].iter().filter(|c| c.kind() == CallKind::Compile).cloned().collect();
    assert!(compiles.iter().any(|c| c.has_content(w)), "{compiles:?}");
    let nginx = fs::read_to_string(env.path("nginx")).unwrap();
    assert!(!compiles.iter().any(|c| c.has_content(&nginx)), "unchanged files are not compiled again: {compiles:?}");
    assert_eq!(env.calls()[n..].iter().filter(|c| c.kind() == CallKind::Load).count(), 1, "only workers is loaded");
}

#[test]
fn vanished_profile_directory_unloads_nothing() {
    let env = TestEnv::new();
    three(&env);
    let mut agent = env.spawn_agent(&["--unload-removed", "--resync-interval", "1s"]);
    agent.wait_ready();
    let listing = env.kernel.listing();
    let aside = env.tmp.path().join("aside");
    fs::rename(&env.profiles, &aside).unwrap();
    // Give the agent a few syncs' worth of chances to do the wrong thing.
    let seen = agent.profiles()["last_sync"].clone();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        agent.assert_alive();
        assert_eq!(env.kernel.listing(), listing, "profiles must not be removed when the directory is gone");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(env.count(CallKind::Remove), 0);
    drop(seen);
    fs::rename(&aside, &env.profiles).unwrap();
    env.write("late", &profile("late", &[]));
    wait_until(DEADLINE, "the agent to carry on once the directory is back", || env.kernel.has("late"));
    assert_eq!(env.count(CallKind::Remove), 0);
}

#[test]
fn many_files_cold_start_is_batched_and_one_edit_is_one_load() {
    let env = TestEnv::new();
    for i in 0..300 {
        env.write(&format!("f{i:03}"), &profile(&format!("p{i:03}"), &[&format!("/d/{i} r")]));
    }
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();
    assert_eq!(env.kernel.names().len(), 300);
    let compiles = env.count(CallKind::Compile);
    assert!(compiles <= 4, "cold start of 300 files in few parser calls, got {compiles} compiles");
    assert_eq!(env.count(CallKind::Names), 0);
    let n = env.calls().len();
    env.write("f150", &profile("p150", &["/d/150 r", "/d/150b r"]));
    wait_for(DEADLINE, "p150 reloaded", || {
        let v = agent.profiles();
        let p = profile_entry(&v, "p150").cloned().unwrap_or_default();
        let new = env.calls()[n..].iter().filter(|c| c.kind() == CallKind::Load).count();
        if new >= 1 && p["state"] == "loaded" { Ok(()) } else { Err(p.to_string()) }
    });
    let new: Vec<Call> = env.calls()[n..].to_vec();
    let compiles: Vec<&Call> = new.iter().filter(|c| c.kind() == CallKind::Compile).collect();
    assert_eq!(compiles.len(), 1, "{compiles:?}");
    assert_eq!(compiles[0].inputs.len(), 1, "{compiles:?}");
}

#[test]

fn bad_file_in_a_batch_with_an_in_process_parser_does_not_strand_the_rest() {
    // Parsers that compile in-process (no forked worker per file) exit at the first syntax
    // error: files after it in the same -r call are never loaded. The agent must notice.
    let env = TestEnv::new();
    env.write("a-bad", "profile a-bad {\n  /x r\n}\n");
    env.write("b-good", &profile("b-good", &[]));
    env.write("c-good", &profile("c-good", &[]));
    let mut agent = env.spawn_agent_with(&[], &[("FAKE_PARSER_NO_FORK", "1")]);
    agent.wait_file_state("a-bad", "failed");
    wait_until(DEADLINE, "b-good and c-good in the kernel", || env.kernel.has("b-good") && env.kernel.has("c-good"));
    agent.wait_profile_state("b-good", "loaded");
    agent.wait_profile_state("c-good", "loaded");
    // Never report a profile loaded that the kernel does not have.
    let v = agent.profiles();
    for p in v["profiles"].as_array().unwrap() {
        if p["state"] == "loaded" {
            assert!(p["mode"].is_string(), "loaded but not in the kernel: {p}");
        }
    }
}

#[test]
fn a_flood_of_events_that_can_overflow_inotify_still_converges() {
    let env = TestEnv::new();
    env.write("a", &profile("a", &[]));
    let mut agent = env.spawn_agent(&[]);
    agent.wait_ready();
    // ~3 events per ignored temp file: far more than the default 16384-event inotify queue
    // if the agent does not drain it as fast; the real change sits in the middle of the flood.
    let junk = env.path(".junk");
    for i in 0..12_000 {
        if i == 6_000 {
            env.write("late", &profile("late", &["/late r"]));
        }
        fs::write(&junk, i.to_string()).unwrap();
    }
    fs::remove_file(&junk).unwrap();
    wait_until(DEADLINE, "late loaded after the flood", || env.kernel.has("late"));
    agent.wait_file_state("late", "loaded");
    agent.assert_alive();
}

#[test]

fn sigterm_while_the_parser_hangs_still_exits_promptly() {
    let env = TestEnv::new();
    env.write("a", &profile("a", &[]));
    env.write("h", &format!("{}# fake: hang\n", profile("h", &[])));
    // Default --parser-timeout (30 s): the shutdown must not wait for it.
    let mut agent = env.spawn_agent(&[]);
    wait_until(DEADLINE, "the hanging load to start", || !compiles_of(&env, "h").is_empty());
    let start = Instant::now();
    agent.sigterm();
    let st = agent.wait_exit(Duration::from_secs(15));
    let took = start.elapsed();
    assert!(st.success(), "exit status after SIGTERM: {st}");
    assert!(took < Duration::from_secs(12), "SIGTERM took {took:?} with a hung parser");
    for c in compiles_of(&env, "h") {
        wait_until(DEADLINE, "the hung parser to be gone", || process_gone(c.pid));
    }
}

#[test]

fn names_stay_with_their_files_when_parser_workers_finish_out_of_order() {
    // The real parser forks a worker per file and they finish in any order; names are read from
    // each file's own compiled policy, so the order cannot move a name to another file.
    let env = TestEnv::new();
    env.write("x1", "include <local/x1>\nprofile x1 {\n  /x1 r,\n}\n");
    env.write("x2", "include <local/x2>\nprofile x2 {\n}\nprofile x2b {\n}\n");
    env.write("x3", "include <local/x3>\nprofile x3 {\n}\n");
    let mut agent = env.spawn_agent_with(&[], &[("FAKE_PARSER_PARALLEL", "1")]);
    agent.wait_ready();
    assert_eq!(env.count(CallKind::Compile), 1, "{:?}", env.calls());
    assert_eq!(env.count(CallKind::Names), 0, "names come from the compiled policy, never from -N");
    let v = agent.profiles();
    for (file, names) in [("x1", vec!["x1"]), ("x2", vec!["x2", "x2b"]), ("x3", vec!["x3"])] {
        let e = file_entry(&v, file).unwrap_or_else(|| panic!("{file} in {v}"));
        let got: Vec<String> = e["names"].as_array().unwrap().iter().map(str_of).collect();
        assert_eq!(got, names, "names of {file}: {v}");
        for n in names {
            assert!(file_matches(&profile_entry(&v, n).unwrap()["file"], file), "{n} belongs to {file}: {v}");
        }
    }
}
