//! The kernel's AppArmor feature set (`<securityfs>/apparmor/features`), reduced to a digest:
//! policy compiled for one feature set is not reused on a kernel with another.

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Deepest directory level read (the kernel's tree is four or five deep).
const MAX_DEPTH: usize = 8;
/// Most entries read (the kernel has a few hundred).
const MAX_ENTRIES: usize = 4096;

/// sha256 over every path and file content of the feature tree, in sorted order; `none` when
/// the directory does not exist (a kernel or test without it).
pub fn digest(dir: &Path) -> String {
    if !dir.is_dir() {
        return "none".into();
    }
    let mut h = Sha256::new();
    let mut count = 0;
    walk(dir, dir, 0, &mut count, &mut h);
    crate::scan::hex(&h.finalize())
}

fn walk(root: &Path, dir: &Path, depth: usize, count: &mut usize, h: &mut Sha256) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        *count += 1;
        if *count > MAX_ENTRIES {
            return;
        }
        h.update(path.strip_prefix(root).unwrap_or(&path).as_os_str().as_encoded_bytes());
        h.update(b"\0");
        // securityfs files are not symlinks; symlink_metadata keeps a test tree from looping.
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && depth < MAX_DEPTH => walk(root, &path, depth + 1, count, h),
            Ok(m) if m.is_file() => {
                h.update(fs::read(&path).unwrap_or_default());
                h.update(b"\0");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_feature_change_changes_the_digest() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(digest(&d.path().join("missing")), "none");
        fs::create_dir_all(d.path().join("f/domain")).unwrap();
        fs::write(d.path().join("f/domain/stack"), "yes\n").unwrap();
        let a = digest(&d.path().join("f"));
        assert_eq!(a, digest(&d.path().join("f")));
        fs::write(d.path().join("f/domain/stack"), "no\n").unwrap();
        let b = digest(&d.path().join("f"));
        fs::write(d.path().join("f/domain/version"), "1.2\n").unwrap();
        let c = digest(&d.path().join("f"));
        assert!(a != b && b != c && a != c);
    }
}
