//! aatime: tiny static timing/probing helper for the AppArmor test VM (busybox has no `date +%N`).
//! Built by tests/vm/aavm.sh with plain `rustc --target x86_64-unknown-linux-musl` (no cargo target).
//!
//!   aatime now                        print CLOCK_MONOTONIC in microseconds
//!   aatime since T0_US                print now - T0_US (microseconds)
//!   aatime run OUTFILE CMD [ARG..]    run CMD (inherits stdio), write elapsed µs to OUTFILE, exit with CMD's code
//!   aatime swapwait OLD NEW SPEC TIMEOUT_MS
//!                                     snapshot SPEC, rename(OLD, NEW) (the kubelet's ..data swap), then re-check
//!                                     SPEC on every policy revision change (poll(), 50 ms cap) until it differs;
//!                                     print elapsed µs (exit 1 on timeout)
//!   aatime waitchange SPEC BEFORE_FILE TIMEOUT_MS
//!                                     like swapwait without the rename, against a saved snapshot
//!   aatime show SPEC                  print SPEC's current value
//!   aatime httpwait URL TIMEOUT_MS [INTERVAL_MS]  GET URL until 200 (every 5 ms); print elapsed µs
//!   aatime waitcount PREFIX N TIMEOUT_MS  wait (poll() on the revision, no busy loop) until N kernel profiles
//!                                     start with PREFIX; print elapsed µs
//!   aatime http URL                   GET URL, print the body, exit 0 on 200, 1 otherwise (status on stderr)
//!   aatime pollrev FILE TIMEOUT_MS    read FILE once, poll() it, print revents, elapsed and a re-read
//!   aatime json FILE QUERY            print a value from a JSON file (exit 1 if absent). QUERY: dot-separated
//!                                     keys, each optionally `[N]`, `[k=v]` (first element whose string k == v),
//!                                     `[k~v]` (k contains v); a trailing `#` prints the count of matches/length
//!   aatime probe read|cat|write|exec PATH [ARGS] | probe sleep SECS: try one operation, print OK or the errno, exit 0 / errno
//!                                     (copied into the guest as a confined program, e.g. /usr/local/bin/node)
//!   aatime probe raw -                socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) (AppArmor `network inet raw`, then
//!                                     CAP_NET_RAW)
//!   aatime probe chown PATH           chown(PATH, 1, 1): needs CAP_CHOWN (and file `w` under AppArmor)
//!   aatime probe storm PATH MS [distinct]
//!                                     open(PATH) in a tight loop for MS ms; print `attempts=N failed=F errno=E
//!                                     us=T` (a denial storm when PATH is denied); exit 0. `distinct`: open
//!                                     PATH.0, PATH.1, ... with O_CREAT instead (a new name every time)
//!   aatime forge UID TYPE TEXT [netns]
//!                                     become a process that is not root-equivalent — uid and gid UID, no
//!                                     groups, only CAP_AUDIT_WRITE (PR_SET_KEEPCAPS, setresuid, capset;
//!                                     `netns`: first into a new network namespace, like a pod's) — and send
//!                                     TEXT as an audit user message of TYPE over netlink (1107 = USER_AVC;
//!                                     1400 must be refused). Prints `pid=P uid=U euid=U capeff=HEX capprm=HEX
//!                                     netns=NS type=T ack=ERRNO` (ack 0: the kernel took it) and exits 0 once
//!                                     the kernel acknowledged; 1 if the socket or the send failed
//!
//! SPEC: `file:PATH` (whole content), `sha1:NAME` (sha1 of kernel profile NAME from
//! SECURITYFS/apparmor/policy/profiles/*/{name,sha1 or sha256}), `listing:NAME` (NAME's line in the profiles listing),
//! `rev:` (the policy revision, read without blocking; 0 before the first load).
#![allow(clippy::all)]
use std::io::{Read, Write};
use std::time::Duration;

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}
#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}
unsafe extern "C" {
    fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
    fn poll(fds: *mut PollFd, n: u64, timeout: i32) -> i32;
    fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
    fn close(fd: i32) -> i32;
    fn chown(path: *const std::ffi::c_char, uid: u32, gid: u32) -> i32;
    fn open(path: *const std::ffi::c_char, flags: i32, ...) -> i32;
    fn prctl(option: i32, ...) -> i32;
    fn setgroups(n: usize, list: *const u32) -> i32;
    fn setresgid(r: u32, e: u32, s: u32) -> i32;
    fn setresuid(r: u32, e: u32, s: u32) -> i32;
    fn capset(hdr: *mut CapHeader, data: *const CapData) -> i32;
    fn unshare(flags: i32) -> i32;
    fn sendto(fd: i32, buf: *const u8, len: usize, flags: i32, addr: *const SockaddrNl, alen: u32) -> isize;
    fn recv(fd: i32, buf: *mut u8, len: usize, flags: i32) -> isize;
    fn getuid() -> u32;
    fn geteuid() -> u32;
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
#[repr(C)]
struct SockaddrNl {
    family: u16,
    pad: u16,
    pid: u32,
    groups: u32,
}

const CAP_AUDIT_WRITE: u32 = 29;

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Drops to `uid` keeping only CAP_AUDIT_WRITE: what a container process has with Docker's or
/// containerd's default capability set, minus everything else.
fn become_audit_writer(uid: u32) -> Result<(), String> {
    const PR_SET_KEEPCAPS: i32 = 8;
    const PR_SET_DUMPABLE: i32 = 4;
    // SAFETY: plain syscalls on this process's credentials.
    unsafe {
        if prctl(PR_SET_KEEPCAPS, 1u64, 0u64, 0u64, 0u64) != 0 {
            return Err(os_err("prctl(PR_SET_KEEPCAPS)"));
        }
        if setgroups(0, std::ptr::null()) != 0 || setresgid(uid, uid, uid) != 0 {
            return Err(os_err("setgroups/setresgid"));
        }
        if setresuid(uid, uid, uid) != 0 {
            return Err(os_err("setresuid"));
        }
        let mut hdr = CapHeader { version: 0x2008_0522, pid: 0 };
        let bit = 1u32 << CAP_AUDIT_WRITE;
        let data = [CapData { effective: bit, permitted: bit, inheritable: 0 }, CapData { effective: 0, permitted: 0, inheritable: 0 }];
        if capset(&mut hdr, data.as_ptr()) != 0 {
            return Err(os_err("capset"));
        }
        // The uid change made the process undumpable, which hides /proc/self from it: the report reads
        // its own capabilities and network namespace there.
        if prctl(PR_SET_DUMPABLE, 1u64, 0u64, 0u64, 0u64) != 0 {
            return Err(os_err("prctl(PR_SET_DUMPABLE)"));
        }
    }
    Ok(())
}

/// Sends one audit message of `ty` with `text` (NUL-terminated) and returns the kernel's ack errno.
fn send_audit_user_message(ty: u16, text: &str) -> Result<i32, String> {
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    // SAFETY: a socket this function owns, buffers that outlive the calls.
    unsafe {
        let fd = socket(16, 3 | 0o2000000, 9); // AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_AUDIT
        if fd < 0 {
            return Err(os_err("socket(NETLINK_AUDIT)"));
        }
        let mut msg = Vec::new();
        let payload_len = text.len() + 1;
        msg.extend_from_slice(&((16 + payload_len) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(text.as_bytes());
        msg.push(0);
        let addr = SockaddrNl { family: 16, pad: 0, pid: 0, groups: 0 };
        if sendto(fd, msg.as_ptr(), msg.len(), 0, &addr, 12) < 0 {
            let e = os_err("sendto");
            close(fd);
            return Err(e);
        }
        // The ack: an NLMSG_ERROR (2) whose payload starts with the (negative) errno, 0 for success.
        let mut buf = [0u8; 8192];
        let n = recv(fd, buf.as_mut_ptr(), buf.len(), 0);
        close(fd);
        if n < 20 || u16::from_ne_bytes([buf[4], buf[5]]) != 2 {
            return Err(format!("no ack from the kernel ({n} bytes)"));
        }
        Ok(-i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]))
    }
}

fn status_field(name: &str) -> String {
    match std::fs::read_to_string("/proc/self/status") {
        Ok(s) => s.lines().find_map(|l| l.strip_prefix(name)).unwrap_or("?").trim().to_string(),
        Err(e) => format!("unreadable({e})").replace(' ', "_"),
    }
}

fn now_us() -> i64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    unsafe { clock_gettime(1, &mut ts) };
    ts.sec * 1_000_000 + ts.nsec / 1000
}

