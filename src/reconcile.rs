//! Carries out the plan: scan the directory, learn names, observe the kernel, compute the
//! plan, load/replace/remove through the [`Kernel`], record ownership and build the report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use serde::Serialize;

use crate::confined;
use crate::kernel::{Kernel, KernelError};
use crate::listing::top_level;
use crate::plan::{self, DesiredMode, FileAction, FileInput, Observed, Plan, Policy, RemovalAction, Why};
use crate::scan::{self, Entry, ScanError, ScanOptions, SourceFile};
use crate::state::{Owned, State, StateError, StateStore};

/// What the reconciler needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The profiles directory.
    pub profiles_dir: PathBuf,
    /// How to read it.
    pub scan: ScanOptions,
    /// Adopt, unload and mode settings.
    pub policy: Policy,
    /// procfs, for the in-use check.
    pub proc_dir: PathBuf,
}

/// A sync could not run at all (per-file problems are reported, not errors).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The directory could not be read.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The kernel could not be read.
    #[error("cannot observe the kernel's profiles")]
    Observe(#[source] KernelError),
    /// The state file could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// procfs could not be scanned for confined processes.
    #[error("cannot scan {} for confined processes", path.display())]
    Proc {
        /// The proc directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The state of a profile or file, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemState {
    /// The current version is in the kernel.
    Loaded,
    /// The current version is broken; the last good one is in the kernel.
    Stale,
    /// Broken and nothing good is loaded.
    Failed,
    /// Not loaded on purpose (foreign or duplicate name).
    Refused,
    /// Its file is gone; still loaded.
    Orphaned,
    /// Its file is gone and it would be removed, but processes are confined by it.
    InUse,
    /// In the kernel and not loaded by apparmor-loader.
    Foreign,
}

impl ItemState {
    /// Every state, for metrics.
    pub const ALL: [ItemState; 7] = [
        ItemState::Loaded,
        ItemState::Stale,
        ItemState::Failed,
        ItemState::Refused,
        ItemState::Orphaned,
        ItemState::InUse,
        ItemState::Foreign,
    ];

    /// The reported spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Loaded => "loaded",
            ItemState::Stale => "stale",
            ItemState::Failed => "failed",
            ItemState::Refused => "refused",
            ItemState::Orphaned => "orphaned",
            ItemState::InUse => "in-use",
            ItemState::Foreign => "foreign",
        }
    }
}

/// One profile in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileReport {
    /// Top-level name.
    pub name: String,
    /// Mode from the kernel listing; `null` when not in the kernel.
    pub mode: Option<String>,
    /// State.
    pub state: ItemState,
    /// Source file key.
    pub file: Option<String>,
    /// sha256 of the loaded content.
    pub sha256: Option<String>,
    /// When the agent loaded it.
    pub loaded_at: Option<String>,
    /// The latest error for it (parser message with file and line).
    pub error: Option<String>,
}

/// One file in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// File key.
    pub file: String,
    /// State.
    pub state: ItemState,
    /// The error, naming the file.
    pub error: Option<String>,
    /// Profiles it defines (for a broken file: those of its last good version).
    pub names: Vec<String>,
}

/// What `/profiles` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// When the last sync finished (RFC 3339).
    pub last_sync: Option<String>,
    /// Managed and foreign profiles, by name.
    pub profiles: Vec<ProfileReport>,
    /// Every file of the directory.
    pub files: Vec<FileReport>,
}

impl Report {
    /// Files that keep the node unready: failed or refused ones.
    pub fn blocking(&self) -> impl Iterator<Item = &FileReport> {
        self.files.iter().filter(|f| matches!(f.state, ItemState::Failed | ItemState::Refused))
    }

    /// Profiles per state.
    pub fn counts(&self) -> BTreeMap<ItemState, usize> {
        let mut counts: BTreeMap<ItemState, usize> = ItemState::ALL.iter().map(|s| (*s, 0)).collect();
        for p in &self.profiles {
            *counts.entry(p.state).or_default() += 1;
        }
        counts
    }
}

