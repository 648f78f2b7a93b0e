//! The one-shot subcommands an operator runs by hand on a node: `sync`, `diff`, `check`,
//! `status`, `unload` (the others in the submodules).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{HostSettings, ReconcileSettings};
use crate::kernel::listing::top_level;
use crate::kernel::{HostKernel, Kernel};
use crate::preflight::{self, Needs};
use crate::reconcile::plan::{FileAction, Operation, RemovalAction};
use crate::reconcile::state::StateStore;
use crate::reconcile::{ItemState, Reconciler};

/// `denials` and `suggest`: reading audit records and turning them into rules.
pub mod audit;
/// `check`: compile profile files without loading them, a gate for GitOps pipelines.
pub mod check;
/// `admission-policy` and `clear-node-features`: the gates' subcommands.
pub mod gating;
/// `inspect`: names, modes and kernel sha1s of compiled profile files, compared with the kernel.
pub mod inspect;
/// `kubectl apparmor_loader`: the binary invoked as `kubectl-apparmor_loader` asks every agent pod
/// through the API server (feature `kubectl-plugin`; the agent's own client is `run --node-taint`'s, src/gating/taint.rs).
#[cfg(feature = "kubectl-plugin")]
pub mod kubectl;

/// The executable name kubectl looks up for `kubectl apparmor_loader` (and `kubectl apparmor-loader`).
pub const PLUGIN_NAME: &str = "kubectl-apparmor_loader";

/// True when the binary was started under the plugin's name (argv[0], any directory).
pub fn invoked_as_plugin(argv0: &str) -> bool {
    std::path::Path::new(argv0).file_name().is_some_and(|n| n == PLUGIN_NAME)
}

/// How a one-shot command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everything is as it should be.
    Ok,
    /// Some file failed, was refused or did not compile.
    Failures,
}

fn reconciler(host: &HostSettings, r: &ReconcileSettings) -> anyhow::Result<Reconciler<HostKernel>> {
    let kernel = preflight::host_kernel(host, Needs::Load)?;
    let settings = r.reconciler(host, kernel.toolchain())?;
    Ok(Reconciler::new(kernel, StateStore::new(&host.state_dir), settings)?)
}

/// `sync`: one pass on the host's kernel, a line per file on `out`.
pub fn sync(host: &HostSettings, r: &ReconcileSettings, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    sync_on(&mut reconciler(host, r)?, out)
}

/// The body of `sync`, on any kernel (a fake one in the unit tests): one pass, a line per file
/// and per profile left without its file, then the counts.
pub fn sync_on<K: Kernel>(rec: &mut Reconciler<K>, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let outcome = rec.sync()?;
    for f in &outcome.report.files {
        match &f.error {
            Some(e) => writeln!(out, "{:<8} {}: {e}", f.state.as_str(), f.file)?,
            None => writeln!(out, "{:<8} {} ({})", f.state.as_str(), f.file, f.names.join(", "))?,
        }
    }
    for p in outcome.report.profiles.iter().filter(|p| matches!(p.state, ItemState::Orphaned | ItemState::InUse)) {
        writeln!(out, "{:<8} {} (file {} is gone)", p.state.as_str(), p.name, p.file.as_deref().unwrap_or("?"))?;
    }
    let c = &outcome.counts;
    writeln!(
        out,
        "loaded {}, replaced {}, removed {}, failed {}, drift repaired {}",
        c.get(Operation::Load, true),
        c.get(Operation::Replace, true),
        c.get(Operation::Remove, true),
        c.failures(),
        c.drift_repairs
    )?;
    Ok(if outcome.all_good() { Verdict::Ok } else { Verdict::Failures })
}

/// `diff`: the plan for the host's kernel, without acting, on `out`.
pub fn diff(host: &HostSettings, r: &ReconcileSettings, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    diff_on(&mut reconciler(host, r)?, out)
}

/// The body of `diff`, on any kernel: a line per file and per removal; never a failure, since
/// nothing was tried.
pub fn diff_on<K: Kernel>(rec: &mut Reconciler<K>, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let plan = rec.plan()?.plan;
    for f in &plan.files {
        let names = f.names.join(", ");
        match &f.action {
            FileAction::Load { why } => writeln!(out, "load      {} [{names}] ({why:?}, {})", f.file, f.mode.as_str())?,
            FileAction::Replace { why } => writeln!(out, "replace   {} [{names}] ({why:?}, {})", f.file, f.mode.as_str())?,
            FileAction::Unchanged => writeln!(out, "unchanged {} [{names}]", f.file)?,
            FileAction::Refuse { reason } => writeln!(out, "refuse    {reason}")?,
            FileAction::Stale { error } => writeln!(out, "stale     {error} (the last good version stays loaded)")?,
            FileAction::Failed { error } => writeln!(out, "failed    {error}")?,
        }
    }
    for rm in &plan.removals {
        let what = match rm.action {
            RemovalAction::Orphan => "orphan   ",
            RemovalAction::Unload => "unload   ",
            RemovalAction::InUse => "in-use   ",
            RemovalAction::Forget => "forget   ",
        };
        writeln!(out, "{what} {} (file {} is gone)", rm.name, rm.file)?;
    }
    if !plan.changes_kernel() {
        writeln!(out, "nothing to change in the kernel")?;
    }
    Ok(Verdict::Ok)
}

#[derive(Serialize)]
struct StatusRow {
    name: String,
    mode: String,
    managed: bool,
    /// `loaded` for a profile apparmor-loader loaded, `foreign` otherwise.
    state: ItemState,
    file: Option<String>,
    sha256: Option<String>,
    loaded_at: Option<String>,
}

