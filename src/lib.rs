//! apparmor-loader: make the kernel's AppArmor profiles converge to a directory of profile files.

/// The long-running agent: watchers, reconcile loop, HTTP server.
pub mod agent;
/// Denial monitoring: audit record sources, parser, ring buffer, metrics and rule suggestions.
pub mod audit;
/// The one-shot subcommands run by hand.
pub mod commands;
/// Flags, environment and the YAML config file, merged.
pub mod config;
/// Which profiles still confine a running process (`/proc/*/attr/current`).
pub mod confined;
/// Named defaults for every host path and tunable.
pub mod defaults;
/// Keeping pods off nodes that lack their profiles: NFD labels, the node taint, the admission policy.
pub mod gating;
/// `inspect`: names, modes and kernel sha1s of compiled profile files, compared with the kernel.
pub mod inspect;
/// The seam to the kernel: securityfs, `apparmor_parser` and compiled policy.
pub mod kernel;
/// Parser of the kernel's `profiles` listing.
pub mod listing;
/// Prometheus metrics.
pub mod metrics;
/// Parser of `apparmor_parser`'s error diagnostics.
pub mod parser_output;
/// Checks that AppArmor and the parser are usable.
pub mod preflight;
/// Reconciliation: the pure plan, the ownership record, carrying the plan out, the report.
pub mod reconcile;
/// Reading the profiles directory into the desired state.
pub mod scan;
/// The HTTP server: accept loop, connection limits, response budget, descriptor budget.
pub mod serve;
/// The read-only HTTP endpoints.
pub mod server;
