//! The monitor: a source, the ring, the metrics and the log limiter tied together in one std thread.
//!
//! The agent starts one [`Monitor`] and hands its [`DenialsView`] to the HTTP layer. The monitor never
//! fails the agent: when its source cannot be opened or dies, it reports that (status, `audit_source_up`
//! 0, a warning) and tries again every `retry_interval`.

use super::cgroup::ContainerResolver;
use super::display::clean;
use super::metrics::AuditMetrics;
use super::record::{AuditRecord, Decision, Origin};
use super::ring::{LimiterConfig, LogDecision, LogLimiter, Query, Ring, RingOrigin, Snapshot};
use super::source::{self, ReadOptions, RunningSource, SourcePaths, SourceSpec, SourceStats};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Settings of a [`Monitor`].
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// `--audit-source`; with `off` no monitor thread is started at all.
    pub source: SourceSpec,
    /// Host paths (kmsg, audit log, procfs).
    pub paths: SourcePaths,
    /// How the source reads (the monitor forces `follow`).
    pub read: ReadOptions,
    /// `--denials-buffer`: records `/denials` keeps before forgetting the oldest, in each of the
    /// two rings (kernel-made records, and userspace-reported ones kept apart).
    pub ring_capacity: usize,
    /// Rate limits of the denial log lines, applied to each of the two rings' records apart.
    pub limiter: LimiterConfig,
    /// Attribute records to containers/pods via `<proc_root>/<pid>/cgroup`.
    pub resolve_containers: bool,
    /// How long to wait before reopening a source that failed.
    pub retry_interval: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            source: SourceSpec::Auto,
            paths: SourcePaths::default(),
            read: ReadOptions::default(),
            ring_capacity: crate::defaults::DENIALS_BUFFER,
            limiter: LimiterConfig::default(),
            resolve_containers: true,
            retry_interval: crate::defaults::AUDIT_RETRY_INTERVAL,
        }
    }
}

/// The state of the record source, for `/denials` and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// `netlink`, `kmsg`, `file`, `off`, or `none` while nothing could be opened.
    pub source: String,
    /// What exactly is read.
    pub description: String,
    /// True while records can arrive.
    pub up: bool,
    /// Why the source is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Records received from all sources since start.
    pub records: u64,
    /// Malformed AppArmor lines since start.
    pub parse_errors: u64,
    /// Records lost (kernel overwrote them, or the monitor lagged) since start.
    pub lost: u64,
    /// Of `records`, those the kernel did not make (USER_AVC), kept apart: `?origin=userspace`.
    #[serde(default)]
    pub userspace_reported: u64,
}

/// What `GET /denials` returns: the source's state and the matching records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenialsResponse {
    /// The source's state when the request was answered.
    pub source: SourceStatus,
    /// The matching records and the paging fields, flattened into the top-level object.
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

#[derive(Debug)]
struct MonitorState {
    ring: Mutex<Ring>,
    /// Records the kernel did not make: apart, so a flood of them cannot push real denials out.
    user_ring: Mutex<Ring>,
    status: Mutex<SourceStatus>,
}

impl MonitorState {
    fn new(capacity: usize, status: SourceStatus) -> Self {
        MonitorState {
            ring: Mutex::new(Ring::new(capacity)),
            user_ring: Mutex::new(Ring::new(capacity)),
            status: Mutex::new(status),
        }
    }

    fn ring(&self, origin: RingOrigin) -> &Mutex<Ring> {
        match origin {
            RingOrigin::Kernel => &self.ring,
            RingOrigin::Userspace => &self.user_ring,
        }
    }
}

/// A cheap, cloneable read handle on a running monitor, for HTTP handlers (`axum::extract::State`).
#[derive(Debug, Clone)]
pub struct DenialsView {
    shared: Arc<MonitorState>,
}

impl DenialsView {
    /// The most recent records matching `q` (oldest first), from the ring `q.origin` names.
    pub fn snapshot(&self, q: &Query) -> Snapshot {
        self.shared.ring(q.origin).lock().unwrap_or_else(|e| e.into_inner()).snapshot(q)
    }

