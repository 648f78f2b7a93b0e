//! The command line: subcommands and flags, each flag also an `APPARMOR_LOADER_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use super::host_args::{CompileHostArgs, KernelArgs, LoadHostArgs, NodeFeaturesArgs, ParserArgs, ProcArgs, StateArgs};
use super::values;
use crate::audit::SourceSpec;
use crate::kernel::DesiredMode;

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; the default.
    #[default]
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

/// Flags every subcommand accepts; the host's paths and the parser are each subcommand's own
/// ([`super::host_args`]).
#[derive(Debug, Default, Args, Deserialize)]
#[serde(default)]
pub struct GlobalArgs {
    /// YAML config file; every flag can be set there (snake_case keys). Flags and environment win.
    #[arg(long, global = true, env = "APPARMOR_LOADER_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Log format [default: plain].
    #[arg(long, global = true, env = "APPARMOR_LOADER_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `apparmor_loader=debug` [default: info].
    #[arg(long, global = true, env = "APPARMOR_LOADER_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// Flags of the subcommands that reconcile a directory.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default)]
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
    #[arg(long, env = "APPARMOR_LOADER_DEFAULT_MODE", value_parser = desired_mode())]
    pub default_mode: Option<DesiredMode>,
    /// Size bound of the compiled-policy cache in the state dir, in bytes; 0 turns it off [default: 67108864].
    #[arg(long, env = "APPARMOR_LOADER_CACHE_SIZE", value_name = "BYTES")]
    pub cache_size: Option<u64>,
    /// `include <…>` search directories.
    #[command(flatten)]
    #[serde(skip)]
    pub include: IncludeArgs,
    /// Kernel, parser, state and procfs.
    #[command(flatten)]
    #[serde(skip)]
    pub host: LoadHostArgs,
}

/// `--include-dir`, for every subcommand that compiles a directory (`run`, `sync`, `diff`, `check`,
/// `admission-policy`).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default)]
pub struct IncludeArgs {
    /// Also look for `include <…>` files here, before parser.conf's and the base dir (e.g. a second
    /// ConfigMap of abstractions); repeatable, comma-separated in the environment. Passed to the parser as -I.
    #[arg(long, env = "APPARMOR_LOADER_INCLUDE_DIR", value_name = "DIR", value_delimiter = ',')]
    pub include_dir: Vec<PathBuf>,
}

/// Where AppArmor audit records are read from (`run`, `denials`, `suggest --live`).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default)]
pub struct AuditArgs {
    /// auto | kmsg | netlink | off | PATH of an audit log [default: auto: netlink, then /dev/kmsg or the audit log].
    #[arg(long, env = "APPARMOR_LOADER_AUDIT_SOURCE", value_name = "SOURCE")]
    #[serde(deserialize_with = "values::parsed")]
    pub audit_source: Option<SourceSpec>,
    /// The kernel log device [default: /dev/kmsg].
    #[arg(long, env = "APPARMOR_LOADER_KMSG", value_name = "PATH")]
    pub kmsg: Option<PathBuf>,
    /// The audit daemon's log, used when auditd runs [default: /var/log/audit/audit.log].
    #[arg(long, env = "APPARMOR_LOADER_AUDIT_LOG", value_name = "PATH")]
    pub audit_log: Option<PathBuf>,
}

/// Flags of `run`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default)]
pub struct RunArgs {
    /// Directory settings.
    #[command(flatten)]
    #[serde(skip)]
    pub reconcile: ReconcileArgs,
    /// Audit record source.
    #[command(flatten)]
    #[serde(skip)]
    pub audit: AuditArgs,
    /// How many recent denials GET /denials keeps [default: 1000].
    #[arg(long, env = "APPARMOR_LOADER_DENIALS_BUFFER", value_name = "N")]
    pub denials_buffer: Option<usize>,
    /// HTTP address for /healthz, /readyz, /profiles, /metrics and /denials (repeatable; comma-separated in
    /// the environment) [default: 127.0.0.1:9741].
    #[arg(long, env = "APPARMOR_LOADER_LISTEN", value_name = "ADDR", value_delimiter = ',')]
    #[serde(deserialize_with = "values::addresses")]
    pub listen: Vec<SocketAddr>,
    /// Full rescan period, the safety net behind file and kernel events [default: 60s].
    #[arg(long, env = "APPARMOR_LOADER_RESYNC_INTERVAL", value_name = "DURATION")]
    #[serde(deserialize_with = "values::duration")]
    pub resync_interval: Option<humantime::Duration>,
    /// Wait this long for more file events before rescanning [default: 50ms].
    #[arg(long, env = "APPARMOR_LOADER_DEBOUNCE", value_name = "DURATION")]
    #[serde(deserialize_with = "values::duration")]
    pub debounce: Option<humantime::Duration>,
    /// Remove the taint apparmor-loader.io/not-ready:NoSchedule from this node once every profile is
    /// loaded, put it back if one is lost (talks to the API server; needs --node-name and a token).
    #[arg(long, env = "APPARMOR_LOADER_NODE_TAINT")]
    pub node_taint: bool,
    /// This node's name, for --node-taint (the DaemonSet passes spec.nodeName).
    #[arg(long, env = "APPARMOR_LOADER_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// The NFD feature file.
    #[command(flatten)]
    #[serde(skip)]
    pub node_features: NodeFeaturesArgs,
}

