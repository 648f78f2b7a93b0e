//! Reconciliation as a pure function: from the *desired* state (the directory), the
//! *observed* state (the kernel) and the *owned* state (what the agent loaded before),
//! decide for every file and every owned profile what to do.
//!
//! No I/O happens here; [`crate::reconcile`] carries the plan out.

use std::collections::{BTreeMap, BTreeSet};

use globset::GlobSet;
use serde::Serialize;

use super::state::{Owned, State};
use crate::kernel::DesiredMode;
use crate::scan::SourceFile;

/// A file of the directory, as far as reading and naming it went.
#[derive(Debug, Clone)]
pub enum FileInput {
    /// Read and named by the parser.
    Ready {
        /// The scanned file, its [`SourceFile::identity`] already covering its includes.
        file: SourceFile,
        /// Top-level profile names it defines, as the parser compiled them.
        names: Vec<String>,
    },
    /// Unusable now: rejected by the scan or rejected by the parser.
    Broken {
        /// Path relative to the profiles directory, as [`SourceFile::key`].
        key: String,
        /// The error, naming the file (and line where the parser gave one).
        error: String,
    },
}

/// A top-level profile in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The mode the kernel's `profiles` listing shows in parentheses: `enforce`, `complain`, …
    pub mode: String,
    /// The kernel's hash of the loaded policy, where securityfs exposes it (SHA-1, or SHA-256
    /// on Linux 6.8 and later).
    pub sha1: Option<String>,
}

/// Settings that shape the plan.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Foreign names that may be taken over.
    pub adopt: GlobSet,
    /// Remove profiles whose file is gone.
    pub unload_removed: bool,
    /// Mode for names without an entry in `modes`.
    pub default_mode: DesiredMode,
    /// Per-profile modes from the config file.
    pub modes: BTreeMap<String, DesiredMode>,
}

impl Policy {
    /// The mode a file is loaded in: complain when any of its profiles is set to complain,
    /// because `-C` applies to the whole file.
    pub fn file_mode(&self, names: &[String]) -> DesiredMode {
        let any_complain = names.iter().any(|n| self.modes.get(n).copied().unwrap_or(self.default_mode) == DesiredMode::Complain);
        if any_complain { DesiredMode::Complain } else { DesiredMode::Enforce }
    }
}

/// Why a file is (re)loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    /// Never loaded by the agent.
    New,
    /// What it compiles from (content, includes, toolchain) differs from what the agent loaded,
    /// or it now defines a profile it did not define then.
    Changed,
    /// The mode it is to be loaded in ([`Policy::file_mode`]) is not the one it was loaded in.
    ModeChanged,
    /// The kernel lost it or has another version than the one the agent loaded.
    Drift,
    /// A foreign profile of that name is taken over (`--adopt`).
    Adopt,
}

/// A change the agent makes to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// A file none of whose profiles was in the kernel.
    Load,
    /// A file some of whose profiles were in the kernel.
    Replace,
    /// An owned profile taken out of the kernel.
    Remove,
}

impl Operation {
    /// Every operation, for metrics.
    pub const ALL: [Operation; 3] = [Operation::Load, Operation::Replace, Operation::Remove];

    /// Metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Load => "load",
            Operation::Replace => "replace",
            Operation::Remove => "remove",
        }
    }
}

/// What happens to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum FileAction {
    /// Load: none of its profiles is in the kernel.
    Load {
        /// What makes the load necessary; [`Why::Drift`] when the kernel lost the profiles.
        why: Why,
    },
    /// Replace: some of its profiles are in the kernel.
    Replace {
        /// What makes the replace necessary.
        why: Why,
    },
    /// Nothing to do: the agent loaded this identity in this mode, and the kernel still shows
    /// what it loaded.
    Unchanged,
    /// Not loaded, on purpose; nothing in the kernel is touched.
    Refuse {
        /// A sentence naming the file and the profile.
        reason: String,
    },
    /// Broken now; the last good version stays loaded.
    Stale {
        /// The error naming the file.
        error: String,
    },
    /// Broken and nothing good was ever loaded.
    Failed {
        /// The error naming the file.
        error: String,
    },
}

impl FileAction {
    /// The kernel change this action makes, with its reason.
    pub fn operation(&self) -> Option<(Operation, Why)> {
        match self {
            FileAction::Load { why } => Some((Operation::Load, *why)),
            FileAction::Replace { why } => Some((Operation::Replace, *why)),
            _ => None,
        }
    }
}

