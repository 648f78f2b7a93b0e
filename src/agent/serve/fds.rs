//! The HTTP server's share of the process's file descriptors.
//!
//! Everything else the agent does needs descriptors too: the parser's pipes, the profile files it
//! reads, the state file, inotify, the audit source, `/proc` reads. Those take a few dozen at most;
//! [`crate::defaults::FD_RESERVE`] keeps ten times that for them, and the server's connection cap is
//! what is left of the soft `RLIMIT_NOFILE` limit (at most the configured maximum). Connections the
//! server has not accepted wait in the kernel's listen queue and cost the agent no descriptor.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The descriptor limits before and after [`raise_soft_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimits {
    /// The soft limit found at start.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit (the ceiling an unprivileged raise can reach).
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` limit to `wanted` when it is lower, never above the hard limit.
/// Only as far as needed: child processes (the parser) inherit the soft limit.
pub fn raise_soft_limit(wanted: u64) -> nix::Result<NofileLimits> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let target = wanted.min(hard);
    if target > soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    }
    Ok(NofileLimits { before: soft, soft: soft.max(target), hard })
}

/// Descriptors the server needs at most for `connections`: one per connection, `slack` more for
/// evicted connections still closing, one per listening socket.
pub fn needed(connections: usize, slack: usize, listeners: usize) -> u64 {
    (connections + slack + listeners) as u64
}

/// The connection cap that fits under the soft limit with `reserve` descriptors left for everything
/// else: at most `max`, at least one (a server that cannot serve at all helps nobody; the agent warns).
pub fn connection_cap(soft: u64, reserve: u64, slack: usize, listeners: usize, max: usize) -> usize {
    let spare = soft.saturating_sub(reserve).saturating_sub(needed(0, slack, listeners));
    usize::try_from(spare).unwrap_or(usize::MAX).clamp(1, max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_alone() {
        // The common soft limit of 1024: the full 256 fit with room to spare.
        assert_eq!(connection_cap(1024, 256, 16, 2, 256), 256);
        // A tight limit shrinks the cap, never the reserve.
        assert_eq!(connection_cap(400, 256, 16, 2, 256), 400 - 256 - 16 - 2);
        for soft in [300u64, 400, 600, 1024, 1 << 20] {
            let cap = connection_cap(soft, 256, 16, 2, 256);
            assert!(cap <= 256 && (needed(cap, 16, 2) + 256 <= soft || cap == 1), "soft {soft} -> {cap}");
        }
        assert_eq!(connection_cap(100, 256, 16, 2, 256), 1, "hopeless limits still serve one");
    }

    #[test]
    fn raising_never_lowers_and_never_passes_the_hard_limit() {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let l = raise_soft_limit(soft).unwrap();
        assert_eq!((l.before, l.soft, l.hard), (soft, soft, hard));
        let l = raise_soft_limit(1).unwrap();
        assert_eq!(l.soft, soft, "a smaller wish does not lower the limit");
        if soft < hard {
            let l = raise_soft_limit(soft + 1).unwrap();
            assert_eq!((l.before, l.soft), (soft, soft + 1));
            assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (soft + 1, hard));
            setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
        }
        // (An unlimited hard limit is not a value setrlimit accepts for the soft one.)
        if hard < 1 << 24 {
            assert_eq!(raise_soft_limit(hard + 1).unwrap().soft, hard, "capped by the hard limit");
            setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
        }
    }
}
