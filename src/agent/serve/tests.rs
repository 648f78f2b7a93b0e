//! The server's limits on real loopback sockets, with short timeouts.

use super::*;
use axum::routing::get;
use std::net::Ipv4Addr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Far more than the kernel buffers of both ends hold, so a client that does not read keeps most of it
/// in the server.
const BIG: usize = 1024 * 1024;

fn app() -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" })).route("/big", get(|| async { vec![b'x'; BIG] })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "slow\n"
        }),
    )
}

fn quick() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(300),
        deadline: Duration::from_millis(800),
        drain: Duration::from_millis(500),
        ..Limits::default()
    }
}

struct Running {
    addr: SocketAddr,
    metrics: HttpMetrics,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn start(limits: Limits) -> Running {
    let listener = bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = HttpMetrics::unregistered();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(vec![listener], app(), limits, metrics.clone(), shutdown.clone()));
    Running { addr, metrics, shutdown, task }
}

/// A connection from `from` (any 127.x.y.z address is loopback), so tests can play several clients.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind((from, 0).into()).unwrap();
    s.connect(to).await.unwrap()
}

async fn get_status(from: Ipv4Addr, to: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = connect_from(from, to).await;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw)).await.expect("answer in time").unwrap();
    let status = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap();
    (status, raw)
}

/// Reads until the server closes the connection; the time since `t`.
async fn closed_after(s: &mut TcpStream, t: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed in time") {
            Ok(0) | Err(_) => return t.elapsed(),
            Ok(_) => {}
        }
    }
}

