use std::fs;

use super::state::{Owned, Pending};
use super::testing::{World, sha};
use super::*;
use crate::kernel::fake::{Call, FakeKernel};
use crate::kernel::{DesiredMode, LoadKind};

/// This file's reconciler: [`World::settings`] plus adoption of `host-*` and a `base` include
/// directory (absent) on the search path.
fn reconciler(w: &World, kernel: FakeKernel, unload_removed: bool) -> Reconciler<FakeKernel> {
    let mut settings = w.settings(unload_removed);
    let mut adopt = globset::GlobSetBuilder::new();
    adopt.add(globset::Glob::new("host-*").unwrap());
    settings.policy.adopt = adopt.build().unwrap();
    settings.search.dirs = vec![w.dir.path().join("base")];
    w.reconciler_with(kernel, settings)
}

/// A fresh reconciler (a restarted agent) on the same kernel.
fn restart(w: &World, r: Reconciler<FakeKernel>, unload_removed: bool) -> Reconciler<FakeKernel> {
    let inner = r.kernel.0.into_inner().unwrap();
    reconciler(w, FakeKernel(std::sync::Mutex::new(inner)), unload_removed)
}

fn state_of(outcome: &Outcome, file: &str) -> ItemState {
    outcome.report.files.iter().find(|f| f.file == file).unwrap().state
}

fn compile(keys: &[&str]) -> Call {
    Call::Compile(keys.iter().map(|k| k.to_string()).collect())
}

fn load(key: &str) -> Call {
    Call::Load(key.into(), LoadKind::New)
}

#[test]
fn cold_start_compiles_once_then_restart_does_nothing() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "a", "profile a {}", &["a"]);
    w.write(&k, "b", "profile b {}", &["b"]);
    k.preload("docker-default");
    let mut r = reconciler(&w, k, false);
    let out = r.sync().unwrap();
    assert_eq!(r.kernel().take_calls(), vec![compile(&["a", "b"]), load("a"), load("b")]);
    assert_eq!(out.counts.get(Operation::Load, true), 2);
    assert!(out.all_good());
    let foreign: Vec<_> = out.report.profiles.iter().filter(|p| p.state == ItemState::Foreign).map(|p| p.name.as_str()).collect();
    assert_eq!(foreign, vec!["docker-default"]);
    assert!(r.state().pending.is_empty());

    // Same kernel, fresh process: the state file says we own a and b; nothing to do.
    let mut r2 = restart(&w, r, false);
    let out = r2.sync().unwrap();
    assert_eq!(r2.kernel().take_calls(), vec![]);
    assert!(out.counts.ops.is_empty());
    assert_eq!(state_of(&out, "a"), ItemState::Loaded);
}

#[test]
fn one_changed_file_costs_one_compile_and_one_load() {
    let w = World::new();
    let k = FakeKernel::default();
    for i in 0..50 {
        w.write(&k, &format!("p{i}"), &format!("profile p{i} {{}}"), &[&format!("p{i}")]);
    }
    let mut r = reconciler(&w, k, false);
    r.sync().unwrap();
    r.kernel().take_calls();
    w.write(r.kernel(), "p7", "profile p7 { /x r, }", &["p7"]);
    let out = r.sync().unwrap();
    assert_eq!(r.kernel().take_calls(), vec![compile(&["p7"]), Call::Load("p7".into(), LoadKind::Replace)]);
    assert_eq!(out.counts.get(Operation::Replace, true), 1);
}

/// Issue 10: a file whose source looks harmless but compiles to a foreign name is refused
/// before anything is loaded — names come from the compiled policy, not from the text.
#[test]
fn a_disguised_foreign_name_is_refused_before_any_load() {
    let w = World::new();
    let k = FakeKernel::default();
    k.preload("docker-default");
    w.write(&k, "innocent", "profile \"\\x64ocker-default\" {}", &["docker-default"]);
    w.write(&k, "sneaky", "profile ok {\n  include <abstractions/closes-and-reopens>\n}", &["ok", "docker-default"]);
    let mut r = reconciler(&w, k, false);
    let out = r.sync().unwrap();
    assert_eq!(r.kernel().take_calls(), vec![compile(&["innocent", "sneaky"])], "compiled, never loaded");
    assert_eq!(state_of(&out, "innocent"), ItemState::Refused);
    assert_eq!(state_of(&out, "sneaky"), ItemState::Refused);
    assert_eq!(r.kernel().0.lock().unwrap().loaded["docker-default"].1, "foreign");
    // The next pass knows the names and does not compile again.
    r.sync().unwrap();
    assert_eq!(r.kernel().take_calls(), vec![]);
}

