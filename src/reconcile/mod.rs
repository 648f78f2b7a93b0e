//! Carries a sync out: read the directory, observe the kernel, compile what changed, plan,
//! load / replace / remove through the [`Kernel`], record ownership ahead of every load and
//! confirm it after, and build the report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::kernel::cache::PolicyCache;
use crate::kernel::confined;
use crate::kernel::listing::top_level;
use crate::kernel::{Compiled, Kernel, KernelError};
use crate::scan::{self, ScanError, ScanOptions, SourceFile};

mod apply;
mod desired;
pub mod identity;
pub mod plan;
pub mod report;
pub mod state;

use plan::{FileInput, Observed, Operation, Plan, Policy, RemovalAction};
pub use report::{FileReport, ItemState, ProfileReport, Report};
use state::{State, StateError, StateStore};

/// What the reconciler needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The profiles directory; also the parser's working directory, so that quoted relative
    /// includes (`include "corp-base"`) resolve beside the profiles.
    pub profiles_dir: PathBuf,
    /// How to read it.
    pub scan: ScanOptions,
    /// Adopt, unload and mode settings.
    pub policy: Policy,
    /// procfs, for the in-use check.
    pub proc_dir: PathBuf,
    /// Where the parser finds includes; `include_dirs` are passed to it as `-I`.
    pub search: identity::SearchPath,
    /// Directories added to the parser's search path (`--include-dir`).
    pub include_dirs: Vec<PathBuf>,
    /// The parser's version, its configuration and the kernel's feature set: part of every
    /// identity, so policy compiled by another parser or for another kernel is never reused.
    pub toolchain: String,
    /// Compiled policy kept across restarts, looked up by [`SourceFile::identity`].
    pub cache: PolicyCache,
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
    /// Nothing could be compiled (the staging area is not writable).
    #[error("cannot compile the changed profiles")]
    Compile(#[source] KernelError),
    /// The state file could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// procfs could not be scanned for confined processes.
    #[error("cannot scan {} for confined processes", path.display())]
    Proc {
        /// [`Settings::proc_dir`]: scanned only when the plan would unload a profile.
        path: PathBuf,
        /// Why listing it, a process's tasks or a task's label failed: a label that cannot be
        /// read is an error, never taken as "unused".
        #[source]
        source: std::io::Error,
    },
}

/// Operations carried out, for metrics and exit codes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// How many of each operation succeeded (`true`) or failed (`false`); a pair never tried is
    /// absent rather than 0. A file that did not compile counts as its failed load or replace.
    pub ops: BTreeMap<(Operation, bool), u64>,
    /// Files reloaded because the kernel lost or changed them.
    pub drift_repairs: u64,
}

impl Counts {
    fn add(&mut self, op: Operation, ok: bool) {
        *self.ops.entry((op, ok)).or_default() += 1;
    }

    /// How many operations of a kind and result.
    pub fn get(&self, op: Operation, ok: bool) -> u64 {
        self.ops.get(&(op, ok)).copied().unwrap_or(0)
    }

    /// Operations that failed, of any kind.
    pub fn failures(&self) -> u64 {
        self.ops.iter().filter(|((_, ok), _)| !ok).map(|(_, n)| n).sum()
    }
}

/// The result of one sync.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What the sync ended with: a load that failed shows as `stale` or `failed`.
    pub plan: Plan,
    /// The operations this sync tried, by result.
    pub counts: Counts,
    /// Every file and profile as the kernel showed them after the sync acted.
    pub report: Report,
    /// The ownership record could not be written: the agent must not claim readiness.
    pub state_error: Option<String>,
}

impl Outcome {
    /// Whether every file has a good version loaded (stale counts as good) and the
    /// ownership record is safely on disk.
    pub fn all_good(&self) -> bool {
        self.report.blocking().next().is_none() && self.state_error.is_none()
    }
}

