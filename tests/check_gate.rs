//! `check` as a GitOps gate: per-file JSON, one profile defined by two files, `--strict-names`,
//! and the names taken from the compiled policy, with the fake parser and with the real one.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{BIN, fake_parser, profile, run_with_deadline};
use serde_json::Value;

fn check(parser: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("check").args(args).arg("--parser").arg(parser);
    run_with_deadline(cmd)
}

fn json(o: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)));
    v.as_array().expect("a JSON array").clone()
}

fn by_file<'a>(files: &'a [Value], name: &str) -> &'a Value {
    files.iter().find(|f| f["file"].as_str().is_some_and(|p| p.ends_with(name))).unwrap_or_else(|| panic!("no {name}: {files:?}"))
}

#[test]
fn json_names_each_file_its_line_and_the_duplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("profiles");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("good"), profile("good", &[])).unwrap();
    fs::write(dir.join("bad"), "# x\n\nprofile bad {\n  /x r\n}\n").unwrap();
    fs::write(dir.join("web"), profile("web", &[])).unwrap();
    fs::write(dir.join("web-copy"), profile("web", &["/srv/** r"])).unwrap();
    let o = check(&fake_parser(), &["--json", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let files = json(&o);
    assert_eq!(files.len(), 4, "{files:?}");
    let good = by_file(&files, "/good");
    assert_eq!((good["ok"].as_bool(), good["profiles"].clone()), (Some(true), serde_json::json!(["good"])));
    assert!(good["message"].is_null() && good["line"].is_null());
    let bad = by_file(&files, "/bad");
    assert_eq!((bad["ok"].as_bool(), bad["line"].as_u64()), (Some(false), Some(4)), "{bad}");
    assert!(bad["message"].as_str().unwrap().contains(&format!("{}:4:", dir.join("bad").display())), "{bad}");
    for (me, other) in [("/web", "web-copy"), ("/web-copy", "web")] {
        let f = by_file(&files, me);
        assert_eq!(f["ok"].as_bool(), Some(false), "{f}");
        let m = f["message"].as_str().unwrap();
        assert!(m.contains("profile \"web\" is also defined in") && m.ends_with(other), "{m}");
    }
}

#[test]
fn text_output_says_ok_with_the_names_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("payment-api");
    fs::write(&f, profile("payment-api", &[])).unwrap();
    let o = check(&fake_parser(), &[f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("ok      {} (payment-api)", f.display())), "{text}");
    assert!(text.ends_with("1 checked, 0 with errors\n"), "{text}");
}

#[test]
fn strict_names_fail_a_file_named_after_none_of_its_profiles() {
    let tmp = tempfile::tempdir().unwrap();
    let misnamed = tmp.path().join("sites");
    fs::write(&misnamed, profile("web", &[])).unwrap();
    let dotted = tmp.path().join("usr.bin.foo");
    fs::write(&dotted, "profile /usr/bin/foo {\n}\n").unwrap();
    let args = [misnamed.to_str().unwrap(), dotted.to_str().unwrap()];
    assert_eq!(check(&fake_parser(), &args).status.code(), Some(0));
    let o = check(&fake_parser(), &["--strict-names", "--json", args[0], args[1]]);
    assert_eq!(o.status.code(), Some(1));
    let files = json(&o);
    assert_eq!(by_file(&files, "/usr.bin.foo")["ok"].as_bool(), Some(true), "{files:?}");
    let m = by_file(&files, "/sites")["message"].as_str().unwrap().to_string();
    assert!(m.contains("file name \"sites\" is none of its profiles (web)"), "{m}");
}

#[test]
fn a_name_the_agent_would_refuse_fails_check_too() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("padded");
    fs::write(&f, "profile \" web\" {\n}\n").unwrap();
    let o = check(&fake_parser(), &["--json", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let m = json(&o)[0]["message"].as_str().unwrap().to_string();
    assert!(m.contains(&f.display().to_string()) && m.contains("cannot read"), "{m}");
}

fn real_parser() -> PathBuf {
    ["/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("the real apparmor_parser is needed: `apt-get install apparmor` (make test does it)")
}

/// The repo's own profiles through the real parser's `-o`: the names come from the policy it wrote.
#[test]
fn the_real_parser_names_the_repos_profiles_and_finds_a_copy() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let tmp = tempfile::tempdir().unwrap();
    for name in ["payment-api", "nginx-web"] {
        fs::copy(repo.join(name), tmp.path().join(name)).unwrap();
    }
    let o = check(&real_parser(), &["--json", "--strict-names", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let files = json(&o);
    assert_eq!(by_file(&files, "/payment-api")["profiles"], serde_json::json!(["payment-api"]));
    fs::copy(repo.join("payment-api"), tmp.path().join("payment-api-v2")).unwrap();
    let o = check(&real_parser(), &["--json", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let m = by_file(&json(&o), "/payment-api-v2")["message"].as_str().unwrap().to_string();
    assert!(m.contains("profile \"payment-api\" is also defined in"), "{m}");
}

/// The pre-commit hook as pre-commit runs it: its entry, then the staged files its `files`
/// pattern selects, in one call (`require_serial`, so duplicates across files are seen).
#[test]
fn the_pre_commit_hook_runs_check_on_the_selected_files() {
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".pre-commit-hooks.yaml")).unwrap();
    let hooks: Vec<serde_json::Map<String, Value>> = serde_saphyr::from_str(&text).unwrap();
    let hook = hooks.iter().find(|h| h["id"] == "apparmor-loader-check").expect("hook apparmor-loader-check");
    assert_eq!(hook["language"], "rust");
    assert_eq!(hook["require_serial"], true);
    let entry: Vec<&str> = hook["entry"].as_str().unwrap().split_whitespace().collect();
    assert_eq!(entry[..2], ["apparmor-loader", "check"]);
    let files = regex_lite_match(hook["files"].as_str().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("profiles")).unwrap();
    fs::write(tmp.path().join("profiles/web"), profile("web", &[])).unwrap();
    fs::write(tmp.path().join("profiles/web-old"), profile("web", &[])).unwrap();
    let staged = ["profiles/web", "profiles/web-old", "README.md"];
    let selected: Vec<&str> = staged.iter().copied().filter(|f| files(f)).collect();
    assert_eq!(selected, ["profiles/web", "profiles/web-old"]);
    let run = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(tmp.path()).args(&entry[1..]).arg("--parser").arg(fake_parser()).args(args);
        run_with_deadline(cmd)
    };
    assert_eq!(run(&selected[..1]).status.code(), Some(0));
    let o = run(&selected);
    assert_eq!(o.status.code(), Some(1), "a profile in two staged files must fail the commit");
    assert!(String::from_utf8_lossy(&o.stdout).contains("also defined in profiles/web"));
}

/// The hook's `files` pattern is a `^prefix/` anchor; anything richer needs a regex engine here.
fn regex_lite_match(pattern: &str) -> impl Fn(&str) -> bool + '_ {
    let prefix = pattern.strip_prefix('^').expect("an anchored pattern");
    assert!(prefix.chars().all(|c| c.is_alphanumeric() || "/-_".contains(c)), "{pattern}");
    move |f: &str| f.starts_with(prefix)
}