#[test]
fn bad_edit_keeps_last_good_and_other_files_go_on() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "a", "profile a {}", &["a"]);
    let mut r = reconciler(&w, k, false);
    r.sync().unwrap();
    // New content the fake cannot compile: a syntax error.
    fs::write(w.dir.path().join("a"), "profile a { broken").unwrap();
    w.write(r.kernel(), "b", "profile b {}", &["b"]);
    let out = r.sync().unwrap();
    assert_eq!(out.counts.get(Operation::Replace, false), 1, "a broken edit is a failed replace");
    assert_eq!(state_of(&out, "a"), ItemState::Stale);
    assert_eq!(state_of(&out, "b"), ItemState::Loaded);
    let a = out.report.profiles.iter().find(|p| p.name == "a").unwrap();
    assert_eq!(a.state, ItemState::Stale);
    assert_eq!(a.sha256.as_deref(), Some(sha("profile a {}").as_str()));
    assert!(a.error.as_deref().unwrap().contains("syntax error"));
    assert!(out.all_good(), "stale keeps readiness");

    // A file that compiles but that the kernel refuses, never loaded before: failed.
    let content = "profile c { load-fails }";
    w.write(r.kernel(), "c", content, &["c"]);
    r.kernel().0.lock().unwrap().fail_load.insert(sha(content));
    let out = r.sync().unwrap();
    assert_eq!(state_of(&out, "c"), ItemState::Failed);
    assert!(!out.all_good());
    assert_eq!(out.counts.get(Operation::Load, false), 1);
    assert!(!r.state().profiles.contains_key("c"));
}

/// Issue 10: a load is checked, not believed. A kernel (or parser) that says yes and
/// applies nothing leaves the file failed, unowned, and retried.
#[test]
fn a_load_the_kernel_does_not_show_is_failed_and_not_owned() {
    let w = World::new();
    let k = FakeKernel::default();
    let content = "profile quiet {}";
    w.write(&k, "quiet", content, &["quiet"]);
    k.0.lock().unwrap().silently_ignore.insert(sha(content));
    let mut r = reconciler(&w, k, false);
    let out = r.sync().unwrap();
    assert_eq!(state_of(&out, "quiet"), ItemState::Failed);
    let error = out.report.files[0].error.clone().unwrap();
    assert!(error.contains("quiet") && error.contains("does not list"), "{error}");
    assert!(r.state().profiles.is_empty() && r.state().pending.is_empty());
    assert_eq!(out.counts.get(Operation::Load, false), 1);
    // Not "nothing to change": the next plan still loads it.
    let planned = r.plan().unwrap();
    assert!(planned.plan.changes_kernel());
}

#[test]
fn deleted_files_orphan_or_unload_unless_in_use() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "a", "profile a {}", &["a"]);
    w.write(&k, "b", "profile b {}", &["b"]);
    let mut r = reconciler(&w, k, false);
    r.sync().unwrap();
    fs::remove_file(w.dir.path().join("a")).unwrap();
    fs::remove_file(w.dir.path().join("b")).unwrap();
    let out = r.sync().unwrap();
    assert!(out.report.profiles.iter().all(|p| p.state == ItemState::Orphaned));
    assert!(r.kernel().0.lock().unwrap().loaded.contains_key("a"));

    let mut r = restart(&w, r, true);
    w.confine(42, "b (enforce)");
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

