//! Differential test of `kernel::blob` against the real `apparmor_parser` (Debian's 3.0.8, which
//! compiles without a kernel when given `--kernel-features`): for every profile file of the repo,
//! of a real-world corpus (Debian's apparmor-profiles and apparmor-profiles-extra, fetched by
//! `make corpus`) and of a set of hostile files, the names `blob::parse` reads from the compiled
//! cache file are the names `apparmor_parser -N` prints, every file `-N` accepts compiles, and
//! every blob passes `check_self_contained`. Where `-N` is known to say something other than what
//! the compiled policy tells the kernel, the hostile case states the blob's names instead.
//!
//! Needs the real parser and the corpus: it fails (never skips) without them, saying how to get
//! them. `make test` provides both.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use apparmor_loader::kernel::blob::{self, BlobProfile};
use apparmor_loader::kernel::listing::Mode;
use tempfile::TempDir;

/// The feature set Debian's apparmor package ships for compiling without a kernel.
const FEATURES: &str = "/usr/share/apparmor-features/features";

fn parser() -> PathBuf {
    let candidates = [
        std::env::var_os("APPARMOR_PARSER").map(PathBuf::from),
        Some("/usr/sbin/apparmor_parser".into()),
        Some("/sbin/apparmor_parser".into()),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.is_file());
    let parser = found.unwrap_or_else(|| {
        panic!("the real apparmor_parser is needed: `apt-get install apparmor` (Debian 12's 3.0.8; .ci/run does it)")
    });
    assert!(Path::new(FEATURES).is_file(), "{FEATURES} is missing: it comes with Debian's apparmor package");
    parser
}

fn corpus() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/corpus/root");
    assert!(
        root.join("etc/apparmor.d").is_dir(),
        "the profile corpus is missing at {}: run `make corpus` (tests/differential/fetch-corpus.sh)",
        root.display()
    );
    root
}

/// A file to compare and what its blob must say.
struct Case {
    path: PathBuf,
    expect: Expect,
}

enum Expect {
    /// The blob's names are `-N`'s.
    SameAsN,
    /// `-N` is wrong for this file: the blob (what the kernel gets) has these names and modes.
    Blob(&'static [(&'static str, Mode)]),
    /// `blob::parse` refuses the compiled file.
    Refused,
    /// The names are `-N`'s, but the blob reaches into a profile it does not define, which
    /// `check_self_contained` refuses.
    NotSelfContained,
}

/// Profile files of a directory (not README, yaml, dotfiles or subdirectories).
fn profile_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            !(n.starts_with('.') || n.starts_with("README") || n.ends_with(".yaml") || n.ends_with(".md"))
        })
        .collect();
    out.sort();
    out
}

