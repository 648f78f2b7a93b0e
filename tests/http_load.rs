//! Issue 10, item 5: no HTTP client load can stop the loader. The agent runs under a 1024 open-files
//! limit (soft and hard, so it cannot raise it); thousands of idle connections from 30 loopback
//! addresses (reconnecting whenever the agent closes one) and 40 clients that ask for the largest
//! `/denials` page and never read it hammer it while a profile is edited. The edit must reach the
//! kernel in normal time, `/healthz` must answer within the kubelet's probe timeout, and the agent's
//! peak RSS must stay under the DaemonSet's 128 MiB limit. Loopback only, a few seconds.
//!
//! Run with `--nocapture` to see the measured figures.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{DEADLINE, TestEnv, expected_kernel, http_get, profile, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;

/// The agent's descriptor limit: the common default, and the one the issue's reproduction used.
const AGENT_NOFILE: u64 = 1024;
/// The DaemonSet's memory limit.
const MEMORY_LIMIT_KIB: u64 = 128 * 1024;
/// Addresses the idle flood comes from (127.0.0.2 ...), and connections per address.
const FLOOD_ADDRESSES: u8 = 30;
const FLOOD_PER_ADDRESS: usize = 100;
/// Clients that request a large answer and never read it.
const SLOW_CLIENTS: usize = 40;
/// Denials in the ring, each with a 4000-byte path: the whole ring is ~4.3 MB of JSON.
const DENIALS: usize = 1000;
/// The kubelet's probe timeout in the DaemonSet (timeoutSeconds: 3).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

fn denial(seq: usize) -> String {
    format!(
        r#"type=AVC msg=audit(1795834070.095:{seq}): apparmor="DENIED" operation="open" class="file" profile="web" name="/srv/{seq}/{}" pid=92 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
        "d".repeat(4000)
    )
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// The test process holds thousands of sockets itself.
fn raise_own_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let want = hard.min(1 << 16);
    if want > soft {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
    }
    want.max(soft)
}

#[derive(Default)]
struct LoadStats {
    idle_connected: AtomicU64,
    idle_closed_by_agent: AtomicU64,
    connect_failures: AtomicU64,
    slow_requests: AtomicU64,
}

/// One idle client: connects from `from`, sends nothing, and reconnects (after a pause) whenever the
/// agent closes it.
async fn idle_client(from: Ipv4Addr, to: SocketAddr, stop: CancellationToken, stats: Arc<LoadStats>) {
    let mut buf = [0u8; 64];
    while !stop.is_cancelled() {
        let socket = TcpSocket::new_v4().and_then(|s| s.bind((from, 0).into()).map(|()| s));
        let connected = match socket {
            Ok(s) => tokio::time::timeout(Duration::from_secs(1), s.connect(to)).await,
            Err(e) => Ok(Err(e)),
        };
        match connected {
            Ok(Ok(mut stream)) => {
                stats.idle_connected.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = stream.read(&mut buf) => { stats.idle_closed_by_agent.fetch_add(1, Ordering::Relaxed); }
                }
            }
            _ => {
                stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// One slow client: asks for the largest `/denials` page, never reads, holds the connection. Each comes
/// from its own address, so the flood's evictions (which hit the address holding the most) spare it and
/// it keeps its answer pinned for as long as the agent lets it.
async fn slow_client(from: Ipv4Addr, to: SocketAddr, stop: CancellationToken, stats: Arc<LoadStats>) {
    let Ok(s) = TcpSocket::new_v4().and_then(|s| s.bind((from, 0).into()).map(|()| s)) else { return };
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), s.connect(to)).await else { return };
    let request = "GET /denials?after=0&limit=100000 HTTP/1.1\r\nHost: agent\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_ok() {
        stats.slow_requests.fetch_add(1, Ordering::Relaxed);
    }
    stop.cancelled().await;
}

/// Runs the load on its own thread and runtime until `stop` is cancelled.
fn start_load(to: SocketAddr, stop: CancellationToken, stats: Arc<LoadStats>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for i in 0..SLOW_CLIENTS {
                let from = Ipv4Addr::new(127, 0, 1, 1 + i as u8);
                tasks.push(tokio::spawn(slow_client(from, to, stop.clone(), stats.clone())));
            }
            for a in 0..FLOOD_ADDRESSES {
                for _ in 0..FLOOD_PER_ADDRESS {
                    let from = Ipv4Addr::new(127, 0, 0, 2 + a);
                    tasks.push(tokio::spawn(idle_client(from, to, stop.clone(), stats.clone())));
                }
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    })
}

