//! The one-shot subcommands of `mod.rs` on the recording fake kernel, their output read back from
//! the writer they were given; and the host settings the submodules' tests share.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::LogFormat;
use crate::kernel::fake::{Call, FakeKernel};
use crate::reconcile::testing::{World, sha};

/// Host settings with every path under `root` (nothing there yet) and `parser` as `--parser`.
pub(crate) fn host(root: &Path, parser: Option<PathBuf>) -> HostSettings {
    HostSettings {
        securityfs: root.join("securityfs"),
        securityfs_is_default: false,
        parser,
        state_dir: root.join("state"),
        proc_dir: root.join("proc"),
        parser_timeout: std::time::Duration::from_secs(20),
        parser_jobs: 1,
        log_format: LogFormat::Plain,
        log_level: "warn".into(),
        node_features_file: root.join("features.d/apparmor-loader"),
    }
}

/// `target/debug/examples/fake_apparmor_parser`, the fake parser the integration tests use too
/// (`cargo test` builds the examples before it runs any test).
pub(crate) fn fake_parser() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let p = exe.parent().and_then(Path::parent).expect("target/debug").join("examples/fake_apparmor_parser");
    assert!(p.is_file(), "fake parser not built at {} (run through `cargo test`)", p.display());
    p
}

/// What a subcommand wrote, as text.
pub(crate) fn written(out: Vec<u8>) -> String {
    String::from_utf8(out).expect("UTF-8 output")
}

/// The subcommands' reconciler: [`World::settings`] as they are, removed files unloaded.
fn reconciler(w: &World, kernel: FakeKernel) -> Reconciler<FakeKernel> {
    w.reconciler_with(kernel, w.settings(true))
}

/// A good file `web`, a file `broken` that does not compile, and a foreign `docker-default`.
fn web_broken_and_foreign() -> (World, Reconciler<FakeKernel>) {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "web", "profile web {}", &["web"]);
    w.write(&k, "broken", "profile broken {", &[]);
    k.preload("docker-default");
    let r = reconciler(&w, k);
    (w, r)
}

#[test]
fn diff_lists_the_plan_without_touching_the_kernel() {
    let (_w, mut r) = web_broken_and_foreign();
    let mut out = Vec::new();
    assert_eq!(diff_on(&mut r, &mut out).unwrap(), Verdict::Ok, "nothing was tried, so nothing failed");
    let text = written(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("failed    ") && lines[0].contains("broken") && lines[0].ends_with("syntax error"), "{text}");
    assert_eq!(lines[1], "load      web [web] (New, enforce)");
    assert!(r.kernel().take_calls().iter().all(|c| matches!(c, Call::Compile(_))), "a diff only compiles");
}

#[test]
fn sync_prints_a_line_per_file_then_the_counts() {
    let (_w, mut r) = web_broken_and_foreign();
    let mut out = Vec::new();
    assert_eq!(sync_on(&mut r, &mut out).unwrap(), Verdict::Failures, "a file failed");
    let text = written(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("failed   broken: ") && lines[0].ends_with("syntax error"), "{text}");
    assert_eq!(lines[1], "loaded   web (web)");
    assert_eq!(lines[2], "loaded 1, replaced 0, removed 0, failed 1, drift repaired 0");
}

#[test]
fn a_second_diff_has_nothing_to_change_and_a_second_sync_nothing_to_do() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "web", "profile web {}", &["web"]);
    let mut r = reconciler(&w, k);
    assert_eq!(sync_on(&mut r, &mut Vec::new()).unwrap(), Verdict::Ok);
    let mut out = Vec::new();
    assert_eq!(diff_on(&mut r, &mut out).unwrap(), Verdict::Ok);
    assert_eq!(written(out), "unchanged web [web]\nnothing to change in the kernel\n");
    let mut out = Vec::new();
    assert_eq!(sync_on(&mut r, &mut out).unwrap(), Verdict::Ok);
    assert_eq!(written(out), "loaded   web (web)\nloaded 0, replaced 0, removed 0, failed 0, drift repaired 0\n");
}

#[test]
fn a_removed_file_shows_as_an_unload_in_diff_and_sync() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "web", "profile web {}", &["web"]);
    let mut r = reconciler(&w, k);
    sync_on(&mut r, &mut Vec::new()).unwrap();
    fs::remove_file(w.dir.path().join("web")).unwrap();
    let mut out = Vec::new();
    diff_on(&mut r, &mut out).unwrap();
    assert_eq!(written(out), "unload    web (file web is gone)\n");
    let mut out = Vec::new();
    assert_eq!(sync_on(&mut r, &mut out).unwrap(), Verdict::Ok);
    assert_eq!(written(out), "loaded 0, replaced 0, removed 1, failed 0, drift repaired 0\n");
    assert_eq!(r.kernel().take_calls().last(), Some(&Call::Unload("web".into())));
}

