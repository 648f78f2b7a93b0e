//! Named defaults for every host path and tunable; each one is overridable by a flag,
//! an environment variable or the config file, never hard-coded inside a function.

use std::time::Duration;

/// Where securityfs is mounted on a normal Linux host.
pub const SECURITYFS: &str = "/sys/kernel/security";
/// The AppArmor directory inside securityfs.
pub const APPARMOR_SUBDIR: &str = "apparmor";
/// The parser looked up on `PATH` first.
pub const PARSER: &str = "apparmor_parser";
/// Where Debian, Ubuntu and SUSE install the parser when it is not on `PATH`.
pub const PARSER_FALLBACK: &str = "/sbin/apparmor_parser";
/// Where the agent records which profiles it owns.
pub const STATE_DIR: &str = "/var/lib/apparmor-loader";
/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// procfs, scanned for processes still confined by a profile before it is unloaded.
pub const PROC: &str = "/proc";
/// Largest profile file accepted; a real profile is a few KiB.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// Compile jobs of one `apparmor_parser -r` process (`--jobs`). The parser's own default is
/// one per CPU at a few MB each, which on a large node can exceed the pod's memory limit.
pub const PARSER_JOBS: u32 = 4;
/// How much of each parser output stream is kept (the rest is read and counted): a real
/// error report is a few lines, a parser gone wrong can write gigabytes.
pub const PARSER_OUTPUT_CAP: usize = 256 * 1024;
/// How long one parser process may run before it is killed.
pub const PARSER_TIMEOUT: Duration = Duration::from_secs(30);
/// The HTTP listen address of `run` (health, readiness, profiles, metrics).
pub const LISTEN: &str = "0.0.0.0:9741";
/// The safety-net full resync period of `run`.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(60);
/// How long `run` waits for more file events before it rescans.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// How soon a sync is retried when the state file could not be written.
pub const STATE_RETRY: Duration = Duration::from_secs(2);
/// How long SIGTERM waits for the parser call in flight before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often the denial monitor's idle threads look at their stop flag (and an audit log
/// for rotation): rare, so an idle agent causes almost no wakeups.
pub const AUDIT_IDLE_CHECK: Duration = Duration::from_secs(5);