const AA: &str = "/sys/kernel/security/apparmor";

struct Spec {
    kind: String,
    arg: String,
    cached_dir: Option<std::path::PathBuf>,
}

impl Spec {
    fn parse(s: &str) -> Spec {
        let (k, a) = s.split_once(':').unwrap_or_else(|| die(&format!("bad SPEC {s}")));
        Spec { kind: k.to_string(), arg: a.to_string(), cached_dir: None }
    }
    fn value(&mut self) -> String {
        match self.kind.as_str() {
            "file" => std::fs::read_to_string(&self.arg).unwrap_or_else(|_| "<missing>".into()),
            "rev" => {
                // O_NONBLOCK: a fresh fd blocks (EAGAIN here) while the namespace revision is still 0
                use std::os::unix::fs::OpenOptionsExt;
                let mut b = String::new();
                match std::fs::OpenOptions::new().read(true).custom_flags(0o4000).open(format!("{AA}/revision")) {
                    Ok(mut f) => match f.read_to_string(&mut b) {
                        Ok(_) => b.trim_end().to_string(),
                        Err(_) => "0".into(),
                    },
                    Err(_) => "<missing>".into(),
                }
            }
            "listing" => {
                let l = std::fs::read_to_string(format!("{AA}/profiles")).unwrap_or_default();
                let want = format!("{} (", self.arg);
                l.lines().find(|x| x.starts_with(&want)).unwrap_or("<missing>").to_string()
            }
            "sha1" => {
                if let Some(d) = &self.cached_dir {
                    let name = std::fs::read_to_string(d.join("name")).unwrap_or_default();
                    if name.trim_end() == self.arg {
                        if let Some(s) = kernel_hash(d) {
                            return s;
                        }
                    }
                }
                self.cached_dir = None;
                let rd = match std::fs::read_dir(format!("{AA}/policy/profiles")) {
                    Ok(r) => r,
                    Err(_) => return "<missing>".into(),
                };
                for e in rd.flatten() {
                    let p = e.path();
                    let name = std::fs::read_to_string(p.join("name")).unwrap_or_default();
                    if name.trim_end() == self.arg {
                        let s = kernel_hash(&p).unwrap_or_else(|| "<missing>".into());
                        self.cached_dir = Some(p);
                        return s;
                    }
                }
                "<missing>".into()
            }
            _ => die("SPEC kind must be file:, sha1: or listing:"),
        }
    }
}