/// Operations carried out, for metrics and exit codes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// (operation, success) → count; operation is `load`, `replace` or `remove`.
    pub ops: BTreeMap<(&'static str, bool), u64>,
    /// Files reloaded because the kernel lost or changed them.
    pub drift_repairs: u64,
}

impl Counts {
    fn add(&mut self, op: &'static str, ok: bool) {
        *self.ops.entry((op, ok)).or_default() += 1;
    }

    /// How many operations of a kind and result.
    pub fn get(&self, op: &'static str, ok: bool) -> u64 {
        self.ops.get(&(op, ok)).copied().unwrap_or(0)
    }
}

/// The result of one sync.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was decided.
    pub plan: Plan,
    /// What was done.
    pub counts: Counts,
    /// The state afterwards.
    pub report: Report,
}

impl Outcome {
    /// Whether every file has a good version loaded (stale counts as good).
    pub fn all_good(&self) -> bool {
        self.report.blocking().next().is_none()
    }
}

/// Owns the kernel handle and the ownership state between syncs.
pub struct Reconciler<K: Kernel> {
    kernel: K,
    store: StateStore,
    state: State,
    settings: Settings,
    /// Content hashes named by the quick reader in this pass, verified after loading.
    quick: BTreeSet<String>,
    /// Content hashes the quick reader got wrong: only the parser names them.
    distrust: BTreeSet<String>,
    /// Set on shutdown: finish the parser call in flight, start no new one.
    stop: Arc<AtomicBool>,
}

impl<K: Kernel> Reconciler<K> {
    /// Loads the state; a corrupt state file is an error (never silently "own nothing").
    pub fn new(kernel: K, store: StateStore, settings: Settings) -> Result<Self, SyncError> {
        let state = store.load()?;
        Ok(Reconciler { kernel, store, state, settings, quick: BTreeSet::new(), distrust: BTreeSet::new(), stop: Arc::default() })
    }

    /// A flag that, once set, makes a running sync stop before its next parser call.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The kernel handle.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The current ownership state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Computes what a sync would do now, without touching the kernel. Names learnt from
    /// the parser are cached in memory (not persisted).
    pub fn plan(&mut self) -> Result<(Plan, Observation), SyncError> {
        let entries = scan::scan(&self.settings.profiles_dir, &self.settings.scan)?;
        let inputs = self.name_files(entries);
        let observation = self.observe()?;
        let mut plan = plan::compute(&inputs, &observation.top, &self.state, &self.settings.policy, &BTreeSet::new());
        if plan.removals.iter().any(|r| r.action == RemovalAction::Unload) {
            let proc_dir = &self.settings.proc_dir;
            let in_use = confined::in_use(proc_dir).map_err(|source| SyncError::Proc { path: proc_dir.clone(), source })?;
            plan = plan::compute(&inputs, &observation.top, &self.state, &self.settings.policy, &in_use);
        }
        Ok((plan, observation.with_inputs(inputs)))
    }