    /// The source's state.
    pub fn status(&self) -> SourceStatus {
        self.shared.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Snapshot and status together: the body of `GET /denials?profile=NAME&limit=N&after=ID`.
    pub fn response(&self, q: &Query) -> DenialsResponse {
        DenialsResponse { source: self.status(), snapshot: self.snapshot(q) }
    }

    /// A view of nothing, for `--audit-source off` (the endpoint still answers).
    pub fn disabled() -> Self {
        let status =
            SourceStatus { source: "off".into(), description: "audit monitoring is off".into(), ..SourceStatus::default() };
        DenialsView { shared: Arc::new(MonitorState::new(1, status)) }
    }
}

/// A running monitor thread.
#[derive(Debug)]
pub struct Monitor {
    view: DenialsView,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Opens the source (synchronously, so the first status is known on return) and starts the thread.
    /// With `SourceSpec::Off` no thread is started. Raising `stop` (or calling [`Monitor::stop`]) ends it.
    pub fn start(cfg: MonitorConfig, metrics: AuditMetrics, stop: CancellationToken) -> std::io::Result<Monitor> {
        if cfg.source == SourceSpec::Off {
            metrics.set_source("off", false);
            return Ok(Monitor { view: DenialsView::disabled(), stop, thread: None });
        }
        let shared = Arc::new(MonitorState::new(cfg.ring_capacity, SourceStatus::default()));
        let mut worker = Worker::new(cfg, metrics, shared.clone(), stop.clone());
        worker.open();
        let thread = std::thread::Builder::new().name("audit-monitor".into()).spawn(move || worker.run())?;
        Ok(Monitor { view: DenialsView { shared }, stop, thread: Some(thread) })
    }

    /// The read handle for HTTP handlers.
    pub fn view(&self) -> DenialsView {
        self.view.clone()
    }

