//! Shared helpers for the integration tests: a fake securityfs, the fake parser's call log, a fake
//! /proc, a kubelet-faithful ConfigMap writer, a tiny HTTP client and a handle on the agent.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tempfile::TempDir;

/// The longest any test waits for a condition.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const BIN: &str = env!("CARGO_BIN_EXE_apparmor-loader");

/// `target/debug/examples/fake_apparmor_parser` (built by `cargo test` before the tests run).
pub fn fake_parser() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    let p = deps.parent().expect("profile dir").join("examples").join("fake_apparmor_parser");
    assert!(p.is_file(), "fake parser not built at {} (run through `cargo test`)", p.display());
    p
}

// ------------------------------------------------------------------------------------------------
// Waiting.

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what` and the last `Err`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut last;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}");
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// Polls `f` until true or panics after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    wait_for(timeout, what, || if f() { Ok(()) } else { Err("condition false".into()) })
}

// ------------------------------------------------------------------------------------------------
// Files.

/// Writes `content` to `path` atomically (temp dotfile + rename), like a careful editor or kubelet.
pub fn write_atomic(path: &Path, content: &[u8]) {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let tmp = path.with_file_name(format!(".{name}.tmp{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    fs::write(&tmp, content).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// A profile in the mini grammar with the given rule lines (each gets a trailing `,` if missing).
pub fn profile(name: &str, rules: &[&str]) -> String {
    let mut s = format!("# managed by the tests\nprofile {name} {{\n  #include <abstractions/base>\n");
    for r in rules {
        let r = r.trim_end();
        if r.ends_with(',') {
            s.push_str(&format!("  {r}\n"));
        } else {
            s.push_str(&format!("  {r},\n"));
        }
    }
    s.push_str("}\n");
    s
}

// ------------------------------------------------------------------------------------------------
// The fake kernel.

/// A temp dir standing in for securityfs; the AppArmor dir is `root/apparmor`.
pub struct FakeSecurityfs {
    pub root: PathBuf,
}

impl FakeSecurityfs {
    pub fn create(root: PathBuf) -> FakeSecurityfs {
        let aa = root.join("apparmor");
        fs::create_dir_all(aa.join("policy/profiles")).unwrap();
        fs::write(aa.join("profiles"), "").unwrap();
        fs::write(aa.join("revision"), "0\n").unwrap();
        FakeSecurityfs { root }
    }

    pub fn apparmor(&self) -> PathBuf {
        self.root.join("apparmor")
    }

    /// name -> mode, children included.
    pub fn listing(&self) -> BTreeMap<String, String> {
        parse_listing(&fs::read_to_string(self.apparmor().join("profiles")).unwrap_or_default())
    }

    pub fn names(&self) -> Vec<String> {
        self.listing().into_keys().collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.listing().contains_key(name)
    }

    pub fn mode(&self, name: &str) -> Option<String> {
        self.listing().get(name).cloned()
    }

    pub fn revision(&self) -> u64 {
        fs::read_to_string(self.apparmor().join("revision")).unwrap_or_default().trim().parse().unwrap_or(0)
    }

    /// top-level name -> kernel hash from `policy/profiles/<N>/{name,sha1 or sha256}`.
    pub fn sha1s(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Ok(rd) = fs::read_dir(self.apparmor().join("policy/profiles")) {
            for e in rd.flatten() {
                let hash = fs::read_to_string(e.path().join("sha1")).or_else(|_| fs::read_to_string(e.path().join("sha256")));
                let (Ok(name), Ok(sha)) = (fs::read_to_string(e.path().join("name")), hash) else {
                    continue;
                };
                out.insert(name.trim_end().to_string(), sha.trim().to_string());
            }
        }
        out
    }

    pub fn sha1(&self, name: &str) -> Option<String> {
        self.sha1s().remove(name)
    }

    /// Puts a profile in the kernel that nobody in the test loaded (docker-default, snap.*, ...).
    pub fn seed_foreign(&self, name: &str, mode: &str) {
        let mut l = self.listing();
        l.insert(name.to_string(), mode.to_string());
        let text: String = l.iter().map(|(n, m)| format!("{n} ({m})\n")).collect();
        let ids: Vec<u64> = fs::read_dir(self.apparmor().join("policy/profiles"))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
            .collect();
        let id = ids.iter().max().map_or(1, |m| m + 1);
        let d = self.apparmor().join("policy/profiles").join(id.to_string());
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("name"), format!("{name}\n")).unwrap();
        fs::write(d.join("mode"), format!("{mode}\n")).unwrap();
        fs::write(d.join("sha1"), "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0\n").unwrap();
        write_atomic(&self.apparmor().join("profiles"), text.as_bytes());
        let rev = self.revision() + 1;
        write_atomic(&self.apparmor().join("revision"), format!("{rev}\n").as_bytes());
    }
}

pub fn parse_listing(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.rsplit_once(" (") {
            Some((n, m)) => (n.to_string(), m.trim_end_matches(')').to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// Runs the fake parser directly (as "someone on the node" would run apparmor_parser).
pub fn run_fake_parser(args: &[&OsString], log: Option<&Path>) -> Output {
    let mut cmd = Command::new(fake_parser());
    cmd.args(args);
    match log {
        Some(l) => cmd.env("FAKE_PARSER_LOG", l),
        None => cmd.env_remove("FAKE_PARSER_LOG"),
    };
    cmd.env_remove("FAKE_PARSER_DELAY_MS");
    cmd.output().expect("run fake parser")
}

/// What the fake kernel looks like after loading exactly `files` (content) into an empty kernel:
/// (listing, sha1 per top-level name). Used to check the agent's result against the truth.
pub fn expected_kernel(files: &BTreeMap<String, String>) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let tmp = TempDir::new().unwrap();
    let k = FakeSecurityfs::create(tmp.path().join("sfs"));
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut args: Vec<OsString> = vec!["-r".into(), "-K".into(), "--subdomainfs".into(), k.apparmor().into()];
    for (name, content) in files {
        let p = src.join(name);
        fs::write(&p, content).unwrap();
        args.push(p.into());
    }
    if files.is_empty() {
        return (BTreeMap::new(), BTreeMap::new());
    }
    let refs: Vec<&OsString> = args.iter().collect();
    let out = run_fake_parser(&refs, None);
    assert!(out.status.success(), "expected content does not load: {}", String::from_utf8_lossy(&out.stderr));
    (k.listing(), k.sha1s())
}

// ------------------------------------------------------------------------------------------------
// The call log.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Version,
    Names,
    /// `-Q -W`: compile to binary policy (what the agent runs for every file it loads).
    Compile,
    /// `-B` with `-a`/`-r`: load compiled policy (the agent's way to load where the directory is
    /// not the kernel's securityfs, as in these tests).
    Load,
    Remove,
    /// `-Q` without `-W`: compile only (`check`).
    Check,
    Other,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub argv: Vec<String>,
    pub pid: u32,
    /// sha256 of each readable file operand, in order: the agent hands the parser private copies,
    /// so the content says which profile file a call was about.
    pub inputs: Vec<String>,
}

impl Call {
    pub fn kind(&self) -> CallKind {
        let mut flags = String::new();
        for a in &self.argv {
            match a.as_str() {
                "--replace" | "--add" => flags.push('r'),
                "--remove" => flags.push('R'),
                "--names" => flags.push('N'),
                "--version" => flags.push('V'),
                "--skip-kernel-load" => flags.push('Q'),
                "--write-cache" => flags.push('W'),
                "--binary" => flags.push('B'),
                s if s.starts_with('-') && !s.starts_with("--") => flags.push_str(&s[1..]),
                _ => {}
            }
        }
        if flags.contains('V') {
            CallKind::Version
        } else if flags.contains('N') {
            CallKind::Names
        } else if flags.contains('Q') && flags.contains('W') {
            CallKind::Compile
        } else if flags.contains('Q') {
            CallKind::Check
        } else if flags.contains('R') {
            CallKind::Remove
        } else if flags.contains('r') || flags.contains('a') {
            CallKind::Load
        } else {
            CallKind::Other
        }
    }

    /// The file operands (not flags, not flag values).
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut it = self.argv.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--subdomainfs" | "-j" | "-I" | "--jobs" | "-b" | "-O" | "-L" | "--cache-loc" | "--Include" => {
                    it.next();
                }
                s if s.starts_with('-') => {}
                s => out.push(s.to_string()),
            }
        }
        out
    }

    /// Whether the call was given this content (any of its file operands).
    pub fn has_content(&self, content: &str) -> bool {
        self.inputs.contains(&sha256_hex(content.as_bytes()))
    }

    pub fn complain(&self) -> bool {
        self.argv.iter().any(|a| a == "--complain" || (a.starts_with('-') && !a.starts_with("--") && a.contains('C')))
    }
}

pub fn read_calls(log: &Path) -> Vec<Call> {
    let Ok(f) = fs::File::open(log) else { return Vec::new() };
    io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad call log line {l:?}: {e}"));
            Call {
                argv: v["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect(),
                pid: v["pid"].as_u64().unwrap_or(0) as u32,
                inputs: v["inputs"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Fake /proc.

pub struct FakeProc {
    pub root: PathBuf,
}

impl FakeProc {
    pub fn create(root: PathBuf) -> FakeProc {
        fs::create_dir_all(&root).unwrap();
        let p = FakeProc { root };
        // Some background noise: unconfined tasks, a confined foreign task, a dir without attr/.
        p.confine(1, "unconfined");
        p.confine(2, "docker-default (enforce)");
        fs::create_dir_all(p.root.join("3")).unwrap();
        fs::write(p.root.join("meminfo"), "MemTotal: 1 kB\n").unwrap();
        p
    }

    /// Makes task `pid` (its main thread) confined by `label` (the exact content of attr/current,
    /// e.g. `x (enforce)`).
    pub fn confine(&self, pid: u32, label: &str) {
        self.confine_thread(pid, pid, label);
    }

    /// Makes thread `tid` of process `pid` confined by `label`.
    pub fn confine_thread(&self, pid: u32, tid: u32, label: &str) {
        let d = self.root.join(pid.to_string()).join("task").join(tid.to_string()).join("attr");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("current"), format!("{label}\n")).unwrap();
    }

    /// The task exits.
    pub fn exit(&self, pid: u32) {
        fs::remove_dir_all(self.root.join(pid.to_string())).unwrap();
    }
}

// ------------------------------------------------------------------------------------------------
// The kubelet's ConfigMap volume writer (pkg/volume/util/atomic_writer.go, faithfully).

pub struct ConfigMapDir {
    pub dir: PathBuf,
    current_ts: Option<String>,
    current_names: Vec<String>,
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `..2026_11_28_03_07_12.123456789`: the UTC time plus a unique 9-digit suffix, as kubelet names them.
fn timestamp_dir_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let secs = now.as_secs() as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let uniq = (u64::from(now.subsec_nanos()) + N.fetch_add(1, Ordering::Relaxed) * 7919) % 1_000_000_000;
    format!("..{y:04}_{mo:02}_{d:02}_{:02}_{:02}_{:02}.{uniq:09}", sod / 3600, sod % 3600 / 60, sod % 60)
}

impl ConfigMapDir {
    pub fn create(dir: PathBuf, files: &BTreeMap<String, String>) -> ConfigMapDir {
        fs::create_dir_all(&dir).unwrap();
        let mut c = ConfigMapDir { dir, current_ts: None, current_names: Vec::new() };
        c.update(files);
        c
    }

    /// One kubelet update: new `..<timestamp>` dir with the payload, `..data_tmp -> <ts>`, new
    /// user-visible symlinks `name -> ..data/name`, rename(`..data_tmp`, `..data`), removal of the
    /// names no longer in the payload, removal of the old timestamped dir.
    pub fn update(&mut self, files: &BTreeMap<String, String>) {
        self.update_paced(files, Duration::ZERO);
    }

    /// Like `update`, with a pause between the kubelet's steps (a slow or busy node), so the
    /// agent can look at the directory halfway through.
    pub fn update_paced(&mut self, files: &BTreeMap<String, String>, pause: Duration) {
        let step = || {
            if !pause.is_zero() {
                thread::sleep(pause);
            }
        };
        let ts = timestamp_dir_name();
        let ts_path = self.dir.join(&ts);
        fs::create_dir(&ts_path).unwrap();
        for (name, content) in files {
            fs::write(ts_path.join(name), content).unwrap();
        }
        let tmp_link = self.dir.join("..data_tmp");
        let _ = fs::remove_file(&tmp_link);
        step();
        symlink(&ts, &tmp_link).unwrap();
        // Kubelet creates the user-visible symlinks before the swap (new ones dangle until then).
        for name in files.keys() {
            let link = self.dir.join(name);
            if fs::symlink_metadata(&link).is_err() {
                symlink(Path::new("..data").join(name), &link).unwrap();
            }
        }
        step();
        fs::rename(&tmp_link, self.dir.join("..data")).unwrap();
        step();
        for old in &self.current_names {
            if !files.contains_key(old) {
                fs::remove_file(self.dir.join(old)).unwrap();
            }
        }
        step();
        if let Some(old_ts) = self.current_ts.take() {
            fs::remove_dir_all(self.dir.join(old_ts)).unwrap();
        }
        self.current_ts = Some(ts);
        self.current_names = files.keys().cloned().collect();
    }
}

// ------------------------------------------------------------------------------------------------
// HTTP.

/// A minimal HTTP/1.1 GET: returns (status, body). Understands Content-Length and chunked bodies.
pub fn http_get(addr: &str, path: &str) -> io::Result<(u16, String)> {
    http_request(addr, "GET", path)
}

/// Any method, no request body.
pub fn http_request(addr: &str, method: &str, path: &str) -> io::Result<(u16, String)> {
    let sock = addr.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\nContent-Length: 0\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no header end in {text:?}")))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line in {head:?}")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ------------------------------------------------------------------------------------------------
// The test environment and the agent.

/// Everything one test needs: fake kernel, profile dir, state dir, fake /proc, call log.
pub struct TestEnv {
    pub tmp: TempDir,
    pub kernel: FakeSecurityfs,
    pub profiles: PathBuf,
    pub state: PathBuf,
    pub proc_: FakeProc,
    /// The fake parser's call log (outside the securityfs dir so it makes no noise there).
    pub calls: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let tmp = tempfile::Builder::new().prefix("aal-test").tempdir().unwrap();
        let kernel = FakeSecurityfs::create(tmp.path().join("sfs"));
        let profiles = tmp.path().join("profiles");
        fs::create_dir(&profiles).unwrap();
        let state = tmp.path().join("state");
        let proc_ = FakeProc::create(tmp.path().join("proc"));
        let calls = tmp.path().join("fake-calls.jsonl");
        TestEnv { tmp, kernel, profiles, state, proc_, calls }
    }

    /// The global flags pointing the binary at this environment.
    pub fn env_args(&self) -> Vec<OsString> {
        vec![
            "--securityfs".into(),
            self.kernel.root.clone().into(),
            "--parser".into(),
            fake_parser().into(),
            "--state-dir".into(),
            self.state.clone().into(),
            "--proc".into(),
            self.proc_.root.clone().into(),
        ]
    }

    /// The global flags, less those named in `skip` (e.g. `["--parser"]` to pass another one).
    pub fn env_args_except(&self, skip: &[&str]) -> Vec<OsString> {
        let all = self.env_args();
        let mut out = Vec::new();
        for pair in all.chunks(2) {
            if !skip.iter().any(|s| pair[0] == **s) {
                out.extend_from_slice(pair);
            }
        }
        out
    }

    /// `apparmor-loader <args...>` with this environment's host settings and the fake parser's log set.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_except(args, &[])
    }

    /// Like `command`, without the global flags named in `skip`.
    pub fn command_except(&self, args: &[&str], skip: &[&str]) -> Command {
        self.prepare(Command::new(BIN), args, skip)
    }

    /// `cmd` (the binary, or a wrapper that execs it with what follows) with `args`, the global flags
    /// less `skip`, and a clean environment.
    fn prepare(&self, mut cmd: Command, args: &[&str], skip: &[&str]) -> Command {
        cmd.args(args);
        cmd.env("FAKE_PARSER_LOG", &self.calls);
        cmd.env_remove("FAKE_PARSER_DELAY_MS");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("APPARMOR_LOADER_") {
                cmd.env_remove(k);
            }
        }
        // Through the environment: each subcommand takes only the host flags it uses, and a
        // variable of a flag it does not have is ignored, as in a DaemonSet's env.
        for pair in self.env_args_except(skip).chunks(2) {
            let var = format!(
                "APPARMOR_LOADER_{}",
                pair[0].to_string_lossy().trim_start_matches("--").replace('-', "_").to_uppercase()
            );
            cmd.env(var, &pair[1]);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs a one-shot command to completion (killed after DEADLINE).
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_deadline(self.command(args))
    }

    pub fn calls(&self) -> Vec<Call> {
        read_calls(&self.calls)
    }

    pub fn calls_of(&self, kind: CallKind) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.kind() == kind).collect()
    }

    pub fn count(&self, kind: CallKind) -> usize {
        self.calls_of(kind).len()
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.profiles.join(file)
    }

    pub fn write(&self, file: &str, content: &str) {
        write_atomic(&self.path(file), content.as_bytes());
    }

    pub fn remove(&self, file: &str) {
        fs::remove_file(self.path(file)).unwrap();
    }

    /// `run --profiles <profiles> --listen 127.0.0.1:<free> <extra...> <env args>`.
    pub fn spawn_agent(&self, extra: &[&str]) -> Agent {
        self.spawn_agent_with(extra, &[])
    }

    pub fn spawn_agent_with(&self, extra: &[&str], env: &[(&str, &str)]) -> Agent {
        self.spawn_agent_full(extra, env, None)
    }

    /// Like `spawn_agent`, with soft and hard RLIMIT_NOFILE set to `nofile` before the agent starts (the
    /// agent's pid is the shell's: it execs).
    pub fn spawn_agent_nofile(&self, extra: &[&str], nofile: u64) -> Agent {
        self.spawn_agent_full(extra, &[], Some(nofile))
    }

    fn spawn_agent_full(&self, extra: &[&str], env: &[(&str, &str)], nofile: Option<u64>) -> Agent {
        let addr = format!("127.0.0.1:{}", free_port());
        let profiles = self.profiles.to_str().unwrap().to_string();
        let mut args: Vec<&str> = vec!["run", "--profiles", &profiles, "--listen", &addr];
        args.extend_from_slice(extra);
        let mut cmd = match nofile {
            None => self.command(&args),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(BIN);
                self.prepare(sh, &args, &[])
            }
        };
        for (k, v) in env {
            cmd.env(k, v);
        }
        static N: AtomicU64 = AtomicU64::new(0);
        let log = self.tmp.path().join(format!("agent-{}.log", N.fetch_add(1, Ordering::Relaxed)));
        let f = fs::File::create(&log).unwrap();
        cmd.stdout(f.try_clone().unwrap()).stderr(f);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        Agent { child, addr, log, exited: None }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

pub fn run_with_deadline(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command {cmd:?} did not finish within {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: t_out.join().unwrap(), stderr: t_err.join().unwrap() }
}

pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub struct Agent {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Agent {
    pub fn get(&self, path: &str) -> io::Result<(u16, String)> {
        http_get(&self.addr, path)
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the agent's log) if the agent has exited.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            self.exited = Some(st);
            panic!("agent exited unexpectedly with {st}");
        }
    }

    /// GET a JSON endpoint; Err while the agent is not answering yet.
    pub fn get_json(&mut self, path: &str) -> Result<(u16, Value), String> {
        self.assert_alive();
        let (status, body) = self.get(path).map_err(|e| format!("GET {path}: {e}"))?;
        let v = serde_json::from_str(&body).map_err(|e| format!("GET {path}: {status} body not JSON ({e}): {body}"))?;
        Ok((status, v))
    }

    /// GET /profiles, waiting until the agent answers.
    pub fn profiles(&mut self) -> Value {
        wait_for(DEADLINE, "GET /profiles to answer", || {
            let (st, v) = self.get_json("/profiles")?;
            if st == 200 { Ok(v) } else { Err(format!("status {st}: {v}")) }
        })
    }

    /// Waits for /readyz 200.
    pub fn wait_ready(&mut self) {
        wait_for(DEADLINE, "/readyz 200", || {
            self.assert_alive();
            match self.get("/readyz") {
                Ok((200, _)) => Ok(()),
                Ok((st, body)) => Err(format!("{st} {body}")),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    /// Waits until /profiles reports `file` (matched by file name) in `state`; returns its entry.
    pub fn wait_file_state(&mut self, file: &str, state: &str) -> Value {
        let what = format!("file {file} to be {state}");
        wait_for(DEADLINE, &what, || {
            let v = self.profiles();
            match file_entry(&v, file) {
                Some(f) if f["state"] == state => Ok(f.clone()),
                Some(f) => Err(format!("entry: {f}")),
                None => Err(format!("no entry in {v}")),
            }
        })
    }

    /// Waits until /profiles reports profile `name` in `state`; returns its entry.
    pub fn wait_profile_state(&mut self, name: &str, state: &str) -> Value {
        let what = format!("profile {name} to be {state}");
        wait_for(DEADLINE, &what, || {
            let v = self.profiles();
            match profile_entry(&v, name) {
                Some(p) if p["state"] == state => Ok(p.clone()),
                Some(p) => Err(format!("entry: {p}")),
                None => Err(format!("no entry in {v}")),
            }
        })
    }

    pub fn sigterm(&self) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Waits up to `timeout` for the agent to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.exited {
            return st;
        }
        let st = wait_for(timeout, "the agent to exit", || match self.child.try_wait() {
            Ok(Some(st)) => Ok(st),
            Ok(None) => Err("still running".into()),
            Err(e) => Err(e.to_string()),
        });
        self.exited = Some(st);
        st
    }

    /// SIGTERM and wait for a clean exit (status 0 within 5 s).
    pub fn stop(&mut self) {
        self.sigterm();
        let st = self.wait_exit(Duration::from_secs(5));
        assert!(st.success(), "agent exited with {st} after SIGTERM");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("===== agent log ({}) =====\n{}\n===== end agent log =====", self.log.display(), self.logs());
        }
    }
}

/// The `files[]` entry of GET /profiles whose file is `file` or ends with `/file`.
pub fn file_entry<'a>(v: &'a Value, file: &str) -> Option<&'a Value> {
    v["files"].as_array()?.iter().find(|f| file_matches(&f["file"], file))
}

/// The `profiles[]` entry of GET /profiles with this name.
pub fn profile_entry<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["profiles"].as_array()?.iter().find(|p| p["name"] == name)
}

pub fn file_matches(v: &Value, file: &str) -> bool {
    v.as_str().is_some_and(|s| s == file || s.ends_with(&format!("/{file}")))
}

/// True if process `pid` is gone (or a zombie).
pub fn process_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')).unwrap_or(false),
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A small deterministic PRNG (xorshift64*), so a failing sequence can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The value of an unlabelled sample (or the sum over labels) in a Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else { continue };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let v: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        sum = Some(sum.unwrap_or(0.0) + v);
    }
    sum
}
