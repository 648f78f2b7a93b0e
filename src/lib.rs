//! apparmor-loader: make the kernel's AppArmor profiles converge to a directory of profile files.
//!
//! Modules from the bottom up; each uses only those listed before it (`tests/architecture.rs`).

/// The long-running agent: wiring, triggers, reconcile loop, HTTP server and metrics.
pub mod agent;
/// Denial monitoring: audit record sources, parser, ring buffer, metrics and rule suggestions.
pub mod audit;
/// The operator's subcommands: sync, diff, check, status, unload, inspect, denials, suggest,
/// admission-policy, clear-node-features.
pub mod cli;
/// Flags, environment and the YAML config file, merged into settings.
pub mod config;
/// Named defaults for every host path and tunable.
pub mod defaults;
/// Keeping pods off nodes that lack their profiles: NFD labels, the node taint, the admission policy.
pub mod gating;
/// The seam to the kernel: securityfs, `apparmor_parser`, compiled policy, the listing, `/proc`.
pub mod kernel;
/// Checks that AppArmor and the parser are usable; the one way to build the host kernel handle.
pub mod preflight;
/// Reconciliation: the pure plan, the ownership record, carrying the plan out, the report.
pub mod reconcile;
/// Reading the profiles directory into source files.
pub mod scan;
/// The one signal path of the binary: SIGINT/SIGTERM drain then abort, SIGHUP resyncs `run`.
pub mod signals;