async fn wait_for(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn one_request_per_connection_with_content_length() {
    let r = start(quick());
    let (status, raw) = get_status(Ipv4Addr::LOCALHOST, r.addr, "/healthz").await;
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert_eq!(status, 200);
    assert!(text.contains("connection: close") && text.contains("content-length: 3") && text.ends_with("ok\n"), "{text}");
    let (status, raw) = get_status(Ipv4Addr::LOCALHOST, r.addr, "/big").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&raw[..200]).to_ascii_lowercase().contains(&format!("content-length: {BIG}")));
    assert!(raw.len() > BIG, "the whole paced body arrives");
    wait_for("both connections complete", || r.metrics.closed_count(Closed::Complete) == 2).await;
    r.shutdown.cancel();
    r.task.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn idle_and_byte_by_byte_clients_lose_their_place_at_the_header_timeout() {
    let r = start(quick());
    let t = Instant::now();
    let mut idle = connect_from(Ipv4Addr::LOCALHOST, r.addr).await;
    let mut slow = connect_from(Ipv4Addr::LOCALHOST, r.addr).await;
    let dribble = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        closed_after(&mut slow, t).await
    });
    let idle_took = closed_after(&mut idle, t).await;
    let slow_took = dribble.await.unwrap();
    for took in [idle_took, slow_took] {
        assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(1500), "{took:?}");
    }
    wait_for("two header timeouts", || r.metrics.closed_count(Closed::HeaderTimeout) == 2).await;
    r.shutdown.cancel();
    r.task.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_that_never_reads_is_cut_at_the_deadline_and_its_budget_returns() {
    let limits = Limits { response_budget: 2 * BIG, deadline: Duration::from_millis(1500), ..quick() };
    let r = start(limits);
    let mut hogs = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from(Ipv4Addr::LOCALHOST, r.addr).await;
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        hogs.push(s);
    }
    // Two answers fill the budget; the third client gets a 503 it does not read either.
    wait_for("three requests answered or shed", || r.metrics.shed_count() == 1).await;
    let (status, _) = get_status(Ipv4Addr::LOCALHOST, r.addr, "/big").await;
    assert_eq!(status, 503, "budget spent while the hogs hold their answers");
    let (status, _) = get_status(Ipv4Addr::LOCALHOST, r.addr, "/healthz").await;
    assert_eq!(status, 200, "small answers never wait for the budget");
    wait_for("the hogs cut at the deadline", || r.metrics.closed_count(Closed::Deadline) == 2).await;
    let (status, raw) = get_status(Ipv4Addr::LOCALHOST, r.addr, "/big").await;
    assert_eq!((status, raw.len() > BIG), (200, true), "the budget came back");
    drop(hogs);
    r.shutdown.cancel();
    r.task.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn the_cap_holds_and_a_flood_evicts_only_itself() {
    let limits = Limits { max_connections: 8, eviction_slack: 2, header_timeout: Duration::from_secs(30), ..quick() };
    let r = start(limits);
    let flood = Ipv4Addr::new(127, 0, 0, 2);
    let mut idle = Vec::new();
    let mut most = 0;
    for _ in 0..60 {
        idle.push(connect_from(flood, r.addr).await);
        tokio::task::yield_now().await;
        most = most.max(r.metrics.open_count());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    most = most.max(r.metrics.open_count());
    assert!(most <= 10, "at most cap + slack connections open: {most}");
    // A probe from another address is served at once, although the flood's connections are idle
    // (no header timeout for 30 s) and the server is full.
    let t = Instant::now();
    let (status, _) = get_status(Ipv4Addr::LOCALHOST, r.addr, "/healthz").await;
    assert_eq!(status, 200);
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
    assert!(r.metrics.closed_count(Closed::Evicted) >= 50, "{}", r.metrics.closed_count(Closed::Evicted));
    // The flood keeps its newest connections; the oldest were closed.
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(1), idle[0].read(&mut buf))
        .await
        .expect("the oldest flood connection was closed");
    assert_eq!(read.unwrap_or(0), 0);
    r.shutdown.cancel();
    r.task.await.unwrap();
    assert_eq!(r.metrics.open_count(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn an_oversized_request_head_is_refused() {
    let r = start(quick());
    let mut s = connect_from(Ipv4Addr::LOCALHOST, r.addr).await;
    let head = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = s.write_all(head.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw)).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains(" 200 "), "{text}");
    r.shutdown.cancel();
    r.task.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_finishes_the_answer_in_flight_and_stops_accepting() {
    // No timeout of the connection's own would end the idle one within the test.
    let r = start(Limits { header_timeout: Duration::from_secs(60), deadline: Duration::from_secs(60), ..quick() });
    let in_flight = tokio::spawn(get_status(Ipv4Addr::LOCALHOST, r.addr, "/slow"));
    let mut idle = connect_from(Ipv4Addr::LOCALHOST, r.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    r.shutdown.cancel();
    assert_eq!(in_flight.await.unwrap().0, 200, "the request in flight is answered");
    closed_after(&mut idle, t).await;
    r.task.await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "not the 60 s timeouts: {:?}", t.elapsed());
    assert_eq!(r.metrics.open_count(), 0);
    assert!(TcpStream::connect(r.addr).await.is_err(), "the listener is closed");
}

#[tokio::test(flavor = "current_thread")]
async fn accepted_sockets_keep_the_small_kernel_buffers() {
    use nix::sys::socket::{getsockopt, sockopt};
    let listener = bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (accepted, _) = tokio::join!(listener.accept(), client);
    let (server_side, _) = accepted.unwrap();
    // The kernel doubles what was asked for (bookkeeping overhead).
    let snd = getsockopt(&server_side, sockopt::SndBuf).unwrap();
    let rcv = getsockopt(&server_side, sockopt::RcvBuf).unwrap();
    assert_eq!(snd, 2 * defaults::HTTP_SOCKET_SEND_BUFFER as usize);
    assert_eq!(rcv, 2 * defaults::HTTP_SOCKET_RECV_BUFFER as usize);
}

#[tokio::test(flavor = "current_thread")]
async fn the_drain_cuts_an_answer_that_takes_longer() {
    let r = start(Limits { drain: Duration::from_millis(100), ..quick() });
    let mut s = connect_from(Ipv4Addr::LOCALHOST, r.addr).await;
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    r.shutdown.cancel();
    r.task.await.unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    assert!(raw.is_empty(), "no answer after the drain: {}", String::from_utf8_lossy(&raw));
    assert_eq!(r.metrics.closed_count(Closed::Shutdown), 1);
}
