//! Acting on the plan: write the intent, load, verify against the kernel, confirm ownership;
//! remove; and, after a restart, settle intents a crash left unconfirmed.

use std::collections::{BTreeMap, BTreeSet};

use super::plan::{self, FilePlan, Observed, Operation, Plan, Policy, Removal, RemovalAction, Why};
use super::state::{Owned, Pending, State};
use super::{Counts, Planned, Reconciler, View, now};
use crate::kernel::confined;
use crate::kernel::listing::top_level;
use crate::kernel::{Compiled, Kernel, LoadKind};
use crate::scan::SourceFile;

/// What acting on one plan did.
#[derive(Debug, Default)]
pub(super) struct Run {
    pub counts: Counts,
    /// Files whose load failed or did not verify, with the error naming the file.
    pub failed: BTreeMap<String, String>,
    /// Files whose policy the kernel accepted (before verification).
    pub loaded: Vec<String>,
    /// Owned profiles whose removal failed.
    pub removal_errors: BTreeMap<String, String>,
    pub touched_kernel: bool,
}

/// A planned load with what it needs.
pub(super) struct Load<'a> {
    plan: &'a FilePlan,
    op: Operation,
    why: Why,
    source: &'a SourceFile,
    compiled: &'a Compiled,
}

/// The loads of a plan, in file order.
pub(super) fn loads(planned: &Planned) -> Vec<Load<'_>> {
    planned
        .plan
        .files
        .iter()
        .filter_map(|fp| {
            let (op, why) = fp.action.operation()?;
            let source = planned.sources.get(&fp.file)?;
            let compiled = planned.compiled.get(&fp.file)?;
            Some(Load { plan: fp, op, why, source, compiled })
        })
        .collect()
}

