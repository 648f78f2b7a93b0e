//! What a platform team needs to watch a fleet of agents: the per-profile version series behind the
//! fleet queries, alerts and dashboard (`info`), and the kubectl plugin that asks every agent pod
//! through the API server (`plugin`).

pub mod exposition;
pub mod info;
pub mod matrix;
pub mod plugin;

/// The source revision this binary was built from (see `build.rs`): a git commit, or `unknown`.
pub const REVISION: &str = env!("APPARMOR_LOADER_REVISION");
