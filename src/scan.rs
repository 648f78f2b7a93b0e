//! Reads the profiles directory into the *desired* state: which files exist and what
//! their content hash is.
//!
//! The directory is usually a ConfigMap volume: `name -> ..data/name`,
//! `..data -> ..2026_11_28_…`. Only regular files and symlinks that stay inside the
//! directory count; everything else is skipped or rejected with a reason naming it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// How to read the directory.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Descend into subdirectories.
    pub recursive: bool,
    /// Larger files are rejected.
    pub max_file_size: u64,
}

/// A profile file that can be handed to the parser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFile {
    /// The key: the path relative to the directory (`payment-api`, `team/x` when recursive).
    pub key: String,
    /// The path the user knows (`DIR/key`), used in every message.
    pub shown: PathBuf,
    /// The resolved path the parser reads; a ConfigMap's timestamped dirs never change in place,
    /// so the content behind it is the content that was hashed.
    pub real: PathBuf,
    /// sha256 of the content, lowercase hex.
    pub sha256: String,
    /// What identifies its compiled policy (content, includes, toolchain): the sha256 until
    /// the includes are resolved (`crate::reconcile::identity`).
    pub identity: String,
}

/// One entry of the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEntry {
    /// A readable profile file.
    File(SourceFile),
    /// A file that cannot be used, with a reason naming it.
    Rejected {
        /// Relative path, as for [`SourceFile::key`].
        key: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// The directory itself cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the profiles directory {}", path.display())]
pub struct ScanError {
    /// The directory.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// Whether a directory entry name is something a profile directory may hold besides
/// profiles: dotfiles (including the ConfigMap's `..data` and `..2026_…` dirs), editor
/// and package-manager leftovers.
pub fn is_ignored_name(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp")
        || name.contains(".dpkg-")
        || name.ends_with(".rpmnew")
        || name.ends_with(".rpmsave")
        || (name.starts_with('#') && name.ends_with('#'))
        || name.starts_with("README")
        || name.ends_with(".md")
        || name.ends_with(".yaml")
        || name.ends_with(".yml")
}

/// How deep `--recursive` descends.
const MAX_DEPTH: usize = 16;

/// Reads the directory. Entries come back sorted by key.
pub fn scan(dir: &Path, opts: &ScanOptions) -> Result<Vec<ScanEntry>, ScanError> {
    scan_with(dir, opts, &mut HashMemo::default())
}

/// Like [`scan`], reading only the files whose metadata changed since the last scan with the
/// same `memo`.
pub fn scan_with(dir: &Path, opts: &ScanOptions, memo: &mut HashMemo) -> Result<Vec<ScanEntry>, ScanError> {
    let root = fs::canonicalize(dir).map_err(|source| ScanError { path: dir.to_path_buf(), source })?;
    let mut out = BTreeMap::new();
    let walked = walk(dir, &root, "", opts, &mut out, memo).map_err(|source| ScanError { path: dir.to_path_buf(), source });
    memo.end_scan();
    walked?;
    Ok(out.into_values().collect())
}

/// What identifies a file's content without reading it: inode, size, mtime and ctime (a
/// rename, a write or a chmod changes one of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// The stamp of a file's metadata.
    pub fn of(m: &fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    /// Whether the file was last modified long enough ago that a further write would show in
    /// its mtime (a write within the same clock tick would not).
    pub fn settled(m: &fs::Metadata) -> bool {
        m.modified().ok().and_then(|t| std::time::SystemTime::now().duration_since(t).ok()).is_some_and(|age| age > SETTLED)
    }
}

/// A file modified this recently is never trusted by its metadata alone.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

/// Content hashes of the files of the last scan, by resolved path and stamp.
#[derive(Debug, Default)]
pub struct HashMemo {
    known: std::collections::HashMap<PathBuf, (FileStamp, String)>,
    seen: std::collections::HashSet<PathBuf>,
}

impl HashMemo {
    fn get(&mut self, real: &Path, meta: &fs::Metadata) -> Option<String> {
        self.seen.insert(real.to_path_buf());
        let (stamp, sha) = self.known.get(real)?;
        (*stamp == FileStamp::of(meta)).then(|| sha.clone())
    }

    fn put(&mut self, real: &Path, meta: &fs::Metadata, sha: &str) {
        if FileStamp::settled(meta) {
            self.known.insert(real.to_path_buf(), (FileStamp::of(meta), sha.to_string()));
        }
    }

    fn end_scan(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.known.retain(|p, _| seen.contains(p));
    }
}

fn walk(
    shown_dir: &Path,
    root: &Path,
    prefix: &str,
    opts: &ScanOptions,
    out: &mut BTreeMap<String, ScanEntry>,
    memo: &mut HashMemo,
) -> std::io::Result<()> {
    for entry in fs::read_dir(shown_dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            let key = format!("{prefix}{}", entry.file_name().to_string_lossy());
            out.insert(key.clone(), ScanEntry::Rejected { key, reason: "file name is not UTF-8".into() });
            continue;
        };
        if is_ignored_name(&name) {
            continue;
        }
        let key = format!("{prefix}{name}");
        let shown = shown_dir.join(&name);
        let reject = |reason: String| ScanEntry::Rejected { key: key.clone(), reason };
        let (real, meta) = match resolve(&shown, root) {
            Ok(found) => found,
            Err(reason) => {
                out.insert(key.clone(), reject(reason));
                continue;
            }
        };
        if meta.is_dir() {
            // The depth bound stops a symlink to an ancestor from looping forever.
            if opts.recursive && prefix.matches('/').count() < MAX_DEPTH {
                walk(&shown, root, &format!("{key}/"), opts, out, memo)?;
            }
            continue;
        }
        if !meta.is_file() {
            out.insert(key.clone(), reject(format!("{}: not a regular file", shown.display())));
            continue;
        }
        // Reject an oversized file without reading it: every rescan would read it again.
        if meta.len() > opts.max_file_size {
            out.insert(key.clone(), reject(too_large(&shown, opts.max_file_size)));
            continue;
        }
        let hashed = match memo.get(&real, &meta) {
            Some(sha256) => Ok(sha256),
            None => read_profile(&real, &shown, opts.max_file_size).inspect(|sha| memo.put(&real, &meta, sha)),
        };
        let entry = match hashed {
            Ok(sha256) => ScanEntry::File(SourceFile { key: key.clone(), shown, real, identity: sha256.clone(), sha256 }),
            Err(reason) => reject(reason),
        };
        out.insert(key, entry);
    }
    Ok(())
}

/// The real path behind `shown` and its metadata, or why it is refused. Symlinks are resolved here
/// so an escape is caught before anything is read.
fn resolve(shown: &Path, root: &Path) -> Result<(PathBuf, fs::Metadata), String> {
    let real = match fs::canonicalize(shown) {
        Ok(p) => p,
        // A dangling symlink: the ConfigMap is mid-swap, or a link points nowhere.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{}: symlink target does not exist", shown.display()));
        }
        Err(e) => return Err(format!("{}: {e}", shown.display())),
    };
    if !real.starts_with(root) {
        return Err(format!("{}: symlink points outside the profiles directory (to {})", shown.display(), real.display()));
    }
    let meta = fs::metadata(&real).map_err(|e| format!("{}: {e}", shown.display()))?;
    Ok((real, meta))
}

