//! The only module that talks to the kernel: it reads securityfs and runs
//! `apparmor_parser` (argv, never a shell, with a timeout). Everything else sees the
//! [`Kernel`] trait, so the reconciler can be tested with a fake that records calls.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::listing::{self, KernelProfile, ListingError};
use crate::parser_output::{self, Diagnostic};
use crate::plan::DesiredMode;
use crate::scan::SourceFile;

/// Reader of compiled binary policy: the names, modes and hashes the kernel will see.
pub mod blob;
#[cfg(test)]
pub mod fake;

/// How many files one parser process gets at most, far below the argv limit.
const BATCH: usize = 512;

/// A kernel or parser operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// securityfs could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel listing did not parse.
    #[error("unexpected content in {}", path.display())]
    Listing {
        /// The listing file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: ListingError,
    },
    /// The parser could not be started.
    #[error("cannot run the AppArmor parser {}", parser.display())]
    Spawn {
        /// The parser binary.
        parser: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The parser ran longer than the timeout and was killed.
    #[error("{} timed out after {} ({what}) and was killed; raise --parser-timeout if the profile is just large", parser.display(), humantime::format_duration(*timeout))]
    Timeout {
        /// The parser binary.
        parser: PathBuf,
        /// The limit.
        timeout: Duration,
        /// What it was doing, naming the file(s).
        what: String,
    },
    /// The parser rejected a file; the diagnostics name it (and the line).
    #[error("{}", parser_output::summary(diagnostics))]
    Rejected {
        /// The parser's diagnostics, paths rewritten to the ones the user knows.
        diagnostics: Vec<Diagnostic>,
    },
    /// A profile name cannot be expressed safely in a removal request.
    #[error("profile name {0:?} contains a quote, newline or NUL and cannot be removed by name")]
    BadName(String),
    /// The scratch directory for helper files could not be written.
    #[error("cannot write the helper file {}", path.display())]
    Scratch {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What the reconciler needs from the kernel.
pub trait Kernel: Send + Sync {
    /// All profiles in the kernel (top-level and children).
    fn listing(&self) -> Result<Vec<KernelProfile>, KernelError>;
    /// The kernel's own hash of each loaded top-level profile; empty where not exposed.
    fn hashes(&self) -> Result<BTreeMap<String, String>, KernelError>;
    /// The top-level profile names each file defines; one result per file, in order.
    fn names(&self, files: &[&SourceFile]) -> Vec<Result<Vec<String>, KernelError>>;
    /// Loads or replaces the files in `mode`; one result per file, in order. A file that
    /// fails leaves whatever the kernel had for its profiles in place.
    fn load(&self, files: &[&SourceFile], mode: DesiredMode) -> Vec<Result<(), KernelError>>;
    /// Removes one top-level profile (and its children) by name.
    fn unload(&self, name: &str) -> Result<(), KernelError>;
}

/// The kind of parser call, for the duration histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParserOp {
    /// `-N`.
    Names,
    /// `-r`.
    Load,
    /// `-R`.
    Remove,
    /// `-Q`.
    Check,
}

impl ParserOp {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ParserOp::Names => "names",
            ParserOp::Load => "load",
            ParserOp::Remove => "remove",
            ParserOp::Check => "check",
        }
    }
}

/// Called after every parser process with its kind, duration and success.
pub type ParserObserver = Arc<dyn Fn(ParserOp, Duration, bool) + Send + Sync>;

/// The real kernel: securityfs plus the `apparmor_parser` binary.
pub struct HostKernel {
    apparmor_dir: PathBuf,
    parser: PathBuf,
    timeout: Duration,
    scratch: PathBuf,
    observer: Option<ParserObserver>,
    in_flight: InFlight,
    jobs: u32,
}

/// The parser process running right now, so shutdown can end a hung one without waiting
/// for the timeout.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicI32>);