/// What the plan was made from: the kernel's profiles and the files of this pass, with the
/// compiled policy of those that are to be loaded.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    /// What a sync would do now, per file and per removal; nothing of it has been done yet.
    pub plan: Plan,
    /// Top-level kernel profiles before acting.
    pub observed: BTreeMap<String, Observed>,
    sources: BTreeMap<String, SourceFile>,
    compiled: BTreeMap<String, Compiled>,
    /// Files compiled in this pass that did not compile, with the load they were due.
    compile_failures: BTreeMap<String, Operation>,
    /// Files of the directory that other files include: not loaded on their own.
    include_sources: BTreeSet<String>,
}

/// Owns the kernel handle and the ownership state between syncs.
pub struct Reconciler<K: Kernel> {
    kernel: K,
    store: StateStore,
    state: State,
    /// What is on disk, to know whether a save is due (and to retry a failed one).
    saved: State,
    save_error: Option<String>,
    settings: Settings,
    stop: CancellationToken,
    resolver: identity::Resolver,
    /// Content hashes of unchanged files, so a rescan reads only what changed.
    memo: scan::HashMemo,
    /// The includes of each file of the last pass, for `/profiles` and the watcher.
    includes: BTreeMap<String, Vec<identity::Included>>,
    /// Children a replaced file no longer defines, still in the kernel (see `prune_children`).
    dropped_children: BTreeSet<String>,
}

impl<K: Kernel> Reconciler<K> {
    /// Loads the state; a corrupt state file is an error (never silently "own nothing").
    pub fn new(kernel: K, store: StateStore, settings: Settings) -> Result<Self, SyncError> {
        let state = store.load()?;
        let saved = state.clone();
        let resolver = identity::Resolver::new(settings.search.clone(), settings.scan.max_file_size, settings.toolchain.clone());
        Ok(Reconciler {
            kernel,
            store,
            state,
            saved,
            save_error: None,
            settings,
            stop: CancellationToken::new(),
            resolver,
            memo: scan::HashMemo::default(),
            includes: BTreeMap::new(),
            dropped_children: BTreeSet::new(),
        })
    }

    /// Once `stop` is cancelled, a running sync starts no further parser process (policy
    /// already compiled is still loaded).
    pub fn with_stop(mut self, stop: CancellationToken) -> Self {
        self.stop = stop;
        self
    }

    /// The kernel handle.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The current ownership state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Computes what a sync would do now. Compiles the files whose names are unknown or
    /// that are to be loaded, without touching the kernel.
    pub fn plan(&mut self) -> Result<Planned, SyncError> {
        let entries = scan::scan_with(&self.settings.profiles_dir, &self.settings.scan, &mut self.memo)?;
        let (entries, include_sources) = self.identify(entries);
        let observed = self.observe()?.top;
        self.resolve_pending(&observed);
        let desired::Desired { inputs, compiled, failed } = self.desired(entries, &observed)?;
        let plan = self.compute(&inputs, &observed)?;
        // A file that did not compile was on its way to the kernel: its load failed.
        let compile_failures = failed
            .into_iter()
            .map(|key| {
                let op = if self.state.owned_by(&key).next().is_some() { Operation::Replace } else { Operation::Load };
                (key, op)
            })
            .collect();
        let sources = inputs
            .into_iter()
            .filter_map(|i| match i {
                FileInput::Ready { file, .. } => Some((file.key.clone(), file)),
                FileInput::Broken { .. } => None,
            })
            .collect();
        Ok(Planned { plan, observed, sources, compiled, compile_failures, include_sources })
    }

    /// Directories holding the files the profiles include, outside the profiles directory
    /// (which is watched anyway): an edit there must wake a sync too.
    pub fn include_dirs(&self) -> BTreeSet<PathBuf> {
        let inside = |p: &std::path::Path| p.starts_with(&self.settings.profiles_dir);
        self.includes
            .values()
            .flatten()
            .filter_map(|i| {
                if i.digest.as_deref() == Some(identity::DIRECTORY) {
                    Some(i.path.clone())
                } else {
                    i.path.parent().map(PathBuf::from)
                }
            })
            .filter(|d| !inside(d) && d.is_dir())
            .collect()
    }

