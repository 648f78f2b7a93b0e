//! Reader of AppArmor binary policy: the blob `apparmor_parser` compiles a profile file into
//! (its cache file, or `-S` output) and the kernel takes through `<securityfs>/apparmor/.load`
//! or `.replace`.
//!
//! It tells, without loading anything, what the kernel would make of a blob: every profile's
//! full name as the kernel lists it (children flattened as `parent//child`), the namespace the
//! load goes to, the mode, and the sha1 the kernel shows in `policy/profiles/*/sha1`. It follows
//! the kernel's `aa_unpack()` (security/apparmor/policy_unpack.c, checked against 6.1) step by
//! step where that decides a name, namespace, mode or hash:
//!
//! - a blob is a sequence of `[header] profile` pairs. The header is `NAME "version" U32`
//!   (required in the first header, inherited by later ones) and an optional
//!   `NAME "namespace" STRING`; the profile is `NAME "profile" STRUCT`, an unnamed STRING with
//!   its name, …, and the matching `STRUCTEND`;
//! - a profile's sha1 is SHA-1 of the little-endian version word followed by the bytes from its
//!   `NAME "profile"` entry through its `STRUCTEND` (`aa_calc_profile_hash`);
//! - its mode comes from the second u32 of its `flags` struct, except that bit 11 of the version
//!   word (`FORCE_COMPLAIN_FLAG`, set by `apparmor_parser -C`) makes every profile complain;
//! - a name `:ns:name` (or `:ns://name`) names a namespace the way `aa_splitn_fqname` splits it,
//!   and a whole blob loads into one namespace (`aa_replace_profiles` refuses mixed ones).
//!
//! Where this reader is stricter than the kernel (names that are not UTF-8 or hold control
//! characters such as the newline `apparmor_parser` lets through from `"\n"`, a profile that
//! renames another, entry types the kernel would only trip over later) it refuses the blob;
//! it never accepts a blob and reports a name, mode or hash other than the kernel's. The
//! profile body past the flags is walked entry by entry to its closing `STRUCTEND` without
//! interpreting the rules. Nothing here recurses or allocates from a length read out of the
//! blob: every length is checked against the bytes that are actually there.

use sha1::{Digest, Sha1};
use sha2::Sha256;

use crate::kernel::listing::Mode;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod writer;

/// Entry type codes of the format (the kernel's `enum aa_code`).
pub mod code {
    /// A `u8`.
    pub const U8: u8 = 0;
    /// A little-endian `u16`.
    pub const U16: u8 = 1;
    /// A little-endian `u32`.
    pub const U32: u8 = 2;
    /// A little-endian `u64`.
    pub const U64: u8 = 3;
    /// A tag naming the next entry: `u16` length (NUL included), bytes.
    pub const NAME: u8 = 4;
    /// A NUL-terminated string: `u16` length (NUL included), bytes.
    pub const STRING: u8 = 5;
    /// Opaque bytes: `u32` length, bytes.
    pub const BLOB: u8 = 6;
    /// Opens a struct.
    pub const STRUCT: u8 = 7;
    /// Closes a struct.
    pub const STRUCTEND: u8 = 8;
    /// Opens a list.
    pub const LIST: u8 = 9;
    /// Closes a list.
    pub const LISTEND: u8 = 10;
    /// Opens an array: `u16` element count.
    pub const ARRAY: u8 = 11;
    /// Closes an array.
    pub const ARRAYEND: u8 = 12;
}

/// The kernel ABI bits of the version word (`K_ABI_MASK`).
const ABI_MASK: u32 = 0x3ff;
/// Oldest and newest policy ABI a kernel takes: 6.1 accepts 5..=8, 6.2 and later also 9.
const ABI_MIN: u32 = 5;
const ABI_MAX: u32 = 9;
/// `FORCE_COMPLAIN_FLAG`: every profile under this header loads in complain mode.
const FORCE_COMPLAIN: u32 = 0x800;

