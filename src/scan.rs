//! Reads the profiles directory into the *desired* state: which files exist and what
//! their content hash is.
//!
//! The directory is usually a ConfigMap volume: `name -> ..data/name`,
//! `..data -> ..2026_11_28_…`. Only regular files and symlinks that stay inside the
//! directory count; everything else is skipped or rejected with a reason naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// How to read the directory.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// `--recursive`: descend into subdirectories, at most 16 levels deep; otherwise they are
    /// skipped.
    pub recursive: bool,
    /// `--max-file-size`, in bytes: a larger file is rejected, naming the limit, not read.
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
        /// A whole message that starts with the path concerned, e.g. `DIR/x: not UTF-8 text (…)`.
        reason: String,
    },
}

/// The directory itself cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the profiles directory {}", path.display())]
pub struct ScanError {
    /// The profiles directory as given (not resolved), also when the read that failed was of
    /// one of its subdirectories.
    pub path: PathBuf,
    /// Why resolving or listing it failed.
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

/// Most directory entries one scan looks at (profiles, rejects and subdirectories together).
/// A real profiles directory holds hundreds; past this the scan stops and says so, so a
/// directory tree gone wrong costs bounded time and memory.
pub const MAX_ENTRIES: usize = 20_000;

/// The walk's bounds: directories already read (by device and inode, so a symlink to an
/// ancestor or a sibling is read once) and entries seen so far.
struct Walk<'a> {
    root: &'a Path,
    opts: &'a ScanOptions,
    visited: BTreeSet<(u64, u64)>,
    seen: usize,
    out: BTreeMap<String, ScanEntry>,
    memo: &'a mut HashMemo,
}

/// Reads the directory. Entries come back sorted by key.
pub fn scan(dir: &Path, opts: &ScanOptions) -> Result<Vec<ScanEntry>, ScanError> {
    scan_with(dir, opts, &mut HashMemo::default())
}

/// Like [`scan`], reading only the files whose metadata changed since the last scan with the
/// same `memo`.
pub fn scan_with(dir: &Path, opts: &ScanOptions, memo: &mut HashMemo) -> Result<Vec<ScanEntry>, ScanError> {
    let err = |source| ScanError { path: dir.to_path_buf(), source };
    let root = fs::canonicalize(dir).map_err(err)?;
    let meta = fs::metadata(&root).map_err(err)?;
    let visited = BTreeSet::from([(meta.dev(), meta.ino())]);
    let mut w = Walk { root: &root, opts, visited, seen: 0, out: BTreeMap::new(), memo };
    let walked = walk(dir, "", &mut w).map_err(err);
    w.memo.end_scan();
    walked?;
    Ok(w.out.into_values().collect())
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

fn walk(shown_dir: &Path, prefix: &str, w: &mut Walk<'_>) -> std::io::Result<()> {
    // Read in a fixed order, real directories before symlinks to directories, so a directory
    // reachable both ways always gets the same key, its real one. Bounded by what is left.
    let mut entries = fs::read_dir(shown_dir)?.take(MAX_ENTRIES + 1 - w.seen.min(MAX_ENTRIES)).collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_cached_key(|e| (e.file_type().is_ok_and(|t| t.is_symlink()), e.file_name()));
    for entry in entries {
        w.seen += 1;
        if w.seen > MAX_ENTRIES {
            let key = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let reason = format!("{}: the scan stopped here: more than {MAX_ENTRIES} entries", shown_dir.display());
            w.out.insert(key.clone(), ScanEntry::Rejected { key, reason });
            return Ok(());
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            let key = format!("{prefix}{}", entry.file_name().to_string_lossy());
            w.out.insert(key.clone(), ScanEntry::Rejected { key, reason: "file name is not UTF-8".into() });
            continue;
        };
        if is_ignored_name(&name) {
            continue;
        }
        let key = format!("{prefix}{name}");
        let shown = shown_dir.join(&name);
        match resolve(&shown, w.root) {
            Err(reason) => {
                w.out.insert(key.clone(), ScanEntry::Rejected { key, reason });
            }
            Ok((_, meta)) if meta.is_dir() => {
                // Each directory is read once whatever the links to it: `self -> .` or two links
                // to one another would otherwise multiply every profile (and the scan's time) per level.
                let fresh = w.visited.insert((meta.dev(), meta.ino()));
                if w.opts.recursive && prefix.matches('/').count() < MAX_DEPTH && fresh {
                    walk(&shown, &format!("{key}/"), w)?;
                    if w.seen > MAX_ENTRIES {
                        return Ok(());
                    }
                }
            }
            Ok((real, meta)) => {
                let entry = file_entry(key.clone(), shown, real, &meta, w.opts.max_file_size, w.memo);
                w.out.insert(key, entry);
            }
        }
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

/// The entry of a resolved non-directory: a profile file, or rejected with the reason.
fn file_entry(key: String, shown: PathBuf, real: PathBuf, meta: &fs::Metadata, max: u64, memo: &mut HashMemo) -> ScanEntry {
    let reason = if !meta.is_file() {
        format!("{}: not a regular file", shown.display())
    } else if meta.len() > max {
        // Rejected without reading it: every rescan would read it again.
        too_large(&shown, max)
    } else {
        let hashed = match memo.get(&real, meta) {
            Some(sha256) => Ok(sha256),
            None => read_profile(&real, &shown, max).inspect(|sha| memo.put(&real, meta, sha)),
        };
        match hashed {
            Ok(sha256) => return ScanEntry::File(SourceFile { key, shown, real, identity: sha256.clone(), sha256 }),
            Err(reason) => reason,
        }
    };
    ScanEntry::Rejected { key, reason }
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

    /// `self -> .` and two links to each other: every profile is read once, at its shortest key.
    #[test]
    fn symlink_cycles_are_read_once() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), "profile a {}\n").unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/b"), "profile b {}\n").unwrap();
        symlink(".", d.path().join("self")).unwrap();
        symlink("..", d.path().join("sub/up")).unwrap();
        symlink("sub", d.path().join("again")).unwrap();
        let got = scan(d.path(), &ScanOptions { recursive: true, max_file_size: 64 }).unwrap();
        let files: Vec<_> = keys(&got).into_iter().filter(|(_, ok)| *ok).map(|(k, _)| k).collect();
        assert_eq!(files, ["a", "sub/b"], "{got:?}");
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn entries_are_bounded() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..MAX_ENTRIES + 5 {
            fs::File::create(d.path().join(format!("p{i}"))).unwrap();
        }
        let got = scan(d.path(), &opts()).unwrap();
        assert_eq!(got.len(), MAX_ENTRIES + 1);
        let stopped =
            got.iter().filter(|e| matches!(e, ScanEntry::Rejected { reason, .. } if reason.contains("scan stopped"))).count();
        assert_eq!(stopped, 1);
    }
}