/// The kernel keeps a replaced profile's children that the new policy lacks; the reconciler
/// removes them, except while a task (here one thread) is confined by one.
#[test]
fn children_dropped_from_a_file_leave_the_kernel_once_unused() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "web", "v1", &["web", "web//admin", "web//report", "web//report//pdf"]);
    let mut r = reconciler(&w, k, false);
    r.sync().unwrap();
    let thread = w.proc_dir.path().join("7/task/8/attr");
    fs::create_dir_all(&thread).unwrap();
    fs::write(thread.join("current"), "web//report//pdf (enforce)\n").unwrap();
    r.kernel().take_calls();

    w.write(r.kernel(), "web", "v2", &["web"]);
    let out = r.sync().unwrap();
    let calls = r.kernel().take_calls();
    assert!(calls.contains(&Call::Unload("web//admin".into())), "{calls:?}");
    assert!(!calls.iter().any(|c| matches!(c, Call::Unload(n) if n.starts_with("web//report"))), "in use: {calls:?}");
    assert_eq!(out.counts.get(Operation::Remove, true), 1);
    let loaded = |r: &Reconciler<FakeKernel>, n: &str| r.kernel().0.lock().unwrap().loaded.contains_key(n);
    assert!(loaded(&r, "web") && !loaded(&r, "web//admin") && loaded(&r, "web//report"));

    // Nothing changed, the thread still runs: nothing is done.
    r.sync().unwrap();
    assert_eq!(r.kernel().take_calls(), vec![]);
    // The thread is gone: one removal takes the hat and its child.
    fs::remove_dir_all(w.proc_dir.path().join("7")).unwrap();
    r.sync().unwrap();
    assert_eq!(r.kernel().take_calls(), vec![Call::Unload("web//report".into())]);
    assert!(!loaded(&r, "web//report//pdf") && loaded(&r, "web"));
    r.sync().unwrap();
    assert_eq!(r.kernel().take_calls(), vec![], "nothing left to prune");
}

/// A name a file adds is checked again after the compile: a foreign profile loaded meanwhile
/// is never replaced, even when the file goes to `.replace` for the profiles it already owns.
#[test]
fn a_foreign_profile_that_appears_while_compiling_is_not_replaced() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "ab", "v1", &["a"]);
    let mut r = reconciler(&w, k, false);
    r.sync().unwrap();
    w.write(r.kernel(), "ab", "v2", &["a", "b"]);
    r.kernel().0.lock().unwrap().appear_on_compile.insert("b".into());
    r.kernel().take_calls();
    let out = r.sync().unwrap();
    assert_eq!(r.kernel().take_calls(), vec![compile(&["ab"])], "nothing loaded");
    assert_eq!(r.kernel().0.lock().unwrap().loaded["b"].1, "foreign");
    assert!(!r.state().profiles.contains_key("b"));
    let f = out.report.files.iter().find(|f| f.file == "ab").unwrap();
    assert_eq!(f.state, ItemState::Stale, "v1 of a is still enforced");
    assert!(f.error.as_deref().unwrap_or_default().contains("\"b\" appeared in the kernel"), "{f:?}");
}

#[test]
fn foreign_is_refused_and_adoptable_and_drift_is_repaired() {
    let w = World::new();
    let k = FakeKernel::default();
    k.preload("docker-default");
    k.preload("host-web");
    w.write(&k, "d", "profile docker-default {}", &["docker-default"]);
    w.write(&k, "h", "profile host-web {}", &["host-web"]);
    let mut r = reconciler(&w, k, false);
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
    assert_eq!(r.kernel().take_calls(), vec![compile(&["h"]), load("h")]);
    // Someone replaces it with other policy: restored too.
    r.kernel().0.lock().unwrap().loaded.get_mut("host-web").unwrap().1 = "tampered".into();
    let out = r.sync().unwrap();
    assert_eq!(out.counts.drift_repairs, 1);
    assert_eq!(out.counts.get(Operation::Replace, true), 1);
}