/// `status`: the host kernel's profiles, managed or foreign, on `out`.
pub fn status(host: &HostSettings, json: bool, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let kernel = preflight::host_kernel(host, Needs::List)?;
    status_on(&kernel, &StateStore::new(&host.state_dir), json, out)
}

/// The body of `status`: every profile of `kernel`, owned when the state file names its
/// top-level profile; a table with a count line, or a JSON array.
pub fn status_on(kernel: &impl Kernel, store: &StateStore, json: bool, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let listing = kernel.listing()?;
    let state = store.load()?;
    let rows: Vec<StatusRow> = listing
        .iter()
        .map(|p| {
            let owned = state.profiles.get(top_level(&p.name));
            StatusRow {
                name: p.name.clone(),
                mode: p.mode.to_string(),
                managed: owned.is_some(),
                state: if owned.is_some() { ItemState::Loaded } else { ItemState::Foreign },
                file: owned.map(|o| o.file.clone()),
                sha256: owned.map(|o| o.sha256.clone()),
                loaded_at: owned.map(|o| o.loaded_at.clone()),
            }
        })
        .collect();
    if json {
        serde_json::to_writer_pretty(&mut *out, &rows)?;
        writeln!(out)?;
    } else {
        let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
        writeln!(out, "{:<width$}  {:<10}  {:<8}  FILE", "NAME", "MODE", "OWNER")?;
        for r in &rows {
            let owner = if r.managed { "managed" } else { "foreign" };
            writeln!(out, "{:<width$}  {:<10}  {:<8}  {}", r.name, r.mode, owner, r.file.as_deref().unwrap_or("-"))?;
        }
        let managed = rows.iter().filter(|r| r.managed).count();
        writeln!(out, "{} profiles, {managed} managed by apparmor-loader", rows.len())?;
    }
    Ok(Verdict::Ok)
}

/// `unload`: remove profiles by name; foreign ones and ones still in use need `--force`. A line
/// per removed profile on `out`, an `error:` line per refusal on `err` (stderr).
pub fn unload(
    host: &HostSettings,
    names: &[String],
    force: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Verdict> {
    let kernel = preflight::host_kernel(host, Needs::Load)?;
    let request = UnloadRequest { names, force, proc_dir: &host.proc_dir };
    unload_on(&kernel, &StateStore::new(&host.state_dir), &request, out, err)
}

/// What `unload` was asked, and where to find the processes a removal would unconfine.
#[derive(Debug, Clone, Copy)]
pub struct UnloadRequest<'a> {
    /// The profiles to remove, in order.
    pub names: &'a [String],
    /// Remove foreign and in-use profiles too.
    pub force: bool,
    /// procfs, scanned for the profiles that still confine a task (`kernel::confined::in_use`).
    pub proc_dir: &'a Path,
}

/// The body of `unload`, on any kernel: a `removed` line on `out` per profile removed, an
/// `error:` line on `err` per refusal (the others are still removed); the state file forgets
/// what went.
pub fn unload_on(
    kernel: &impl Kernel,
    store: &StateStore,
    request: &UnloadRequest<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Verdict> {
    let mut state = store.load()?;
    let loaded: BTreeSet<String> = kernel.listing()?.into_iter().map(|p| p.name).collect();
    let proc_dir = request.proc_dir;
    let in_use = crate::kernel::confined::in_use(proc_dir).with_context(|| format!("cannot scan {}", proc_dir.display()))?;
    let outcome = remove_each(kernel, &mut state, request, (&loaded, &in_use), out, err);
    // Saved whatever happened after the first removal (a later one refused, a closed stdout): a
    // profile gone from the kernel but still in the state would later be taken for ours.
    match (outcome, store.save(&state)) {
        (outcome, Ok(())) => outcome,
        (Ok(_), Err(saving)) => Err(saving.into()),
        (Err(e), Err(saving)) => Err(anyhow::Error::from(saving).context(format!("{e:#}; the state was not saved either"))),
    }
}

/// `unload`'s loop: removes each name it may from the kernel and from `state`.
fn remove_each(
    kernel: &impl Kernel,
    state: &mut crate::reconcile::state::State,
    request: &UnloadRequest<'_>,
    (loaded, in_use): (&BTreeSet<String>, &BTreeSet<String>),
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict::Ok;
    for name in request.names {
        let refusal = if !loaded.contains(name) {
            Some(format!("{name}: not loaded in the kernel"))
        } else if !request.force && !state.profiles.contains_key(name) {
            Some(format!("{name}: not loaded by apparmor-loader (foreign); pass --force to remove it anyway"))
        } else if !request.force && in_use.contains(name) {
            Some(format!(
                "{name}: processes are still confined by it and would become unconfined; pass --force to remove it anyway"
            ))
        } else {
            None
        };
        if let Some(r) = refusal {
            writeln!(err, "error: {r}")?;
            verdict = Verdict::Failures;
            continue;
        }
        kernel.unload(name).with_context(|| format!("cannot remove {name}"))?;
        state.profiles.remove(name);
        writeln!(out, "removed {name}")?;
    }
    Ok(verdict)
}

/// `denials`: print records from the audit source on `out`; a token cancelled by SIGINT/SIGTERM ends `--follow`.
pub fn denials(args: &audit::DenialsArgs, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let stop = CancellationToken::new();
    crate::signals::cancel_on_signals(&stop, None)?;
    audit::print_denials(args, out, &stop)?;
    Ok(Verdict::Ok)
}

/// `suggest`: print on `out` the rules that would allow the recorded denials of one profile.
pub fn suggest(args: &audit::SuggestArgs, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let stop = CancellationToken::new();
    crate::signals::cancel_on_signals(&stop, None)?;
    audit::run_suggest(args, out, &stop)?;
    Ok(Verdict::Ok)
}

#[cfg(test)]
mod tests;