/// One profile of a blob, as the kernel will hold it after loading the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProfile {
    /// Full name as the kernel lists it, without the namespace: `a`, `a//child`, `/usr/bin/x`.
    pub name: String,
    /// The namespace the whole blob loads into; `None` for the loader's own (normally root).
    pub namespace: Option<String>,
    /// The mode the kernel will list.
    pub mode: Mode,
    /// What `policy/profiles/*/sha1` will show on kernels up to 6.7: lowercase hex SHA-1.
    pub sha1: String,
    /// What `policy/profiles/*/sha256` will show on kernels from 6.8 on, which hash policy with
    /// SHA-256 instead: lowercase hex.
    pub sha256: String,
    /// Byte offset of the profile's `NAME "profile"` entry, for error messages.
    pub offset: usize,
}

impl BlobProfile {
    /// Whether `kernel`, a hash read from `policy/profiles/*/{sha1,sha256}`, is this profile's:
    /// the algorithm follows from the kernel (SHA-1 before Linux 6.8, SHA-256 since), and a
    /// 40-digit hex string never equals a 64-digit one, so comparing with both is exact.
    pub fn is_kernel_hash(&self, kernel: &str) -> bool {
        kernel == self.sha1 || kernel == self.sha256
    }

    /// This profile's hash in the algorithm of `kernel` (a hash the same kernel showed), for
    /// messages that put the two side by side; SHA-1 when the kernel's is not recognisable.
    pub fn hash_like(&self, kernel: Option<&str>) -> &str {
        if kernel.is_some_and(|k| k.len() == self.sha256.len()) { &self.sha256 } else { &self.sha1 }
    }
}

/// What is wrong with a blob, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// The bytes at `offset` are not what the format requires there (or the blob ends early).
    #[error("binary policy: expected {expected} at byte {offset}")]
    Malformed {
        /// Where the entry should start.
        offset: usize,
        /// What the format requires there.
        expected: &'static str,
    },
    /// An entry type code the format does not have.
    #[error("binary policy: unknown entry type {code} at byte {offset}")]
    UnknownType {
        /// The type byte's offset.
        offset: usize,
        /// The byte found, outside the known [`code`]s `0..=12`.
        code: u8,
    },
    /// A header's version word names an ABI no kernel takes.
    #[error("binary policy: unsupported policy ABI {} (version word {version:#x}) at byte {offset}", version & ABI_MASK)]
    Version {
        /// Where the version entry starts.
        offset: usize,
        /// The whole version word: the ABI in its low bits, flags such as force-complain above.
        version: u32,
    },
    /// The flags struct names a mode the kernel does not know.
    #[error("binary policy: unknown profile mode {mode} at byte {offset}")]
    Mode {
        /// Where the mode word's entry starts.
        offset: usize,
        /// The second word of the flags struct, outside the known `0..=4` (enforce, complain,
        /// kill, unconfined, user).
        mode: u32,
    },
    /// An empty profile or namespace name.
    #[error("binary policy: empty {what} at byte {offset}")]
    Empty {
        /// Where the string entry starts.
        offset: usize,
        /// "profile name" or "namespace".
        what: &'static str,
    },
    /// A profile or namespace name that is not UTF-8 or holds a control character (a newline
    /// would split the kernel's line-per-profile listing).
    #[error("binary policy: {what} is not UTF-8 text without control characters at byte {offset}")]
    NotText {
        /// Where the string entry starts.
        offset: usize,
        /// "profile name" or "namespace".
        what: &'static str,
    },
    /// A name with a space at the start or end of one of its parts: wherever a line is trimmed (the
    /// kernel's listing read back, the in-use scan) `" docker-default"` would pass for
    /// `docker-default`, which may not be ours.
    #[error("binary policy: {what} {name:?} at byte {offset} starts or ends with a space")]
    Whitespace {
        /// Where the string entry starts.
        offset: usize,
        /// "profile name" or "namespace".
        what: &'static str,
        /// The name as the blob spells it.
        name: String,
    },
    /// A profile that asks the kernel to rename (replace) another one.
    #[error("binary policy: profile {name:?} at byte {offset} renames {target:?}; renaming is not supported")]
    Rename {
        /// Where the profile entry starts.
        offset: usize,
        /// The renaming profile's name, without its namespace.
        name: String,
        /// The profile it would replace.
        target: String,
    },
    /// Profiles of one blob in different namespaces; the kernel refuses such a load.
    #[error("binary policy: profile at byte {offset} is in namespace {second:?}, an earlier one in {first:?}")]
    MixedNamespaces {
        /// Where the later profile's entry starts.
        offset: usize,
        /// The namespace of the earlier profiles (`None`: the loader's own).
        first: Option<String>,
        /// The later profile's namespace (`None`: the loader's own).
        second: Option<String>,
    },
    /// A child whose parent this blob does not define (see [`check_self_contained`]).
    #[error("binary policy: profile {name:?} at byte {offset} is a child of {parent:?}, which the same file does not define")]
    Orphan {
        /// Where the child's entry starts.
        offset: usize,
        /// The child's full name, `parent//child`.
        name: String,
        /// Its outermost ancestor the blob does not define: `a` for `a//b//c` when `a` is missing.
        parent: String,
    },
    /// One name defined twice in a blob (see [`check_self_contained`]).
    #[error("binary policy: profile {name:?} is defined again at byte {offset}")]
    Duplicate {
        /// Where the second definition starts.
        offset: usize,
        /// The full name defined twice, children as `parent//child`.
        name: String,
    },
}

