//! The kubelet's ConfigMap atomic update (new `..<timestamp>` dir, `..data_tmp` symlink renamed
//! over `..data`, old dir removed), driven many times in a row against the running agent; after
//! each update settles, the fake kernel must hold exactly the final content.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::*;

/// A profile file for key `key` defining `name`, with a version rule so edits change content.
fn content(name: &str, version: u64, extra_profile: bool) -> String {
    let mut s = profile(name, &[&format!("/srv/{name}/v{version} r"), "/etc/ld.so.cache r"]);
    if extra_profile {
        s.push_str(&format!("profile {name}-helper {{\n  ^hat {{\n    /tmp/{version} rw,\n  }}\n}}\n"));
    }
    s
}

/// Waits until the kernel's managed set equals `files` (plus the foreign profiles), /readyz is 200
/// and /profiles reports exactly these files as loaded.
fn settle(agent: &mut Agent, env: &TestEnv, files: &BTreeMap<String, String>, foreign: &BTreeMap<String, String>, step: &str) {
    let (mut want_listing, want_shas) = expected_kernel(files);
    want_listing.extend(foreign.clone());
    let what = format!("step {step}: kernel == content");
    wait_for(DEADLINE, &what, || {
        let got = env.kernel.listing();
        if got != want_listing {
            return Err(format!("listing {got:?}\n want {want_listing:?}"));
        }
        let mut shas = env.kernel.sha1s();
        shas.retain(|n, _| !foreign.contains_key(n));
        if shas != want_shas {
            return Err(format!("sha1s {shas:?}\n want {want_shas:?}"));
        }
        let v = agent.profiles();
        let reported: BTreeSet<String> = v["files"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["file"].as_str().map(|s| s.rsplit('/').next().unwrap().to_string())).collect())
            .unwrap_or_default();
        let keys: BTreeSet<String> = files.keys().cloned().collect();
        if reported != keys {
            return Err(format!("/profiles files {reported:?} want {keys:?}"));
        }
        if let Some(f) = v["files"].as_array().unwrap().iter().find(|f| f["state"] != "loaded") {
            return Err(format!("file not loaded: {f}"));
        }
        match agent.get("/readyz") {
            Ok((200, _)) => Ok(()),
            Ok((st, b)) => Err(format!("readyz {st} {b}")),
            Err(e) => Err(e.to_string()),
        }
    });
}

