//! `kubectl apparmor_loader`: the same binary, invoked as `kubectl-apparmor_loader` (a symlink on PATH),
//! asks every agent pod through the API server's pods proxy with the user's kubeconfig, so nobody has to
//! reach the nodes: `profiles` prints the node × profile matrix, `denials` the recent denials of all nodes.
//!
//! Requests, in order: one pod list (`GET /api/v1/namespaces/NS/pods?labelSelector=…`), then per running
//! pod `GET /api/v1/namespaces/NS/pods/NAME:PORT/proxy/profiles` (or `/proxy/denials?…`), at most
//! [`PARALLEL`] at a time. Access needs `get`/`list` on `pods` and `get` on `pods/proxy` in the namespace.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::config::KubeConfigOptions;
use kube::{Client, Config};
use serde_json::Value;

use self::matrix::{NodeRow, ProfilesAnswer};
use crate::audit::DenialsResponse;
use crate::audit::display::format_record;
use crate::cli::Verdict;

/// The node × profile matrix built from each agent's `/profiles` answer (pure).
pub mod matrix;

/// Agent pods asked at once.
pub const PARALLEL: usize = 16;
/// How long one request (the pod list, one agent's answer) may take.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// The agent's port when its pod names no `http` port.
pub const DEFAULT_PORT: u16 = 9741;

/// `kubectl apparmor_loader`: what every node's agent says, through the API server.
#[derive(Debug, Parser)]
#[command(name = "kubectl apparmor_loader", version)]
pub struct PluginCli {
    /// Namespace of the agent pods.
    #[arg(short = 'n', long, global = true, default_value = "apparmor-loader")]
    pub namespace: String,
    /// Label selector of the agent pods.
    #[arg(short = 'l', long, global = true, default_value = "app.kubernetes.io/name=apparmor-loader")]
    pub selector: String,
    /// The kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// What to show.
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Text,
    /// One JSON document.
    Json,
}

/// The plugin's subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Node × profile matrix: state, mode and short digest of each managed profile on each node.
    Profiles {
        /// Only these profiles (repeatable).
        #[arg(long = "profile")]
        profiles: Vec<String>,
    },
    /// Recent denials of every node, oldest first.
    Denials {
        /// Only this profile's (and its children's) denials.
        #[arg(long)]
        profile: Option<String>,
        /// Records per node (the agent caps a page at 500).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// One agent pod to ask.
#[derive(Debug, Clone)]
struct Target {
    node: String,
    pod: String,
    port: u16,
    /// Why it cannot be asked (not running).
    skip: Option<String>,
}

/// Runs the plugin, its report on `out`; `Verdict::Failures` when some agent could not be asked.
pub fn run(cli: &PluginCli, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    // Only the asking is async; the answers are printed afterwards, by the pure functions below.
    let (targets, answers) = runtime.block_on(async {
        let client = client(cli.context.as_deref()).await?;
        let targets = targets(&client, &cli.namespace, &cli.selector).await?;
        let path_and_query = match &cli.command {
            PluginCommand::Profiles { .. } => "profiles".to_string(),
            PluginCommand::Denials { profile, limit } => denials_query(profile.as_deref(), *limit),
        };
        let answers = ask_all(&client, &cli.namespace, &targets, &path_and_query).await;
        anyhow::Ok((targets, answers))
    })?;
    match &cli.command {
        PluginCommand::Profiles { profiles } => show_profiles(&targets, answers, profiles, cli.output, out),
        PluginCommand::Denials { .. } => show_denials(&targets, answers, cli.output, out),
    }
}

/// A client from the user's kubeconfig (`KUBECONFIG` or `~/.kube/config`, `--context`), as kubectl's.
async fn client(context: Option<&str>) -> anyhow::Result<Client> {
    let options = KubeConfigOptions { context: context.map(str::to_string), ..KubeConfigOptions::default() };
    let mut config =
        Config::from_kubeconfig(&options).await.context("cannot use the kubeconfig (KUBECONFIG or ~/.kube/config)")?;
    // A 503 from the pods proxy means that node's agent is down: say so at once, as kubectl would,
    // instead of retrying with backoff; and do not wait on a hung agent longer than it would answer.
    config.default_retry = false;
    config.read_timeout = Some(REQUEST_TIMEOUT);
    Client::try_from(config).context("cannot build the Kubernetes client")
}

/// The agent pods, each with its node and port.
async fn targets(client: &Client, ns: &str, selector: &str) -> anyhow::Result<Vec<Target>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .with_context(|| format!("cannot list pods in namespace {ns} with selector {selector}"))?;
    anyhow::ensure!(!list.items.is_empty(), "no pods in namespace {ns} match {selector}");
    Ok(list.items.iter().map(target).collect())
}