impl InFlight {
    /// Kills the running parser's process group, if one is running.
    pub fn kill(&self) {
        let pgid = self.0.load(Ordering::Acquire);
        if pgid > 0 {
            tracing::warn!(pgid, "killing the parser still running at shutdown");
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl HostKernel {
    /// A kernel whose AppArmor directory is `apparmor_dir` (normally
    /// `/sys/kernel/security/apparmor`), driven by `parser`. Helper files (the `-N` file
    /// boundary, removal stubs) go to `scratch`.
    pub fn new(apparmor_dir: PathBuf, parser: PathBuf, timeout: Duration, scratch: PathBuf) -> HostKernel {
        HostKernel {
            apparmor_dir,
            parser,
            timeout,
            scratch,
            observer: None,
            in_flight: InFlight::default(),
            jobs: crate::defaults::PARSER_JOBS,
        }
    }

    /// Compile jobs per `-r` process.
    pub fn with_jobs(mut self, jobs: u32) -> HostKernel {
        self.jobs = jobs.max(1);
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

    /// The parser binary.
    pub fn parser(&self) -> &Path {
        &self.parser
    }

    /// Runs `parser -V` and returns its first line.
    pub fn parser_version(&self) -> Result<String, KernelError> {
        let out = self.run(ParserOp::Check, vec!["-V".into()], "printing its version")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(rejected(&out));
        }
        Ok(text.lines().next().unwrap_or_default().trim().to_string())
    }

    /// Compiles one file without loading it (`-Q -K`), for `check`.
    pub fn check(&self, path: &Path) -> Result<(), KernelError> {
        let out = self.run(ParserOp::Check, vec!["-Q".into(), "-K".into(), path.into()], &path.display().to_string())?;
        if out.status.success() { Ok(()) } else { Err(rejected(&out)) }
    }

    fn run(&self, op: ParserOp, args: Vec<OsString>, what: &str) -> Result<Output, KernelError> {
        let start = Instant::now();
        let result = run_with_timeout(&self.parser, args, self.timeout, what, &self.in_flight);
        if let Some(observe) = &self.observer {
            observe(op, start.elapsed(), matches!(&result, Ok(o) if o.status.success()));
        }
        tracing::debug!(op = op.as_str(), parser = %self.parser.display(), elapsed_ms = start.elapsed().as_millis() as u64, what, "parser call");
        result
    }

    fn boundary_file(&self) -> Result<PathBuf, KernelError> {
        let path = self.scratch.join(format!(".names-boundary.{}", std::process::id()));
        write_scratch(&path, &parser_output::boundary_source())?;
        Ok(path)
    }

    fn names_one(&self, file: &SourceFile) -> Result<Vec<String>, KernelError> {
        let out = self.run(ParserOp::Names, vec!["-N".into(), file.real.clone().into()], &file.shown.display().to_string())?;
        if out.status.success() {
            Ok(parser_output::parse_names(&String::from_utf8_lossy(&out.stdout)))
        } else {
            Err(rejected_file(&out, file))
        }
    }

    fn load_args(&self, mode: DesiredMode) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "-r".into(),
            "-K".into(),
            format!("-j{}", self.jobs).into(),
            "--subdomainfs".into(),
            self.apparmor_dir.clone().into(),
        ];
        if mode == DesiredMode::Complain {
            args.push("-C".into());
        }
        args
    }

    /// One `-r` process for the batch. When it fails and every error names a file of the
    /// batch, the other files are reported loaded: the parser goes on past a bad file (apparmor
    /// 3.0.8, any `-j`, measured in the VM). A parser that stops early is caught by the
    /// reconciler, which checks the kernel after a failed batch.
    fn load_batch(&self, chunk: &[&SourceFile], mode: DesiredMode) -> Vec<Result<(), KernelError>> {
        if let [one] = chunk {
            return vec![self.load_one(one, mode)];
        }
        let mut args = self.load_args(mode);
        args.extend(chunk.iter().map(|f| OsString::from(f.real.clone())));
        match self.run(ParserOp::Load, args, &format!("loading {} files", chunk.len())) {
            Ok(out) if out.status.success() => chunk.iter().map(|_| Ok(())).collect(),
            Ok(out) => match attribute(&out, chunk) {
                Some(errors) => errors.into_iter().map(|e| e.map_or(Ok(()), Err)).collect(),
                // An error we cannot pin on one file: one file at a time (good files are
                // replaced with identical policy, which the kernel skips).
                None => chunk.iter().map(|f| self.load_one(f, mode)).collect(),
            },
            // A hung batch: find the file that hangs by loading them one at a time.
            Err(_) => chunk.iter().map(|f| self.load_one(f, mode)).collect(),
        }
    }

    fn load_one(&self, file: &SourceFile, mode: DesiredMode) -> Result<(), KernelError> {
        let mut args = self.load_args(mode);
        args.push(file.real.clone().into());
        let out = self.run(ParserOp::Load, args, &file.shown.display().to_string())?;
        if out.status.success() { Ok(()) } else { Err(rejected_file(&out, file)) }
    }
}

impl Kernel for HostKernel {
    fn listing(&self) -> Result<Vec<KernelProfile>, KernelError> {
        let path = self.apparmor_dir.join("profiles");
        let text = fs::read_to_string(&path).map_err(|source| KernelError::Read { path: path.clone(), source })?;
        listing::parse(&text).map_err(|source| KernelError::Listing { path, source })
    }

