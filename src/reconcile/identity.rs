//! A file's identity: everything that shapes its compiled policy. That is its own content, the
//! content of every file it includes (recursively, where the parser would find it), and the
//! toolchain (the parser's version and the kernel's feature set). The requested mode is kept
//! beside it (complain is a header bit applied after compiling, see [`crate::kernel::Compiled`]).
//!
//! Includes are found the way the parser finds them: `include <x>` (also `#include`, `include
//! if exists`) in the search path (`--include-dir`, parser.conf's `Include`, then the base dir),
//! `include "x"` relative to the parser's working directory (the profiles directory); a
//! directory includes every file in it. Include files are read safely: regular files only
//! (opened non-blocking, so a FIFO cannot hang the agent), bounded in size and count. An
//! unchanged include (same inode, size, mtime and ctime, not modified in the last second) is not
//! read again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::scan::{self, SourceFile};

/// How deep includes may nest (the parser itself stops far earlier on a cycle).
const MAX_DEPTH: usize = 32;
/// How many distinct include files one profile may pull in.
const MAX_INCLUDES: usize = 4096;

/// Where the parser looks for includes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPath {
    /// Searched in order for `<x>`: `--include-dir`, then parser.conf's `Include`, then the base dir.
    pub dirs: Vec<PathBuf>,
    /// Where `"x"` resolves (the parser's working directory).
    pub cwd: PathBuf,
}

impl SearchPath {
    /// The parser's search path: `extra` (passed as `-I`), the `Include` and `base` lines of
    /// parser.conf (missing file: none), and `base` unless parser.conf names another.
    pub fn new(extra: &[PathBuf], parser_conf: &Path, base: &Path, cwd: &Path) -> SearchPath {
        let mut dirs = extra.to_vec();
        let mut base = base.to_path_buf();
        let text = fs::read_to_string(parser_conf).unwrap_or_default();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let (key, value) = line.split_once(['=', ' ', '\t']).map(|(k, v)| (k.trim(), v.trim())).unwrap_or((line, ""));
            match key.trim_start_matches('-') {
                "Include" | "I" if !value.is_empty() => dirs.push(value.into()),
                "base" | "b" if !value.is_empty() => base = value.into(),
                _ => {}
            }
        }
        dirs.push(base);
        SearchPath { dirs, cwd: cwd.to_path_buf() }
    }
}

/// One file a profile includes, as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Included {
    /// Where it was found (or looked for, when missing).
    pub path: PathBuf,
    /// sha256 of its content; `None` when it does not exist or cannot be read.
    #[serde(skip)]
    pub digest: Option<String>,
    /// Why it cannot be used, if so (missing, not a regular file, too large…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What identifies one file's compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// sha256 over the toolchain, the content and every include.
    pub key: String,
    /// The includes, sorted by path.
    pub includes: Vec<Included>,
}

#[derive(Debug, Clone)]
struct Cached {
    stamp: scan::FileStamp,
    digest: String,
    directives: Vec<Directive>,
}

/// An include statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The name as written.
    pub name: String,
    /// `<x>` (searched) rather than `"x"` (relative to the working directory).
    pub search: bool,
    /// `include if exists`: a missing file is no error.
    pub optional: bool,
}

/// The include statements of a profile or abstraction.
pub fn directives(text: &str) -> Vec<Directive> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let rest = match line.strip_prefix("#include").or_else(|| line.strip_prefix("include")) {
            Some(r) if r.starts_with([' ', '\t', '<', '"']) => r.trim_start(),
            _ => continue,
        };
        let (optional, rest) = match rest.strip_prefix("if exists") {
            Some(r) => (true, r.trim_start()),
            None => (false, rest),
        };
        let (search, name) = if let Some(r) = rest.strip_prefix('<') {
            (true, r.split_once('>').map(|(n, _)| n))
        } else if let Some(r) = rest.strip_prefix('"') {
            (false, r.split_once('"').map(|(n, _)| n))
        } else {
            (false, rest.split_whitespace().next())
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            out.push(Directive { name: name.to_string(), search, optional });
        }
    }
    out
}

