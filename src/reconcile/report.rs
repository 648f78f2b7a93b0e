//! What a sync reports (`/profiles`, `/readyz`, the metrics, the one-shot commands), built
//! by a pure function from the final plan, the ownership state and the kernel afterwards.

use std::collections::BTreeMap;

use serde::Serialize;

use super::plan::{FileAction, Observed, Plan, RemovalAction};
use super::state::State;

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
    /// A file of the directory that other files include (an abstraction shipped beside the
    /// profiles): not loaded on its own; an edit reloads the files that include it.
    Include,
}

impl ItemState {
    /// Every state, so that metrics and [`Report::counts`] show a 0 for the states no profile is in.
    pub const ALL: [ItemState; 8] = [
        ItemState::Loaded,
        ItemState::Stale,
        ItemState::Failed,
        ItemState::Refused,
        ItemState::Orphaned,
        ItemState::InUse,
        ItemState::Foreign,
        ItemState::Include,
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
            ItemState::Include => "include",
        }
    }

    /// The state a file's final action leaves it in.
    fn of(action: &FileAction) -> ItemState {
        match action {
            FileAction::Load { .. } | FileAction::Replace { .. } | FileAction::Unchanged => ItemState::Loaded,
            FileAction::Refuse { .. } => ItemState::Refused,
            FileAction::Stale { .. } => ItemState::Stale,
            FileAction::Failed { .. } => ItemState::Failed,
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
    /// For a profile a file defines, that file's state; `orphaned` or `in-use` once its file is
    /// gone; `foreign` for a kernel profile the agent does not own.
    pub state: ItemState,
    /// Key of the file the ownership record says loaded it; for a refused profile, the file that
    /// wanted the name; `null` when the agent never loaded it (foreign, or a first load failed).
    pub file: Option<String>,
    /// sha256 of the loaded content.
    pub sha256: Option<String>,
    /// When the agent loaded it.
    pub loaded_at: Option<String>,
    /// The latest error for it (parser message with file and line).
    pub error: Option<String>,
}

/// Hex digits of a profile's sha256 kept where versions are compared at a glance (the `digest` label
/// of `apparmor_loader_profile_info`, the kubectl plugin's matrix): enough to tell versions apart and
/// to match `/profiles` (whose `sha256` starts with them).
pub const DIGEST_LEN: usize = 12;

/// The `digest`/`mode` value of a profile without one (a failed or refused profile has neither).
pub const NONE: &str = "none";

/// The first [`DIGEST_LEN`] characters of a hex digest (all of it when shorter).
pub fn short_digest(sha256: &str) -> &str {
    sha256.get(..DIGEST_LEN).unwrap_or(sha256)
}

/// One file in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// Path relative to the profiles directory ([`SourceFile::key`](crate::scan::SourceFile::key)).
    pub file: String,
    /// `loaded`, `stale`, `failed` or `refused`, as the sync left it; `include` for a file other
    /// files include.
    pub state: ItemState,
    /// The error, naming the file.
    pub error: Option<String>,
    /// Profiles it defines (for a broken file: those of its last good version).
    pub names: Vec<String>,
    /// The files it includes, recursively, where the parser finds them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub includes: Vec<String>,
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

/// Builds the report. `plan` is the *final* plan (a load that failed is already turned into
/// `stale` or `failed`), `kernel` the top-level profiles after the sync, `removal_errors` the
/// owned profiles whose removal failed, with the error.
pub fn build(
    plan: &Plan,
    state: &State,
    kernel: &BTreeMap<String, Observed>,
    removal_errors: &BTreeMap<String, String>,
    now: String,
) -> Report {
    let owned_report = |name: &str, item: ItemState, error: Option<String>| owned(state, kernel, name, item, error);
    let mut files = Vec::with_capacity(plan.files.len());
    let mut profiles: BTreeMap<String, ProfileReport> = BTreeMap::new();
    for fp in &plan.files {
        let item = ItemState::of(&fp.action);
        let error = match &fp.action {
            FileAction::Refuse { reason } => Some(reason.clone()),
            FileAction::Stale { error } | FileAction::Failed { error } => Some(error.clone()),
            _ => None,
        };
        for name in &fp.names {
            let mut p = owned_report(name, item, error.clone());
            if item == ItemState::Refused {
                // Not ours: show the file that wanted it, nothing of the foreign profile's provenance.
                p.file = Some(fp.file.clone());
                p.sha256 = None;
                p.loaded_at = None;
            }
            profiles.insert(name.clone(), p);
        }
        files.push(FileReport { file: fp.file.clone(), state: item, error, names: fp.names.clone(), includes: Vec::new() });
    }
    for r in &plan.removals {
        let item = match r.action {
            RemovalAction::Orphan => ItemState::Orphaned,
            RemovalAction::InUse => ItemState::InUse,
            RemovalAction::Unload | RemovalAction::Forget => continue,
        };
        if state.profiles.contains_key(&r.name) {
            profiles.insert(r.name.clone(), owned_report(&r.name, item, None));
        }
    }
    add_unplanned(&mut profiles, state, kernel, removal_errors);
    Report { last_sync: Some(now), profiles: profiles.into_values().collect(), files }
}

/// A profile the agent owns, as the ownership record and the kernel show it.
fn owned(
    state: &State,
    kernel: &BTreeMap<String, Observed>,
    name: &str,
    item: ItemState,
    error: Option<String>,
) -> ProfileReport {
    let o = state.profiles.get(name);
    ProfileReport {
        name: name.to_string(),
        mode: kernel.get(name).map(|k| k.mode.clone()),
        state: item,
        file: o.map(|o| o.file.clone()),
        sha256: o.map(|o| o.sha256.clone()),
        loaded_at: o.map(|o| o.loaded_at.clone()),
        error,
    }
}

/// The profiles no plan item covers: owned ones still loaded (orphans, a failed removal among
/// them) and the kernel's foreign ones.
fn add_unplanned(
    profiles: &mut BTreeMap<String, ProfileReport>,
    state: &State,
    kernel: &BTreeMap<String, Observed>,
    removal_errors: &BTreeMap<String, String>,
) {
    for name in state.profiles.keys() {
        // A failed removal leaves the profile owned and loaded.
        if !profiles.contains_key(name) && kernel.contains_key(name) {
            profiles.insert(name.clone(), owned(state, kernel, name, ItemState::Orphaned, removal_errors.get(name).cloned()));
        }
    }
    for (name, k) in kernel {
        if !profiles.contains_key(name) && !state.profiles.contains_key(name) {
            let foreign = ProfileReport {
                name: name.clone(),
                mode: Some(k.mode.clone()),
                state: ItemState::Foreign,
                file: None,
                sha256: None,
                loaded_at: None,
                error: None,
            };
            profiles.insert(name.clone(), foreign);
        }
    }
}