/// The kernel's hash of a loaded profile: `sha1` up to Linux 6.7, `sha256` from 6.8 on.
fn kernel_hash(dir: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(dir.join("sha1")).or_else(|_| std::fs::read_to_string(dir.join("sha256"))).ok()
}

fn die(m: &str) -> ! {
    eprintln!("aatime: {m}");
    std::process::exit(2)
}

/// The kernel's policy revision, opened O_NONBLOCK and drained: poll() on it wakes when policy changes,
/// so waiting costs no CPU (busy polling would steal the single vCPU from the agent and the parser).
struct Revision(Option<std::fs::File>);

impl Revision {
    fn open() -> Revision {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new().read(true).custom_flags(0o4000).open(format!("{AA}/revision")).ok();
        let mut r = Revision(f);
        r.drain();
        r
    }
    fn drain(&mut self) {
        if let Some(f) = &mut self.0 {
            let mut b = [0u8; 64];
            let _ = f.read(&mut b);
        }
    }
    /// Wait up to `ms` for a policy change (plain sleep when the file is not there).
    fn wait(&mut self, ms: i32) {
        use std::os::fd::AsRawFd;
        match &self.0 {
            Some(f) => {
                let mut p = PollFd { fd: f.as_raw_fd(), events: 0x1, revents: 0 };
                unsafe { poll(&mut p, 1, ms) };
                self.drain();
            }
            None => std::thread::sleep(Duration::from_millis(ms as u64)),
        }
    }
}

