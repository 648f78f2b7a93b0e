//! The taint decision, the patches, and the exact requests against a fake API server
//! (tower-test's mock service behind a real kube-rs client).

use super::*;
use http_body_util::BodyExt;
use kube::client::Body;
use tower_test::mock;

fn ready(loaded: &[&str], desired: &[&str]) -> Readiness {
    let loaded: BTreeSet<String> = loaded.iter().map(|s| s.to_string()).collect();
    let desired: BTreeSet<String> = desired.iter().map(|s| s.to_string()).collect();
    Readiness { all_loaded: desired.is_subset(&loaded), loaded, desired }
}

#[test]
fn the_taint_goes_after_the_first_full_sync_and_comes_back_only_for_a_lost_profile() {
    let mut p = TaintPolicy::default();
    assert_eq!(p.decide(&ready(&["a"], &["a", "b"])), None, "not everything loaded yet: the startup taint stays");
    assert_eq!(p.decide(&ready(&["a", "b"], &["a", "b"])), Some(Want::Untainted));
    assert_eq!(p.decide(&ready(&["a", "b"], &["a", "b"])), None, "no request while nothing changes");
    // A new file that never compiles: not ready, but nothing that ran here lost its profile.
    assert_eq!(p.decide(&ready(&["a", "b"], &["a", "b", "c"])), None);
    // `b` was unloaded behind the agent's back and could not be loaded again.
    assert_eq!(p.decide(&ready(&["a"], &["a", "b", "c"])), Some(Want::Tainted));
    assert_eq!(p.decide(&ready(&["a"], &["a", "b", "c"])), None);
    assert_eq!(p.decide(&ready(&["a", "b", "c"], &["a", "b", "c"])), Some(Want::Untainted));
    // A profile whose file was deleted is no longer desired: its absence re-taints nothing.
    assert_eq!(p.decide(&ready(&["a", "b", "c"], &["a", "b", "c"])), None);
    let mut gone = ready(&["a"], &["a"]);
    gone.all_loaded = false;
    assert_eq!(p.decide(&gone), None);
}

fn node(taints: Option<Value>) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "resourceVersion": "42"}, "spec": {}});
    if let Some(t) = taints {
        n["spec"]["taints"] = t;
    }
    n
}

#[test]
fn patches_touch_only_the_agents_taint_and_test_what_they_change() {
    let other = json!({"key": "node.kubernetes.io/not-ready", "effect": "NoExecute", "timeAdded": "2026-12-05T00:00:00Z"});
    let ours = taint();
    assert_eq!(patch_for(&node(None), Want::Untainted), None);
    assert_eq!(patch_for(&node(Some(json!([other]))), Want::Untainted), None);
    assert_eq!(
        patch_for(&node(Some(json!([other, ours, {"key": TAINT_KEY, "effect": "NoExecute"}]))), Want::Untainted),
        Some(json!([
            {"op": "test", "path": "/spec/taints/2", "value": {"key": TAINT_KEY, "effect": "NoExecute"}},
            {"op": "remove", "path": "/spec/taints/2"},
            {"op": "test", "path": "/spec/taints/1", "value": ours},
            {"op": "remove", "path": "/spec/taints/1"},
        ]))
    );
    assert_eq!(patch_for(&node(Some(json!([ours]))), Want::Tainted), None);
    assert_eq!(
        patch_for(&node(Some(json!([other]))), Want::Tainted),
        Some(json!([
            {"op": "test", "path": "/spec/taints", "value": [other]},
            {"op": "add", "path": "/spec/taints/-", "value": ours},
        ]))
    );
    assert_eq!(
        patch_for(&node(None), Want::Tainted),
        Some(json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
            {"op": "add", "path": "/spec/taints", "value": [ours]},
        ]))
    );
}

type Handle = mock::Handle<http::Request<Body>, http::Response<Body>>;

