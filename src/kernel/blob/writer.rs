//! A writer of AppArmor binary policy in `apparmor_parser`'s layout, for tests only: the
//! library's unit tests use it, and the fake parser (`examples/fake_apparmor_parser.rs`)
//! includes this same file to write its cache blobs. Production code only reads blobs.

use super::code;

/// The version word `apparmor_parser` 3.0.8 writes for kernel ABI 7 (policy and parser ABI 2).
pub const VERSION_3_0_8: u32 = 0x0020_2007;

/// One profile to write, header included.
pub struct Profile<'a> {
    /// The name string exactly as written (`parent//child` for a child).
    pub name: &'a [u8],
    /// A `namespace` string in the header.
    pub namespace: Option<&'a str>,
    /// The header's version word; `None` writes no version (a later header inherits it).
    pub version: Option<u32>,
    /// The packed flags: hat, mode, audit.
    pub flags: [u32; 3],
    /// Key/value entries of the profile's `data` struct (none: no struct).
    pub data: &'a [(&'a str, &'a [u8])],
}

/// Appends `[header] NAME "profile" STRUCT … STRUCTEND` and returns where the profile entry
/// starts (what the kernel hashes from).
pub fn profile(out: &mut Vec<u8>, p: &Profile<'_>) -> usize {
    if let Some(v) = p.version {
        u32_entry(out, Some("version"), v);
    }
    if let Some(ns) = p.namespace {
        string(out, Some("namespace"), ns.as_bytes());
    }
    let start = out.len();
    struct_start(out, "profile");
    string(out, None, p.name);
    struct_start(out, "flags");
    for word in p.flags {
        u32_entry(out, None, word);
    }
    struct_end(out);
    // Capabilities: allow, audit, quiet, and a reserved word, as the parser writes them.
    for _ in 0..4 {
        u32_entry(out, None, 0);
    }
    if !p.data.is_empty() {
        struct_start(out, "data");
        for (key, value) in p.data {
            string(out, None, key.as_bytes());
            blob(out, None, value);
        }
        struct_end(out);
    }
    struct_end(out);
    start
}

/// A NAME tag.
pub fn name(out: &mut Vec<u8>, tag: &str) {
    out.push(code::NAME);
    chunk16(out, tag.as_bytes());
}

/// A U32 entry, tagged or not.
pub fn u32_entry(out: &mut Vec<u8>, tag: Option<&str>, value: u32) {
    if let Some(tag) = tag {
        name(out, tag);
    }
    out.push(code::U32);
    out.extend_from_slice(&value.to_le_bytes());
}

/// A STRING entry (a NUL is appended), tagged or not.
pub fn string(out: &mut Vec<u8>, tag: Option<&str>, value: &[u8]) {
    if let Some(tag) = tag {
        name(out, tag);
    }
    out.push(code::STRING);
    chunk16(out, value);
}

/// A BLOB entry, tagged or not.
pub fn blob(out: &mut Vec<u8>, tag: Option<&str>, value: &[u8]) {
    if let Some(tag) = tag {
        name(out, tag);
    }
    out.push(code::BLOB);
    let len = u32::try_from(value.len()).expect("a blob entry over 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value);
}

/// `NAME tag` `STRUCT`.
pub fn struct_start(out: &mut Vec<u8>, tag: &str) {
    name(out, tag);
    out.push(code::STRUCT);
}

/// `STRUCTEND`.
pub fn struct_end(out: &mut Vec<u8>) {
    out.push(code::STRUCTEND);
}

/// `u16` length including the NUL this appends, then the bytes and the NUL.
fn chunk16(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len() + 1).expect("a string entry over 64 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    out.push(0);
}
