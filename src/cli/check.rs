//! `check`: compile profile files without loading them — the gate a GitOps pipeline runs before
//! a profile reaches a node. It fails on what the agent would refuse or fail: a parser error, a
//! policy the agent cannot read, and one profile name defined by two files; with
//! `--strict-names`, a file whose name is none of its profiles' names.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::cli::Verdict;
use crate::config::HostSettings;
use crate::kernel::{CheckJob, HostKernel, KernelError};
use crate::preflight::{self, Needs};
use crate::scan::{self, ScanEntry, ScanOptions};

/// What `check` was asked.
#[derive(Debug, Clone, Default)]
pub struct CheckArgs {
    /// Files, or directories whose profile files are all checked (recursively).
    pub paths: Vec<PathBuf>,
    /// Include search path, as `run --include-dir`.
    pub include_dirs: Vec<PathBuf>,
    /// A kernel feature set to compile for instead of the running kernel's.
    pub features: Option<PathBuf>,
    /// One JSON array of per-file objects instead of text.
    pub json: bool,
    /// A file's name must be one of its profiles' names.
    pub strict_names: bool,
}

/// The verdict on one file (an element of `check --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    /// The file as the user named it (or as found under a named directory).
    pub file: String,
    /// Whether the file passed.
    pub ok: bool,
    /// The line of the first parser error, when the parser gave one.
    pub line: Option<u32>,
    /// Why the file failed.
    pub message: Option<String>,
    /// Its top-level profiles, as the compiled policy names them (the kernel's names).
    pub profiles: Vec<String>,
}

impl FileCheck {
    fn fail(&mut self, message: String) {
        self.ok = false;
        // The first reason stays first; later ones are added, so none is hidden.
        self.message = Some(match self.message.take() {
            Some(prev) => format!("{prev}; {message}"),
            None => message,
        });
    }
}

/// Runs `check`, the verdicts on `out`: exit 0 when every file passes, 1 otherwise.
pub fn check(host: &HostSettings, args: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let (kernel, rules_enforced) = check_kernel(host, args.features.as_deref())?;
    let scratch = Scratch::new()?;
    let mut results = Vec::new();
    for (n, (file, rejected)) in files_of(&args.paths)?.into_iter().enumerate() {
        let output = scratch.0.join(format!("{n}.bin"));
        let job =
            CheckJob { include_dirs: &args.include_dirs, features: args.features.as_deref(), rules_enforced, output: &output };
        results.push(match rejected {
            Some(reason) => failed(&file, None, reason),
            None => check_file(&kernel, &file, &job),
        });
        let _ = std::fs::remove_file(&output);
    }
    mark_duplicates(&mut results);
    if args.strict_names {
        mark_misnamed(&mut results);
    }
    print(&results, args.json, out)?;
    Ok(if results.iter().all(|r| r.ok) { Verdict::Ok } else { Verdict::Failures })
}

/// The handle `check` compiles with, and whether a rule the kernel would not enforce is an error.
fn check_kernel(host: &HostSettings, features: Option<&Path>) -> anyhow::Result<(HostKernel, bool)> {
    let kernel = preflight::host_kernel(host, Needs::Compile)?;
    if let Some(f) = features {
        // The parser would say only "Failed to read features"; name the file ourselves.
        std::fs::metadata(f).with_context(|| format!("kernel feature set {}", f.display()))?;
    }
    // AppArmor 4 parsers can refuse what the kernel would not enforce (older ones drop it silently too,
    // but cannot say so); only when there is a kernel to compare with: the given feature set, or the
    // running kernel's. Without either (a build machine without AppArmor) there is nothing to enforce.
    let known_kernel = features.is_some() || host.apparmor_dir().join("features").is_dir();
    let rules_enforced = known_kernel && kernel.parser_version().is_ok_and(|v| crate::kernel::parser_major(&v) >= Some(4));
    Ok((kernel, rules_enforced))
}

/// The files to check: each named file, and every profile file under each named directory;
/// a file the scan rejects (too large, not a regular file) comes with its reason.
fn files_of(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, Option<String>)>> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push((path.clone(), None));
            continue;
        }
        let opts = ScanOptions { recursive: true, max_file_size: crate::defaults::MAX_FILE_SIZE };
        for entry in scan::scan(path, &opts)? {
            files.push(match entry {
                ScanEntry::File(f) => (f.shown, None),
                ScanEntry::Rejected { key, reason } => (path.join(key), Some(reason)),
            });
        }
    }
    Ok(files)
}

