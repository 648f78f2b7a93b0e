//! Issue 15 end to end with the real binary, the fake kernel and the fake parser: the agent's Node
//! Feature Discovery file, `clear-node-features`, and `admission-policy`.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

const ALL: &str = "apparmor.feature.node.kubernetes.io/all-profiles-loaded";
const P: &str = "profile.apparmor.feature.node.kubernetes.io";

fn labels(file: &std::path::Path) -> Vec<String> {
    fs::read_to_string(file).map(|t| t.lines().filter(|l| !l.starts_with('#')).map(String::from).collect()).unwrap_or_default()
}

#[test]
fn the_agent_labels_what_it_loaded_and_removes_the_file_when_nothing_is_left() {
    let env = TestEnv::new();
    let nfd = env.tmp.path().join("features.d");
    fs::create_dir(&nfd).unwrap();
    let file = nfd.join("apparmor-loader");
    let f = file.to_str().unwrap();
    env.write("alpha", &profile("alpha", &["/alpha r"]));
    env.write("beta", &profile("/usr/bin/beta", &["/beta r"]));
    let mut agent = env.spawn_agent(&["--node-features-file", f, "--unload-removed", "--resync-interval", "1s"]);
    // printf %s /usr/bin/beta | sha256sum | cut -c1-32
    let hashed = "sha256-e1a64efe2468454f074ab2adc844767d";
    let want = vec![format!("{ALL}=true"), format!("{P}/alpha=enforce"), format!("{P}/{hashed}=enforce")];
    wait_until(Duration::from_secs(20), "the feature file lists both profiles", || labels(&file) == want);
    assert!(env.kernel.has("alpha") && env.kernel.has("/usr/bin/beta"));
    assert!(agent.logs().contains("labelled by its hash"), "{}", agent.logs());

    env.write("broken", "profile broken {\n  /x r,\n");
    wait_until(Duration::from_secs(20), "the summary turns false", || labels(&file).contains(&format!("{ALL}=false")));
    assert_eq!(labels(&file)[1..], want[1..], "what is loaded keeps its labels");

    env.remove("alpha");
    env.remove("beta");
    env.remove("broken");
    wait_until(Duration::from_secs(20), "the file goes once nothing is managed", || !file.exists());
    assert!(!env.kernel.has("alpha"));
    assert_eq!(fs::read_dir(&nfd).unwrap().count(), 0, "no temp file left behind");
    agent.assert_alive();

    fs::write(&file, format!("{ALL}=true\n")).unwrap();
    let o = env.run(&["clear-node-features", "--node-features-file", f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!file.exists());
}

#[test]
fn admission_policy_lists_the_compiled_names_and_refuses_a_broken_file() {
    let env = TestEnv::new();
    env.write("alpha", &profile("alpha", &["/alpha r"]));
    // The file's name is not a profile name: the names come from the compiled policy.
    env.write("two", "profile beta {\n}\nprofile beta2 {\n}\n");
    let dir = env.profiles.to_str().unwrap();
    let o = env.run(&["admission-policy", "--profiles", dir]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("\n      [\"alpha\", \"beta\", \"beta2\"]\n"), "{text}");
    assert!(text.contains("kind: ValidatingAdmissionPolicyBinding"));

    env.write("broken", "profile broken {\n  /x r,\n");
    let o = env.run(&["admission-policy", "--profiles", dir]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(o.stdout.is_empty(), "no policy is printed from a directory it cannot name");
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken"), "{}", show(&o));
}
