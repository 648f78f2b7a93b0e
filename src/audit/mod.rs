//! Denial monitoring: AppArmor audit records from the kernel, parsed, attributed to pods, counted,
//! remembered and turned into rule suggestions. Library code only; the binary wires it to HTTP, metrics
//! and CLI subcommands.

/// Which container and pod a pid belongs to, from `/proc/<pid>/cgroup`.
pub mod cgroup;
/// The pure parser of AppArmor audit records (kmsg, dmesg, audit.log and netlink forms).
pub mod record;
/// The bounded ring of recent records and the log rate limiter.
pub mod ring;
