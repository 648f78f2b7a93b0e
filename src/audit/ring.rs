//! The memory of recent records (a bounded ring buffer) and the limiter that keeps denial logging
//! from flooding the node.

use super::bounded;
use super::cgroup::ContainerRef;
use super::record::AuditRecord;
use serde::{Deserialize, Serialize};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{Duration, Instant, SystemTime};

use crate::defaults;

/// Records in one answer when the query names no `limit`: a screenful of JSON, ~60 KiB.
pub const PAGE: usize = 100;
/// Records in one answer at most, whatever the query's `limit`: with [`PAGE_BYTES`], no request can make
/// the agent serialize the whole ring (which `--denials-buffer` may make large) into one response.
pub const PAGE_MAX: usize = 500;
/// JSON bytes of one answer's records at most (a typical record is 0.5 to 1 KiB).
pub const PAGE_BYTES: usize = 256 * 1024;
/// Text bytes one stored record may hold in all (name, profile, comm, ...). The kernel's own records stay
/// below it (a path is at most PATH_MAX, 4096 bytes, and the audit tools size a whole message at 8970
/// bytes, MAX_AUDIT_MESSAGE_LENGTH), so only a crafted audit-log line is ever cut; this bounds the ring's
/// memory to about capacity × 16 KiB.
pub const RECORD_TEXT: usize = 16 * 1024;

/// One remembered record with what the monitor learned about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// A number unique within this process, increasing: lets a client ask for "what is new since".
    pub id: u64,
    /// When the record was received, RFC 3339 (the kernel's stamp is inside `record.timestamp`).
    pub received_at: String,
    /// The parsed record.
    #[serde(flatten)]
    pub record: AuditRecord,
    /// The container and pod of `record.pid`, when it could be resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
    /// True when the record's text was longer than [`RECORD_TEXT`] bytes in all and its
    /// longest fields were cut (no record the kernel emits is that long; a crafted log line can be).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The entry's size in JSON, measured once when stored: pages are bounded in bytes.
    #[serde(skip)]
    json_len: usize,
}

/// What a caller (the HTTP handler, the CLI) asks of the ring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Only records of this profile (exact match, or its children `NAME//...`).
    #[serde(default)]
    pub profile: Option<String>,
    /// At most this many records (capped at a page, [`PageLimits::max_records`]).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only records with an id greater than this, oldest first: a cursor for paging and polling.
    /// Without it the page holds the most recent records.
    #[serde(default)]
    pub after: Option<u64>,
    /// Which ring: the kernel's records (default) or the userspace-reported ones, kept apart.
    #[serde(default)]
    pub origin: RingOrigin,
}

/// The `origin` of a [`Query`]: the monitor keeps the records the kernel did not make (USER_AVC) in a
/// ring of their own, so they can neither pass for denials nor push the kernel's records out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RingOrigin {
    /// Records the kernel made: the denials.
    #[default]
    Kernel,
    /// Records the kernel did not make (each says its `origin`).
    Userspace,
}

/// How large one answer may be, so that no query makes the agent build an unbounded response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// Records per page when the query names no `limit`.
    pub default_records: usize,
    /// Records per page at most, whatever the query's `limit`.
    pub max_records: usize,
    /// JSON bytes of the page's records at most (a page always holds at least one record, so a
    /// client always makes progress; one record is at most [`RECORD_TEXT`] of text).
    pub max_bytes: usize,
}

impl Default for PageLimits {
    fn default() -> Self {
        PageLimits { default_records: PAGE, max_records: PAGE_MAX, max_bytes: PAGE_BYTES }
    }
}

/// The answer to a [`Query`]: JSON-ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Matching records, oldest first.
    pub records: Vec<StoredRecord>,
    /// Records stored since start (including those the ring has already forgotten).
    pub total: u64,
    /// How many records the ring holds at most (`--denials-buffer`): `total` beyond it means
    /// older records were forgotten.
    pub capacity: usize,
    /// The cursor for the next request (`after=`): the last record of a full page, else the newest
    /// record the ring holds, so polling with it returns only what this answer did not cover.
    pub next_after: u64,
    /// True when matching records beyond `next_after` exist already (the page was full): ask again.
    pub more: bool,
}

