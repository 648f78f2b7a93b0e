//! Test support shared by the reconciler's tests and the one-shot subcommands' tests (`cli`): a
//! profiles directory, a state directory and a `/proc` on disk for the recording fake kernel, and
//! profile files written where a test wants them. Compiled only under `cfg(test)`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::plan::Policy;
use super::state::StateStore;
use super::{Reconciler, Settings};
use crate::kernel::DesiredMode;
use crate::kernel::cache::PolicyCache;
use crate::kernel::fake::FakeKernel;
use crate::scan::{self, ScanOptions};

/// The SHA-256 of `content` in hex: the key under which the fake kernel knows what it compiles to.
pub(crate) fn sha(content: &str) -> String {
    scan::hex(&sha2::Sha256::digest(content.as_bytes()))
}

/// Writes each `(name, content)` into `dir`, creating `dir` first; returns the files' paths in order.
pub(crate) fn profile_files(dir: &Path, files: &[(&str, &str)]) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    files
        .iter()
        .map(|(name, content)| {
            let path = dir.join(name);
            fs::write(&path, content).unwrap();
            path
        })
        .collect()
}

/// A profiles directory, a state directory and a /proc without processes, for a fake kernel.
pub(crate) struct World {
    /// The profiles directory the reconciler scans.
    pub(crate) dir: tempfile::TempDir,
    /// The state file and the policy cache.
    pub(crate) state_dir: tempfile::TempDir,
    /// An empty procfs until [`World::confine`] adds a task.
    pub(crate) proc_dir: tempfile::TempDir,
}

impl World {
    pub(crate) fn new() -> World {
        World {
            dir: tempfile::tempdir().unwrap(),
            state_dir: tempfile::tempdir().unwrap(),
            proc_dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes a profile file; the fake kernel compiles it to `defines`, or fails it when empty.
    pub(crate) fn write(&self, kernel: &FakeKernel, name: &str, content: &str, defines: &[&str]) {
        fs::write(self.dir.path().join(name), content).unwrap();
        if !defines.is_empty() {
            kernel.define(&sha(content), defines);
        }
    }

    /// The state store on the state directory.
    pub(crate) fn store(&self) -> StateStore {
        StateStore::new(self.state_dir.path())
    }

    /// Settings on this world's directories: flat scan of files up to 1 KiB, nothing adopted,
    /// enforce mode, no include search directories, and the policy cache disabled (0 bytes).
    pub(crate) fn settings(&self, unload_removed: bool) -> Settings {
        Settings {
            profiles_dir: self.dir.path().to_path_buf(),
            scan: ScanOptions { recursive: false, max_file_size: 1024 },
            policy: Policy {
                adopt: globset::GlobSet::empty(),
                unload_removed,
                default_mode: DesiredMode::Enforce,
                modes: BTreeMap::new(),
            },
            proc_dir: self.proc_dir.path().to_path_buf(),
            search: super::identity::SearchPath { dirs: Vec::new(), cwd: self.dir.path().to_path_buf() },
            include_dirs: Vec::new(),
            toolchain: "fake".into(),
            cache: PolicyCache::new(self.state_dir.path().join("cache"), 0),
        }
    }

    /// A reconciler on `kernel` with `settings` and this world's state store.
    pub(crate) fn reconciler_with(&self, kernel: FakeKernel, settings: Settings) -> Reconciler<FakeKernel> {
        Reconciler::new(kernel, self.store(), settings).unwrap()
    }

    /// A task under the fake /proc confined by `label`.
    pub(crate) fn confine(&self, pid: u32, label: &str) {
        let attr = self.proc_dir.path().join(format!("{pid}/task/{pid}/attr"));
        fs::create_dir_all(&attr).unwrap();
        fs::write(attr.join("current"), format!("{label}\n")).unwrap();
    }
}