    fn hashes(&self) -> Result<BTreeMap<String, String>, KernelError> {
        let dir = self.apparmor_dir.join("policy").join("profiles");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            // Kernels built without policy hashing have no such directory: drift is then
            // detected from the listing alone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => return Err(KernelError::Read { path: dir, source }),
        };
        let mut out = BTreeMap::new();
        for entry in entries.flatten() {
            // A profile replaced while we read can vanish between listing and reading: skip it.
            let (Ok(name), Ok(sha1)) =
                (fs::read_to_string(entry.path().join("name")), fs::read_to_string(entry.path().join("sha1")))
            else {
                continue;
            };
            out.insert(name.trim_end_matches('\n').to_string(), sha1.trim().to_string());
        }
        Ok(out)
    }

    fn names(&self, files: &[&SourceFile]) -> Vec<Result<Vec<String>, KernelError>> {
        let mut results = Vec::with_capacity(files.len());
        for chunk in files.chunks(BATCH) {
            results.extend(self.names_batch(chunk));
        }
        results
    }

    fn load(&self, files: &[&SourceFile], mode: DesiredMode) -> Vec<Result<(), KernelError>> {
        let mut results = Vec::with_capacity(files.len());
        for chunk in files.chunks(BATCH) {
            results.extend(self.load_batch(chunk, mode));
        }
        results
    }

    fn unload(&self, name: &str) -> Result<(), KernelError> {
        if name.contains(['"', '\n', '\0']) {
            return Err(KernelError::BadName(name.to_string()));
        }
        // `-R` takes a profile file, not a name: a stub that defines only the name.
        let stub = self.scratch.join(format!(".remove-stub.{}", std::process::id()));
        write_scratch(&stub, &format!("profile \"{name}\" {{\n}}\n"))?;
        let args = vec!["-R".into(), "--subdomainfs".into(), self.apparmor_dir.clone().into(), stub.clone().into()];
        let out = self.run(ParserOp::Remove, args, &format!("removing profile {name:?}"));
        let _ = fs::remove_file(&stub);
        let out = out?;
        if out.status.success() { Ok(()) } else { Err(rejected(&out)) }
    }
}

impl HostKernel {
    /// One `-N` call for the whole chunk with a boundary file between files; one call per
    /// file when that fails, so an error is attributed to the file that caused it.
    fn names_batch(&self, chunk: &[&SourceFile]) -> Vec<Result<Vec<String>, KernelError>> {
        if let [one] = chunk {
            return vec![self.names_one(one)];
        }
        let batched = self.boundary_file().and_then(|boundary| {
            // One job: forked workers would print each file's names in the order they finish,
            // and the split relies on file order.
            let mut args: Vec<OsString> = vec!["-N".into(), "-j1".into()];
            for (i, f) in chunk.iter().enumerate() {
                if i > 0 {
                    args.push(boundary.clone().into());
                }
                args.push(f.real.clone().into());
            }
            self.run(ParserOp::Names, args, &format!("naming {} files", chunk.len()))
        });
        if let Ok(out) = &batched {
            if let Some(groups) = parser_output::split_names(&String::from_utf8_lossy(&out.stdout), chunk.len()) {
                if out.status.success() {
                    return groups.into_iter().map(Ok).collect();
                }
                // A bad file prints no names but its boundary still follows, so the groups
                // line up; its error names it.
                if let Some(errors) = attribute(out, chunk) {
                    return groups.into_iter().zip(errors).map(|(names, e)| e.map_or(Ok(names), Err)).collect();
                }
            }
        }
        chunk.iter().map(|f| self.names_one(f)).collect()
    }
}

