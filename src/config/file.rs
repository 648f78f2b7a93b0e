//! The YAML config file: every key optional, unknown keys refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, LogFormat};
use crate::kernel::DesiredMode;

/// The config file. Unknown keys are errors, so a typo never silently does nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub(super) securityfs: Option<PathBuf>,
    pub(super) parser: Option<PathBuf>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) proc: Option<PathBuf>,
    pub(super) parser_timeout: Option<String>,
    pub(super) parser_jobs: Option<u32>,
    pub(super) log_format: Option<LogFormat>,
    pub(super) log_level: Option<String>,
    pub(super) profiles: Option<PathBuf>,
    pub(super) recursive: Option<bool>,
    pub(super) max_file_size: Option<u64>,
    pub(super) adopt: Option<Vec<String>>,
    pub(super) unload_removed: Option<bool>,
    pub(super) default_mode: Option<DesiredMode>,
    pub(super) include_dir: Option<Vec<PathBuf>>,
    pub(super) cache_size: Option<u64>,
    #[serde(default)]
    pub(super) modes: BTreeMap<String, DesiredMode>,
    pub(super) listen: Option<Listen>,
    pub(super) resync_interval: Option<String>,
    pub(super) debounce: Option<String>,
    pub(super) audit_source: Option<String>,
    pub(super) kmsg: Option<PathBuf>,
    pub(super) audit_log: Option<PathBuf>,
    pub(super) denials_buffer: Option<usize>,
    pub(super) node_features_file: Option<PathBuf>,
    pub(super) node_taint: Option<bool>,
    pub(super) node_name: Option<String>,
}

/// `listen:` in the config file: one address, a comma-separated list, or a YAML list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Listen {
    One(String),
    Many(Vec<String>),
}

impl Listen {
    pub(super) fn addresses(&self) -> Vec<&str> {
        match self {
            Listen::One(s) => s.split(',').map(str::trim).collect(),
            Listen::Many(v) => v.iter().map(|s| s.trim()).collect(),
        }
    }
}

impl FileConfig {
    /// Reads and parses the config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        if text.trim().is_empty() {
            return Ok(FileConfig::default());
        }
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
    }
}