/// Flags of `admission-policy`.
#[derive(Debug, Clone, Args)]
pub struct AdmissionPolicyArgs {
    /// The directory of profile files.
    #[arg(long, value_name = "DIR")]
    pub profiles: PathBuf,
    /// Also read subdirectories.
    #[arg(long)]
    pub recursive: bool,
    /// `include <…>` search directories.
    #[command(flatten)]
    pub include: IncludeArgs,
    /// Compile for this kernel feature set (a saved `apparmor/features`) [default: the running
    /// kernel's; on a host without AppArmor, /usr/share/apparmor-features/features].
    #[arg(long, value_name = "FILE")]
    pub kernel_features: Option<PathBuf>,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Kernel and parser.
    #[command(flatten)]
    pub host: CompileHostArgs,
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
    /// Compile profile files without loading them (no root, no kernel); exit 1 when a file does not
    /// compile, two files define one profile, or (--strict-names) a file is misnamed.
    Check {
        /// Files or directories to check.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// `include <…>` search directories.
        #[command(flatten)]
        include: IncludeArgs,
        /// Compile against this kernel feature set instead of the running kernel's (a file as
        /// `aa-features-abi -x` writes it; the repo's features/ holds those of the kernels it
        /// tests), so a pipeline can check profiles for the nodes it deploys to.
        #[arg(long, value_name = "FILE")]
        features: Option<PathBuf>,
        /// Print one JSON array: per file `file`, `ok`, `line`, `message` and its `profiles`.
        #[arg(long)]
        json: bool,
        /// Also fail a file whose name is none of its profiles' names (`/usr/bin/foo` may be in
        /// `usr.bin.foo`).
        #[arg(long)]
        strict_names: bool,
        /// Kernel and parser.
        #[command(flatten)]
        host: CompileHostArgs,
    },
    /// Show the kernel's profiles with their mode and whether apparmor-loader manages them.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The kernel.
        #[command(flatten)]
        kernel: KernelArgs,
        /// Ownership.
        #[command(flatten)]
        state: StateArgs,
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
        /// procfs, for the pods of the denials.
        #[command(flatten)]
        proc: ProcArgs,
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
        /// procfs, for the pods of live records.
        #[command(flatten)]
        proc: ProcArgs,
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
        /// The kernel (for --kernel and its features).
        #[command(flatten)]
        securityfs: KernelArgs,
        /// The parser.
        #[command(flatten)]
        parser: ParserArgs,
    },
    /// Print a ValidatingAdmissionPolicy (and binding) that rejects Pods and pod templates naming a
    /// Localhost AppArmor profile the directory does not define.
    AdmissionPolicy(AdmissionPolicyArgs),
    /// Remove the Node Feature Discovery feature file, so the node loses its AppArmor labels
    /// (before uninstalling apparmor-loader; a running agent writes it again after its next sync).
    ClearNodeFeatures(NodeFeaturesArgs),
    /// Print a shell completion script: `apparmor-loader completions bash > /etc/bash_completion.d/apparmor-loader`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Remove managed profiles from the kernel by name.
    Unload {
        /// Profile names.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Also remove profiles apparmor-loader did not load.
        #[arg(long)]
        force: bool,
        /// Kernel, parser, state and procfs.
        #[command(flatten)]
        host: LoadHostArgs,
    },
}

/// `--default-mode`: the planner's [`DesiredMode`] stays free of clap.
fn desired_mode() -> impl clap::builder::TypedValueParser<Value = DesiredMode> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("enforce").help("Load normally (the file's own flags apply)"),
        PossibleValue::new("complain").help("Compile with `apparmor_parser -C`: violations are logged, not denied"),
    ])
    .map(|s| if s == "complain" { DesiredMode::Complain } else { DesiredMode::Enforce })
}
