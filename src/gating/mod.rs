//! Keeping workloads off nodes that lack their profiles, in layers a platform team picks from:
//! Node Feature Discovery labels from a local feature file (no API access, on by default),
//! an opt-in startup taint the agent removes from its own node, and an admission policy
//! generated from the profiles directory.

pub mod features;
pub mod labels;
pub mod policy;
#[cfg(feature = "node-taint")]
pub mod taint;
/// Built without the `node-taint` feature: `--node-taint` is refused.
#[cfg(not(feature = "node-taint"))]
#[path = "taint_unbuilt.rs"]
pub mod taint;

use crate::reconcile::{ItemState, Report};
use std::collections::BTreeSet;

/// What a sync left in the kernel, as the gates see it: the managed profiles that are loaded,
/// the ones the directory asks for, and whether every one of those is loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Managed profiles in the kernel (loaded, stale, orphaned or in use): a pod naming one starts.
    pub loaded: BTreeSet<String>,
    /// Profiles the directory's files define (for a broken file: its last good version's).
    pub desired: BTreeSet<String>,
    /// Every file has a good version loaded and every desired profile is in the kernel.
    pub all_loaded: bool,
}

impl Readiness {
    /// Reads a sync's report.
    pub fn of(report: &Report) -> Readiness {
        let loaded: BTreeSet<String> = report
            .profiles
            .iter()
            .filter(|p| {
                matches!(p.state, ItemState::Loaded | ItemState::Stale | ItemState::Orphaned | ItemState::InUse)
                    && p.mode.is_some()
            })
            .map(|p| p.name.clone())
            .collect();
        let desired: BTreeSet<String> = report.files.iter().flat_map(|f| f.names.iter().cloned()).collect();
        let all_loaded = report.blocking().next().is_none() && desired.is_subset(&loaded);
        Readiness { loaded, desired, all_loaded }
    }
}

/// The gates the agent keeps after every sync: the feature file always (when its directory is
/// there), the node taint when asked for.
#[derive(Debug)]
pub struct Gates {
    features: features::FeatureFile,
    taint: Option<taint::TaintGate>,
}

impl Gates {
    /// Sets the gates up. With `node_taint` (this node's name) it builds the in-cluster API client;
    /// without it no API connection is ever opened.
    pub fn start(
        features_file: std::path::PathBuf,
        node_taint: Option<String>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Gates, taint::TaintError> {
        let taint = match node_taint {
            Some(node) => Some(taint::TaintGate::connect(node, shutdown)?),
            None => None,
        };
        Ok(Gates { features: features::FeatureFile::new(features_file), taint })
    }

    /// Brings the labels (and the taint) in line with a sync's report.
    pub fn after_sync(&mut self, report: &Report) {
        self.features.update(report);
        if let Some(t) = &self.taint {
            t.after_sync(Readiness::of(report));
        }
    }
}
