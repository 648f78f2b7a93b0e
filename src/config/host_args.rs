//! The host flags, each declared once and given only to the subcommands that use it: `denials
//! --parser` is an error, not a flag silently ignored. The config file still sets every one of
//! them (a key a subcommand does not use changes nothing there).

use std::path::PathBuf;

use clap::Args;

use super::args::{Cli, Command};

/// `--securityfs`: the subcommands that read the kernel's policy or features.
#[derive(Debug, Clone, Default, Args)]
pub struct KernelArgs {
    /// Where securityfs is mounted [default: /sys/kernel/security]. If its apparmor/ directory is missing
    /// and this is the default path, it is mounted (root only).
    #[arg(long, env = "APPARMOR_LOADER_SECURITYFS", value_name = "DIR")]
    pub securityfs: Option<PathBuf>,
}

/// The parser and its compile jobs.
#[derive(Debug, Clone, Default, Args)]
pub struct ParserArgs {
    /// The AppArmor parser [default: apparmor_parser on PATH, then /sbin/apparmor_parser].
    #[arg(long, env = "APPARMOR_LOADER_PARSER", value_name = "PATH")]
    pub parser: Option<PathBuf>,
    /// Compile jobs per parser process (bounds its memory on many-core nodes; an AppArmor 4
    /// parser runs one, so that its warnings can be read) [default: 4].
    #[arg(long, env = "APPARMOR_LOADER_PARSER_JOBS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parser_jobs: Option<u32>,
}

/// The parser's deadline, for the subcommands whose parser calls have one.
#[derive(Debug, Clone, Default, Args)]
pub struct TimeoutArgs {
    /// Kill a parser process that runs longer than this per file it compiles (at most 20 times this) [default: 30s].
    #[arg(long, env = "APPARMOR_LOADER_PARSER_TIMEOUT", value_name = "DURATION")]
    pub parser_timeout: Option<humantime::Duration>,
}

/// `--state-dir`.
#[derive(Debug, Clone, Default, Args)]
pub struct StateArgs {
    /// Where ownership is recorded (state.json) and compiled policy cached [default: /var/lib/apparmor-loader].
    #[arg(long, env = "APPARMOR_LOADER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `--proc`.
#[derive(Debug, Clone, Default, Args)]
pub struct ProcArgs {
    /// procfs: tasks still confined by a profile before it is removed, and the pods of denials [default: /proc].
    #[arg(long, env = "APPARMOR_LOADER_PROC", value_name = "DIR")]
    pub proc: Option<PathBuf>,
}

/// `--node-features-file`.
#[derive(Debug, Clone, Default, Args)]
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

/// The host flags one invocation was given: `None` where its subcommand has no such flag, so the
/// config file or the default applies.
#[derive(Debug, Clone, Default)]
pub struct HostFlags {
    /// `--securityfs`.
    pub securityfs: Option<PathBuf>,
    /// `--parser`.
    pub parser: Option<PathBuf>,
    /// `--parser-jobs`.
    pub parser_jobs: Option<u32>,
    /// `--parser-timeout`.
    pub parser_timeout: Option<humantime::Duration>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--proc`.
    pub proc: Option<PathBuf>,
    /// `--node-features-file`.
    pub node_features_file: Option<PathBuf>,
}

impl HostFlags {
    fn kernel(mut self, a: &KernelArgs) -> Self {
        self.securityfs = a.securityfs.clone();
        self
    }

    fn parser(mut self, a: &ParserArgs) -> Self {
        (self.parser, self.parser_jobs) = (a.parser.clone(), a.parser_jobs);
        self
    }

    fn timeout(mut self, a: &TimeoutArgs) -> Self {
        self.parser_timeout = a.parser_timeout;
        self
    }

    fn state(mut self, a: &StateArgs) -> Self {
        self.state_dir = a.state_dir.clone();
        self
    }

    fn proc(mut self, a: &ProcArgs) -> Self {
        self.proc = a.proc.clone();
        self
    }

    fn load(self, a: &LoadHostArgs) -> Self {
        self.kernel(&a.kernel).parser(&a.parser).timeout(&a.timeout).state(&a.state).proc(&a.proc)
    }

    fn compile(self, a: &CompileHostArgs) -> Self {
        self.kernel(&a.kernel).parser(&a.parser).timeout(&a.timeout)
    }

    fn node_features(mut self, a: &NodeFeaturesArgs) -> Self {
        self.node_features_file = a.node_features_file.clone();
        self
    }
}

impl Cli {
    /// The host flags of this invocation's subcommand.
    pub fn host_flags(&self) -> HostFlags {
        let none = HostFlags::default();
        match &self.command {
            Command::Run(a) => none.load(&a.reconcile.host).node_features(&a.node_features),
            Command::Sync(a) | Command::Diff(a) => none.load(&a.host),
            Command::Unload { host, .. } => none.load(host),
            Command::Check { host, .. } => none.compile(host),
            Command::AdmissionPolicy(a) => none.compile(&a.host),
            Command::Status { kernel, state, .. } => none.kernel(kernel).state(state),
            Command::Inspect { securityfs, parser, .. } => none.kernel(securityfs).parser(parser),
            Command::Denials { proc, .. } | Command::Suggest { proc, .. } => none.proc(proc),
            Command::ClearNodeFeatures(a) => none.node_features(a),
            Command::Completions { .. } => none,
        }
    }
}
