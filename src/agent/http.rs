//! The read-only HTTP endpoints: `/healthz`, `/readyz`, `/profiles`, `/metrics`.
//! Nothing here changes the kernel or the agent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::exposition;
use crate::agent::metrics::Metrics;
use crate::reconcile::{ItemState, Report};

/// What the agent's loops publish and the endpoints read.
pub struct AgentState {
    report: RwLock<Report>,
    sync_error: RwLock<Option<String>>,
    first_sync: AtomicBool,
    loops_alive: AtomicBool,
    sync_started_ms: AtomicU64,
    stall_limit: Duration,
    /// The metrics registry.
    pub metrics: Metrics,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

impl AgentState {
    /// Fresh, unready state. A sync running longer than `stall_limit` makes `/healthz` fail.
    pub fn new(metrics: Metrics, stall_limit: Duration) -> AgentState {
        AgentState {
            report: RwLock::new(Report::default()),
            sync_error: RwLock::new(None),
            first_sync: AtomicBool::new(false),
            loops_alive: AtomicBool::new(true),
            sync_started_ms: AtomicU64::new(0),
            stall_limit,
            metrics,
        }
    }

    /// Marks a sync as running (for the stall check).
    pub fn sync_started(&self) {
        self.sync_started_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// Publishes a completed sync; the first one flips readiness on.
    pub fn publish(&self, report: Report) {
        *self.report.write().expect("report lock") = report;
        *self.sync_error.write().expect("error lock") = None;
        self.first_sync.store(true, Ordering::Release);
        self.sync_started_ms.store(0, Ordering::Relaxed);
    }

    /// Publishes a sync that could not run (directory or kernel unreadable).
    pub fn publish_error(&self, error: String) {
        *self.sync_error.write().expect("error lock") = Some(error);
        self.sync_started_ms.store(0, Ordering::Relaxed);
    }

    /// Marks the loops as stopped: `/healthz` fails from now on.
    pub fn loops_stopped(&self) {
        self.loops_alive.store(false, Ordering::Release);
    }

    /// A copy of the latest report.
    pub fn report(&self) -> Report {
        self.report.read().expect("report lock").clone()
    }

    /// Whether the node is ready, and if not, why.
    pub fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        if !self.first_sync.load(Ordering::Acquire) {
            reasons.push(Reason { file: None, state: None, error: "the first full sync has not completed yet".into() });
        }
        if let Some(e) = self.sync_error.read().expect("error lock").clone() {
            reasons.push(Reason { file: None, state: None, error: e });
        }
        let report = self.report.read().expect("report lock");
        reasons.extend(report.blocking().map(|f| Reason {
            file: Some(f.file.clone()),
            state: Some(f.state),
            error: f.error.clone().unwrap_or_default(),
        }));
        Readiness { ready: reasons.is_empty(), reasons }
    }

    fn healthy(&self) -> Result<(), String> {
        if !self.loops_alive.load(Ordering::Acquire) {
            return Err("the reconcile loop has stopped".into());
        }
        let started = self.sync_started_ms.load(Ordering::Relaxed);
        if started != 0 && unix_ms().saturating_sub(started) > self.stall_limit.as_millis() as u64 {
            return Err(format!("a sync has been running for more than {}", humantime::format_duration(self.stall_limit)));
        }
        Ok(())
    }
}

/// The `/readyz` body.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// Whether every file has a good version loaded and the first sync is done.
    pub ready: bool,
    /// Why not.
    pub reasons: Vec<Reason>,
}

/// One reason for unreadiness.
#[derive(Debug, Serialize)]
pub struct Reason {
    /// The file, when the reason is about one.
    pub file: Option<String>,
    /// Its state.
    pub state: Option<ItemState>,
    /// What is wrong.
    pub error: String,
}

/// The router; `extra` adds routes owned by other parts (the denial monitor).
pub fn router(shared: Arc<AgentState>, extra: Router) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/profiles", get(profiles))
        .route("/metrics", get(metrics))
        .with_state(shared)
        .merge(extra)
}

async fn healthz(State(s): State<Arc<AgentState>>) -> Response {
    match s.healthy() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn readyz(State(s): State<Arc<AgentState>>) -> Response {
    let r = s.readiness();
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(r)).into_response()
}

async fn profiles(State(s): State<Arc<AgentState>>) -> Response {
    axum::Json(s.report()).into_response()
}

/// OpenMetrics to clients that ask for it (Prometheus does), the classic text format to the others.
async fn metrics(State(s): State<Arc<AgentState>>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if exposition::wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, exposition::OPENMETRICS_CONTENT_TYPE)], s.metrics.render()).into_response()
    } else {
        ([(header::CONTENT_TYPE, exposition::TEXT_CONTENT_TYPE)], exposition::to_text_format(&s.metrics.render())).into_response()
    }
}
