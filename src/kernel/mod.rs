//! The seam to the kernel: everything that reads securityfs, writes policy into it or runs
//! `apparmor_parser` goes through the [`Kernel`] trait, so the reconciler can be tested with
//! a fake that records calls.
//!
//! Loading is two steps: the parser *compiles* a file into binary policy (never loading
//! it), and the agent reads the profile names and kernel hashes out of that policy before it
//! *loads* it. So the names the agent checks against foreign profiles are the ones the real
//! parser produced, and the bytes the kernel gets are the bytes that were checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kernel::listing::{KernelProfile, ListingError};
use crate::scan::SourceFile;
use parser_output::Diagnostic;

/// Reader of compiled binary policy: the names, modes and hashes the kernel will see.
pub mod blob;
/// Compiled policy kept by identity in the state directory.
pub mod cache;
/// Which profiles still confine a running process (`/proc/*/task/*/attr/current`).
pub mod confined;
#[cfg(test)]
pub mod fake;
mod features;
mod host;
/// Parser of the kernel's `profiles` listing.
pub mod listing;
/// Parser of `apparmor_parser`'s error diagnostics.
pub mod parser_output;
pub mod process;

pub use blob::BlobProfile;
pub use host::{CheckJob, HostKernel, parser_major};
pub use process::{InFlight, resolve_parser};

/// The mode the agent loads a file in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredMode {
    /// Load normally (the file's own flags apply); the default.
    #[default]
    Enforce,
    /// Compile with `apparmor_parser -C`: violations are logged, not denied.
    Complain,
}

impl DesiredMode {
    /// Lowercase name, as stored in the state file.
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredMode::Enforce => "enforce",
            DesiredMode::Complain => "complain",
        }
    }
}

/// A kernel or parser operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// securityfs could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// securityfs's `profiles` listing, a directory of its `policy/profiles` hash tree, or the
        /// policy file `check` had the parser write.
        path: PathBuf,
        /// Why reading failed; a missing hash directory is not an error (kernels without policy
        /// hashing have none).
        #[source]
        source: std::io::Error,
    },
    /// The kernel listing did not parse.
    #[error("unexpected content in {}", path.display())]
    Listing {
        /// securityfs's `profiles` file, `<apparmor dir>/profiles`.
        path: PathBuf,
        /// The first line that did not parse, and its number.
        #[source]
        source: ListingError,
    },
    /// The parser could not be started.
    #[error("cannot run the AppArmor parser {}", parser.display())]
    Spawn {
        /// The parser as resolved: `--parser`, or `apparmor_parser` found on `PATH`.
        parser: PathBuf,
        /// Why `spawn` failed, typically a missing or non-executable binary.
        #[source]
        source: std::io::Error,
    },
    /// The parser ran longer than the timeout and was killed.
    #[error("{} timed out after {} ({what}) and was killed; raise --parser-timeout if the profile is just large", parser.display(), humantime::format_duration(*timeout))]
    Timeout {
        /// The parser as resolved, as for [`KernelError::Spawn`].
        parser: PathBuf,
        /// How long the parser ran before its whole process group was killed: `--parser-timeout`,
        /// times the number of files (at most 20) for a batched compile.
        timeout: Duration,
        /// What it was doing, naming the file(s).
        what: String,
    },
    /// The agent is shutting down: no new parser process starts.
    #[error("not started: the agent is shutting down")]
    Stopped,
    /// The parser rejected a file; the diagnostics name it (and the line).
    #[error("{}", parser_output::summary(diagnostics))]
    Rejected {
        /// The parser's diagnostics, paths rewritten to the ones the user knows.
        diagnostics: Vec<Diagnostic>,
    },
    /// The parser's output for a file is not valid binary policy.
    #[error("{}: the parser wrote policy the agent cannot read", file.display())]
    BadPolicy {
        /// The profile file the policy was compiled from, as the user knows it
        /// ([`SourceFile::shown`]), not the parser's output file.
        file: PathBuf,
        /// What is wrong with it.
        #[source]
        source: blob::BlobError,
    },
    /// The kernel refused a compiled file.
    #[error("{}: the kernel refused the policy ({what})", file.display())]
    LoadRefused {
        /// The profile file as the user knows it ([`SourceFile::shown`]); for a refused removal,
        /// the profile's name.
        file: PathBuf,
        /// The error of the write to securityfs, or the parser's stderr with its scratch file's
        /// path replaced by `<policy>`.
        what: String,
    },
    /// A new load found one of its profiles already in the kernel.
    #[error("{}: a profile of this file appeared in the kernel just before loading it; it was left untouched", file.display())]
    Exists {
        /// The profile file as the user knows it ([`SourceFile::shown`]).
        file: PathBuf,
    },
    /// A profile name cannot be expressed safely in a removal request.
    #[error("profile name {0:?} contains a quote, newline or NUL and cannot be removed by name")]
    BadName(String),
    /// A file the agent needs for a parser call could not be written.
    #[error("cannot write {}", path.display())]
    Scratch {
        /// The scratch directory in the state directory, or a staging directory or file in it.
        path: PathBuf,
        /// Why it could not be created or written; scratch files are always created new, so a
        /// leftover one with the same name fails too.
        #[source]
        source: std::io::Error,
    },
}

