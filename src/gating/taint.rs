//! The opt-in startup taint: nodes join with `apparmor-loader.io/not-ready:NoSchedule`
//! (kubelet `--register-with-taints`), the agent removes it from its own node after the first
//! sync in which every desired profile is loaded, and puts it back when a profile that was
//! loaded goes missing and the sync could not restore it.
//!
//! The decision is pure ([`TaintPolicy`], [`patch_for`]); [`TaintGate`] is the thin task that
//! talks to the API server with kube-rs. Only the agent's own node is ever read or patched, and
//! only that taint is changed: a JSON patch guarded by `test` operations, so a concurrent change
//! to the node's taints makes the patch fail (and be retried on a fresh read) instead of being
//! overwritten.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Readiness;

/// The taint's key.
pub const TAINT_KEY: &str = "apparmor-loader.io/not-ready";
/// The taint's effect.
pub const TAINT_EFFECT: &str = "NoSchedule";
/// Patches retried at once after a conflict (the node changed between read and patch).
const CONFLICT_RETRIES: usize = 5;
/// Longest wait between attempts after an API error.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A request to the API server that takes longer than this has failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the node's taint should become after a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Remove the taint: every desired profile is loaded.
    Untainted,
    /// Add the taint: a profile that was loaded is gone and could not be restored.
    Tainted,
}

/// Where the node stands; the taint is changed only on a transition, so a steady node costs
/// the API server nothing.
#[derive(Debug, Default)]
pub struct TaintPolicy {
    phase: Phase,
    /// Desired profiles seen loaded since the node became ready.
    seen_loaded: BTreeSet<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No sync has loaded everything yet: the startup taint stays as the kubelet set it.
    #[default]
    Starting,
    /// Everything was loaded at the last transition.
    Ready,
    /// A profile went missing; the taint was put back.
    Missing,
}

impl TaintPolicy {
    /// The change a sync calls for, if any. A desired profile that never loaded (a new file that
    /// does not compile) does not re-taint a node: pods that ran there keep their profiles, and
    /// one bad commit must not take every node out of scheduling.
    pub fn decide(&mut self, r: &Readiness) -> Option<Want> {
        if r.all_loaded {
            self.seen_loaded = r.loaded.intersection(&r.desired).cloned().collect();
            return (self.phase != Phase::Ready).then(|| {
                self.phase = Phase::Ready;
                Want::Untainted
            });
        }
        if self.phase != Phase::Ready {
            return None;
        }
        let missing = self.seen_loaded.iter().any(|p| r.desired.contains(p) && !r.loaded.contains(p));
        self.seen_loaded = self.seen_loaded.union(&r.loaded).filter(|p| r.desired.contains(*p)).cloned().collect();
        missing.then(|| {
            self.phase = Phase::Missing;
            Want::Tainted
        })
    }
}

/// The taint this agent adds.
pub fn taint() -> Value {
    json!({"key": TAINT_KEY, "effect": TAINT_EFFECT})
}

/// The JSON patch (RFC 6902) that brings `node` to `want`, or `None` when it is there already.
pub fn patch_for(node: &Value, want: Want) -> Option<Value> {
    let taints = node.pointer("/spec/taints").and_then(Value::as_array);
    let ours = |t: &Value| t.get("key").and_then(Value::as_str) == Some(TAINT_KEY);
    match want {
        Want::Tainted => {
            let has = taints
                .is_some_and(|ts| ts.iter().any(|t| ours(t) && t.get("effect").and_then(Value::as_str) == Some(TAINT_EFFECT)));
            if has {
                return None;
            }
            Some(match taints {
                Some(ts) if !ts.is_empty() => json!([
                    {"op": "test", "path": "/spec/taints", "value": ts},
                    {"op": "add", "path": "/spec/taints/-", "value": taint()},
                ]),
                // No list to append to: add one, on exactly the node version that had none.
                _ => json!([
                    {"op": "test", "path": "/metadata/resourceVersion", "value": node.pointer("/metadata/resourceVersion")},
                    {"op": "add", "path": "/spec/taints", "value": [taint()]},
                ]),
            })
        }
        Want::Untainted => {
            let ts = taints?;
            let mut ops = Vec::new();
            // From the end, so each index still points at the taint it tested.
            for (i, t) in ts.iter().enumerate().rev().filter(|(_, t)| ours(t)) {
                ops.push(json!({"op": "test", "path": format!("/spec/taints/{i}"), "value": t}));
                ops.push(json!({"op": "remove", "path": format!("/spec/taints/{i}")}));
            }
            (!ops.is_empty()).then_some(Value::Array(ops))
        }
    }
}

