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
/// Debian's pinned kernel feature set (package `apparmor`): what `admission-policy` compiles for on
/// a host whose kernel has no AppArmor.
pub const PARSER_KERNEL_FEATURES: &str = "/usr/share/apparmor-features/features";
/// Where the agent records which profiles it owns.
pub const STATE_DIR: &str = "/var/lib/apparmor-loader";
/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// Node Feature Discovery's local feature file (nfd-worker's `features.d/`, a host directory): labels
/// for the loaded profiles. Written only when its directory exists, i.e. is mounted into the agent.
pub const NFD_FEATURES_FILE: &str = "/etc/kubernetes/node-feature-discovery/features.d/apparmor-loader";
/// The parser's configuration file: its `Include` lines are part of the include search path.
pub const PARSER_CONF: &str = "/etc/apparmor/parser.conf";
/// The parser's base directory, searched last for `include <…>`.
pub const PARSER_BASE: &str = "/etc/apparmor.d";
/// The compiled-policy cache's directory inside the state directory.
pub const CACHE_SUBDIR: &str = "policy-cache";
/// Size bound of the compiled-policy cache: a distribution's ~140 profiles compile to ~10 MiB.
pub const CACHE_SIZE: u64 = 64 * 1024 * 1024;
/// Largest `--cache-size` accepted (a larger one is a typo, not a plan).
pub const MAX_CACHE_SIZE: u64 = 16 * 1024 * 1024 * 1024;
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
/// The HTTP listen address of `run` (health, readiness, profiles, metrics, denials) when none is given:
/// loopback, so the agent run by hand on a node does not open its port to the network. The DaemonSet
/// passes the pod's IP (which the kubelet's probes and the scrapers reach) and loopback.
pub const LISTEN: &str = "127.0.0.1:9741";
/// The safety-net full resync period of `run`.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(60);
/// How long `run` waits for more file events before it rescans.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often `run` checks that its inotify watch is still on the directory the profiles path
/// names (a deleted and re-created directory needs a new watch). One `stat`.
pub const WATCH_CHECK: Duration = Duration::from_secs(1);
/// How soon a sync is retried when the state file could not be written.
pub const STATE_RETRY: Duration = Duration::from_secs(2);
/// How long SIGTERM waits for the parser call in flight before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The log filter when neither `--log-level` nor the config file sets one (also the fallback when the
/// given filter does not parse).
pub const LOG_LEVEL: &str = "info";
/// The kernel log device, the first denial source `auto` may fall back to.
pub const DEV_KMSG: &str = "/dev/kmsg";
/// Where auditd writes its log.
pub const AUDIT_LOG: &str = "/var/log/audit/audit.log";
/// Denials the agent keeps for `/denials` (`--denials-buffer`).
pub const DENIALS_BUFFER: usize = 1000;
/// Records buffered between a denial source's thread and the monitor.
pub const AUDIT_CHANNEL_CAPACITY: usize = 4096;
/// How often an idle denial source looks at its stop token (and a file follower at the file), when
/// the caller sets nothing else (the one-shot commands; `run` uses [`AUDIT_IDLE_CHECK`]).
pub const AUDIT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// After a wake-up, how long a kmsg or netlink reader lets records pile up before reading
/// them all: a batch profile load then costs a few wake-ups, not one per record.
pub const AUDIT_BURST_WINDOW: Duration = Duration::from_millis(20);
/// How often the monitor retries opening a denial source that failed.
pub const AUDIT_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// Distinct denials the log limiter remembers.
pub const DENIAL_LOG_KEYS: usize = 4096;
/// A denial already logged is logged again (with its repeat count) after this long.
pub const DENIAL_LOG_REPEAT_AFTER: Duration = Duration::from_secs(600);
/// Denial log lines per second in the long run, and the burst allowed above it.
pub const DENIAL_LOG_RATE: (f64, f64) = (10.0, 50.0);
/// Pids whose container the denial monitor caches.
pub const CONTAINER_CACHE_CAPACITY: usize = 4096;
/// How long a cached pid-to-container answer is trusted: short, because pids are reused.
pub const CONTAINER_CACHE_TTL: Duration = Duration::from_secs(10);
/// How often the denial monitor's idle threads look at their stop token (and an audit log
/// for rotation): rare, so an idle agent causes almost no wakeups.
pub const AUDIT_IDLE_CHECK: Duration = Duration::from_secs(5);