fn wait_change(spec: &mut Spec, before: &str, t0: i64, timeout_ms: i64, mut rev: Revision) -> ! {
    loop {
        let v = spec.value();
        let t = now_us();
        if v != before {
            println!("{}", t - t0);
            std::process::exit(0);
        }
        if t - t0 > timeout_ms * 1000 {
            println!("-1");
            eprintln!("aatime: timeout waiting for change of {}:{} (still {:?})", spec.kind, spec.arg, v.trim_end());
            std::process::exit(1);
        }
        if spec.kind == "file" {
            std::thread::sleep(Duration::from_millis(1));
        } else {
            rev.wait(50);
        }
    }
}

fn http_get(url: &str) -> Result<(u32, String), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = std::net::TcpStream::connect(hostport).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code: u32 = text.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or("no status")?;
    let body = match text.find("\r\n\r\n") {
        Some(i) => text[i + 4..].to_string(),
        None => String::new(),
    };
    let chunked = text[..text.find("\r\n\r\n").unwrap_or(0)].to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((code, if chunked { dechunk(&body) } else { body }))
}

fn dechunk(b: &str) -> String {
    let mut out = String::new();
    let mut rest = b;
    while let Some(i) = rest.find("\r\n") {
        let n = usize::from_str_radix(rest[..i].trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        let start = i + 2;
        if start + n > rest.len() {
            out.push_str(&rest[start..]);
            break;
        }
        out.push_str(&rest[start..start + n]);
        rest = &rest[(start + n + 2).min(rest.len())..];
    }
    out
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize| a.get(i).cloned().unwrap_or_else(|| die("missing argument (see source header)"));
    match a.get(1).map(|s| s.as_str()) {
        Some("now") => println!("{}", now_us()),
        Some("since") => println!("{}", now_us() - arg(2).parse::<i64>().unwrap_or_else(|_| die("T0"))),
        Some("run") => {
            let out = arg(2);
            let t0 = now_us();
            let st = std::process::Command::new(arg(3)).args(&a[4..]).status();
            let dt = now_us() - t0;
            std::fs::write(&out, format!("{dt}\n")).ok();
            match st {
                Ok(s) => std::process::exit(s.code().unwrap_or(128)),
                Err(e) => die(&format!("cannot run {}: {e}", arg(3))),
            }
        }
        Some("swapwait") => {
            let mut spec = Spec::parse(&arg(4));
            let timeout: i64 = arg(5).parse().unwrap_or(10000);
            let before = spec.value();
            let rev = Revision::open();
            let t0 = now_us();
            if let Err(e) = std::fs::rename(arg(2), arg(3)) {
                die(&format!("rename: {e}"));
            }
            wait_change(&mut spec, &before, t0, timeout, rev);
        }
        Some("waitchange") => {
            let mut spec = Spec::parse(&arg(2));
            let before = std::fs::read_to_string(arg(3)).unwrap_or_default();
            let timeout: i64 = arg(4).parse().unwrap_or(10000);
            let rev = Revision::open();
            let t0 = now_us();
            wait_change(&mut spec, &before, t0, timeout, rev);
        }
        Some("show") => print!("{}", Spec::parse(&arg(2)).value()),
        Some("waitcount") => {
            let prefix = arg(2);
            let n: usize = arg(3).parse().unwrap_or_else(|_| die("N"));
            let timeout: i64 = arg(4).parse().unwrap_or(60000);
            let mut rev = Revision::open();
            let t0 = now_us();
            loop {
                let l = std::fs::read_to_string(format!("{AA}/profiles")).unwrap_or_default();
                if l.lines().filter(|x| x.starts_with(&prefix)).count() >= n {
                    println!("{}", now_us() - t0);
                    return;
                }
                if now_us() - t0 > timeout * 1000 {
                    println!("-1");
                    std::process::exit(1);
                }
                rev.wait(100);
            }
        }
        Some("httpwait") => {
            let url = arg(2);
            let timeout: i64 = arg(3).parse().unwrap_or(10000);
            let interval: u64 = a.get(4).and_then(|x| x.parse().ok()).unwrap_or(5);
            let t0 = now_us();
            loop {
                if let Ok((200, _)) = http_get(&url) {
                    println!("{}", now_us() - t0);
                    return;
                }
                if now_us() - t0 > timeout * 1000 {
                    println!("-1");
                    std::process::exit(1);
                }
                std::thread::sleep(Duration::from_millis(interval));
            }
        }
        Some("http") => match http_get(&arg(2)) {
            Ok((code, body)) => {
                eprintln!("HTTP {code}");
                print!("{body}");
                std::process::exit(if code == 200 { 0 } else { 1 });
            }
            Err(e) => {
                eprintln!("aatime http: {e}");
                std::process::exit(3);
            }
        },
        Some("pollrev") => {
            // open O_NONBLOCK: a blocking read of `revision` waits until the policy changes when this fd
            // has already seen the current revision (and a fresh fd has "seen" revision 0).
            use std::io::{Seek, SeekFrom};
            use std::os::fd::AsRawFd;
            use std::os::unix::fs::OpenOptionsExt;
            let open = || {
                std::fs::OpenOptions::new().read(true).custom_flags(0o4000).open(arg(2)).unwrap_or_else(|e| die(&e.to_string()))
            };
            let show = |what: &str, f: &mut std::fs::File| {
                let mut b = [0u8; 64];
                match f.read(&mut b) {
                    Ok(n) => println!("{what}: Ok({n}) {:?}", String::from_utf8_lossy(&b[..n]).trim_end()),
                    Err(e) => println!("{what}: Err({e})"),
                }
            };
            let mut f = open();
            let timeout: i32 = arg(3).parse().unwrap_or(2000);
            let mut p = PollFd { fd: f.as_raw_fd(), events: 0x1, revents: 0 };
            let r = unsafe { poll(&mut p, 1, 0) };
            println!("poll(0)-before-read ret={r} revents=0x{:x}", p.revents);
            show("read1", &mut f);
            show("read2-same-fd", &mut f);
            p.revents = 0;
            let t0 = now_us();
            let r = unsafe { poll(&mut p, 1, timeout) };
            println!("poll({timeout}) ret={r} revents=0x{:x} after_us={}", p.revents, now_us() - t0);
            show("read3-same-fd-no-seek", &mut f);
            f.seek(SeekFrom::Start(0)).ok();
            show("read4-same-fd-after-seek0", &mut f);
            let mut g = open();
            show("read-new-fd", &mut g);
        }
        Some("json") => {
            let text = std::fs::read_to_string(arg(2)).unwrap_or_else(|e| die(&format!("{}: {e}", arg(2))));
            let mut p = JsonParser { s: text.as_bytes(), i: 0 };
            let v = p.value().unwrap_or_else(|| die(&format!("{}: not JSON", arg(2))));
            match query(&v, &arg(3)) {
                Some(out) => println!("{out}"),
                None => std::process::exit(1),
            }
        }
        Some("probe") => {
            let path = arg(3);
            let r: std::io::Result<()> = match arg(2).as_str() {
                "read" => std::fs::read(&path).map(|_| ()),
                "cat" => std::fs::read(&path).map(|b| {
                    std::io::stdout().write_all(&b).ok();
                }),
                "sleep" => {
                    std::thread::sleep(Duration::from_secs(path.parse().unwrap_or(60)));
                    Ok(())
                }
                "write" => std::fs::OpenOptions::new().append(true).create(true).open(&path).and_then(|mut f| f.write_all(b"x\n")),
                "raw" => {
                    let fd = unsafe { socket(2, 3, 1) };
                    if fd < 0 {
                        Err(std::io::Error::last_os_error())
                    } else {
                        unsafe { close(fd) };
                        Ok(())
                    }
                }
                "chown" => {
                    let c = std::ffi::CString::new(path.clone()).unwrap_or_else(|_| die("NUL in path"));
                    if unsafe { chown(c.as_ptr(), 1, 1) } != 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
                }
                "storm" => {
                    let c = std::ffi::CString::new(path.clone()).unwrap_or_else(|_| die("NUL in path"));
                    let ms: i64 = arg(4).parse().unwrap_or(1000);
                    let distinct = a.get(5).map(|s| s == "distinct").unwrap_or(false);
                    let (t0, mut n, mut failed, mut errno) = (now_us(), 0u64, 0u64, 0);
                    while now_us() - t0 < ms * 1000 {
                        for _ in 0..64 {
                            let fd = if distinct {
                                let p = std::ffi::CString::new(format!("{path}.{n}")).unwrap_or_default();
                                unsafe { open(p.as_ptr(), 0o2000000 | 0o100, 0o644) }
                            } else {
                                unsafe { open(c.as_ptr(), 0o2000000) }
                            };
                            n += 1;
                            if fd < 0 {
                                failed += 1;
                                errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                            } else {
                                unsafe { close(fd) };
                            }
                        }
                    }
                    println!("attempts={n} failed={failed} errno={errno} us={}", now_us() - t0);
                    std::process::exit(0);
                }
                "exec" => {
                    use std::os::unix::process::CommandExt;
                    Err(std::process::Command::new(&path).args(&a[4..]).exec())
                }
                _ => die("probe read|cat|write|exec|chown PATH, probe raw -, probe storm PATH MS, probe sleep SECS"),
            };
            match r {
                Ok(()) => println!("OK"),
                Err(e) => {
                    println!("ERR {} {e}", e.raw_os_error().unwrap_or(0));
                    std::process::exit(e.raw_os_error().unwrap_or(1).min(255));
                }
            }
        }
        Some("forge") => {
            let uid: u32 = arg(2).parse().unwrap_or_else(|_| die("forge UID TYPE TEXT [netns]"));
            let ty: u16 = arg(3).parse().unwrap_or_else(|_| die("forge UID TYPE TEXT [netns]"));
            if a.get(5).map(|s| s == "netns").unwrap_or(false) && unsafe { unshare(0x4000_0000) } != 0 {
                die(&os_err("unshare(CLONE_NEWNET)"));
            }
            become_audit_writer(uid).unwrap_or_else(|e| die(&e));
            let netns = match std::fs::read_link("/proc/self/ns/net") {
                Ok(p) => p.display().to_string(),
                Err(e) => format!("unreadable({e})").replace(' ', "_"),
            };
            let who = format!(
                "pid={} uid={} euid={} capeff={} capprm={} netns={netns} type={ty}",
                std::process::id(),
                unsafe { getuid() },
                unsafe { geteuid() },
                status_field("CapEff:"),
                status_field("CapPrm:")
            );
            match send_audit_user_message(ty, &arg(4)) {
                Ok(errno) => println!("{who} ack={errno}"),
                Err(e) => {
                    println!("{who} error={e}");
                    std::process::exit(1);
                }
            }
        }
        _ => die("usage: now|since|run|swapwait|waitchange|show|httpwait|http|pollrev|json|probe|forge (see source)"),
    }
}

#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] as char).is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn value(&mut self) -> Option<J> {
        self.ws();
        let c = *self.s.get(self.i)?;
        match c {
            b'{' => {
                self.i += 1;
                let mut v = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Some(J::Obj(v));
                    }
                    let k = match self.value()? {
                        J::Str(k) => k,
                        _ => return None,
                    };
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return None;
                    }
                    self.i += 1;
                    let val = self.value()?;
                    v.push((k, val));
                    self.ws();
                    if self.s.get(self.i) == Some(&b',') {
                        self.i += 1;
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut v = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Some(J::Arr(v));
                    }
                    v.push(self.value()?);
                    self.ws();
                    if self.s.get(self.i) == Some(&b',') {
                        self.i += 1;
                    }
                }
            }
            b'"' => {
                self.i += 1;
                let mut out = Vec::new();
                while let Some(&c) = self.s.get(self.i) {
                    self.i += 1;
                    match c {
                        b'"' => return Some(J::Str(String::from_utf8_lossy(&out).into_owned())),
                        b'\\' => {
                            let e = *self.s.get(self.i)?;
                            self.i += 1;
                            match e {
                                b'n' => out.push(b'\n'),
                                b't' => out.push(b'\t'),
                                b'r' => out.push(b'\r'),
                                b'b' | b'f' => out.push(b' '),
                                b'u' => {
                                    let h = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                                    self.i += 4;
                                    let cp = u32::from_str_radix(h, 16).ok()?;
                                    let ch = char::from_u32(cp).unwrap_or('?');
                                    let mut b = [0u8; 4];
                                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                                }
                                other => out.push(other),
                            }
                        }
                        c => out.push(c),
                    }
                }
                None
            }
            b't' => {
                self.i += 4;
                Some(J::Bool(true))
            }
            b'f' => {
                self.i += 5;
                Some(J::Bool(false))
            }
            b'n' => {
                self.i += 4;
                Some(J::Null)
            }
            _ => {
                let st = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                if st == self.i {
                    return None;
                }
                Some(J::Num(String::from_utf8_lossy(&self.s[st..self.i]).into_owned()))
            }
        }
    }
}

