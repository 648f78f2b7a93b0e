//! `inspect`: what the kernel will hold for some profile files, read from the compiled policy
//! itself (`kernel::blob`): every profile's name, mode and the sha1 that
//! `policy/profiles/*/sha1` will show; with `--kernel`, whether the kernel runs exactly that now.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::Serialize;

use crate::cli::Verdict;
use crate::config::HostSettings;
use crate::kernel::blob::{self, BlobProfile};
use crate::preflight;

/// What `inspect` was asked.
#[derive(Debug, Clone)]
pub struct InspectArgs {
    /// Profile files, or binary policy with `binary`.
    pub files: Vec<PathBuf>,
    /// The files are compiled policy already.
    pub binary: bool,
    /// Show the policy as a complain-mode load (`apparmor_parser -C`) would send it.
    pub complain: bool,
    /// Compare with the kernel's `policy/profiles/*/{sha1,mode}`.
    pub kernel: bool,
    /// JSON instead of text.
    pub json: bool,
}

/// How a profile of the files compares with the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelMatch {
    /// The kernel has this profile with this sha1 and mode.
    Loaded,
    /// The kernel has a profile of this name, with another sha1 or mode.
    Different,
    /// The kernel has no profile of this name.
    Absent,
}

impl KernelMatch {
    fn as_str(self) -> &'static str {
        match self {
            KernelMatch::Loaded => "loaded",
            KernelMatch::Different => "different",
            KernelMatch::Absent => "absent",
        }
    }
}

#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    error: Option<String>,
    profiles: Vec<ProfileReport>,
}

#[derive(Debug, Serialize)]
struct ProfileReport {
    name: String,
    namespace: Option<String>,
    mode: String,
    sha1: String,
    /// The hash kernels from 6.8 on show (`policy/profiles/*/sha256`).
    sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<KernelMatch>,
}

/// Runs `inspect`, the report on `out`. Fails (exit 1) when a file does not compile or parse, or
/// with `--kernel` when a profile is not loaded exactly as compiled.
pub fn inspect(host: &HostSettings, args: &InspectArgs, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let blobs = if args.binary {
        args.files
            .iter()
            .map(|f| fs::read(f).with_context(|| format!("cannot read {}", f.display())).map_err(|e| format!("{e:#}")))
            .collect()
    } else {
        compile(host, &args.files)?
    };
    let apparmor = if args.kernel { Some(preflight::securityfs(host)?) } else { None };
    let mut kernel_cache: BTreeMap<Option<String>, BTreeMap<String, (String, String)>> = BTreeMap::new();
    let mut reports = Vec::new();
    for (file, blob) in args.files.iter().zip(blobs) {
        let profiles = blob.and_then(|b| read_blob(&b, args.complain));
        let mut report = FileReport { file: file.display().to_string(), error: None, profiles: Vec::new() };
        match profiles {
            Ok(profiles) => {
                for p in profiles {
                    let kernel = match &apparmor {
                        Some(dir) => {
                            if !kernel_cache.contains_key(&p.namespace) {
                                kernel_cache.insert(p.namespace.clone(), kernel_profiles(dir, p.namespace.as_deref())?);
                            }
                            kernel_cache.get(&p.namespace).map(|loaded| compare(&p, loaded))
                        }
                        None => None,
                    };
                    report.profiles.push(ProfileReport {
                        name: p.name,
                        namespace: p.namespace,
                        mode: p.mode.to_string(),
                        sha1: p.sha1,
                        sha256: p.sha256,
                        kernel,
                    });
                }
            }
            Err(e) => report.error = Some(e),
        }
        reports.push(report);
    }
    print(&reports, args.json, out)?;
    let bad = reports
        .iter()
        .any(|r| r.error.is_some() || r.profiles.iter().any(|p| p.kernel.is_some_and(|k| k != KernelMatch::Loaded)));
    Ok(if bad { Verdict::Failures } else { Verdict::Ok })
}

fn read_blob(bytes: &[u8], complain: bool) -> Result<Vec<BlobProfile>, String> {
    let forced;
    let bytes = if complain {
        forced = blob::force_complain(bytes).map_err(|e| e.to_string())?;
        &forced
    } else {
        bytes
    };
    let profiles = blob::parse(bytes).map_err(|e| e.to_string())?;
    blob::check_self_contained(&profiles).map_err(|e| e.to_string())?;
    Ok(profiles)
}

fn compare(p: &BlobProfile, loaded: &BTreeMap<String, (String, String)>) -> KernelMatch {
    match loaded.get(&p.name) {
        Some((mode, hash)) if *mode == p.mode.as_str() && p.is_kernel_hash(hash) => KernelMatch::Loaded,
        Some(_) => KernelMatch::Different,
        None => KernelMatch::Absent,
    }
}