// The HTTP server's limits (src/agent/serve/). Its clients are the kubelet's probes, a scraper every 15-60 s
// and a person now and then: a handful of short connections. Anything beyond that is a fault or an
// attack, and must cost the agent a bounded amount of memory and descriptors, never its syncs.

/// Connections kept at once, all clients together; each costs one file descriptor and at most ~50 KiB
/// (buffers below), so 256 cost ~13 MiB. When full, a new connection evicts the oldest connection of the
/// client address holding the most; further ones wait in the kernel's listen queue at no cost to the
/// agent. Lowered at start when the descriptor limit cannot hold it beside [`FD_RESERVE`].
pub const HTTP_MAX_CONNECTIONS: usize = 256;
/// Evicted connections that may still be closing beyond [`HTTP_MAX_CONNECTIONS`] (each holds its
/// descriptor until its task has run); the accept loop waits while they are.
pub const HTTP_EVICTION_SLACK: usize = 16;
/// The kernel's queue of connections the agent has not accepted yet (listen backlog; the kernel caps it
/// at `net.core.somaxconn`, 4096 by default). They cost no descriptor and no memory of the pod's cgroup,
/// and a deep queue absorbs a burst of connections instead of dropping the kubelet's probe with it
/// (a dropped connection attempt is retried only after a second).
pub const HTTP_BACKLOG: u32 = 1024;
/// A client must send its whole request head within this: real clients send it at once, an idle or
/// byte-by-byte connection gives its place back after this long.
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection serves one request (no keep-alive) and is closed after this long whatever it is doing,
/// so a client that never reads its answer holds the answer's memory this long at most. Above
/// Prometheus' default scrape timeout (10 s); the largest answer takes milliseconds to a reading client.
pub const HTTP_CONNECTION_DEADLINE: Duration = Duration::from_secs(15);
/// Largest read and write buffer of one connection (a request head above this is refused; the agent's
/// requests are one short line and a few headers).
pub const HTTP_CONNECTION_BUFFER: usize = 16 * 1024;
/// Kernel receive buffer of HTTP sockets (SO_RCVBUF, doubled by the kernel): requests are tiny, and a
/// client sending more fills only this.
pub const HTTP_SOCKET_RECV_BUFFER: u32 = 16 * 1024;
/// Kernel send buffer of HTTP sockets (SO_SNDBUF, doubled by the kernel) instead of autotuning to
/// megabytes, so answers nobody reads cost little kernel memory (charged to the pod's memory cgroup):
/// at most ~17 MiB for all connections, receive buffers ~9 MiB more.
pub const HTTP_SOCKET_SEND_BUFFER: u32 = 32 * 1024;
/// Bytes of response bodies held for clients at once. A larger answer than fits is replaced by a
/// `503` with `Retry-After`; together with the connection buffers the server stays under ~30 MiB,
/// well inside the DaemonSet's 128 MiB with the parser and the denial ring.
pub const HTTP_RESPONSE_BUDGET: usize = 16 * 1024 * 1024;
/// Responses up to this size skip the budget, so `/healthz` and a ready `/readyz` always answer.
pub const HTTP_SMALL_RESPONSE: usize = 4 * 1024;
/// Bodies are handed to a connection in copies of this size, so the connection's buffer never keeps a
/// whole answer alive after the budget has been given back.
pub const HTTP_BODY_CHUNK: usize = 8 * 1024;
/// On SIGTERM, how long open connections get to finish their answer.
pub const HTTP_SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);
/// File descriptors kept for everything but HTTP connections: the parser's pipes, profile and state
/// files, inotify, the audit source, `/proc` reads, the runtime. Measured at ~20 in a busy sync; the
/// reserve is ten times that. The soft `RLIMIT_NOFILE` is raised at start (up to the hard limit) to hold
/// this plus the HTTP connections, and the connection cap shrinks if it cannot.
pub const FD_RESERVE: u64 = 256;
