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
/// The only module that talks to the kernel: securityfs and `apparmor_parser`.
pub mod kernel;
/// Parser of the kernel's `profiles` listing.
pub mod listing;
/// Prometheus metrics.
pub mod metrics;
/// A conservative reader of the profile names a file defines.
pub mod names;
/// Parsers of `apparmor_parser` output: `-N` names and error diagnostics.
pub mod parser_output;
/// The pure reconciliation plan: desired × observed × owned → actions.
pub mod plan;
/// Checks that AppArmor and the parser are usable.
pub mod preflight;
/// Carrying a plan out and reporting the result.
pub mod reconcile;
/// Reading the profiles directory into the desired state.
pub mod scan;
/// The HTTP server: accept loop, connection limits, response budget, descriptor budget.
pub mod serve;
/// The read-only HTTP endpoints.
pub mod server;
/// The persisted record of owned profiles.
pub mod state;