/// True when `profile` is `wanted` or one of its children/hats (`wanted//child`).
pub fn profile_matches(profile: Option<&str>, wanted: &str) -> bool {
    match profile {
        Some(p) => p == wanted || p.strip_prefix(wanted).is_some_and(|rest| rest.starts_with("//")),
        None => false,
    }
}

/// A bounded ring of the most recent records: pushing beyond capacity forgets the oldest.
#[derive(Debug, Clone)]
pub struct Ring {
    entries: VecDeque<StoredRecord>,
    capacity: usize,
    next_id: u64,
}

impl Ring {
    /// A ring of at most `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Ring { entries: VecDeque::with_capacity(capacity.min(4096)), capacity, next_id: 1 }
    }

    /// Stores a record, stamping it with the next id and the receive time; returns the id. Its text is
    /// cut to [`RECORD_TEXT`] bytes in all, so the ring's memory is bounded too.
    pub fn push(&mut self, record: AuditRecord, container: Option<ContainerRef>, received: SystemTime) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        let received_at = humantime::format_rfc3339_millis(received).to_string();
        let (record, truncated) = bounded::bound_text(record, RECORD_TEXT);
        let mut entry = StoredRecord { id, received_at, record, container, truncated, json_len: 0 };
        entry.json_len = bounded::json_len(&entry);
        self.entries.push_back(entry);
        id
    }

    /// Number of records held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One page of matching records with the default [`PageLimits`].
    pub fn snapshot(&self, q: &Query) -> Snapshot {
        self.page(q, PageLimits::default())
    }

    /// One page of matching records, oldest first: without `after` the most recent ones that fit, with
    /// `after` the oldest ones past that id (and `more` when the page was full).
    pub fn page(&self, q: &Query, limits: PageLimits) -> Snapshot {
        let limit = q.limit.unwrap_or(limits.default_records).min(limits.max_records);
        let newest = self.next_id - 1;
        let matches = |e: &&StoredRecord| q.profile.as_deref().is_none_or(|p| profile_matches(e.record.profile.as_deref(), p));
        let mut page = Page { limit, max_bytes: limits.max_bytes, bytes: 0, records: Vec::new() };
        let (next_after, more) = match q.after {
            None => {
                for e in self.entries.iter().rev().filter(matches) {
                    if !page.take(e) {
                        break;
                    }
                }
                page.records.reverse();
                (newest, false)
            }
            Some(after) => {
                let start = self.entries.partition_point(|e| e.id <= after);
                let full = self.entries.range(start..).filter(matches).any(|e| !page.take(e));
                match (full, page.records.last()) {
                    (true, last) => (last.map_or(after, |e| e.id), true),
                    (false, _) => (newest.max(after), false),
                }
            }
        };
        Snapshot { records: page.records, total: newest, capacity: self.capacity, next_after, more }
    }
}

/// A page being filled: stops at `limit` records or `max_bytes` of JSON, whichever comes first.
struct Page {
    limit: usize,
    max_bytes: usize,
    bytes: usize,
    records: Vec<StoredRecord>,
}

impl Page {
    /// Adds `e` if it fits; false when the page is full. The first record always fits.
    fn take(&mut self, e: &StoredRecord) -> bool {
        let full = self.records.len() >= self.limit || (!self.records.is_empty() && self.bytes + e.json_len > self.max_bytes);
        if !full {
            self.bytes += e.json_len;
            self.records.push(e.clone());
        }
        !full
    }
}

/// Settings of the [`LogLimiter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterConfig {
    /// How many distinct denials are remembered (memory bound).
    pub max_keys: usize,
    /// After this long a known denial may be logged again (with the number of repeats in between).
    pub repeat_after: Duration,
    /// Sustained log lines per second.
    pub rate_per_sec: f64,
    /// Burst size of the token bucket.
    pub burst: f64,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        let (rate_per_sec, burst) = defaults::DENIAL_LOG_RATE;
        LimiterConfig {
            max_keys: defaults::DENIAL_LOG_KEYS,
            repeat_after: defaults::DENIAL_LOG_REPEAT_AFTER,
            rate_per_sec,
            burst,
        }
    }
}

/// What to do with one denial's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDecision {
    /// Log it. `repeats` is how many identical denials were not logged since the last time,
    /// `suppressed` how many log lines the rate limit swallowed since the last line that got through.
    Log {
        /// Identical denials seen but not logged since this key was last logged.
        repeats: u64,
        /// Lines of any key dropped by the rate limit since the previous logged line.
        suppressed: u64,
    },
    /// Already logged recently: counted, not logged.
    Duplicate,
    /// New, but the rate limit is exhausted: counted in the next `Log`'s `suppressed`.
    RateLimited,
}

