//! Fault injection (issue 13): each test is one fault found on the agent, run against the fake
//! kernel and the fake parser (or a shell script standing in for a parser gone wrong).

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// An executable `sh` script at `dir/name`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A parser that hangs on any compile of more than one file and is the fake parser otherwise.
fn batch_hanging_parser(env: &TestEnv) -> PathBuf {
    let body = format!(
        "n=0\nfor a in \"$@\"; do case \"$a\" in */files/*) n=$((n+1));; esac; done\n\
         if [ \"$n\" -gt 1 ]; then exec sleep 600; fi\nexec '{}' \"$@\"",
        fake_parser().display()
    );
    script(env.tmp.path(), "batch-hangs", &body)
}

/// Children of `pid` (from /proc/*/stat).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        if rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn signal(agent: &Agent, sig: Signal) {
    kill(Pid::from_raw(agent.child.id() as i32), sig).unwrap();
}

fn metric(agent: &Agent, name: &str) -> Option<f64> {
    let (_, body) = agent.get("/metrics").ok()?;
    body.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A child process killed when the test ends, passed or not.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn symlink_cycles_with_recursive_read_every_profile_once() {
    let env = TestEnv::new();
    env.write("a", &profile("a", &["/a r"]));
    fs::create_dir(env.path("team")).unwrap();
    write_atomic(&env.path("team/b"), profile("b", &["/b r"]).as_bytes());
    symlink(".", env.path("self")).unwrap();
    symlink("..", env.path("team/up")).unwrap();
    symlink("team", env.path("again")).unwrap();
    let mut agent = env.spawn_agent(&["--recursive"]);
    agent.wait_ready();
    assert_eq!(agent.get("/readyz").unwrap().0, 200);
    let v = agent.profiles();
    let files: Vec<&str> = v["files"].as_array().unwrap().iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert_eq!(files.len(), 2, "{v}");
    assert!(env.kernel.has("a") && env.kernel.has("b"));
    agent.stop();
}

#[test]
fn parser_output_is_capped_and_escaped() {
    let env = TestEnv::new();
    // 20 MB of stderr with terminal escapes in its first line, then a failure.
    let noisy = script(
        env.tmp.path(),
        "noisy",
        "printf 'x:1: bad \\033[2J\\033]0;pwned\\007\\n' >&2\nhead -c 20000000 /dev/zero | tr '\\0' e >&2\nexit 1",
    );
    let file = env.path("p");
    env.write("p", &profile("p", &["/p r"]));
    let started = Instant::now();
    let out = run_with_deadline(
        env.command_except(&["check", file.to_str().unwrap(), "--parser", noisy.to_str().unwrap()], &["--parser"]),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(out.stdout.len() < 1_000_000, "output bounded: {} bytes", out.stdout.len());
    assert!(text.contains("bytes of parser output cut"), "{}", &text[text.len().saturating_sub(300)..]);
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "raw control bytes printed");
    assert!(text.contains("\\x1b[2J"), "escaped: {}", &text[..text.len().min(300)]);
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn parser_timeout_is_absolute_when_a_grandchild_holds_the_pipes() {
    let env = TestEnv::new();
    let hang = script(env.tmp.path(), "hang", "setsid sleep 60 &\nsleep 60");
    env.write("p", &profile("p", &["/p r"]));
    let file = env.path("p");
    let started = Instant::now();
    let out = run_with_deadline(env.command_except(
        &["check", file.to_str().unwrap(), "--parser", hang.to_str().unwrap(), "--parser-timeout", "500ms"],
        &["--parser"],
    ));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(took < Duration::from_secs(5), "check took {took:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("timed out") || stderr_of(&out).contains("timed out"),
        "{}",
        show(&out)
    );
}

#[test]
fn batch_timeout_falls_back_logged_and_counted() {
    let env = TestEnv::new();
    for i in 0..3 {
        env.write(&format!("f{i}"), &profile(&format!("p{i}"), &[&format!("/d{i} r")]));
    }
    let parser = batch_hanging_parser(&env);
    let addr = format!("127.0.0.1:{}", free_port());
    let profiles = env.profiles.to_str().unwrap().to_string();
    let args =
        ["run", "--profiles", &profiles, "--listen", &addr, "--parser", parser.to_str().unwrap(), "--parser-timeout", "1s"];
    let log = env.tmp.path().join("agent.log");
    let f = fs::File::create(&log).unwrap();
    let mut cmd = env.command_except(&args, &["--parser"]);
    cmd.stdout(f.try_clone().unwrap()).stderr(f);
    let mut child = Reaped(cmd.spawn().unwrap());
    wait_until(DEADLINE, "all three loaded one file per process", || (0..3).all(|i| env.kernel.has(&format!("p{i}"))));
    let got = wait_for(DEADLINE, "the fallback metric", || {
        let body = http_get(&addr, "/metrics").map_err(|e| e.to_string())?.1;
        let line = body.lines().find(|l| l.starts_with("apparmor_loader_parser_batch_fallback_files_total")).map(str::to_string);
        line.ok_or(body)
    });
    assert!(got.ends_with(" 3"), "{got}");
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("compiling them one at a time"), "{text}");
    let _ = kill(Pid::from_raw(child.0.id() as i32), Signal::SIGTERM);
    let _ = child.0.wait();
}

/// After SIGTERM no further single-file compile starts: the one in flight finishes, the rest wait
/// for the next start.
#[test]
fn batch_fallback_honours_the_stop() {
    let env = TestEnv::new();
    for i in 0..6 {
        env.write(&format!("f{i}"), &profile(&format!("p{i}"), &[&format!("/d{i} r")]));
    }
    let parser = batch_hanging_parser(&env);
    let addr = format!("127.0.0.1:{}", free_port());
    let profiles = env.profiles.to_str().unwrap().to_string();
    let args =
        ["run", "--profiles", &profiles, "--listen", &addr, "--parser", parser.to_str().unwrap(), "--parser-timeout", "1s"];
    let log = env.tmp.path().join("agent.log");
    let f = fs::File::create(&log).unwrap();
    let mut cmd = env.command_except(&args, &["--parser"]);
    cmd.env("FAKE_PARSER_DELAY_MS", "800").stdout(f.try_clone().unwrap()).stderr(f);
    let mut child = Reaped(cmd.spawn().unwrap());
    wait_until(DEADLINE, "the fallback to start", || fs::read_to_string(&log).unwrap_or_default().contains("one at a time"));
    std::thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGTERM).unwrap();
    let started = Instant::now();
    let status = wait_for(Duration::from_secs(12), "the agent to exit", || {
        child.0.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| "running".to_string())
    });
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(4), "exit took {:?}", started.elapsed());
    std::thread::sleep(Duration::from_millis(1500));
    let singles = env.count(CallKind::Compile);
    assert!(singles <= 2, "{singles} single-file compiles ran; the stop allows the one in flight: {:?}", env.calls());
}

