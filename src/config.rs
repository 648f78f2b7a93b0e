//! Settings: command-line flags (each also an `APPARMOR_LOADER_*` environment variable),
//! an optional YAML config file, and the named defaults — in that order of precedence.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::audit::{SourcePaths, SourceSpec};
use crate::defaults;
use crate::kernel::DesiredMode;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line, for cluster log pipelines.
    Json,
}

/// Makes the kernel's AppArmor profiles converge to a directory of profile files.
#[derive(Debug, Parser)]
#[command(name = "apparmor-loader", version, about, long_about = None)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// YAML config file; every flag can be set there (snake_case keys). Flags and environment win.
    #[arg(long, global = true, env = "APPARMOR_LOADER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where securityfs is mounted [default: /sys/kernel/security]. If its apparmor/ directory is missing
    /// and this is the default path, it is mounted (root only).
    #[arg(long, global = true, env = "APPARMOR_LOADER_SECURITYFS", value_name = "DIR")]
    pub securityfs: Option<PathBuf>,
    /// The AppArmor parser [default: apparmor_parser on PATH, then /sbin/apparmor_parser].
    #[arg(long, global = true, env = "APPARMOR_LOADER_PARSER", value_name = "PATH")]
    pub parser: Option<PathBuf>,
    /// Where ownership is recorded (state.json) [default: /var/lib/apparmor-loader].
    #[arg(long, global = true, env = "APPARMOR_LOADER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// procfs, scanned for processes still confined by a profile before removing it [default: /proc].
    #[arg(long, global = true, env = "APPARMOR_LOADER_PROC", value_name = "DIR")]
    pub proc: Option<PathBuf>,
    /// Kill a parser process that runs longer than this [default: 30s].
    #[arg(long, global = true, env = "APPARMOR_LOADER_PARSER_TIMEOUT", value_name = "DURATION")]
    pub parser_timeout: Option<humantime::Duration>,
    /// Compile jobs per parser process (bounds its memory on many-core nodes) [default: 4].
    #[arg(long, global = true, env = "APPARMOR_LOADER_PARSER_JOBS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parser_jobs: Option<u32>,
    /// Log format [default: plain].
    #[arg(long, global = true, env = "APPARMOR_LOADER_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `apparmor_loader=debug` [default: info].
    #[arg(long, global = true, env = "APPARMOR_LOADER_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Node Feature Discovery local feature file: node labels for the loaded profiles, written after
    /// every sync when its directory exists [default: /etc/kubernetes/node-feature-discovery/features.d/apparmor-loader].
    #[arg(long, global = true, env = "APPARMOR_LOADER_NODE_FEATURES_FILE", value_name = "PATH")]
    pub node_features_file: Option<PathBuf>,
}

/// Flags of the subcommands that reconcile a directory.
#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// The directory of profile files (a ConfigMap volume, usually).
    #[arg(long, env = "APPARMOR_LOADER_PROFILES", value_name = "DIR")]
    pub profiles: Option<PathBuf>,
    /// Also read subdirectories.
    #[arg(long, env = "APPARMOR_LOADER_RECURSIVE")]
    pub recursive: bool,
    /// Reject profile files larger than this many bytes [default: 1048576].
    #[arg(long, env = "APPARMOR_LOADER_MAX_FILE_SIZE", value_name = "BYTES")]
    pub max_file_size: Option<u64>,
    /// Take over foreign kernel profiles whose name matches this glob (repeatable; comma-separated in the environment).
    #[arg(long, env = "APPARMOR_LOADER_ADOPT", value_name = "GLOB", value_delimiter = ',')]
    pub adopt: Vec<String>,
    /// Remove profiles whose file was deleted (never while a process is confined by them).
    #[arg(long, env = "APPARMOR_LOADER_UNLOAD_REMOVED")]
    pub unload_removed: bool,
    /// Mode for profiles without an entry under `modes:` in the config file [default: enforce].
    #[arg(long, env = "APPARMOR_LOADER_DEFAULT_MODE", value_enum)]
    pub default_mode: Option<DesiredMode>,
}