/// Reads every profile of a blob. An empty blob has none.
pub fn parse(blob: &[u8]) -> Result<Vec<BlobProfile>, BlobError> {
    Ok(scan(blob)?.profiles)
}

/// The same blob with `FORCE_COMPLAIN_FLAG` set in every header, so that every profile loads in
/// complain mode: byte for byte what `apparmor_parser -C` sends to the kernel. The parser writes
/// no cache file under `-C`, so a complain-mode load of a cached blob goes through here.
pub fn force_complain(blob: &[u8]) -> Result<Vec<u8>, BlobError> {
    let scanned = scan(blob)?;
    let mut out = blob.to_vec();
    for at in scanned.version_words {
        let word = u32::from_le_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]) | FORCE_COMPLAIN;
        out[at..at + 4].copy_from_slice(&word.to_le_bytes());
    }
    Ok(out)
}

/// The rule that keeps a file from reaching into profiles it does not define: every ancestor of
/// every child (`a` and `a//b` for `a//b//c`) is defined in the same blob, and no name twice.
///
/// The kernel attaches a child whose parent is not in the blob to the parent already loaded,
/// so without this a file defining only `docker-default//x` would add a hat to a foreign
/// profile. Call it on every blob before it is loaded, next to the check of its top-level
/// names against foreign profiles.
pub fn check_self_contained(profiles: &[BlobProfile]) -> Result<(), BlobError> {
    let mut seen = std::collections::BTreeSet::new();
    for p in profiles {
        if !seen.insert(p.name.as_str()) {
            return Err(BlobError::Duplicate { offset: p.offset, name: p.name.clone() });
        }
    }
    for p in profiles {
        if let Some(parent) = ancestors(&p.name).find(|a| !seen.contains(a)) {
            return Err(BlobError::Orphan { offset: p.offset, name: p.name.clone(), parent: parent.to_string() });
        }
    }
    Ok(())
}

/// The profiles a child hangs under, outermost first, split like the kernel's
/// `__lookup_parent()`: at each `//`, left to right (`a///b` is `/b` under `a`).
pub fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    let mut from = 0;
    std::iter::from_fn(move || {
        let split = from + name.get(from..)?.find("//")?;
        from = split + 2;
        Some(&name[..split])
    })
}

/// A parsed blob plus where its version words are, for [`force_complain`].
struct Scanned {
    profiles: Vec<BlobProfile>,
    version_words: Vec<usize>,
}