#[test]
fn second_signal_kills_the_parser_group_and_exits() {
    let env = TestEnv::new();
    env.write("p", &profile("p", &["/p r"]));
    // Compiles hang (with a worker of their own, as `-j` forks); everything else is the fake parser.
    let body = format!("case \" $* \" in *' -Q '*) sleep 60 & exec sleep 60;; esac\nexec '{}' \"$@\"", fake_parser().display());
    let parser = script(env.tmp.path(), "compile-hangs", &body);
    let addr = format!("127.0.0.1:{}", free_port());
    let profiles = env.profiles.to_str().unwrap().to_string();
    let args = ["run", "--profiles", &profiles, "--listen", &addr, "--parser", parser.to_str().unwrap()];
    let mut cmd = env.command_except(&args, &["--parser"]);
    let mut child = Reaped(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let pid = child.0.id();
    let group = wait_for(DEADLINE, "the compile to run", || match children(pid).as_slice() {
        [one] if children(*one).len() == 1 => Ok(vec![*one, children(*one)[0]]),
        other => Err(format!("{other:?}")),
    });
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let status = wait_for(Duration::from_secs(3), "the agent to exit", || {
        child.0.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| "running".to_string())
    });
    assert_eq!(status.code(), Some(130));
    for p in group {
        wait_until(Duration::from_secs(2), "the parser and its worker to be gone", || process_gone(p));
    }
}

