//! Size bounds on what the ring stores: a record's text is cut to a budget, and every stored entry's
//! JSON size is known, so `/denials` pages can be bounded in bytes without serializing twice.
//!
//! The cut works on the record's JSON value rather than on named fields, so a field added to
//! [`AuditRecord`] later is bounded too.

use super::record::AuditRecord;
use serde::Serialize;

/// Counts the bytes a serializer writes, without keeping them.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `value` in compact JSON, without allocating it.
pub fn json_len<T: Serialize>(value: &T) -> usize {
    let mut counter = Counter(0);
    // Serializing plain data into a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Cuts the longest text fields of `record` so that its text totals at most `max` bytes, and says
/// whether anything was cut. Short fields are never touched: every field keeps `min(len, cap)` bytes
/// for the largest `cap` that fits (cut on a character boundary).
pub fn bound_text(record: AuditRecord, max: usize) -> (AuditRecord, bool) {
    // Text is never longer than its JSON, so a record whose JSON fits needs no look at its fields.
    if json_len(&record) <= max {
        return (record, false);
    }
    let Ok(mut value) = serde_json::to_value(&record) else { return (record, false) };
    let mut texts = Vec::new();
    strings_of(&mut value, &mut texts);
    let lens: Vec<usize> = texts.iter().map(|s| s.len()).collect();
    if lens.iter().sum::<usize>() <= max {
        return (record, false);
    }
    let cap = water_level(&lens, max);
    for s in texts {
        if s.len() > cap {
            let mut end = cap;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
    }
    match serde_json::from_value(value) {
        Ok(cut) => (cut, true),
        // Every text field of a record deserializes from any string, so this does not happen; if it
        // did, an empty record keeps the bound.
        Err(_) => (AuditRecord { decision: super::record::Decision::Other(String::new()), ..AuditRecord::default() }, true),
    }
}

/// Every string value inside `value` (object keys excluded).
fn strings_of<'a>(value: &'a mut serde_json::Value, out: &mut Vec<&'a mut String>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| strings_of(v, out)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| strings_of(v, out)),
        _ => {}
    }
}

/// The largest `cap` with `sum(min(len, cap)) <= max`.
fn water_level(lens: &[usize], max: usize) -> usize {
    let mut sorted = lens.to_vec();
    sorted.sort_unstable();
    let mut left = max;
    for (i, &len) in sorted.iter().enumerate() {
        let rest = sorted.len() - i;
        if len * rest > left {
            return left / rest;
        }
        left -= len;
    }
    usize::MAX
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::Decision;

    #[test]
    fn water_level_keeps_short_fields_whole() {
        assert_eq!(water_level(&[10, 20, 30], 100), usize::MAX);
        assert_eq!(water_level(&[10, 1000, 1000], 110), 50);
        assert_eq!(water_level(&[10, 1000], 110), 100);
        assert_eq!(water_level(&[], 5), usize::MAX);
        for (lens, max) in [(vec![3, 7, 900, 5000, 12], 1000), (vec![1; 50], 10), (vec![4096, 4096, 4096], 8192)] {
            let cap = water_level(&lens, max);
            assert!(lens.iter().map(|&l| l.min(cap)).sum::<usize>() <= max, "{lens:?} {max} -> {cap}");
            assert!(lens.iter().map(|&l| l.min(cap + 1)).sum::<usize>() > max, "{lens:?} {max}: {cap} is the largest");
        }
    }

    #[test]
    fn a_normal_record_is_kept_as_is() {
        let rec = AuditRecord { name: Some("/etc/hosts".into()), profile: Some("web".into()), ..AuditRecord::default() };
        assert_eq!(bound_text(rec.clone(), 4096), (rec, false));
    }

    #[test]
    fn long_fields_are_cut_on_char_boundaries_and_the_rest_survives() {
        let long_name = "é".repeat(30_000); // 60 000 bytes of two-byte characters
        let rec = AuditRecord {
            decision: Decision::Denied,
            operation: Some("open".into()),
            profile: Some("p".repeat(20_000)),
            name: Some(long_name),
            pid: Some(7),
            ..AuditRecord::default()
        };
        let (cut, truncated) = bound_text(rec, 16 * 1024);
        assert!(truncated);
        let text = |r: &AuditRecord| {
            [&r.operation, &r.profile, &r.name].iter().map(|f| f.as_ref().map_or(0, String::len)).sum::<usize>()
        };
        assert!(text(&cut) <= 16 * 1024, "{}", text(&cut));
        assert_eq!((cut.operation.as_deref(), cut.pid, cut.decision), (Some("open"), Some(7), Decision::Denied));
        let name = cut.name.unwrap();
        assert!(name.len() > 7000 && name.chars().all(|c| c == 'é'), "{}", name.len());
        assert!(cut.profile.unwrap().len() > 7000);
    }

    #[test]
    fn json_len_is_the_serialized_length() {
        let rec = AuditRecord { name: Some("a\"b\\c\u{1}".into()), ..AuditRecord::default() };
        assert_eq!(json_len(&rec), serde_json::to_vec(&rec).unwrap().len());
    }
}
