//! Prometheus metrics of the denial monitor, with bounded labels: a hostile or merely busy node must not
//! be able to create unbounded time series (profile names of unmanaged profiles, generated
//! `//null-...` children, operations of future kernels all fold into `other`).

use super::record::{AuditRecord, Decision, Origin};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// The label value everything unbounded folds into.
pub const OTHER: &str = "other";

/// Operations AppArmor logs, used as label values as-is; anything else is [`OTHER`].
pub const KNOWN_OPERATIONS: &[&str] = &[
    "open",
    "exec",
    "capable",
    "create",
    "connect",
    "bind",
    "listen",
    "accept",
    "sendmsg",
    "recvmsg",
    "getsockopt",
    "setsockopt",
    "getsockname",
    "getpeername",
    "shutdown",
    "mknod",
    "mkdir",
    "rmdir",
    "unlink",
    "link",
    "rename_src",
    "rename_dest",
    "truncate",
    "chmod",
    "chown",
    "getattr",
    "setattr",
    "file_perm",
    "file_mmap",
    "file_lock",
    "file_receive",
    "file_inherit",
    "signal",
    "ptrace",
    "mount",
    "umount",
    "remount",
    "pivotroot",
    "change_onexec",
    "change_profile",
    "change_hat",
    "userns_create",
    "uring_sqpoll",
    "uring_override",
    "dbus_method_call",
    "dbus_signal",
    "dbus_bind",
    "dbus_eavesdrop",
];

/// The set of profile names the agent manages, shared with whoever keeps it current (the reconciler
/// replaces it after each sync). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ProfileSet(Arc<RwLock<HashSet<String>>>);

impl ProfileSet {
    /// A set holding `names`.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        let set = ProfileSet::default();
        set.replace(names);
        set
    }

    /// Replaces the whole set.
    pub fn replace<I: IntoIterator<Item = S>, S: Into<String>>(&self, names: I) {
        let new: HashSet<String> = names.into_iter().map(Into::into).collect();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = new;
    }

    /// True when `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).contains(name)
    }
}

/// The `profile` label for a record's profile: the top-level profile name (before `//`, so children
/// and hats count toward their parent) when `is_managed` says so, else [`OTHER`].
pub fn profile_label(profile: Option<&str>, is_managed: impl Fn(&str) -> bool) -> &str {
    let Some(p) = profile else { return OTHER };
    let top = p.split("//").next().unwrap_or(p);
    if !top.is_empty() && is_managed(top) { top } else { OTHER }
}

/// The `operation` label: one of [`KNOWN_OPERATIONS`], else [`OTHER`].
pub fn operation_label(op: Option<&str>) -> &'static str {
    op.and_then(|o| KNOWN_OPERATIONS.iter().find(|k| **k == o).copied()).unwrap_or(OTHER)
}

/// Labels of the per-profile counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProfileOpLabels {
    /// Managed profile name or `other`.
    pub profile: String,
    /// Known operation or `other`.
    pub operation: String,
}

/// Label of the source info gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `netlink`, `kmsg`, `file` or `off`.
    pub source: String,
}

/// Every metric of the monitor. Register once, clone freely (the metrics are shared handles).
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    managed: ProfileSet,
    /// `audit_denials_total{profile,operation}`: enforce-mode denials.
    pub denials: Family<ProfileOpLabels, Counter>,
    /// `audit_complain_allowed_total{profile,operation}`: what complain mode let through.
    pub allowed: Family<ProfileOpLabels, Counter>,
    /// `audit_parse_errors_total`: AppArmor lines that could not be parsed.
    pub parse_errors: Counter,
    /// `audit_records_lost_total`: records the monitor could not keep up with or the kernel overwrote.
    pub lost: Counter,
    /// `audit_log_suppressed_total`: denial log lines swallowed by the rate limit.
    pub log_suppressed: Counter,
    /// `audit_userspace_reported_total`: records the kernel did not make (USER_AVC); no labels, because
    /// every field of such a record is the sender's to choose.
    pub userspace_reported: Counter,
    /// `audit_source_up`: 1 while the source is delivering, 0 when it failed or is off.
    pub source_up: Gauge,
    /// `audit_source{source}`: 1 for the source in use.
    pub source: Family<SourceLabels, Gauge>,
}

impl AuditMetrics {
    /// Registers the metrics into `registry` (pass a prefixed sub-registry, e.g.
    /// `registry.sub_registry_with_prefix("apparmor_loader")`, to get `apparmor_loader_audit_...`).
    /// `managed` bounds the `profile` label.
    pub fn register(registry: &mut Registry, managed: ProfileSet) -> Self {
        let m = AuditMetrics {
            managed,
            denials: Family::default(),
            allowed: Family::default(),
            parse_errors: Counter::default(),
            lost: Counter::default(),
            log_suppressed: Counter::default(),
            userspace_reported: Counter::default(),
            source_up: Gauge::default(),
            source: Family::default(),
        };
        registry.register(
            "audit_denials",
            "AppArmor denials by managed profile (others: \"other\") and operation",
            m.denials.clone(),
        );
        registry.register(
            "audit_complain_allowed",
            "Accesses complain mode allowed that enforce mode would deny",
            m.allowed.clone(),
        );
        registry.register("audit_parse_errors", "AppArmor audit lines that could not be parsed", m.parse_errors.clone());
        registry.register(
            "audit_records_lost",
            "Audit records known lost: kmsg sequence gaps and monitor drops count each record; a netlink buffer overflow or an audit log truncated under the reader counts once, however many records it lost",
            m.lost.clone(),
        );
        registry.register("audit_log_suppressed", "Denial log lines suppressed by the log rate limit", m.log_suppressed.clone());
        registry.register(
            "audit_userspace_reported",
            "AppArmor records the kernel did not make (USER_AVC sent by a process): never counted as denials",
            m.userspace_reported.clone(),
        );
        registry.register("audit_source_up", "1 while the audit record source is delivering", m.source_up.clone());
        registry.register("audit_source", "The audit record source in use (value 1)", m.source.clone());
        m
    }