#[test]
fn complain_mode_from_config_compiles_with_complain() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "a", "profile a {}", &["a"]);
    w.write(&k, "b", "profile b {}", &["b"]);
    let mut r = reconciler(&w, k, false);
    r.settings.policy.modes.insert("b".into(), DesiredMode::Complain);
    let out = r.sync().unwrap();
    // One compile for both: complain mode is applied to the compiled policy.
    assert_eq!(r.kernel().take_calls(), vec![compile(&["a", "b"]), load("a"), load("b")]);
    assert_eq!(out.report.profiles.iter().find(|p| p.name == "b").unwrap().mode.as_deref(), Some("complain"));
    assert_eq!(out.report.profiles.iter().find(|p| p.name == "a").unwrap().mode.as_deref(), Some("enforce"));
    // Switching the configured mode reloads the same content in the other mode.
    r.settings.policy.modes.clear();
    let out = r.sync().unwrap();
    assert_eq!(r.kernel().take_calls(), vec![compile(&["b"]), Call::Load("b".into(), LoadKind::Replace)]);
    assert_eq!(out.report.profiles.iter().find(|p| p.name == "b").unwrap().mode.as_deref(), Some("enforce"));
}

/// Issue 10: an intent written before a load that a crash left unconfirmed is settled
/// against the kernel: claimed when the kernel has exactly that policy, never otherwise.
#[test]
fn a_restart_claims_exactly_the_interrupted_loads() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "mine", "profile mine {}", &["mine"]);
    w.write(&k, "docker", "profile docker-default {}", &["docker-default"]);
    // The crash came after the kernel took `mine` and before the confirmation; a foreign
    // docker-default appeared under an intent that never reached the kernel.
    let blob = crate::kernel::fake::policy(&["mine".into()], &sha("profile mine {}"));
    let expected = crate::kernel::Compiled::from_blob(blob).unwrap().profiles[0].sha1.clone();
    k.0.lock().unwrap().loaded.insert("mine".into(), ("enforce".into(), expected.clone()));
    k.preload("docker-default");
    let store = StateStore::new(w.state_dir.path());
    let mut st = State::empty();
    st.names.insert(sha("profile mine {}"), vec!["mine".into()]);
    st.pending.insert("mine".into(), pending_for_file("mine", "profile mine {}", &expected));
    st.pending.insert("docker-default".into(), pending_for_file("docker", "profile docker-default {}", "not-the-foreign-one"));
    store.save(&st).unwrap();

    let mut r = reconciler(&w, k, false);
    let out = r.sync().unwrap();
    assert_eq!(state_of(&out, "mine"), ItemState::Loaded);
    assert_eq!(state_of(&out, "docker"), ItemState::Refused);
    assert!(r.state().profiles.contains_key("mine") && !r.state().profiles.contains_key("docker-default"));
    assert!(!r.kernel().take_calls().iter().any(|c| matches!(c, Call::Load(..))), "nothing reloaded");
    let on_disk = store.load().unwrap();
    assert!(on_disk.pending.is_empty() && on_disk.profiles.contains_key("mine"));
}

fn pending_for_file(file: &str, content: &str, sha1: &str) -> Pending {
    Pending {
        owned: Owned {
            file: file.into(),
            sha256: sha(content),
            identity: None,
            loaded_at: "t".into(),
            mode: "enforce".into(),
            kernel_mode: Some("enforce".into()),
            kernel_sha1: Some(sha1.into()),
        },
        expected_sha1: Some(sha1.into()),
        expected_sha256: None,
    }
}

/// Issue 10: the intent is on disk before the kernel sees the policy.
#[test]
fn the_intent_is_saved_before_the_load() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "a", "profile a {}", &["a"]);
    let mut r = reconciler(&w, k, false);
    let planned = r.plan().unwrap();
    let loads = apply::loads(&planned);
    let mut run = apply::Run::default();
    // Load, then "crash" before confirming: the disk must already name the intent.
    r.load_all(&loads, &planned.observed, &mut run);
    let on_disk = StateStore::new(w.state_dir.path()).load().unwrap();
    assert!(on_disk.pending.contains_key("a"), "{on_disk:?}");
    assert!(on_disk.profiles.is_empty());
}

