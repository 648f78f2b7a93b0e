//! The agent's record of what it owns, persisted atomically in the state directory.
//!
//! Ownership is what keeps nodes safe: a kernel profile not in this record is foreign and
//! is never replaced or removed.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::defaults;

/// Version of the on-disk format.
const FORMAT_VERSION: u32 = 1;

/// One profile the agent loaded and therefore owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    /// Key of the source file (path relative to the profiles directory).
    pub file: String,
    /// sha256 of the file content that was loaded.
    pub sha256: String,
    /// RFC 3339 time of the load.
    pub loaded_at: String,
    /// Mode the agent asked for (`enforce` or `complain`).
    pub mode: String,
    /// Mode the kernel listed right after the load. It can differ from `mode` when the file
    /// itself says `flags=(complain)`; drift is a change from this, not from `mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_mode: Option<String>,
    /// The kernel's own hash of the loaded policy (`policy/profiles/*/sha1`), when the kernel
    /// exposes it; a different value later means someone replaced the profile behind our back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_sha1: Option<String>,
}

/// The whole state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    #[serde(default)]
    pub version: u32,
    /// Owned profiles by top-level name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Owned>,
    /// Names each content hash defines (`apparmor_parser -N`), so unchanged files are not
    /// asked again after a restart.
    #[serde(default)]
    pub names: BTreeMap<String, Vec<String>>,
}

impl State {
    /// The owned profiles loaded from one file.
    pub fn owned_by<'a>(&'a self, file: &'a str) -> impl Iterator<Item = (&'a String, &'a Owned)> + 'a {
        self.profiles.iter().filter(move |(_, o)| o.file == file)
    }
}

/// Reading or writing the state file failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but cannot be read.
    #[error("cannot read the state file {}", path.display())]
    Read {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid state JSON.
    #[error("the state file {} is corrupt (move it away to start over; loaded profiles then count as foreign until adopted)", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The JSON error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The new state could not be written.
    #[error("cannot write the state file {}", path.display())]
    Write {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    /// A store in `dir` (the file is `dir/state.json`).
    pub fn new(dir: &Path) -> StateStore {
        StateStore { path: dir.join(defaults::STATE_FILE) }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the state; a missing file is an empty state (first start on this node).
    pub fn load(&self) -> Result<State, StateError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path: self.path.clone(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State { version: FORMAT_VERSION, ..State::default() }),
            Err(source) => Err(StateError::Read { path: self.path.clone(), source }),
        }
    }

    /// Writes the state atomically: a temp file in the same directory, fsync, rename, fsync
    /// of the directory. A crash leaves either the old or the new state, never a torn one.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let err = |source| StateError::Write { path: self.path.clone(), source };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(err)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut state = state.clone();
        state.version = FORMAT_VERSION;
        let bytes = serde_json::to_vec_pretty(&state).expect("state serializes");
        let mut f = fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(err)?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_empty_state_and_round_trip_works() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(&d.path().join("nested"));
        assert!(store.load().unwrap().profiles.is_empty());
        let mut s = State::default();
        s.profiles.insert(
            "payment-api".into(),
            Owned {
                file: "payment-api".into(),
                sha256: "ab".into(),
                loaded_at: "2026-11-28T00:00:00Z".into(),
                mode: "enforce".into(),
                kernel_mode: None,
                kernel_sha1: None,
            },
        );
        s.names.insert("ab".into(), vec!["payment-api".into()]);
        store.save(&s).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back.profiles, s.profiles);
        assert_eq!(back.version, FORMAT_VERSION);
        assert!(!store.path().with_extension("json.tmp").exists());
    }

    #[test]
    fn corrupt_file_names_the_path() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(d.path());
        fs::write(store.path(), "{not json").unwrap();
        let err = store.load().unwrap_err();
        assert!(err.to_string().contains(&store.path().display().to_string()));
    }
}