    /// Unregistered metrics (for a monitor run without an HTTP endpoint, and for tests).
    pub fn unregistered(managed: ProfileSet) -> Self {
        Self::register(&mut Registry::default(), managed)
    }

    /// Counts one record: the kernel's denials and complain-mode allowances by profile and operation
    /// (other decisions are not counted); any record the kernel did not make only in
    /// `audit_userspace_reported_total`, whatever it claims.
    pub fn observe(&self, rec: &AuditRecord) {
        if rec.origin != Origin::Kernel {
            self.userspace_reported.inc();
            return;
        }
        let family = match rec.decision {
            Decision::Denied | Decision::Killed => &self.denials,
            Decision::Allowed => &self.allowed,
            _ => return,
        };
        let labels = ProfileOpLabels {
            profile: profile_label(rec.profile.as_deref(), |p| self.managed.contains(p)).to_owned(),
            operation: operation_label(rec.operation.as_deref()).to_owned(),
        };
        family.get_or_create(&labels).inc();
    }

    /// Records which source is in use and whether it is up.
    pub fn set_source(&self, source: &str, up: bool) {
        self.source.clear();
        self.source.get_or_create(&SourceLabels { source: source.to_owned() }).set(1);
        self.source_up.set(i64::from(up));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn profile_label_is_bounded() {
        let managed = |p: &str| p == "web" || p == "db";
        let rows: &[(Option<&str>, &str)] = &[
            (Some("web"), "web"),
            (Some("web//child"), "web"),
            (Some("web//null-/bin/ping"), "web"),
            (Some("web//&db"), "web"),
            (Some("docker-default"), OTHER),
            (Some("weberror"), OTHER),
            (Some(""), OTHER),
            (Some("//web"), OTHER),
            (None, OTHER),
        ];
        for (p, want) in rows {
            assert_eq!(profile_label(*p, managed), *want, "{p:?}");
        }
    }

    #[test]
    fn operation_label_is_bounded() {
        assert_eq!(operation_label(Some("open")), "open");
        assert_eq!(operation_label(Some("capable")), "capable");
        assert_eq!(operation_label(Some("open\"} 1\nfake_metric{x=\"")), OTHER);
        assert_eq!(operation_label(Some("future_op")), OTHER);
        assert_eq!(operation_label(None), OTHER);
    }

    #[test]
    fn observes_and_encodes() {
        let mut reg = Registry::default();
        let managed = ProfileSet::new(["web"]);
        let m = AuditMetrics::register(reg.sub_registry_with_prefix("apparmor_loader"), managed.clone());
        let rec = |d: Decision, p: &str, op: &str| AuditRecord {
            origin: Origin::Kernel,
            decision: d,
            profile: Some(p.into()),
            operation: Some(op.into()),
            ..Default::default()
        };
        m.observe(&rec(Decision::Denied, "web", "open"));
        m.observe(&rec(Decision::Denied, "web", "open"));
        // Whatever they claim, records the kernel did not make count only as userspace-reported.
        for origin in [Origin::Userspace, Origin::Unproven] {
            m.observe(&AuditRecord { origin, ..rec(Decision::Denied, "web", "open") });
            m.observe(&AuditRecord { origin, ..rec(Decision::Denied, "web", "capable") });
        }
        m.observe(&rec(Decision::Denied, "snap.x", "exec"));
        m.observe(&rec(Decision::Allowed, "web", "capable"));
        m.observe(&rec(Decision::Status, "web", "profile_load"));
        m.parse_errors.inc();
        m.set_source("kmsg", true);
        // A profile becoming managed later gets its own series from then on.
        managed.replace(["web", "snap.x"]);
        m.observe(&rec(Decision::Denied, "snap.x", "exec"));
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        for want in [
            r#"apparmor_loader_audit_denials_total{profile="web",operation="open"} 2"#,
            r#"apparmor_loader_audit_denials_total{profile="other",operation="exec"} 1"#,
            r#"apparmor_loader_audit_denials_total{profile="snap.x",operation="exec"} 1"#,
            r#"apparmor_loader_audit_complain_allowed_total{profile="web",operation="capable"} 1"#,
            "apparmor_loader_audit_parse_errors_total 1",
            "apparmor_loader_audit_userspace_reported_total 4",
            "apparmor_loader_audit_source_up 1",
            r#"apparmor_loader_audit_source{source="kmsg"} 1"#,
        ] {
            assert!(out.contains(want), "missing {want} in\n{out}");
        }
        assert!(!out.contains("profile_load"));
        assert!(!out.contains(r#"audit_denials_total{profile="web",operation="capable"}"#), "{out}");
    }
}
