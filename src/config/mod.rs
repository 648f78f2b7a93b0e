//! Settings: command-line flags (each also an `APPARMOR_LOADER_*` environment variable),
//! an optional YAML config file, and the named defaults — in that order of precedence.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::{SourcePaths, SourceSpec};
use crate::defaults;
use crate::kernel::DesiredMode;

mod args;
mod check;
mod file;
mod host_args;
mod values;

pub use args::{AdmissionPolicyArgs, AuditArgs, Cli, Command, GlobalArgs, IncludeArgs, LogFormat, ReconcileArgs, RunArgs};
pub use file::FileConfig;
pub use host_args::{
    CompileHostArgs, HostFlags, KernelArgs, LoadHostArgs, NodeFeaturesArgs, ParserArgs, ProcArgs, StateArgs, TimeoutArgs,
};

/// A settings problem; the message names the file (and line, where the YAML reader gives one) or the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read the config file {}", path.display())]
    Read {
        /// The `--config` path.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not YAML, or a value is not of its flag's type.
    #[error("invalid config file {}: {message}", path.display())]
    Parse {
        /// The `--config` path.
        path: PathBuf,
        /// The YAML reader's message, with the line and column.
        message: String,
    },
    /// A key of the config file is no flag's name: a typo must not silently do nothing.
    #[error("invalid config file {}: unknown key {key:?} at line {line}; the keys are the flags' names in snake_case: {known}", path.display())]
    UnknownKey {
        /// The `--config` path.
        path: PathBuf,
        /// The key as written.
        key: String,
        /// Its line, counted from 1.
        line: u64,
        /// Every key the file may hold, comma-separated.
        known: String,
    },
    /// A duration, size or count is outside what the agent can work with (zero, usually).
    #[error("{origin}: {key} = {value} is out of range: {why}")]
    Range {
        /// `--flag` or `config file PATH`, whichever gave the value.
        origin: String,
        /// The setting's config-file key.
        key: &'static str,
        /// The value as a person would write it (`0s`, `0`).
        value: String,
        /// The allowed range, in words.
        why: &'static str,
    },
    /// The log filter does not parse.
    #[error("{origin}: log_level {value:?} is not a log filter like info, debug or apparmor_loader=debug: {message}")]
    LogLevel {
        /// `--log-level` or `config file PATH`.
        origin: String,
        /// The filter as given.
        value: String,
        /// What is wrong with it.
        message: String,
    },
    /// `--profiles` is missing.
    #[error("no profiles directory: pass --profiles DIR, set APPARMOR_LOADER_PROFILES or `profiles:` in the config file")]
    NoProfiles,
    /// `--node-taint` without a node name.
    #[error(
        "--node-taint needs this node's name: pass --node-name, set APPARMOR_LOADER_NODE_NAME (the downward API's spec.nodeName) or `node_name:` in the config file"
    )]
    NoNodeName,
    /// An `--adopt` glob does not parse.
    #[error("invalid --adopt glob {glob:?}")]
    Glob {
        /// The glob as given (all of them, comma-joined, when the set fails to build).
        glob: String,
        /// The glob compiler's complaint.
        #[source]
        source: globset::Error,
    },
}

/// Host paths and process settings every subcommand uses.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// securityfs mount point.
    pub securityfs: PathBuf,
    /// Whether `securityfs` is the default path (only then is mounting allowed).
    pub securityfs_is_default: bool,
    /// Explicit parser, if any.
    pub parser: Option<PathBuf>,
    /// State directory.
    pub state_dir: PathBuf,
    /// procfs.
    pub proc_dir: PathBuf,
    /// Parser timeout.
    pub parser_timeout: Duration,
    /// Parser compile jobs.
    pub parser_jobs: u32,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// The Node Feature Discovery feature file.
    pub node_features_file: PathBuf,
}

impl HostSettings {
    /// The AppArmor directory inside securityfs.
    pub fn apparmor_dir(&self) -> PathBuf {
        self.securityfs.join(defaults::APPARMOR_SUBDIR)
    }
}

/// Settings of the reconciling subcommands.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// The profiles directory.
    pub profiles: PathBuf,
    /// Read subdirectories.
    pub recursive: bool,
    /// Size limit.
    pub max_file_size: u64,
    /// Adopt globs, as given.
    pub adopt: Vec<String>,
    /// Remove deleted files' profiles.
    pub unload_removed: bool,
    /// Default mode.
    pub default_mode: DesiredMode,
    /// Per-profile modes.
    pub modes: BTreeMap<String, DesiredMode>,
    /// Extra include directories (`-I`).
    pub include_dirs: Vec<PathBuf>,
    /// Bound of the compiled-policy cache, bytes (0: off).
    pub cache_size: u64,
}

