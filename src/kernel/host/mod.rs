//! The real kernel: securityfs plus the `apparmor_parser` binary.
//!
//! Compiling always goes through the parser (`-Q -T -W -L`: binary policy per file, nothing
//! loaded). Loading and removing write the kernel's own interface files (`.load`,
//! `.replace`, `.remove`) when the AppArmor directory is the kernel's securityfs; anywhere
//! else (a test's fake securityfs) the parser does the write (`-B`, `-R`), since only the
//! kernel can apply a write to those files.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::process::{self, InFlight, Invocation, Output};
use super::{CompileInput, CompileJob, Compiled, FallbackObserver, Kernel, KernelError, LoadKind, ParserObserver, ParserOp};
use crate::kernel::listing::{self, KernelProfile};
use crate::kernel::parser_output::{self, Diagnostic};

/// How many files one parser process gets at most, far below the argv limit.
const BATCH: usize = 512;
/// A compile batch gets one `--parser-timeout` per file, up to this many: the agent's
/// liveness counts a sync stuck after 20 timeouts.
const MAX_BATCH_TIMEOUTS: usize = 20;
/// Deepest child nesting read from the kernel's policy tree (hats of hats are rare; the
/// kernel itself bounds the depth).
const MAX_CHILD_DEPTH: usize = 8;

mod check;
mod compile;
pub use check::CheckJob;

/// The real kernel.
pub struct HostKernel {
    apparmor_dir: PathBuf,
    parser: PathBuf,
    timeout: Duration,
    scratch: PathBuf,
    jobs: u32,
    /// Compile with [`RULES_ENFORCED`].
    rules_enforced: bool,
    observer: Option<ParserObserver>,
    fallback: Option<FallbackObserver>,
    in_flight: InFlight,
    /// `apparmor_dir` is the kernel's securityfs: policy is written to it directly.
    direct: bool,
    /// Parser version, parser configuration and kernel features, as one text.
    toolchain: String,
}

/// The AppArmor 4 parser flag that names each rule the kernel would not enforce; the files
/// [`parser_output::unenforced`] finds in its warnings fail. Not `--Werror=rule-not-enforced`:
/// that fails the distributions' dbus rules too, which no upstream kernel enforces.
const RULES_ENFORCED: &str = "--warn=rule-not-enforced";

/// The major version in `apparmor_parser -V`'s first line ("AppArmor parser version 4.1.0");
/// 4 and later understand [`RULES_ENFORCED`].
pub fn parser_major(version: &str) -> Option<u32> {
    version.rsplit(' ').next()?.split('.').next()?.parse().ok()
}

