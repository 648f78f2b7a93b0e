//! The kernel revision watcher, on stand-ins for the revision file: a pipe is pollable like
//! securityfs's `revision` (readable when a new value is there), a regular file is not. And
//! `publish`: where a sync's result goes, and when it asks for a retry.

use std::io::Write;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use nix::fcntl::OFlag;

use super::*;

/// Longer than any of these tests needs; reaching it means the watcher is stuck.
const STUCK: Duration = Duration::from_secs(10);

/// Runs the watcher on `file` on its own thread; the receiver hears when it returns.
fn spawn_watcher(file: File, tx: mpsc::Sender<Trigger>) -> std_mpsc::Receiver<()> {
    let (done_tx, done) = std_mpsc::channel();
    std::thread::spawn(move || {
        watch_revision_fd(Path::new("revision"), file, &tx);
        let _ = done_tx.send(());
    });
    done
}

/// A non-blocking pipe: the read end as the watcher opens the revision file, the write end
/// as the kernel bumping it.
fn revision_pipe() -> (File, File) {
    let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).unwrap();
    (File::from(read), File::from(write))
}

#[test]
fn a_regular_file_is_not_pollable_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revision");
    std::fs::write(&path, "7\n").unwrap();
    let file = std::fs::OpenOptions::new().read(true).custom_flags(OFlag::O_NONBLOCK.bits()).open(&path).unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let done = spawn_watcher(file, tx);
    done.recv_timeout(STUCK).expect("the watcher gives up on a regular file");
    assert!(rx.try_recv().is_err(), "no trigger from a file that is always readable");
}

#[test]
fn a_new_revision_sends_a_kernel_trigger() {
    let (read, mut write) = revision_pipe();
    let (tx, mut rx) = mpsc::channel(4);
    let done = spawn_watcher(read, tx);
    // The watcher's first read takes the current value, and the test cannot tell when that
    // happened: bump until a trigger comes.
    let deadline = std::time::Instant::now() + STUCK;
    let trigger = loop {
        write.write_all(b"1").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        if let Ok(t) = rx.try_recv() {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "no trigger for a new revision");
    };
    assert_eq!(trigger, Trigger::Kernel);
    // A hung-up pipe reads as end of file: the watcher takes it for a file it cannot poll.
    drop(write);
    done.recv_timeout(STUCK).expect("the watcher returns");
}

#[test]
fn a_burst_with_a_full_channel_does_not_block_the_watcher() {
    let (read, mut write) = revision_pipe();
    // 100 bytes are four reads of at most 32: the first is the current value, each of the
    // three others a trigger into a channel with room for one.
    write.write_all(&[b'1'; 100]).unwrap();
    drop(write);
    let (tx, mut rx) = mpsc::channel(1);
    let done = spawn_watcher(read, tx);
    done.recv_timeout(STUCK).expect("the watcher does not wait for room in the channel");
    assert_eq!(rx.try_recv(), Ok(Trigger::Kernel));
    assert!(rx.try_recv().is_err(), "one queued trigger stands for the whole burst");
}

#[test]
fn the_watcher_stops_when_the_loop_is_gone() {
    let (read, mut write) = revision_pipe();
    // Past the first read: one new value, with the pipe kept open so only the closed channel
    // can end the watcher.
    write.write_all(&[b'1'; 40]).unwrap();
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let done = spawn_watcher(read, tx);
    done.recv_timeout(STUCK).expect("the watcher stops once nobody listens");
    drop(write);
}

/// The agent's state, the managed set and gates whose feature file is in `dir`.
fn published_into(dir: &Path) -> (AgentState, Published) {
    let gates = Gates::start(dir.join("apparmor-loader"), None, CancellationToken::new()).unwrap();
    let published = Published { managed: audit::ProfileSet::new(["gone"]), gates };
    (AgentState::new(Metrics::new(), Duration::from_secs(60)), published)
}

/// A sync that loaded `web` (from the file `web`) and saw the foreign profile `other`.
fn outcome(state_error: Option<&str>) -> Outcome {
    let profile = |name: &str, state| crate::reconcile::ProfileReport {
        name: name.into(),
        mode: Some("enforce".into()),
        state,
        file: (state != ItemState::Foreign).then(|| name.into()),
        sha256: None,
        loaded_at: None,
        error: None,
    };
    let file = crate::reconcile::FileReport {
        file: "web".into(),
        state: ItemState::Loaded,
        error: None,
        names: vec!["web".into()],
        includes: Vec::new(),
    };
    let report = crate::reconcile::Report {
        last_sync: Some("now".into()),
        profiles: vec![profile("web", ItemState::Loaded), profile("other", ItemState::Foreign)],
        files: vec![file],
    };
    Outcome { plan: Default::default(), counts: Default::default(), report, state_error: state_error.map(Into::into) }
}

#[test]
fn a_sync_is_published_to_the_state_the_denial_monitor_and_the_gates() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, mut published) = published_into(dir.path());
    let retry = publish(&shared, &mut published, Trigger::Files, Instant::now(), Ok(outcome(None)));
    assert!(!retry);
    assert!(shared.readiness().ready);
    assert_eq!(shared.report().profiles.len(), 2);
    // Denials are counted for managed profiles only, and the set is replaced, not grown.
    assert!(published.managed.contains("web"));
    assert!(!published.managed.contains("other"));
    assert!(!published.managed.contains("gone"));
    assert!(dir.path().join("apparmor-loader").exists(), "the node's feature file follows the sync");
    assert!(shared.metrics.render().contains("apparmor_loader_syncs_total{result=\"success\"} 1"));
}

#[test]
fn an_unsaved_ownership_record_asks_for_a_retry_and_keeps_the_node_unready() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, mut published) = published_into(dir.path());
    let retry = publish(&shared, &mut published, Trigger::Resync, Instant::now(), Ok(outcome(Some("disk full"))));
    assert!(retry);
    let readiness = shared.readiness();
    assert!(!readiness.ready);
    assert!(readiness.reasons.iter().any(|r| r.error == "disk full"));
    // What was loaded is still published: the profiles are in the kernel.
    assert!(published.managed.contains("web"));
}

#[test]
fn a_failed_sync_is_an_error_and_leaves_the_last_result_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, mut published) = published_into(dir.path());
    publish(&shared, &mut published, Trigger::Files, Instant::now(), Ok(outcome(None)));
    let error = SyncError::Proc { path: "/proc".into(), source: std::io::ErrorKind::PermissionDenied.into() };
    let retry = publish(&shared, &mut published, Trigger::Kernel, Instant::now(), Err(error));
    // Not a state-save failure: the next trigger or the resync tries again.
    assert!(!retry);
    let readiness = shared.readiness();
    assert!(!readiness.ready);
    assert!(readiness.reasons.iter().any(|r| r.error.contains("cannot scan /proc")), "{:?}", readiness.reasons);
    assert_eq!(shared.report().profiles.len(), 2);
    assert!(published.managed.contains("web"));
    assert!(shared.metrics.render().contains("apparmor_loader_syncs_total{result=\"failure\"} 1"));
}