fn check_file(kernel: &HostKernel, file: &Path, job: &CheckJob<'_>) -> FileCheck {
    match kernel.check(file, job) {
        Ok(compiled) => {
            FileCheck { file: file.display().to_string(), ok: true, line: None, message: None, profiles: compiled.top_level() }
        }
        Err(e) => {
            let line = match &e {
                KernelError::Rejected { diagnostics } => diagnostics.iter().find_map(|d| d.line),
                _ => None,
            };
            failed(file, line, format!("{e:#}"))
        }
    }
}

fn failed(file: &Path, line: Option<u32>, message: String) -> FileCheck {
    // Parser diagnostics already read `file:line: message`; other errors get the file in front.
    let shown = file.display().to_string();
    let message = if message.contains(&shown) { message } else { format!("{shown}: {message}") };
    FileCheck { file: shown, ok: false, line, message: Some(message), profiles: Vec::new() }
}

/// Fails every file that defines a profile another checked file defines too: the agent would
/// load only one of them and refuse the other.
pub fn mark_duplicates(results: &mut [FileCheck]) {
    let mut owners: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in results.iter().enumerate() {
        for name in &r.profiles {
            owners.entry(name.clone()).or_default().push(i);
        }
    }
    for (name, files) in owners.into_iter().filter(|(_, f)| f.len() > 1) {
        for &i in &files {
            let others: Vec<&str> = files.iter().filter(|&&j| j != i).map(|&j| results[j].file.as_str()).collect();
            let message = format!("{}: profile {name:?} is also defined in {}", results[i].file, others.join(", "));
            results[i].fail(message);
        }
    }
}

/// `--strict-names`: fails a compiled file whose name is none of its profiles' names.
pub fn mark_misnamed(results: &mut [FileCheck]) {
    for r in results.iter_mut().filter(|r| !r.profiles.is_empty()) {
        let base = Path::new(&r.file).file_name().map(|b| b.to_string_lossy().into_owned()).unwrap_or_default();
        if !r.profiles.iter().any(|p| names_file(p, &base)) {
            let message = format!("{}: file name {base:?} is none of its profiles ({})", r.file, r.profiles.join(", "));
            r.fail(message);
        }
    }
}

/// Whether `file_name` is the name of `profile`: the name itself, or a path-named profile
/// spelled as distributions name its file (`/usr/bin/foo` in `usr.bin.foo`); a namespace
/// prefix (`:ns:` or `:ns://`) is not part of the file name.
pub fn names_file(profile: &str, file_name: &str) -> bool {
    let bare = match profile.strip_prefix(':').and_then(|rest| rest.split_once(':')) {
        Some((_ns, name)) => name.strip_prefix("//").unwrap_or(name),
        None => profile,
    };
    bare == file_name || (bare.starts_with('/') && bare[1..].replace('/', ".") == file_name)
}

fn print(results: &[FileCheck], json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, results)?;
        writeln!(out)?;
        return Ok(());
    }
    for r in results {
        match &r.message {
            None => writeln!(out, "ok      {} ({})", r.file, r.profiles.join(", "))?,
            Some(m) => writeln!(out, "error   {m}")?,
        }
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    writeln!(out, "{} checked, {failed} with errors", results.len())?;
    Ok(())
}