fn scan(blob: &[u8]) -> Result<Scanned, BlobError> {
    let mut r = Reader { data: blob, pos: 0 };
    let mut version_words = Vec::new();
    let mut entries = Vec::new();
    let mut version = 0;
    let mut header_ns: Option<String> = None;
    while r.pos < blob.len() {
        let at = r.pos;
        match r.u32_named(Some(b"version")) {
            Some(v) => {
                version = v;
                version_words.push(r.pos - 4);
            }
            None if at == 0 => return Err(BlobError::Malformed { offset: at, expected: "the header's NAME \"version\" U32" }),
            None => {}
        }
        if !(ABI_MIN..=ABI_MAX).contains(&(version & ABI_MASK)) {
            return Err(BlobError::Version { offset: at, version });
        }
        let ns_at = r.pos;
        if let Some(ns) = r.str_named(Some(b"namespace")) {
            let ns = text(ns, ns_at, "namespace")?;
            // A later header naming another namespace is ignored by the kernel (it only
            // audits "invalid ns change"); the first one counts.
            header_ns.get_or_insert_with(|| ns.to_string());
        }
        entries.push(read_profile(&mut r, version)?);
    }
    let namespace = settle_namespace(header_ns, &entries)?;
    let profiles = entries.into_iter().map(|(p, _)| BlobProfile { namespace: namespace.clone(), ..p }).collect();
    Ok(Scanned { profiles, version_words })
}

/// The one namespace a load goes to, by `aa_replace_profiles()`'s rule: the header's, which
/// every namespaced name must match; else the first namespaced name's, which no profile without
/// one may precede and every later namespaced name must match.
fn settle_namespace(header: Option<String>, entries: &[(BlobProfile, Option<String>)]) -> Result<Option<String>, BlobError> {
    let mut settled = header;
    let mut plain_before = false;
    for (profile, own) in entries {
        let mixed = |first: Option<String>| BlobError::MixedNamespaces { offset: profile.offset, first, second: own.clone() };
        match (&settled, own) {
            (Some(ns), Some(own)) if ns != own => return Err(mixed(settled.clone())),
            (Some(_), _) => {}
            (None, Some(_)) if plain_before => return Err(mixed(None)),
            (None, Some(own)) => settled = Some(own.clone()),
            (None, None) => plain_before = true,
        }
    }
    Ok(settled)
}

/// One `NAME "profile" STRUCT … STRUCTEND`; returns the profile and the namespace its name
/// carried, if any.
fn read_profile(r: &mut Reader<'_>, version: u32) -> Result<(BlobProfile, Option<String>), BlobError> {
    let start = r.pos;
    if !r.named(code::STRUCT, Some(b"profile")) {
        return Err(BlobError::Malformed { offset: start, expected: "NAME \"profile\" STRUCT" });
    }
    let name_at = r.pos;
    let raw = r.str_named(None).ok_or(BlobError::Malformed { offset: name_at, expected: "the profile name STRING" })?;
    if raw.is_empty() {
        return Err(BlobError::Empty { offset: name_at, what: "profile name" });
    }
    let full = text(raw, name_at, "profile name")?;
    let (own_ns, name) = match split_fqname(full) {
        (Some(ns), Some(name)) => (Some(ns.to_string()), name),
        (Some(_), None) => return Err(BlobError::Empty { offset: name_at, what: "profile name" }),
        (None, _) => (None, full),
    };
    let padded = |part: &str| part.starts_with(' ') || part.ends_with(' ');
    if full.starts_with(' ') || name.split("//").any(padded) {
        return Err(BlobError::Whitespace { offset: name_at, what: "profile name", name: full.to_string() });
    }
    if let Some(ns) = own_ns.as_deref().filter(|ns| padded(ns)) {
        return Err(BlobError::Whitespace { offset: name_at, what: "namespace", name: ns.to_string() });
    }
    if let Some(target) = r.str_named(Some(b"rename")) {
        let target = String::from_utf8_lossy(target).into_owned();
        return Err(BlobError::Rename { offset: start, name: name.to_string(), target });
    }
    r.str_named(Some(b"attach"));
    let xmatch_at = r.pos;
    if r.blob_named(Some(b"aadfa")).is_some_and(|size| size > 0) && r.u32_named(None).is_none() {
        return Err(BlobError::Malformed { offset: xmatch_at, expected: "the xmatch length U32 after the xmatch DFA" });
    }
    r.str_named(Some(b"disconnected"));
    let mode = read_flags(r, version)?;
    skip_to_end(r)?;
    let sha1 = kernel_hash::<Sha1>(version, &r.data[start..r.pos]);
    let sha256 = kernel_hash::<Sha256>(version, &r.data[start..r.pos]);
    Ok((BlobProfile { name: name.to_string(), namespace: None, mode, sha1, sha256, offset: start }, own_ns))
}

