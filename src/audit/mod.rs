//! Denial monitoring: AppArmor audit records from the kernel, parsed, attributed to pods, counted,
//! remembered and turned into rule suggestions. Library code only, independent of the rest of the
//! crate; the binary wires it to HTTP routes, metrics and CLI subcommands.
//!
//! Data flow: a [`source`] thread reads kmsg / netlink / audit.log and parses lines with [`record`],
//! which also decides each record's [`Origin`]; the [`monitor`] thread counts the kernel's denials
//! ([`metrics`]), attributes records to pods ([`cgroup`]), logs each distinct one once and keeps the
//! recent ones ([`ring`]), userspace-reported records apart; [`suggest`] turns records into rules, from
//! the live stream or from saved logs ([`saved`]).

/// Size bounds on stored records and the pages built from them.
mod bounded;
/// Which container and pod a pid belongs to, from `/proc/<pid>/cgroup`.
pub mod cgroup;
/// One readable, terminal-safe line per record.
pub mod display;
/// The `key=value` tokenizer and AppArmor field mapping used by [`record`].
mod fields;
/// The `GET /denials` route.
pub mod http;
/// Prometheus metrics with bounded labels.
pub mod metrics;
/// The monitor thread tying source, ring, metrics and log limiter together; the HTTP read handle.
pub mod monitor;
/// The pure parser of AppArmor audit records (kmsg, dmesg, audit.log and netlink forms).
pub mod record;
/// The bounded ring of recent records and the log rate limiter.
pub mod ring;
/// Saved logs: each file's format, and which of its records it proves the kernel made.
pub mod saved;
/// Record sources: /dev/kmsg, the netlink audit multicast group, an audit.log follower; `auto`.
pub mod source;
/// Rule suggestions from recorded denials (aa-logprof without the dialogue).
pub mod suggest;

pub use metrics::{AuditMetrics, ProfileSet};
pub use monitor::{DenialsResponse, DenialsView, Monitor, MonitorConfig, SourceStatus};
pub use record::{AuditRecord, Decision, Origin, ParseError, parse_line};
pub use ring::Query;
pub use source::{SourcePaths, SourceSpec};