impl HostKernel {
    /// A kernel whose AppArmor directory is `apparmor_dir` (normally
    /// `/sys/kernel/security/apparmor`), driven by `parser`. Staged copies and compiled
    /// policy go to `scratch` (the state directory: root-only, on the node).
    pub fn new(apparmor_dir: PathBuf, parser: PathBuf, timeout: Duration, scratch: PathBuf) -> HostKernel {
        let direct =
            nix::sys::statfs::statfs(&apparmor_dir).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::SECURITYFS_MAGIC);
        HostKernel {
            apparmor_dir,
            parser,
            timeout,
            scratch,
            jobs: crate::defaults::PARSER_JOBS,
            rules_enforced: false,
            observer: None,
            fallback: None,
            in_flight: InFlight::default(),
            direct,
            toolchain: String::new(),
        }
    }

    /// Records what shapes compiled policy besides the files: the parser's version (`-V`),
    /// its configuration file (e.g. `policy-features=`) and the kernel's feature set.
    pub fn with_parser_version(mut self, version: String, parser_conf: &Path) -> HostKernel {
        let conf = fs::read(parser_conf).unwrap_or_default();
        let features = super::features::digest(&self.apparmor_dir.join("features"));
        self.toolchain = format!(
            "{version}\nparser.conf {}\nfeatures {features}",
            crate::scan::hex(&<sha2::Sha256 as sha2::Digest>::digest(&conf))
        );
        self
    }

    /// What [`HostKernel::with_parser_version`] recorded: part of every file's identity.
    pub fn toolchain(&self) -> String {
        self.toolchain.clone()
    }

    /// Compile jobs per parser process.
    pub fn with_jobs(mut self, jobs: u32) -> HostKernel {
        self.jobs = jobs.max(1);
        self
    }

    /// Makes a rule the kernel cannot enforce a compile error of its file (AppArmor 4 parsers:
    /// `--Werror=rule-not-enforced`), instead of a profile loaded without it: `userns,` on Linux
    /// 6.1 fails with "userns rules not enforced" rather than leaving user namespaces open.
    pub fn with_rules_enforced(mut self, on: bool) -> HostKernel {
        self.rules_enforced = on;
        self
    }

    /// Reports every batch-to-single-file fallback to `observer` (metrics).
    pub fn with_fallback_observer(mut self, observer: FallbackObserver) -> HostKernel {
        self.fallback = Some(observer);
        self
    }

    /// Reports every parser run to `observer` (metrics).
    pub fn with_observer(mut self, observer: ParserObserver) -> HostKernel {
        self.observer = Some(observer);
        self
    }

    /// A handle on the parser process in flight.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// The AppArmor directory in securityfs.
    pub fn apparmor_dir(&self) -> &Path {
        &self.apparmor_dir
    }

    /// Runs `parser -V` and returns its first line.
    pub fn parser_version(&self) -> Result<String, KernelError> {
        let out = self.run(ParserOp::Check, vec!["-V".into()], None, "printing its version")?;
        if !out.status.success() {
            return Err(rejected(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_string())
    }

    fn run(&self, op: ParserOp, args: Vec<OsString>, cwd: Option<&Path>, what: &str) -> Result<Output, KernelError> {
        self.run_for(op, args, cwd, what, self.timeout)
    }

    fn run_for(
        &self,
        op: ParserOp,
        args: Vec<OsString>,
        cwd: Option<&Path>,
        what: &str,
        timeout: Duration,
    ) -> Result<Output, KernelError> {
        let start = Instant::now();
        let inv = Invocation { parser: &self.parser, args, cwd, timeout, what: what.to_string() };
        let result = process::run(&inv, &self.in_flight);
        if let Some(observe) = &self.observer {
            observe(op, start.elapsed(), matches!(&result, Ok(o) if o.status.success()));
        }
        tracing::debug!(op = op.as_str(), parser = %self.parser.display(), elapsed_ms = start.elapsed().as_millis() as u64, what, "parser call");
        result
    }

    fn load_with_parser(&self, file: &Path, compiled: &Compiled, kind: LoadKind) -> Result<(), KernelError> {
        let path = scratch_file(&self.scratch, "load")?;
        write_new(&path, &compiled.blob)?;
        let action = if kind == LoadKind::New { "-a" } else { "-r" };
        let args =
            vec![action.into(), "-B".into(), "--subdomainfs".into(), self.apparmor_dir.clone().into(), path.clone().into()];
        let out = self.run(ParserOp::Load, args, None, &file.display().to_string());
        let _ = fs::remove_file(&path);
        let out = out?;
        if out.status.success() {
            return Ok(());
        }
        let text = out.stderr_text();
        if text.contains("already exists") {
            return Err(KernelError::Exists { file: file.to_path_buf() });
        }
        Err(KernelError::LoadRefused {
            file: file.to_path_buf(),
            what: text.trim().replace(&*path.to_string_lossy(), "<policy>"),
        })
    }

    /// One write(2) of the whole buffer: the kernel takes a policy write as one unit.
    fn write_interface(&self, name: &str, data: &[u8]) -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).open(self.apparmor_dir.join(name))?;
        let n = f.write(data)?;
        if n != data.len() {
            return Err(std::io::Error::other(format!("the kernel took {n} of {} bytes", data.len())));
        }
        Ok(())
    }
}

impl Kernel for HostKernel {
    fn listing(&self) -> Result<Vec<KernelProfile>, KernelError> {
        let path = self.apparmor_dir.join("profiles");
        let text = fs::read_to_string(&path).map_err(|source| KernelError::Read { path: path.clone(), source })?;
        listing::parse(&text).map_err(|source| KernelError::Listing { path, source })
    }