/// Where AppArmor audit records are read from (`run`, `denials`, `suggest --live`).
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// auto | kmsg | netlink | off | PATH of an audit log [default: auto: netlink, then /dev/kmsg or the audit log].
    #[arg(long, env = "APPARMOR_LOADER_AUDIT_SOURCE", value_name = "SOURCE")]
    pub audit_source: Option<SourceSpec>,
    /// The kernel log device [default: /dev/kmsg].
    #[arg(long, env = "APPARMOR_LOADER_KMSG", value_name = "PATH")]
    pub kmsg: Option<PathBuf>,
    /// The audit daemon's log, used when auditd runs [default: /var/log/audit/audit.log].
    #[arg(long, env = "APPARMOR_LOADER_AUDIT_LOG", value_name = "PATH")]
    pub audit_log: Option<PathBuf>,
}

/// Flags of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Directory settings.
    #[command(flatten)]
    pub reconcile: ReconcileArgs,
    /// Audit record source.
    #[command(flatten)]
    pub audit: AuditArgs,
    /// How many recent denials GET /denials keeps [default: 1000].
    #[arg(long, env = "APPARMOR_LOADER_DENIALS_BUFFER", value_name = "N")]
    pub denials_buffer: Option<usize>,
    /// HTTP address for /healthz, /readyz, /profiles, /metrics and /denials (repeatable; comma-separated in
    /// the environment) [default: 127.0.0.1:9741].
    #[arg(long, env = "APPARMOR_LOADER_LISTEN", value_name = "ADDR", value_delimiter = ',')]
    pub listen: Vec<SocketAddr>,
    /// Full rescan period, the safety net behind file and kernel events [default: 60s].
    #[arg(long, env = "APPARMOR_LOADER_RESYNC_INTERVAL", value_name = "DURATION")]
    pub resync_interval: Option<humantime::Duration>,
    /// Wait this long for more file events before rescanning [default: 50ms].
    #[arg(long, env = "APPARMOR_LOADER_DEBOUNCE", value_name = "DURATION")]
    pub debounce: Option<humantime::Duration>,
    /// Remove the taint apparmor-loader.io/not-ready:NoSchedule from this node once every profile is
    /// loaded, put it back if one is lost (talks to the API server; needs --node-name and a token).
    #[arg(long, env = "APPARMOR_LOADER_NODE_TAINT")]
    pub node_taint: bool,
    /// This node's name, for --node-taint (the DaemonSet passes spec.nodeName).
    #[arg(long, env = "APPARMOR_LOADER_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: converge, watch the directory and the kernel, serve health and metrics.
    Run(RunArgs),
    /// One reconcile pass, then exit (0: all good, 1: some file failed or was refused).
    Sync(ReconcileArgs),
    /// Print what `run` or `sync` would do now, without doing it.
    Diff(ReconcileArgs),
    /// Compile profile files without loading them (no root, no kernel); exit 1 on errors.
    Check {
        /// Files or directories to check.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Show the kernel's profiles with their mode and whether apparmor-loader manages them.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print AppArmor denials (and complain-mode allowances) from the kernel's audit stream.
    Denials {
        /// Only this profile and its children.
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// Keep printing new records until interrupted (without it: what the source holds now).
        #[arg(long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Also print AUDIT and STATUS records.
        #[arg(long)]
        all: bool,
        /// Audit record source.
        #[command(flatten)]
        audit: AuditArgs,
    },
    /// Turn recorded denials of a profile into the rules that would allow them (never writes a profile).
    Suggest {
        /// The profile to write rules for.
        #[arg(long, value_name = "NAME")]
        profile: String,
        /// Read records from a saved log (repeatable). A raw /dev/kmsg dump, auditd's log,
        /// `journalctl -o json`/`-o export` or `dmesg -x` can prove the kernel wrote a record; plain
        /// `dmesg`/`journalctl` text cannot, and rules only such lines support are marked `?`.
        #[arg(long, value_name = "FILE", conflicts_with = "live", required_unless_present = "live")]
        from: Vec<PathBuf>,
        /// Read records live from the audit source until interrupted (or for --duration).
        #[arg(long)]
        live: bool,
        /// With --live: stop after this long.
        #[arg(long, value_name = "DURATION", requires = "live")]
        duration: Option<humantime::Duration>,
        /// Collapse N or more files of one directory into `dir/*`.
        #[arg(long, value_name = "N")]
        collapse: Option<usize>,
        /// Print JSON instead of the patch-like list.
        #[arg(long)]
        json: bool,
        /// Also turn userspace-reported records (USER_AVC: any process with CAP_AUDIT_WRITE can send
        /// them) into rules, marked `?`. Without it they are counted and left out.
        #[arg(long)]
        trust_userspace: bool,
        /// Audit record source.
        #[command(flatten)]
        audit: AuditArgs,
    },
    /// Compile profile files (or read compiled policy) and print each profile's mode and the
    /// sha1 the kernel will show for it; with --kernel, whether the kernel runs exactly that.
    Inspect {
        /// Profile files (compiled policy with --binary).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The files are compiled binary policy (a parser cache file, `apparmor_parser -S` output).
        #[arg(long)]
        binary: bool,
        /// As a complain-mode load (`apparmor_parser -C`) would send it.
        #[arg(long)]
        complain: bool,
        /// Compare with the kernel's policy/profiles/*/{sha1,mode}: loaded, different or absent (exit 1 unless all loaded).
        #[arg(long)]
        kernel: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a ValidatingAdmissionPolicy (and binding) that rejects Pods and pod templates naming a
    /// Localhost AppArmor profile the directory does not define.
    AdmissionPolicy {
        /// The directory of profile files.
        #[arg(long, value_name = "DIR")]
        profiles: PathBuf,
        /// Also read subdirectories.
        #[arg(long)]
        recursive: bool,
        /// Compile for this kernel feature set (a saved `apparmor/features`) [default: the running
        /// kernel's; on a host without AppArmor, /usr/share/apparmor-features/features].
        #[arg(long, value_name = "FILE")]
        kernel_features: Option<PathBuf>,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Remove the Node Feature Discovery feature file, so the node loses its AppArmor labels
    /// (before uninstalling apparmor-loader; a running agent writes it again after its next sync).
    ClearNodeFeatures,
    /// Remove managed profiles from the kernel by name.
    Unload {
        /// Profile names.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Also remove profiles apparmor-loader did not load.
        #[arg(long)]
        force: bool,
    },
}

/// The config file. Unknown keys are errors, so a typo never silently does nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    securityfs: Option<PathBuf>,
    parser: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    proc: Option<PathBuf>,
    parser_timeout: Option<String>,
    parser_jobs: Option<u32>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    profiles: Option<PathBuf>,
    recursive: Option<bool>,
    max_file_size: Option<u64>,
    adopt: Option<Vec<String>>,
    unload_removed: Option<bool>,
    default_mode: Option<DesiredMode>,
    #[serde(default)]
    modes: BTreeMap<String, DesiredMode>,
    listen: Option<Listen>,
    resync_interval: Option<String>,
    debounce: Option<String>,
    audit_source: Option<String>,
    kmsg: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    denials_buffer: Option<usize>,
    node_features_file: Option<PathBuf>,
    node_taint: Option<bool>,
    node_name: Option<String>,
}

/// `listen:` in the config file: one address, a comma-separated list, or a YAML list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Listen {
    One(String),
    Many(Vec<String>),
}