/// The plan for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilePlan {
    /// Path relative to the profiles directory, as [`SourceFile::key`].
    pub file: String,
    /// Top-level names it defines (for a broken file: those of its last good version).
    pub names: Vec<String>,
    /// Mode it is loaded in.
    pub mode: DesiredMode,
    /// What happens to it; serialized flat, as an `action` field beside the others.
    #[serde(flatten)]
    pub action: FileAction,
}

/// What happens to an owned profile no file defines any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemovalAction {
    /// Left loaded (the default): reported `orphaned`.
    Orphan,
    /// Removed from the kernel (`--unload-removed`).
    Unload,
    /// Would be removed, but processes are still confined by it; retried later.
    InUse,
    /// Already gone from the kernel: only forgotten.
    Forget,
}

/// The plan for one owned profile whose file no longer defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// Top-level profile name, as the ownership record holds it.
    pub name: String,
    /// Key of the file that defined it, from the ownership record.
    pub file: String,
    /// Decided by whether the kernel still has it, `--unload-removed` and the in-use scan, in
    /// that order.
    pub action: RemovalAction,
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// One entry per file, sorted by key.
    pub files: Vec<FilePlan>,
    /// Owned profiles left without a file.
    pub removals: Vec<Removal>,
}

impl Plan {
    /// Whether carrying the plan out touches the kernel.
    pub fn changes_kernel(&self) -> bool {
        self.files.iter().any(|f| matches!(f.action, FileAction::Load { .. } | FileAction::Replace { .. }))
            || self.removals.iter().any(|r| r.action == RemovalAction::Unload)
    }
}

/// Computes the plan. `observed` holds top-level profiles only; `in_use` the names that
/// confine at least one process.
pub fn compute(
    inputs: &[FileInput],
    observed: &BTreeMap<String, Observed>,
    state: &State,
    policy: &Policy,
    in_use: &BTreeSet<String>,
) -> Plan {
    let claims = claims(inputs, state);
    let mut files = Vec::with_capacity(inputs.len());
    for input in inputs {
        files.push(plan_file(input, &claims, observed, state, policy));
    }
    let kept: BTreeSet<&str> = files
        .iter()
        .filter(|f| !matches!(f.action, FileAction::Refuse { .. } | FileAction::Failed { .. }))
        .flat_map(|f| f.names.iter().map(String::as_str))
        .collect();
    let removals = state
        .profiles
        .iter()
        .filter(|(name, _)| !kept.contains(name.as_str()))
        .map(|(name, owned)| {
            let action = if !observed.contains_key(name) {
                RemovalAction::Forget
            } else if !policy.unload_removed {
                RemovalAction::Orphan
            } else if in_use.contains(name) {
                RemovalAction::InUse
            } else {
                RemovalAction::Unload
            };
            Removal { name: name.clone(), file: owned.file.clone(), action }
        })
        .collect();
    Plan { files, removals }
}

/// Which file gets each name when several define it: the file that already owns it,
/// otherwise the first by key.
fn claims<'a>(inputs: &'a [FileInput], state: &State) -> BTreeMap<&'a str, &'a str> {
    let mut claims: BTreeMap<&str, &str> = BTreeMap::new();
    for input in inputs {
        if let FileInput::Ready { file, names } = input {
            for name in names {
                let owner = state.profiles.get(name).map(|o| o.file.as_str());
                match claims.get(name.as_str()) {
                    Some(current) if owner == Some(*current) => {}
                    Some(_) if owner == Some(file.key.as_str()) => {
                        claims.insert(name, &file.key);
                    }
                    Some(_) => {}
                    None => {
                        claims.insert(name, &file.key);
                    }
                }
            }
        }
    }
    claims
}

