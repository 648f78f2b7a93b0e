//! The node × profile matrix of `kubectl apparmor_loader profiles`, built from each agent's
//! `/profiles` answer: pure, so the text and JSON the plugin prints are tested without a cluster.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::reconcile::report::{NONE, short_digest};

/// One agent pod's answer, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    /// The node the pod runs on (`spec.nodeName`), or `-` when not scheduled.
    pub node: String,
    /// Name of the agent pod that answered (or failed to) for this node.
    pub pod: String,
    /// Managed profiles by name (foreign ones are left out).
    pub profiles: BTreeMap<String, Cell>,
    /// Files that keep the node unready, as `FILE (STATE)`: a file that never compiled has no profile
    /// names, so only this shows it.
    pub not_ready: Vec<String>,
    /// Why the agent could not be asked (pod not running, proxy error), if so.
    pub error: Option<String>,
}

/// One profile on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// Reported state (`loaded`, `stale`, …).
    pub state: String,
    /// Kernel mode, or `none`.
    pub mode: String,
    /// Short digest of the version loaded, or `none`.
    pub digest: String,
    /// False when another digest is the one most nodes enforce.
    pub majority: bool,
}

/// The part of an agent's `/profiles` answer the matrix uses.
#[derive(Debug, Deserialize)]
pub struct ProfilesAnswer {
    profiles: Vec<AnswerProfile>,
    #[serde(default)]
    files: Vec<AnswerFile>,
}

#[derive(Debug, Deserialize)]
struct AnswerFile {
    file: String,
    state: String,
}

#[derive(Debug, Deserialize)]
struct AnswerProfile {
    name: String,
    state: String,
    mode: Option<String>,
    sha256: Option<String>,
}

/// The matrix: every node's row and, per profile, the digest most nodes enforce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matrix {
    /// One row per agent pod, sorted by node name, then pod name.
    pub nodes: Vec<NodeRow>,
    /// Per profile: the majority digest and how many nodes enforce each digest.
    pub versions: BTreeMap<String, Versions>,
}

/// How many nodes enforce which version of one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Versions {
    /// The digest most nodes enforce (on a tie, the smallest).
    pub majority: String,
    /// Per short digest, how many nodes enforce it; a failed or refused profile counts for none.
    pub nodes: BTreeMap<String, usize>,
}

/// A row from an agent's answer; `only` keeps just those profiles (all when empty).
pub fn row(node: &str, pod: &str, answer: ProfilesAnswer, only: &[String]) -> NodeRow {
    let profiles = answer
        .profiles
        .into_iter()
        .filter(|p| p.state != "foreign" && (only.is_empty() || only.contains(&p.name)))
        .map(|p| {
            let digest = p.sha256.as_deref().map(short_digest).unwrap_or(NONE).to_string();
            let cell = Cell { state: p.state, mode: p.mode.unwrap_or_else(|| NONE.into()), digest, majority: true };
            (p.name, cell)
        })
        .collect();
    let not_ready = answer
        .files
        .into_iter()
        .filter(|f| f.state == "failed" || f.state == "refused")
        .map(|f| format!("{} ({})", f.file, f.state))
        .collect();
    NodeRow { node: node.into(), pod: pod.into(), profiles, not_ready, error: None }
}

/// `s` with control characters replaced by `?`: error texts come from the API server or an agent and
/// must not move the terminal's cursor.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A row for an agent that could not be asked.
pub fn unreachable(node: &str, pod: &str, error: String) -> NodeRow {
    let error = printable(&error);
    NodeRow { node: node.into(), pod: pod.into(), profiles: BTreeMap::new(), not_ready: Vec::new(), error: Some(error) }
}

/// True when the cell names a version the kernel enforces (not failed or refused).
fn enforced(c: &Cell) -> bool {
    c.digest != NONE && c.state != "failed" && c.state != "refused"
}

/// Sorts the rows, finds each profile's majority digest and marks the cells that differ from it.
pub fn build(mut nodes: Vec<NodeRow>) -> Matrix {
    nodes.sort_by(|a, b| (&a.node, &a.pod).cmp(&(&b.node, &b.pod)));
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for cell in nodes.iter().flat_map(|n| &n.profiles) {
        if enforced(cell.1) {
            *counts.entry(cell.0.clone()).or_default().entry(cell.1.digest.clone()).or_default() += 1;
        }
    }
    let versions: BTreeMap<String, Versions> = counts
        .into_iter()
        .map(|(name, nodes)| {
            // max_by_key keeps the last maximum: iterate backwards so the smallest digest wins a tie.
            let majority = nodes.iter().rev().max_by_key(|(_, n)| **n).map(|(d, _)| d.clone()).unwrap_or_default();
            (name, Versions { majority, nodes })
        })
        .collect();
    for n in &mut nodes {
        for (name, cell) in &mut n.profiles {
            cell.majority = !enforced(cell) || versions.get(name).is_some_and(|v| v.majority == cell.digest);
        }
    }
    Matrix { nodes, versions }
}

