//! The inotify watches: the profiles directory, kept on the directory that the path names now,
//! and the directories its profiles include.
//!
//! inotify watches an inode, not a path: when the directory is deleted and created again (a
//! volume remounted, `rm -rf` and `mkdir` by hand) the old watch goes quiet and changes would be
//! seen only at the next resync. A cheap `stat` every [`defaults::WATCH_CHECK`] notices the new
//! directory, watches it and asks for a rescan.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use notify::Watcher;
use tokio::sync::mpsc;

use super::Trigger;

/// A directory watch that follows the path.
pub struct DirWatch {
    dir: PathBuf,
    recursive: bool,
    tx: mpsc::Sender<Trigger>,
    /// The watcher and the (device, inode) it watches.
    current: Option<(notify::RecommendedWatcher, (u64, u64))>,
}

impl DirWatch {
    /// Watches `dir`; fails with a message naming it when it is not a readable directory.
    pub fn start(dir: &Path, recursive: bool, tx: mpsc::Sender<Trigger>) -> anyhow::Result<DirWatch> {
        let meta = std::fs::metadata(dir).with_context(|| format!("cannot read the profiles directory {}", dir.display()))?;
        if !meta.is_dir() {
            anyhow::bail!("the profiles directory {} is not a directory", dir.display());
        }
        let mut w = DirWatch { dir: dir.to_path_buf(), recursive, tx, current: None };
        let watcher = w.watch().with_context(|| format!("cannot watch the profiles directory {}", dir.display()))?;
        w.current = Some((watcher, (meta.dev(), meta.ino())));
        Ok(w)
    }

    /// Re-creates the watch when the path names another directory than the one watched (or none).
    /// Returns true when it did, and then a rescan is due.
    pub fn refresh(&mut self) -> bool {
        let now = std::fs::metadata(&self.dir).ok().filter(|m| m.is_dir()).map(|m| (m.dev(), m.ino()));
        let watched = self.current.as_ref().map(|(_, id)| *id);
        if now == watched {
            return false;
        }
        self.current = None;
        let Some(id) = now else {
            tracing::warn!(dir = %self.dir.display(), "the profiles directory is gone; watching for it to come back");
            return true;
        };
        match self.watch() {
            Ok(w) => {
                tracing::info!(dir = %self.dir.display(), "the profiles directory was re-created; watching the new one");
                self.current = Some((w, id));
            }
            Err(e) => tracing::warn!(dir = %self.dir.display(), error = %e, "cannot watch the profiles directory; retrying"),
        }
        true
    }

    fn watch(&self) -> notify::Result<notify::RecommendedWatcher> {
        let mut watcher = forwarding_watcher(self.tx.clone())?;
        let mode = if self.recursive { notify::RecursiveMode::Recursive } else { notify::RecursiveMode::NonRecursive };
        watcher.watch(&self.dir, mode)?;
        Ok(watcher)
    }

    /// Checks the path every [`crate::defaults::WATCH_CHECK`] until the channel closes.
    pub async fn follow(mut self) {
        let mut tick = tokio::time::interval(crate::defaults::WATCH_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.tx.is_closed() {
                return;
            }
            if self.refresh() {
                let _ = self.tx.try_send(Trigger::Files);
            }
        }
    }
}

/// The directories of the files the profiles include (outside the profiles directory), which
/// change as the profiles do; the set comes from the reconciler after each sync.
pub struct IncludeWatch {
    watcher: notify::RecommendedWatcher,
    watched: BTreeSet<PathBuf>,
}

impl IncludeWatch {
    /// A watcher with nothing watched yet.
    pub fn new(tx: mpsc::Sender<Trigger>) -> anyhow::Result<IncludeWatch> {
        let watcher = forwarding_watcher(tx).context("cannot create the inotify watcher")?;
        Ok(IncludeWatch { watcher, watched: BTreeSet::new() })
    }

    /// Watches exactly `want`.
    pub fn update(&mut self, want: BTreeSet<PathBuf>) {
        for gone in self.watched.difference(&want) {
            let _ = self.watcher.unwatch(gone);
        }
        for dir in want.difference(&self.watched) {
            if let Err(e) = self.watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch an include directory; its edits are seen at the next resync");
            }
        }
        self.watched = want;
    }
}

/// A watcher whose callback only forwards: the event's kind and path are never trusted, so
/// any event (including an overflow or an error) means "rescan".
fn forwarding_watcher(tx: mpsc::Sender<Trigger>) -> notify::Result<notify::RecommendedWatcher> {
    notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match &event {
            // Opening and reading files (our own scan, the parser) changes nothing; forwarding
            // those would make every sync trigger the next one.
            Ok(e) if is_read_only_access(&e.kind) => return,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "file watcher error; rescanning"),
        }
        // A full channel already holds a pending rescan.
        let _ = tx.try_send(Trigger::Files);
    })
}

fn is_read_only_access(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(kind, notify::EventKind::Access(a) if !matches!(a, AccessKind::Close(AccessMode::Write)))
}
