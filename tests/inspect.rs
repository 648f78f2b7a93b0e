//! `apparmor-loader inspect` against the fake parser and fake kernel: it compiles files with
//! `-Q -T -W -L`, reads the compiled policy, and tells whether the kernel runs exactly that.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;
use tempfile::TempDir;

fn inspect(sfs: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("inspect").arg("--parser").arg(fake_parser()).arg("--securityfs").arg(sfs).env_remove("FAKE_PARSER_LOG");
    cmd.args(args).output().unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn inspect_tells_loaded_different_and_absent() {
    let tmp = TempDir::new().unwrap();
    let k = FakeSecurityfs::create(tmp.path().join("sfs"));
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    fs::write(&a, profile("alpha", &["/a r"])).unwrap();
    fs::write(&b, "profile beta flags=(complain) {\n}\nprofile gamma {\n}\n").unwrap();
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());

    // Load `a` through the fake's binary path, from the blob the fake compiles.
    let cache = tmp.path().join("cache");
    let o = Command::new(fake_parser())
        .args(["-Q", "-T", "-W", "-L"])
        .arg(&cache)
        .arg(&a)
        .env_remove("FAKE_PARSER_LOG")
        .output()
        .unwrap();
    assert!(o.status.success());
    let blob = fs::read_dir(&cache).unwrap().next().unwrap().unwrap().path().join("a");
    let o = Command::new(fake_parser())
        .args(["-r", "-B", "--subdomainfs"])
        .arg(k.apparmor())
        .arg(&blob)
        .env_remove("FAKE_PARSER_LOG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let o = inspect(&tmp.path().join("sfs"), &["--kernel", "--json", a_s, b_s]);
    assert_eq!(o.status.code(), Some(1), "b is not loaded");
    let v = json(&o);
    let rows: Vec<(String, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["profiles"].as_array().unwrap().clone())
        .map(|p| (p["name"].as_str().unwrap().into(), p["mode"].as_str().unwrap().into(), p["kernel"].as_str().unwrap().into()))
        .collect();
    let row = |n: &str, m: &str, k: &str| (n.to_string(), m.to_string(), k.to_string());
    assert_eq!(rows, [row("alpha", "enforce", "loaded"), row("beta", "complain", "absent"), row("gamma", "enforce", "absent")]);
    assert_eq!(v[0]["profiles"][0]["sha1"].as_str(), k.sha1("alpha").as_deref(), "the sha1 the kernel shows");

    // The file changed: no longer what the kernel runs. As a complain load: different too.
    fs::write(&a, profile("alpha", &["/a r", "/b r"])).unwrap();
    let o = inspect(&tmp.path().join("sfs"), &["--kernel", a_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("alpha  different"), "{}", String::from_utf8_lossy(&o.stdout));
    // Without --kernel: just the compiled view, exit 0.
    let o = inspect(&tmp.path().join("sfs"), &["--complain", a_s]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("complain"));
}

#[test]
fn inspect_reports_bad_files_and_refused_blobs() {
    let tmp = TempDir::new().unwrap();
    let sfs = tmp.path().join("sfs");
    FakeSecurityfs::create(sfs.clone());
    let bad = tmp.path().join("bad");
    fs::write(&bad, "profile bad {\n  nope\n}\n").unwrap();
    let nested = tmp.path().join("nested");
    fs::write(&nested, "profile outer {\n  profile docker-default {\n    ^evil {\n    }\n  }\n}\n").unwrap();
    let garbage = tmp.path().join("garbage");
    fs::write(&garbage, "garbage").unwrap();
    let o = inspect(&sfs, &[bad.to_str().unwrap(), nested.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("bad: error: AppArmor parser error for") && text.contains("at line 2"), "{text}");
    assert!(text.contains("is a child of \"docker-default\", which the same file does not define"), "{text}");
    let o = inspect(&sfs, &["--binary", garbage.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("expected the header's NAME \"version\" U32 at byte 0"));
}
