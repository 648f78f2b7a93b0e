//! The netlink reader of the kernel audit multicast group.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::{AUDIT_NLGRP_READLOG, NETLINK_RCVBUF, ReadOptions, Sink, SourceError, wait_for_burst};
use crate::audit::record;

/// One message of a netlink datagram: `(type, payload)`.
pub type NetlinkMessage<'a> = (u16, &'a [u8]);

/// Splits a netlink datagram into its messages (`struct nlmsghdr` in native byte order: len u32,
/// type u16, flags u16, seq u32, pid u32, then the payload, padded to 4 bytes). Trailing NULs are cut
/// from the payload. A header whose length is inconsistent ends the walk with the rest as one payload.
pub fn split_netlink(buf: &[u8]) -> Vec<NetlinkMessage<'_>> {
    const HDR: usize = 16;
    let mut out = Vec::new();
    let trim = |p: &'_ [u8]| -> usize { p.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) };
    let mut rest = buf;
    while rest.len() >= HDR {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < HDR || len > rest.len() {
            let payload = &rest[HDR..];
            out.push((ty, &payload[..trim(payload)]));
            break;
        }
        let payload = &rest[HDR..len];
        out.push((ty, &payload[..trim(payload)]));
        let aligned = (len + 3) & !3;
        if aligned >= rest.len() {
            break;
        }
        rest = &rest[aligned..];
    }
    out
}

/// Whether this process shares the network namespace of pid 1 (the host's, where the kernel
/// multicasts audit records); `None` when either link is unreadable, which proves nothing.
pub(super) fn in_host_netns(proc_root: &Path) -> Option<bool> {
    let netns = |p: &str| std::fs::read_link(proc_root.join(p)).ok();
    Some(netns("self/ns/net")? == netns("1/ns/net")?)
}

/// Reads the audit multicast group. Needs `CAP_AUDIT_READ` and the host's network namespace (the
/// kernel only multicasts audit records in the initial one).
pub struct NetlinkReader {
    pub(super) fd: std::os::fd::OwnedFd,
}

impl NetlinkReader {
    /// Creates the socket and joins the read-only group.
    pub fn open(proc_root: &Path) -> Result<Self, SourceError> {
        use nix::sys::socket::{AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, socket};
        use std::os::fd::AsRawFd;
        // Unreadable (no hostPID, no permission): no evidence either way, so try.
        if in_host_netns(proc_root) == Some(false) {
            return Err(SourceError::Netlink(
                "not in the host network namespace, where the kernel multicasts audit records (run with hostNetwork)".into(),
            ));
        }
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkAudit,
        )
        .map_err(|e| SourceError::Netlink(format!("socket: {e}")))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1 << (AUDIT_NLGRP_READLOG - 1))).map_err(|e| {
            SourceError::Netlink(match e {
                nix::errno::Errno::EPERM => "joining the read-log group needs CAP_AUDIT_READ".to_owned(),
                e => format!("bind to group {AUDIT_NLGRP_READLOG}: {e}"),
            })
        })?;
        // A larger buffer rides out short storms; capped by rmem_max, so failure is harmless.
        let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBuf, &NETLINK_RCVBUF);
        Ok(NetlinkReader { fd })
    }

    pub(super) fn run(self, sink: &Sink, opts: &ReadOptions, stop: &CancellationToken) -> io::Result<()> {
        use nix::sys::socket::{NetlinkAddr, recvfrom};
        use std::os::fd::AsRawFd;
        let mut buf = vec![0u8; 64 * 1024];
        let mut drained = 0u32;
        while !stop.is_cancelled() {
            // The socket is non-blocking (SOCK_NONBLOCK), so this never waits.
            match recvfrom::<NetlinkAddr>(self.fd.as_raw_fd(), &mut buf) {
                Ok((n, from)) => {
                    drained += 1;
                    // Port id 0 is the kernel. Any other sender is a process unicasting to our port
                    // (possible with CAP_NET_ADMIN in the host network namespace): never a record.
                    if from.is_none_or(|a| a.pid() != 0) {
                        if sink.stats.spoofed.fetch_add(1, Ordering::Relaxed) == 0 {
                            tracing::warn!(
                                sender = from.map_or(0, |a| a.pid()),
                                "dropped a netlink audit message not sent by the kernel"
                            );
                        }
                        continue;
                    }
                    for (ty, payload) in split_netlink(&buf[..n]) {
                        sink.stats.lines.fetch_add(1, Ordering::Relaxed);
                        if sink.deliver(record::parse_netlink_payload(ty, &String::from_utf8_lossy(payload))).is_err() {
                            return Ok(());
                        }
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => {
                    if !opts.follow {
                        break;
                    }
                    wait_for_burst(&self.fd, &mut drained, opts.poll_interval)?;
                }
                // The socket buffer overflowed: records were lost, the socket still works.
                Err(nix::errno::Errno::ENOBUFS) => {
                    sink.stats.lost.fetch_add(1, Ordering::Relaxed);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        Ok(())
    }
}
