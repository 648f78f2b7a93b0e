//! `kubectl apparmor_loader` against a fake API server: the binary, started through a symlink named
//! `kubectl-apparmor_loader` with a kubeconfig pointing at an in-process HTTP server, must send exactly the
//! expected requests (one pod list, then one pods-proxy GET per running agent, each with the kubeconfig's
//! token) and print the node × profile matrix and the denials of every node.
//!
//! The pod list is a PodList as the API server returns it (`tests/data/fleet/pods.json`); the proxied
//! answers come from real agents on fake kernels, one per node, so `/profiles` and `/denials` are the
//! agent's own. node-d's pod is Pending (never asked) and node-e's agent refuses the connection (the API
//! server's 503 Status, `tests/data/fleet/proxy-refused.json`).

#![cfg(feature = "kubectl-plugin")]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Agent, BIN, TestEnv, http_get, profile, run_with_deadline, sha256_hex, wait_for};
use serde_json::Value;

const TOKEN: &str = "fleet-test-token";
const NS: &str = "apparmor-loader";
const LIST: &str = "/api/v1/namespaces/apparmor-loader/pods?&labelSelector=app.kubernetes.io%2Fname%3Dapparmor-loader";
const DENIED_WEB: &str = r#"type=AVC msg=audit(1796432400.120:311): apparmor="DENIED" operation="open" class="file" profile="web" name="/etc/shadow" pid=4121 comm="cat" requested_mask="r" denied_mask="r" fsuid=33 ouid=0"#;
const DENIED_PAY: &str = r#"type=AVC msg=audit(1796432401.500:87): apparmor="DENIED" operation="capable" class="cap" profile="payment-api" pid=2290 comm="payment-api" capability=13  capname="net_raw""#;

fn data(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fleet").join(name)).unwrap()
}

/// One request as the fake API server saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    method: String,
    target: String,
    authorization: String,
}

/// An API server that answers the pod list from the recording and proxies `pods/NAME:9741/proxy/…` to the
/// agent of that pod (by its address), recording every request.
struct FakeApi {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeApi {
    fn start(agents: BTreeMap<String, Option<String>>) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, agents) = (seen.clone(), Arc::new(agents));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, agents) = (s.clone(), agents.clone());
                std::thread::spawn(move || serve(conn, &s, &agents));
            }
        });
        FakeApi { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        let mut v = self.seen.lock().unwrap().clone();
        v.sort();
        v
    }
}

/// Serves one keep-alive connection: requests without bodies (GETs), answers with a Content-Length.
fn serve(conn: TcpStream, seen: &Mutex<Vec<Seen>>, agents: &BTreeMap<String, Option<String>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let mut first = head[0].split(' ');
        let (method, target) = (first.next().unwrap().to_string(), first.next().unwrap().to_string());
        let header = |name: &str| {
            head.iter().find_map(|h| h.split_once(": ").filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_string()))
        };
        if let Some(n) = header("content-length").and_then(|n| n.parse::<usize>().ok()) {
            let mut body = vec![0; n];
            reader.read_exact(&mut body).unwrap();
        }
        let authorization = header("authorization").unwrap_or_default();
        seen.lock().unwrap().push(Seen { method: method.clone(), target: target.clone(), authorization });
        let (status, body) = answer(&method, &target, agents);
        let reason = if status == 200 { "OK" } else { "Error" };
        let msg = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(msg.as_bytes()).is_err() {
            return;
        }
    }
}

fn answer(method: &str, target: &str, agents: &BTreeMap<String, Option<String>>) -> (u16, String) {
    if method != "GET" {
        return (405, String::new());
    }
    if target == LIST {
        return (200, data("pods.json"));
    }
    let prefix = format!("/api/v1/namespaces/{NS}/pods/");
    let proxied = target.strip_prefix(&prefix).and_then(|r| r.split_once(":9741/proxy/"));
    match proxied.and_then(|(pod, rest)| agents.get(pod).map(|a| (a, rest))) {
        Some((Some(addr), rest)) => http_get(addr, &format!("/{rest}")).unwrap(),
        Some((None, _)) => (503, data("proxy-refused.json")),
        None => (404, r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.into()),
    }
}

/// A node's agent with `files` loaded (and an audit log to append denials to).
fn node(files: &[(&str, &str)]) -> (TestEnv, Agent, PathBuf) {
    let env = TestEnv::new();
    for (f, c) in files {
        env.write(f, c);
    }
    let log = env.path("").parent().unwrap().join("audit.log");
    std::fs::write(&log, "").unwrap();
    let mut agent = env.spawn_agent(&["--audit-source", log.to_str().unwrap()]);
    for (f, _) in files {
        wait_for(Duration::from_secs(20), "the file to be reported", || {
            let v = agent.profiles();
            common::file_entry(&v, f).map(|_| ()).ok_or(v.to_string())
        });
    }
    (env, agent, log)
}

/// The plugin: the agent binary through a symlink named kubectl-apparmor_loader, with a kubeconfig
/// pointing at the fake API server.
fn plugin(dir: &Path, api: &FakeApi, args: &[&str]) -> Output {
    let link = dir.join("kubectl-apparmor_loader");
    if !link.exists() {
        std::os::unix::fs::symlink(BIN, &link).unwrap();
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: alice\n  user:\n    token: {TOKEN}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: alice\n    namespace: default\ncurrent-context: fake\n",
            api.addr
        );
        std::fs::write(dir.join("kubeconfig"), kubeconfig).unwrap();
    }
    let mut cmd = Command::new(&link);
    cmd.args(args).env("KUBECONFIG", dir.join("kubeconfig")).env("HOME", dir).env_remove("KUBERNETES_SERVICE_HOST");
    run_with_deadline(cmd)
}