    /// One full pass: plan, act, record, report.
    pub fn sync(&mut self) -> Result<Outcome, SyncError> {
        let (plan, observation) = self.plan()?;
        let mut counts = Counts::default();
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        let before = self.state.clone();
        let mut loaded_now: BTreeSet<String> = BTreeSet::new();
        let mut loaded_files: Vec<(String, String)> = Vec::new();

        for mode in [DesiredMode::Enforce, DesiredMode::Complain] {
            let batch: Vec<(&plan::FilePlan, &SourceFile)> = plan
                .files
                .iter()
                .filter(|f| f.mode == mode && matches!(f.action, FileAction::Load { .. } | FileAction::Replace { .. }))
                .filter_map(|f| observation.source(&f.file).map(|s| (f, s)))
                .collect();
            if batch.is_empty() || self.stopping() {
                continue;
            }
            let files: Vec<&SourceFile> = batch.iter().map(|(_, s)| *s).collect();
            let mut results = self.kernel.load(&files, mode);
            if results.iter().any(Result::is_err) && results.iter().any(Result::is_ok) {
                self.reload_cut_short(&batch, &mut results, &observation, mode)?;
            }
            let now = now();
            for ((fp, source), result) in batch.iter().zip(results) {
                let (op, why) = match fp.action {
                    FileAction::Load { why } => ("load", why),
                    FileAction::Replace { why } => ("replace", why),
                    _ => unreachable!("filtered above"),
                };
                counts.add(op, result.is_ok());
                match result {
                    Ok(()) => {
                        if why == Why::Drift {
                            counts.drift_repairs += 1;
                            tracing::warn!(file = %source.shown.display(), names = ?fp.names, "restored a profile that was removed or replaced behind our back");
                        }
                        tracing::info!(file = %source.shown.display(), names = ?fp.names, mode = mode.as_str(), why = ?why, "{}", if op == "load" { "loaded" } else { "replaced" });
                        loaded_files.push((fp.file.clone(), source.sha256.clone()));
                        for name in &fp.names {
                            loaded_now.insert(name.clone());
                            self.state.profiles.insert(
                                name.clone(),
                                Owned {
                                    file: fp.file.clone(),
                                    sha256: source.sha256.clone(),
                                    loaded_at: now.clone(),
                                    mode: mode.as_str().to_string(),
                                    kernel_mode: None,
                                    kernel_sha1: None,
                                },
                            );
                        }
                    }
                    Err(e) => {
                        let message = format!("{e:#}");
                        tracing::error!(file = %source.shown.display(), error = %message, "parser rejected the file; the kernel keeps its previous version");
                        errors.insert(fp.file.clone(), message);
                    }
                }
            }
        }

        for removal in &plan.removals {
            if self.stopping() {
                break;
            }
            match removal.action {
                RemovalAction::Unload => match self.kernel.unload(&removal.name) {
                    Ok(()) => {
                        counts.add("remove", true);
                        tracing::info!(profile = %removal.name, file = %removal.file, "removed: its file is gone");
                        self.state.profiles.remove(&removal.name);
                    }
                    Err(e) => {
                        counts.add("remove", false);
                        tracing::error!(profile = %removal.name, error = %format!("{e:#}"), "cannot remove profile");
                        errors.insert(format!("profile:{}", removal.name), format!("{e:#}"));
                    }
                },
                RemovalAction::Forget => {
                    tracing::info!(profile = %removal.name, file = %removal.file, "forgot a profile whose file and kernel entry are both gone");
                    self.state.profiles.remove(&removal.name);
                }
                RemovalAction::InUse => {
                    tracing::info!(profile = %removal.name, "file is gone but processes are still confined by the profile; removal retried later")
                }
                RemovalAction::Orphan => {}
            }
        }

        // Observe again after acting, so the report and the recorded kernel hashes are what
        // the kernel really has.
        let after = if counts.ops.is_empty() { observation.clone_kernel() } else { self.observe()? };
        for name in &loaded_now {
            if let Some(owned) = self.state.profiles.get_mut(name) {
                let k = after.top.get(name);
                owned.kernel_mode = k.map(|k| k.mode.clone());
                owned.kernel_sha1 = k.and_then(|k| k.sha1.clone());
            }
        }
        self.verify_quick_names(&loaded_files, &after);
        self.prune_names(&observation);
        if self.state != before {
            self.store.save(&self.state)?;
        }
        let report = self.report(&plan, &after, &errors);
        Ok(Outcome { plan, counts, report })
    }