fn target(pod: &Pod) -> Target {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let node = spec.and_then(|s| s.node_name.clone()).unwrap_or_else(|| "-".into());
    let port = spec
        .into_iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("http"))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(DEFAULT_PORT);
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into());
    let skip = (phase != "Running").then(|| format!("pod is {phase}"));
    Target { node, pod: name, port, skip }
}

/// GETs `path_and_query` of every target's agent through the pods proxy, [`PARALLEL`] at a time; the
/// answers come back in the targets' order.
async fn ask_all(client: &Client, ns: &str, targets: &[Target], path_and_query: &str) -> Vec<Result<String, String>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().enumerate() {
        if let Some(why) = &t.skip {
            let why = why.clone();
            tasks.spawn(async move { (i, Err(why)) });
            continue;
        }
        let url = format!("/api/v1/namespaces/{ns}/pods/{}:{}/proxy/{path_and_query}", t.pod, t.port);
        let (client, limit) = (client.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let request = http::Request::get(&url).body(Vec::new()).map_err(|e| e.to_string());
            let answer = match request {
                Ok(r) => client.request_text(r).await.map_err(|e| describe(&e)),
                Err(e) => Err(e),
            };
            (i, answer)
        });
    }
    let mut out: Vec<Result<String, String>> = vec![Err("not asked".into()); targets.len()];
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, answer)) = done {
            out[i] = answer;
        }
    }
    out
}

/// Prints the node × profile matrix from the agents' `/profiles` answers (one per target, in order;
/// `only`: `--profile`); `Verdict::Failures` when some agent gave none.
fn show_profiles(
    targets: &[Target],
    answers: Vec<Result<String, String>>,
    only: &[String],
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<Verdict> {
    let rows: Vec<NodeRow> = targets
        .iter()
        .zip(answers)
        .map(|(t, a)| {
            match a.and_then(|body| {
                serde_json::from_str::<ProfilesAnswer>(&body).map_err(|e| format!("not a /profiles answer: {e}"))
            }) {
                Ok(answer) => matrix::row(&t.node, &t.pod, answer, only),
                Err(e) => matrix::unreachable(&t.node, &t.pod, e),
            }
        })
        .collect();
    let failures = rows.iter().any(|r| r.error.is_some());
    let m = matrix::build(rows);
    match output {
        Output::Text => out.write_all(matrix::render(&m).as_bytes())?,
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&m)?)?,
    }
    Ok(if failures { Verdict::Failures } else { Verdict::Ok })
}

/// The agents' `/denials` request: at most `limit` records each, of `profile` only when given.
fn denials_query(profile: Option<&str>, limit: usize) -> String {
    let mut query = format!("denials?limit={limit}");
    if let Some(p) = profile {
        query.push_str("&profile=");
        query.push_str(&encode_query_value(p));
    }
    query
}