/// The hostile files, written into `dir` (the parser runs there: quoted includes are relative
/// to its working directory), with `dir/inc` as an extra include path.
fn hostile(dir: &Path) -> Vec<Case> {
    let w = |name: &str, text: &str| {
        fs::write(dir.join(name), text).unwrap();
        dir.join(name)
    };
    fs::create_dir_all(dir.join("inc/tunables")).unwrap();
    w("x", "profile sneaky {\n}\n");
    w("closer", "}\nprofile docker-default {\n  /** rw,\n");
    let same = |name: &str, text: &str| Case { path: w(name, text), expect: Expect::SameAsN };
    let blob = |name: &str, text: &str, names| Case { path: w(name, text), expect: Expect::Blob(names) };
    vec![
        same("hostile-hex", "profile \"\\x64ocker-default\" {\n}\n"),
        same("hostile-octal", "profile \"\\144ocker-x\" {\n}\n"),
        same("hostile-quoted", "profile \"a b\" {\n}\nprofile \"q\\\"uote\" {\n}\nprofile \"uni-ñ-名\" {\n}\n"),
        // The kernel would take a name padded with spaces; blob refuses it (a look-alike of a
        // real profile's name that no operator could tell apart in a listing).
        Case { path: w("hostile-padded", "profile \" lead\" {\n}\n"), expect: Expect::Refused },
        same("hostile-traversal", "include <tunables/../../x>\nprofile t {\n}\n"),
        same("hostile-body-include", "profile innocent {\n  include \"closer\"\n}\n"),
        same("hostile-hats", "profile h {\n  ^hat1 {\n  }\n  hat hat2 {\n  }\n  profile child {\n  }\n}\n"),
        same("hostile-namespaced", "profile :ns1:inns {\n}\nprofile \":ns1:quoted\" {\n}\n"),
        same("hostile-several", "profile one {\n}\nprofile two {\n}\nprofile three flags=(complain) {\n}\n"),
        same("hostile-paths", "/usr/bin/foo {\n}\nprofile /usr/bin/bar flags=(complain) {\n}\nprofile z /usr/bin/z {\n}\n"),
        Case { path: w("hostile-slashes", "profile \"a//b\" {\n}\n"), expect: Expect::NotSelfContained },
        same("hostile-alternation", "profile foo{a,b} {\n}\n"),
        // -N prints a//b//c; 3.0.8 writes the grandchild under its direct parent only.
        blob(
            "hostile-nested",
            "profile a {\n  profile b {\n    profile c {\n    }\n  }\n}\n",
            &[("a", Mode::Enforce), ("a//b", Mode::Enforce), ("b//c", Mode::Enforce)],
        ),
        // -N prints `plain` outside the namespace; the blob's header puts the whole load in it.
        blob(
            "hostile-mixed-ns",
            "profile plain {\n}\nprofile :ns2:x {\n}\n",
            &[(":ns2://plain", Mode::Enforce), (":ns2://x", Mode::Enforce)],
        ),
        // -N prints the variable unexpanded; the compiled name is its value.
        blob("hostile-variable", "@{N}=varname\nprofile @{N} {\n}\n", &[("varname", Mode::Enforce)]),
        // -N prints two lines; the blob holds one name with a newline, which blob refuses.
        Case { path: w("hostile-newline", "profile \"nl\\nname\" {\n}\n"), expect: Expect::Refused },
        Case { path: w("hostile-nonutf8", "profile \"\\xff\\xfe\" {\n}\n"), expect: Expect::Refused },
    ]
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

struct Parser {
    bin: PathBuf,
    cwd: PathBuf,
    includes: Vec<PathBuf>,
}

impl Parser {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(&self.cwd).arg("--kernel-features").arg(FEATURES);
        for i in &self.includes {
            c.arg("-I").arg(i);
        }
        c
    }

    /// `-N FILE`: `None` when the parser rejects the file.
    fn names(&self, file: &Path) -> Option<Vec<String>> {
        let out = run(self.cmd().arg("-N").arg(file));
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
    }

    /// The agent's compile call: all files, one process.
    fn compile(&self, cache: &Path, files: &[&Path]) -> Output {
        run(self.cmd().args(["-Q", "-T", "-W", "-L"]).arg(cache).arg("-j2").args(files))
    }
}

/// The names as `-N` spells them: `:ns://name` for a namespaced profile.
fn spelled(p: &BlobProfile) -> String {
    match &p.namespace {
        Some(ns) => format!(":{ns}://{}", p.name),
        None => p.name.clone(),
    }
}

fn cache_file(cache: &Path, file: &Path) -> Option<Vec<u8>> {
    let sub = fs::read_dir(cache).ok()?.flatten().find(|e| e.path().is_dir())?.path();
    fs::read(sub.join(file.file_name()?)).ok()
}