/// A private directory for the compiled policy, removed on drop. Created fresh (mkdir fails on
/// anything already there, a symlink too), so another user of /tmp cannot redirect the output.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(".apparmor-loader-check.{}.{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::{fake_parser, host, written};
    use crate::reconcile::testing::profile_files;

    /// A good file `web` and a file `bad` with a rule on line 2 that lacks its comma.
    fn good_and_bad(dir: &Path) -> (PathBuf, PathBuf) {
        let files = profile_files(dir, &[("web", "profile web {\n  /srv/** r,\n}\n"), ("bad", "profile bad {\n  /x r\n}\n")]);
        (files[0].clone(), files[1].clone())
    }

    #[test]
    fn text_has_a_line_per_file_and_the_count() {
        let tmp = tempfile::tempdir().unwrap();
        let (good, bad) = good_and_bad(tmp.path());
        let args = CheckArgs { paths: vec![good.clone(), bad.clone()], ..CheckArgs::default() };
        let mut out = Vec::new();
        assert_eq!(check(&host(tmp.path(), Some(fake_parser())), &args, &mut out).unwrap(), Verdict::Failures);
        let text = written(out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], format!("ok      {} (web)", good.display()));
        assert!(lines[1].starts_with(&format!("error   {}:2: ", bad.display())), "{text}");
        assert_eq!(lines[2], "2 checked, 1 with errors");

        let args = CheckArgs { paths: vec![good.clone()], ..CheckArgs::default() };
        let mut out = Vec::new();
        assert_eq!(check(&host(tmp.path(), Some(fake_parser())), &args, &mut out).unwrap(), Verdict::Ok);
        assert_eq!(written(out), format!("ok      {} (web)\n1 checked, 0 with errors\n", good.display()));
    }

    #[test]
    fn json_is_one_array_with_an_object_per_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (good, bad) = good_and_bad(tmp.path());
        let args = CheckArgs { paths: vec![good.clone(), bad.clone()], json: true, ..CheckArgs::default() };
        let mut out = Vec::new();
        assert_eq!(check(&host(tmp.path(), Some(fake_parser())), &args, &mut out).unwrap(), Verdict::Failures);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let files = v.as_array().expect("a JSON array");
        assert_eq!(files.len(), 2, "{v}");
        let ok = serde_json::json!({"file": good.display().to_string(), "ok": true, "line": null, "message": null, "profiles": ["web"]});
        assert_eq!(files[0], ok);
        assert_eq!(files[1]["file"], bad.display().to_string());
        assert_eq!(
            (&files[1]["ok"], &files[1]["line"], &files[1]["profiles"]),
            (&false.into(), &2.into(), &serde_json::json!([]))
        );
        let message = files[1]["message"].as_str().expect("a message");
        assert!(message.starts_with(&format!("{}:2: ", bad.display())), "{message}");
        assert!(out.ends_with(b"]\n"), "one document and a newline");
    }

    #[test]
    fn a_directory_with_one_profile_in_two_files_fails_both() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("profiles");
        profile_files(&dir, &[("web", "profile web {\n}\n"), ("web-copy", "profile web {\n  /srv/** r,\n}\n")]);
        let args = CheckArgs { paths: vec![dir.clone()], ..CheckArgs::default() };
        let mut out = Vec::new();
        assert_eq!(check(&host(tmp.path(), Some(fake_parser())), &args, &mut out).unwrap(), Verdict::Failures);
        let (web, copy) = (dir.join("web").display().to_string(), dir.join("web-copy").display().to_string());
        assert_eq!(
            written(out),
            format!(
                "error   {web}: profile \"web\" is also defined in {copy}\n\
                 error   {copy}: profile \"web\" is also defined in {web}\n\
                 2 checked, 2 with errors\n"
            )
        );
    }

    fn ok(file: &str, profiles: &[&str]) -> FileCheck {
        FileCheck {
            file: file.into(),
            ok: true,
            line: None,
            message: None,
            profiles: profiles.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_name_in_two_files_fails_both_and_names_the_other() {
        let mut r = vec![ok("a/x", &["web", "db"]), ok("a/y", &["web"]), ok("a/z", &["other"])];
        mark_duplicates(&mut r);
        assert!(!r[0].ok && !r[1].ok && r[2].ok);
        assert_eq!(r[0].message.as_deref(), Some("a/x: profile \"web\" is also defined in a/y"));
        assert_eq!(r[1].message.as_deref(), Some("a/y: profile \"web\" is also defined in a/x"));
    }

    #[test]
    fn a_failed_file_keeps_its_first_reason() {
        let mut r = vec![ok("p/web", &["web"]), ok("p/web2", &["web"])];
        r[1].fail("p/web2: earlier".into());
        mark_duplicates(&mut r);
        assert_eq!(r[1].message.as_deref(), Some("p/web2: earlier; p/web2: profile \"web\" is also defined in p/web"));
    }

    #[test]
    fn file_names_match_profile_names() {
        for (profile, file, same) in [
            ("payment-api", "payment-api", true),
            ("payment-api", "payment-api.profile", false),
            ("/usr/bin/foo", "usr.bin.foo", true),
            ("/usr/bin/foo", "foo", false),
            (":ns:web", "web", true),
            (":ns://web", "web", true),
            (":ns:web", "ns", false),
            ("a.b", "a.b", true),
        ] {
            assert_eq!(names_file(profile, file), same, "{profile} in {file}");
        }
    }

    #[test]
    fn strict_names_fail_only_compiled_misnamed_files() {
        let mut r = vec![ok("d/web", &["web"]), ok("d/sites", &["api", "www"]), ok("d/usr.sbin.x", &["/usr/sbin/x"])];
        r.push(FileCheck { ok: false, message: Some("d/bad: parse error".into()), ..ok("d/bad", &[]) });
        mark_misnamed(&mut r);
        assert!(r[0].ok && r[2].ok);
        assert_eq!(r[1].message.as_deref(), Some("d/sites: file name \"sites\" is none of its profiles (api, www)"));
        assert_eq!(r[3].message.as_deref(), Some("d/bad: parse error"));
    }
}