    fn hashes(&self) -> Result<BTreeMap<String, String>, KernelError> {
        let root = self.apparmor_dir.join("policy").join("profiles");
        let mut out = BTreeMap::new();
        // A child's directory sits in its parent's `profiles/`; its `name` file holds the last
        // part of its name only.
        let mut stack = vec![(root, String::new(), 0)];
        while let Some((dir, prefix, depth)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                // Kernels built without policy hashing have no such directory (then loads are
                // checked against the listing alone), and a childless profile has no `profiles/`.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(KernelError::Read { path: dir, source }),
            };
            for entry in entries.flatten() {
                let read = |f: &str| fs::read_to_string(entry.path().join(f));
                // A profile replaced while we read can vanish: skip it.
                // Linux 6.8 switched the policy hash to SHA-256 and named the file after it.
                let (Ok(name), Ok(sha1)) = (read("name"), read("sha1").or_else(|_| read("sha256"))) else { continue };
                let name = name.trim_end_matches('\n');
                let full = if prefix.is_empty() { name.to_string() } else { format!("{prefix}//{name}") };
                if depth < MAX_CHILD_DEPTH {
                    stack.push((entry.path().join("profiles"), full.clone(), depth + 1));
                }
                out.insert(full, sha1.trim().to_string());
            }
        }
        Ok(out)
    }

    fn compile(&self, inputs: &[CompileInput<'_>], job: &CompileJob) -> Result<Vec<Result<Compiled, KernelError>>, KernelError> {
        let stage = Stage::create(&self.scratch, inputs)?;
        let mut results: Vec<Option<Result<Compiled, KernelError>>> = inputs.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..inputs.len()).collect();
        let mut singles = false;
        let mut round = 0;
        while !pending.is_empty() {
            let mut ambiguous = Vec::new();
            for chunk in pending.chunks(if singles { 1 } else { BATCH }) {
                // Stopping: start no further parser (the rest is marked stopped below).
                if self.in_flight.compiles_refused() {
                    ambiguous.extend(chunk.iter().filter(|&&i| results[i].is_none()));
                    continue;
                }
                round += 1;
                let (outcomes, failure) = self.compile_round(&stage, round, chunk, inputs, job);
                let mut failure = failure;
                for (&i, outcome) in chunk.iter().zip(outcomes) {
                    match outcome {
                        Some(r) => results[i] = Some(r),
                        // Alone in its process and still nothing said: the process's own
                        // failure (timeout, crash, a message naming no file) is its error.
                        None if singles => results[i] = Some(Err(failure.take().unwrap_or_else(|| no_output(inputs[i])))),
                        None => ambiguous.push(i),
                    }
                }
            }
            if !singles && ambiguous.len() == pending.len() && !ambiguous.is_empty() && !self.in_flight.compiles_refused() {
                tracing::warn!(
                    files = ambiguous.len(),
                    "the parser stopped before it said anything about these files; compiling them one at a time"
                );
                if let Some(observe) = &self.fallback {
                    observe(ambiguous.len());
                }
                singles = true;
            }
            pending = ambiguous;
            if self.in_flight.compiles_refused() {
                for i in pending.drain(..) {
                    results[i] = Some(Err(KernelError::Stopped));
                }
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Err(KernelError::Stopped))).collect())
    }

    fn load(&self, file: &Path, compiled: &Compiled, kind: LoadKind) -> Result<(), KernelError> {
        if !self.direct {
            return self.load_with_parser(file, compiled, kind);
        }
        let interface = if kind == LoadKind::New { ".load" } else { ".replace" };
        self.write_interface(interface, &compiled.blob).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KernelError::Exists { file: file.to_path_buf() }
            } else {
                KernelError::LoadRefused { file: file.to_path_buf(), what: e.to_string() }
            }
        })
    }

    fn unload(&self, name: &str) -> Result<(), KernelError> {
        if name.contains(['"', '\n', '\0']) || name.starts_with(':') {
            return Err(KernelError::BadName(name.to_string()));
        }
        if self.direct {
            return match self.write_interface(".remove", name.as_bytes()) {
                Ok(()) => Ok(()),
                // Already gone: what the caller wanted.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(KernelError::LoadRefused { file: PathBuf::from(name), what: format!("removing it: {e}") }),
            };
        }
        // The parser's `-R` removes the top-level profiles a file defines; it has no way to
        // name a child alone.
        if name.contains("//") {
            return Err(KernelError::LoadRefused {
                file: PathBuf::from(name),
                what: format!(
                    "removing a child profile needs the kernel's securityfs, and {} is not it",
                    self.apparmor_dir.display()
                ),
            });
        }
        // `-R` takes a profile file, not a name: a stub that defines only the name.
        let stub = scratch_file(&self.scratch, "remove")?;
        write_new(&stub, format!("profile \"{name}\" {{\n}}\n").as_bytes())?;
        let args = vec!["-R".into(), "--subdomainfs".into(), self.apparmor_dir.clone().into(), stub.clone().into()];
        let out = self.run(ParserOp::Remove, args, None, &format!("removing profile {name:?}"));
        let _ = fs::remove_file(&stub);
        let out = out?;
        if out.status.success() { Ok(()) } else { Err(rejected(&out)) }
    }
}