fn plan_file(
    input: &FileInput,
    claims: &BTreeMap<&str, &str>,
    observed: &BTreeMap<String, Observed>,
    state: &State,
    policy: &Policy,
) -> FilePlan {
    match input {
        FileInput::Broken { key, error } => broken(key, error.clone(), observed, state, policy),
        FileInput::Ready { file, names } => {
            let mode = policy.file_mode(names);
            let plan = |action| FilePlan { file: file.key.clone(), names: names.clone(), mode, action };
            if names.is_empty() {
                return broken(&file.key, format!("{}: defines no profile", file.shown.display()), observed, state, policy);
            }
            for name in names {
                let claimed = claims.get(name.as_str()).copied().unwrap_or_default();
                if claimed != file.key {
                    return plan(FileAction::Refuse {
                        reason: format!("{}: profile {name:?} is also defined by {claimed}", file.shown.display()),
                    });
                }
            }
            let mut adopt = false;
            for name in names {
                if observed.contains_key(name) && !state.profiles.contains_key(name) {
                    if policy.adopt.is_match(name) {
                        adopt = true;
                    } else {
                        return plan(FileAction::Refuse {
                            reason: format!(
                                "{}: profile {name:?} is already loaded in the kernel and was not loaded by apparmor-loader (foreign); it is left untouched. Add --adopt {name:?} to take it over",
                                file.shown.display()
                            ),
                        });
                    }
                }
            }
            let in_kernel = names.iter().filter(|n| observed.contains_key(*n)).count();
            let why = if adopt {
                Why::Adopt
            } else {
                match why_reload(file, names, mode, observed, state) {
                    None => return plan(FileAction::Unchanged),
                    Some(why) => why,
                }
            };
            plan(if in_kernel == 0 { FileAction::Load { why } } else { FileAction::Replace { why } })
        }
    }
}

/// `None` when the kernel already has exactly what the agent loaded from this content.
fn why_reload(
    file: &SourceFile,
    names: &[String],
    mode: DesiredMode,
    observed: &BTreeMap<String, Observed>,
    state: &State,
) -> Option<Why> {
    let owned: Vec<_> = names.iter().map(|n| state.profiles.get(n).filter(|o| o.file == file.key)).collect();
    if owned.iter().any(Option::is_none) {
        return Some(if owned.iter().any(Option::is_some) { Why::Changed } else { Why::New });
    }
    let owned: Vec<_> = owned.into_iter().flatten().collect();
    let changed = |o: &&Owned| o.identity.as_ref().map_or(o.sha256 != file.sha256, |id| *id != file.identity);
    if owned.iter().any(changed) {
        return Some(Why::Changed);
    }
    if owned.iter().any(|o| o.mode != mode.as_str()) {
        return Some(Why::ModeChanged);
    }
    let drifted = names.iter().zip(&owned).any(|(name, o)| match observed.get(name) {
        None => true,
        Some(k) => {
            o.kernel_mode.as_ref().is_some_and(|m| *m != k.mode)
                || matches!((&o.kernel_sha1, &k.sha1), (Some(mine), Some(theirs)) if mine != theirs)
        }
    });
    drifted.then_some(Why::Drift)
}

