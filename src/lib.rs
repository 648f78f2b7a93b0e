//! apparmor-loader: make the kernel's AppArmor profiles converge to a directory of profile files.

/// Which profiles still confine a running process (`/proc/*/attr/current`).
pub mod confined;
pub mod defaults;
/// The only module that talks to the kernel: securityfs and `apparmor_parser`.
pub mod kernel;
/// Parser of the kernel's `profiles` listing.
pub mod listing;
/// Parsers of `apparmor_parser` output: `-N` names and error diagnostics.
pub mod parser_output;
/// The pure reconciliation plan: desired × observed × owned → actions.
pub mod plan;
/// Carrying a plan out and reporting the result.
pub mod reconcile;
/// Reading the profiles directory into the desired state.
pub mod scan;
/// The persisted record of owned profiles.
pub mod state;