    /// A parser that stops at the first bad file (an in-process parser exits on a syntax
    /// error) reports nothing about the files after it. After a failed batch, the files
    /// reported loaded are checked against the kernel: a profile that is missing, or whose
    /// kernel hash did not move although its content or mode changed, was not loaded, and
    /// those files get one more batch.
    fn reload_cut_short(
        &self,
        batch: &[(&plan::FilePlan, &SourceFile)],
        results: &mut [Result<(), KernelError>],
        before: &Observation,
        mode: DesiredMode,
    ) -> Result<(), SyncError> {
        let now = self.observe()?;
        let suspect: Vec<usize> = batch
            .iter()
            .zip(results.iter())
            .enumerate()
            .filter(|(_, ((fp, _), r))| {
                r.is_ok()
                    && fp.names.iter().any(|n| match (before.top.get(n), now.top.get(n)) {
                        (_, None) => true,
                        (Some(b), Some(a)) => {
                            matches!(fp.action, FileAction::Replace { why: Why::Changed | Why::ModeChanged | Why::Adopt })
                                && b.sha1.is_some()
                                && b.sha1 == a.sha1
                        }
                        (None, Some(_)) => false,
                    })
            })
            .map(|(i, _)| i)
            .collect();
        if suspect.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            files = suspect.len(),
            "the parser stopped before loading every file of the batch; loading the rest again"
        );
        let files: Vec<&SourceFile> = suspect.iter().map(|&i| batch[i].1).collect();
        for (&i, r) in suspect.iter().zip(self.kernel.load(&files, mode)) {
            results[i] = r;
        }
        Ok(())
    }

    /// Files that are readable get names: from the cache when the content is known, from
    /// the quick reader when it is sure, otherwise from the parser (one batched `-N` call
    /// for all of them).
    fn name_files(&mut self, entries: Vec<Entry>) -> Vec<FileInput> {
        let unknown: Vec<&SourceFile> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::File(f) if !self.state.names.contains_key(&f.sha256) => Some(f),
                _ => None,
            })
            .collect();
        let mut ask_parser = Vec::new();
        for file in unknown {
            let quick = if self.distrust.contains(&file.sha256) { None } else { quick_read(file) };
            match quick {
                Some(names) => {
                    tracing::debug!(file = %file.shown.display(), ?names, "named without the parser");
                    self.quick.insert(file.sha256.clone());
                    self.state.names.insert(file.sha256.clone(), names);
                }
                None => ask_parser.push(file),
            }
        }
        let mut failures: BTreeMap<String, String> = BTreeMap::new();
        if !ask_parser.is_empty() {
            let results = self.kernel.names(&ask_parser);
            for (file, result) in ask_parser.iter().zip(results) {
                match result {
                    Ok(names) => {
                        self.state.names.insert(file.sha256.clone(), names);
                    }
                    Err(e) => {
                        failures.insert(file.key.clone(), format!("{e:#}"));
                    }
                }
            }
        }
        entries
            .into_iter()
            .map(|e| match e {
                Entry::Rejected { key, reason } => FileInput::Broken { key, error: reason },
                Entry::File(file) => match failures.remove(&file.key) {
                    Some(error) => FileInput::Broken { key: file.key, error },
                    None => {
                        let names = self.state.names.get(&file.sha256).cloned().unwrap_or_default();
                        FileInput::Ready { file, names }
                    }
                },
            })
            .collect()
    }

    /// After a load: every name the quick reader predicted must now be in the kernel. If
    /// one is not, the reader misjudged this content; forget its answer so the parser
    /// names it from now on.
    fn verify_quick_names(&mut self, loaded: &[(String, String)], after: &Observation) {
        for (file, sha) in loaded {
            if !self.quick.contains(sha) {
                continue;
            }
            let names = self.state.names.get(sha).cloned().unwrap_or_default();
            let missing: Vec<&String> = names.iter().filter(|n| !after.top.contains_key(*n)).collect();
            if !missing.is_empty() {
                tracing::warn!(
                    file,
                    ?missing,
                    "profile names read from the file are not in the kernel after loading it; asking the parser next time"
                );
                self.state.names.remove(sha);
                self.distrust.insert(sha.clone());
            }
        }
        self.quick.clear();
    }

    /// Keeps cached names only for content that is in the directory now or still loaded.
    fn prune_names(&mut self, observation: &Observation) {
        let live: BTreeSet<&String> =
            observation.sources.values().map(|s| &s.sha256).chain(self.state.profiles.values().map(|o| &o.sha256)).collect();
        self.state.names.retain(|sha, _| live.contains(sha));
    }

    fn observe(&self) -> Result<Observation, SyncError> {
        let listing = self.kernel.listing().map_err(SyncError::Observe)?;
        let hashes = self.kernel.hashes().map_err(SyncError::Observe)?;
        let top = listing
            .iter()
            .filter(|p| top_level(&p.name) == p.name)
            .map(|p| (p.name.clone(), Observed { mode: p.mode.to_string(), sha1: hashes.get(&p.name).cloned() }))
            .collect();
        Ok(Observation { top, sources: BTreeMap::new() })
    }

    fn report(&self, plan: &Plan, kernel: &Observation, errors: &BTreeMap<String, String>) -> Report {
        let mut files = Vec::new();
        let mut profiles: BTreeMap<String, ProfileReport> = BTreeMap::new();
        let owned_report = |name: &str, state: ItemState, error: Option<String>| {
            let o = self.state.profiles.get(name);
            ProfileReport {
                name: name.to_string(),
                mode: kernel.top.get(name).map(|k| k.mode.clone()),
                state,
                file: o.map(|o| o.file.clone()),
                sha256: o.map(|o| o.sha256.clone()),
                loaded_at: o.map(|o| o.loaded_at.clone()),
                error,
            }
        };
        for fp in &plan.files {
            let (mut state, mut error) = match &fp.action {
                FileAction::Load { .. } | FileAction::Replace { .. } | FileAction::Unchanged => (ItemState::Loaded, None),
                FileAction::Refuse { reason } => (ItemState::Refused, Some(reason.clone())),
                FileAction::Stale { error } => (ItemState::Stale, Some(error.clone())),
                FileAction::Failed { error } => (ItemState::Failed, Some(error.clone())),
            };
            let mut names = fp.names.clone();
            if let Some(e) = errors.get(&fp.file) {
                // The parser refused the new version: stale if the old one is still there.
                names = self.state.owned_by(&fp.file).map(|(n, _)| n.clone()).collect();
                let old_loaded = !names.is_empty() && names.iter().all(|n| kernel.top.contains_key(n));
                state = if old_loaded { ItemState::Stale } else { ItemState::Failed };
                error = Some(e.clone());
            }
            for name in &names {
                let mut p = owned_report(name, state, error.clone());
                if state == ItemState::Refused {
                    // Not ours: show the file that wanted it, nothing of the foreign profile's provenance.
                    p.file = Some(fp.file.clone());
                    p.sha256 = None;
                    p.loaded_at = None;
                }
                profiles.insert(name.clone(), p);
            }
            files.push(FileReport { file: fp.file.clone(), state, error, names });
        }
        for r in &plan.removals {
            let state = match r.action {
                RemovalAction::Orphan => ItemState::Orphaned,
                RemovalAction::InUse => ItemState::InUse,
                RemovalAction::Unload | RemovalAction::Forget => continue,
            };
            if self.state.profiles.contains_key(&r.name) {
                profiles.insert(r.name.clone(), owned_report(&r.name, state, None));
            }
        }
        for name in self.state.profiles.keys() {
            // A failed removal leaves the profile owned and loaded.
            if !profiles.contains_key(name) && kernel.top.contains_key(name) {
                let error = errors.get(&format!("profile:{name}")).cloned();
                profiles.insert(name.clone(), owned_report(name, ItemState::Orphaned, error));
            }
        }
        for (name, k) in &kernel.top {
            if !profiles.contains_key(name) && !self.state.profiles.contains_key(name) {
                profiles.insert(
                    name.clone(),
                    ProfileReport {
                        name: name.clone(),
                        mode: Some(k.mode.clone()),
                        state: ItemState::Foreign,
                        file: None,
                        sha256: None,
                        loaded_at: None,
                        error: None,
                    },
                );
            }
        }
        Report { last_sync: Some(now()), profiles: profiles.into_values().collect(), files }
    }
}