/// Samples the agent's RSS and descriptors until `stop`; returns (peak RSS KiB, peak descriptors).
fn start_sampler(pid: u32, stop: CancellationToken) -> std::thread::JoinHandle<(u64, usize)> {
    std::thread::spawn(move || {
        let (mut rss, mut fds) = (0, 0);
        while !stop.is_cancelled() {
            rss = rss.max(status_kib(pid, "VmRSS:"));
            fds = fds.max(open_fds(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        (rss, fds)
    })
}

fn read_all_pages(addr: &str) -> (Vec<u64>, usize, usize) {
    let (mut after, mut ids, mut pages, mut largest) = (0u64, Vec::new(), 0, 0);
    loop {
        let (st, body) = http_get(addr, &format!("/denials?after={after}&limit=100000")).unwrap();
        assert_eq!(st, 200, "{body}");
        largest = largest.max(body.len());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let records = v["records"].as_array().unwrap();
        assert!(records.len() <= 500, "a page holds at most 500 records, got {}", records.len());
        ids.extend(records.iter().map(|r| r["id"].as_u64().unwrap()));
        after = v["next_after"].as_u64().unwrap();
        pages += 1;
        if v["more"] != true {
            return (ids, pages, largest);
        }
    }
}

#[test]
fn syncs_and_probes_survive_thousands_of_idle_and_slow_connections() {
    let own_limit = raise_own_nofile();
    let flood = FLOOD_ADDRESSES as usize * FLOOD_PER_ADDRESS;
    assert!(
        own_limit as usize > flood + SLOW_CLIENTS + 200,
        "the test needs {flood}+ descriptors; the hard limit is {own_limit}"
    );

    let env = TestEnv::new();
    env.write("web", &profile("web", &["/srv/** r"]));
    let log = env.tmp.path().join("audit.log");
    std::fs::write(&log, "").unwrap();
    let mut agent = env.spawn_agent_nofile(&["--audit-source", log.to_str().unwrap()], AGENT_NOFILE);
    agent.wait_ready();
    let pid = agent.child.id();

    // Fill the ring with large records, then read it through the paged endpoint.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for seq in 1..=DENIALS {
        writeln!(f, "{}", denial(seq)).unwrap();
    }
    drop(f);
    wait_for(DEADLINE, "the ring to hold every denial", || {
        let (_, v) = agent.get_json("/denials?limit=1")?;
        if v["total"] == DENIALS { Ok(()) } else { Err(v["total"].to_string()) }
    });
    let (ids, pages, largest) = read_all_pages(&agent.addr);
    assert_eq!(ids, (1..=DENIALS as u64).collect::<Vec<_>>(), "paging returns every record once, in order");
    assert!(largest < 300 * 1024, "largest page {largest} bytes");
    println!("paging: {DENIALS} records of ~4.2 KB in {pages} pages, largest page {} KiB", largest / 1024);

    let addr: SocketAddr = agent.addr.parse().unwrap();
    let stop = CancellationToken::new();
    let stats = Arc::new(LoadStats::default());
    let rss_before = status_kib(pid, "VmRSS:");
    let sampler = start_sampler(pid, stop.clone());
    let load = start_load(addr, stop.clone(), stats.clone());
    // Every flood client has tried once (a connection the agent's queue had no room for times out).
    wait_for(DEADLINE, "the load to be on", || {
        let tried = stats.idle_connected.load(Ordering::Relaxed) + stats.connect_failures.load(Ordering::Relaxed);
        let slow = stats.slow_requests.load(Ordering::Relaxed);
        if tried >= flood as u64 && slow == SLOW_CLIENTS as u64 { Ok(()) } else { Err(format!("{tried} tried, {slow} slow")) }
    });
    std::thread::sleep(Duration::from_millis(500));

    // The edit, under load.
    let new = profile("web", &["/srv/** r", "/data/** rw"]);
    let (_, want) = expected_kernel(&[("web".to_string(), new.clone())].into());
    let edited = Instant::now();
    env.write("web", &new);
    wait_for(DEADLINE, "the edit to reach the kernel under load", || {
        agent.assert_alive();
        if env.kernel.sha1("web") == want.get("web").cloned() { Ok(()) } else { Err(format!("{:?}", env.kernel.sha1("web"))) }
    });
    let applied = edited.elapsed();

    // The kubelet's probe, from an address with no connection open.
    let probed = Instant::now();
    let (st, body) = http_get(&agent.addr, "/healthz").unwrap();
    let probe = probed.elapsed();
    assert_eq!(st, 200, "{body}");

    let (st, metrics) = http_get(&agent.addr, "/metrics").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.cancel();
    load.join().unwrap();
    let (peak_rss, peak_fds) = sampler.join().unwrap();
    let hwm = status_kib(pid, "VmHWM:");
    let line = |name: &str| metrics.lines().filter(|l| l.starts_with(name)).collect::<Vec<_>>().join("; ");
    println!(
        "load: {} idle connections made ({} closed by the agent, {} connects failed or timed out), {} slow /denials clients",
        stats.idle_connected.load(Ordering::Relaxed),
        stats.idle_closed_by_agent.load(Ordering::Relaxed),
        stats.connect_failures.load(Ordering::Relaxed),
        stats.slow_requests.load(Ordering::Relaxed)
    );
    println!("edit applied under load in {} ms; /healthz answered in {} ms", applied.as_millis(), probe.as_millis());
    println!(
        "agent: VmRSS {} KiB before the load, peak sampled {} KiB, VmHWM {} KiB (limit {MEMORY_LIMIT_KIB} KiB); peak open descriptors {peak_fds} of {AGENT_NOFILE}",
        rss_before, peak_rss, hwm
    );
    println!(
        "metrics ({st}): {} | {}",
        line("apparmor_loader_http_connections_closed_total"),
        line("apparmor_loader_http_responses_shed_total")
    );

    assert!(applied < Duration::from_secs(5), "the edit took {applied:?} under load");
    assert!(probe < PROBE_TIMEOUT, "/healthz took {probe:?} under load");
    assert!(hwm < MEMORY_LIMIT_KIB, "peak RSS {hwm} KiB >= {MEMORY_LIMIT_KIB} KiB");
    assert!((peak_fds as u64) < AGENT_NOFILE, "{peak_fds} descriptors open");
    // Still healthy and clean once the load is gone.
    wait_for(DEADLINE, "/healthz after the load", || match http_get(&agent.addr, "/healthz") {
        Ok((200, _)) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    agent.stop();
}
