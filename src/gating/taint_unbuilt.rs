//! The node taint in a build without the `node-taint` feature (no Kubernetes client linked in):
//! asking for it is an error that says how to get it.

use tokio_util::sync::CancellationToken;

use super::Readiness;

/// Why the taint mode cannot run.
#[derive(Debug, thiserror::Error)]
pub enum TaintError {
    /// This binary has no API client.
    #[error("--node-taint: this apparmor-loader was built without the `node-taint` feature (build with default features)")]
    NotBuilt,
}

/// No taint task can exist in this build; the type has no values.
#[derive(Debug)]
pub enum TaintGate {}

impl TaintGate {
    /// Always refuses: there is no API client in this build.
    pub fn connect(_node: String, _shutdown: CancellationToken) -> Result<TaintGate, TaintError> {
        Err(TaintError::NotBuilt)
    }

    /// Unreachable: no `TaintGate` exists.
    pub fn after_sync(&self, _r: Readiness) {
        match *self {}
    }
}
