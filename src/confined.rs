//! Which profiles still confine a running process, from `/proc/<pid>/attr/current`.
//!
//! Removing a profile sets the tasks it confines unconfined, so `--unload-removed` must
//! not remove a profile while this scan finds it in use.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::listing::top_level;

/// The top-level profile names in one `attr/current` value: `name (mode)` for a single
/// profile, `a//&b (mode)` for a stack, `unconfined` for none.
pub fn parse_label(label: &str) -> Vec<String> {
    let label = label.trim_end_matches(['\n', '\0']).trim();
    let name = match label.rsplit_once(" (") {
        Some((name, mode)) if mode.ends_with(')') => name,
        _ => label,
    };
    if name.is_empty() || name == "unconfined" {
        return Vec::new();
    }
    name.split("//&").map(|part| top_level(part.trim_start_matches(':')).to_string()).filter(|n| n != "unconfined").collect()
}

/// Scans every process under `proc_dir` and returns the top-level names that confine at
/// least one of them. Processes that exit during the scan are skipped.
pub fn in_use(proc_dir: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(proc_dir)?.flatten() {
        let file_name = entry.file_name();
        if !file_name.to_str().is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        // Newer kernels expose the AppArmor label under attr/apparmor/; attr/current is
        // the LSM-shared file that older kernels have.
        let dir = entry.path().join("attr");
        let label = fs::read_to_string(dir.join("apparmor").join("current")).or_else(|_| fs::read_to_string(dir.join("current")));
        if let Ok(label) = label {
            names.extend(parse_label(&label));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let cases: &[(&str, &[&str])] = &[
            ("unconfined\n", &[]),
            ("payment-api (enforce)\n", &["payment-api"]),
            ("/usr/sbin/nginx//HANDLING (complain)\n", &["/usr/sbin/nginx"]),
            ("my app (enforce)", &["my app"]),
            ("a//&b (enforce)\n", &["a", "b"]),
            ("a//&:ns:b (mixed)\n", &["a", "ns:b"]),
            ("", &[]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_label(input), want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{input:?}");
        }
    }

    #[test]
    fn scans_a_proc_tree() {
        let d = tempfile::tempdir().unwrap();
        for (pid, label) in [("1", "unconfined\n"), ("42", "payment-api (enforce)\n"), ("77", "nginx-web (complain)\n")] {
            fs::create_dir_all(d.path().join(pid).join("attr")).unwrap();
            fs::write(d.path().join(pid).join("attr/current"), label).unwrap();
        }
        fs::create_dir_all(d.path().join("self/attr")).unwrap();
        fs::write(d.path().join("self/attr/current"), "ignored (enforce)\n").unwrap();
        fs::create_dir_all(d.path().join("99/attr/apparmor")).unwrap();
        fs::write(d.path().join("99/attr/apparmor/current"), "newer (enforce)\n").unwrap();
        let got = in_use(d.path()).unwrap();
        assert_eq!(got, BTreeSet::from(["payment-api".to_string(), "nginx-web".to_string(), "newer".to_string()]));
    }
}