#[test]
fn blob_names_are_the_parsers_names_for_repo_corpus_and_hostile_files() {
    let start = Instant::now();
    let bin = parser();
    let corpus = corpus();
    let tmp = TempDir::new().unwrap();
    let hostile_dir = tmp.path().join("hostile");
    fs::create_dir(&hostile_dir).unwrap();
    let mut cases: Vec<Case> = Vec::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let real: Vec<PathBuf> = [repo, corpus.join("etc/apparmor.d"), corpus.join("usr/share/apparmor/extra-profiles")]
        .iter()
        .flat_map(|d| profile_files(d))
        .collect();
    let real_count = real.len();
    cases.extend(real.into_iter().map(|path| Case { path, expect: Expect::SameAsN }));
    cases.extend(hostile(&hostile_dir));
    let basenames: BTreeSet<_> = cases.iter().map(|c| c.path.file_name().unwrap().to_owned()).collect();
    assert_eq!(basenames.len(), cases.len(), "cache files are named by basename: they must be unique");

    let p = Parser { bin, cwd: hostile_dir.clone(), includes: vec![corpus.join("etc/apparmor.d"), hostile_dir.join("inc")] };
    let cache = tmp.path().join("cache");
    let files: Vec<&Path> = cases.iter().map(|c| c.path.as_path()).collect();
    let compile_start = Instant::now();
    let compiled = p.compile(&cache, &files);
    let compile_time = compile_start.elapsed();

    let mut failures = Vec::new();
    let mut rejected = Vec::new();
    let (mut accepted, mut profiles) = (0, 0);
    for case in &cases {
        let shown = case.path.display();
        let (n, blob) = match (p.names(&case.path), cache_file(&cache, &case.path)) {
            (Some(n), Some(blob)) => (n, blob),
            (None, None) => {
                rejected.push(shown.to_string());
                continue;
            }
            (Some(_), None) => {
                failures.push(format!("{shown}: -N accepts it but the compile wrote no blob"));
                continue;
            }
            (None, Some(_)) => {
                failures.push(format!("{shown}: compiled, but -N rejects it"));
                continue;
            }
        };
        accepted += 1;
        let parsed = blob::parse(&blob);
        match (&case.expect, parsed) {
            (Expect::Refused, Ok(got)) => failures.push(format!("{shown}: blob::parse accepted {got:?}")),
            (Expect::Refused, Err(_)) => {}
            (_, Err(e)) => failures.push(format!("{shown}: {e}")),
            (Expect::SameAsN | Expect::NotSelfContained, Ok(got)) => {
                profiles += got.len();
                let got_names: BTreeSet<String> = got.iter().map(spelled).collect();
                let want: BTreeSet<String> = n.into_iter().collect();
                if got_names != want || got_names.len() != got.len() {
                    failures.push(format!("{shown}: -N says {want:?}, the blob {got_names:?}"));
                }
                match (blob::check_self_contained(&got), matches!(case.expect, Expect::NotSelfContained)) {
                    (Err(e), false) => failures.push(format!("{shown}: {e}")),
                    (Ok(()), true) => failures.push(format!("{shown}: check_self_contained accepted {got:?}")),
                    _ => {}
                }
            }
            (Expect::Blob(want), Ok(got)) => {
                let got: Vec<(String, Mode)> = got.iter().map(|p| (spelled(p), p.mode.clone())).collect();
                let want: Vec<(String, Mode)> = want.iter().map(|(n, m)| (n.to_string(), m.clone())).collect();
                if got != want {
                    failures.push(format!("{shown}: the blob has {got:?}, expected {want:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}\nparser stderr:\n{}",
        failures.len(),
        failures.join("\n"),
        String::from_utf8_lossy(&compiled.stderr)
    );
    eprintln!(
        "differential: {} files ({real_count} repo + corpus, {} hostile), {accepted} compiled, {profiles} profiles; \
         rejected by the parser: {rejected:?}; compile {:.2}s, total {:.2}s",
        cases.len(),
        cases.len() - real_count,
        compile_time.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    assert!(real_count > 100, "the corpus looks incomplete: {real_count} files");
}

#[test]
fn modes_of_hostile_files_are_the_flags() {
    let bin = parser();
    let tmp = TempDir::new().unwrap();
    let cases = hostile(tmp.path());
    let p = Parser { bin, cwd: tmp.path().to_path_buf(), includes: vec![tmp.path().join("inc")] };
    let cache = tmp.path().join("cache");
    let pick = |name: &str| cases.iter().find(|c| c.path.ends_with(name)).unwrap().path.clone();
    let (paths, several) = (pick("hostile-paths"), pick("hostile-several"));
    assert!(p.compile(&cache, &[&paths, &several]).status.success());
    let modes = |f: &Path| -> Vec<(String, Mode)> {
        blob::parse(&cache_file(&cache, f).unwrap()).unwrap().into_iter().map(|p| (p.name, p.mode)).collect()
    };
    let s = |n: &str, m: Mode| (n.to_string(), m);
    assert_eq!(modes(&paths), [s("/usr/bin/bar", Mode::Complain), s("/usr/bin/foo", Mode::Enforce), s("z", Mode::Enforce)]);
    assert_eq!(modes(&several), [s("one", Mode::Enforce), s("three", Mode::Complain), s("two", Mode::Enforce)]);
}

#[test]
fn force_complain_is_byte_for_byte_the_parsers_dash_c() {
    let p = Parser { bin: parser(), cwd: std::env::temp_dir(), includes: vec![corpus().join("etc/apparmor.d")] };
    let mut files = profile_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles"));
    files.extend(profile_files(&corpus().join("etc/apparmor.d")).into_iter().take(8));
    for f in files {
        let plain = run(p.cmd().args(["-Q", "-T", "-S"]).arg(&f));
        let forced = run(p.cmd().args(["-Q", "-T", "-S", "-C"]).arg(&f));
        assert!(plain.status.success() && forced.status.success(), "{}", f.display());
        assert_eq!(blob::force_complain(&plain.stdout).unwrap(), forced.stdout, "{}", f.display());
        assert!(blob::parse(&forced.stdout).unwrap().iter().all(|p| p.mode == Mode::Complain));
    }
}
