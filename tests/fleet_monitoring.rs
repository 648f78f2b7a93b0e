//! The fleet's alert rules, dashboard and documented queries against what the agent really exports.
//!
//! An agent on the fake kernel is driven through every state the rules look at (loaded, stale, failed,
//! refused, denials and complain-mode allowances from an audit log); its `/metrics` scrape must pass
//! `promtool check metrics`, and every PromQL expression of the PrometheusRule, of the Grafana dashboard's
//! panels and of docs/operating.md must parse and name only metrics, and labels, of that scrape.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestEnv, profile, profile_entry, wait_for};
use promql_parser::parser::{self, Expr, LabelModifier};
use serde_json::Value;

/// Labels Prometheus adds from the scrape target (and the ServiceMonitor's relabelling), not the agent.
const TARGET_LABELS: &[&str] = &["node", "pod", "namespace", "instance", "job", "container", "service", "endpoint"];

const DENIED: &str = r#"type=AVC msg=audit(1795834070.095:3): apparmor="DENIED" operation="open" class="file" profile="web" name="/etc/secret" pid=92 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
const ALLOWED: &str = r#"type=AVC msg=audit(1795834071.000:4): apparmor="ALLOWED" operation="open" class="file" profile="web" name="/etc/other" pid=93 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Metric name -> label names, from a text exposition (every sample line, `_total`, `_bucket`, … as is).
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_string()).or_default();
        if let Some(inner) = line[end..].strip_prefix('{').and_then(|r| r.split_once('}')).map(|(i, _)| i) {
            // Label values here are fixed sets and profile names: no commas or quotes inside.
            labels.extend(inner.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, _)| k.to_string()));
        }
    }
    out
}

