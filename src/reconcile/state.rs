//! The agent's record of what it owns, persisted atomically in the state directory.
//!
//! Ownership is what keeps nodes safe: a kernel profile not in this record is foreign and
//! is never replaced or removed. The record is written *ahead* of every load: an intent
//! (`pending`, with the kernel hash the load will produce) is on disk before the kernel
//! sees the policy, and is confirmed after the kernel shows the result. A crash at any
//! instant leaves a record from which a restart claims exactly what the agent loaded.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::defaults;

/// Version of the on-disk format this build writes. Versions 1 (no journal) and 2 (no
/// identities, no remembered failures) are still read.
const FORMAT_VERSION: u32 = 3;

/// One profile the agent loaded and therefore owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owned {
    /// Key of the source file (path relative to the profiles directory).
    pub file: String,
    /// sha256 of the file content that was loaded.
    pub sha256: String,
    /// Identity of what was loaded: content, includes, toolchain
    /// ([`crate::reconcile::identity`]). Absent in a state written before identities existed:
    /// then the content hash alone decides whether the file changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// RFC 3339 time of the load.
    pub loaded_at: String,
    /// Mode the agent asked for (`enforce` or `complain`).
    pub mode: String,
    /// Mode the kernel listed right after the load. It can differ from `mode` when the file
    /// itself says `flags=(complain)`; drift is a change from this, not from `mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_mode: Option<String>,
    /// The kernel's own hash of the loaded policy (`policy/profiles/*/sha1`, or `sha256` on
    /// Linux 6.8 and later), when the kernel exposes it; a different value later means someone replaced the profile behind our back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_sha1: Option<String>,
}

/// A load the agent is about to make (or made, and has not confirmed yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// What the profile will be owned as once the kernel shows it.
    pub owned: Owned,
    /// The kernel hash the load produces (computed from the compiled policy); `None` on a
    /// kernel that does not expose hashes.
    pub expected_sha1: Option<String>,
    /// The same in SHA-256, what kernels from 6.8 on show instead (absent in state files
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sha256: Option<String>,
}

impl Pending {
    /// Whether the kernel's hash `kernel` (SHA-1 or SHA-256, whichever the kernel uses) is the
    /// one this load produces.
    pub fn expects(&self, kernel: &str) -> bool {
        self.expected_sha1.as_deref() == Some(kernel) || self.expected_sha256.as_deref() == Some(kernel)
    }
}

/// The whole state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The on-disk format: files of formats 1 to 3 are read; a loaded state is always set to 3,
    /// the only format [`StateStore::save`] writes.
    pub version: u32,
    /// Owned profiles by top-level name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Owned>,
    /// Loads written ahead, by top-level name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, Pending>,
    /// Top-level names each content hash defines, as compiled by the parser, so unchanged
    /// files are not compiled again after a restart.
    #[serde(default)]
    pub names: BTreeMap<String, Vec<String>>,
    /// Identities that did not compile, with the error naming the file: such a file is not
    /// compiled again until its identity changes (restarts and resyncs run no parser for it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, String>,
}

impl State {
    /// An empty state of the current format.
    pub fn empty() -> State {
        State { version: FORMAT_VERSION, ..State::default() }
    }

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
        /// `state.json` in the state directory (`--state-dir`).
        path: PathBuf,
        /// Any error but "not found": a missing file is a first start, an empty state.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid state JSON.
    #[error("the state file {} is corrupt (move it away to start over; loaded profiles then count as foreign until adopted)", path.display())]
    Corrupt {
        /// `state.json` in the state directory: the file to move away to start over.
        path: PathBuf,
        /// The JSON error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The file was written by a newer (or unknown) version of the agent.
    #[error("the state file {} has format version {found}, which this agent (format {FORMAT_VERSION}) does not understand; run the newer agent, or move the file away to start over", path.display())]
    Version {
        /// `state.json` in the state directory.
        path: PathBuf,
        /// Its `version` field: 0, or above this build's format.
        found: u32,
    },
    /// The new state could not be written.
    #[error("cannot write the state file {}", path.display())]
    Write {
        /// `state.json` in the state directory, also when what failed was its temp file
        /// `state.json.tmp` or the fsync of the directory.
        path: PathBuf,
        /// Why the step failed; up to the rename the old state file is untouched.
        #[source]
        source: std::io::Error,
    },
}

/// The state file, `<state dir>/state.json`: loads it, and saves it atomically.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
}

/// Only the version, read first so that a newer format is refused by its number rather
/// than by whatever field it added.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
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

    /// Loads the state; a missing file is an empty state (first start on this node). A file
    /// without a version, of another version, or with unknown fields is refused: guessing
    /// would risk "owning nothing" and refusing every profile the agent loaded.
    pub fn load(&self) -> Result<State, StateError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::empty()),
            Err(source) => return Err(StateError::Read { path: self.path.clone(), source }),
        };
        let corrupt = |source| StateError::Corrupt { path: self.path.clone(), source };
        let VersionOnly { version } = serde_json::from_slice(&bytes).map_err(corrupt)?;
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(StateError::Version { path: self.path.clone(), found: version });
        }
        let mut state: State = serde_json::from_slice(&bytes).map_err(corrupt)?;
        state.version = FORMAT_VERSION;
        Ok(state)
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

    fn owned() -> Owned {
        Owned {
            file: "payment-api".into(),
            sha256: "ab".into(),
            identity: Some("id".into()),
            loaded_at: "2026-11-28T00:00:00Z".into(),
            mode: "enforce".into(),
            kernel_mode: None,
            kernel_sha1: None,
        }
    }

    #[test]
    fn missing_file_is_empty_state_and_round_trip_works() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(&d.path().join("nested"));
        assert!(store.load().unwrap().profiles.is_empty());
        let mut s = State::empty();
        s.profiles.insert("payment-api".into(), owned());
        s.pending.insert("x".into(), Pending { owned: owned(), expected_sha1: Some("k".into()), expected_sha256: None });
        s.names.insert("ab".into(), vec!["payment-api".into()]);
        s.failures.insert("cd".into(), "/p/x:3: syntax error".into());
        store.save(&s).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back, s);
        assert!(!store.path().with_extension("json.tmp").exists());
    }

    #[test]
    fn version_one_is_read() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(d.path());
        fs::write(
            store.path(),
            r#"{"version":1,"profiles":{"a":{"file":"a","sha256":"s","loaded_at":"t","mode":"enforce","kernel_sha1":"k"}},"names":{"s":["a"]}}"#,
        )
        .unwrap();
        let s = store.load().unwrap();
        assert_eq!(s.version, FORMAT_VERSION);
        assert_eq!(s.profiles["a"].kernel_sha1.as_deref(), Some("k"));
    }

    /// Anything the agent does not fully understand is refused with the path, never read as
    /// "owns nothing".
    #[test]
    fn unknown_content_is_refused_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(d.path());
        let cases = [
            ("{not json", "corrupt"),
            ("[]", "corrupt"),
            ("{}", "corrupt"),
            (r#"{"version":4,"profiles":{}}"#, "format version 4"),
            (r#"{"version":0}"#, "format version 0"),
            (r#"{"version":2,"profiles":{},"future":1}"#, "corrupt"),
            (r#"{"version":2,"profiles":{"a":{"file":"a","sha256":"s","loaded_at":"t","mode":"enforce","extra":1}}}"#, "corrupt"),
        ];
        for (content, want) in cases {
            fs::write(store.path(), content).unwrap();
            let err = store.load().unwrap_err().to_string();
            assert!(err.contains(&store.path().display().to_string()) && err.contains(want), "{content}: {err}");
        }
    }
}