#[derive(Debug, Clone, Copy)]
struct LastLogged {
    logged_at: Instant,
    repeats: u64,
}

/// Logs each distinct denial once (key: profile + operation + name + mask), again after
/// `repeat_after`, and never more than a token bucket allows. Memory is bounded by `max_keys`: keys
/// are stored as 64-bit hashes, the oldest forgotten first.
#[derive(Debug)]
pub struct LogLimiter {
    cfg: LimiterConfig,
    seen: HashMap<u64, LastLogged>,
    order: VecDeque<u64>,
    tokens: f64,
    last_refill: Option<Instant>,
    suppressed: u64,
    // Randomly keyed so a hostile process cannot craft a name whose key collides with a real denial's.
    hasher: RandomState,
}

impl LogLimiter {
    /// A limiter with the given settings.
    pub fn new(cfg: LimiterConfig) -> Self {
        LogLimiter {
            cfg,
            seen: HashMap::new(),
            order: VecDeque::new(),
            tokens: cfg.burst,
            last_refill: None,
            suppressed: 0,
            hasher: RandomState::new(),
        }
    }

    /// The dedupe key of a record.
    fn key_of(&self, rec: &AuditRecord) -> u64 {
        let mut h = self.hasher.build_hasher();
        rec.profile.hash(&mut h);
        rec.operation.hash(&mut h);
        rec.name.hash(&mut h);
        rec.effective_mask().hash(&mut h);
        // Capability and network denials have no name; their subject is here.
        rec.capname.hash(&mut h);
        rec.family.hash(&mut h);
        rec.sock_type.hash(&mut h);
        h.finish()
    }

    /// Decides for one record observed at `now`.
    pub fn check(&mut self, rec: &AuditRecord, now: Instant) -> LogDecision {
        let key = self.key_of(rec);
        let repeats = match self.seen.get_mut(&key) {
            Some(s) if now.saturating_duration_since(s.logged_at) < self.cfg.repeat_after => {
                s.repeats += 1;
                return LogDecision::Duplicate;
            }
            Some(s) => s.repeats,
            None => 0,
        };
        if !self.take_token(now) {
            self.suppressed += 1;
            return LogDecision::RateLimited;
        }
        if self.seen.insert(key, LastLogged { logged_at: now, repeats: 0 }).is_none() {
            self.order.push_back(key);
            while self.seen.len() > self.cfg.max_keys.max(1) {
                match self.order.pop_front() {
                    Some(old) => {
                        self.seen.remove(&old);
                    }
                    None => break,
                }
            }
        }
        let suppressed = std::mem::take(&mut self.suppressed);
        LogDecision::Log { repeats, suppressed }
    }