impl Listen {
    fn addresses(&self) -> Vec<&str> {
        match self {
            Listen::One(s) => s.split(',').map(str::trim).collect(),
            Listen::Many(v) => v.iter().map(|s| s.trim()).collect(),
        }
    }
}

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
    /// `--profiles` is missing.
    #[error("no profiles directory: pass --profiles DIR, set APPARMOR_LOADER_PROFILES or `profiles:` in the config file")]
    NoProfiles,
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

    fn duration(
        &self,
        flag: Option<humantime::Duration>,
        key: &'static str,
        value: &Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        if let Some(d) = flag {
            return Ok(d.into());
        }
        match value {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v).map_err(|_| ConfigError::Duration {
                path: self.path.clone().unwrap_or_default(),
                key,
                value: v.clone(),
            }),
        }
    }

    /// Host settings.
    pub fn host(&self, g: &GlobalArgs) -> Result<HostSettings, ConfigError> {
        let f = &self.file;
        let securityfs = g.securityfs.clone().or_else(|| f.securityfs.clone()).unwrap_or_else(|| defaults::SECURITYFS.into());
        Ok(HostSettings {
            securityfs_is_default: securityfs == Path::new(defaults::SECURITYFS),
            securityfs,
            parser: g
                .parser
                .clone()
                .or_else(|| f.parser.clone())
                .map(|p| if p.components().count() > 1 { anchored(p) } else { p }),
            state_dir: anchored(
                g.state_dir.clone().or_else(|| f.state_dir.clone()).unwrap_or_else(|| defaults::STATE_DIR.into()),
            ),
            proc_dir: g.proc.clone().or_else(|| f.proc.clone()).unwrap_or_else(|| defaults::PROC.into()),
            parser_timeout: self.duration(g.parser_timeout, "parser_timeout", &f.parser_timeout, defaults::PARSER_TIMEOUT)?,
            parser_jobs: g.parser_jobs.or(f.parser_jobs).unwrap_or(defaults::PARSER_JOBS),
            log_format: g.log_format.or(f.log_format).unwrap_or(LogFormat::Plain),
            log_level: g.log_level.clone().or_else(|| f.log_level.clone()).unwrap_or_else(|| "info".into()),
            node_features_file: g
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
            kmsg: a.kmsg.clone().or_else(|| f.kmsg.clone()).unwrap_or_else(|| crate::audit::source::DEV_KMSG.into()),
            audit_log: a
                .audit_log
                .clone()
                .or_else(|| f.audit_log.clone())
                .unwrap_or_else(|| crate::audit::source::AUDIT_LOG.into()),
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
            max_file_size: a.max_file_size.or(f.max_file_size).unwrap_or(defaults::MAX_FILE_SIZE),
            adopt: if a.adopt.is_empty() { f.adopt.clone().unwrap_or_default() } else { a.adopt.clone() },
            unload_removed: a.unload_removed || f.unload_removed.unwrap_or(false),
            default_mode: a.default_mode.or(f.default_mode).unwrap_or(DesiredMode::Enforce),
            modes: f.modes.clone(),
        })
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
            denials_buffer: a.denials_buffer.or(f.denials_buffer).unwrap_or(crate::audit::ring::DEFAULT_RING_CAPACITY),
            listen: self.listen(&a.listen)?,
            resync_interval: self.duration(
                a.resync_interval,
                "resync_interval",
                &f.resync_interval,
                defaults::RESYNC_INTERVAL,
            )?,
            debounce: self.duration(a.debounce, "debounce", &f.debounce, defaults::DEBOUNCE)?,
            node_taint: if a.node_taint || f.node_taint.unwrap_or(false) {
                let name = a.node_name.clone().or_else(|| f.node_name.clone()).filter(|n| !n.is_empty());
                Some(name.ok_or(ConfigError::NoNodeName)?)
            } else {
                None
            },
        })
    }
}

