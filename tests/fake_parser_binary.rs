//! Tests of the fake apparmor_parser's binary policy modes: `-Q -T -W -L DIR` compiling files into
//! cache blobs in the real format, and `-a -B` / `-r -B` loading blobs into the fake kernel the
//! way the kernel's `.load` / `.replace` do. The blobs are read with the library's reader, so
//! these tests also hold the fake to the format the real parser writes.

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use apparmor_loader::kernel::blob::{self, BlobError, BlobProfile};
use apparmor_loader::kernel::listing::Mode;
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

    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// `-Q -T -W -L cache -j2 --subdomainfs sfs EXTRA… FILES…`, the agent's compile call.
    fn compile(&self, extra: &[&str], files: &[&Path]) -> Output {
        let mut a: Vec<OsString> = ["-Q", "-T", "-W", "-L"].map(OsString::from).to_vec();
        a.push(self.cache().into());
        a.extend(["-j2".into(), "--subdomainfs".into(), self.k.apparmor().into()]);
        a.extend(extra.iter().map(OsString::from));
        a.extend(files.iter().map(|f| f.as_os_str().to_owned()));
        run_fake_parser(&a.iter().collect::<Vec<_>>(), None)
    }

    /// The cache file of `basename`, if the compile wrote one.
    fn blob(&self, basename: &str) -> Option<Vec<u8>> {
        let dirs: Vec<PathBuf> = fs::read_dir(self.cache()).ok()?.flatten().map(|e| e.path()).collect();
        assert_eq!(dirs.len(), 1, "one cache subdirectory: {dirs:?}");
        let name = dirs[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.len() == 10 && name.ends_with(".0") && name[..8].chars().all(|c| c.is_ascii_hexdigit()), "{name}");
        fs::read(dirs[0].join(basename)).ok()
    }

    fn blob_path(&self, basename: &str, bytes: &[u8]) -> PathBuf {
        let p = self.tmp.path().join(format!("{basename}.bin"));
        fs::write(&p, bytes).unwrap();
        p
    }

    /// `-a -B` (add) or `-r -B` (replace) of binary files.
    fn load_binary(&self, add: bool, files: &[&Path]) -> Output {
        let mut a: Vec<OsString> =
            vec![if add { "-a" } else { "-r" }.into(), "-B".into(), "--subdomainfs".into(), self.k.apparmor().into()];
        a.extend(files.iter().map(|f| f.as_os_str().to_owned()));
        run_fake_parser(&a.iter().collect::<Vec<_>>(), None)
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn summary(profiles: &[BlobProfile]) -> Vec<(&str, Mode)> {
    profiles.iter().map(|p| (p.name.as_str(), p.mode.clone())).collect()
}

const NESTED: &str = "\
profile zed flags=(complain) {
  /etc/zed r,
  profile child {
    /x r,
  }
  ^hat {
    /y r,
  }
  profile loud flags=(complain) {
    ^inner { }
  }
}
/usr/bin/abc {
  /etc/abc r,
}
";

#[test]
fn compile_writes_one_real_format_blob_per_good_file() {
    let fx = Fx::new();
    let nested = fx.file("nested", NESTED);
    let bad = fx.file("bad", "profile bad {\n  /x rwq\n}\n");
    let one = fx.file("one", &profile("one", &["/tmp/** r"]));
    let o = fx.compile(&[], &[&nested, &bad, &one]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("AppArmor parser error for {0} in profile {0} at line 2", bad.display())),
        "{}",
        stderr(&o)
    );
    assert_eq!(fx.blob("bad"), None, "a bad file gets no blob");
    assert_eq!(fx.k.revision(), 0, "compiling does not touch the kernel");
    let got = blob::parse(&fx.blob("nested").unwrap()).unwrap();
    // Sorted, children after their parent, modes as the real parser writes them (children do
    // not inherit the parent's complain), and the grandchild named after its direct parent only.
    assert_eq!(
        summary(&got),
        [
            ("/usr/bin/abc", Mode::Enforce),
            ("zed", Mode::Complain),
            ("zed//child", Mode::Enforce),
            ("zed//hat", Mode::Enforce),
            ("zed//loud", Mode::Complain),
            ("loud//inner", Mode::Enforce),
        ]
    );
    assert!(matches!(blob::check_self_contained(&got), Err(BlobError::Orphan { parent, .. }) if parent == "loud"));
    assert_eq!(summary(&blob::parse(&fx.blob("one").unwrap()).unwrap()), [("one", Mode::Enforce)]);
    // The blob goes in by temp file + rename: nothing else is left in the cache directory.
    let dir = fx.cache().join(fs::read_dir(fx.cache()).unwrap().next().unwrap().unwrap().file_name());
    let mut left: Vec<String> =
        fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["nested", "one"]);
}