/// Issue 10: a state file that cannot be written keeps the agent unready, loads nothing
/// it could not record, and is retried.
#[test]
fn a_failed_save_loads_nothing_and_is_retried() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "a", "profile a {}", &["a"]);
    let mut r = reconciler(&w, k, false);
    // After the start, the state file's place is taken by a directory: every save fails.
    let blocker = w.state_dir.path().join(crate::defaults::STATE_FILE);
    fs::create_dir(&blocker).unwrap();
    fs::write(blocker.join("x"), "").unwrap();
    let out = r.sync().unwrap();
    assert!(out.state_error.as_deref().unwrap().contains("state.json"), "{:?}", out.state_error);
    assert!(!out.all_good());
    assert_eq!(state_of(&out, "a"), ItemState::Failed);
    assert!(!r.kernel().take_calls().iter().any(|c| matches!(c, Call::Load(..))), "nothing loaded unrecorded");
    fs::remove_dir_all(&blocker).unwrap();
    let out = r.sync().unwrap();
    assert!(out.state_error.is_none() && out.all_good());
    assert!(StateStore::new(w.state_dir.path()).load().unwrap().profiles.contains_key("a"));
}

/// Linux 6.8 and later show `sha256` where older kernels show `sha1`: a load is verified, and
/// owned, against whichever the kernel uses; a policy the kernel did not take still fails.
#[test]
fn a_sha256_kernel_verifies_loads_and_claims_interrupted_ones() {
    let w = World::new();
    let k = FakeKernel::default();
    k.0.lock().unwrap().sha256 = true;
    w.write(&k, "a", "profile a {}", &["a"]);
    let mut r = reconciler(&w, k, false);
    let out = r.sync().unwrap();
    assert_eq!(state_of(&out, "a"), ItemState::Loaded);
    let kernel_hash = r.kernel().hashes().unwrap()["a"].clone();
    assert_eq!(kernel_hash.len(), 64, "the fake kernel shows SHA-256");
    assert_eq!(r.state().profiles["a"].kernel_sha1.as_deref(), Some(kernel_hash.as_str()));
    r.kernel().take_calls();

    // An interrupted load of `b` that did reach the kernel: the intent recorded both hashes.
    w.write(r.kernel(), "b", "profile b {}", &["b"]);
    let blob = crate::kernel::fake::policy(&["b".into()], &sha("profile b {}"));
    let compiled = crate::kernel::Compiled::from_blob(blob).unwrap().profiles[0].clone();
    r.kernel().0.lock().unwrap().loaded.insert("b".into(), ("enforce".into(), compiled.sha256.clone()));
    let mut st = r.state().clone();
    let mut p = pending_for_file("b", "profile b {}", &compiled.sha1);
    p.expected_sha256 = Some(compiled.sha256.clone());
    st.names.insert(sha("profile b {}"), vec!["b".into()]);
    st.pending.insert("b".into(), p);
    StateStore::new(w.state_dir.path()).save(&st).unwrap();
    let mut r = restart(&w, r, false);
    let out = r.sync().unwrap();
    assert_eq!(state_of(&out, "b"), ItemState::Loaded);
    assert!(r.state().profiles.contains_key("b"), "claimed by its SHA-256");
    assert!(!r.kernel().take_calls().iter().any(|c| matches!(c, Call::Load(..))), "nothing reloaded");
}

/// A kernel that shows a SHA-256 that is not the compiled policy's fails the load's check:
/// an edit the kernel acknowledged but did not apply keeps the old policy's hash.
#[test]
fn a_stale_sha256_fails_verification() {
    let w = World::new();
    let k = FakeKernel::default();
    k.0.lock().unwrap().sha256 = true;
    w.write(&k, "a", "profile a {}", &["a"]);
    let mut r = reconciler(&w, k, false);
    assert_eq!(state_of(&r.sync().unwrap(), "a"), ItemState::Loaded);
    let edited = "profile a { /x r, }";
    w.write(r.kernel(), "a", edited, &["a"]);
    r.kernel().0.lock().unwrap().silently_ignore.insert(sha(edited));
    let out = r.sync().unwrap();
    let file = out.report.files.iter().find(|f| f.file == "a").unwrap();
    let error = file.error.clone().unwrap_or_default();
    assert!(error.contains("the kernel's hash of profile \"a\""), "{error}");
    // The message puts the kernel's SHA-256 next to the policy's SHA-256, not its SHA-1.
    let words: Vec<&str> = error.split_whitespace().map(|w| w.trim_end_matches(',')).filter(|w| w.len() == 64).collect();
    assert_eq!(words.len(), 2, "{error}");
    assert_ne!(words[0], words[1]);
}