/// Reads and hashes one file, enforcing the size limit while reading (the file may grow
/// after `stat`) and checking that it is UTF-8 text.
fn read_profile(real: &Path, shown: &Path, max: u64) -> Result<String, String> {
    let file = fs::File::open(real).map_err(|e| format!("{}: {e}", shown.display()))?;
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf).map_err(|e| format!("{}: {e}", shown.display()))?;
    if buf.len() as u64 > max {
        return Err(too_large(shown, max));
    }
    if let Err(e) = std::str::from_utf8(&buf) {
        return Err(format!("{}: not UTF-8 text (invalid byte at offset {})", shown.display(), e.valid_up_to()));
    }
    if buf.contains(&0) {
        return Err(format!("{}: contains a NUL byte; not a profile", shown.display()));
    }
    Ok(hex(&Sha256::digest(&buf)))
}

fn too_large(shown: &Path, max: u64) -> String {
    format!("{}: larger than the {max}-byte limit (--max-file-size)", shown.display())
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn opts() -> ScanOptions {
        ScanOptions { recursive: false, max_file_size: 64 }
    }

    fn key(e: &ScanEntry) -> &str {
        match e {
            ScanEntry::File(f) => &f.key,
            ScanEntry::Rejected { key, .. } => key,
        }
    }

    fn keys(entries: &[ScanEntry]) -> Vec<(String, bool)> {
        entries.iter().map(|e| (key(e).to_string(), matches!(e, ScanEntry::File(_)))).collect()
    }

    #[test]
    fn ignored_names() {
        for n in [
            ".hidden",
            "..data",
            "..2026_11_28_10_00_00.123",
            "x~",
            "x.swp",
            "x.dpkg-new",
            "x.dpkg-old",
            "#x#",
            "README",
            "notes.md",
        ] {
            assert!(is_ignored_name(n), "{n}");
        }
        for n in ["payment-api", "usr.sbin.nginx", "a.b", "x-swp"] {
            assert!(!is_ignored_name(n), "{n}");
        }
    }

    #[test]
    fn configmap_layout_is_read_through_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let ts = d.path().join("..2026_11_28_10_00_00.1");
        fs::create_dir(&ts).unwrap();
        fs::write(ts.join("a"), "profile a {}\n").unwrap();
        symlink("..2026_11_28_10_00_00.1", d.path().join("..data")).unwrap();
        symlink("..data/a", d.path().join("a")).unwrap();
        let got = scan(d.path(), &opts()).unwrap();
        assert_eq!(keys(&got), vec![("a".to_string(), true)]);
        let ScanEntry::File(f) = &got[0] else { unreachable!() };
        assert_eq!(f.shown, d.path().join("a"));
        assert!(f.real.ends_with("..2026_11_28_10_00_00.1/a"), "{}", f.real.display());
        assert_eq!(f.sha256, hex(&Sha256::digest(b"profile a {}\n")));
    }

    #[test]
    fn bad_files_are_rejected_by_name_and_others_kept() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("shadow"), "secret").unwrap();
        fs::write(d.path().join("good"), "profile good {}\n").unwrap();
        fs::write(d.path().join("big"), vec![b'a'; 65]).unwrap();
        fs::write(d.path().join("binary"), [0xff, 0xfe, 0x00]).unwrap();
        fs::write(d.path().join("nul"), b"profile x {\0}").unwrap();
        fs::write(d.path().join("empty"), "").unwrap();
        symlink(outside.path().join("shadow"), d.path().join("escape")).unwrap();
        symlink("nowhere", d.path().join("dangling")).unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/inner"), "profile inner {}\n").unwrap();
        let got = scan(d.path(), &opts()).unwrap();
        assert_eq!(
            keys(&got),
            vec![
                ("big".into(), false),
                ("binary".into(), false),
                ("dangling".into(), false),
                ("empty".into(), true),
                ("escape".into(), false),
                ("good".into(), true),
                ("nul".into(), false),
            ]
        );
        let reason = |k: &str| match got.iter().find(|e| key(e) == k).unwrap() {
            ScanEntry::Rejected { reason, .. } => reason.clone(),
            ScanEntry::File(_) => panic!("{k} accepted"),
        };
        assert!(reason("big").contains("64-byte limit"), "{}", reason("big"));
        assert!(reason("binary").contains("not UTF-8"));
        assert!(reason("escape").contains("outside the profiles directory"));
        assert!(reason("escape").contains("escape"));
        let recursive = scan(d.path(), &ScanOptions { recursive: true, max_file_size: 64 }).unwrap();
        assert!(keys(&recursive).contains(&("sub/inner".to_string(), true)));
    }

    /// A rescan reads only what changed: an unchanged settled file is known by its metadata,
    /// a rewrite (new mtime or inode) is read again, a fresh file is never trusted.
    #[test]
    fn unchanged_files_are_not_read_again() {
        let d = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        let write = |name: &str, text: &str, mtime: Option<std::time::SystemTime>| {
            fs::write(d.path().join(name), text).unwrap();
            if let Some(t) = mtime {
                fs::File::options().write(true).open(d.path().join(name)).unwrap().set_modified(t).unwrap();
            }
        };
        write("a", "profile a {}\n", Some(old));
        write("b", "profile b {}\n", None);
        let mut memo = HashMemo::default();
        let sha = |entries: &[ScanEntry], k: &str| match entries.iter().find(|e| key(e) == k) {
            Some(ScanEntry::File(f)) => f.sha256.clone(),
            _ => panic!("{k}"),
        };
        let first = scan_with(d.path(), &opts(), &mut memo).unwrap();
        assert_eq!(memo.known.len(), 1, "only the settled file is remembered");
        // Same size, same mtime, other bytes, written in place: ctime tells.
        write("a", "profile z {}\n", Some(old));
        let second = scan_with(d.path(), &opts(), &mut memo).unwrap();
        assert_ne!(sha(&first, "a"), sha(&second, "a"));
        assert_eq!(sha(&second, "a"), hex(&Sha256::digest(b"profile z {}\n")));
        // A memo entry is the hash of what is there: poison it and see it used, then forgotten.
        let real = fs::canonicalize(d.path().join("a")).unwrap();
        memo.known.get_mut(&real).unwrap().1 = "remembered".into();
        assert_eq!(sha(&scan_with(d.path(), &opts(), &mut memo).unwrap(), "a"), "remembered");
        fs::remove_file(d.path().join("a")).unwrap();
        scan_with(d.path(), &opts(), &mut memo).unwrap();
        assert!(memo.known.is_empty());
    }

    #[test]
    fn missing_dir_is_an_error_naming_it() {
        let err = scan(Path::new("/nonexistent/profiles"), &opts()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/profiles"));
    }
}