#[test]
fn the_sha1_follows_the_text_and_nothing_else() {
    let fx = Fx::new();
    let f = fx.file("p", &profile("p", &["/a r"]));
    let sha = |fx: &Fx| {
        let o = fx.compile(&[], &[&f]);
        assert!(o.status.success(), "{}", stderr(&o));
        blob::parse(&fx.blob("p").unwrap()).unwrap()[0].sha1.clone()
    };
    let first = sha(&fx);
    assert_eq!(sha(&fx), first, "same text, same blob");
    fs::write(&f, profile("p", &["/b r"])).unwrap();
    assert_ne!(sha(&fx), first, "an edit changes the sha1");
}

#[test]
fn force_complain_caches_nothing_like_the_real_parser() {
    let fx = Fx::new();
    let f = fx.file("p", &profile("p", &[]));
    let o = fx.compile(&["-C"], &[&f]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("Caching disabled for: 'p' due to force complain"), "{}", stderr(&o));
    assert!(!fx.cache().exists() || fx.blob("p").is_none());
}

#[test]
fn no_fork_and_abort_on_error_stop_compiling_at_the_first_bad_file() {
    let fx = Fx::new();
    let bad = fx.file("bad", "profile bad {\n  nope\n}\n");
    let good = fx.file("good", &profile("good", &[]));
    let o = fx.compile(&["--abort-on-error"], &[&bad, &good]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!fx.cache().exists(), "nothing compiled after the bad file");
    let mut cmd = Command::new(fake_parser());
    cmd.args(["-Q", "-T", "-W", "-L"]).arg(fx.cache()).arg(&bad).arg(&good).env("FAKE_PARSER_NO_FORK", "1");
    assert_eq!(cmd.env_remove("FAKE_PARSER_LOG").output().unwrap().status.code(), Some(1));
    assert!(!fx.cache().exists());
    // Forked workers go on past it.
    assert_eq!(fx.compile(&[], &[&bad, &good]).status.code(), Some(1));
    assert!(fx.blob("good").is_some());
}