/// Every selector of `expr`: (metric name, label names its matchers and groupings use).
fn selectors(expr: &Expr, out: &mut Vec<(String, Vec<String>)>) {
    match expr {
        Expr::VectorSelector(vs) => out.push(selector(vs)),
        Expr::MatrixSelector(ms) => out.push(selector(&ms.vs)),
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Subquery(s) => selectors(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn selector(vs: &parser::VectorSelector) -> (String, Vec<String>) {
    let name = vs.name.clone().unwrap_or_default();
    let labels = vs.matchers.matchers.iter().map(|m| m.name.clone()).filter(|n| n != "__name__").collect();
    (name, labels)
}

/// Label names of `by (…)` groupings: each must exist on some metric of the expression.
fn groupings(expr: &Expr, out: &mut BTreeSet<String>) {
    match expr {
        Expr::Aggregate(a) => {
            if let Some(LabelModifier::Include(l)) = &a.modifier {
                out.extend(l.labels.iter().cloned());
            }
            groupings(&a.expr, out);
        }
        Expr::Binary(b) => {
            groupings(&b.lhs, out);
            groupings(&b.rhs, out);
        }
        Expr::Paren(p) => groupings(&p.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| groupings(a, out)),
        _ => {}
    }
}

/// What is wrong with `expr` against `metrics`: a parse error, an unknown metric, a label it lacks.
fn problems(expr: &str, metrics: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let ast = match parser::parse(expr) {
        Ok(ast) => ast,
        Err(e) => return vec![format!("does not parse: {e}")],
    };
    let mut sels = Vec::new();
    selectors(&ast, &mut sels);
    let mut out = Vec::new();
    if sels.is_empty() {
        out.push("selects no metric".to_string());
    }
    let mut known_labels: BTreeSet<String> = TARGET_LABELS.iter().map(|s| s.to_string()).collect();
    known_labels.insert("le".into());
    for (name, labels) in &sels {
        let Some(have) = metrics.get(name) else {
            out.push(format!("names {name:?}, which the agent does not export"));
            continue;
        };
        known_labels.extend(have.iter().cloned());
        for l in labels.iter().filter(|l| !TARGET_LABELS.contains(&l.as_str()) && !have.contains(*l)) {
            out.push(format!("matches label {l:?}, which {name} does not have"));
        }
    }
    let mut grouped = BTreeSet::new();
    groupings(&ast, &mut grouped);
    for l in grouped.difference(&known_labels) {
        out.push(format!("groups by {l:?}, which none of its metrics has"));
    }
    out
}

/// (where, expression) of every alert rule.
fn rule_exprs() -> Vec<(String, String, Value)> {
    let path = root().join("manifests/components/prometheus-rules/prometheusrule.yaml");
    let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut out = Vec::new();
    for g in doc["spec"]["groups"].as_array().expect("spec.groups") {
        for r in g["rules"].as_array().expect("rules") {
            let name = r["alert"].as_str().or(r["record"].as_str()).expect("alert or record").to_string();
            out.push((format!("rule {name}"), r["expr"].as_str().expect("expr").to_string(), r.clone()));
        }
    }
    out
}

/// (where, expression) of every dashboard panel target.
fn dashboard_exprs() -> Vec<(String, String)> {
    let path = root().join("manifests/components/grafana-dashboard/apparmor-loader-fleet.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("panel {} has no targets", p["title"]));
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("panel {} target without expr", p["title"]));
            out.push((format!("panel {:?} {}", p["title"].as_str().unwrap_or(""), t["refId"]), expr.to_string()));
        }
    }
    out
}

/// ```promql blocks of a Markdown file.
fn doc_exprs(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let rel = path.strip_prefix(root()).unwrap_or(path).display().to_string();
    text.split("```promql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_string())
        .enumerate()
        .map(|(i, e)| (format!("{rel} promql block {}", i + 1), e))
        .collect()
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn append(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap();
    writeln!(f, "{line}").unwrap();
}

/// GET /metrics as Prometheus asks for it (OpenMetrics preferred): (content type, body).
fn scrape_as_prometheus(addr: &str) -> (String, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: {accept}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let ctype = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_string)).unwrap();
    (ctype, body.to_string())
}

/// Drives an agent through loaded, stale, failed and refused files, a denial and a complain-mode
/// allowance, and returns its `/metrics` once all of them show: in the classic text format (what a
/// client that does not ask for OpenMetrics gets), and as Prometheus gets it.
fn busy_agent_scrape() -> (String, String) {
    let env = TestEnv::new();
    env.kernel.seed_foreign("docker-default", "enforce");
    env.write("web", &profile("web", &["/srv/** r"]));
    env.write("payment-api", &profile("payment-api", &["/etc/payment/** r"]));
    env.write("broken", "profile broken {\n  /etc/a r,\n  /etc/b r\n}\n");
    env.write("dup", &profile("docker-default", &["/x r"]));
    let log = env.path("").parent().unwrap().join("audit.log");
    std::fs::write(&log, "").unwrap();
    let mut agent = env.spawn_agent(&["--audit-source", log.to_str().unwrap()]);
    agent.wait_file_state("web", "loaded");
    env.write("payment-api", "profile payment-api {\n  /etc/payment/** r,\n  /etc/oops r\n}\n");
    agent.wait_file_state("payment-api", "stale");
    agent.wait_file_state("broken", "failed");
    agent.wait_file_state("dup", "refused");
    append(&log, DENIED);
    append(&log, ALLOWED);
    let text = wait_for(Duration::from_secs(20), "the denial and the allowance in /metrics", || {
        let (st, text) = agent.get("/metrics").map_err(|e| e.to_string())?;
        let want = ["apparmor_loader_audit_denials_total{", "apparmor_loader_audit_complain_allowed_total{"];
        if st == 200 && want.iter().all(|w| text.contains(w)) { Ok(text) } else { Err(text) }
    });
    let (ctype, openmetrics) = scrape_as_prometheus(&agent.addr);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    (text, openmetrics)
}

fn promtool() -> &'static str {
    let found = Command::new("promtool").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        found.is_ok_and(|s| s.success()),
        "promtool not found: apt-get install prometheus (tools/prereqs.sh test-rust installs it)"
    );
    "promtool"
}

#[test]
fn rules_dashboard_and_documented_queries_name_only_exported_metrics() {
    let (scrape, openmetrics) = busy_agent_scrape();
    assert!(openmetrics.ends_with("# EOF\n") && !scrape.contains("# EOF"), "OpenMetrics for Prometheus, text for the rest");
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{scrape}");

    let metrics = exported(&scrape);
    assert_eq!(exported(&openmetrics), metrics, "both formats carry the same series");
    for want in ["apparmor_loader_profile_info", "apparmor_loader_build_info", "apparmor_loader_audit_denials_total"] {
        assert!(metrics.contains_key(want), "{want} missing from the scrape:\n{scrape}");
    }
    let mut all: Vec<(String, String)> = rule_exprs().into_iter().map(|(w, e, _)| (w, e)).collect();
    let rules = all.len();
    all.extend(dashboard_exprs());
    let docs = doc_exprs(&root().join("docs/operating.md"));
    assert!(docs.len() >= 2, "docs/operating.md documents the fleet queries in ```promql blocks");
    all.extend(docs);
    let bad: Vec<String> =
        all.iter().flat_map(|(w, e)| problems(e, &metrics).into_iter().map(move |p| format!("{w}: {p}\n  {e}"))).collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(rules >= 7, "the seven alerts of issue 16");
    eprintln!("{} expressions checked ({rules} rules) against {} exported metrics", all.len(), metrics.len());
}