#[test]
fn status_tells_managed_from_foreign_in_text_and_json() {
    let (w, mut r) = web_broken_and_foreign();
    sync_on(&mut r, &mut Vec::new()).unwrap();
    let mut out = Vec::new();
    assert_eq!(status_on(r.kernel(), &w.store(), false, &mut out).unwrap(), Verdict::Ok);
    assert_eq!(
        written(out),
        "NAME            MODE        OWNER     FILE\n\
         docker-default  enforce     foreign   -\n\
         web             enforce     managed   web\n\
         2 profiles, 1 managed by apparmor-loader\n"
    );
    let mut out = Vec::new();
    status_on(r.kernel(), &w.store(), true, &mut out).unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let rows = rows.as_array().expect("a JSON array");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "docker-default");
    assert_eq!((&rows[0]["managed"], &rows[0]["state"], &rows[0]["file"]), (&false.into(), &"foreign".into(), &().into()));
    assert_eq!(rows[1]["name"], "web");
    assert_eq!((&rows[1]["managed"], &rows[1]["state"], &rows[1]["file"]), (&true.into(), &"loaded".into(), &"web".into()));
    assert_eq!(rows[1]["sha256"], sha("profile web {}").as_str());
    assert!(rows[1]["loaded_at"].is_string() && rows[0]["loaded_at"].is_null(), "{rows:?}");
}

#[test]
fn status_of_an_empty_kernel_is_a_header_and_a_count() {
    let w = World::new();
    let mut out = Vec::new();
    status_on(&FakeKernel::default(), &w.store(), false, &mut out).unwrap();
    assert_eq!(written(out), "NAME  MODE        OWNER     FILE\n0 profiles, 0 managed by apparmor-loader\n");
    let mut out = Vec::new();
    status_on(&FakeKernel::default(), &w.store(), true, &mut out).unwrap();
    assert_eq!(written(out), "[]\n");
}

#[test]
fn unload_removes_what_it_may_and_refuses_the_rest_on_the_error_writer() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "web", "profile web {}", &["web"]);
    w.write(&k, "api", "profile api {}", &["api"]);
    k.preload("docker-default");
    let mut r = reconciler(&w, k);
    sync_on(&mut r, &mut Vec::new()).unwrap();
    r.kernel().take_calls();
    w.confine(42, "api (enforce)");
    let names: Vec<String> = ["docker-default", "gone", "api", "web"].iter().map(|s| s.to_string()).collect();
    let request = UnloadRequest { names: &names, force: false, proc_dir: w.proc_dir.path() };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(unload_on(r.kernel(), &w.store(), &request, &mut out, &mut err).unwrap(), Verdict::Failures);
    assert_eq!(written(out), "removed web\n");
    assert_eq!(
        written(err),
        "error: docker-default: not loaded by apparmor-loader (foreign); pass --force to remove it anyway\n\
         error: gone: not loaded in the kernel\n\
         error: api: processes are still confined by it and would become unconfined; pass --force to remove it anyway\n"
    );
    assert_eq!(r.kernel().take_calls(), vec![Call::Unload("web".into())]);
    let state = w.store().load().unwrap();
    assert_eq!(state.profiles.keys().collect::<Vec<_>>(), vec!["api"], "the state file forgets only what went");

    let names: Vec<String> = ["docker-default", "api"].iter().map(|s| s.to_string()).collect();
    let forced = UnloadRequest { names: &names, force: true, proc_dir: w.proc_dir.path() };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(unload_on(r.kernel(), &w.store(), &forced, &mut out, &mut err).unwrap(), Verdict::Ok);
    assert_eq!((written(out), written(err)), ("removed docker-default\nremoved api\n".into(), String::new()));
    assert!(w.store().load().unwrap().profiles.is_empty());
}

/// A stdout that is gone (`apparmor-loader unload web | head -0`).
struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn unload_saves_the_state_even_when_its_output_fails() {
    let w = World::new();
    let k = FakeKernel::default();
    w.write(&k, "web", "profile web {}", &["web"]);
    w.write(&k, "api", "profile api {}", &["api"]);
    let mut r = reconciler(&w, k);
    sync_on(&mut r, &mut Vec::new()).unwrap();
    let names = vec!["web".to_string(), "api".to_string()];
    let request = UnloadRequest { names: &names, force: false, proc_dir: w.proc_dir.path() };
    let e = unload_on(r.kernel(), &w.store(), &request, &mut ClosedPipe, &mut Vec::new()).unwrap_err();
    assert!(format!("{e:#}").to_lowercase().contains("broken pipe"), "{e:#}");
    // web left the kernel before the write failed; api was never touched.
    assert!(!r.kernel().0.lock().unwrap().loaded.contains_key("web"));
    let state = w.store().load().unwrap();
    assert_eq!(state.profiles.keys().collect::<Vec<_>>(), vec!["api"], "web is gone from the kernel, so from the state");
}