#[test]
fn kubelet_atomic_updates_converge_every_time() {
    let seed = std::env::var("CONFIGMAP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("configmap test seed {seed} (rerun with CONFIGMAP_SEED={seed})");
    let mut rng = Rng::new(seed);

    let env = TestEnv::new();
    env.kernel.seed_foreign("docker-default", "enforce");
    let foreign: BTreeMap<String, String> = [("docker-default".to_string(), "enforce".to_string())].into();

    // key -> (profile name, version, with a second profile)
    let mut model: BTreeMap<String, (String, u64, bool)> = BTreeMap::new();
    for i in 0..6 {
        model.insert(format!("k{i}"), (format!("p{i}"), 0, i % 3 == 0));
    }
    let render = |m: &BTreeMap<String, (String, u64, bool)>| -> BTreeMap<String, String> {
        m.iter().map(|(k, (n, v, x))| (k.clone(), content(n, *v, *x))).collect()
    };
    let mut files = render(&model);
    let mut cm = ConfigMapDir::create(env.profiles.clone(), &files);
    let mut agent = env.spawn_agent(&["--unload-removed"]);
    settle(&mut agent, &env, &files, &foreign, "initial");

    let mut next_key = 6;
    let start = Instant::now();
    let mut swaps = 0;
    for step in 0..40 {
        // A burst of back-to-back updates every few steps, to exercise coalescing.
        let burst = if step % 7 == 3 { 3 } else { 1 };
        for _ in 0..burst {
            let keys: Vec<String> = model.keys().cloned().collect();
            match rng.below(10) {
                // Edit one file (most common).
                0..=5 => {
                    let k = &keys[rng.below(keys.len())];
                    model.get_mut(k).unwrap().1 += 1;
                }
                // Add a file.
                6 => {
                    model.insert(format!("k{next_key}"), (format!("p{next_key}"), 0, rng.below(2) == 0));
                    next_key += 1;
                }
                // Remove a file (keep at least two).
                7 if keys.len() > 2 => {
                    model.remove(&keys[rng.below(keys.len())]);
                }
                // Rename a key: the same profile moves to another file.
                8 => {
                    let k = keys[rng.below(keys.len())].clone();
                    let entry = model.remove(&k).unwrap();
                    model.insert(format!("k{next_key}"), entry);
                    next_key += 1;
                }
                // Edit every file at once.
                _ => {
                    for e in model.values_mut() {
                        e.1 += 1;
                    }
                }
            }
            files = render(&model);
            cm.update(&files);
            swaps += 1;
        }
        settle(&mut agent, &env, &files, &foreign, &format!("{step} (seed {seed})"));
    }
    eprintln!("{swaps} ConfigMap swaps converged in {:?}", start.elapsed());
    assert_eq!(env.kernel.sha1("docker-default").as_deref(), Some("f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0"));
    agent.stop();
}

#[test]
fn configmap_writer_matches_the_kubelet_layout() {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path().join("cm");
    let mut files: BTreeMap<String, String> = [("a".to_string(), "A1".to_string()), ("b".to_string(), "B1".to_string())].into();
    let mut cm = ConfigMapDir::create(dir.clone(), &files);
    let layout = |dir: &std::path::Path| -> (Vec<String>, String) {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        let data = std::fs::read_link(dir.join("..data")).unwrap().to_string_lossy().into_owned();
        (names, data)
    };
    let (names, data) = layout(&dir);
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(data.starts_with("..") && !data.contains('/'), "relative ..data target: {data}");
    assert!(names.contains(&data));
    let ts = data.trim_start_matches("..");
    assert_eq!(ts.len(), "2026_11_28_03_07_12.123456789".len(), "{ts}");
    assert_eq!(std::fs::read_link(dir.join("a")).unwrap(), std::path::Path::new("..data/a"));
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "A1");

    files.remove("a");
    files.insert("b".to_string(), "B2".to_string());
    files.insert("c".to_string(), "C1".to_string());
    cm.update(&files);
    let (names2, data2) = layout(&dir);
    assert_ne!(data, data2);
    assert_eq!(names2, {
        let mut v = vec!["..data".to_string(), data2.clone(), "b".to_string(), "c".to_string()];
        v.sort();
        v
    });
    assert_eq!(std::fs::read_to_string(dir.join("b")).unwrap(), "B2");
    assert_eq!(std::fs::read_to_string(dir.join("c")).unwrap(), "C1");
    assert!(!dir.join(&data).exists(), "old timestamped dir removed");
}

#[test]
fn slow_kubelet_updates_seen_halfway_still_converge() {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("slow configmap seed {seed}");
    let mut rng = Rng::new(seed);
    let env = TestEnv::new();
    let foreign = BTreeMap::new();
    let mut model: BTreeMap<String, u64> = (0..4).map(|i| (format!("k{i}"), 0)).collect();
    let render = |m: &BTreeMap<String, u64>| -> BTreeMap<String, String> {
        m.iter().map(|(k, v)| (k.clone(), content(&format!("p-{k}"), *v, false))).collect()
    };
    let mut files = render(&model);
    let mut cm = ConfigMapDir::create(env.profiles.clone(), &files);
    let mut agent = env.spawn_agent(&["--unload-removed", "--debounce", "20ms"]);
    settle(&mut agent, &env, &files, &foreign, "initial");
    let mut next = 4;
    for step in 0..12 {
        let keys: Vec<String> = model.keys().cloned().collect();
        match rng.below(4) {
            0 if keys.len() > 2 => {
                model.remove(&keys[rng.below(keys.len())]);
            }
            1 => {
                model.insert(format!("k{next}"), 0);
                next += 1;
            }
            _ => *model.get_mut(&keys[rng.below(keys.len())]).unwrap() += 1,
        }
        files = render(&model);
        // Pauses around the agent's debounce window, so it rescans mid-update.
        cm.update_paced(&files, std::time::Duration::from_millis(10 + rng.below(40) as u64));
        settle(&mut agent, &env, &files, &foreign, &format!("slow {step} (seed {seed})"));
    }
}
