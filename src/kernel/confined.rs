//! Which profiles still confine a running process, from `/proc/<pid>/attr/current`.
//!
//! Removing a profile sets the tasks it confines unconfined, so `--unload-removed` must
//! not remove a profile while this scan finds it in use.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;

use crate::kernel::listing::top_level;

/// The top-level profile names in one `attr/current` value: `name (mode)` for a single
/// profile, `a//&b (mode)` for a stack, a bare `unconfined` for none. A profile may itself be
/// named `unconfined`; it then carries a mode like any other (`unconfined (enforce)`).
pub fn parse_label(label: &str) -> Vec<String> {
    label_profiles(label).into_iter().map(|name| top_level(&name).to_string()).collect()
}

/// The profiles of one label with their full names (`web//admin` for a task in a hat).
pub fn label_profiles(label: &str) -> Vec<String> {
    let label = label.trim_end_matches(['\n', '\0']).trim();
    let name = match label.rsplit_once(" (") {
        Some((name, mode)) if mode.ends_with(')') => name,
        _ if label == "unconfined" => return Vec::new(),
        _ => label,
    };
    if name.is_empty() {
        return Vec::new();
    }
    name.split("//&").map(|part| part.trim_start_matches(':').to_string()).collect()
}

/// The top-level names that confine at least one task under `proc_dir` (see [`profiles_in_use`]).
pub fn in_use(proc_dir: &Path) -> io::Result<BTreeSet<String>> {
    Ok(profiles_in_use(proc_dir)?.iter().map(|name| top_level(name).to_string()).collect())
}

/// Scans every thread of every process under `proc_dir` and returns the full names of the
/// profiles (hats included) that confine at least one of them. A profile can confine a single
/// thread (`aa_change_profile` is per task), so processes are not enough. Tasks that exit
/// during the scan are skipped; a label that exists but cannot be read (no `CAP_SYS_PTRACE`,
/// say) is an error, because a guess of "unused" would let a removal unconfine a running task.
pub fn profiles_in_use(proc_dir: &Path) -> io::Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(proc_dir)?.flatten() {
        let file_name = entry.file_name();
        if !file_name.to_str().is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let tasks = match fs::read_dir(entry.path().join("task")) {
            Ok(tasks) => tasks,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(at(&entry.path().join("task"), e)),
        };
        for task in tasks.flatten() {
            if let Some(label) = task_label(&task.path().join("attr"))? {
                names.extend(label_profiles(&label));
            }
        }
    }
    Ok(names)
}

/// One task's label, `None` when the task has gone. Newer kernels expose the AppArmor label
/// under `attr/apparmor/`; `attr/current` is the LSM-shared file that older kernels have.
fn task_label(attr: &Path) -> io::Result<Option<String>> {
    let own = attr.join("apparmor").join("current");
    match fs::read_to_string(&own) {
        Ok(label) => return Ok(Some(label)),
        // Only a missing file sends us to the shared one; a refused read is an answer.
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(at(&own, e)),
        Err(_) => {}
    }
    let shared = attr.join("current");
    match fs::read_to_string(&shared) {
        Ok(label) => Ok(Some(label)),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(at(&shared, e)),
    }
}

/// The task exited between listing and reading.
fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ESRCH)
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let cases: &[(&str, &[&str])] = &[
            ("unconfined\n", &[]),
            ("unconfined (enforce)\n", &["unconfined"]),
            ("unconfined//&payment-api (enforce)\n", &["unconfined", "payment-api"]),
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

    /// Writes `<proc>/<pid>/task/<tid>/attr/<file>`.
    fn task(proc: &Path, pid: &str, tid: &str, file: &str, label: &str) {
        let path = proc.join(pid).join("task").join(tid).join("attr").join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, label).unwrap();
    }

    #[test]
    fn scans_every_thread_of_a_proc_tree() {
        let d = tempfile::tempdir().unwrap();
        task(d.path(), "1", "1", "current", "unconfined\n");
        task(d.path(), "42", "42", "current", "payment-api (enforce)\n");
        task(d.path(), "77", "77", "current", "nginx-web (complain)\n");
        // Only the second thread changed profile.
        task(d.path(), "80", "80", "current", "unconfined\n");
        task(d.path(), "80", "81", "current", "thread-only (enforce)\n");
        task(d.path(), "99", "99", "apparmor/current", "newer (enforce)\n");
        task(d.path(), "self", "1", "current", "ignored (enforce)\n");
        // A process that exited between the listing and the read.
        fs::create_dir_all(d.path().join("123")).unwrap();
        task(d.path(), "81", "81", "current", "web//admin (enforce)\n");
        let got = in_use(d.path()).unwrap();
        let want = ["payment-api", "nginx-web", "thread-only", "newer", "web"].map(String::from);
        assert_eq!(got, BTreeSet::from(want));
        let full = profiles_in_use(d.path()).unwrap();
        assert!(full.contains("web//admin") && !full.contains("web"), "{full:?}");
    }

    #[test]
    fn an_unreadable_label_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        task(d.path(), "42", "42", "current", "payment-api (enforce)\n");
        // A directory where the file should be: reading fails with something other than "gone".
        fs::create_dir_all(d.path().join("43/task/43/attr/apparmor/current")).unwrap();
        let err = in_use(d.path()).unwrap_err().to_string();
        assert!(err.contains("43/task/43/attr/apparmor/current"), "{err}");
    }
}