fn fake_api() -> (kube::Client, Handle) {
    let (service, handle) = mock::pair::<http::Request<Body>, http::Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// Takes the next request, checks its method, path and JSON body, and answers it.
async fn expect(handle: &mut Handle, method: &str, path: &str, body: Option<Value>, status: u16, answer: Value) {
    let (req, send) = handle.next_request().await.expect("a request");
    assert_eq!(req.method().as_str(), method);
    assert_eq!(req.uri().path(), path);
    let content_type = req.headers().get(http::header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string());
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    match body {
        Some(expected) => {
            assert_eq!(content_type.as_deref(), Some("application/json-patch+json"));
            assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), expected);
        }
        None => assert!(bytes.is_empty(), "{method} {path} has no body"),
    }
    let response = http::Response::builder().status(status).body(Body::from(answer.to_string().into_bytes())).unwrap();
    send.send_response(response);
}

fn status(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "the test operation failed", "reason": "Invalid", "code": code})
}

#[tokio::test]
async fn untainting_reads_the_node_then_sends_one_guarded_patch() {
    let (client, mut handle) = fake_api();
    let server = tokio::spawn(async move {
        let tainted = node(Some(json!([taint()])));
        expect(&mut handle, "GET", "/api/v1/nodes/n1", None, 200, tainted.clone()).await;
        let patch =
            json!([{"op": "test", "path": "/spec/taints/0", "value": taint()}, {"op": "remove", "path": "/spec/taints/0"}]);
        expect(&mut handle, "PATCH", "/api/v1/nodes/n1", Some(patch), 200, node(Some(json!([])))).await;
        handle
    });
    ensure(&client, "n1", Want::Untainted).await.unwrap();
    let mut handle = server.await.unwrap();
    drop(client);
    assert!(handle.next_request().await.is_none(), "no further request");
}

#[tokio::test]
async fn a_node_changed_meanwhile_is_read_again_and_a_node_already_right_is_left_alone() {
    let (client, mut handle) = fake_api();
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", "/api/v1/nodes/n1", None, 200, node(None)).await;
        let first = json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
            {"op": "add", "path": "/spec/taints", "value": [taint()]},
        ]);
        expect(&mut handle, "PATCH", "/api/v1/nodes/n1", Some(first), 422, status(422)).await;
        // Someone else added the same taint in between: nothing left to do.
        expect(&mut handle, "GET", "/api/v1/nodes/n1", None, 200, node(Some(json!([taint()])))).await;
        handle
    });
    ensure(&client, "n1", Want::Tainted).await.unwrap();
    let mut handle = server.await.unwrap();
    drop(client);
    assert!(handle.next_request().await.is_none());
}

#[tokio::test]
async fn an_api_error_is_reported_with_the_request() {
    let (client, mut handle) = fake_api();
    let server = tokio::spawn(async move {
        let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "forbidden", "reason": "Forbidden", "code": 403});
        expect(&mut handle, "GET", "/api/v1/nodes/n1", None, 403, forbidden).await;
    });
    let e = ensure(&client, "n1", Want::Untainted).await.unwrap_err();
    server.await.unwrap();
    assert_eq!(e.to_string(), "GET /api/v1/nodes/n1 failed");
    assert!(matches!(e, TaintError::Request { source: kube::Error::Api(ref s), .. } if s.code == 403));
}

#[tokio::test]
async fn the_gate_acts_on_the_first_full_sync_only() {
    let (client, mut handle) = fake_api();
    let shutdown = CancellationToken::new();
    let gate = TaintGate::start(client, "n1".into(), shutdown.clone());
    gate.after_sync(ready(&["a"], &["a", "b"]));
    gate.after_sync(ready(&["a", "b"], &["a", "b"]));
    expect(&mut handle, "GET", "/api/v1/nodes/n1", None, 200, node(Some(json!([taint()])))).await;
    let patch = json!([{"op": "test", "path": "/spec/taints/0", "value": taint()}, {"op": "remove", "path": "/spec/taints/0"}]);
    expect(&mut handle, "PATCH", "/api/v1/nodes/n1", Some(patch), 200, node(None)).await;
    gate.after_sync(ready(&["a", "b"], &["a", "b"]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(gate);
    assert!(handle.next_request().await.is_none(), "a steady node costs no request");
}