/// The plain-text table: one line per node, one column per profile (`state mode digest`, `*` after a
/// digest most nodes do not enforce, `-` where the node has no such profile), the files that keep the
/// node unready, then a legend.
pub fn render(m: &Matrix) -> String {
    let names: Vec<&String> = {
        let mut v: Vec<&String> = m.nodes.iter().flat_map(|n| n.profiles.keys()).collect();
        v.sort();
        v.dedup();
        v
    };
    let header = ["NODE", "POD"].into_iter().chain(names.iter().map(|s| s.as_str())).chain(["NOT READY"]);
    let mut rows: Vec<Vec<String>> = vec![header.map(String::from).collect()];
    for n in &m.nodes {
        let mut r = vec![n.node.clone(), n.pod.clone()];
        match &n.error {
            Some(e) => r.push(format!("error: {e}")),
            None => r.extend(names.iter().map(|name| match n.profiles.get(*name) {
                Some(c) => format!("{} {} {}{}", c.state, c.mode, c.digest, if c.majority { "" } else { "*" }),
                None => "-".into(),
            })),
        }
        if n.error.is_none() {
            r.push(if n.not_ready.is_empty() { "-".into() } else { n.not_ready.join(", ") });
        }
        rows.push(r);
    }
    let mut out = table(&rows);
    let skewed: Vec<_> = m.versions.iter().filter(|(_, v)| v.nodes.len() > 1).collect();
    if !skewed.is_empty() {
        out.push_str("\n* not the version most nodes enforce:\n");
        for (name, v) in skewed {
            let total: usize = v.nodes.values().sum();
            let _ = writeln!(out, "  {name}: {} on {} of {total} nodes", v.majority, v.nodes[&v.majority]);
        }
    }
    out
}

/// Columns padded to their widest cell (the last cell of a row is never padded).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|i| rows.iter().filter(|r| r.len() > i + 1).map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let last = r.len().saturating_sub(1);
        for (i, cell) in r.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> ProfilesAnswer {
        serde_json::from_str(json).unwrap()
    }

    fn p(name: &str, state: &str, mode: Option<&str>, sha: Option<&str>) -> String {
        let q = |o: Option<&str>| o.map_or("null".to_string(), |s| format!("\"{s}\""));
        format!(
            r#"{{"name":"{name}","state":"{state}","mode":{},"sha256":{},"file":"{name}","loaded_at":null,"error":null}}"#,
            q(mode),
            q(sha)
        )
    }

    fn node(name: &str, profiles: &[String]) -> NodeRow {
        let failed: Vec<String> = profiles
            .iter()
            .filter(|p| p.contains(r#""state":"failed""#))
            .map(|p| p.split('"').nth(3).map(|n| format!(r#"{{"file":"{n}","state":"failed"}}"#)).unwrap())
            .collect();
        let json = format!(r#"{{"profiles":[{}],"files":[{}]}}"#, profiles.join(","), failed.join(","));
        row(name, &format!("agent-{name}"), answer(&json), &[])
    }

    #[test]
    fn the_minority_digest_is_starred_and_failed_profiles_are_no_version() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let m = build(vec![
            node("n3", &[p("api", "stale", Some("enforce"), Some(&b)), p("web", "failed", None, None)]),
            node("n1", &[p("api", "loaded", Some("enforce"), Some(&a)), p("docker-default", "foreign", Some("enforce"), None)]),
            node("n2", &[p("api", "loaded", Some("enforce"), Some(&a)), p("web", "loaded", Some("complain"), Some(&b))]),
            unreachable("n4", "agent-n4", "connection refused".into()),
        ]);
        assert_eq!(m.versions["api"].majority, "aaaaaaaaaaaa");
        assert_eq!(m.versions["api"].nodes.values().sum::<usize>(), 3);
        assert_eq!(
            render(&m),
            "NODE  POD       api                          web                           NOT READY\n\
             n1    agent-n1  loaded enforce aaaaaaaaaaaa  -                             -\n\
             n2    agent-n2  loaded enforce aaaaaaaaaaaa  loaded complain bbbbbbbbbbbb  -\n\
             n3    agent-n3  stale enforce bbbbbbbbbbbb*  failed none none              web (failed)\n\
             n4    agent-n4  error: connection refused\n\
             \n* not the version most nodes enforce:\n  api: aaaaaaaaaaaa on 2 of 3 nodes\n"
        );
    }

    #[test]
    fn a_tie_picks_the_smallest_digest_and_only_filters_profiles() {
        let m = build(vec![
            node("n1", &[p("api", "loaded", Some("enforce"), Some(&"b".repeat(64)))]),
            node("n2", &[p("api", "loaded", Some("enforce"), Some(&"a".repeat(64)))]),
        ]);
        assert_eq!(m.versions["api"].majority, "aaaaaaaaaaaa");
        assert!(!m.nodes[0].profiles["api"].majority && m.nodes[1].profiles["api"].majority);
        assert_eq!(unreachable("n", "p", "a\x1b[2Jb\n".into()).error.as_deref(), Some("a?[2Jb?"));
        let only = row(
            "n",
            "p",
            answer(&format!(r#"{{"profiles":[{},{}]}}"#, p("a", "loaded", None, None), p("b", "loaded", None, None))),
            &["b".into()],
        );
        assert_eq!(only.profiles.keys().collect::<Vec<_>>(), vec!["b"]);
    }
}