/// What the kernel had, plus the files of this pass.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Top-level kernel profiles.
    pub top: BTreeMap<String, Observed>,
    sources: BTreeMap<String, SourceFile>,
}

impl Observation {
    fn with_inputs(mut self, inputs: Vec<FileInput>) -> Self {
        self.sources = inputs
            .into_iter()
            .filter_map(|i| match i {
                FileInput::Ready { file, .. } => Some((file.key.clone(), file)),
                FileInput::Broken { .. } => None,
            })
            .collect();
        self
    }

    fn source(&self, key: &str) -> Option<&SourceFile> {
        self.sources.get(key)
    }

    fn clone_kernel(&self) -> Observation {
        Observation { top: self.top.clone(), sources: BTreeMap::new() }
    }
}

/// Reads a file again and names it with the quick reader, if the content is still the
/// content that was hashed and the reader is sure.
fn quick_read(file: &SourceFile) -> Option<Vec<String>> {
    use sha2::Digest;
    let text = std::fs::read_to_string(&file.real).ok()?;
    if scan::hex(&sha2::Sha256::digest(text.as_bytes())) != file.sha256 {
        return None;
    }
    crate::names::quick_names(&text)
}

/// Current time, RFC 3339 in UTC with seconds.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::{Call, FakeKernel};
    use sha2::Digest;
    use std::fs;

    struct World {
        dir: tempfile::TempDir,
        state_dir: tempfile::TempDir,
        proc_dir: tempfile::TempDir,
    }

    fn sha(content: &str) -> String {
        scan::hex(&sha2::Sha256::digest(content.as_bytes()))
    }

    impl World {
        fn new() -> World {
            World {
                dir: tempfile::tempdir().unwrap(),
                state_dir: tempfile::tempdir().unwrap(),
                proc_dir: tempfile::tempdir().unwrap(),
            }
        }
        fn write(&self, kernel: &FakeKernel, name: &str, content: &str, defines: &[&str]) {
            fs::write(self.dir.path().join(name), content).unwrap();
            kernel.define(&sha(content), defines);
        }
        fn reconciler(&self, kernel: FakeKernel, unload_removed: bool) -> Reconciler<FakeKernel> {
            let mut adopt = globset::GlobSetBuilder::new();
            adopt.add(globset::Glob::new("host-*").unwrap());
            let settings = Settings {
                profiles_dir: self.dir.path().to_path_buf(),
                scan: ScanOptions { recursive: false, max_file_size: 1024 },
                policy: Policy {
                    adopt: adopt.build().unwrap(),
                    unload_removed,
                    default_mode: DesiredMode::Enforce,
                    modes: BTreeMap::new(),
                },
                proc_dir: self.proc_dir.path().to_path_buf(),
            };
            Reconciler::new(kernel, StateStore::new(self.state_dir.path()), settings).unwrap()
        }
    }

    fn state_of(outcome: &Outcome, file: &str) -> ItemState {
        outcome.report.files.iter().find(|f| f.file == file).unwrap().state
    }

    #[test]
    fn cold_start_batches_then_restart_does_nothing() {
        let w = World::new();
        let k = FakeKernel::default();
        w.write(&k, "a", "profile a {}", &["a"]);
        w.write(&k, "b", "profile b {}", &["b"]);
        k.preload("docker-default");
        let mut r = w.reconciler(k, false);
        let out = r.sync().unwrap();
        // Plain profiles are named without the parser: one parser process for the whole set.
        assert_eq!(r.kernel().take_calls(), vec![Call::Load(vec!["a".into(), "b".into()], DesiredMode::Enforce)]);
        assert_eq!(out.counts.get("load", true), 2);
        assert!(out.all_good());
        let foreign: Vec<_> =
            out.report.profiles.iter().filter(|p| p.state == ItemState::Foreign).map(|p| p.name.as_str()).collect();
        assert_eq!(foreign, vec!["docker-default"]);

        // Same kernel, fresh process: the state file says we own a and b, nothing to do.
        let kernel = std::mem::take(&mut *r.kernel().0.lock().unwrap());
        let mut r2 = w.reconciler(FakeKernel(std::sync::Mutex::new(kernel)), false);
        let out = r2.sync().unwrap();
        assert_eq!(r2.kernel().take_calls(), vec![]);
        assert!(out.counts.ops.is_empty());
        assert_eq!(state_of(&out, "a"), ItemState::Loaded);
    }

    #[test]
    fn one_changed_file_costs_one_parser_call() {
        let w = World::new();
        let k = FakeKernel::default();
        for i in 0..50 {
            w.write(&k, &format!("p{i}"), &format!("profile p{i} {{}}"), &[&format!("p{i}")]);
        }
        let mut r = w.reconciler(k, false);
        r.sync().unwrap();
        r.kernel().take_calls();
        w.write(r.kernel(), "p7", "profile p7 { /x r, }", &["p7"]);
        let out = r.sync().unwrap();
        assert_eq!(r.kernel().take_calls(), vec![Call::Load(vec!["p7".into()], DesiredMode::Enforce)]);
        assert_eq!(out.counts.get("replace", true), 1);
        // Content the quick reader cannot vouch for goes through `-N` first.
        w.write(r.kernel(), "p8", "include <local/p8>\nprofile p8 { /x r, }", &["p8"]);
        r.sync().unwrap();
        assert_eq!(
            r.kernel().take_calls(),
            vec![Call::Names(vec!["p8".into()]), Call::Load(vec!["p8".into()], DesiredMode::Enforce)]
        );
    }

    #[test]
    fn a_wrong_quick_answer_is_dropped_for_the_parser_next_time() {
        let w = World::new();
        let k = FakeKernel::default();
        // The "parser" says this content defines `real`; the quick reader sees `a`.
        w.write(&k, "a", "profile a {}", &["real"]);
        let mut r = w.reconciler(k, false);
        r.sync().unwrap();
        assert!(!r.state().names.contains_key(&sha("profile a {}")), "unverified names must not stay cached");
        r.kernel().take_calls();
        r.sync().unwrap();
        assert!(r.kernel().take_calls().contains(&Call::Names(vec!["a".into()])));
    }

    #[test]
    fn bad_edit_keeps_last_good_and_other_files_go_on() {
        let w = World::new();
        let k = FakeKernel::default();
        w.write(&k, "a", "profile a {}", &["a"]);
        let mut r = w.reconciler(k, false);
        r.sync().unwrap();
        // New content the fake cannot name: a syntax error.
        fs::write(w.dir.path().join("a"), "profile a { broken").unwrap();
        w.write(r.kernel(), "b", "profile b {}", &["b"]);
        let out = r.sync().unwrap();
        assert_eq!(state_of(&out, "a"), ItemState::Stale);
        assert_eq!(state_of(&out, "b"), ItemState::Loaded);
        let a = out.report.profiles.iter().find(|p| p.name == "a").unwrap();
        assert_eq!(a.state, ItemState::Stale);
        assert_eq!(a.sha256.as_deref(), Some(sha("profile a {}").as_str()));
        assert!(a.error.as_deref().unwrap().contains("syntax error"));
        assert!(out.all_good(), "stale keeps readiness");

        // A file that compiles (-N) but fails to load, never loaded before: failed.
        let content = "profile c { load-fails }";
        w.write(r.kernel(), "c", content, &["c"]);
        r.kernel().0.lock().unwrap().fail_load.insert(sha(content));
        let out = r.sync().unwrap();
        assert_eq!(state_of(&out, "c"), ItemState::Failed);
        assert!(!out.all_good());
        assert_eq!(out.counts.get("load", false), 1);
    }

    #[test]
    fn deleted_files_orphan_or_unload_unless_in_use() {
        let w = World::new();
        let k = FakeKernel::default();
        w.write(&k, "a", "profile a {}", &["a"]);
        w.write(&k, "b", "profile b {}", &["b"]);
        let mut r = w.reconciler(k, false);
        r.sync().unwrap();
        fs::remove_file(w.dir.path().join("a")).unwrap();
        fs::remove_file(w.dir.path().join("b")).unwrap();
        let out = r.sync().unwrap();
        assert!(out.report.profiles.iter().all(|p| p.state == ItemState::Orphaned));
        assert!(r.kernel().0.lock().unwrap().loaded.contains_key("a"));

        let kernel = std::mem::take(&mut *r.kernel().0.lock().unwrap());
        let mut r = w.reconciler(FakeKernel(std::sync::Mutex::new(kernel)), true);
        fs::create_dir_all(w.proc_dir.path().join("42/attr")).unwrap();
        fs::write(w.proc_dir.path().join("42/attr/current"), "b (enforce)\n").unwrap();
        let out = r.sync().unwrap();
        assert!(r.kernel().take_calls().contains(&Call::Unload("a".into())));
        let b = out.report.profiles.iter().find(|p| p.name == "b").unwrap();
        assert_eq!(b.state, ItemState::InUse);
        assert!(!r.kernel().0.lock().unwrap().loaded.contains_key("a"));
        // The process exits: the next pass removes b.
        fs::remove_dir_all(w.proc_dir.path().join("42")).unwrap();
        r.sync().unwrap();
        assert_eq!(r.kernel().take_calls(), vec![Call::Unload("b".into())]);
        assert!(r.state().profiles.is_empty());
    }

    #[test]
    fn foreign_is_refused_and_adoptable_and_drift_is_repaired() {
        let w = World::new();
        let k = FakeKernel::default();
        k.preload("docker-default");
        k.preload("host-web");
        w.write(&k, "d", "profile docker-default {}", &["docker-default"]);
        w.write(&k, "h", "profile host-web {}", &["host-web"]);
        let mut r = w.reconciler(k, false);
        let out = r.sync().unwrap();
        assert_eq!(state_of(&out, "d"), ItemState::Refused);
        assert_eq!(state_of(&out, "h"), ItemState::Loaded);
        assert_eq!(r.kernel().0.lock().unwrap().loaded["docker-default"].1, "foreign", "foreign profile untouched");
        assert!(!out.all_good());

        // Someone removes host-web by hand: the next pass restores it.
        r.kernel().0.lock().unwrap().loaded.remove("host-web");
        r.kernel().take_calls();
        let out = r.sync().unwrap();
        assert_eq!(out.counts.drift_repairs, 1);
        assert_eq!(r.kernel().take_calls(), vec![Call::Load(vec!["h".into()], DesiredMode::Enforce)]);
        // Someone replaces it with other policy: restored too.
        r.kernel().0.lock().unwrap().loaded.get_mut("host-web").unwrap().1 = "tampered".into();
        let out = r.sync().unwrap();
        assert_eq!(out.counts.drift_repairs, 1);
        assert_eq!(out.counts.get("replace", true), 1);
    }

    #[test]
    fn complain_mode_from_config_uses_its_own_batch() {
        let w = World::new();
        let k = FakeKernel::default();
        w.write(&k, "a", "profile a {}", &["a"]);
        w.write(&k, "b", "profile b {}", &["b"]);
        let mut r = w.reconciler(k, false);
        r.settings.policy.modes.insert("b".into(), DesiredMode::Complain);
        let out = r.sync().unwrap();
        let calls = r.kernel().take_calls();
        assert!(calls.contains(&Call::Load(vec!["a".into()], DesiredMode::Enforce)));
        assert!(calls.contains(&Call::Load(vec!["b".into()], DesiredMode::Complain)));
        assert_eq!(out.report.profiles.iter().find(|p| p.name == "b").unwrap().mode.as_deref(), Some("complain"));
    }
}
