//! `apparmor_loader_profile_info`: one series per managed profile whose labels say which version of it
//! this node enforces (state, mode, short content digest). Across a fleet, grouping these by `profile`
//! and `digest` shows which nodes run another version than the rest.
//!
//! Cardinality is bounded by the managed profiles: foreign kernel profiles get no series, and a series
//! whose labels changed (new digest, new state) or whose profile went away is removed, not left at 0.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::reconcile::report::{NONE, short_digest};
use crate::reconcile::{ItemState, Report};

/// Labels of one profile's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    /// Top-level profile name (a managed one: bounded by the profiles directory).
    pub profile: String,
    /// Reported state (`loaded`, `stale`, …; never `foreign`).
    pub state: String,
    /// Kernel mode (`enforce`, `complain`, …) or `none` when not in the kernel.
    pub mode: String,
    /// Short sha256 ([`short_digest`]) of the file version loaded, or `none`.
    pub digest: String,
}

/// The series a report calls for: one per profile that is not foreign.
pub fn series(report: &Report) -> HashSet<InfoLabels> {
    report
        .profiles
        .iter()
        .filter(|p| p.state != ItemState::Foreign)
        .map(|p| InfoLabels {
            profile: p.name.clone(),
            state: p.state.as_str().to_string(),
            mode: p.mode.clone().unwrap_or_else(|| NONE.to_string()),
            digest: p.sha256.as_deref().map(short_digest).unwrap_or(NONE).to_string(),
        })
        .collect()
}

/// The registered family and the label sets it holds now.
#[derive(Debug)]
pub struct ProfileInfo {
    family: Family<InfoLabels, Gauge>,
    current: Mutex<HashSet<InfoLabels>>,
}

impl ProfileInfo {
    /// Registers `profile_info` under the registry's prefix.
    pub fn register(registry: &mut Registry) -> ProfileInfo {
        let family = Family::<InfoLabels, Gauge>::default();
        registry.register(
            "profile_info",
            "One series (value 1) per managed profile: its state, kernel mode and the short sha256 of the file version loaded",
            family.clone(),
        );
        ProfileInfo { family, current: Mutex::new(HashSet::new()) }
    }

    /// Makes the family hold exactly the series of `report`. New series are set before old ones go, so
    /// a scrape in between sees a profile twice at worst, never not at all.
    pub fn update(&self, report: &Report) {
        let next = series(report);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        for labels in &next {
            self.family.get_or_create(labels).set(1);
        }
        for gone in current.difference(&next) {
            self.family.remove(gone);
        }
        *current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::ProfileReport;

    fn profile(name: &str, state: ItemState, mode: Option<&str>, sha: Option<&str>) -> ProfileReport {
        ProfileReport {
            name: name.into(),
            mode: mode.map(Into::into),
            state,
            file: Some(name.into()),
            sha256: sha.map(Into::into),
            loaded_at: None,
            error: None,
        }
    }

    fn render(reg: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, reg).unwrap();
        out
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| l.starts_with("profile_info{")).collect()
    }

    #[test]
    fn one_series_per_managed_profile_and_none_for_foreign_ones() {
        let mut reg = Registry::default();
        let info = ProfileInfo::register(&mut reg);
        let a = "0123456789abcdef".repeat(4);
        let report = Report {
            last_sync: None,
            profiles: vec![
                profile("api", ItemState::Loaded, Some("enforce"), Some(&a)),
                profile("broken", ItemState::Failed, None, None),
                profile("docker-default", ItemState::Foreign, Some("enforce"), None),
            ],
            files: vec![],
        };
        info.update(&report);
        let text = render(&reg);
        let mut got = lines(&text);
        got.sort();
        assert_eq!(
            got,
            vec![
                r#"profile_info{profile="api",state="loaded",mode="enforce",digest="0123456789ab"} 1"#,
                r#"profile_info{profile="broken",state="failed",mode="none",digest="none"} 1"#,
            ],
            "{text}"
        );
        assert!(!text.contains("docker-default"), "{text}");
    }

    #[test]
    fn a_new_version_or_a_removed_profile_leaves_no_old_series() {
        let mut reg = Registry::default();
        let info = ProfileInfo::register(&mut reg);
        let old = "a".repeat(64);
        let new = "b".repeat(64);
        let mut report = Report {
            last_sync: None,
            profiles: vec![
                profile("api", ItemState::Loaded, Some("enforce"), Some(&old)),
                profile("gone", ItemState::Orphaned, Some("complain"), Some(&old)),
            ],
            files: vec![],
        };
        info.update(&report);
        assert_eq!(lines(&render(&reg)).len(), 2);
        report.profiles = vec![profile("api", ItemState::Stale, Some("enforce"), Some(&new))];
        info.update(&report);
        let text = render(&reg);
        assert_eq!(
            lines(&text),
            vec![r#"profile_info{profile="api",state="stale",mode="enforce",digest="bbbbbbbbbbbb"} 1"#],
            "{text}"
        );
    }

    #[test]
    fn short_digest_keeps_short_strings_whole() {
        assert_eq!(short_digest("abc"), "abc");
        assert_eq!(short_digest(&"f".repeat(64)), "ffffffffffff");
    }
}