/// Pins each diagnostic of a failed batch on the file it names. `None` when any diagnostic
/// names no file of the batch (the caller then retries file by file).
fn attribute(out: &Output, chunk: &[&SourceFile]) -> Option<Vec<Option<KernelError>>> {
    let diagnostics = parser_output::diagnostics(&String::from_utf8_lossy(&out.stderr));
    if diagnostics.is_empty() {
        return None;
    }
    let mut per_file: Vec<Vec<Diagnostic>> = vec![Vec::new(); chunk.len()];
    for d in diagnostics {
        let idx = chunk.iter().position(|f| d.file.as_deref() == Some(&*f.real.to_string_lossy()))?;
        per_file[idx].push(d);
    }
    Some(
        per_file
            .into_iter()
            .zip(chunk)
            .map(|(mut diags, f)| {
                if diags.is_empty() {
                    return None;
                }
                for d in &mut diags {
                    parser_output::rename_file(d, &f.real, &f.shown);
                }
                Some(KernelError::Rejected { diagnostics: diags })
            })
            .collect(),
    )
}

fn write_scratch(path: &Path, content: &str) -> Result<(), KernelError> {
    let err = |source| KernelError::Scratch { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let mut f = fs::File::create(path).map_err(err)?;
    f.write_all(content.as_bytes()).map_err(err)
}

fn rejected(out: &Output) -> KernelError {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut diagnostics = parser_output::diagnostics(&stderr);
    if diagnostics.is_empty() {
        diagnostics.push(Diagnostic {
            file: None,
            line: None,
            message: format!("the parser failed ({}) without a message", out.status),
        });
    }
    KernelError::Rejected { diagnostics }
}

/// A parser failure for one file, with the resolved path rewritten to the one the user
/// knows and the file named even when the parser did not name it.
fn rejected_file(out: &Output, file: &SourceFile) -> KernelError {
    let KernelError::Rejected { mut diagnostics } = rejected(out) else { unreachable!() };
    for d in &mut diagnostics {
        parser_output::rename_file(d, &file.real, &file.shown);
        if d.file.is_none() {
            d.file = Some(file.shown.display().to_string());
        }
    }
    KernelError::Rejected { diagnostics }
}

/// Runs the parser with a deadline. It runs in its own process group so that a hung
/// parser and any helpers it forked (`-j`) are killed together.
fn run_with_timeout(
    parser: &Path,
    args: Vec<OsString>,
    timeout: Duration,
    what: &str,
    in_flight: &InFlight,
) -> Result<Output, KernelError> {
    let child = Command::new(parser)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| KernelError::Spawn { parser: parser.to_path_buf(), source })?;
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    in_flight.0.store(pgid.as_raw(), Ordering::Release);
    let (tx, rx) = mpsc::sync_channel(1);
    // The waiter owns the child, so its pid cannot be reused before we signal it.
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let result = match rx.recv_timeout(timeout) {
        Ok(result) => result.map_err(|source| KernelError::Spawn { parser: parser.to_path_buf(), source }),
        Err(_) => {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = rx.recv();
            Err(KernelError::Timeout { parser: parser.to_path_buf(), timeout, what: what.to_string() })
        }
    };
    in_flight.0.store(0, Ordering::Release);
    result
}

/// Finds the parser: an explicit path (or name looked up on `PATH`), else the default name
/// on `PATH`, else the fallback path.
pub fn resolve_parser(explicit: Option<&Path>) -> Option<PathBuf> {
    let lookup = |name: &Path| -> Option<PathBuf> {
        if name.components().count() > 1 {
            return name.is_file().then(|| name.to_path_buf());
        }
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
    };
    match explicit {
        Some(p) => lookup(p),
        None => lookup(Path::new(crate::defaults::PARSER)).or_else(|| lookup(Path::new(crate::defaults::PARSER_FALLBACK))),
    }
}