#[test]
fn sighup_resyncs_now_and_is_logged() {
    let env = TestEnv::new();
    env.write("p", &profile("p", &["/p r"]));
    let mut agent = env.spawn_agent(&["--resync-interval", "1h"]);
    agent.wait_ready();
    let syncs = |a: &Agent| metric(a, "apparmor_loader_syncs_total{result=\"success\"}").unwrap_or(0.0);
    let before = syncs(&agent);
    signal(&agent, Signal::SIGHUP);
    wait_until(DEADLINE, "a sync after SIGHUP", || syncs(&agent) > before);
    agent.assert_alive();
    assert!(agent.logs().contains("SIGHUP: resyncing now"), "{}", agent.logs());
    agent.stop();
}

#[test]
fn zero_durations_and_garbage_log_levels_are_refused_at_start() {
    let env = TestEnv::new();
    let cfg = env.tmp.path().join("config.yaml");
    fs::write(&cfg, "resync_interval: 0s\n").unwrap();
    let profiles = env.profiles.to_str().unwrap();
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["run", "--profiles", profiles, "--resync-interval", "0s"], "--resync-interval"),
        (vec!["run", "--profiles", profiles, "--config", cfg.to_str().unwrap()], "config.yaml"),
        (vec!["sync", "--profiles", profiles, "--parser-timeout", "0s"], "--parser-timeout"),
        (vec!["status", "--log-level", "garbage"], "garbage"),
    ];
    for (args, want) in cases {
        let out = env.run(&args);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(err.contains(want) && !err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn state_files_not_understood_are_refused_naming_the_file() {
    let env = TestEnv::new();
    env.write("p", &profile("p", &["/p r"]));
    fs::create_dir_all(&env.state).unwrap();
    let state = env.state.join("state.json");
    let future = r#"{"version":99,"profiles":{},"from_the_future":{"keep":"me"}}"#;
    for content in ["[]", "{}", future] {
        fs::write(&state, content).unwrap();
        let out = env.run(&["sync", "--profiles", env.profiles.to_str().unwrap()]);
        assert_ne!(out.status.code(), Some(0), "{content}: {}", show(&out));
        assert!(stderr_of(&out).contains(&state.display().to_string()), "{content}: {}", show(&out));
        assert_eq!(fs::read_to_string(&state).unwrap(), content, "the file is left as it was");
    }
    assert!(!env.kernel.has("p"), "nothing loaded under a state file not understood");
}

#[test]
fn watch_is_recreated_when_the_profiles_dir_is_recreated() {
    let env = TestEnv::new();
    env.write("a", &profile("a", &["/a r"]));
    let mut agent = env.spawn_agent(&["--resync-interval", "1h"]);
    agent.wait_ready();
    fs::remove_dir_all(&env.profiles).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    fs::create_dir(&env.profiles).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    env.write("b", &profile("b", &["/b r"]));
    wait_until(Duration::from_secs(10), "b loaded long before the resync", || env.kernel.has("b"));
    agent.stop();
}

#[test]
fn run_with_a_missing_profiles_dir_fails_before_serving() {
    let env = TestEnv::new();
    let addr = format!("127.0.0.1:{}", free_port());
    let out = env.run(&["run", "--profiles", "/nonexistent/profiles", "--listen", &addr]);
    let err = stderr_of(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("profiles directory /nonexistent/profiles"), "{err}");
    assert!(!err.contains("serving"), "HTTP started first: {err}");
    assert!(!err.contains("about [\""), "notify's raw text: {err}");
}

#[test]
fn cli_errors_name_the_path_once() {
    let env = TestEnv::new();
    let out = env.run(&["suggest", "--profile", "x", "--from", "/etc"]);
    let err = stderr_of(&out);
    assert_eq!(err.matches("/etc").count(), 1, "{err}");
    assert!(err.contains("directory"), "{err}");
    let out = env.run(&["denials", "--audit-source", "/nonexistent/audit.log"]);
    let err = stderr_of(&out);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    assert!(err.contains("/nonexistent/audit.log"), "{err}");
}

#[test]
fn suggest_from_an_endless_input_stops_on_ctrl_c() {
    let mut child = Reaped(
        Command::new(BIN)
            .args(["suggest", "--profile", "x", "--from", "/dev/zero"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGINT).unwrap();
    let status = wait_for(Duration::from_secs(5), "suggest to stop after SIGINT", || {
        child.0.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| "running".to_string())
    });
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("/dev/zero") && err.contains("interrupted"), "{err}");
}
