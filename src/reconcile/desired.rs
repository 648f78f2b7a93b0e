//! The desired state: every file of the directory with its identity and the profile names it
//! defines.
//!
//! Names come only from the parser's compiled output, never from a guess at the source:
//! a file's names are known from an earlier compile of the same identity, or the file is
//! compiled now. Files that are to be loaded get their policy from the compiled-policy cache
//! or are compiled now, from exactly the bytes that were hashed. A file whose identity did not
//! compile before is not compiled again: its remembered error is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use sha2::Digest;

use super::plan::{self, FileInput, Observed};
use super::report::{FileReport, ItemState, Report};
use super::{Reconciler, SyncError};
use crate::kernel::{CompileInput, CompileJob, Compiled, Kernel, KernelError};
use crate::scan::{self, ScanEntry, SourceFile};

/// The files of this pass, named.
pub(super) struct Desired {
    /// The plan's inputs.
    pub inputs: Vec<FileInput>,
    /// Compiled policy (in the file's mode) of the files compiled in this pass.
    pub compiled: BTreeMap<String, Compiled>,
    /// Files that were compiled in this pass and did not compile.
    pub failed: BTreeSet<String>,
}

impl<K: Kernel> Reconciler<K> {
    /// Names every file, compiling the ones whose names are unknown and the ones a load is
    /// planned for. Returns the inputs of the plan and the compiled policy by file key.
    pub(super) fn desired(
        &mut self,
        entries: Vec<ScanEntry>,
        observed: &BTreeMap<String, Observed>,
    ) -> Result<Desired, SyncError> {
        let known: Vec<FileInput> = entries
            .iter()
            .filter_map(|e| match e {
                ScanEntry::File(f) => self.state.names.get(&f.identity).map(|names| ready(f, names.clone())),
                ScanEntry::Rejected { .. } => None,
            })
            .collect();
        // Which known files would be loaded: they need their policy compiled now.
        let first = plan::compute(&known, observed, &self.state, &self.settings.policy, &BTreeSet::new());
        let to_load: BTreeSet<&str> =
            first.files.iter().filter(|f| f.action.operation().is_some()).map(|f| f.file.as_str()).collect();
        let wanted: Vec<&SourceFile> = entries
            .iter()
            .filter_map(|e| match e {
                ScanEntry::File(f) if self.state.failures.contains_key(&f.identity) => None,
                ScanEntry::File(f) if to_load.contains(f.key.as_str()) || !self.state.names.contains_key(&f.identity) => Some(f),
                _ => None,
            })
            .collect();
        let mut results = self.compile_files(&wanted)?;
        let mut compiled = BTreeMap::new();
        let mut failed = BTreeSet::new();
        let inputs = entries
            .into_iter()
            .map(|e| match e {
                ScanEntry::Rejected { key, reason } => FileInput::Broken { key, error: reason },
                ScanEntry::File(file) if !results.contains_key(&file.key) && self.state.failures.contains_key(&file.identity) => {
                    let error = self.state.failures[&file.identity].clone();
                    FileInput::Broken { key: file.key, error }
                }
                ScanEntry::File(file) => match results.remove(&file.key) {
                    Some(Ok(c)) => {
                        let names = c.top_level();
                        compiled.insert(file.key.clone(), c);
                        FileInput::Ready { file, names }
                    }
                    Some(Err(error)) => {
                        failed.insert(file.key.clone());
                        FileInput::Broken { key: file.key, error }
                    }
                    None => {
                        let names = self.state.names.get(&file.identity).cloned().unwrap_or_default();
                        FileInput::Ready { file, names }
                    }
                },
            })
            .collect();
        Ok(Desired { inputs, compiled, failed })
    }

    /// Policy for the files, from the cache or one compile (mode-independent: complain mode
    /// is applied to the compiled policy); learns their names and remembers which identities
    /// do not compile.
    fn compile_files(&mut self, files: &[&SourceFile]) -> Result<BTreeMap<String, Result<Compiled, String>>, SyncError> {
        let mut raw: Vec<Attempt<'_>> = Vec::new();
        let mut misses = Vec::new();
        for file in files {
            match self.settings.cache.get(&file.identity) {
                Some(c) => raw.push((file, Ok(c))),
                None => misses.push(*file),
            }
        }
        if !misses.is_empty() {
            raw.extend(self.compile_now(&misses)?);
        }
        let mut out = BTreeMap::new();
        for (file, result) in raw {
            let result = result.and_then(|c| {
                let c = check_policy(file, c).map_err(Failure::Remembered)?;
                self.state.names.insert(file.identity.clone(), c.top_level());
                let mode = self.settings.policy.file_mode(&c.top_level());
                c.in_mode(mode).map_err(|e| Failure::Remembered(format!("{}: {e}", file.shown.display())))
            });
            let result = result.map_err(|f| {
                let message = match f {
                    Failure::Remembered(m) => {
                        self.state.failures.insert(file.identity.clone(), m.clone());
                        m
                    }
                    Failure::Passing(m) => m,
                };
                tracing::error!(file = %file.shown.display(), error = %message, "the file does not compile; the kernel keeps what it has");
                message
            });
            out.insert(file.key.clone(), result);
        }
        Ok(out)
    }