#[test]
fn every_alert_has_a_runbook_section() {
    let doc = std::fs::read_to_string(root().join("docs/operating.md")).unwrap();
    let anchors: BTreeSet<String> = doc.lines().filter_map(|l| l.strip_prefix("### ")).map(anchor).collect();
    for (w, _, rule) in rule_exprs() {
        let runbook = rule["annotations"]["runbook"].as_str().unwrap_or_else(|| panic!("{w}: no runbook annotation"));
        let a = runbook.strip_prefix("docs/operating.md#").unwrap_or_else(|| panic!("{w}: runbook {runbook}"));
        assert!(anchors.contains(a), "{w}: no section #{a} in docs/operating.md ({anchors:?})");
        let alert = rule["alert"].as_str().unwrap();
        assert_eq!(a, alert.to_lowercase(), "{w}: the section is named after the alert");
    }
}

#[test]
fn the_check_catches_unknown_metrics_labels_and_groupings() {
    let metrics =
        exported("# TYPE apparmor_loader_files gauge\napparmor_loader_files{state=\"failed\"} 0\napparmor_loader_up 1\n");
    assert!(problems("apparmor_loader_files{state=\"failed\", node=\"n\"} > 0", &metrics).is_empty());
    assert!(problems("sum by (state) (apparmor_loader_files)", &metrics).is_empty());
    let p = problems("rate(apparmor_loader_file[5m])", &metrics);
    assert!(p[0].contains("does not export"), "{p:?}");
    let p = problems("apparmor_loader_files{profile=\"x\"}", &metrics);
    assert!(p[0].contains("label \"profile\""), "{p:?}");
    let p = problems("sum by (mode) (apparmor_loader_files)", &metrics);
    assert!(p[0].contains("groups by \"mode\""), "{p:?}");
    let p = problems("sum(apparmor_loader_files", &metrics);
    assert!(p[0].contains("does not parse"), "{p:?}");
    assert!(!problems("time()", &metrics).is_empty(), "an expression of no metric checks nothing");
}

#[test]
fn profile_info_follows_the_profiles_version_and_goes_with_it() {
    let env = TestEnv::new();
    env.write("web", &profile("web", &["/srv/** r"]));
    env.write("api", &profile("api", &["/etc/api/** r"]));
    let mut agent = env.spawn_agent(&["--unload-removed"]);
    agent.wait_ready();
    let series = |agent: &common::Agent| -> Vec<String> {
        let (_, text) = agent.get("/metrics").unwrap();
        let mut s: Vec<String> =
            text.lines().filter(|l| l.starts_with("apparmor_loader_profile_info{")).map(str::to_string).collect();
        s.sort();
        s
    };
    let digest = |agent: &mut common::Agent, name: &str| -> String {
        let p = profile_entry(&agent.profiles(), name).unwrap().clone();
        p["sha256"].as_str().unwrap()[..12].to_string()
    };
    let web1 = digest(&mut agent, "web");
    let api = digest(&mut agent, "api");
    assert_eq!(
        series(&agent),
        vec![
            format!(r#"apparmor_loader_profile_info{{profile="api",state="loaded",mode="enforce",digest="{api}"}} 1"#),
            format!(r#"apparmor_loader_profile_info{{profile="web",state="loaded",mode="enforce",digest="{web1}"}} 1"#),
        ]
    );
    env.write("web", &profile("web", &["/srv/** rw"]));
    env.remove("api");
    let want = wait_for(Duration::from_secs(20), "web's new digest and api gone", || {
        let web2 = digest(&mut agent, "web");
        let want =
            vec![format!(r#"apparmor_loader_profile_info{{profile="web",state="loaded",mode="enforce",digest="{web2}"}} 1"#)];
        if web2 != web1 && series(&agent) == want { Ok(want) } else { Err(format!("{:?}", series(&agent))) }
    });
    assert_eq!(series(&agent), want);
}
