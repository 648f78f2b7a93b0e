//! The desired state: every file of the directory with the profile names it defines.
//!
//! Names come only from the parser's compiled output, never from a guess at the source:
//! a file's names are known from an earlier compile of the same content (cached by sha256),
//! or the file is compiled now. Files that are to be loaded are compiled now in any case, from
//! exactly the bytes that were hashed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use sha2::Digest;

use super::plan::{self, FileInput, Observed};
use super::{Reconciler, SyncError};
use crate::kernel::{CompileInput, CompileJob, Compiled, Kernel};
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
                ScanEntry::File(f) => self.state.names.get(&f.sha256).map(|names| ready(f, names.clone())),
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
                ScanEntry::File(f) if to_load.contains(f.key.as_str()) || !self.state.names.contains_key(&f.sha256) => Some(f),
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
                        let names = self.state.names.get(&file.sha256).cloned().unwrap_or_default();
                        FileInput::Ready { file, names }
                    }
                },
            })
            .collect();
        Ok(Desired { inputs, compiled, failed })
    }

    /// One compile of the files (mode-independent: complain mode is applied to the compiled
    /// policy); learns their names.
    fn compile_files(&mut self, files: &[&SourceFile]) -> Result<BTreeMap<String, Result<Compiled, String>>, SyncError> {
        if files.is_empty() {
            return Ok(BTreeMap::new());
        }
        if self.stop.is_cancelled() {
            let stopped = || Err("not compiled: the agent is shutting down".to_string());
            return Ok(files.iter().map(|f| (f.key.clone(), stopped())).collect());
        }
        let max = self.settings.scan.max_file_size;
        let contents: Vec<Result<Vec<u8>, String>> = files.iter().map(|f| exact_content(f, max)).collect();
        let inputs: Vec<CompileInput<'_>> = files
            .iter()
            .zip(&contents)
            .filter_map(|(file, c)| c.as_ref().ok().map(|bytes| CompileInput { file, bytes }))
            .collect();
        let job = CompileJob { cwd: self.settings.profiles_dir.clone() };
        let mut compiled = self.kernel.compile(&inputs, &job).map_err(SyncError::Compile)?.into_iter();
        let mut out = BTreeMap::new();
        for (file, content) in files.iter().zip(contents) {
            let result = content.and_then(|_| {
                let c = compiled.next().expect("one result per input").map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
                let c = check_policy(file, c)?;
                self.state.names.insert(file.sha256.clone(), c.top_level());
                let mode = self.settings.policy.file_mode(&c.top_level());
                c.in_mode(mode).map_err(|e| format!("{}: {e}", file.shown.display()))
            });
            if let Err(e) = &result {
                tracing::error!(file = %file.shown.display(), error = %e, "the file does not compile; the kernel keeps what it has");
            }
            out.insert(file.key.clone(), result);
        }
        Ok(out)
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
