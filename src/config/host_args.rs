//! The host flags, each declared once and given only to the subcommands that use it: `denials
//! --parser` is an error, not a flag silently ignored. The config file still sets every one of
//! them (a key a subcommand does not use changes nothing there).

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use super::args::{Cli, Command};
use super::values;

/// `--securityfs`: the subcommands that read the kernel's policy or features.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default)]
pub struct KernelArgs {
    /// Where securityfs is mounted [default: /sys/kernel/security]. If its apparmor/ directory is missing
    /// and this is the default path, it is mounted (root only).
    #[arg(long, env = "APPARMOR_LOADER_SECURITYFS", value_name = "DIR")]
    pub securityfs: Option<PathBuf>,
}

/// The parser and its compile jobs.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default)]
pub struct ParserArgs {
    /// The AppArmor parser [default: apparmor_parser on PATH, then /sbin/apparmor_parser].
    #[arg(long, env = "APPARMOR_LOADER_PARSER", value_name = "PATH")]
    pub parser: Option<PathBuf>,
    /// Compile jobs per parser process (bounds its memory on many-core nodes; an AppArmor 4
    /// parser runs one, so that its warnings can be read) [default: 4].
    #[arg(long, env = "APPARMOR_LOADER_PARSER_JOBS", value_name = "N")]
    pub parser_jobs: Option<u32>,
}

/// The parser's deadline, for the subcommands whose parser calls have one.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default)]
pub struct TimeoutArgs {
    /// Kill a parser process that runs longer than this per file it compiles (at most 20 times this) [default: 30s].
    #[arg(long, env = "APPARMOR_LOADER_PARSER_TIMEOUT", value_name = "DURATION")]
    #[serde(deserialize_with = "values::duration")]
    pub parser_timeout: Option<humantime::Duration>,
}

/// `--state-dir`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default)]
pub struct StateArgs {
    /// Where ownership is recorded (state.json) and compiled policy cached [default: /var/lib/apparmor-loader].
    #[arg(long, env = "APPARMOR_LOADER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `--proc`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default)]
pub struct ProcArgs {
    /// procfs: tasks still confined by a profile before it is removed, and the pods of denials [default: /proc].
    #[arg(long, env = "APPARMOR_LOADER_PROC", value_name = "DIR")]
    pub proc: Option<PathBuf>,
}

/// `--node-features-file`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default)]
pub struct NodeFeaturesArgs {
    /// Node Feature Discovery local feature file: node labels for the loaded profiles, written after
    /// every sync when its directory exists [default: /etc/kubernetes/node-feature-discovery/features.d/apparmor-loader].
    #[arg(long, env = "APPARMOR_LOADER_NODE_FEATURES_FILE", value_name = "PATH")]
    pub node_features_file: Option<PathBuf>,
}

/// What loading needs: the kernel, the parser with its deadline, ownership, procfs (`sync`,
/// `diff`, `unload`, and `run` through its directory flags).
#[derive(Debug, Clone, Default, Args)]
pub struct LoadHostArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub parser: ParserArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub timeout: TimeoutArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: StateArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub proc: ProcArgs,
}

/// What compiling needs (`check`, `admission-policy`): the parser, its deadline, and the
/// kernel whose features it compiles for.
#[derive(Debug, Clone, Default, Args)]
pub struct CompileHostArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub parser: ParserArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub timeout: TimeoutArgs,
}

/// The host flag groups of one invocation: a group its subcommand does not have is left empty,
/// so the config file or the default applies.
#[derive(Debug, Clone, Default)]
pub struct HostFlags {
    #[allow(missing_docs)]
    pub kernel: KernelArgs,
    #[allow(missing_docs)]
    pub parser: ParserArgs,
    #[allow(missing_docs)]
    pub timeout: TimeoutArgs,
    #[allow(missing_docs)]
    pub state: StateArgs,
    #[allow(missing_docs)]
    pub proc: ProcArgs,
    #[allow(missing_docs)]
    pub node_features: NodeFeaturesArgs,
}

impl HostFlags {
    fn load(a: &LoadHostArgs) -> Self {
        let LoadHostArgs { kernel, parser, timeout, state, proc } = a.clone();
        HostFlags { kernel, parser, timeout, state, proc, ..Default::default() }
    }

    fn compile(a: &CompileHostArgs) -> Self {
        let CompileHostArgs { kernel, parser, timeout } = a.clone();
        HostFlags { kernel, parser, timeout, ..Default::default() }
    }
}

impl Cli {
    /// The host flags of this invocation's subcommand.
    pub fn host_flags(&self) -> HostFlags {
        let none = HostFlags::default();
        match &self.command {
            Command::Run(a) => HostFlags { node_features: a.node_features.clone(), ..HostFlags::load(&a.reconcile.host) },
            Command::Sync(a) | Command::Diff(a) => HostFlags::load(&a.host),
            Command::Unload { host, .. } => HostFlags::load(host),
            Command::Check { host, .. } => HostFlags::compile(host),
            Command::AdmissionPolicy(a) => HostFlags::compile(&a.host),
            Command::Status { kernel, state, .. } => HostFlags { kernel: kernel.clone(), state: state.clone(), ..none },
            Command::Inspect { securityfs, parser, .. } => {
                HostFlags { kernel: securityfs.clone(), parser: parser.clone(), ..none }
            }
            Command::Denials { proc, .. } | Command::Suggest { proc, .. } => HostFlags { proc: proc.clone(), ..none },
            Command::ClearNodeFeatures(a) => HostFlags { node_features: a.clone(), ..none },
            Command::Completions { .. } => none,
        }
    }
}