/// A private directory holding exact copies of the files being compiled, named by index so
/// that each compiled policy file maps back to its input.
struct Stage {
    dir: PathBuf,
}

impl Stage {
    fn create(scratch: &Path, inputs: &[CompileInput<'_>]) -> Result<Stage, KernelError> {
        let dir = scratch_file(scratch, "stage")?;
        let err = |source| KernelError::Scratch { path: dir.clone(), source };
        fs::DirBuilder::new().mode(0o700).recursive(true).create(dir.join("files")).map_err(err)?;
        let stage = Stage { dir };
        for (i, input) in inputs.iter().enumerate() {
            write_new(&stage.file(i), input.bytes)?;
        }
        Ok(stage)
    }

    fn name(&self, i: usize) -> String {
        format!("{i:05}")
    }

    fn file(&self, i: usize) -> PathBuf {
        self.dir.join("files").join(self.name(i))
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The parser writes `CACHE/<features-hash>.0/<basename>`: basename → path.
fn cached_blobs(cache: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for sub in fs::read_dir(cache).into_iter().flatten().flatten() {
        for f in fs::read_dir(sub.path()).into_iter().flatten().flatten() {
            if let Some(name) = f.file_name().to_str().filter(|n| !n.starts_with('.')) {
                out.insert(name.to_string(), f.path());
            }
        }
    }
    out
}

fn scratch_file(scratch: &Path, what: &str) -> Result<PathBuf, KernelError> {
    static N: AtomicU64 = AtomicU64::new(0);
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(scratch)
        .map_err(|source| KernelError::Scratch { path: scratch.to_path_buf(), source })?;
    Ok(scratch.join(format!(".{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))))
}

fn write_new(path: &Path, data: &[u8]) -> Result<(), KernelError> {
    let err = |source| KernelError::Scratch { path: path.to_path_buf(), source };
    let mut f = fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(err)?;
    f.write_all(data).map_err(err)
}

fn no_output(input: CompileInput<'_>) -> KernelError {
    KernelError::Rejected {
        diagnostics: vec![Diagnostic {
            file: Some(input.file.shown.display().to_string()),
            line: None,
            message: "the parser produced no policy and no error for this file".into(),
        }],
    }
}

fn rejected(out: &Output) -> KernelError {
    let mut diagnostics = parser_output::diagnostics(&out.stderr_text());
    if diagnostics.is_empty() {
        diagnostics.push(Diagnostic {
            file: None,
            line: None,
            message: format!("the parser failed ({}) without a message", out.status),
        });
    }
    KernelError::Rejected { diagnostics }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parser_major_reads_the_version_line() {
        assert_eq!(super::parser_major("AppArmor parser version 4.1.0"), Some(4));
        assert_eq!(super::parser_major("AppArmor parser version 3.0.8"), Some(3));
        assert_eq!(super::parser_major("fake parser"), None);
    }
}