/// Prints the agents' `/denials` answers (one per target, in order): as text every node's records
/// merged oldest first, or as JSON every answer whole; `Verdict::Failures` when some agent gave none.
fn show_denials(
    targets: &[Target],
    answers: Vec<Result<String, String>>,
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<Verdict> {
    let mut nodes = Vec::new();
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut failures = false;
    for (t, a) in targets.iter().zip(answers) {
        let parsed = a.and_then(|body| serde_json::from_str::<Value>(&body).map_err(|e| format!("not a /denials answer: {e}")));
        let (value, error) = match parsed {
            Ok(v) => (v, None),
            Err(e) => (Value::Null, Some(e)),
        };
        failures |= error.is_some();
        match (&error, serde_json::from_value::<DenialsResponse>(value.clone())) {
            (None, Ok(resp)) => {
                for e in &resp.snapshot.records {
                    lines
                        .push((e.received_at.clone(), format!("{}  {}", t.node, format_record(&e.record, e.container.as_ref()))));
                }
            }
            (None, Err(e)) => lines.push((String::new(), format!("{}  error: not a /denials answer: {e}", t.node))),
            (Some(e), _) => lines.push((String::new(), format!("{}  error: {}", t.node, matrix::printable(e)))),
        }
        nodes.push(serde_json::json!({"node": t.node, "pod": t.pod, "answer": value, "error": error}));
    }
    match output {
        Output::Text => {
            lines.sort();
            for (_, l) in &lines {
                writeln!(out, "{l}")?;
            }
        }
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&serde_json::json!({ "nodes": nodes }))?)?,
    }
    Ok(if failures { Verdict::Failures } else { Verdict::Ok })
}

/// An error in one line: the API server's own words for a Status (the pods proxy's 503 when the agent
/// does not answer), else the client's.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