/// Resolves includes and computes identities, remembering what it read.
#[derive(Debug, Default)]
pub struct Resolver {
    search: SearchPath,
    max_size: u64,
    toolchain: String,
    cache: HashMap<PathBuf, Cached>,
    seen: BTreeSet<PathBuf>,
    /// Include statements by content sha256 of the profile files, so an unchanged profile is
    /// not read again for them.
    by_content: HashMap<String, Vec<Directive>>,
    seen_content: BTreeSet<String>,
    /// Include files already checked in this pass (most profiles share most includes).
    fresh: BTreeSet<PathBuf>,
}

impl Resolver {
    /// A resolver for `search`, reading include files up to `max_size` bytes; `toolchain`
    /// (parser version and kernel features) is part of every identity.
    pub fn new(search: SearchPath, max_size: u64, toolchain: String) -> Resolver {
        Resolver { search, max_size, toolchain, ..Resolver::default() }
    }

    /// The identity of a scanned file (read again only when its content is new).
    pub fn identify_file(&mut self, file: &SourceFile) -> Identity {
        self.seen_content.insert(file.sha256.clone());
        let known = self.by_content.get(&file.sha256).cloned();
        let found = known.unwrap_or_else(|| {
            let mut bytes = Vec::new();
            let read = fs::File::open(&file.real).and_then(|f| f.take(self.max_size).read_to_end(&mut bytes));
            let found = directives(&String::from_utf8_lossy(&bytes));
            // A file that changed since the scan hashed it gets the next pass (its change wakes one).
            if read.is_ok() && scan::hex(&Sha256::digest(&bytes)) == file.sha256 {
                self.by_content.insert(file.sha256.clone(), found.clone());
            }
            found
        });
        self.identify_with(file, found)
    }

    /// The identity of a scanned file whose content is `text`.
    pub fn identify(&mut self, file: &SourceFile, text: &str) -> Identity {
        self.identify_with(file, directives(text))
    }

    fn identify_with(&mut self, file: &SourceFile, top: Vec<Directive>) -> Identity {
        let mut found: BTreeMap<PathBuf, Included> = BTreeMap::new();
        let mut queue: Vec<(Directive, usize)> = top.into_iter().map(|d| (d, 0)).collect();
        while let Some((d, depth)) = queue.pop() {
            if depth >= MAX_DEPTH || found.len() >= MAX_INCLUDES {
                let path = PathBuf::from(&d.name);
                let problem = Some(format!("includes nest deeper than {MAX_DEPTH} or exceed {MAX_INCLUDES} files"));
                found.insert(path.clone(), Included { path, digest: None, problem });
                break;
            }
            for (path, is_dir) in self.locate(&d) {
                if found.contains_key(&path) {
                    continue;
                }
                if is_dir {
                    queue.extend(dir_entries(&path).into_iter().map(|p| {
                        (Directive { name: p.to_string_lossy().into_owned(), search: false, optional: false }, depth + 1)
                    }));
                    found.insert(path.clone(), Included { path, digest: Some(DIRECTORY.into()), problem: None });
                    continue;
                }
                let included = match self.read(&path) {
                    Ok(c) => {
                        queue.extend(c.directives.into_iter().map(|d| (d, depth + 1)));
                        Included { path: path.clone(), digest: Some(c.digest), problem: None }
                    }
                    Err(problem) if d.optional && problem == MISSING => continue,
                    Err(problem) => Included { path: path.clone(), digest: None, problem: Some(problem) },
                };
                found.insert(path, included);
            }
        }
        let includes: Vec<Included> = found.into_values().collect();
        let mut h = Sha256::new();
        h.update(b"apparmor-loader identity 1\0");
        h.update(self.toolchain.as_bytes());
        h.update(b"\0");
        h.update(file.sha256.as_bytes());
        for i in &includes {
            h.update(b"\0");
            h.update(i.path.as_os_str().as_encoded_bytes());
            h.update(b"\0");
            h.update(i.digest.as_deref().or(i.problem.as_deref()).unwrap_or_default().as_bytes());
        }
        Identity { key: scan::hex(&h.finalize()), includes }
    }