#[test]
fn the_hang_marker_hangs_a_compile() {
    let fx = Fx::new();
    let f = fx.file("h", &format!("# fake: hang\n{}", profile("h", &[])));
    let mut child = Command::new(fake_parser())
        .args(["-Q", "-T", "-W", "-L"])
        .arg(fx.cache())
        .arg(&f)
        .env_remove("FAKE_PARSER_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "still running");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn binary_add_and_replace_behave_like_the_kernel() {
    let fx = Fx::new();
    let f = fx.file("multi", NESTED.replace("    ^inner { }\n", "").as_str());
    assert!(fx.compile(&[], &[&f]).status.success());
    let bytes = fx.blob("multi").unwrap();
    let want = blob::parse(&bytes).unwrap();
    let bin = fx.blob_path("multi", &bytes);
    let o = fx.load_binary(true, &[&bin]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listing: Vec<(String, String)> = fx.k.listing().into_iter().collect();
    let mut expected: Vec<(String, String)> = want.iter().map(|p| (p.name.clone(), p.mode.to_string())).collect();
    expected.sort();
    assert_eq!(listing, expected);
    // policy/profiles/*/sha1 is the kernel's formula, computed from the blob.
    let top: Vec<(String, String)> =
        want.iter().filter(|p| !p.name.contains("//")).map(|p| (p.name.clone(), p.sha1.clone())).collect();
    assert_eq!(fx.k.sha1s().into_iter().collect::<Vec<_>>(), top);
    assert_eq!(fx.k.revision(), 1);
    // .load of a name that exists fails, in the real parser's words, and changes nothing.
    let o = fx.load_binary(true, &[&bin]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim(), format!("Error: Could not load profile {}: File exists", bin.display()));
    assert_eq!(fx.k.revision(), 1);
    // .replace works, and keeps an old child the new blob does not define (the kernel moves
    // children over to the replacement).
    fs::write(&f, "profile zed {\n  /etc/zed r,\n}\n").unwrap();
    assert!(fx.compile(&[], &[&f]).status.success());
    let bin2 = fx.blob_path("zed", &fx.blob("multi").unwrap());
    let o = fx.load_binary(false, &[&bin2]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fx.k.mode("zed").as_deref(), Some("enforce"));
    assert!(fx.k.has("zed//child") && fx.k.has("/usr/bin/abc"));
    assert_eq!(fx.k.sha1("zed"), Some(blob::parse(&fs::read(&bin2).unwrap()).unwrap()[0].sha1.clone()));
    assert_eq!(fx.k.revision(), 2);
}

#[test]
fn the_fail_load_marker_compiles_but_the_kernel_refuses_the_blob() {
    let fx = Fx::new();
    let f = fx.file("f", &format!("# fake: fail-load\n{}", profile("f", &[])));
    let good = fx.file("good", &profile("good", &[]));
    assert!(fx.compile(&[], &[&f, &good]).status.success());
    let bad_bin = fx.blob_path("f", &fx.blob("f").unwrap());
    let good_bin = fx.blob_path("good", &fx.blob("good").unwrap());
    let o = fx.load_binary(false, &[&bad_bin, &good_bin]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim(), format!("Error: Could not replace profile {}: Protocol error", bad_bin.display()));
    assert_eq!(fx.k.names(), ["good"], "the other file still loads");
}

#[test]
fn broken_and_orphan_blobs_are_refused_whole() {
    let fx = Fx::new();
    let garbage = fx.blob_path("garbage", b"garbage\n");
    let o = fx.load_binary(false, &[&garbage]);
    assert!(stderr(&o).ends_with("Protocol not supported\n"), "{}", stderr(&o));
    let f = fx.file("p", &profile("p", &[]));
    assert!(fx.compile(&[], &[&f]).status.success());
    let bytes = fx.blob("p").unwrap();
    let cut = fx.blob_path("cut", &bytes[..bytes.len() - 1]);
    assert!(stderr(&fx.load_binary(false, &[&cut])).ends_with("Protocol error\n"));
    let missing = fx.tmp.path().join("missing");
    assert!(stderr(&fx.load_binary(false, &[&missing])).ends_with("No such file or directory\n"));
    assert_eq!(fx.k.revision(), 0);
    // A grandchild's blob names only its direct parent: without it the kernel refuses the load…
    let g = fx.file("g", "profile outer {\n  profile docker-default {\n    ^evil {\n      /** rw,\n    }\n  }\n}\n");
    assert!(fx.compile(&[], &[&g]).status.success());
    let g_bin = fx.blob_path("g", &fx.blob("g").unwrap());
    assert!(stderr(&fx.load_binary(false, &[&g_bin])).ends_with("No such file or directory\n"));
    assert!(fx.k.names().is_empty());
    // …and with a foreign profile of that name loaded, the hat lands in the foreign profile:
    // what blob::check_self_contained refuses before any load.
    fx.k.seed_foreign("docker-default", "enforce");
    assert!(fx.load_binary(false, &[&g_bin]).status.success());
    assert!(fx.k.has("docker-default//evil"));
    let profiles = blob::parse(&fs::read(&g_bin).unwrap()).unwrap();
    assert!(matches!(blob::check_self_contained(&profiles), Err(BlobError::Orphan { parent, .. }) if parent == "docker-default"));
}

#[test]
fn binary_loads_without_a_kernel_or_with_dash_q() {
    let fx = Fx::new();
    let f = fx.file("p", &profile("p", &[]));
    assert!(fx.compile(&[], &[&f]).status.success());
    let bin = fx.blob_path("p", &fx.blob("p").unwrap());
    let o = run_fake_parser(&[&"-r".into(), &"-B".into(), &bin.clone().into()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--subdomainfs"), "{}", stderr(&o));
    let start = Instant::now();
    let o = run_fake_parser(&[&"-Q".into(), &"-r".into(), &"-B".into(), &bin.into()], None);
    assert!(o.status.success() && start.elapsed() < Duration::from_secs(10));
    assert_eq!(fx.k.revision(), 0);
}
