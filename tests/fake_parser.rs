//! Tests of the fake apparmor_parser itself (examples/fake_apparmor_parser.rs): the other
//! integration tests trust it to behave like the real parser against a fake kernel.

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tempfile::TempDir;

struct Fx {
    tmp: TempDir,
    k: FakeSecurityfs,
}

impl Fx {
    fn new() -> Fx {
        let tmp = TempDir::new().unwrap();
        let k = FakeSecurityfs::create(tmp.path().join("sfs"));
        Fx { tmp, k }
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        fs::write(&p, content).unwrap();
        p
    }

    fn sfs(&self) -> OsString {
        self.k.apparmor().into()
    }

    /// Runs the fake parser with `args` (strings or paths), without FAKE_PARSER_LOG.
    fn run(&self, args: &[OsString]) -> Output {
        let refs: Vec<&OsString> = args.iter().collect();
        run_fake_parser(&refs, None)
    }

    fn load(&self, files: &[&Path]) -> Output {
        let mut a: Vec<OsString> = vec!["-r".into(), "-K".into(), "--subdomainfs".into(), self.sfs()];
        a.extend(files.iter().map(|f| f.as_os_str().to_owned()));
        self.run(&a)
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const TWO: &str = "\
abi <abi/3.0>,
#include <tunables/global>
@{HOME}=/home/*/
# a comment
profile payment-api /usr/bin/payment-api flags=(attach_disconnected) {
  #include <abstractions/base>
  /etc/payment/** r,   # trailing comment
  ^hat1 {
    /tmp/x rw,
  }
  profile child flags=(complain) {}
}

/usr/bin/worker {
  capability net_bind_service,
}
";

#[test]
fn version_prints_like_the_real_parser() {
    let fx = Fx::new();
    let o = fx.run(&["-V".into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("AppArmor parser version "), "{}", stdout(&o));
}

#[test]
fn names_prints_top_level_names_in_file_order() {
    let fx = Fx::new();
    let a = fx.file("a", TWO);
    let sentinel = fx.file("sentinel", "profile apparmor-loader.boundary {}\n");
    let b = fx.file("b", "profile \"with space\" {\n}\nprofile zzz flags=(complain) {\n}\nprofile aaa {}\n");
    let o = fx.run(&["-N".into(), a.into(), sentinel.into(), b.into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "payment-api\n/usr/bin/worker\napparmor-loader.boundary\nwith space\nzzz\naaa\n");
    assert_eq!(fx.k.revision(), 0, "-N must not touch the kernel");
}

#[test]
fn load_fills_listing_revision_and_policy_dirs() {
    let fx = Fx::new();
    let a = fx.file("a", TWO);
    let o = fx.load(&[&a]);
    assert!(o.status.success(), "{}", stderr(&o));
    let l = fx.k.listing();
    let expect: Vec<(&str, &str)> = vec![
        ("/usr/bin/worker", "enforce"),
        ("payment-api", "enforce"),
        ("payment-api//child", "complain"),
        ("payment-api//hat1", "enforce"),
    ];
    assert_eq!(l.iter().map(|(n, m)| (n.as_str(), m.as_str())).collect::<Vec<_>>(), expect);
    // Sorted, one `NAME (MODE)` a line.
    let raw = fs::read_to_string(fx.k.apparmor().join("profiles")).unwrap();
    assert_eq!(raw.lines().next(), Some("/usr/bin/worker (enforce)"));
    assert_eq!(fx.k.revision(), 1);
    let shas = fx.k.sha1s();
    assert_eq!(shas.keys().collect::<Vec<_>>(), vec!["/usr/bin/worker", "payment-api"], "top-level only");
    for s in shas.values() {
        assert_eq!(s.len(), 40);
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()));
    }
    // Mode file per policy dir.
    let dirs: Vec<_> = fs::read_dir(fx.k.apparmor().join("policy/profiles")).unwrap().flatten().collect();
    assert_eq!(dirs.len(), 2);
    for d in dirs {
        assert_eq!(fs::read_to_string(d.path().join("mode")).unwrap().trim(), "enforce");
    }
}

#[test]
fn sha1_follows_content_and_mode() {
    let fx = Fx::new();
    let v1 = fx.file("v1", &profile("p", &["/a r"]));
    let v2 = fx.file("v2", &profile("p", &["/a r", "/b r"]));
    assert!(fx.load(&[&v1]).status.success());
    let s1 = fx.k.sha1("p").unwrap();
    assert!(fx.load(&[&v1]).status.success());
    assert_eq!(fx.k.sha1("p").unwrap(), s1, "same content, same sha1");
    assert_eq!(fx.k.revision(), 2, "a replace bumps the revision even if identical");
    assert!(fx.load(&[&v2]).status.success());
    let s2 = fx.k.sha1("p").unwrap();
    assert_ne!(s2, s1, "content change changes sha1");
    let o = fx.run(&["-r".into(), "-C".into(), "--subdomainfs".into(), fx.sfs(), v2.clone().into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fx.k.mode("p").as_deref(), Some("complain"));
    assert_ne!(fx.k.sha1("p").unwrap(), s2, "mode change changes sha1");
    assert_eq!(fx.k.names(), vec!["p"], "one policy dir / one entry after replaces");
    assert_eq!(fs::read_dir(fx.k.apparmor().join("policy/profiles")).unwrap().count(), 1);
}

#[test]
fn complain_from_flag_and_from_profile_flags() {
    let fx = Fx::new();
    let a = fx.file("a", "profile a flags=(complain) {\n  /x r,\n}\nprofile b {\n}\n");
    assert!(fx.load(&[&a]).status.success());
    assert_eq!(fx.k.mode("a").as_deref(), Some("complain"));
    assert_eq!(fx.k.mode("b").as_deref(), Some("enforce"));
    let o = fx.run(&["-rKC".into(), format!("--subdomainfs={}", fx.k.apparmor().display()).into(), a.into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fx.k.mode("b").as_deref(), Some("complain"), "-C: everything complain (combined flags, --opt=value)");
}

#[test]
/// Like the kernel's __replace_profile(): children the new version does not redefine are moved
/// to it, not removed.
fn replace_keeps_children_it_does_not_redefine() {
    let fx = Fx::new();
    let v1 = fx.file("v1", "profile p {\n  ^h1 {\n  }\n  ^h2 {\n  }\n}\n");
    let v2 = fx.file("v2", "profile p {\n  ^h2 {\n  }\n}\n");
    assert!(fx.load(&[&v1]).status.success());
    assert_eq!(fx.k.names(), vec!["p", "p//h1", "p//h2"]);
    assert!(fx.load(&[&v2]).status.success());
    assert_eq!(fx.k.names(), vec!["p", "p//h1", "p//h2"]);
}

#[test]
fn syntax_error_uses_real_format_with_file_and_line() {
    let fx = Fx::new();
    let bad = fx.file("bad", "# comment\nprofile bad {\n  /etc/a r,\n  /etc/b r\n}\n");
    let o = fx.load(&[&bad]);
    assert_eq!(o.status.code(), Some(1));
    let p = bad.display();
    assert_eq!(
        stderr(&o).trim(),
        format!(
            "AppArmor parser error for {p} in profile {p} at line 4: syntax error, unexpected TOK_ID, expecting TOK_END_OF_RULE"
        )
    );
    assert!(fx.k.names().is_empty());
    assert_eq!(fx.k.revision(), 0);

    let pct = fx.file("pct", "profile x {\n\n  /a% r,\n}\n");
    let o = fx.run(&["-Q".into(), "-K".into(), pct.clone().into()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("{} at line 3: Found unexpected character: '%'", pct.display())), "{}", stderr(&o));

    let unclosed = fx.file("unclosed", "profile x {\n  /a r,\n");
    let o = fx.run(&["-N".into(), unclosed.into()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("at line 2:"), "{}", stderr(&o));

    let extra_close = fx.file("extra", "profile x {\n}\n}\n");
    let o = fx.run(&["-Q".into(), extra_close.into()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("at line 3:"), "{}", stderr(&o));

    let hat_outside = fx.file("hat", "^h {\n}\n");
    assert_eq!(fx.run(&["-Q".into(), hat_outside.into()]).status.code(), Some(1));
}

#[test]
fn check_only_compiles() {
    let fx = Fx::new();
    let good = fx.file("good", TWO);
    let o = fx.run(&["-Q".into(), "-K".into(), good.into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fx.run(&["-r".into(), "-Q".into(), "--subdomainfs".into(), fx.sfs(), fx.file("g2", TWO).into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fx.k.revision(), 0, "-Q never loads");
}

#[test]
fn multi_file_load_continues_past_bad_and_missing_files() {
    let fx = Fx::new();
    let a = fx.file("a", &profile("a", &["/a r"]));
    let bad = fx.file("bad", "profile bad {\n  nope\n}\n");
    let c = fx.file("c", &profile("c", &["/c r"]));
    let missing = fx.tmp.path().join("missing");
    let o = fx.load(&[&a, &bad, &missing, &c]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains(&format!("AppArmor parser error for {} in profile {} at line 2:", bad.display(), bad.display())), "{e}");
    assert!(e.contains(&format!("File {} not found, skipping...", missing.display())), "{e}");
    assert_eq!(fx.k.names(), vec!["a", "c"]);
}

#[test]
fn fail_load_marker_fails_only_the_load() {
    let fx = Fx::new();
    let f = fx.file("f", &format!("# fake: fail-load\n{}", profile("f", &["/f r"])));
    let ok = fx.file("ok", &profile("ok", &[]));
    assert!(fx.run(&["-N".into(), f.clone().into()]).status.success());
    assert!(fx.run(&["-Q".into(), "-K".into(), f.clone().into()]).status.success());
    let o = fx.load(&[&f, &ok]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "AppArmor parser error for {} in profile {} at line 1: fake load failure",
            f.display(),
            f.display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(fx.k.names(), vec!["ok"]);
}

#[test]
fn remove_takes_names_and_children_only() {
    let fx = Fx::new();
    fx.k.seed_foreign("docker-default", "enforce");
    let a = fx.file("a", TWO);
    assert!(fx.load(&[&a]).status.success());
    let rev = fx.k.revision();
    let stub = fx.file("stub", "profile \"payment-api\" {}\n");
    let o = fx.run(&["-R".into(), "--subdomainfs".into(), fx.sfs(), stub.clone().into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fx.k.names(), vec!["/usr/bin/worker", "docker-default"]);
    assert_eq!(fx.k.revision(), rev + 1);
    assert!(!fx.k.sha1s().contains_key("payment-api"));
    assert!(fx.k.sha1s().contains_key("docker-default"));
    // Removing what is not loaded fails like the real parser.
    let o = fx.run(&["-R".into(), "--subdomainfs".into(), fx.sfs(), stub.into()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Unable to remove \"payment-api\""), "{}", stderr(&o));
    assert_eq!(fx.k.revision(), rev + 1);
}

#[test]
fn no_subdomainfs_refuses_to_load() {
    let fx = Fx::new();
    let a = fx.file("a", &profile("a", &[]));
    let o = fx.run(&["-r".into(), a.into()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--subdomainfs"), "{}", stderr(&o));
    let o = fx.run(&["-Z".into()]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn call_log_default_and_env() {
    let fx = Fx::new();
    let a = fx.file("a", &profile("a", &[]));
    assert!(fx.load(&[&a]).status.success());
    let default_log = fx.k.apparmor().join(".fake-calls");
    let calls = read_calls(&default_log);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].kind(), CallKind::Load);
    assert_eq!(calls[0].files(), vec![a.display().to_string()]);
    assert!(calls[0].pid > 0);

    let log = fx.tmp.path().join("calls.jsonl");
    for args in [vec!["-V"], vec!["-N"], vec!["-Q", "-K"], vec!["-r", "-K", "-C"], vec!["-R"]] {
        let mut a2: Vec<OsString> = args.iter().map(OsString::from).collect();
        if args.contains(&"-r") || args.contains(&"-R") {
            a2.push("--subdomainfs".into());
            a2.push(fx.sfs());
        }
        if args != ["-V"] {
            a2.push(a.clone().into());
        }
        let refs: Vec<&OsString> = a2.iter().collect();
        let o = run_fake_parser(&refs, Some(&log));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let kinds: Vec<CallKind> = read_calls(&log).iter().map(|c| c.kind()).collect();
    assert_eq!(kinds, vec![CallKind::Version, CallKind::Names, CallKind::Check, CallKind::Load, CallKind::Remove]);
    assert!(read_calls(&log)[3].complain());
    assert_eq!(read_calls(&default_log).len(), 1, "FAKE_PARSER_LOG wins over the default log");
}

#[test]
fn hang_marker_hangs_after_loading_earlier_files() {
    let fx = Fx::new();
    let a = fx.file("a", &profile("a", &[]));
    let h = fx.file("h", &format!("{}# fake: hang\n", profile("h", &[])));
    let log = fx.tmp.path().join("calls.jsonl");
    let mut child = Command::new(fake_parser())
        .args(["-r", "-K", "--subdomainfs"])
        .arg(fx.k.apparmor())
        .arg(&a)
        .arg(&h)
        .env("FAKE_PARSER_LOG", &log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(DEADLINE, "the first file to load", || fx.k.has("a"));
    let still = child.try_wait().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(still.is_none(), "hang marker must not exit: {still:?}");
    assert!(!fx.k.has("h"));
    assert_eq!(read_calls(&log).len(), 1);
    // -N on a hang file does not hang.
    assert!(fx.run(&["-N".into(), h.into()]).status.success());
}

#[test]
fn delay_env_delays() {
    let fx = Fx::new();
    let start = Instant::now();
    let o = Command::new(fake_parser()).arg("-V").env("FAKE_PARSER_DELAY_MS", "300").output().unwrap();
    assert!(o.status.success());
    assert!(start.elapsed() >= Duration::from_millis(300));
    drop(fx);
}

#[test]
fn concurrent_loads_lose_nothing_and_listing_is_never_torn() {
    let fx = Fx::new();
    let files: Vec<PathBuf> = (0..8).map(|i| fx.file(&format!("p{i}"), &profile(&format!("p{i}"), &["/x r"]))).collect();
    let listing = fx.k.apparmor().join("profiles");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let listing = listing.clone();
        std::thread::spawn(move || {
            let mut max_seen = 0;
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = fs::read_to_string(&listing).expect("listing always exists");
                let n = text.lines().count();
                assert!(text.is_empty() || text.ends_with('\n'), "torn listing: {text:?}");
                assert!(n >= max_seen, "listing went backwards: {n} < {max_seen}");
                max_seen = n;
                reads += 1;
            }
            reads
        })
    };
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            Command::new(fake_parser())
                .args(["-r", "-K", "--subdomainfs"])
                .arg(fx.k.apparmor())
                .arg(f)
                .env_remove("FAKE_PARSER_LOG")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(fx.k.names().len(), 8);
    assert_eq!(fx.k.revision(), 8);
    assert_eq!(fx.k.sha1s().len(), 8);
    assert!(!fx.k.apparmor().join(".fake-lock").exists());
}

#[test]
fn expected_kernel_matches_a_real_load() {
    let mut files = std::collections::BTreeMap::new();
    files.insert("x".to_string(), profile("x", &["/x r"]));
    files.insert("y".to_string(), TWO.to_string());
    let (l1, s1) = expected_kernel(&files);
    let (l2, s2) = expected_kernel(&files);
    assert_eq!(l1, l2);
    assert_eq!(s1, s2);
    assert_eq!(s1.len(), 3);
}

#[test]
fn no_fork_mode_and_abort_on_error_stop_at_the_first_bad_file() {
    let fx = Fx::new();
    let bad = fx.file("bad", "profile bad {\n  nope\n}\n");
    let fail = fx.file("fail", &format!("# fake: fail-load\n{}", profile("fail", &[])));
    let good = fx.file("good", &profile("good", &[]));
    let load_no_fork = |first: &std::path::Path| {
        Command::new(fake_parser())
            .args(["-r", "-K", "--subdomainfs"])
            .arg(fx.k.apparmor())
            .arg(first)
            .arg(&good)
            .env("FAKE_PARSER_NO_FORK", "1")
            .env_remove("FAKE_PARSER_LOG")
            .output()
            .unwrap()
    };
    // An in-process parser: yyerror() exits, later files are never looked at.
    let o = load_no_fork(&bad);
    assert_eq!(o.status.code(), Some(1));
    assert!(fx.k.names().is_empty(), "{:?}", fx.k.names());
    // A load failure is not a yyerror(): the run goes on even without forking.
    let o = load_no_fork(&fail);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(fx.k.names(), vec!["good"]);
    // --abort-on-error stops at any failure.
    let other = fx.file("other", &profile("other", &[]));
    let o = fx.run(&["-r".into(), "--abort-on-error".into(), "--subdomainfs".into(), fx.sfs(), fail.into(), other.into()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!fx.k.has("other"));
}

#[test]
fn parallel_mode_reorders_names_unless_j1_and_j0_is_in_process() {
    let fx = Fx::new();
    let a = fx.file("a", "profile a {}\n");
    let s = fx.file("s", "profile apparmor-loader.boundary {}\n");
    let b = fx.file("b", "profile b {}\nprofile b2 {}\n");
    let names = |extra: &[&str]| {
        let o = Command::new(fake_parser())
            .arg("-N")
            .args(extra)
            .arg(&a)
            .arg(&s)
            .arg(&b)
            .env("FAKE_PARSER_PARALLEL", "1")
            .env_remove("FAKE_PARSER_LOG")
            .output()
            .unwrap();
        assert!(o.status.success());
        stdout(&o)
    };
    assert_eq!(names(&[]), "b\nb2\napparmor-loader.boundary\na\n");
    assert_eq!(names(&["-j1"]), "a\napparmor-loader.boundary\nb\nb2\n");
    assert_eq!(names(&["--jobs=1"]), "a\napparmor-loader.boundary\nb\nb2\n");
    // -j0: in-process, a syntax error ends the run.
    let bad = fx.file("bad", "profile bad {\n  x\n}\n");
    let o = fx.run(&["-r".into(), "-j".into(), "0".into(), "--subdomainfs".into(), fx.sfs(), bad.into(), a.into()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!fx.k.has("a"));
}