fn proxied(pod: &str, rest: &str) -> Seen {
    Seen {
        method: "GET".into(),
        target: format!("/api/v1/namespaces/{NS}/pods/{pod}:9741/proxy/{rest}"),
        authorization: format!("Bearer {TOKEN}"),
    }
}

fn list() -> Seen {
    Seen { method: "GET".into(), target: LIST.into(), authorization: format!("Bearer {TOKEN}") }
}

fn append(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    writeln!(f, "{line}").unwrap();
}

fn short(content: &str) -> String {
    sha256_hex(content.as_bytes())[..12].to_string()
}

#[test]
fn profiles_and_denials_of_every_node_through_the_pods_proxy() {
    let web = profile("web", &["/srv/www/** r", "network inet tcp"]);
    let pay = profile("payment-api", &["/etc/payment/** r", "network inet tcp"]);
    let pay_old = profile("payment-api", &["/etc/payment/** r"]);
    let broken = "profile web {\n  /srv/www/** r,\n  /srv/oops r\n}\n";
    let (_a, a, log_a) = node(&[("web", &web), ("payment-api", &pay)]);
    let (_b, b, log_b) = node(&[("web", &web), ("payment-api", &pay)]);
    let (_c, c, _) = node(&[("web", broken), ("payment-api", &pay_old)]);
    let agents: BTreeMap<String, Option<String>> = [
        ("apparmor-loader-7xk2p", Some(a.addr.clone())),
        ("apparmor-loader-b9q4m", Some(b.addr.clone())),
        ("apparmor-loader-d2w8n", Some(c.addr.clone())),
        ("apparmor-loader-h8v5z", None),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let api = FakeApi::start(agents);
    let dir = tempfile::tempdir().unwrap();

    let out = plugin(dir.path(), &api, &["profiles"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("$ kubectl apparmor_loader profiles\n{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "an agent that could not be asked fails the command");
    let (p, p_old, w) = (short(&pay), short(&pay_old), short(&web));
    let expected = format!(
        "NODE    POD                    payment-api                   web                          NOT READY\n\
         node-a  apparmor-loader-7xk2p  loaded enforce {p}   loaded enforce {w}  -\n\
         node-b  apparmor-loader-b9q4m  loaded enforce {p}   loaded enforce {w}  -\n\
         node-c  apparmor-loader-d2w8n  loaded enforce {p_old}*  -                            web (failed)\n\
         node-d  apparmor-loader-f6t3r  error: pod is Pending\n\
         node-e  apparmor-loader-h8v5z  error: 503 ServiceUnavailable: error trying to reach service: dial tcp 10.0.1.15:9741: connect: connection refused\n\
         \n* not the version most nodes enforce:\n  payment-api: {p} on 2 of 3 nodes\n"
    );
    assert_eq!(text, expected);
    let pods = ["apparmor-loader-7xk2p", "apparmor-loader-b9q4m", "apparmor-loader-d2w8n", "apparmor-loader-h8v5z"];
    let mut want: Vec<Seen> = pods.iter().map(|p| proxied(p, "profiles")).collect();
    want.push(list());
    want.sort();
    assert_eq!(api.seen(), want, "exactly one list and one proxied GET per running pod, with the user's token");

    let out = plugin(dir.path(), &api, &["profiles", "-o", "json", "--profile", "payment-api"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["versions"]["payment-api"]["majority"], p.as_str());
    assert_eq!(v["versions"]["payment-api"]["nodes"][&p_old], 1);
    assert_eq!(v["nodes"][2]["profiles"]["payment-api"]["majority"], false);
    assert!(v["nodes"][0]["profiles"].get("web").is_none(), "--profile narrows the columns");
    assert_eq!(v["nodes"][3]["error"], "pod is Pending");

    append(&log_a, DENIED_WEB);
    append(&log_b, DENIED_PAY);
    for agent in [&a, &b] {
        wait_for(Duration::from_secs(20), "the denial in /denials", || {
            let (_, body) = agent.get("/denials").map_err(|e| e.to_string())?;
            if body.contains("DENIED") { Ok(()) } else { Err(body) }
        });
    }
    let before = api.seen().len();
    let out = plugin(dir.path(), &api, &["denials", "--limit", "20"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("$ kubectl apparmor_loader denials --limit 20\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "node-c has no denials: {text}");
    assert_eq!(lines[0], "node-d  error: pod is Pending");
    assert_eq!(
        lines[1],
        "node-e  error: 503 ServiceUnavailable: error trying to reach service: dial tcp 10.0.1.15:9741: connect: connection refused"
    );
    assert!(lines[2].starts_with("node-a  2026-12-05T01:00:00.120Z DENIED web open /etc/shadow"), "{text}");
    assert!(lines[3].starts_with("node-b  2026-12-05T01:00:01.500Z DENIED payment-api capable capability=net_raw"), "{text}");
    let seen: Vec<Seen> = api.seen().into_iter().filter(|s| s.target.ends_with("limit=20")).collect();
    let mut want: Vec<Seen> = pods.iter().map(|p| proxied(p, "denials?limit=20")).collect();
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(api.seen().len(), before + 5);

    let out = plugin(dir.path(), &api, &["denials", "--profile", "web", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = &v["nodes"][0]["answer"]["records"];
    assert_eq!(recs.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(recs[0]["name"], "/etc/shadow");
    assert!(api.seen().contains(&proxied("apparmor-loader-b9q4m", "denials?limit=100&profile=web")));
}