/// The kernel's `aa_calc_profile_hash()`: the blob's version word (little endian), then the
/// profile's bytes, in lowercase hex.
fn kernel_hash<D: Digest>(version: u32, profile: &[u8]) -> String {
    let mut hasher = D::new();
    hasher.update(version.to_le_bytes());
    hasher.update(profile);
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The `flags` struct: hat flags, packed mode, audit; the mode as `unpack_profile()` derives it.
fn read_flags(r: &mut Reader<'_>, version: u32) -> Result<Mode, BlobError> {
    let at = r.pos;
    if !r.named(code::STRUCT, Some(b"flags")) {
        return Err(BlobError::Malformed { offset: at, expected: "NAME \"flags\" STRUCT" });
    }
    let word = |r: &mut Reader<'_>| {
        let at = r.pos;
        r.u32_named(None).ok_or(BlobError::Malformed { offset: at, expected: "a U32 of the profile flags" }).map(|v| (at, v))
    };
    word(r)?;
    let (mode_at, packed) = word(r)?;
    word(r)?;
    let end_at = r.pos;
    if !r.named(code::STRUCTEND, None) {
        return Err(BlobError::Malformed { offset: end_at, expected: "the STRUCTEND of the profile flags" });
    }
    Ok(match packed {
        _ if version & FORCE_COMPLAIN != 0 => Mode::Complain,
        0 => Mode::Enforce,
        1 => Mode::Complain,
        2 => Mode::Kill,
        3 => Mode::Unconfined,
        // PACKED_MODE_USER: kernels 6.2 and later.
        4 => Mode::User,
        mode => return Err(BlobError::Mode { offset: mode_at, mode }),
    })
}

/// Walks the rest of a profile (one struct level is open) to its closing STRUCTEND.
fn skip_to_end(r: &mut Reader<'_>) -> Result<(), BlobError> {
    let mut depth = 1usize;
    while depth > 0 {
        if r.pos >= r.data.len() {
            return Err(BlobError::Malformed { offset: r.pos, expected: "the STRUCTEND closing the profile" });
        }
        match r.skip_entry()? {
            code::STRUCT => depth += 1,
            code::STRUCTEND => depth -= 1,
            _ => {}
        }
    }
    Ok(())
}

/// `aa_splitn_fqname()`: `:ns:name` or `:ns://name` → (namespace, name). Whitespace before the
/// name, the namespace and the name after the split is skipped as the kernel skips it.
fn split_fqname(full: &str) -> (Option<&str>, Option<&str>) {
    let trimmed = full.trim_start_matches(is_kernel_space);
    let Some(rest) = trimmed.strip_prefix(':') else {
        return (None, Some(full));
    };
    let ns_start = rest.trim_start_matches(is_kernel_space);
    if ns_start.is_empty() {
        return (None, None);
    }
    let Some(colon) = rest.find(':') else {
        // A namespace without a profile.
        return (Some(ns_start), None);
    };
    let skipped = rest.len() - ns_start.len();
    let ns = rest.get(skipped..colon).filter(|ns| !ns.is_empty());
    let after = &rest[colon + 1..];
    let after = if after.len() > 1 { after.strip_prefix("//").unwrap_or(after) } else { after };
    let name = after.trim_start_matches(is_kernel_space);
    (ns, (!name.is_empty()).then_some(name))
}

/// The kernel's `isspace()` on the first byte of a UTF-8 character (where 0xa0 cannot occur).
fn is_kernel_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r')
}