/// A file's exact content, handed to the parser: what was hashed is what gets compiled.
#[derive(Debug, Clone, Copy)]
pub struct CompileInput<'a> {
    /// The file, for messages.
    pub file: &'a SourceFile,
    /// Its content, as hashed.
    pub bytes: &'a [u8],
}

/// How to compile a batch.
#[derive(Debug, Clone)]
pub struct CompileJob {
    /// The parser's working directory: quoted relative includes resolve against it.
    pub cwd: PathBuf,
    /// Added to the parser's include search path (`-I`), before parser.conf's and the base dir.
    pub include_dirs: Vec<PathBuf>,
    /// Compile for this feature set (a kernel's `apparmor/features` saved as a file) instead of the
    /// running kernel's (`--kernel-features`), so a host without AppArmor can name profiles.
    pub kernel_features: Option<PathBuf>,
}

/// A file compiled to binary policy, with what the kernel will show once it is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The binary policy, loaded as one unit.
    pub blob: Vec<u8>,
    /// Every profile in it (children as `parent//child`), in blob order.
    pub profiles: Vec<BlobProfile>,
}

impl Compiled {
    /// Reads the profiles out of a blob.
    pub fn from_blob(blob: Vec<u8>) -> Result<Compiled, blob::BlobError> {
        let profiles = blob::parse(&blob)?;
        Ok(Compiled { blob, profiles })
    }

    /// The policy as it must be loaded in `mode`. Compiling never uses `-C` (the parser
    /// writes no policy file with it): complain mode is the header bit `-C` would have set.
    pub fn in_mode(self, mode: DesiredMode) -> Result<Compiled, blob::BlobError> {
        match mode {
            DesiredMode::Enforce => Ok(self),
            DesiredMode::Complain => Compiled::from_blob(blob::force_complain(&self.blob)?),
        }
    }

    /// The top-level profile names, sorted.
    pub fn top_level(&self) -> Vec<String> {
        let mut names: Vec<String> = self.profiles.iter().filter(|p| !p.name.contains("//")).map(|p| p.name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Whether a load may replace profiles that are already in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// None of the file's profiles may exist (`.load`): a profile that appeared since the
    /// plan was made (someone else's) makes the load fail instead of being replaced.
    New,
    /// Replace what is there (`.replace`): every existing profile of the file is ours.
    Replace,
}

/// What the reconciler needs from the kernel.
pub trait Kernel: Send + Sync {
    /// All profiles in the kernel (top-level and children).
    fn listing(&self) -> Result<Vec<KernelProfile>, KernelError>;
    /// The kernel's own hash of each loaded profile; empty where the kernel does not expose it.
    fn hashes(&self) -> Result<BTreeMap<String, String>, KernelError>;
    /// Compiles the inputs without loading them; one result per input, in order. The outer
    /// error means nothing could be compiled (the staging area is not writable).
    fn compile(&self, inputs: &[CompileInput<'_>], job: &CompileJob) -> Result<Vec<Result<Compiled, KernelError>>, KernelError>;
    /// Loads one compiled file as a unit; `file` names it in errors.
    fn load(&self, file: &Path, compiled: &Compiled, kind: LoadKind) -> Result<(), KernelError>;
    /// Removes one top-level profile (and its children) by name.
    fn unload(&self, name: &str) -> Result<(), KernelError>;
}

/// The kind of parser call, for the duration histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParserOp {
    /// `-Q -W`: compile to binary policy.
    Compile,
    /// `-B`: load binary policy (only where the agent cannot write securityfs itself).
    Load,
    /// `-R`: remove the profile a stub file names (only where the agent cannot write securityfs
    /// itself).
    Remove,
    /// `-Q -K`: compile one file without loading it, for `check`; also `-V`, the version probe.
    Check,
}

impl ParserOp {
    /// The `operation` label of the parser duration histogram: `compile`, `load`, `remove` or
    /// `check`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParserOp::Compile => "compile",
            ParserOp::Load => "load",
            ParserOp::Remove => "remove",
            ParserOp::Check => "check",
        }
    }
}

/// Called after every parser process with its kind, duration and success.
pub type ParserObserver = std::sync::Arc<dyn Fn(ParserOp, Duration, bool) + Send + Sync>;

/// Told how many files a batched compile gave up on and compiled one process each (metrics).
pub type FallbackObserver = std::sync::Arc<dyn Fn(usize) + Send + Sync>;