/// A broken file is `stale` while the profiles of its last good version are still in the
/// kernel, `failed` otherwise.
pub fn broken(key: &str, error: String, observed: &BTreeMap<String, Observed>, state: &State, policy: &Policy) -> FilePlan {
    let names: Vec<String> = state.owned_by(key).map(|(n, _)| n.clone()).collect();
    let mode = policy.file_mode(&names);
    let action = if !names.is_empty() && names.iter().all(|n| observed.contains_key(n)) {
        FileAction::Stale { error }
    } else {
        FileAction::Failed { error }
    };
    FilePlan { file: key.to_string(), names, mode, action }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn ready(key: &str, sha: &str, names: &[&str]) -> FileInput {
        FileInput::Ready {
            file: SourceFile {
                key: key.into(),
                shown: PathBuf::from("/p").join(key),
                real: PathBuf::from("/p").join(key),
                sha256: sha.into(),
                identity: sha.into(),
            },
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }
    fn broken_input(key: &str) -> FileInput {
        FileInput::Broken { key: key.into(), error: format!("/p/{key}:3: syntax error") }
    }
    fn owned(file: &str, sha: &str) -> Owned {
        Owned {
            file: file.into(),
            sha256: sha.into(),
            identity: Some(sha.into()),
            loaded_at: "t".into(),
            mode: "enforce".into(),
            kernel_mode: Some("enforce".into()),
            kernel_sha1: Some("k1".into()),
        }
    }
    fn kernel(entries: &[(&str, &str, &str)]) -> BTreeMap<String, Observed> {
        entries.iter().map(|(n, m, h)| (n.to_string(), Observed { mode: m.to_string(), sha1: Some(h.to_string()) })).collect()
    }
    fn state(entries: &[(&str, Owned)]) -> State {
        State { profiles: entries.iter().map(|(n, o)| (n.to_string(), o.clone())).collect(), ..State::default() }
    }
    fn policy() -> Policy {
        let mut b = globset::GlobSetBuilder::new();
        b.add(globset::Glob::new("adopt-*").unwrap());
        Policy { adopt: b.build().unwrap(), unload_removed: false, default_mode: DesiredMode::Enforce, modes: BTreeMap::new() }
    }
    fn actions(plan: &Plan) -> Vec<(&str, String)> {
        plan.files
            .iter()
            .map(|f| {
                let a = match &f.action {
                    FileAction::Load { why } => format!("load:{why:?}"),
                    FileAction::Replace { why } => format!("replace:{why:?}"),
                    FileAction::Unchanged => "unchanged".into(),
                    FileAction::Refuse { .. } => "refuse".into(),
                    FileAction::Stale { .. } => "stale".into(),
                    FileAction::Failed { .. } => "failed".into(),
                };
                (f.file.as_str(), a)
            })
            .collect()
    }

    /// desired × observed × owned → action, one row per case.
    #[test]
    fn file_table() {
        struct Case {
            what: &'static str,
            input: FileInput,
            kernel: Vec<(&'static str, &'static str, &'static str)>,
            owned: Vec<(&'static str, Owned)>,
            want: &'static str,
        }
        let cases = vec![
            Case { what: "cold start", input: ready("a", "s1", &["a"]), kernel: vec![], owned: vec![], want: "load:New" },
            Case {
                what: "restart, nothing changed",
                input: ready("a", "s1", &["a"]),
                kernel: vec![("a", "enforce", "k1")],
                owned: vec![("a", owned("a", "s1"))],
                want: "unchanged",
            },
            Case {
                what: "edited",
                input: ready("a", "s2", &["a"]),
                kernel: vec![("a", "enforce", "k1")],
                owned: vec![("a", owned("a", "s1"))],
                want: "replace:Changed",
            },
            Case {
                what: "removed behind our back",
                input: ready("a", "s1", &["a"]),
                kernel: vec![],
                owned: vec![("a", owned("a", "s1"))],
                want: "load:Drift",
            },
            Case {
                what: "replaced behind our back",
                input: ready("a", "s1", &["a"]),
                kernel: vec![("a", "enforce", "other")],
                owned: vec![("a", owned("a", "s1"))],
                want: "replace:Drift",
            },
            Case {
                what: "mode flipped behind our back",
                input: ready("a", "s1", &["a"]),
                kernel: vec![("a", "complain", "k1")],
                owned: vec![("a", owned("a", "s1"))],
                want: "replace:Drift",
            },
            Case {
                what: "foreign name",
                input: ready("a", "s1", &["docker-default"]),
                kernel: vec![("docker-default", "enforce", "x")],
                owned: vec![],
                want: "refuse",
            },
            Case {
                what: "foreign name adopted",
                input: ready("a", "s1", &["adopt-me"]),
                kernel: vec![("adopt-me", "enforce", "x")],
                owned: vec![],
                want: "replace:Adopt",
            },
            Case {
                what: "new name added to owned file",
                input: ready("a", "s2", &["a", "b"]),
                kernel: vec![("a", "enforce", "k1")],
                owned: vec![("a", owned("a", "s1"))],
                want: "replace:Changed",
            },
            Case {
                what: "bad edit keeps last good",
                input: broken_input("a"),
                kernel: vec![("a", "enforce", "k1")],
                owned: vec![("a", owned("a", "s1"))],
                want: "stale",
            },
            Case { what: "never compiled", input: broken_input("a"), kernel: vec![], owned: vec![], want: "failed" },
            Case {
                what: "broken and last good gone",
                input: broken_input("a"),
                kernel: vec![],
                owned: vec![("a", owned("a", "s1"))],
                want: "failed",
            },
            Case { what: "empty file", input: ready("a", "s0", &[]), kernel: vec![], owned: vec![], want: "failed" },
            Case {
                what: "profile moved to another file",
                input: ready("b", "s1", &["a"]),
                kernel: vec![("a", "enforce", "k1")],
                owned: vec![("a", owned("old", "s1"))],
                want: "replace:New",
            },
        ];
        for c in cases {
            let plan = compute(&[c.input], &kernel(&c.kernel), &state(&c.owned), &policy(), &BTreeSet::new());
            assert_eq!(actions(&plan)[0].1, c.want, "{}", c.what);
        }
    }

    #[test]
    fn refusal_names_file_and_profile() {
        let plan = compute(
            &[ready("a", "s", &["docker-default"])],
            &kernel(&[("docker-default", "enforce", "x")]),
            &State::default(),
            &policy(),
            &BTreeSet::new(),
        );
        let FileAction::Refuse { reason } = &plan.files[0].action else { panic!() };
        assert!(reason.contains("/p/a") && reason.contains("docker-default") && reason.contains("--adopt"), "{reason}");
        assert!(plan.removals.is_empty());
        assert!(!plan.changes_kernel());
    }

    #[test]
    fn duplicate_names_go_to_the_current_owner() {
        let plan = compute(
            &[ready("a", "s", &["x"]), ready("b", "s", &["x"])],
            &kernel(&[("x", "enforce", "k1")]),
            &state(&[("x", owned("b", "s"))]),
            &policy(),
            &BTreeSet::new(),
        );
        assert_eq!(actions(&plan), vec![("a", "refuse".to_string()), ("b", "unchanged".to_string())]);
        let fresh = compute(
            &[ready("a", "s", &["x"]), ready("b", "s", &["x"])],
            &BTreeMap::new(),
            &State::default(),
            &policy(),
            &BTreeSet::new(),
        );
        assert_eq!(actions(&fresh), vec![("a", "load:New".to_string()), ("b", "refuse".to_string())]);
    }

    /// Owned profiles without a file: orphan / unload / in-use / forget.
    #[test]
    fn removal_table() {
        let cases = [
            (false, true, false, RemovalAction::Orphan),
            (true, true, false, RemovalAction::Unload),
            (true, true, true, RemovalAction::InUse),
            (true, false, false, RemovalAction::Forget),
            (false, false, false, RemovalAction::Forget),
        ];
        for (unload_removed, in_kernel, used, want) in cases {
            let k = if in_kernel { kernel(&[("gone", "enforce", "k1")]) } else { BTreeMap::new() };
            let in_use = if used { BTreeSet::from(["gone".to_string()]) } else { BTreeSet::new() };
            let p = Policy { unload_removed, ..policy() };
            let plan = compute(&[], &k, &state(&[("gone", owned("gone-file", "s"))]), &p, &in_use);
            assert_eq!(
                plan.removals,
                vec![Removal { name: "gone".into(), file: "gone-file".into(), action: want }],
                "{unload_removed} {in_kernel} {used}"
            );
        }
    }

    #[test]
    fn name_dropped_from_file_is_a_removal_but_stale_file_keeps_its_names() {
        let st = state(&[("a", owned("f", "s1")), ("b", owned("f", "s1"))]);
        let k = kernel(&[("a", "enforce", "k1"), ("b", "enforce", "k1")]);
        let plan = compute(&[ready("f", "s2", &["a"])], &k, &st, &policy(), &BTreeSet::new());
        assert_eq!(plan.removals.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), vec!["b"]);
        let plan = compute(&[broken_input("f")], &k, &st, &policy(), &BTreeSet::new());
        assert!(plan.removals.is_empty());
        assert_eq!(plan.files[0].names, vec!["a", "b"]);
    }

    #[test]
    fn modes_come_from_config() {
        let mut p = policy();
        p.modes.insert("payment-api".into(), DesiredMode::Complain);
        assert_eq!(p.file_mode(&["payment-api".into()]), DesiredMode::Complain);
        assert_eq!(p.file_mode(&["other".into()]), DesiredMode::Enforce);
        let plan = compute(
            &[ready("payment-api", "s1", &["payment-api"])],
            &kernel(&[("payment-api", "enforce", "k1")]),
            &state(&[("payment-api", owned("payment-api", "s1"))]),
            &p,
            &BTreeSet::new(),
        );
        assert_eq!(actions(&plan)[0].1, "replace:ModeChanged");
        p.default_mode = DesiredMode::Complain;
        p.modes.insert("other".into(), DesiredMode::Enforce);
        assert_eq!(p.file_mode(&["x".into()]), DesiredMode::Complain);
        assert_eq!(p.file_mode(&["other".into()]), DesiredMode::Enforce);
    }
}