    /// Asks the thread (and its source) to stop.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops and waits for the thread (at most about one poll interval).
    pub fn join(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Counter values already pushed into the metrics, per running source.
#[derive(Debug, Default, Clone, Copy)]
struct CountersPushed {
    parse_errors: u64,
    lost: u64,
}

struct Worker {
    cfg: MonitorConfig,
    metrics: AuditMetrics,
    shared: Arc<MonitorState>,
    stop: CancellationToken,
    source: Option<RunningSource>,
    seen: CountersPushed,
    limiter: LogLimiter,
    /// Userspace-reported records have their own log budget: a flood of them cannot silence denials.
    user_limiter: LogLimiter,
    resolver: Option<ContainerResolver>,
    // Totals over all sources since start.
    records: u64,
    parse_errors: u64,
    lost: u64,
    userspace_reported: u64,
}

impl Worker {
    fn new(cfg: MonitorConfig, metrics: AuditMetrics, shared: Arc<MonitorState>, stop: CancellationToken) -> Self {
        let resolver = cfg.resolve_containers.then(|| ContainerResolver::new(cfg.paths.proc_root.clone()));
        let (limiter, user_limiter) = (LogLimiter::new(cfg.limiter), LogLimiter::new(cfg.limiter));
        Worker {
            cfg,
            metrics,
            shared,
            stop,
            source: None,
            seen: CountersPushed::default(),
            limiter,
            user_limiter,
            resolver,
            records: 0,
            parse_errors: 0,
            lost: 0,
            userspace_reported: 0,
        }
    }

    fn set_status(&self, f: impl FnOnce(&mut SourceStatus)) {
        f(&mut self.shared.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Tries to open the configured source; records the outcome in status and metrics.
    fn open(&mut self) {
        let read = ReadOptions { follow: true, ..self.cfg.read };
        // The source gets a child token so the monitor can restart it without stopping itself.
        match source::start(&self.cfg.source, &self.cfg.paths, &read, self.stop.child_token()) {
            Ok(Some(src)) => {
                tracing::info!(source = src.kind.as_str(), what = %src.description, "audit monitor reading AppArmor records");
                self.metrics.set_source(src.kind.as_str(), true);
                let (kind, description) = (src.kind.as_str().to_owned(), src.description.clone());
                self.set_status(|s| {
                    s.source = kind;
                    s.description = description;
                    s.up = true;
                    s.error = None;
                });
                self.seen = CountersPushed::default();
                self.source = Some(src);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?self.cfg.retry_interval, "audit monitor has no record source; denials will not be seen");
                self.metrics.set_source("none", false);
                let msg = e.to_string();
                self.set_status(|s| {
                    s.source = "none".into();
                    s.up = false;
                    s.error = Some(msg);
                });
            }
        }
    }

    fn run(mut self) {
        let poll = self.cfg.read.poll_interval;
        let mut retry_at: Option<Instant> = None;
        while !self.stop.is_cancelled() {
            let Some(src) = &self.source else {
                let at = *retry_at.get_or_insert_with(|| Instant::now() + self.cfg.retry_interval);
                if Instant::now() >= at {
                    retry_at = None;
                    self.open();
                } else {
                    std::thread::sleep(poll);
                }
                continue;
            };
            match src.rx.recv_timeout(poll) {
                Ok(rec) => {
                    self.handle(rec);
                    // Drain what is queued without waiting, then refresh counters once.
                    while let Some(src) = &self.source {
                        match src.rx.try_recv() {
                            Ok(rec) => self.handle(rec),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let src = self.source.take().expect("checked above");
                    let err = src.stats.last_error().unwrap_or_else(|| "source ended".into());
                    self.sync_counters(&src.stats);
                    tracing::warn!(error = %err, "audit source stopped; will reopen");
                    self.metrics.source_up.set(0);
                    self.set_status(|s| {
                        s.up = false;
                        s.error = Some(err);
                    });
                    src.join();
                    continue;
                }
            }
            if let Some(src) = &self.source {
                let stats = src.stats.clone();
                self.sync_counters(&stats);
            }
        }
        if let Some(src) = self.source.take() {
            src.stop();
            src.join();
        }
    }

    /// Moves the source thread's counters into the metrics and the status.
    fn sync_counters(&mut self, stats: &SourceStats) {
        let parse_errors = stats.parse_errors.load(Ordering::Relaxed);
        let lost = stats.lost.load(Ordering::Relaxed) + stats.dropped.load(Ordering::Relaxed);
        let (dp, dl) = (parse_errors.saturating_sub(self.seen.parse_errors), lost.saturating_sub(self.seen.lost));
        self.seen = CountersPushed { parse_errors, lost };
        if dp > 0 {
            self.metrics.parse_errors.inc_by(dp);
        }
        if dl > 0 {
            self.metrics.lost.inc_by(dl);
        }
        self.parse_errors += dp;
        self.lost += dl;
        let (records, pe, lo, user) = (self.records, self.parse_errors, self.lost, self.userspace_reported);
        self.set_status(|s| {
            s.records = records;
            s.parse_errors = pe;
            s.lost = lo;
            s.userspace_reported = user;
        });
    }

    /// Counts, logs and keeps one record; the ones the kernel did not make only in their own counter,
    /// log budget and ring.
    fn handle(&mut self, rec: AuditRecord) {
        self.records += 1;
        self.metrics.observe(&rec);
        let kernel = rec.origin == Origin::Kernel;
        if !kernel {
            self.userspace_reported += 1;
        }
        let keep = rec.decision.is_violation() || rec.decision == Decision::Audit;
        if !keep {
            tracing::debug!(decision = %rec.decision, operation = ?rec.operation, profile = ?rec.profile, "AppArmor record");
            return;
        }
        let now = Instant::now();
        // `pid` is kernel-stamped: the confined task, or for a USER_AVC the process that sent it.
        let container = match (&mut self.resolver, rec.pid) {
            (Some(r), Some(pid)) => r.resolve(pid, now),
            _ => None,
        };
        if rec.decision.is_violation() {
            let limiter = if kernel { &mut self.limiter } else { &mut self.user_limiter };
            match limiter.check(&rec, now) {
                LogDecision::Log { repeats, suppressed } => log_record(&rec, container.as_ref(), repeats, suppressed),
                LogDecision::Duplicate => {}
                LogDecision::RateLimited => {
                    self.metrics.log_suppressed.inc();
                }
            }
        }
        let ring = self.shared.ring(if kernel { RingOrigin::Kernel } else { RingOrigin::Userspace });
        ring.lock().unwrap_or_else(|e| e.into_inner()).push(rec, container, SystemTime::now());
    }
}

/// One structured event per distinct denial. Untrusted fields are cleaned so a crafted file name
/// cannot forge log lines; a record the kernel did not make says so (`origin`, and its message).
fn log_record(rec: &AuditRecord, container: Option<&super::cgroup::ContainerRef>, repeats: u64, suppressed: u64) {
    let opt = |v: &Option<String>| v.as_deref().map(clean).unwrap_or_default();
    let (profile, operation, name, comm) = (opt(&rec.profile), opt(&rec.operation), opt(&rec.name), opt(&rec.comm));
    let mask = rec.effective_mask().map(clean).unwrap_or_default();
    let capability = opt(&rec.capname);
    let network = match (&rec.family, &rec.sock_type) {
        (Some(f), Some(t)) => format!("{}/{}", clean(f), clean(t)),
        (Some(f), None) => clean(f),
        _ => String::new(),
    };
    let pod_uid = container.and_then(|c| c.pod_uid.clone()).unwrap_or_default();
    let container_id = container.and_then(|c| c.container_id.clone()).unwrap_or_default();
    let (pid, origin) = (rec.pid.unwrap_or(0), rec.origin.as_str());
    let sender = match (rec.uid, &rec.sender_label) {
        (Some(uid), Some(l)) => format!("uid={uid} label={}", clean(l)),
        (Some(uid), None) => format!("uid={uid}"),
        (None, Some(l)) => format!("label={}", clean(l)),
        (None, None) => String::new(),
    };
    macro_rules! event {
        ($level:ident, $msg:literal) => {
            tracing::$level!(
                target: "apparmor_loader::denials",
                decision = %rec.decision, %profile, %operation, %name, %mask, %capability, %network, pid, %comm,
                %pod_uid, %container_id, origin, %sender, repeats, suppressed, $msg
            )
        };
    }
    match (rec.origin, &rec.decision) {
        (Origin::Kernel, Decision::Allowed) => {
            event!(info, "AppArmor complain mode allowed an access the profile does not grant")
        }
        (Origin::Kernel, _) => event!(warn, "AppArmor denied an access"),
        _ => event!(
            info,
            "userspace-reported AppArmor record: a process's claim (pid is the sender), not a kernel decision; not counted"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::metrics::ProfileSet;
    use prometheus_client::registry::Registry;
    use std::io::Write;

    fn line(seq: u64, decision: &str, profile: &str, name: &str, pid: u32) -> String {
        format!(
            "5,{seq},0,-;audit: type=1400 audit(1795834070.095:{seq}): apparmor=\"{decision}\" operation=\"open\" profile=\"{profile}\" name=\"{name}\" pid={pid} comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0\n"
        )
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn end_to_end_on_a_kmsg_file() {
        let dir = tempfile::tempdir().unwrap();
        let kmsg = dir.path().join("kmsg");
        std::fs::write(&kmsg, line(1, "DENIED", "web", "/old", 1)).unwrap();
        let proc_root = dir.path().join("proc");
        std::fs::create_dir_all(proc_root.join("77")).unwrap();
        let cid = "ab".repeat(32);
        std::fs::write(
            proc_root.join("77/cgroup"),
            format!("0::/kubepods.slice/kubepods-pod0123abcd_0000_1111_2222_333344445555.slice/cri-containerd-{cid}.scope\n"),
        )
        .unwrap();

        let mut reg = Registry::default();
        let metrics = AuditMetrics::register(&mut reg, ProfileSet::new(["web"]));
        let cfg = MonitorConfig {
            source: SourceSpec::Kmsg,
            paths: SourcePaths { kmsg: kmsg.clone(), audit_log: dir.path().join("none"), proc_root },
            read: ReadOptions { poll_interval: Duration::from_millis(20), ..ReadOptions::default() },
            ring_capacity: 3,
            ..MonitorConfig::default()
        };
        let stop = CancellationToken::new();
        let mon = Monitor::start(cfg, metrics.clone(), stop.clone()).unwrap();
        let view = mon.view();
        let st = view.status();
        assert_eq!((st.source.as_str(), st.up), ("kmsg", true));

        let mut f = std::fs::OpenOptions::new().append(true).open(&kmsg).unwrap();
        let mut text = String::new();
        text += &line(2, "DENIED", "web", "/secret", 77);
        text += &line(3, "ALLOWED", "web//child", "/etc/hosts", 77);
        text += &line(4, "STATUS", "unconfined", "web", 5);
        text += &line(5, "DENIED", "other-profile", "/x", 5);
        text += "5,6,0,-;audit: type=1400 audit(1.000:6): apparmor=\"DENIED\" pid=oops\n";
        text += &line(7, "DENIED", "web", "/y", 5);
        // Forgeries a process can make: USER_AVCs the kernel echoes (its facility), imitating web's
        // denials, one with a newline and a fake kernel AVC in it; and a write to /dev/kmsg (dropped).
        for (seq, forged) in [(8, "/etc/shadow"), (9, "/etc/forged-nl")] {
            let msg = format!(
                "x\\x0aaudit: type=1400 audit(1.0:1): apparmor=\"DENIED\" operation=\"open\" profile=\"web\" name=\"{forged}\" pid=77"
            );
            text += &format!(
                "6,{seq},0,-;audit: type=1107 audit(1795834070.095:{seq}): pid=77 uid=65534 auid=4294967295 ses=4294967295 subj=unconfined msg='apparmor=\"DENIED\" operation=\"open\" profile=\"web\" name=\"{forged}\" pid=1 requested_mask=\"r\" denied_mask=\"r\" {msg}'\n"
            );
        }
        text += &line(10, "DENIED", "web", "/kmsg-write", 5).replacen("5,10,", "13,10,", 1);
        f.write_all(text.as_bytes()).unwrap();

        wait_for(|| view.status().records >= 7 && view.status().parse_errors == 1);
        let all = view.snapshot(&Query::default());
        let names: Vec<_> = all.records.iter().map(|e| e.record.name.clone().unwrap()).collect();
        assert_eq!(names, ["/etc/hosts", "/x", "/y"], "ring of 3 keeps the newest; STATUS is not kept");
        assert_eq!(all.total, 4);
        let web = view.snapshot(&Query { profile: Some("web".into()), ..Query::default() });
        assert_eq!(web.records.len(), 2);
        let c = web.records[0].container.as_ref().expect("pid 77 resolved");
        assert_eq!(c.pod_uid.as_deref(), Some("0123abcd-0000-1111-2222-333344445555"));
        assert_eq!(c.container_id.as_deref(), Some(cid.as_str()));

        // The forged records are kept apart, attributed to their sender (pid 77 is the pod above).
        assert_eq!(view.status().userspace_reported, 2);
        let user = view.snapshot(&Query { origin: RingOrigin::Userspace, ..Query::default() });
        let forged: Vec<_> = user
            .records
            .iter()
            .map(|e| (e.record.name.clone().unwrap(), e.record.origin, e.record.pid, e.record.reported_pid))
            .collect();
        assert_eq!(
            forged,
            [
                ("/etc/shadow".to_owned(), Origin::Userspace, Some(77), Some(1)),
                ("/etc/forged-nl".to_owned(), Origin::Userspace, Some(77), Some(1))
            ]
        );
        assert!(user.records[0].container.as_ref().is_some_and(|c| c.container_id.as_deref() == Some(cid.as_str())));

        let json = serde_json::to_value(view.response(&Query { limit: Some(1), ..Query::default() })).unwrap();
        assert_eq!(json["source"]["source"], "kmsg");
        assert_eq!(json["records"].as_array().unwrap().len(), 1);

        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        for want in [
            // The two forged USER_AVCs for web are not among its denials.
            r#"audit_denials_total{profile="web",operation="open"} 2"#,
            "audit_userspace_reported_total 2",
            r#"audit_denials_total{profile="other",operation="open"} 1"#,
            r#"audit_complain_allowed_total{profile="web",operation="open"} 1"#,
            "audit_parse_errors_total 1",
            "audit_source_up 1",
        ] {
            assert!(out.contains(want), "missing {want}:\n{out}");
        }

        mon.join();
        assert!(stop.is_cancelled());
    }

    #[test]
    fn a_flood_of_userspace_records_cannot_push_denials_out() {
        let dir = tempfile::tempdir().unwrap();
        let kmsg = dir.path().join("kmsg");
        std::fs::write(&kmsg, "").unwrap();
        let metrics = AuditMetrics::unregistered(ProfileSet::new(["web"]));
        let cfg = MonitorConfig {
            source: SourceSpec::Kmsg,
            paths: SourcePaths { kmsg: kmsg.clone(), audit_log: dir.path().join("none"), proc_root: dir.path().into() },
            read: ReadOptions { poll_interval: Duration::from_millis(10), ..ReadOptions::default() },
            ring_capacity: 2,
            ..MonitorConfig::default()
        };
        let mon = Monitor::start(cfg, metrics.clone(), CancellationToken::new()).unwrap();
        let view = mon.view();
        let mut text = line(1, "DENIED", "web", "/real", 5);
        for seq in 2..50 {
            text += &format!(
                "6,{seq},0,-;audit: type=1107 audit(1.000:{seq}): pid=9 uid=1 auid=1 ses=1 msg='apparmor=\"DENIED\" operation=\"open\" profile=\"web\" name=\"/f{seq}\"'\n"
            );
        }
        std::fs::OpenOptions::new().append(true).open(&kmsg).unwrap().write_all(text.as_bytes()).unwrap();
        wait_for(|| view.status().records >= 49);
        let names: Vec<_> = view.snapshot(&Query::default()).records.into_iter().map(|e| e.record.name.unwrap()).collect();
        assert_eq!(names, ["/real"]);
        assert_eq!(view.snapshot(&Query { origin: RingOrigin::Userspace, ..Query::default() }).records.len(), 2);
        assert_eq!((metrics.userspace_reported.get(), view.status().userspace_reported), (48, 48));
        mon.join();
    }

    #[test]
    fn missing_source_reports_down_and_retries() {
        let dir = tempfile::tempdir().unwrap();
        let kmsg = dir.path().join("kmsg");
        let metrics = AuditMetrics::unregistered(ProfileSet::default());
        let cfg = MonitorConfig {
            source: SourceSpec::Kmsg,
            paths: SourcePaths { kmsg: kmsg.clone(), audit_log: dir.path().join("none"), proc_root: dir.path().into() },
            read: ReadOptions { poll_interval: Duration::from_millis(10), ..ReadOptions::default() },
            retry_interval: Duration::from_millis(50),
            ..MonitorConfig::default()
        };
        let mon = Monitor::start(cfg, metrics.clone(), CancellationToken::new()).unwrap();
        let view = mon.view();
        let st = view.status();
        assert!(!st.up && st.error.as_deref().is_some_and(|e| e.contains("kmsg")), "{st:?}");
        assert_eq!(metrics.source_up.get(), 0);
        // The device appears: the monitor picks it up on its next retry.
        std::fs::write(&kmsg, "").unwrap();
        wait_for(|| view.status().up);
        assert_eq!(metrics.source_up.get(), 1);
        mon.join();
    }

    #[test]
    fn off_answers_with_an_empty_view() {
        let mon = Monitor::start(
            MonitorConfig { source: SourceSpec::Off, ..MonitorConfig::default() },
            AuditMetrics::unregistered(ProfileSet::default()),
            CancellationToken::new(),
        )
        .unwrap();
        let r = mon.view().response(&Query::default());
        assert_eq!(r.source.source, "off");
        assert!(r.snapshot.records.is_empty());
        mon.join();
    }

    #[test]
    #[ignore = "needs root, kernel audit and the host network namespace; run with --ignored"]
    fn real_auto_monitor_keeps_a_user_avc_apart() {
        let mut reg = Registry::default();
        let metrics = AuditMetrics::register(&mut reg, ProfileSet::new(["aal-selftest"]));
        let cfg = MonitorConfig {
            read: ReadOptions { poll_interval: Duration::from_millis(20), ..ReadOptions::default() },
            ..MonitorConfig::default()
        };
        let mon = Monitor::start(cfg, metrics, CancellationToken::new()).unwrap();
        let view = mon.view();
        assert!(view.status().up, "{:?}", view.status());
        let tag = format!("/monitor-{}", std::process::id());
        crate::audit::source::tests::send_user_avc(&format!(
            r#"apparmor="DENIED" operation="open" profile="aal-selftest" name="{tag}" pid=1 comm="selftest" requested_mask="r" denied_mask="r""#
        ))
        .unwrap();
        let q = Query { profile: Some("aal-selftest".into()), origin: RingOrigin::Userspace, ..Query::default() };
        wait_for(|| view.snapshot(&q).records.iter().any(|e| e.record.name.as_deref() == Some(tag.as_str())));
        let rec = view.snapshot(&q).records.into_iter().find(|e| e.record.name.as_deref() == Some(tag.as_str())).unwrap().record;
        assert_eq!((rec.origin, rec.pid, rec.reported_pid), (Origin::Userspace, Some(std::process::id()), Some(1)));
        assert!(view.snapshot(&Query { profile: q.profile.clone(), ..Query::default() }).records.is_empty());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(!out.contains(r#"audit_denials_total{profile="aal-selftest""#), "{out}");
        assert!(!out.contains("audit_userspace_reported_total 0"), "{out}");
        mon.join();
    }
}
