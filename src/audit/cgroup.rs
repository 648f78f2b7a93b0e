//! Which container and pod a process belongs to, from `/proc/<pid>/cgroup`.
//!
//! The pid in an audit record is in the host's (initial) pid namespace, so the proc root must be the
//! host's `/proc` (a DaemonSet needs `hostPID: true` or the host's `/proc` mounted). A process that has
//! already exited — common for denials, which often kill the operation — simply resolves to nothing.
//!
//! Layouts understood (cgroup v1 and v2, systemd and cgroupfs drivers):
//!
//! ```text
//! 0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//! 0::/kubepods.slice/kubepods-pod<uid>.slice/crio-<id>.scope
//! 0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope
//! 12:memory:/kubepods/burstable/pod<uid>/<id>
//! 0::/system.slice/docker-<id>.scope        4:pids:/docker/<id>        0::/machine.slice/libpod-<id>.scope
//! ```

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a process runs, as far as its cgroup path tells.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerRef {
    /// The container ID (64 hex digits), when the process is in a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The Kubernetes pod UID (with dashes), when the process is in a pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The runtime the path names: `containerd`, `cri-o`, `docker`, `podman`; absent for bare v1 paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

impl ContainerRef {
    /// The first 12 digits of the container ID, as `docker ps` and `crictl ps` show it.
    pub fn short_id(&self) -> Option<&str> {
        self.container_id.as_deref().map(|id| &id[..id.len().min(12)])
    }
}

/// Parses the content of `/proc/<pid>/cgroup`. Prefers the cgroup v2 line (`0::`), then any v1 line
/// that yields something. `None` when no line names a container or pod.
pub fn parse_proc_cgroup(content: &str) -> Option<ContainerRef> {
    let mut best: Option<ContainerRef> = None;
    for line in content.lines() {
        // hierarchy-ID:controller-list:cgroup-path; the path may itself contain ':'.
        let mut parts = line.splitn(3, ':');
        let (Some(hier), Some(_controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let Some(found) = parse_cgroup_path(path) else { continue };
        let complete = found.container_id.is_some() && found.pod_uid.is_some();
        if hier == "0" || complete {
            return Some(found);
        }
        if best.as_ref().is_none_or(|b| score(&found) > score(b)) {
            best = Some(found);
        }
    }
    best
}

fn score(r: &ContainerRef) -> u8 {
    u8::from(r.container_id.is_some()) + u8::from(r.pod_uid.is_some())
}

/// Parses one cgroup path (the third field of a `/proc/<pid>/cgroup` line).
pub fn parse_cgroup_path(path: &str) -> Option<ContainerRef> {
    let mut out = ContainerRef::default();
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        if let Some(uid) = pod_uid_of(comp) {
            out.pod_uid = Some(uid);
        } else if let Some((id, runtime)) = container_id_of(comp) {
            // The innermost container wins (a nested cgroup under the scope keeps the same ID).
            out.container_id = Some(id.to_owned());
            out.runtime = runtime.map(str::to_owned);
        }
    }
    (out.container_id.is_some() || out.pod_uid.is_some()).then_some(out)
}

/// `kubepods-burstable-pod<uid_with_underscores>.slice` or `pod<uid>` → the UID with dashes.
fn pod_uid_of(comp: &str) -> Option<String> {
    let stem = comp.strip_suffix(".slice").unwrap_or(comp);
    let raw = if let Some(r) = stem.strip_prefix("pod") {
        r
    } else {
        // systemd slice names nest with '-': take what follows the last "-pod".
        let at = stem.rfind("-pod")?;
        if !stem.starts_with("kubepods") && !stem.starts_with("kubelet-kubepods") {
            return None;
        }
        &stem[at + 4..]
    };
    // systemd escapes '-' in a unit name as '_' — the pod UID's dashes come back as underscores.
    let uid: String = raw.chars().map(|c| if c == '_' { '-' } else { c }).collect();
    is_pod_uid(&uid).then_some(uid)
}

/// A UUID (8-4-4-4-12 hex), or the 32 hex digits a static pod's UID is (a hash of its manifest).
fn is_pod_uid(s: &str) -> bool {
    let hex_or_dash = s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let digits = s.bytes().filter(u8::is_ascii_hexdigit).count();
    hex_or_dash && digits == 32 && (s.len() == 32 || s.len() == 36)
}

/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`, `libpod-<id>.scope`, or a bare
/// 64-hex component (cgroupfs driver). The conmon monitor's scope (`crio-conmon-<id>`) is not the
/// container's process.
fn container_id_of(comp: &str) -> Option<(&str, Option<&'static str>)> {
    let stem = comp.strip_suffix(".scope").unwrap_or(comp);
    const PREFIXES: &[(&str, &str)] = &[
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("docker-", "docker"),
        ("libpod-", "podman"),
        ("containerd-", "containerd"),
    ];
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = stem.strip_prefix(prefix) {
            return is_container_id(id).then_some((id, Some(*runtime)));
        }
    }
    is_container_id(stem).then_some((stem, None))
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads and parses `<proc_root>/<pid>/cgroup`. Any I/O error (the process is gone, no permission) gives
/// `None`: attribution is best-effort.
pub fn resolve_pid(proc_root: &Path, pid: u32) -> Option<ContainerRef> {
    let content = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    parse_proc_cgroup(&content)
}

/// A small cache in front of [`resolve_pid`]: a denial storm from one process reads its cgroup file
/// once per `ttl`, not thousands of times a second. Bounded: the oldest entry goes first.
#[derive(Debug)]
pub struct ContainerResolver {
    proc_root: PathBuf,
    ttl: Duration,
    capacity: usize,
    cache: HashMap<u32, (Instant, Option<ContainerRef>)>,
    order: VecDeque<u32>,
}

impl ContainerResolver {
    /// A resolver reading `<proc_root>/<pid>/cgroup`.
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        Self::with_limits(proc_root, crate::defaults::CONTAINER_CACHE_CAPACITY, crate::defaults::CONTAINER_CACHE_TTL)
    }

    /// A resolver with explicit cache size and lifetime.
    pub fn with_limits(proc_root: impl Into<PathBuf>, capacity: usize, ttl: Duration) -> Self {
        ContainerResolver {
            proc_root: proc_root.into(),
            ttl,
            capacity: capacity.max(1),
            cache: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The container of `pid`, cached.
    pub fn resolve(&mut self, pid: u32, now: Instant) -> Option<ContainerRef> {
        match self.cache.get(&pid) {
            Some((at, found)) if now.saturating_duration_since(*at) < self.ttl => return found.clone(),
            _ => {}
        }
        let found = resolve_pid(&self.proc_root, pid);
        if self.cache.insert(pid, (now, found.clone())).is_none() {
            self.order.push_back(pid);
        }
        while self.cache.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.cache.remove(&old);
                }
                None => break,
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";
    const UID: &str = "5e5f2ab3-1c2d-4e5f-8a9b-0c1d2e3f4a5b";

    fn r(id: Option<&str>, uid: Option<&str>, rt: Option<&str>) -> Option<ContainerRef> {
        Some(ContainerRef { container_id: id.map(Into::into), pod_uid: uid.map(Into::into), runtime: rt.map(Into::into) })
    }

    #[test]
    fn table() {
        let uid_ = UID.replace('-', "_");
        let rows: Vec<(String, Option<ContainerRef>)> = vec![
            (
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
                ),
                r(Some(ID), Some(UID), Some("containerd")),
            ),
            (format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/crio-{ID}.scope\n"), r(Some(ID), Some(UID), Some("cri-o"))),
            (
                format!(
                    "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
                ),
                r(Some(ID), Some(UID), Some("containerd")),
            ),
            // cgroup v1, cgroupfs driver: several lines, all the same.
            (
                format!(
                    "12:pids:/kubepods/burstable/pod{UID}/{ID}\n11:memory:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n"
                ),
                r(Some(ID), Some(UID), None),
            ),
            // cgroupfs driver on v2.
            (format!("0::/kubepods/besteffort/pod{UID}/{ID}\n"), r(Some(ID), Some(UID), None)),
            // Static pod: 32-hex UID.
            (
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0123456789abcdef0123456789abcdef.slice/cri-containerd-{ID}.scope\n"
                ),
                r(Some(ID), Some("0123456789abcdef0123456789abcdef"), Some("containerd")),
            ),
            (format!("0::/system.slice/docker-{ID}.scope\n"), r(Some(ID), None, Some("docker"))),
            (format!("4:pids:/docker/{ID}\n"), r(Some(ID), None, None)),
            (format!("0::/machine.slice/libpod-{ID}.scope/container\n"), r(Some(ID), None, Some("podman"))),
            // A nested cgroup inside the container's scope (systemd in a container).
            (format!("0::/system.slice/docker-{ID}.scope/init.scope\n"), r(Some(ID), None, Some("docker"))),
            // conmon is not the container.
            (format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/crio-conmon-{ID}.scope\n"), r(None, Some(UID), None)),
            // Host processes and private cgroup namespaces.
            ("0::/system.slice/sshd.service\n".into(), None),
            ("0::/user.slice/user-1000.slice/session-3.scope\n".into(), None),
            ("0::/\n".into(), None),
            ("".into(), None),
            ("garbage without colons\n".into(), None),
            // Look-alikes that must not match.
            ("0::/podcast.slice/docker-abc.scope\n".into(), None),
            ("0::/system.slice/mypod-1234.slice\n".into(), None),
        ];
        for (content, want) in rows {
            assert_eq!(parse_proc_cgroup(&content), want, "{content}");
        }
    }

    #[test]
    fn v1_prefers_the_most_complete_line() {
        let content = format!("5:cpuset:/\n4:pids:/docker/{ID}\n");
        assert_eq!(parse_proc_cgroup(&content), r(Some(ID), None, None));
    }

    #[test]
    fn resolves_from_a_proc_root_with_cache() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("42")).unwrap();
        std::fs::write(dir.path().join("42/cgroup"), format!("0::/kubepods/pod{UID}/{ID}\n")).unwrap();
        assert_eq!(resolve_pid(dir.path(), 42).and_then(|c| c.pod_uid), Some(UID.to_owned()));
        assert_eq!(resolve_pid(dir.path(), 43), None);

        let mut res = ContainerResolver::with_limits(dir.path(), 2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(res.resolve(42, t0).and_then(|c| c.short_id().map(str::to_owned)).as_deref(), Some(&ID[..12]));
        // Cached: a change on disk is not seen before the TTL...
        std::fs::write(dir.path().join("42/cgroup"), "0::/\n").unwrap();
        assert!(res.resolve(42, t0 + Duration::from_secs(1)).is_some());
        // ...and is seen after it.
        assert!(res.resolve(42, t0 + Duration::from_secs(11)).is_none());
        // Bounded.
        for pid in 100..110 {
            res.resolve(pid, t0);
        }
        assert!(res.cache.len() <= 2 && res.order.len() <= 3);
    }

    proptest::proptest! {
        /// /proc/<pid>/cgroup content is host-controlled but cgroup names under it can be chosen by
        /// containers with cgroup delegation: parsing never panics.
        #[test]
        fn arbitrary_content_never_panics(
            s in proptest::prelude::any::<String>(),
            parts in proptest::collection::vec(
                proptest::prop_oneof!["0::", "1:pids:", "/", "\n", "pod", "kubepods-", "-pod", "cri-containerd-", "docker-", ".scope", ".slice", "_", "[0-9a-f]{1,66}"],
                0..24,
            ),
        ) {
            let _ = parse_proc_cgroup(&s);
            let _ = parse_proc_cgroup(&parts.concat());
        }
    }
}
