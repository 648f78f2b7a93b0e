//! The compiled-policy cache: binary policy kept in the state directory (a hostPath that
//! survives reboots), keyed by the file's identity (its content, every include, the parser's
//! version and the kernel's features), so that a restart or a reboot with nothing changed
//! loads every profile without running the parser.
//!
//! An entry is written atomically (temp file, rename) and carries its key, its length
//! and the sha256 of the policy. An entry is used only when all three match and the policy
//! reads as binary policy; anything else (truncated, foreign, corrupt) is removed and the file
//! is compiled again. The cache is bounded by size: the least recently used entries go first.

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::Compiled;

/// The first line of every entry.
const MAGIC: &[u8] = b"apparmor-loader policy cache 1\n";

/// A directory of compiled policy, bounded in size.
#[derive(Debug, Clone)]
pub struct PolicyCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// What a cache entry looks like on disk, for a given key and policy.
fn encode(key: &str, blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 200 + blob.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(format!("{key}\n{}\n{}\n", blob.len(), crate::scan::hex(&Sha256::digest(blob))).as_bytes());
    out.extend_from_slice(blob);
    out
}

/// The policy of an entry, when it is whole and belongs to `key`.
fn decode(key: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let mut lines = rest.splitn(4, |b| *b == b'\n');
    let (k, len, sha, blob) = (lines.next()?, lines.next()?, lines.next()?, lines.next()?);
    let len: usize = std::str::from_utf8(len).ok()?.parse().ok()?;
    let whole = k == key.as_bytes() && blob.len() == len && sha == crate::scan::hex(&Sha256::digest(blob)).as_bytes();
    whole.then(|| blob.to_vec())
}

/// Keys are identities: lowercase hex, so they are safe file names.
fn valid_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl PolicyCache {
    /// A cache in `dir` holding at most `max_bytes` (0 disables it).
    pub fn new(dir: PathBuf, max_bytes: u64) -> PolicyCache {
        PolicyCache { dir, max_bytes }
    }

    /// The compiled policy for `key`, if a whole entry for exactly that key is there. A bad
    /// entry is removed, never loaded.
    pub fn get(&self, key: &str) -> Option<Compiled> {
        if self.max_bytes == 0 || !valid_key(key) {
            return None;
        }
        let path = self.dir.join(key);
        let bytes = read_regular(&path, self.max_bytes)?;
        let compiled = decode(key, &bytes).and_then(|blob| Compiled::from_blob(blob).ok());
        match &compiled {
            Some(_) => {
                // Recently used: evicted last.
                let _ = fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
            }
            None => {
                tracing::warn!(path = %path.display(), "ignoring a damaged or foreign compiled-policy cache entry; compiling again");
                let _ = fs::remove_file(&path);
            }
        }
        compiled
    }

    /// Stores the policy for `key` atomically. Failures only cost a compile later: logged.
    pub fn put(&self, key: &str, compiled: &Compiled) {
        if self.max_bytes == 0 || !valid_key(key) {
            return;
        }
        let bytes = encode(key, &compiled.blob);
        if bytes.len() as u64 > self.max_bytes {
            return;
        }
        if let Err(e) = self.write(key, &bytes) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the compiled-policy cache");
        }
    }

    /// Temp file and rename, without fsync: an entry a crash leaves torn or empty fails its
    /// check and is compiled again, so durability buys nothing but two disk flushes per file
    /// of a cold start.
    fn write(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        fs::DirBuilder::new().mode(0o700).recursive(true).create(&self.dir)?;
        let tmp = self.dir.join(format!(".{key}.tmp{}", std::process::id()));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        fs::rename(&tmp, self.dir.join(key))
    }

    /// Removes the least recently used entries until the cache fits its size, and any
    /// leftover temp file or stranger.
    pub fn trim(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else { return };
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for e in rd.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            let name = e.file_name();
            if !meta.is_file() || !name.to_str().is_some_and(valid_key) {
                let _ = fs::remove_file(e.path());
                continue;
            }
            entries.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len(), e.path()));
        }
        entries.sort();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// Reads a regular file of at most `max` bytes without blocking on a FIFO.
fn read_regular(path: &Path, max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::File::options().read(true).custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits()).open(path).ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    let mut bytes = Vec::new();
    f.take(max).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(name: &str) -> Compiled {
        Compiled::from_blob(crate::kernel::fake::policy(&[name.to_string()], "content")).unwrap()
    }

    fn key(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn round_trip_and_only_for_its_key() {
        let d = tempfile::tempdir().unwrap();
        let cache = PolicyCache::new(d.path().join("cache"), 1 << 20);
        assert!(cache.get(&key(1)).is_none());
        let c = compiled("a");
        cache.put(&key(1), &c);
        assert_eq!(cache.get(&key(1)), Some(c.clone()));
        assert!(cache.get(&key(2)).is_none());
        // An entry copied under another key is foreign: ignored and removed.
        fs::copy(d.path().join("cache").join(key(1)), d.path().join("cache").join(key(2))).unwrap();
        assert!(cache.get(&key(2)).is_none());
        assert!(!d.path().join("cache").join(key(2)).exists());
        assert!(cache.get("../../etc/passwd").is_none());
    }

    #[test]
    fn damaged_entries_are_never_used() {
        let d = tempfile::tempdir().unwrap();
        let cache = PolicyCache::new(d.path().to_path_buf(), 1 << 20);
        let c = compiled("a");
        let whole = encode(&key(1), &c.blob);
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let bad_policy = encode(&key(1), b"not policy");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", whole[..whole.len() - 3].to_vec()),
            ("one bit flipped", flipped),
            ("no header", c.blob.clone()),
            ("empty", Vec::new()),
            ("hash right, not policy", bad_policy),
        ];
        for (what, bytes) in cases {
            fs::write(d.path().join(key(1)), bytes).unwrap();
            assert!(cache.get(&key(1)).is_none(), "{what}");
        }
        nix::unistd::mkfifo(&d.path().join(key(3)), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(cache.get(&key(3)).is_none(), "a FIFO is no entry and does not block");
    }

    #[test]
    fn the_size_bound_evicts_least_recently_used_first() {
        let d = tempfile::tempdir().unwrap();
        let one = encode(&key(1), &compiled("a").blob).len() as u64;
        let cache = PolicyCache::new(d.path().to_path_buf(), one * 2 + one / 2);
        let old = SystemTime::now() - std::time::Duration::from_secs(100);
        for n in 1..=3 {
            cache.put(&key(n), &compiled("a"));
            let t = old + std::time::Duration::from_secs(u64::from(n));
            fs::File::options().write(true).open(d.path().join(key(n))).unwrap().set_modified(t).unwrap();
        }
        assert!(cache.get(&key(1)).is_some(), "used now: the most recent");
        fs::write(d.path().join(".stray.tmp1"), "x").unwrap();
        cache.trim();
        let left: Vec<bool> = (1..=3).map(|n| d.path().join(key(n)).exists()).collect();
        assert_eq!(left, vec![true, false, true]);
        assert!(!d.path().join(".stray.tmp1").exists());
        let off = PolicyCache::new(d.path().to_path_buf(), 0);
        assert!(off.get(&key(1)).is_none());
    }
}