fn text<'a>(raw: &'a [u8], offset: usize, what: &'static str) -> Result<&'a str, BlobError> {
    if raw.is_empty() {
        return Err(BlobError::Empty { offset, what });
    }
    std::str::from_utf8(raw).ok().filter(|s| !s.contains(char::is_control)).ok_or(BlobError::NotText { offset, what })
}

/// A read head over the blob. The `*_named` methods mirror the kernel's `aa_unpack_*()`: they
/// either consume the whole entry and return it, or return `None` and leave the head where it
/// was.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    fn le_u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn le_u32(&mut self) -> Option<u32> {
        self.bytes(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// `u16` length, then that many bytes.
    fn chunk16(&mut self) -> Option<&'a [u8]> {
        let len = self.le_u16()?;
        self.bytes(usize::from(len))
    }

    fn code(&mut self, code: u8) -> bool {
        if self.data.get(self.pos) == Some(&code) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `aa_unpack_nameX()`: an optional NAME tag (which must be `name` when one is asked for),
    /// then the type `code`.
    fn named(&mut self, code: u8, name: Option<&[u8]>) -> bool {
        let start = self.pos;
        let ok = (|| {
            if self.code(code::NAME) {
                // The kernel would go on after a tag that overruns the blob when no name is
                // asked for, reading its length as the next type code; we refuse instead.
                let tag = self.chunk16()?;
                if let Some(want) = name {
                    let (last, _) = tag.split_last()?;
                    if *last != 0 || c_str(tag) != want {
                        return None;
                    }
                }
            } else if name.is_some() {
                return None;
            }
            self.code(code).then_some(())
        })();
        if ok.is_none() {
            self.pos = start;
        }
        ok.is_some()
    }

    fn rewind_unless<T>(&mut self, start: usize, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.pos = start;
        }
        value
    }

    fn u32_named(&mut self, name: Option<&[u8]>) -> Option<u32> {
        let start = self.pos;
        let v = if self.named(code::U32, name) { self.le_u32() } else { None };
        self.rewind_unless(start, v)
    }

    /// `aa_unpack_str()`: the string up to its first NUL (the kernel uses it as a C string);
    /// its last byte must be NUL.
    fn str_named(&mut self, name: Option<&[u8]>) -> Option<&'a [u8]> {
        let start = self.pos;
        let s = if self.named(code::STRING, name) { self.chunk16().filter(|s| s.last() == Some(&0)).map(c_str) } else { None };
        self.rewind_unless(start, s)
    }

    /// `aa_unpack_blob()`: the blob's size.
    fn blob_named(&mut self, name: Option<&[u8]>) -> Option<usize> {
        let start = self.pos;
        let size = if self.named(code::BLOB, name) {
            self.le_u32().and_then(|len| usize::try_from(len).ok()).and_then(|len| self.bytes(len)).map(<[u8]>::len)
        } else {
            None
        };
        self.rewind_unless(start, size)
    }

    /// Steps over one entry of any type; returns its type code.
    fn skip_entry(&mut self) -> Result<u8, BlobError> {
        let at = self.pos;
        let truncated = BlobError::Malformed { offset: at, expected: "a complete entry" };
        let &code = self.data.get(at).ok_or(truncated.clone())?;
        self.pos += 1;
        let payload = match code {
            code::U8 => self.bytes(1).map(drop),
            code::U16 | code::ARRAY => self.bytes(2).map(drop),
            code::U32 => self.bytes(4).map(drop),
            code::U64 => self.bytes(8).map(drop),
            code::NAME | code::STRING => self.chunk16().map(drop),
            code::BLOB => self.le_u32().and_then(|len| usize::try_from(len).ok()).and_then(|len| self.bytes(len)).map(drop),
            code::STRUCT | code::STRUCTEND | code::LIST | code::LISTEND | code::ARRAYEND => Some(()),
            _ => return Err(BlobError::UnknownType { offset: at, code }),
        };
        payload.ok_or(truncated).map(|()| code)
    }
}

/// The bytes before the first NUL.
fn c_str(s: &[u8]) -> &[u8] {
    s.iter().position(|&b| b == 0).map_or(s, |n| &s[..n])
}