/// Compiles the files with one `apparmor_parser -Q -T -W -L` call into a scratch cache and reads
/// each file's compiled policy back; one result per file.
fn compile(host: &HostSettings, files: &[PathBuf]) -> anyhow::Result<Vec<Result<Vec<u8>, String>>> {
    let mut seen = std::collections::BTreeSet::new();
    for f in files {
        let base = f.file_name().with_context(|| format!("{} is not a file", f.display()))?;
        anyhow::ensure!(seen.insert(base), "two files named {:?}: the parser's cache names compiled files by base name", base);
    }
    let parser = preflight::parser(host)?;
    let scratch = std::env::temp_dir().join(format!(".apparmor-loader-inspect.{}", std::process::id()));
    let _cleanup = RemoveOnDrop(scratch.clone());
    let out = Command::new(&parser)
        .args(["-Q", "-T", "-W", "-L"])
        .arg(&scratch)
        .arg(format!("-j{}", host.parser_jobs))
        .arg("--subdomainfs")
        .arg(host.apparmor_dir())
        .args(files)
        .output()
        .with_context(|| format!("cannot run {}", parser.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The parser writes `<cache>/<features hash>.0/<basename>`.
    let sub = fs::read_dir(&scratch).ok().and_then(|rd| rd.flatten().map(|e| e.path()).find(|p| p.is_dir()));
    Ok(files
        .iter()
        .map(|f| {
            let compiled = sub.as_ref().zip(f.file_name()).and_then(|(dir, base)| fs::read(dir.join(base)).ok());
            compiled.ok_or_else(|| {
                let shown = f.to_string_lossy();
                let mine: Vec<&str> = stderr.lines().filter(|l| l.contains(&*shown)).collect();
                if mine.is_empty() { "the parser wrote no compiled policy for it".to_string() } else { mine.join("; ") }
            })
        })
        .collect())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deepest child nesting read from the kernel's policy tree.
const MAX_DEPTH: usize = 8;

/// Full name → (mode, kernel hash) of every profile in a namespace's `policy/…/profiles` tree; a
/// child's directory sits in its parent's `profiles/` and its `name` file holds the last part.
fn kernel_profiles(apparmor: &Path, namespace: Option<&str>) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let root = match namespace {
        Some(ns) => apparmor.join("policy/namespaces").join(ns).join("profiles"),
        None => apparmor.join("policy/profiles"),
    };
    let mut out = BTreeMap::new();
    let mut stack = vec![(root, String::new(), 0)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for entry in entries.flatten() {
            let read = |f: &str| fs::read_to_string(entry.path().join(f)).map(|s| s.trim_end_matches('\n').to_string());
            // A profile replaced while we read can vanish: skip it.
            // `sha256` instead of `sha1` from Linux 6.8 on.
            let (Ok(name), Ok(mode), Ok(sha1)) = (read("name"), read("mode"), read("sha1").or_else(|_| read("sha256"))) else {
                continue;
            };
            let full = if prefix.is_empty() { name } else { format!("{prefix}//{name}") };
            if depth < MAX_DEPTH {
                stack.push((entry.path().join("profiles"), full.clone(), depth + 1));
            }
            out.insert(full, (mode, sha1));
        }
    }
    Ok(out)
}

fn print(reports: &[FileReport], json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, reports)?;
        writeln!(out)?;
        return Ok(());
    }
    for r in reports {
        match &r.error {
            Some(e) => writeln!(out, "{}: error: {e}", r.file)?,
            None => writeln!(out, "{}:", r.file)?,
        }
        for p in &r.profiles {
            let name = match &p.namespace {
                Some(ns) => format!(":{ns}://{}", p.name),
                None => p.name.clone(),
            };
            let kernel = p.kernel.map(|k| format!("  {}", k.as_str())).unwrap_or_default();
            writeln!(out, "  {:<8}  {}  {name}{kernel}", p.mode, p.sha1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::{host, written};
    use crate::kernel::fake;

    /// Compiled policy for `names` (as the fake kernel compiles it), written to `dir/file`, and its
    /// profiles' kernel hashes as the blob reader reads them.
    fn blob(dir: &Path, file: &str, names: &[&str]) -> (PathBuf, Vec<String>) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let bytes = fake::policy(&names, &"c".repeat(64));
        let path = dir.join(file);
        fs::write(&path, &bytes).unwrap();
        (path, blob::parse(&bytes).unwrap().into_iter().map(|p| p.sha1).collect())
    }

    /// A top-level profile in the fake securityfs's `policy/profiles` tree.
    fn in_kernel(host: &HostSettings, n: u32, name: &str, mode: &str, sha1: &str) {
        let d = host.apparmor_dir().join(format!("policy/profiles/{n}"));
        fs::create_dir_all(&d).unwrap();
        for (f, v) in [("name", name), ("mode", mode), ("sha1", sha1)] {
            fs::write(d.join(f), format!("{v}\n")).unwrap();
        }
    }

    fn args(files: Vec<PathBuf>) -> InspectArgs {
        InspectArgs { files, binary: true, complain: false, kernel: false, json: false }
    }

    #[test]
    fn text_names_each_profile_with_mode_and_sha1_and_each_unreadable_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (two, sha1s) = blob(tmp.path(), "two.bin", &["api", "web"]);
        let junk = tmp.path().join("junk.bin");
        fs::write(&junk, b"not policy").unwrap();
        let mut out = Vec::new();
        let verdict = inspect(&host(tmp.path(), None), &args(vec![two.clone(), junk.clone()]), &mut out).unwrap();
        assert_eq!(verdict, Verdict::Failures, "a file that does not parse fails");
        let text = written(out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], format!("{}:", two.display()));
        assert_eq!(lines[1], format!("  enforce   {}  api", sha1s[0]));
        assert_eq!(lines[2], format!("  enforce   {}  web", sha1s[1]));
        assert!(
            lines[3].starts_with(&format!("{}: error: ", junk.display()))
                && lines[3].len() > junk.display().to_string().len() + 9
        );
        assert_ne!(sha1s[0], sha1s[1]);

        let mut out = Vec::new();
        let mut complain = args(vec![two.clone()]);
        complain.complain = true;
        assert_eq!(inspect(&host(tmp.path(), None), &complain, &mut out).unwrap(), Verdict::Ok);
        let text = written(out);
        assert!(text.lines().skip(1).all(|l| l.starts_with("  complain  ")), "{text}");
    }

    #[test]
    fn kernel_says_loaded_different_or_absent_and_fails_unless_all_are_loaded() {
        let tmp = tempfile::tempdir().unwrap();
        let host = host(tmp.path(), None);
        let (two, sha1s) = blob(tmp.path(), "two.bin", &["api", "web"]);
        in_kernel(&host, 1, "web", "enforce", &sha1s[1]);
        let mut a = args(vec![two.clone()]);
        a.kernel = true;
        let mut out = Vec::new();
        assert_eq!(inspect(&host, &a, &mut out).unwrap(), Verdict::Failures, "api is not loaded");
        let expected =
            format!("{}:\n  enforce   {}  api  absent\n  enforce   {}  web  loaded\n", two.display(), sha1s[0], sha1s[1]);
        assert_eq!(written(out), expected);

        in_kernel(&host, 2, "api", "complain", &sha1s[0]);
        a.json = true;
        let mut out = Vec::new();
        assert_eq!(inspect(&host, &a, &mut out).unwrap(), Verdict::Failures, "api runs in another mode");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["file"], two.display().to_string());
        assert!(v[0]["error"].is_null(), "{v}");
        let profiles = v[0]["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 2);
        assert_eq!(
            (&profiles[0]["name"], &profiles[0]["mode"], &profiles[0]["kernel"]),
            (&"api".into(), &"enforce".into(), &"different".into())
        );
        assert_eq!(
            (&profiles[1]["name"], &profiles[1]["sha1"], &profiles[1]["kernel"]),
            (&"web".into(), &sha1s[1].clone().into(), &"loaded".into())
        );
        assert!(profiles[0]["namespace"].is_null() && profiles[0]["sha256"].as_str().is_some_and(|s| s.len() == 64), "{v}");

        in_kernel(&host, 2, "api", "enforce", &sha1s[0]);
        let mut out = Vec::new();
        assert_eq!(inspect(&host, &a, &mut out).unwrap(), Verdict::Ok, "both loaded exactly as compiled");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["profiles"][0]["kernel"], "loaded");
    }

    #[test]
    fn without_kernel_json_has_no_kernel_field() {
        let tmp = tempfile::tempdir().unwrap();
        let (one, sha1s) = blob(tmp.path(), "one.bin", &["web"]);
        let mut a = args(vec![one]);
        a.json = true;
        let mut out = Vec::new();
        assert_eq!(inspect(&host(tmp.path(), None), &a, &mut out).unwrap(), Verdict::Ok);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let p = v[0]["profiles"][0].as_object().unwrap();
        let keys: std::collections::BTreeSet<&str> = p.keys().map(String::as_str).collect();
        assert_eq!(keys, ["mode", "name", "namespace", "sha1", "sha256"].into_iter().collect());
        assert_eq!(p["sha1"], sha1s[0].as_str());
    }
}
