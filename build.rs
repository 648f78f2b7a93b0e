//! Sets `APPARMOR_LOADER_REVISION` for `apparmor_loader_build_info{revision}`: the variable of that name
//! when the build sets it (an image build from a tarball, CI), else the git commit of the source tree
//! (with `-dirty` when it has uncommitted changes), else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=APPARMOR_LOADER_REVISION");
    let revision = match std::env::var("APPARMOR_LOADER_REVISION") {
        Ok(r) if !r.is_empty() => r,
        _ => {
            // A commit or checkout writes the worktree's HEAD log; that is when the revision changes.
            for path in ["HEAD", "logs/HEAD", "index"] {
                if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            match git(&["rev-parse", "--short=12", "HEAD"]) {
                Some(head) => {
                    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
                    if dirty { format!("{head}-dirty") } else { head }
                }
                None => "unknown".to_string(),
            }
        }
    };
    println!("cargo:rustc-env=APPARMOR_LOADER_REVISION={revision}");
}