impl<K: Kernel> Reconciler<K> {
    /// Records every load's intent on disk, then hands each compiled file to the kernel. If
    /// the intent cannot be written, nothing is loaded: a load the agent cannot record would
    /// be foreign to it after a restart.
    pub(super) fn load_all(&mut self, loads: &[Load<'_>], observed: &BTreeMap<String, Observed>, run: &mut Run) {
        let at = now();
        for l in loads {
            for p in l.compiled.profiles.iter().filter(|p| !p.name.contains("//")) {
                let owned = Owned {
                    file: l.plan.file.clone(),
                    sha256: l.source.sha256.clone(),
                    identity: Some(l.source.identity.clone()),
                    loaded_at: at.clone(),
                    mode: l.plan.mode.as_str().to_string(),
                    kernel_mode: Some(p.mode.to_string()),
                    kernel_sha1: Some(p.sha1.clone()),
                };
                self.state.pending.insert(
                    p.name.clone(),
                    Pending { owned, expected_sha1: Some(p.sha1.clone()), expected_sha256: Some(p.sha256.clone()) },
                );
            }
        }
        self.persist();
        if let Some(e) = self.save_error.clone() {
            self.state.pending.clear();
            for l in loads {
                run.counts.add(l.op, false);
                run.failed.insert(l.plan.file.clone(), format!("not loaded: the ownership record cannot be written ({e})"));
            }
            return;
        }
        let appeared = self.appeared_since_planning(loads, observed);
        // A shutdown does not stop loads of policy already compiled: they are quick writes,
        // and finishing them leaves the kernel as this pass intended (no new parser starts).
        for l in loads {
            if let Some(why) = appeared.get(&l.plan.file) {
                tracing::error!(file = %l.source.shown.display(), error = %why, "not loaded");
                run.counts.add(l.op, false);
                run.failed.insert(l.plan.file.clone(), why.clone());
                continue;
            }
            let kind = if l.op == Operation::Load { LoadKind::New } else { LoadKind::Replace };
            run.touched_kernel = true;
            match self.kernel.load(&l.source.shown, l.compiled, kind) {
                Ok(()) => run.loaded.push(l.plan.file.clone()),
                Err(e) => {
                    let message = format!("{:#}", anyhow::Error::from(e));
                    tracing::error!(file = %l.source.shown.display(), error = %message, "the kernel did not take the file; it keeps its previous version");
                    run.failed.insert(l.plan.file.clone(), message);
                }
            }
        }
    }

    /// Files to replace that also add a name which someone else loaded while they compiled
    /// (compiling takes seconds). `.load` refuses an existing name atomically, but a file that
    /// replaces profiles of ours goes to `.replace`, which would take the newcomer over: the
    /// kernel is asked once more just before the writes. Without an answer, none of them loads.
    fn appeared_since_planning(&self, loads: &[Load<'_>], observed: &BTreeMap<String, Observed>) -> BTreeMap<String, String> {
        let adds_names = |l: &&Load<'_>| {
            l.op == Operation::Replace
                && l.compiled.profiles.iter().any(|p| !p.name.contains("//") && !observed.contains_key(&p.name))
        };
        let at_risk: Vec<&Load<'_>> = loads.iter().filter(adds_names).collect();
        if at_risk.is_empty() {
            return BTreeMap::new();
        }
        let now: Result<BTreeSet<String>, _> = self.kernel.listing().map(|l| l.into_iter().map(|p| p.name).collect());
        let mut out = BTreeMap::new();
        for l in at_risk {
            let file = l.source.shown.display();
            let new = l.compiled.profiles.iter().filter(|p| !p.name.contains("//") && !observed.contains_key(&p.name));
            let why = match &now {
                Err(e) => Some(format!("{file}: not loaded: cannot read the kernel's profiles just before the load: {e}")),
                Ok(now) => new.map(|p| &p.name).find(|n| now.contains(*n)).map(|n| {
                    format!("{file}: profile {n:?} appeared in the kernel while the file was compiled; it is not ours, so nothing was loaded")
                }),
            };
            if let Some(why) = why {
                out.insert(l.plan.file.clone(), why);
            }
        }
        out
    }

    /// After the loads: each file the kernel accepted must now show every profile of its
    /// policy, in the expected mode, with the expected hash. Ownership is recorded from what
    /// the kernel shows, never from what was asked.
    pub(super) fn confirm(&mut self, loads: &[Load<'_>], after: &View, run: &mut Run) {
        for l in loads {
            let accepted = run.loaded.contains(&l.plan.file);
            let verdict = if accepted { verify(l, after) } else { Err(String::new()) };
            if let Err(why) = &verdict {
                if accepted {
                    tracing::error!(file = %l.source.shown.display(), error = %why, "the kernel does not show what was loaded");
                    run.failed.insert(l.plan.file.clone(), why.clone());
                }
            }
            if accepted || run.failed.contains_key(&l.plan.file) {
                run.counts.add(l.op, verdict.is_ok());
            }
            if verdict.is_ok() {
                self.log_loaded(l);
                if l.why == Why::Drift {
                    run.counts.drift_repairs += 1;
                }
            }
            for p in l.compiled.profiles.iter().filter(|p| !p.name.contains("//")) {
                let Some(pending) = self.state.pending.remove(&p.name) else { continue };
                // Even a load reported as failed counts as ours when the kernel shows exactly
                // its policy: the write reached the kernel.
                let k = after.top.get(&p.name);
                if verdict.is_ok() || k.and_then(|k| k.sha1.as_deref()).is_some_and(|h| pending.expects(h)) {
                    let mut owned = pending.owned;
                    owned.kernel_mode = k.map(|k| k.mode.clone());
                    owned.kernel_sha1 = k.and_then(|k| k.sha1.clone());
                    self.state.profiles.insert(p.name.clone(), owned);
                }
            }
        }
    }

    /// Children (hats, nested profiles) that a replaced file no longer defines. The kernel
    /// carries a replaced profile's children over to the new one, so without this a hat deleted
    /// from the file would go on enforcing its old rules with no file describing it. Each is
    /// removed once no task is confined by it (or by one of its own children); until then it is
    /// retried at every sync.
    pub(super) fn prune_children(&mut self, loads: &[Load<'_>], after: &View, run: &mut Run) {
        for l in loads.iter().filter(|l| l.op == Operation::Replace && run.loaded.contains(&l.plan.file)) {
            if run.failed.contains_key(&l.plan.file) {
                continue;
            }
            let defined: BTreeSet<&str> = l.compiled.profiles.iter().map(|p| p.name.as_str()).collect();
            let tops: BTreeSet<&str> = defined.iter().map(|n| top_level(n)).collect();
            let dropped =
                after.all.keys().filter(|k| k.contains("//") && tops.contains(top_level(k)) && !defined.contains(k.as_str()));
            self.dropped_children.extend(dropped.cloned());
        }
        self.dropped_children.retain(|name| after.all.contains_key(name));
        if self.dropped_children.is_empty() {
            return;
        }
        let in_use = match confined::profiles_in_use(&self.settings.proc_dir) {
            Ok(in_use) => in_use,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether removed hats still confine a task; they stay for now");
                return;
            }
        };
        for name in self.dropped_children.clone() {
            if !self.dropped_children.contains(&name) {
                continue; // went with its parent
            }
            let nested = format!("{name}//");
            if in_use.iter().any(|label| *label == name || label.starts_with(&nested)) {
                tracing::info!(profile = %name, "its file no longer defines it, but a task is confined by it; removed once none is");
                continue;
            }
            run.touched_kernel = true;
            match self.kernel.unload(&name) {
                Ok(()) => {
                    tracing::info!(profile = %name, "removed: its file no longer defines it");
                    run.counts.add(Operation::Remove, true);
                    self.dropped_children.retain(|n| *n != name && !n.starts_with(&nested));
                }
                Err(e) => {
                    run.counts.add(Operation::Remove, false);
                    tracing::error!(profile = %name, error = %format!("{:#}", anyhow::Error::from(e)), "cannot remove a child its file no longer defines");
                }
            }
        }
    }

    fn log_loaded(&self, l: &Load<'_>) {
        let file = l.source.shown.display();
        if l.why == Why::Drift {
            tracing::warn!(%file, names = ?l.plan.names, "restored a profile that was removed or replaced behind our back");
        }
        let word = if l.op == Operation::Load { "loaded" } else { "replaced" };
        tracing::info!(%file, names = ?l.plan.names, mode = l.plan.mode.as_str(), why = ?l.why, "{word}");
    }

    /// Removals: unload, forget, or leave.
    pub(super) fn remove_all(&mut self, removals: &[Removal], run: &mut Run) {
        for r in removals {
            match r.action {
                RemovalAction::Unload => {
                    run.touched_kernel = true;
                    match self.kernel.unload(&r.name) {
                        Ok(()) => {
                            run.counts.add(Operation::Remove, true);
                            tracing::info!(profile = %r.name, file = %r.file, "removed: its file is gone");
                            self.state.profiles.remove(&r.name);
                        }
                        Err(e) => {
                            run.counts.add(Operation::Remove, false);
                            let message = format!("{:#}", anyhow::Error::from(e));
                            tracing::error!(profile = %r.name, error = %message, "cannot remove profile");
                            run.removal_errors.insert(r.name.clone(), message);
                        }
                    }
                }
                RemovalAction::Forget => {
                    tracing::info!(profile = %r.name, file = %r.file, "forgot a profile whose file and kernel entry are both gone");
                    self.state.profiles.remove(&r.name);
                }
                RemovalAction::InUse => {
                    tracing::info!(profile = %r.name, "file is gone but processes are still confined by the profile; removal retried later")
                }
                RemovalAction::Orphan => {}
            }
        }
    }

    /// Intents a crash left behind: a profile the kernel shows with exactly the policy the
    /// intent recorded was loaded by us; anything else is left as it was (an owned profile
    /// stays owned, a name we never confirmed stays foreign).
    pub(super) fn resolve_pending(&mut self, observed: &BTreeMap<String, Observed>) {
        for (name, p) in std::mem::take(&mut self.state.pending) {
            let ours = match (observed.get(&name), &p.expected_sha1) {
                (Some(Observed { sha1: Some(h), .. }), Some(_)) => p.expects(h),
                // A kernel without policy hashes: the name was absent or ours when the load
                // was planned, so what is there now is what we loaded.
                (Some(k), _) => k.sha1.is_none(),
                (None, _) => false,
            };
            if ours {
                tracing::info!(profile = %name, file = %p.owned.file, "confirmed a load that a restart interrupted");
                let mut owned = p.owned;
                owned.kernel_mode = observed.get(&name).map(|k| k.mode.clone());
                owned.kernel_sha1 = observed.get(&name).and_then(|k| k.sha1.clone());
                self.state.profiles.insert(name, owned);
            } else {
                tracing::info!(profile = %name, file = %p.owned.file, "an interrupted load did not reach the kernel; nothing claimed");
            }
        }
    }
}

/// The kernel shows every profile of the file, in the mode and with the hash its policy has.
fn verify(l: &Load<'_>, after: &View) -> Result<(), String> {
    let file = l.source.shown.display();
    for p in &l.compiled.profiles {
        let Some(k) = after.all.get(&p.name) else {
            return Err(format!("{file}: the kernel accepted the policy but does not list profile {:?}", p.name));
        };
        if k.mode != p.mode.to_string() {
            return Err(format!("{file}: the kernel lists profile {:?} in mode {}, the policy says {}", p.name, k.mode, p.mode));
        }
        // Every top-level profile has a hash on a kernel that hashes policy; a child's is
        // checked where the kernel shows one.
        let must_hash = after.hashed && !p.name.contains("//");
        if (must_hash || k.sha1.is_some()) && !k.sha1.as_deref().is_some_and(|h| p.is_kernel_hash(h)) {
            return Err(format!(
                "{file}: the kernel's hash of profile {:?} is {}, not the {} of the policy that was loaded",
                p.name,
                k.sha1.as_deref().unwrap_or("missing"),
                p.hash_like(k.sha1.as_deref())
            ));
        }
    }
    Ok(())
}

/// The plan as the sync ends: files whose load failed are `stale` when their last good
/// version is still in the kernel, `failed` otherwise (the same rule the plan applies to a
/// file that does not compile); a load never attempted (shutdown came first) likewise.
pub(super) fn settle(mut plan: Plan, run: &Run, after: &BTreeMap<String, Observed>, state: &State, policy: &Policy) -> Plan {
    for fp in &mut plan.files {
        if fp.action.operation().is_none() {
            continue;
        }
        let error = match run.failed.get(&fp.file) {
            Some(e) => e.clone(),
            None if run.loaded.contains(&fp.file) => continue,
            None => "not loaded: the agent is shutting down".to_string(),
        };
        *fp = plan::broken(&fp.file, error, after, state, policy);
    }
    plan
}