    /// Starts a pass: every include file is checked again (once).
    pub fn begin_pass(&mut self) {
        self.fresh.clear();
    }

    /// Forgets what was not used since the last call (so the memo stays the size of what is
    /// included now).
    pub fn end_pass(&mut self) {
        self.fresh.clear();
        let seen = std::mem::take(&mut self.seen);
        self.cache.retain(|p, _| seen.contains(p));
        let seen = std::mem::take(&mut self.seen_content);
        self.by_content.retain(|sha, _| seen.contains(sha));
    }

    /// Candidate paths for a directive: the first hit in the search path for `<x>`, the
    /// working-directory path for `"x"`. A miss yields the first place looked.
    fn locate(&self, d: &Directive) -> Vec<(PathBuf, bool)> {
        let name = Path::new(&d.name);
        let candidates: Vec<PathBuf> = if name.is_absolute() {
            vec![name.to_path_buf()]
        } else if d.search {
            self.search.dirs.iter().map(|dir| dir.join(name)).collect()
        } else {
            vec![self.search.cwd.join(name)]
        };
        for c in &candidates {
            if let Ok(m) = fs::metadata(c) {
                return vec![(c.clone(), m.is_dir())];
            }
        }
        candidates.into_iter().take(1).map(|c| (c, false)).collect()
    }

    /// Reads one include file, or returns its memo when the file is unchanged.
    fn read(&mut self, path: &Path) -> Result<Cached, String> {
        self.seen.insert(path.to_path_buf());
        if let Some(c) = self.cache.get(path).filter(|_| self.fresh.contains(path)) {
            return Ok(c.clone());
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
            .map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { MISSING.to_string() } else { e.to_string() })?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        let stamp = scan::FileStamp::of(&meta);
        if let Some(c) = self.cache.get(path).filter(|c| c.stamp == stamp) {
            self.fresh.insert(path.to_path_buf());
            return Ok(c.clone());
        }
        if meta.len() > self.max_size {
            return Err(format!("larger than the {}-byte limit (--max-file-size)", self.max_size));
        }
        let mut bytes = Vec::new();
        file.take(self.max_size + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        if bytes.len() as u64 > self.max_size {
            return Err(format!("larger than the {}-byte limit (--max-file-size)", self.max_size));
        }
        let digest = scan::hex(&Sha256::digest(&bytes));
        let cached = Cached { stamp, digest, directives: directives(&String::from_utf8_lossy(&bytes)) };
        if scan::FileStamp::settled(&meta) {
            self.fresh.insert(path.to_path_buf());
            self.cache.insert(path.to_path_buf(), cached.clone());
        }
        Ok(cached)
    }
}

/// The digest recorded for an included directory (its files are listed on their own).
pub const DIRECTORY: &str = "directory";

/// The message for an include that does not exist.
const MISSING: &str = "does not exist";

/// The files of an included directory, sorted, skipping what the parser skips (dotfiles,
/// editor and package leftovers).
fn dir_entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> =
        rd.flatten().filter(|e| e.file_name().to_str().is_some_and(|n| !scan::is_ignored_name(n))).map(|e| e.path()).collect();
    out.sort();
    out
}

/// For each file, the other files of the directory it includes: those are include sources,
/// not profiles of their own. `includes` maps file keys to their resolved include paths.
pub fn include_sources(files: &[&SourceFile], includes: &BTreeMap<String, Vec<Included>>) -> BTreeSet<String> {
    let by_path: BTreeMap<PathBuf, &str> =
        files.iter().flat_map(|f| [(f.shown.clone(), f.key.as_str()), (f.real.clone(), f.key.as_str())]).collect();
    includes
        .values()
        .flatten()
        .filter_map(|i| {
            let canonical = fs::canonicalize(&i.path).ok();
            by_path.get(&i.path).or_else(|| canonical.as_ref().and_then(|c| by_path.get(c))).map(|k| k.to_string())
        })
        .collect()
}

#[cfg(test)]
#[path = "identity/tests.rs"]
mod tests;
