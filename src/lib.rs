//! apparmor-loader: make the kernel's AppArmor profiles converge to a directory of profile files.

pub mod defaults;
/// Parser of the kernel's `profiles` listing.
pub mod listing;
/// Parsers of `apparmor_parser` output: `-N` names and error diagnostics.
pub mod parser_output;
/// The pure reconciliation plan: desired × observed × owned → actions.
pub mod plan;
/// Reading the profiles directory into the desired state.
pub mod scan;
/// The persisted record of owned profiles.
pub mod state;