/// Percent-encodes a query value (profile names may hold `/`, spaces, anything).
fn encode_query_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::invoked_as_plugin;

    #[test]
    fn only_the_plugin_name_dispatches() {
        assert!(invoked_as_plugin("kubectl-apparmor_loader"));
        assert!(invoked_as_plugin("/usr/local/bin/kubectl-apparmor_loader"));
        assert!(!invoked_as_plugin("apparmor-loader"));
        assert!(!invoked_as_plugin("/tmp/kubectl-apparmor_loader/apparmor-loader"));
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query_value("web//child x&y"), "web%2F%2Fchild%20x%26y");
        assert_eq!(denials_query(None, 100), "denials?limit=100");
        assert_eq!(denials_query(Some("web//x"), 20), "denials?limit=20&profile=web%2F%2Fx");
    }

    fn target(node: &str) -> Target {
        Target { node: node.into(), pod: format!("agent-{node}"), port: DEFAULT_PORT, skip: None }
    }

    fn written(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    const WEB: &str = r#"{"profiles":[
        {"name":"web","state":"loaded","mode":"enforce","sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","file":"web"},
        {"name":"docker-default","state":"foreign","mode":"enforce","sha256":null,"file":null}]}"#;

    #[test]
    fn profiles_print_the_matrix_with_a_row_per_node() {
        let targets = [target("n1"), target("n2"), target("n3")];
        let answers = || vec![Ok(WEB.to_string()), Err("pod is Pending".to_string()), Ok("{}".to_string())];
        let mut out = Vec::new();
        assert_eq!(show_profiles(&targets, answers(), &[], Output::Text, &mut out).unwrap(), Verdict::Failures);
        let text = written(out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], "NODE  POD       web                          NOT READY");
        assert_eq!(lines[1], "n1    agent-n1  loaded enforce aaaaaaaaaaaa  -");
        assert_eq!(lines[2], "n2    agent-n2  error: pod is Pending");
        assert!(lines[3].starts_with("n3    agent-n3  error: not a /profiles answer: missing field `profiles`"), "{text}");

        let mut out = Vec::new();
        assert_eq!(show_profiles(&targets[..1], answers(), &[], Output::Json, &mut out).unwrap(), Verdict::Ok);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["versions"]["web"]["majority"], "aaaaaaaaaaaa");
        assert_eq!(v["nodes"][0]["node"], "n1");
        let cell = &v["nodes"][0]["profiles"]["web"];
        assert_eq!((&cell["state"], &cell["mode"], &cell["majority"]), (&"loaded".into(), &"enforce".into(), &true.into()));
        assert!(v["nodes"][0]["profiles"].get("docker-default").is_none(), "foreign profiles are left out: {v}");
        assert!(out.ends_with(b"}\n"));

        let mut out = Vec::new();
        show_profiles(&targets[..1], answers(), &["other".into()], Output::Text, &mut out).unwrap();
        assert_eq!(written(out), "NODE  POD       NOT READY\nn1    agent-n1  -\n", "--profile keeps only that column");
    }

    /// An agent's `/denials` answer holding one record per `(received_at, audit log line)`, as the
    /// agent serialises it (a stored record is the parsed record plus its id and arrival time).
    fn denials_answer(records: &[(&str, &str)]) -> String {
        let records: Vec<Value> = records
            .iter()
            .enumerate()
            .map(|(i, (at, line))| {
                let mut r = serde_json::to_value(crate::audit::parse_line(line).unwrap().unwrap()).unwrap();
                r["id"] = i.into();
                r["received_at"] = (*at).into();
                r
            })
            .collect();
        let source = serde_json::to_value(crate::audit::SourceStatus::default()).unwrap();
        let total = records.len();
        serde_json::json!({"source": source, "records": records, "total": total, "capacity": 100, "next_after": 0, "more": false})
            .to_string()
    }

    const DENIED_WEB: &str = r#"type=AVC msg=audit(1796432400.120:311): apparmor="DENIED" operation="open" class="file" profile="web" name="/etc/shadow" pid=4121 comm="cat" requested_mask="r" denied_mask="r" fsuid=33 ouid=0"#;
    const DENIED_PAY: &str = r#"type=AVC msg=audit(1796432401.500:87): apparmor="DENIED" operation="capable" class="cap" profile="payment-api" pid=2290 comm="payment-api" capability=13  capname="net_raw""#;

    #[test]
    fn denials_merge_every_node_oldest_first_after_the_errors() {
        let targets = [target("node-b"), target("node-a"), target("node-c"), target("node-d")];
        let answers = || {
            vec![
                Ok(denials_answer(&[("2026-12-05T01:00:02Z", DENIED_PAY)])),
                Ok(denials_answer(&[("2026-12-05T01:00:01Z", DENIED_WEB)])),
                Err("pod is Pending".to_string()),
                Ok("<html>".to_string()),
            ]
        };
        let mut out = Vec::new();
        assert_eq!(show_denials(&targets, answers(), Output::Text, &mut out).unwrap(), Verdict::Failures);
        let text = written(out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], "node-c  error: pod is Pending");
        assert!(lines[1].starts_with("node-d  error: not a /denials answer: "), "{text}");
        assert!(lines[2].starts_with("node-a  2026-12-05T01:00:00.120Z DENIED web open /etc/shadow"), "{text}");
        assert!(lines[3].starts_with("node-b  2026-12-05T01:00:01.500Z DENIED payment-api capable capability=net_raw"), "{text}");

        let mut out = Vec::new();
        assert_eq!(show_denials(&targets[..2], answers(), Output::Json, &mut out).unwrap(), Verdict::Ok);
        let v: Value = serde_json::from_slice(&out).unwrap();
        let nodes = v["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            (&nodes[0]["node"], &nodes[0]["pod"], &nodes[0]["error"]),
            (&"node-b".into(), &"agent-node-b".into(), &Value::Null)
        );
        assert_eq!(nodes[1]["answer"]["records"][0]["name"], "/etc/shadow");
        assert_eq!(nodes[1]["answer"]["records"][0]["received_at"], "2026-12-05T01:00:01Z");

        let mut out = Vec::new();
        show_denials(&targets[2..3], vec![Err("pod is Pending".into())], Output::Json, &mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["nodes"][0]["error"], "pod is Pending");
        assert_eq!(v["nodes"][0]["answer"], Value::Null);
    }
}