fn render(v: &J) -> String {
    match v {
        J::Null => "null".into(),
        J::Bool(b) => b.to_string(),
        J::Num(n) => n.clone(),
        J::Str(s) => s.clone(),
        J::Arr(a) => format!("[{}]", a.iter().map(render_q).collect::<Vec<_>>().join(",")),
        J::Obj(o) => format!("{{{}}}", o.iter().map(|(k, v)| format!("{k:?}:{}", render_q(v))).collect::<Vec<_>>().join(",")),
    }
}
fn render_q(v: &J) -> String {
    match v {
        J::Str(s) => format!("{s:?}"),
        other => render(other),
    }
}

fn query(root: &J, q: &str) -> Option<String> {
    let (q, count) = match q.strip_suffix('#') {
        Some(r) => (r, true),
        None => (q, false),
    };
    let mut cur = vec![root.clone()];
    let mut filtered = false;
    // split on '.' outside [...] (values like `junk.bin` contain dots)
    let mut segs = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in q.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                segs.push(&q[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    segs.push(&q[start..]);
    for seg in segs.into_iter().filter(|s| !s.is_empty()) {
        let (key, sel) = match seg.find('[') {
            Some(i) => (&seg[..i], Some(seg[i + 1..].trim_end_matches(']'))),
            None => (seg, None),
        };
        let v = cur.first()?.clone();
        let mut next = if key.is_empty() {
            v
        } else {
            match v {
                J::Obj(o) => o.into_iter().find(|(k, _)| k == key)?.1,
                _ => return None,
            }
        };
        cur = match sel {
            None => vec![next],
            Some(sel) => {
                let arr = match std::mem::replace(&mut next, J::Null) {
                    J::Arr(a) => a,
                    _ => return None,
                };
                if let Ok(n) = sel.parse::<usize>() {
                    vec![arr.get(n)?.clone()]
                } else {
                    filtered = true;
                    let (k, val, contains) = match sel.split_once("~") {
                        Some((k, v)) => (k, v, true),
                        None => {
                            let (k, v) = sel.split_once('=')?;
                            (k, v, false)
                        }
                    };
                    arr.into_iter()
                        .filter(|e| match e {
                            J::Obj(o) => o.iter().any(|(kk, vv)| {
                                kk == k && {
                                    let s = render(vv);
                                    if contains { s.contains(val) } else { s == val }
                                }
                            }),
                            _ => false,
                        })
                        .collect()
                }
            }
        };
        if !count && cur.is_empty() {
            return None;
        }
    }
    if count {
        if filtered {
            return Some(cur.len().to_string());
        }
        return match cur.first()? {
            J::Arr(a) => Some(a.len().to_string()),
            J::Obj(o) => Some(o.len().to_string()),
            _ => None,
        };
    }
    Some(render(cur.first()?))
}
