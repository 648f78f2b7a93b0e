//! Prometheus metrics (prometheus-client). Labels stay bounded: states, operations and
//! results are fixed sets; no file names, contents or error strings become labels.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::profile_info::ProfileInfo;
use crate::kernel::ParserOp;
use crate::reconcile::{Counts, ItemState, Report};

/// The source revision this binary was built from (see `build.rs`): a git commit, or `unknown`.
pub const REVISION: &str = env!("APPARMOR_LOADER_REVISION");

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    operation: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ParserLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The agent's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    profiles: Family<StateLabel, Gauge>,
    files: Family<StateLabel, Gauge>,
    operations: Family<OpLabels, Counter>,
    parser_duration: Family<ParserLabels, Histogram>,
    syncs: Family<ResultLabel, Counter>,
    last_success: Gauge<f64, AtomicU64>,
    drift_repairs: Counter,
    profile_info: ProfileInfo,
}

fn result(ok: bool) -> &'static str {
    if ok { "success" } else { "failure" }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `apparmor_loader` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("apparmor_loader");
        let profiles = Family::<StateLabel, Gauge>::default();
        registry.register("profiles", "Profiles by state (managed ones and foreign kernel profiles)", profiles.clone());
        let files = Family::<StateLabel, Gauge>::default();
        registry.register("files", "Files of the profiles directory by state", files.clone());
        let operations = Family::<OpLabels, Counter>::default();
        registry.register("operations", "Profile loads, replaces and removals by result", operations.clone());
        let parser_duration = Family::<ParserLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
        });
        registry.register(
            "parser_duration_seconds",
            "Wall time of apparmor_parser processes by operation",
            parser_duration.clone(),
        );
        let syncs = Family::<ResultLabel, Counter>::default();
        registry.register("syncs", "Reconcile passes by result (failure: directory or kernel unreadable)", syncs.clone());
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "Unix time of the last reconcile pass that completed",
            last_success.clone(),
        );
        let drift_repairs = Counter::default();
        registry.register(
            "drift_repairs",
            "Profiles restored after being removed or replaced behind the agent's back",
            drift_repairs.clone(),
        );
        // A gauge at 1 rather than an OpenMetrics info metric: the classic text format (promtool check
        // metrics, scrapers that do not ask for OpenMetrics) has no `info` type.
        let build = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        build
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", REVISION),
                ("name", env!("CARGO_PKG_NAME")),
            ])
            .set(1);
        registry.register("build_info", "Build information: version, source revision (value 1)", build);
        let profile_info = ProfileInfo::register(&mut registry);
        for state in ItemState::ALL {
            profiles.get_or_create(&StateLabel { state: state.as_str() }).set(0);
        }
        Metrics { registry, profiles, files, operations, parser_duration, syncs, last_success, drift_repairs, profile_info }
    }

    /// Lets other parts (the denial monitor) register their metrics before serving starts.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Records one parser process.
    pub fn observe_parser(&self, op: ParserOp, elapsed: Duration) {
        self.parser_duration.get_or_create(&ParserLabels { operation: op.as_str() }).observe(elapsed.as_secs_f64());
    }

    /// Records a completed sync.
    pub fn record_sync(&self, counts: &Counts, report: &Report) {
        for ((op, ok), n) in &counts.ops {
            self.operations.get_or_create(&OpLabels { operation: op.as_str(), result: result(*ok) }).inc_by(*n);
        }
        self.drift_repairs.inc_by(counts.drift_repairs);
        for (state, n) in report.counts() {
            self.profiles.get_or_create(&StateLabel { state: state.as_str() }).set(n as i64);
        }
        for state in ItemState::ALL {
            let n = report.files.iter().filter(|f| f.state == state).count();
            self.files.get_or_create(&StateLabel { state: state.as_str() }).set(n as i64);
        }
        self.profile_info.update(report);
        self.syncs.get_or_create(&ResultLabel { result: "success" }).inc();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        self.last_success.set(now);
    }

    /// Records a sync that could not run.
    pub fn record_sync_error(&self) {
        self.syncs.get_or_create(&ResultLabel { result: "failure" }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::FileReport;

    #[test]
    fn renders_bounded_series() {
        let m = Metrics::new();
        let mut counts = Counts::default();
        counts.ops.insert((crate::reconcile::plan::Operation::Replace, false), 2);
        counts.drift_repairs = 1;
        let report = Report {
            last_sync: None,
            profiles: vec![],
            files: vec![FileReport {
                file: "secret-name".into(),
                state: ItemState::Stale,
                error: Some("x:1: boom".into()),
                names: vec![],
                includes: vec![],
            }],
        };
        m.record_sync(&counts, &report);
        m.observe_parser(ParserOp::Compile, Duration::from_millis(40));
        let text = m.render();
        for want in [
            "apparmor_loader_operations_total{operation=\"replace\",result=\"failure\"} 2",
            "apparmor_loader_drift_repairs_total 1",
            "apparmor_loader_files{state=\"stale\"} 1",
            "apparmor_loader_profiles{state=\"foreign\"} 0",
            "apparmor_loader_parser_duration_seconds_bucket{le=\"0.05\",operation=\"compile\"} 1",
            "apparmor_loader_build_info{version=",
            "apparmor_loader_syncs_total{result=\"success\"} 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert!(!text.contains("secret-name") && !text.contains("boom"), "file names or errors leaked into labels");
    }
}
