//! The YAML config file: the flag groups themselves, read from it (a key is a flag's name in
//! snake_case), plus the per-profile `modes:` only the file can say. Unknown keys are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::ConfigError;
use super::args::{AuditArgs, GlobalArgs, IncludeArgs, ReconcileArgs, RunArgs};
use super::host_args::{KernelArgs, NodeFeaturesArgs, ParserArgs, ProcArgs, StateArgs, TimeoutArgs};
use super::values::keys;
use crate::kernel::DesiredMode;

/// What only the config file sets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(super) struct FileOnly {
    /// The mode of each named profile; the others get `default_mode`.
    pub(super) modes: BTreeMap<String, DesiredMode>,
}

/// Declares the config file as the list of flag groups it layers under: each group is read from
/// the whole file (taking the keys it knows), and the union of their keys is what the file may hold.
macro_rules! sections {
    ($($(#[$doc:meta])* $field:ident: $group:ty,)*) => {
        /// The config file, read into the flag groups. An absent file is every group's default (no key set).
        #[derive(Debug, Default)]
        pub struct FileConfig {
            /// The file, for messages; `None` without `--config`.
            pub(super) path: Option<PathBuf>,
            $($(#[$doc])* pub(super) $field: $group,)*
        }

        impl FileConfig {
            fn read(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
                Ok(FileConfig { path: Some(path.to_path_buf()), $($field: section(path, text)?,)* })
            }

            /// Every key the file may hold.
            pub(super) fn known_keys() -> BTreeSet<&'static str> {
                [$(keys::<$group>()),*].concat().into_iter().collect()
            }
        }
    };
}

sections! {
    /// `log_format`, `log_level`.
    global: GlobalArgs,
    /// The directory settings of `run`, `sync` and `diff`.
    reconcile: ReconcileArgs,
    /// `include_dir`, also read by `check` and `admission-policy`.
    include: IncludeArgs,
    /// The audit record source.
    audit: AuditArgs,
    /// `run`'s own settings.
    run: RunArgs,
    /// `securityfs`.
    kernel: KernelArgs,
    /// `parser`, `parser_jobs`.
    parser: ParserArgs,
    /// `parser_timeout`.
    timeout: TimeoutArgs,
    /// `state_dir`.
    state: StateArgs,
    /// `proc`.
    proc: ProcArgs,
    /// `node_features_file`.
    node_features: NodeFeaturesArgs,
    /// `modes`.
    only: FileOnly,
}

impl FileConfig {
    /// Reads and checks the config file: every key known, every value of its flag's type.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        if text.trim().is_empty() {
            return Ok(FileConfig { path: Some(path.to_path_buf()), ..FileConfig::default() });
        }
        check_keys(path, &text)?;
        FileConfig::read(path, &text)
    }
}

/// Refuses a key no flag group reads, naming it and its line: a typo must not silently do nothing.
fn check_keys(path: &Path, text: &str) -> Result<(), ConfigError> {
    let parse_error = |e: serde_saphyr::Error| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() };
    let entries: BTreeMap<String, serde_saphyr::Spanned<IgnoredAny>> = serde_saphyr::from_str(text).map_err(parse_error)?;
    let known = FileConfig::known_keys();
    match entries.into_iter().find(|(key, _)| !known.contains(key.as_str())) {
        Some((key, value)) => Err(ConfigError::UnknownKey {
            path: path.to_path_buf(),
            key,
            line: value.referenced.line(),
            known: known.into_iter().collect::<Vec<_>>().join(", "),
        }),
        None => Ok(()),
    }
}

/// One flag group as the file sets it (keys of other groups are left to them).
fn section<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
}