    /// Number of distinct keys remembered.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    fn take_token(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last_refill {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.cfg.rate_per_sec).min(self.cfg.burst);
        }
        self.last_refill = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::Decision;

    fn rec(profile: &str, name: &str) -> AuditRecord {
        AuditRecord {
            decision: Decision::Denied,
            operation: Some("open".into()),
            profile: Some(profile.into()),
            name: Some(name.into()),
            denied_mask: Some("r".into()),
            ..AuditRecord::default()
        }
    }

    #[test]
    fn ring_is_bounded_and_keeps_the_newest() {
        let mut ring = Ring::new(3);
        for i in 0..5 {
            ring.push(rec("p", &format!("/f{i}")), None, SystemTime::UNIX_EPOCH);
        }
        assert_eq!(ring.len(), 3);
        let s = ring.snapshot(&Query::default());
        let names: Vec<_> = s.records.iter().map(|e| e.record.name.clone().unwrap()).collect();
        assert_eq!(names, ["/f2", "/f3", "/f4"]);
        assert_eq!((s.total, s.capacity), (5, 3));
        assert_eq!(s.records[0].id, 3);
    }

    #[test]
    fn ring_filters_by_profile_limit_and_cursor() {
        let mut ring = Ring::new(10);
        for (p, n) in [("a", "/1"), ("b", "/2"), ("a//child", "/3"), ("ab", "/4"), ("a", "/5")] {
            ring.push(rec(p, n), None, SystemTime::UNIX_EPOCH);
        }
        let names = |q: Query| ring.snapshot(&q).records.into_iter().map(|e| e.record.name.unwrap()).collect::<Vec<_>>();
        assert_eq!(names(Query { profile: Some("a".into()), ..Query::default() }), ["/1", "/3", "/5"]);
        assert_eq!(names(Query { profile: Some("a".into()), limit: Some(2), ..Query::default() }), ["/3", "/5"]);
        assert_eq!(names(Query { after: Some(3), ..Query::default() }), ["/4", "/5"]);
        assert_eq!(names(Query { limit: Some(0), ..Query::default() }), Vec::<String>::new());
    }

    #[test]
    fn snapshot_json_shape() {
        let mut ring = Ring::new(2);
        let container = ContainerRef { container_id: Some("c".repeat(64)), pod_uid: Some("u".into()), runtime: None };
        ring.push(rec("p", "/x"), Some(container), SystemTime::UNIX_EPOCH + Duration::from_millis(1500));
        let v = serde_json::to_value(ring.snapshot(&Query::default())).unwrap();
        let e = &v["records"][0];
        assert_eq!(e["id"], 1);
        assert_eq!(e["received_at"], "1970-01-01T00:00:01.500Z");
        assert_eq!(e["profile"], "p", "record fields are flattened into the entry");
        assert_eq!(e["decision"], "DENIED");
        assert_eq!(e["container"]["pod_uid"], "u");
        let back: Snapshot = serde_json::from_value(v).unwrap();
        assert_eq!(back.records[0].record.name.as_deref(), Some("/x"));
    }

    fn ids(s: &Snapshot) -> Vec<u64> {
        s.records.iter().map(|e| e.id).collect()
    }

    #[test]
    fn pages_are_capped_whatever_the_limit() {
        let mut ring = Ring::new(1000);
        for i in 0..1000 {
            ring.push(rec("p", &format!("/f{i}")), None, SystemTime::UNIX_EPOCH);
        }
        let s = ring.snapshot(&Query::default());
        assert_eq!(ids(&s), (901..=1000).collect::<Vec<_>>(), "default page: the newest {PAGE}, oldest first");
        assert_eq!((s.next_after, s.more, s.total), (1000, false, 1000));
        let s = ring.snapshot(&Query { limit: Some(1_000_000), ..Query::default() });
        assert_eq!(s.records.len(), PAGE_MAX);
        let s = ring.snapshot(&Query { after: Some(0), limit: Some(1_000_000), ..Query::default() });
        assert_eq!(ids(&s), (1..=PAGE_MAX as u64).collect::<Vec<_>>());
        assert_eq!((s.next_after, s.more), (PAGE_MAX as u64, true));
    }

    #[test]
    fn paging_forward_returns_every_matching_record_once() {
        let mut ring = Ring::new(64);
        for i in 0..100 {
            let profile = if i % 3 == 0 { "a" } else { "b" };
            ring.push(rec(profile, &format!("/f{i}")), None, SystemTime::UNIX_EPOCH);
        }
        let limits = PageLimits { default_records: 7, max_records: 7, max_bytes: usize::MAX };
        let mut after = 0;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let s = ring.page(&Query { profile: Some("a".into()), after: Some(after), ..Query::default() }, limits);
            assert!(s.records.len() <= 7);
            seen.extend(ids(&s));
            after = s.next_after;
            pages += 1;
            if !s.more {
                break;
            }
        }
        // The ring holds ids 37..=100; of those, profile "a" has the ids i+1 with i % 3 == 0.
        let want: Vec<u64> = (37..=100).filter(|id| (id - 1) % 3 == 0).collect();
        assert_eq!(seen, want);
        assert_eq!((after, pages), (100, want.len().div_ceil(7)));
        // Polling from the cursor: nothing, then exactly what is new.
        let poll = |ring: &Ring, after| ring.page(&Query { after: Some(after), ..Query::default() }, limits);
        assert!(poll(&ring, after).records.is_empty());
        ring.push(rec("b", "/new1"), None, SystemTime::UNIX_EPOCH);
        ring.push(rec("b", "/new2"), None, SystemTime::UNIX_EPOCH);
        let s = poll(&ring, after);
        assert_eq!((ids(&s), s.next_after, s.more), (vec![101, 102], 102, false));
        // A cursor from the future (another agent's ids) is kept rather than moved back.
        assert_eq!(poll(&ring, 5000).next_after, 5000);
        let zero = ring.page(&Query { after: Some(10), limit: Some(0), ..Query::default() }, limits);
        assert_eq!((zero.records.len(), zero.next_after, zero.more), (0, 10, true));
    }

    #[test]
    fn pages_are_bounded_in_bytes_and_records_in_text() {
        let mut ring = Ring::new(100);
        for i in 0..100 {
            // 10 KiB names: ~25 fit in a 256 KiB page.
            ring.push(rec("p", &format!("/{i}/{}", "x".repeat(10 * 1024))), None, SystemTime::UNIX_EPOCH);
        }
        let s = ring.snapshot(&Query { limit: Some(PAGE_MAX), ..Query::default() });
        let bytes = serde_json::to_vec(&s.records).unwrap().len();
        assert!(bytes <= PAGE_BYTES + 1024 && s.records.len() >= 20, "{} records, {bytes} bytes", s.records.len());
        assert_eq!(s.records.last().unwrap().id, 100, "the newest records");
        // One record always makes it, however small the byte limit, so a client never gets stuck.
        let tiny = PageLimits { max_bytes: 10, ..PageLimits::default() };
        let s = ring.page(&Query { after: Some(0), ..Query::default() }, tiny);
        assert_eq!((ids(&s), s.more, s.next_after), (vec![1], true, 1));
        // A crafted record far over the text bound is cut, flagged, and measured right.
        let id = ring.push(rec("p", &"y".repeat(200_000)), None, SystemTime::UNIX_EPOCH);
        let s = ring.page(&Query { after: Some(id - 1), ..Query::default() }, PageLimits::default());
        let e = &s.records[0];
        assert!(e.truncated && e.record.name.as_ref().unwrap().len() <= RECORD_TEXT, "{}", e.record.name.as_ref().unwrap().len());
        assert_eq!(e.json_len, serde_json::to_vec(e).unwrap().len());
        assert_eq!(serde_json::to_value(e).unwrap()["truncated"], true);
        assert!(!s.records.iter().any(|e| serde_json::to_value(e).unwrap().get("json_len").is_some()));
    }

    #[test]
    fn limiter_logs_each_denial_once_then_again_later() {
        let mut l = LogLimiter::new(LimiterConfig { repeat_after: Duration::from_secs(60), ..LimiterConfig::default() });
        let t = Instant::now();
        let a = rec("p", "/a");
        assert_eq!(l.check(&a, t), LogDecision::Log { repeats: 0, suppressed: 0 });
        assert_eq!(l.check(&a, t), LogDecision::Duplicate);
        assert_eq!(l.check(&a, t + Duration::from_secs(1)), LogDecision::Duplicate);
        assert_eq!(l.check(&rec("p", "/b"), t), LogDecision::Log { repeats: 0, suppressed: 0 });
        assert_eq!(l.check(&rec("q", "/a"), t), LogDecision::Log { repeats: 0, suppressed: 0 });
        assert_eq!(l.check(&a, t + Duration::from_secs(61)), LogDecision::Log { repeats: 2, suppressed: 0 });
    }

    #[test]
    fn limiter_rate_limits_a_storm_and_stays_bounded() {
        let cfg = LimiterConfig { max_keys: 100, repeat_after: Duration::from_secs(600), rate_per_sec: 10.0, burst: 20.0 };
        let mut l = LogLimiter::new(cfg);
        let t = Instant::now();
        // 10 000 distinct denials within one second: only the burst gets through.
        let (mut logged, mut reported) = (0, 0);
        for i in 0..10_000 {
            let at = t + Duration::from_micros(i * 100);
            if let LogDecision::Log { suppressed, .. } = l.check(&rec("p", &format!("/f{i}")), at) {
                logged += 1;
                reported += suppressed;
            }
        }
        assert!((20..=31).contains(&logged), "logged {logged}");
        assert!(l.remembered() <= 100);
        // After a quiet second, the next line reports how many were swallowed.
        match l.check(&rec("p", "/new"), t + Duration::from_secs(3)) {
            LogDecision::Log { suppressed, .. } => assert_eq!(reported + suppressed, 10_000 - logged),
            other => panic!("{other:?}"),
        }
    }
}
