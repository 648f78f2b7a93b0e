//! aatime: tiny static timing/probing helper for the AppArmor test VM (busybox has no `date +%N`).
//! Built by tests/vm/aavm.sh with plain `rustc --target x86_64-unknown-linux-musl` (no cargo target).
//!
//!   aatime now                        print CLOCK_MONOTONIC in microseconds
//!   aatime since T0_US                print now - T0_US (microseconds)
//!   aatime run OUTFILE CMD [ARG..]    run CMD (inherits stdio), write elapsed µs to OUTFILE, exit with CMD's code
//!   aatime swapwait OLD NEW SPEC TIMEOUT_MS
//!                                     snapshot SPEC, rename(OLD, NEW) (the kubelet's ..data swap), then poll
//!                                     SPEC every 0.5 ms until it differs; print elapsed µs (exit 1 on timeout)
//!   aatime waitchange SPEC BEFORE_FILE TIMEOUT_MS
//!                                     like swapwait without the rename, against a saved snapshot
//!   aatime show SPEC                  print SPEC's current value
//!   aatime httpwait URL TIMEOUT_MS    GET URL until 200; print elapsed µs (exit 1 on timeout)
//!   aatime http URL                   GET URL, print the body, exit 0 on 200, 1 otherwise (status on stderr)
//!   aatime pollrev FILE TIMEOUT_MS    read FILE once, poll() it, print revents, elapsed and a re-read
//!
//! SPEC: `file:PATH` (whole content), `sha1:NAME` (sha1 of kernel profile NAME from
//! SECURITYFS/apparmor/policy/profiles/*/{name,sha1}), `listing:NAME` (NAME's line in the profiles listing).
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
            "listing" => {
                let l = std::fs::read_to_string(format!("{AA}/profiles")).unwrap_or_default();
                let want = format!("{} (", self.arg);
                l.lines().find(|x| x.starts_with(&want)).unwrap_or("<missing>").to_string()
            }
            "sha1" => {
                if let Some(d) = &self.cached_dir {
                    let name = std::fs::read_to_string(d.join("name")).unwrap_or_default();
                    if name.trim_end() == self.arg {
                        if let Ok(s) = std::fs::read_to_string(d.join("sha1")) {
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
                        let s = std::fs::read_to_string(p.join("sha1")).unwrap_or_else(|_| "<missing>".into());
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

fn die(m: &str) -> ! {
    eprintln!("aatime: {m}");
    std::process::exit(2)
}

fn wait_change(spec: &mut Spec, before: &str, t0: i64, timeout_ms: i64) -> ! {
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
        std::thread::sleep(Duration::from_micros(500));
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
            let t0 = now_us();
            if let Err(e) = std::fs::rename(arg(2), arg(3)) {
                die(&format!("rename: {e}"));
            }
            wait_change(&mut spec, &before, t0, timeout);
        }
        Some("waitchange") => {
            let mut spec = Spec::parse(&arg(2));
            let before = std::fs::read_to_string(arg(3)).unwrap_or_default();
            let timeout: i64 = arg(4).parse().unwrap_or(10000);
            let t0 = now_us();
            wait_change(&mut spec, &before, t0, timeout);
        }
        Some("show") => print!("{}", Spec::parse(&arg(2)).value()),
        Some("httpwait") => {
            let url = arg(2);
            let timeout: i64 = arg(3).parse().unwrap_or(10000);
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
                std::thread::sleep(Duration::from_millis(5));
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
        _ => die("usage: now|since|run|swapwait|waitchange|show|httpwait|http|pollrev (see source)"),
    }
}
