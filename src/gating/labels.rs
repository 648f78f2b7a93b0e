//! Node label names for loaded profiles, as Node Feature Discovery publishes them.
//!
//! The keys live in sub-namespaces of `feature.node.kubernetes.io`, which NFD accepts without
//! any `-extra-label-ns` setting. A profile's label name is the profile name when that is a
//! valid label name (63 characters at most, alphanumerics, `-`, `_`, `.`, alphanumeric at both
//! ends); otherwise `sha256-` and the first 32 hex digits of the name's sha256, so a selector can
//! still be written (`printf %s NAME | sha256sum | cut -c1-32`).

use std::collections::BTreeMap;

use sha2::Digest;

use super::Readiness;

/// The label whose value says whether every profile of the directory is loaded (`true`/`false`).
pub const ALL_LOADED: &str = "apparmor.feature.node.kubernetes.io/all-profiles-loaded";
/// Prefix of the per-profile labels; the value is the profile's kernel mode (`enforce`, `complain`).
pub const PROFILE_PREFIX: &str = "profile.apparmor.feature.node.kubernetes.io/";
/// Label values and the name part of keys are at most this long.
const MAX_NAME: usize = 63;
/// Hex digits of the sha256 kept in a hashed label name (128 bits).
const HASH_DIGITS: usize = 32;

/// Whether `s` is a valid label value and key name part (non-empty here).
pub fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    !b.is_empty()
        && b.len() <= MAX_NAME
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(inner)
}

/// The label name of a profile: the name itself, or its hash when the name cannot be a label.
pub fn label_name(profile: &str) -> String {
    if is_label_name(profile) {
        profile.to_string()
    } else {
        let hex = crate::scan::hex(&sha2::Sha256::digest(profile.as_bytes()));
        format!("sha256-{}", &hex[..HASH_DIGITS])
    }
}

/// A profile whose name could not be used as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renamed {
    /// Labelled under its hash.
    Hashed {
        /// The profile's full name, which is not a valid label name (over 63 characters, or a
        /// character such as `/` a label cannot hold).
        profile: String,
        /// `sha256-` and the first 32 hex digits of the name's SHA-256.
        label: String,
    },
    /// Not labelled: its hash collides with another profile's label name.
    Skipped {
        /// The profile's full name, not a valid label name.
        profile: String,
        /// The label name it would take.
        label: String,
    },
}

/// The labels of a node, in the order they are written: the summary first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLabels {
    /// `(key, value)` pairs: [`ALL_LOADED`] with `true`/`false`, then one key under
    /// [`PROFILE_PREFIX`] per label name, sorted, with the kernel mode (`loaded` when unknown).
    pub labels: Vec<(String, String)>,
    /// Profiles whose names were hashed or skipped.
    pub renamed: Vec<Renamed>,
}

/// The labels for what a sync left loaded. `modes` gives each loaded profile's kernel mode.
pub fn node_labels(readiness: &Readiness, modes: &BTreeMap<String, String>) -> NodeLabels {
    let mut out = NodeLabels::default();
    out.labels.push((ALL_LOADED.to_string(), readiness.all_loaded.to_string()));
    let mut taken: BTreeMap<String, &str> = BTreeMap::new();
    // Valid names first, so a hash can never take the place of a profile named like it.
    let (plain, odd): (Vec<&String>, Vec<&String>) = readiness.loaded.iter().partition(|p| is_label_name(p));
    for profile in plain.into_iter().chain(odd) {
        let label = label_name(profile);
        if taken.contains_key(&label) {
            out.renamed.push(Renamed::Skipped { profile: profile.clone(), label });
            continue;
        }
        if label != *profile {
            out.renamed.push(Renamed::Hashed { profile: profile.clone(), label: label.clone() });
        }
        taken.insert(label, profile);
    }
    for (label, profile) in taken {
        let value = modes.get(profile).filter(|m| is_label_name(m)).map_or("loaded", String::as_str);
        out.labels.push((format!("{PROFILE_PREFIX}{label}"), value.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readiness(loaded: &[&str], all: bool) -> Readiness {
        Readiness {
            loaded: loaded.iter().map(|s| s.to_string()).collect(),
            desired: loaded.iter().map(|s| s.to_string()).collect(),
            all_loaded: all,
        }
    }

    #[test]
    fn label_names_follow_the_kubernetes_rules() {
        for ok in ["payment-api", "a", "nginx_web.v2", "A9", &"x".repeat(63)] {
            assert!(is_label_name(ok), "{ok}");
        }
        for bad in ["", "/usr/bin/foo", "-a", "a-", "docker default", "a//b", "é", &"x".repeat(64), "snap.a+b"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn invalid_names_are_hashed_with_the_documented_formula() {
        // printf %s /usr/bin/foo | sha256sum | cut -c1-32
        assert_eq!(label_name("/usr/bin/foo"), "sha256-761b2662e36a37eaa92ee18d3d9de0dc");
        assert_eq!(label_name("payment-api"), "payment-api");
    }

    #[test]
    fn one_label_per_loaded_profile_with_its_mode_and_the_summary_first() {
        let modes: BTreeMap<String, String> =
            [("payment-api", "enforce"), ("nginx-web", "complain"), ("/usr/bin/foo", "enforce")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        let l = node_labels(&readiness(&["payment-api", "nginx-web", "/usr/bin/foo"], false), &modes);
        assert_eq!(
            l.labels,
            vec![
                (ALL_LOADED.to_string(), "false".to_string()),
                (format!("{PROFILE_PREFIX}nginx-web"), "complain".to_string()),
                (format!("{PROFILE_PREFIX}payment-api"), "enforce".to_string()),
                (format!("{PROFILE_PREFIX}sha256-761b2662e36a37eaa92ee18d3d9de0dc"), "enforce".to_string()),
            ]
        );
        assert_eq!(
            l.renamed,
            vec![Renamed::Hashed {
                profile: "/usr/bin/foo".to_string(),
                label: "sha256-761b2662e36a37eaa92ee18d3d9de0dc".to_string()
            }]
        );
    }

    #[test]
    fn a_hash_that_collides_with_a_real_name_is_skipped_not_merged() {
        let odd = "/usr/bin/foo";
        let squatter = label_name(odd);
        let l = node_labels(&readiness(&[odd, &squatter], true), &BTreeMap::new());
        assert_eq!(l.labels.len(), 2);
        assert_eq!(l.labels[1], (format!("{PROFILE_PREFIX}{squatter}"), "loaded".to_string()));
        assert_eq!(l.renamed, vec![Renamed::Skipped { profile: odd.to_string(), label: squatter }]);
    }
}