impl ReconcileSettings {
    /// The compiled adopt globs.
    pub fn adopt_set(&self) -> Result<globset::GlobSet, ConfigError> {
        let mut builder = globset::GlobSetBuilder::new();
        for glob in &self.adopt {
            // A literal separator keeps `*` from matching `/` in path-named profiles only when asked.
            let g = globset::Glob::new(glob).map_err(|source| ConfigError::Glob { glob: glob.clone(), source })?;
            builder.add(g);
        }
        builder.build().map_err(|source| ConfigError::Glob { glob: self.adopt.join(","), source })
    }

    /// The reconciler's settings: these, with the host's procfs, the include search path and
    /// the compiled-policy cache in the state dir (keyed also by `toolchain`: parser version,
    /// parser.conf and kernel features).
    pub fn reconciler(&self, host: &HostSettings, toolchain: String) -> Result<crate::reconcile::Settings, ConfigError> {
        let search = crate::reconcile::identity::SearchPath::new(
            &self.include_dirs,
            Path::new(defaults::PARSER_CONF),
            Path::new(defaults::PARSER_BASE),
            &self.profiles,
        );
        Ok(crate::reconcile::Settings {
            profiles_dir: self.profiles.clone(),
            scan: crate::scan::ScanOptions { recursive: self.recursive, max_file_size: self.max_file_size },
            policy: crate::reconcile::plan::Policy {
                adopt: self.adopt_set()?,
                unload_removed: self.unload_removed,
                default_mode: self.default_mode,
                modes: self.modes.clone(),
            },
            proc_dir: host.proc_dir.clone(),
            search,
            include_dirs: self.include_dirs.clone(),
            toolchain,
            cache: crate::kernel::cache::PolicyCache::new(host.state_dir.join(defaults::CACHE_SUBDIR), self.cache_size),
        })
    }
}

/// Where audit records come from.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The source.
    pub source: SourceSpec,
    /// Host paths (kmsg, audit log, procfs).
    pub paths: SourcePaths,
}

/// Settings of `run`.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Directory settings.
    pub reconcile: ReconcileSettings,
    /// Denial monitoring.
    pub audit: AuditSettings,
    /// Recent denials kept for GET /denials.
    pub denials_buffer: usize,
    /// HTTP listen addresses (at least one).
    pub listen: Vec<SocketAddr>,
    /// Resync period.
    pub resync_interval: Duration,
    /// Debounce window.
    pub debounce: Duration,
    /// With --node-taint: this node's name.
    pub node_taint: Option<String>,
}

/// Merges flags (which already include the environment) over the config file over defaults.
/// A flag and its file key are one field of one flag group ([`args`], [`host_args`]); this is
/// where the defaults of [`defaults`] and the range checks ([`check`]) apply.
pub struct Resolver {
    file: FileConfig,
}

impl Resolver {
    /// Loads the config file named by `--config`, if any.
    pub fn new(config: Option<&Path>) -> Result<Resolver, ConfigError> {
        let file = config.map(FileConfig::load).transpose()?.unwrap_or_default();
        Ok(Resolver { file })
    }

    /// Host settings.
    pub fn host(&self, cli: &Cli) -> Result<HostSettings, ConfigError> {
        let (g, h, f) = (&cli.global, cli.host_flags(), &self.file);
        let securityfs =
            h.kernel.securityfs.or_else(|| f.kernel.securityfs.clone()).unwrap_or_else(|| defaults::SECURITYFS.into());
        let parser = h.parser.parser.or_else(|| f.parser.parser.clone());
        let state_dir = h.state.state_dir.or_else(|| f.state.state_dir.clone()).unwrap_or_else(|| defaults::STATE_DIR.into());
        let jobs = check::PARSER_JOBS_RANGE;
        Ok(HostSettings {
            securityfs_is_default: securityfs == Path::new(defaults::SECURITYFS),
            securityfs,
            parser: parser.map(|p| if p.components().count() > 1 { anchored(p) } else { p }),
            state_dir: anchored(state_dir),
            proc_dir: h.proc.proc.or_else(|| f.proc.proc.clone()).unwrap_or_else(|| defaults::PROC.into()),
            parser_timeout: self.duration(
                h.timeout.parser_timeout,
                "parser_timeout",
                f.timeout.parser_timeout,
                defaults::PARSER_TIMEOUT,
                check::PARSER_TIMEOUT_RANGE,
            )?,
            parser_jobs: self.within(h.parser.parser_jobs, "parser_jobs", f.parser.parser_jobs, defaults::PARSER_JOBS, jobs)?,
            log_format: g.log_format.or(f.global.log_format).unwrap_or(LogFormat::Plain),
            log_level: self.log_level(g.log_level.as_ref())?,
            node_features_file: h
                .node_features
                .node_features_file
                .or_else(|| f.node_features.node_features_file.clone())
                .unwrap_or_else(|| defaults::NFD_FEATURES_FILE.into()),
        })
    }