/// `path` made absolute against the current directory. The parser runs inside the profiles
/// directory (quoted includes resolve there), so a relative state dir (private copies of the
/// files) or parser path given on the command line would name the wrong place for it.
fn anchored(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("apparmor-loader").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_win_over_file_which_wins_over_defaults() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("config.yaml");
        std::fs::write(
            &path,
            "profiles: /from/file\nresync_interval: 2m\nadopt: [host-*]\nmodes:\n  payment-api: complain\nlog_format: json\nunload_removed: true\n",
        )
        .unwrap();
        let c = cli(&["run", "--resync-interval", "5s", "--config", path.to_str().unwrap()]);
        let r = Resolver::new(c.global.config.as_deref()).unwrap();
        let Command::Run(args) = &c.command else { panic!() };
        let host = r.host(&c.global).unwrap();
        let run = r.run(args, &host).unwrap();
        assert_eq!(run.resync_interval, Duration::from_secs(5));
        assert_eq!(run.reconcile.profiles, PathBuf::from("/from/file"));
        assert_eq!(run.reconcile.adopt, vec!["host-*"]);
        assert!(run.reconcile.unload_removed);
        assert_eq!(run.reconcile.modes["payment-api"], DesiredMode::Complain);
        assert_eq!(run.debounce, defaults::DEBOUNCE);
        assert_eq!(run.listen, vec!["127.0.0.1:9741".parse::<SocketAddr>().unwrap()], "loopback unless told otherwise");
        let host = r.host(&c.global).unwrap();
        assert_eq!(host.log_format, LogFormat::Json);
        assert_eq!(host.securityfs, PathBuf::from(defaults::SECURITYFS));
        assert!(host.securityfs_is_default);
    }

    #[test]
    fn config_errors_name_the_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("bad.yaml");
        std::fs::write(&path, "profiles: /p\nresync_intervall: 5s\n").unwrap();
        let err = Resolver::new(Some(&path)).err().unwrap().to_string();
        assert!(err.contains("bad.yaml") && err.contains("resync_intervall"), "{err}");
        assert!(err.contains('2'), "line number: {err}");
        std::fs::write(&path, "debounce: soon\n").unwrap();
        let r = Resolver::new(Some(&path)).unwrap();
        let c = cli(&["run", "--profiles", "/p"]);
        let Command::Run(args) = &c.command else { panic!() };
        let host = r.host(&c.global).unwrap();
        assert!(r.run(args, &host).unwrap_err().to_string().contains("debounce"));
        std::fs::write(&path, "modes: {x: loud}\n").unwrap();
        assert!(Resolver::new(Some(&path)).is_err());
    }

    #[test]
    fn listen_takes_several_addresses() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("config.yaml");
        let run_with = |yaml: &str, args: &[&str]| {
            std::fs::write(&path, format!("profiles: /p\n{yaml}")).unwrap();
            let mut argv = vec!["run", "--config", path.to_str().unwrap()];
            argv.extend_from_slice(args);
            let c = cli(&argv);
            let r = Resolver::new(c.global.config.as_deref())?;
            let Command::Run(a) = &c.command else { panic!() };
            r.run(a, &r.host(&c.global)?).map(|run| run.listen.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        let both = vec!["10.1.2.3:9741".to_string(), "127.0.0.1:9741".to_string()];
        assert_eq!(run_with("listen: 10.1.2.3:9741,127.0.0.1:9741\n", &[]).unwrap(), both);
        assert_eq!(run_with("listen: [10.1.2.3:9741, \"127.0.0.1:9741\"]\n", &[]).unwrap(), both);
        assert_eq!(run_with("listen: \"[::1]:9741\"\n", &[]).unwrap(), ["[::1]:9741"]);
        assert_eq!(run_with("", &["--listen", "10.1.2.3:9741,127.0.0.1:9741"]).unwrap(), both);
        assert_eq!(
            run_with("listen: 10.9.9.9:1\n", &["--listen", "127.0.0.1:1", "--listen", "[::1]:2"]).unwrap(),
            ["127.0.0.1:1", "[::1]:2"]
        );
        let err = run_with("listen: 10.1.2.3\n", &[]).unwrap_err().to_string();
        assert!(err.contains("config.yaml") && err.contains("\"10.1.2.3\""), "{err}");
        assert!(Cli::try_parse_from(["apparmor-loader", "run", "--listen", "fd00::1:9741"]).is_err(), "IPv6 needs brackets");
    }

    #[test]
    fn missing_profiles_is_a_clear_error() {
        let r = Resolver::new(None).unwrap();
        let c = cli(&["sync"]);
        let Command::Sync(args) = &c.command else { panic!() };
        assert!(r.reconcile(args).unwrap_err().to_string().contains("--profiles"));
    }

    #[test]
    fn node_taint_is_off_by_default_and_needs_the_node_name() {
        let r = Resolver::new(None).unwrap();
        let run = |args: &[&str]| {
            let c = cli(args);
            let host = r.host(&c.global).unwrap();
            let Command::Run(a) = &c.command else { panic!() };
            (r.run(a, &host).map(|s| s.node_taint), host.node_features_file)
        };
        let (taint, features) = run(&["run", "--profiles", "/p"]);
        assert_eq!(taint.unwrap(), None);
        assert_eq!(features, Path::new(defaults::NFD_FEATURES_FILE));
        assert!(matches!(run(&["run", "--profiles", "/p", "--node-taint"]).0, Err(ConfigError::NoNodeName)));
        let (taint, features) =
            run(&["--node-features-file", "/f", "run", "--profiles", "/p", "--node-taint", "--node-name", "n1"]);
        assert_eq!(taint.unwrap().as_deref(), Some("n1"));
        assert_eq!(features, Path::new("/f"));
    }
}
