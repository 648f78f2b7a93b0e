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

pub use args::{AdmissionPolicyArgs, AuditArgs, Cli, Command, GlobalArgs, LogFormat, ReconcileArgs, RunArgs};
pub use file::FileConfig;
pub use host_args::{
    CompileHostArgs, HostFlags, KernelArgs, LoadHostArgs, NodeFeaturesArgs, ParserArgs, ProcArgs, StateArgs, TimeoutArgs,
};

/// A settings problem; the message names the file or flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read the config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid (the message has the line and column).
    #[error("invalid config file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The YAML error with its location.
        message: String,
    },
    /// A duration in the config file does not parse.
    #[error("invalid config file {}: {key}: {value:?} is not a duration like 500ms, 30s or 1m", path.display())]
    Duration {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
    },
    /// A duration or size is outside what the agent can work with (zero, usually).
    #[error("{origin}: {key} = {value} is out of range: {why}")]
    Range {
        /// `--flag` or the config file's path.
        origin: String,
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What is allowed.
        why: &'static str,
    },
    /// The log filter does not parse.
    #[error("{origin}: log_level {value:?} is not a log filter like info, debug or apparmor_loader=debug: {message}")]
    LogLevel {
        /// `--log-level` or the config file's path.
        origin: String,
        /// The value.
        value: String,
        /// The parser's complaint.
        message: String,
    },
    /// `--profiles` is missing.
    #[error("no profiles directory: pass --profiles DIR, set APPARMOR_LOADER_PROFILES or `profiles:` in the config file")]
    NoProfiles,
    /// `cache_size` is beyond any sensible bound.
    #[error("cache_size {value} is larger than the {} bytes allowed", defaults::MAX_CACHE_SIZE)]
    CacheSize {
        /// The value given.
        value: u64,
    },
    /// `audit_source` in the config file does not parse.
    #[error("invalid config file {}: audit_source: {message}", path.display())]
    AuditSource {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `listen` in the config file is not a list of socket addresses.
    #[error("invalid config file {}: listen: {value:?} is not an address like 127.0.0.1:9741 or [::1]:9741", path.display())]
    Listen {
        /// The file.
        path: PathBuf,
        /// The value.
        value: String,
    },
    /// `--node-taint` without a node name.
    #[error(
        "--node-taint needs this node's name: pass --node-name, set APPARMOR_LOADER_NODE_NAME (the downward API's spec.nodeName) or `node_name:` in the config file"
    )]
    NoNodeName,
    /// An `--adopt` glob does not parse.
    #[error("invalid --adopt glob {glob:?}")]
    Glob {
        /// The glob.
        glob: String,
        /// The error.
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
pub struct Resolver {
    file: FileConfig,
    path: Option<PathBuf>,
}

impl Resolver {
    /// Loads the config file named by `--config`, if any.
    pub fn new(config: Option<&Path>) -> Result<Resolver, ConfigError> {
        let file = config.map(FileConfig::load).transpose()?.unwrap_or_default();
        Ok(Resolver { file, path: config.map(Path::to_path_buf) })
    }

    /// Host settings.
    pub fn host(&self, cli: &Cli) -> Result<HostSettings, ConfigError> {
        let f = &self.file;
        let (g, h) = (&cli.global, &cli.host_flags());
        let securityfs = h.securityfs.clone().or_else(|| f.securityfs.clone()).unwrap_or_else(|| defaults::SECURITYFS.into());
        Ok(HostSettings {
            securityfs_is_default: securityfs == Path::new(defaults::SECURITYFS),
            securityfs,
            parser: h
                .parser
                .clone()
                .or_else(|| f.parser.clone())
                .map(|p| if p.components().count() > 1 { anchored(p) } else { p }),
            state_dir: anchored(
                h.state_dir.clone().or_else(|| f.state_dir.clone()).unwrap_or_else(|| defaults::STATE_DIR.into()),
            ),
            proc_dir: h.proc.clone().or_else(|| f.proc.clone()).unwrap_or_else(|| defaults::PROC.into()),
            parser_timeout: self.duration(
                h.parser_timeout,
                "parser_timeout",
                &f.parser_timeout,
                defaults::PARSER_TIMEOUT,
                check::PARSER_TIMEOUT_RANGE,
            )?,
            parser_jobs: h.parser_jobs.or(f.parser_jobs).unwrap_or(defaults::PARSER_JOBS),
            log_format: g.log_format.or(f.log_format).unwrap_or(LogFormat::Plain),
            log_level: self.log_level(g.log_level.as_ref())?,
            node_features_file: h
                .node_features_file
                .clone()
                .or_else(|| f.node_features_file.clone())
                .unwrap_or_else(|| defaults::NFD_FEATURES_FILE.into()),
        })
    }

    /// Audit source settings; `proc_dir` is the resolved `--proc`.
    pub fn audit(&self, a: &AuditArgs, proc_dir: &Path) -> Result<AuditSettings, ConfigError> {
        let f = &self.file;
        let source = match (&a.audit_source, &f.audit_source) {
            (Some(s), _) => s.clone(),
            (None, Some(s)) => {
                s.parse().map_err(|message| ConfigError::AuditSource { path: self.path.clone().unwrap_or_default(), message })?
            }
            (None, None) => SourceSpec::Auto,
        };
        let paths = SourcePaths {
            kmsg: a.kmsg.clone().or_else(|| f.kmsg.clone()).unwrap_or_else(|| defaults::DEV_KMSG.into()),
            audit_log: a.audit_log.clone().or_else(|| f.audit_log.clone()).unwrap_or_else(|| defaults::AUDIT_LOG.into()),
            proc_root: proc_dir.to_path_buf(),
        };
        Ok(AuditSettings { source, paths })
    }

    /// Directory settings.
    pub fn reconcile(&self, a: &ReconcileArgs) -> Result<ReconcileSettings, ConfigError> {
        let f = &self.file;
        Ok(ReconcileSettings {
            profiles: a.profiles.clone().or_else(|| f.profiles.clone()).ok_or(ConfigError::NoProfiles)?,
            recursive: a.recursive || f.recursive.unwrap_or(false),
            max_file_size: self.at_least(
                a.max_file_size,
                "max_file_size",
                f.max_file_size,
                defaults::MAX_FILE_SIZE,
                (1, "a profile file holds at least one byte"),
            )?,
            adopt: if a.adopt.is_empty() { f.adopt.clone().unwrap_or_default() } else { a.adopt.clone() },
            unload_removed: a.unload_removed || f.unload_removed.unwrap_or(false),
            default_mode: a.default_mode.or(f.default_mode).unwrap_or(DesiredMode::Enforce),
            modes: f.modes.clone(),
            include_dirs: self.include_dirs(&a.include_dir),
            cache_size: match a.cache_size.or(f.cache_size).unwrap_or(defaults::CACHE_SIZE) {
                n if n > defaults::MAX_CACHE_SIZE => return Err(ConfigError::CacheSize { value: n }),
                n => n,
            },
        })
    }

    /// The extra include directories (`run`, `sync`, `diff`, `check`): the flag's, else the file's;
    /// made absolute, since the parser runs inside the profiles directory.
    pub fn include_dirs(&self, flag: &[PathBuf]) -> Vec<PathBuf> {
        let dirs = if flag.is_empty() { self.file.include_dir.clone().unwrap_or_default() } else { flag.to_vec() };
        dirs.into_iter().map(anchored).collect()
    }

    /// The listen addresses: the flag's, else the file's, else the default.
    fn listen(&self, flag: &[SocketAddr]) -> Result<Vec<SocketAddr>, ConfigError> {
        if !flag.is_empty() {
            return Ok(flag.to_vec());
        }
        let Some(listen) = &self.file.listen else { return Ok(vec![defaults::LISTEN.parse().expect("valid default")]) };
        let parsed = listen.addresses().into_iter().map(|a| {
            a.parse().map_err(|_| ConfigError::Listen { path: self.path.clone().unwrap_or_default(), value: a.to_owned() })
        });
        let addrs = parsed.collect::<Result<Vec<SocketAddr>, _>>()?;
        if addrs.is_empty() {
            return Err(ConfigError::Listen { path: self.path.clone().unwrap_or_default(), value: String::new() });
        }
        Ok(addrs)
    }

    /// `run` settings.
    pub fn run(&self, a: &RunArgs, host: &HostSettings) -> Result<RunSettings, ConfigError> {
        let f = &self.file;
        Ok(RunSettings {
            reconcile: self.reconcile(&a.reconcile)?,
            audit: self.audit(&a.audit, &host.proc_dir)?,
            denials_buffer: self.at_least(
                a.denials_buffer,
                "denials_buffer",
                f.denials_buffer,
                defaults::DENIALS_BUFFER,
                (1, "GET /denials needs room for at least one record"),
            )?,
            listen: self.listen(&a.listen)?,
            resync_interval: self.duration(
                a.resync_interval,
                "resync_interval",
                &f.resync_interval,
                defaults::RESYNC_INTERVAL,
                check::RESYNC_RANGE,
            )?,
            debounce: self.duration(a.debounce, "debounce", &f.debounce, defaults::DEBOUNCE, check::DEBOUNCE_RANGE)?,
            node_taint: self.node_taint(a)?,
        })
    }

    /// `--node-taint`: off unless asked for; then this node's name, which it cannot do without.
    fn node_taint(&self, a: &RunArgs) -> Result<Option<String>, ConfigError> {
        let f = &self.file;
        if !(a.node_taint || f.node_taint.unwrap_or(false)) {
            return Ok(None);
        }
        let name = a.node_name.clone().or_else(|| f.node_name.clone()).filter(|n| !n.is_empty());
        name.map(Some).ok_or(ConfigError::NoNodeName)
    }
}

/// `path` made absolute against the current directory. The parser runs inside the profiles
/// directory (quoted includes resolve there), so a relative state dir (private copies of the
/// files), parser path or include dir given on the command line would name the wrong place for it.
fn anchored(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

#[cfg(test)]
mod tests;