    /// One compile of files the cache does not hold; good policy goes to the cache when the
    /// files and their includes are still what was identified (the parser reads includes live).
    fn compile_now<'f>(&mut self, files: &[&'f SourceFile]) -> Result<Vec<Attempt<'f>>, SyncError> {
        if self.stop.is_cancelled() {
            let stopped = || Err(Failure::Passing("not compiled: the agent is shutting down".to_string()));
            return Ok(files.iter().map(|f| (*f, stopped())).collect());
        }
        let max = self.settings.scan.max_file_size;
        let contents: Vec<Result<Vec<u8>, String>> = files.iter().map(|f| exact_content(f, max)).collect();
        let inputs: Vec<CompileInput<'_>> = files
            .iter()
            .zip(&contents)
            .filter_map(|(file, c)| c.as_ref().ok().map(|bytes| CompileInput { file, bytes }))
            .collect();
        let job = CompileJob {
            cwd: self.settings.profiles_dir.clone(),
            include_dirs: self.settings.include_dirs.clone(),
            kernel_features: None,
        };
        let mut compiled = self.kernel.compile(&inputs, &job).map_err(SyncError::Compile)?.into_iter();
        let mut out = Vec::new();
        for (file, content) in files.iter().zip(contents) {
            let result = match content {
                Err(e) => Err(Failure::Passing(e)),
                Ok(_) => compiled.next().expect("one result per input").map_err(Failure::from),
            };
            let unchanged = self.resolver.identify_file(file).key == file.identity;
            match (&result, unchanged) {
                (Ok(c), true) => self.settings.cache.put(&file.identity, c),
                (Err(Failure::Remembered(m)), false) => {
                    out.push((*file, Err(Failure::Passing(m.clone()))));
                    continue;
                }
                _ => {}
            }
            out.push((*file, result));
        }
        self.settings.cache.trim();
        Ok(out)
    }

    /// Sets each file's identity from its includes, and takes out the files other files of
    /// the directory include: they are include sources, not profiles of their own.
    pub(super) fn identify(&mut self, entries: Vec<ScanEntry>) -> (Vec<ScanEntry>, BTreeSet<String>) {
        let mut entries = entries;
        self.includes.clear();
        self.resolver.begin_pass();
        for e in &mut entries {
            if let ScanEntry::File(f) = e {
                let id = self.resolver.identify_file(f);
                f.identity = id.key;
                self.includes.insert(f.key.clone(), id.includes);
            }
        }
        self.resolver.end_pass();
        let files: Vec<&SourceFile> =
            entries.iter().filter_map(|e| if let ScanEntry::File(f) = e { Some(f) } else { None }).collect();
        let sources = super::identity::include_sources(&files, &self.includes);
        let live: BTreeSet<&String> = files.iter().map(|f| &f.identity).collect();
        self.state.failures.retain(|id, _| live.contains(id));
        entries.retain(|e| match e {
            ScanEntry::File(f) => !sources.contains(&f.key),
            ScanEntry::Rejected { key, .. } => !sources.contains(key),
        });
        (entries, sources)
    }

    /// Lists each file's includes in the report, and the include sources as such.
    pub(super) fn describe_includes(&self, report: &mut Report, sources: &BTreeSet<String>) {
        for f in &mut report.files {
            f.includes =
                self.includes.get(&f.file).map(|i| i.iter().map(|i| i.path.display().to_string()).collect()).unwrap_or_default();
        }
        for key in sources {
            let includes =
                self.includes.get(key).map(|i| i.iter().map(|i| i.path.display().to_string()).collect()).unwrap_or_default();
            report.files.push(FileReport {
                file: key.clone(),
                state: ItemState::Include,
                error: None,
                names: Vec::new(),
                includes,
            });
        }
        report.files.sort_by(|a, b| a.file.cmp(&b.file));
    }
}

/// A file and the policy it got, or why not.
type Attempt<'f> = (&'f SourceFile, Result<Compiled, Failure>);

/// Why a file has no policy.
enum Failure {
    /// The parser or the checks rejected this identity: it fails the same way until it changes.
    Remembered(String),
    /// Anything else (a timeout, a shutdown, a file changing under us): tried again next pass.
    Passing(String),
}

impl From<KernelError> for Failure {
    fn from(e: KernelError) -> Failure {
        let remembered = matches!(e, KernelError::Rejected { .. } | KernelError::BadPolicy { .. });
        let message = format!("{:#}", anyhow::Error::from(e));
        if remembered { Failure::Remembered(message) } else { Failure::Passing(message) }
    }
}

fn ready(file: &SourceFile, names: Vec<String>) -> FileInput {
    FileInput::Ready { file: file.clone(), names }
}

/// Reads the file again for the parser and makes sure it is still the content that was
/// hashed; a file that changed in between is left to the next pass (its change wakes one).
fn exact_content(file: &SourceFile, max: u64) -> Result<Vec<u8>, String> {
    let shown = file.shown.display();
    let f = std::fs::File::open(&file.real).map_err(|e| format!("{shown}: {e}"))?;
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes).map_err(|e| format!("{shown}: {e}"))?;
    if scan::hex(&sha2::Sha256::digest(&bytes)) != file.sha256 {
        return Err(format!("{shown}: changed while being read; the next pass loads the new content"));
    }
    Ok(bytes)
}

/// Rules on what a compiled file may contain, checked before anything is loaded: the root
/// namespace only, and no child of a profile the file does not define (it would hang under
/// someone else's profile).
fn check_policy(file: &SourceFile, c: Compiled) -> Result<Compiled, String> {
    let shown = file.shown.display();
    if let Some(p) = c.profiles.iter().find(|p| p.namespace.is_some()) {
        let ns = p.namespace.as_deref().unwrap_or_default();
        return Err(format!(
            "{shown}: profile {:?} is in the policy namespace {ns:?}; apparmor-loader manages the root namespace only",
            p.name
        ));
    }
    crate::kernel::blob::check_self_contained(&c.profiles).map_err(|e| format!("{shown}: {e}"))?;
    Ok(c)
}