/// Why the taint could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum TaintError {
    /// The in-cluster configuration (service account token, CA, API address) is not there.
    #[error("--node-taint needs the pod's service account token and API server address (in-cluster config)")]
    Config(#[source] kube::config::InClusterError),
    /// The client could not be built.
    #[error("cannot create the Kubernetes API client")]
    Client(#[source] kube::Error),
    /// A request failed.
    #[error("{method} /api/v1/nodes/{node} failed")]
    Request {
        /// GET or PATCH.
        method: &'static str,
        /// The agent's own node, named by the downward API: the only node it reads or patches.
        node: String,
        /// The API error; a 409 or 422 on the patch is a conflict, retried, never this.
        #[source]
        source: kube::Error,
    },
    /// The node kept changing between read and patch.
    #[error("node {0} changed under every one of {CONFLICT_RETRIES} patches")]
    Conflicts(String),
}

/// A client for the in-cluster API server, with a request deadline.
pub fn in_cluster_client() -> Result<kube::Client, TaintError> {
    let mut config = kube::Config::incluster().map_err(TaintError::Config)?;
    config.read_timeout = Some(REQUEST_TIMEOUT);
    kube::Client::try_from(config).map_err(TaintError::Client)
}

fn request(method: &str, node: &str, body: Option<&Value>) -> http::Request<Vec<u8>> {
    let builder = http::Request::builder().method(method).uri(format!("/api/v1/nodes/{node}"));
    match body {
        Some(b) => builder.header(http::header::CONTENT_TYPE, "application/json-patch+json").body(b.to_string().into_bytes()),
        None => builder.body(Vec::new()),
    }
    .expect("a node name from the downward API makes a valid request")
}

/// Reads the node and patches it until it has (or lacks) the taint.
pub async fn ensure(client: &kube::Client, node: &str, want: Want) -> Result<(), TaintError> {
    let failed = |method| move |source| TaintError::Request { method, node: node.to_string(), source };
    for _ in 0..CONFLICT_RETRIES {
        let current: Value = client.request(request("GET", node, None)).await.map_err(failed("GET"))?;
        let Some(patch) = patch_for(&current, want) else {
            return Ok(());
        };
        match client.request::<Value>(request("PATCH", node, Some(&patch))).await {
            Ok(_) => return Ok(()),
            // A failed `test` (422) or a write conflict (409): the node changed; read it again.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 422 => continue,
            Err(e) => return Err(failed("PATCH")(e)),
        }
    }
    Err(TaintError::Conflicts(node.to_string()))
}

/// The running taint task; [`TaintGate::after_sync`] hands it each sync's outcome.
#[derive(Debug)]
pub struct TaintGate {
    tx: watch::Sender<Option<Readiness>>,
}

impl TaintGate {
    /// Starts the task for `node`. It stops with `shutdown`; the taint stays as it is then.
    pub fn start(client: kube::Client, node: String, shutdown: CancellationToken) -> TaintGate {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(run(client, node, rx, shutdown));
        TaintGate { tx }
    }

    /// Builds the in-cluster client and starts the task for `node`.
    pub fn connect(node: String, shutdown: CancellationToken) -> Result<TaintGate, TaintError> {
        let client = in_cluster_client()?;
        tracing::info!(node, taint = TAINT_KEY, "node taint mode: the taint goes once every profile is loaded");
        Ok(TaintGate::start(client, node, shutdown))
    }

    /// Tells the task what a sync left loaded; never blocks the reconcile loop.
    pub fn after_sync(&self, r: Readiness) {
        self.tx.send_replace(Some(r));
    }
}

async fn run(client: kube::Client, node: String, mut rx: watch::Receiver<Option<Readiness>>, shutdown: CancellationToken) {
    let mut policy = TaintPolicy::default();
    let mut pending: Option<Want> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let retry = async {
            match pending {
                Some(_) => tokio::time::sleep(backoff).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let r = rx.borrow_and_update().clone();
                if let Some(want) = r.and_then(|r| policy.decide(&r)) {
                    pending = Some(want);
                    backoff = Duration::ZERO;
                }
            }
            () = retry => {}
        }
        let Some(want) = pending else { continue };
        match ensure(&client, &node, want).await {
            Ok(()) => {
                tracing::info!(node, taint = %format!("{TAINT_KEY}:{TAINT_EFFECT}"), present = want == Want::Tainted, "node taint set");
                pending = None;
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                tracing::warn!(node, error = %format!("{:#}", anyhow::Error::from(e)), retry_in = ?backoff, "cannot change the node taint");
            }
        }
    }
}

#[cfg(test)]
mod tests;