    /// One full pass: plan, record intent, act, verify, confirm, report.
    pub fn sync(&mut self) -> Result<Outcome, SyncError> {
        let planned = self.plan()?;
        let mut run = apply::Run::default();
        for op in planned.compile_failures.values() {
            run.counts.add(*op, false);
        }
        let loads = apply::loads(&planned);
        if !loads.is_empty() {
            self.load_all(&loads, &planned.observed, &mut run);
        }
        self.remove_all(&planned.plan.removals, &mut run);
        let look_again = run.touched_kernel || !self.dropped_children.is_empty();
        let after = if look_again { self.observe()? } else { View { top: planned.observed.clone(), ..View::default() } };
        self.confirm(&loads, &after, &mut run);
        self.prune_children(&loads, &after, &mut run);
        self.prune_names(&planned);
        self.persist();
        let plan = apply::settle(planned.plan.clone(), &run, &after.top, &self.state, &self.settings.policy);
        let mut report = report::build(&plan, &self.state, &after.top, &run.removal_errors, now());
        self.describe_includes(&mut report, &planned.include_sources);
        Ok(Outcome { plan, counts: run.counts, report, state_error: self.save_error.clone() })
    }

    /// The plan, with the in-use scan of procfs when a removal depends on it.
    fn compute(&self, inputs: &[FileInput], observed: &BTreeMap<String, Observed>) -> Result<Plan, SyncError> {
        let policy = &self.settings.policy;
        let plan = plan::compute(inputs, observed, &self.state, policy, &BTreeSet::new());
        if !plan.removals.iter().any(|r| r.action == RemovalAction::Unload) {
            return Ok(plan);
        }
        let proc_dir = &self.settings.proc_dir;
        let in_use = confined::in_use(proc_dir).map_err(|source| SyncError::Proc { path: proc_dir.clone(), source })?;
        Ok(plan::compute(inputs, observed, &self.state, policy, &in_use))
    }

    /// Writes the state when it changed since the last successful save. A failure is kept
    /// (the agent reports it and stays unready) and the save is retried at the next sync.
    fn persist(&mut self) {
        if self.state == self.saved {
            return;
        }
        match self.store.save(&self.state) {
            Ok(()) => {
                if self.save_error.take().is_some() {
                    tracing::info!(path = %self.store.path().display(), "the state file is written again");
                }
                self.saved = self.state.clone();
            }
            Err(e) => {
                let message = format!("{:#}", anyhow::Error::from(e));
                tracing::error!(error = %message, "cannot record ownership; retrying at the next sync");
                self.save_error = Some(message);
            }
        }
    }

    /// Keeps cached names only for identities that is in the directory now or still loaded.
    fn prune_names(&mut self, planned: &Planned) {
        let owned = self.state.profiles.values().flat_map(|o| o.identity.iter().chain([&o.sha256]));
        let live: BTreeSet<&String> = planned.sources.values().map(|s| &s.identity).chain(owned).collect();
        self.state.names.retain(|id, _| live.contains(id));
    }

    fn observe(&self) -> Result<View, SyncError> {
        let listing = self.kernel.listing().map_err(SyncError::Observe)?;
        let hashes = self.kernel.hashes().map_err(SyncError::Observe)?;
        let mut view = View::default();
        for p in listing {
            let observed = Observed { mode: p.mode.to_string(), sha1: hashes.get(&p.name).cloned() };
            if top_level(&p.name) == p.name {
                view.top.insert(p.name.clone(), observed.clone());
            }
            view.all.insert(p.name, observed);
        }
        view.hashed = !hashes.is_empty();
        Ok(view)
    }
}

/// The kernel's profiles at one moment.
#[derive(Debug, Clone, Default)]
struct View {
    /// Top-level profiles.
    top: BTreeMap<String, Observed>,
    /// Every profile, children included.
    all: BTreeMap<String, Observed>,
    /// Whether the kernel exposes per-profile hashes.
    hashed: bool,
}

/// Current time, RFC 3339 in UTC with seconds.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
