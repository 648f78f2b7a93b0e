//! Soak: 1,000 kubelet ConfigMap swaps (the faithful `..data` swap of tests/common) with random
//! valid, broken and foreign-named content against the running agent, the fake kernel and the
//! fake parser. Every 100 swaps, and at the end, the agent must have converged to the last
//! content with nothing lost; its resident memory must stay flat. Prints the VmRSS figures.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;

const SWAPS: usize = 1000;
const KEYS: usize = 8;
/// What the agent's resident memory may grow between the first checkpoint and the last: a leak
/// of a few hundred bytes per swap shows up well past this.
const RSS_SLACK_KB: u64 = 16 * 1024;

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Valid,
    Broken,
    Foreign,
}

/// The file content of `key` at swap `n`.
fn content(kind: &Kind, key: usize, n: usize, alt: bool) -> String {
    let name = if alt { format!("soak-k{key}-alt") } else { format!("soak-k{key}") };
    match kind {
        Kind::Valid => profile(&name, &[&format!("/srv/{key}/v{n} r"), "/etc/ld.so.cache r"]),
        // No closing brace: the parser rejects it.
        Kind::Broken => format!("profile {name} {{\n  /srv/{key}/v{n} r,\n"),
        Kind::Foreign => profile("docker-default", &[&format!("/var/lib/docker/{n} r")]),
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Waits until the agent shows exactly `model`: valid files loaded with their content in the
/// kernel, broken ones failed (their last good policy may stay), foreign-named ones refused,
/// the foreign profile untouched, and nothing of a removed file left.
fn converged(agent: &mut Agent, env: &TestEnv, model: &BTreeMap<String, (Kind, String)>, foreign_sha: &Option<String>) {
    let valid: BTreeMap<String, String> =
        model.iter().filter(|(_, (k, _))| *k == Kind::Valid).map(|(f, (_, c))| (f.clone(), c.clone())).collect();
    let (_, want_shas) = expected_kernel(&valid);
    wait_for(DEADLINE, "the agent to converge to the last content", || {
        let shas = env.kernel.sha1s();
        for (name, sha) in &want_shas {
            if shas.get(name) != Some(sha) {
                return Err(format!("{name}: kernel {:?} want {sha}", shas.get(name)));
            }
        }
        if env.kernel.sha1("docker-default") != *foreign_sha {
            return Err("the foreign profile was touched".into());
        }
        // Names a file still present may hold (a broken or refused file keeps its last good policy).
        let kept: BTreeSet<String> = model.keys().flat_map(|k| [format!("soak-{k}"), format!("soak-{k}-alt")]).collect();
        if let Some(extra) = env.kernel.names().into_iter().find(|n| n != "docker-default" && !kept.contains(n.as_str())) {
            return Err(format!("{extra} is loaded but its file is gone"));
        }
        let v = agent.profiles();
        let files = v["files"].as_array().cloned().unwrap_or_default();
        if files.len() != model.len() {
            return Err(format!("/profiles has {} files, want {}", files.len(), model.len()));
        }
        for (key, (kind, _)) in model {
            let f = file_entry(&v, key).ok_or_else(|| format!("{key} missing"))?;
            let ok = match kind {
                Kind::Valid => f["state"] == "loaded",
                Kind::Broken => f["state"] == "failed" || f["state"] == "stale",
                Kind::Foreign => f["state"] == "refused",
            };
            if !ok {
                return Err(format!("{key} ({kind:?}): {f}"));
            }
        }
        Ok(())
    });
}

#[test]
fn thousand_configmap_swaps_converge_with_flat_memory() {
    let seed = std::env::var("SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(13);
    eprintln!("soak seed {seed} (rerun with SOAK_SEED={seed})");
    let mut rng = Rng::new(seed);
    let env = TestEnv::new();
    env.kernel.seed_foreign("docker-default", "enforce");
    let foreign_sha = env.kernel.sha1("docker-default");

    let mut model: BTreeMap<String, (Kind, String)> = BTreeMap::new();
    for key in 0..KEYS {
        model.insert(format!("k{key}"), (Kind::Valid, content(&Kind::Valid, key, 0, false)));
    }
    let render = |m: &BTreeMap<String, (Kind, String)>| m.iter().map(|(k, (_, c))| (k.clone(), c.clone())).collect();
    let mut cm = ConfigMapDir::create(env.profiles.clone(), &render(&model));
    let mut agent = env.spawn_agent(&["--unload-removed"]);
    let pid = agent.child.id();
    converged(&mut agent, &env, &model, &foreign_sha);

    let started = Instant::now();
    let mut rss = Vec::new();
    for n in 1..=SWAPS {
        for key in 0..KEYS {
            let k = format!("k{key}");
            match rng.below(20) {
                0 => {
                    model.remove(&k);
                }
                1..=10 if model.contains_key(&k) => {}
                roll => {
                    let kind = match roll % 7 {
                        0 => Kind::Broken,
                        1 => Kind::Foreign,
                        _ => Kind::Valid,
                    };
                    let text = content(&kind, key, n, rng.below(4) == 0);
                    model.insert(k, (kind, text));
                }
            }
        }
        cm.update(&render(&model));
        std::thread::sleep(Duration::from_millis(2));
        if n % 100 == 0 {
            converged(&mut agent, &env, &model, &foreign_sha);
            agent.assert_alive();
            rss.push((n, rss_kb(pid)));
        }
    }
    let elapsed = started.elapsed();
    let figures: Vec<String> = rss.iter().map(|(n, kb)| format!("{n}:{kb}")).collect();
    println!("soak: {SWAPS} swaps in {:.1} s; agent VmRSS kB after swap n: {}", elapsed.as_secs_f64(), figures.join(" "));
    let first = rss[0].1;
    let last = rss.last().unwrap().1;
    assert!(last <= first + RSS_SLACK_KB, "VmRSS grew from {first} kB to {last} kB: {figures:?}");
    agent.stop();
}