    /// Audit source settings; `proc_dir` is the resolved `--proc`.
    pub fn audit(&self, a: &AuditArgs, proc_dir: &Path) -> AuditSettings {
        let f = &self.file.audit;
        let paths = SourcePaths {
            kmsg: a.kmsg.clone().or_else(|| f.kmsg.clone()).unwrap_or_else(|| defaults::DEV_KMSG.into()),
            audit_log: a.audit_log.clone().or_else(|| f.audit_log.clone()).unwrap_or_else(|| defaults::AUDIT_LOG.into()),
            proc_root: proc_dir.to_path_buf(),
        };
        AuditSettings { source: a.audit_source.clone().or_else(|| f.audit_source.clone()).unwrap_or_default(), paths }
    }

    /// Directory settings.
    pub fn reconcile(&self, a: &ReconcileArgs) -> Result<ReconcileSettings, ConfigError> {
        let f = &self.file.reconcile;
        let size = check::MAX_FILE_SIZE_RANGE;
        Ok(ReconcileSettings {
            profiles: a.profiles.clone().or_else(|| f.profiles.clone()).ok_or(ConfigError::NoProfiles)?,
            recursive: a.recursive || f.recursive,
            max_file_size: self.within(a.max_file_size, "max_file_size", f.max_file_size, defaults::MAX_FILE_SIZE, size)?,
            adopt: either(&a.adopt, &f.adopt),
            unload_removed: a.unload_removed || f.unload_removed,
            default_mode: a.default_mode.or(f.default_mode).unwrap_or_default(),
            modes: self.file.only.modes.clone(),
            include_dirs: self.include_dirs(&a.include),
            cache_size: self.within(a.cache_size, "cache_size", f.cache_size, defaults::CACHE_SIZE, check::CACHE_SIZE_RANGE)?,
        })
    }

    /// The extra include directories (`run`, `sync`, `diff`, `check`, `admission-policy`): the
    /// flag's, else the file's; made absolute, since the parser runs inside the profiles directory.
    pub fn include_dirs(&self, flag: &IncludeArgs) -> Vec<PathBuf> {
        either(&flag.include_dir, &self.file.include.include_dir).into_iter().map(anchored).collect()
    }

    /// `run` settings.
    pub fn run(&self, a: &RunArgs, host: &HostSettings) -> Result<RunSettings, ConfigError> {
        let f = &self.file.run;
        let denials = check::DENIALS_BUFFER_RANGE;
        let default_listen = || vec![defaults::LISTEN.parse().expect("valid default")];
        Ok(RunSettings {
            reconcile: self.reconcile(&a.reconcile)?,
            audit: self.audit(&a.audit, &host.proc_dir),
            denials_buffer: self.within(
                a.denials_buffer,
                "denials_buffer",
                f.denials_buffer,
                defaults::DENIALS_BUFFER,
                denials,
            )?,
            listen: Some(either(&a.listen, &f.listen)).filter(|l| !l.is_empty()).unwrap_or_else(default_listen),
            resync_interval: self.duration(
                a.resync_interval,
                "resync_interval",
                f.resync_interval,
                defaults::RESYNC_INTERVAL,
                check::RESYNC_RANGE,
            )?,
            debounce: self.duration(a.debounce, "debounce", f.debounce, defaults::DEBOUNCE, check::DEBOUNCE_RANGE)?,
            node_taint: self.node_taint(a)?,
        })
    }

    /// `--node-taint`: off unless asked for; then this node's name, which it cannot do without.
    fn node_taint(&self, a: &RunArgs) -> Result<Option<String>, ConfigError> {
        let f = &self.file.run;
        if !(a.node_taint || f.node_taint) {
            return Ok(None);
        }
        let name = a.node_name.clone().or_else(|| f.node_name.clone()).filter(|n| !n.is_empty());
        name.map(Some).ok_or(ConfigError::NoNodeName)
    }
}

/// A list flag's values, else the file's: a list given on the command line replaces the file's.
fn either<T: Clone>(flag: &[T], file: &[T]) -> Vec<T> {
    if flag.is_empty() { file.to_vec() } else { flag.to_vec() }
}

/// `path` made absolute against the current directory. The parser runs inside the profiles
/// directory (quoted includes resolve there), so a relative state dir (private copies of the
/// files), parser path or include dir given on the command line would name the wrong place for it.
fn anchored(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

#[cfg(test)]
mod tests;
