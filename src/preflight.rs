//! Checks that AppArmor is usable before anything else runs, and says in one sentence
//! what is missing and how to fix it.

use std::path::{Path, PathBuf};

use crate::config::HostSettings;
use crate::kernel::{self, HostKernel};

/// The environment cannot run the agent.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    /// securityfs has no apparmor directory.
    #[error(
        "AppArmor is not available: {} does not exist; the kernel has AppArmor disabled or not built in (check /sys/module/apparmor/parameters/enabled and the lsm= boot parameter), or securityfs is not mounted there (mount -t securityfs securityfs {}, or mount the host's /sys/kernel/security into the container)",
        apparmor.display(),
        securityfs.display()
    )]
    NoAppArmor {
        /// The AppArmor directory that is missing.
        apparmor: PathBuf,
        /// The securityfs mount point.
        securityfs: PathBuf,
    },
    /// Mounting securityfs failed.
    #[error("securityfs is not mounted at {} and mounting it failed ({source}); run as root with CAP_SYS_ADMIN, or mount the host's /sys/kernel/security into the container", path.display())]
    Mount {
        /// The default securityfs path; a mount is only tried there, never at a `--securityfs`.
        path: PathBuf,
        /// What mount(2) returned, typically `EPERM` without `CAP_SYS_ADMIN`.
        source: nix::Error,
    },
    /// No parser binary.
    #[error(
        "the AppArmor parser was not found ({tried}); install the `apparmor` package (it provides apparmor_parser) or pass --parser PATH"
    )]
    NoParser {
        /// Where it was looked for.
        tried: String,
    },
    /// The parser does not run.
    #[error("the AppArmor parser {} does not run: {source}; reinstall the `apparmor` package or pass a working --parser", parser.display())]
    ParserBroken {
        /// The parser as resolved from `--parser` or `PATH`.
        parser: PathBuf,
        /// How `parser -V` failed: it did not start, timed out, or exited non-zero.
        source: kernel::KernelError,
    },
}

/// Finds the parser or says where it looked.
pub fn parser(host: &HostSettings) -> Result<PathBuf, EnvironmentError> {
    kernel::resolve_parser(host.parser.as_deref()).ok_or_else(|| EnvironmentError::NoParser {
        tried: match &host.parser {
            Some(p) => format!("--parser {}", p.display()),
            None => format!("{} on PATH, {}", crate::defaults::PARSER, crate::defaults::PARSER_FALLBACK),
        },
    })
}

/// Makes sure `<securityfs>/apparmor` exists, mounting securityfs at the default path when
/// it is missing there.
pub fn securityfs(host: &HostSettings) -> Result<PathBuf, EnvironmentError> {
    let apparmor = host.apparmor_dir();
    if apparmor.is_dir() {
        return Ok(apparmor);
    }
    if host.securityfs_is_default && host.securityfs.is_dir() && !is_mounted_securityfs(&host.securityfs) {
        nix::mount::mount(Some("securityfs"), &host.securityfs, Some("securityfs"), nix::mount::MsFlags::empty(), None::<&str>)
            .map_err(|source| EnvironmentError::Mount { path: host.securityfs.clone(), source })?;
        tracing::info!(path = %host.securityfs.display(), "mounted securityfs");
        if apparmor.is_dir() {
            return Ok(apparmor);
        }
    }
    Err(EnvironmentError::NoAppArmor { apparmor, securityfs: host.securityfs.clone() })
}

fn is_mounted_securityfs(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines().any(|l| l.split(' ').nth(1) == Some(&*path.to_string_lossy()) && l.split(' ').nth(2) == Some("securityfs"))
        })
        .unwrap_or(false)
}

/// What a command needs of the host, which decides what is checked before the handle is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Compile and load (`run`, `sync`, `diff`, `unload`): securityfs, a working parser; helper files
    /// go to the state directory.
    Load,
    /// Compile only (`check`): a parser, no securityfs; helper files go to the temp directory.
    Compile,
    /// Read the kernel's listing (`status`): securityfs only; the parser need not exist.
    List,
}

/// The one way to build the host kernel handle: the checks `needs` calls for, then the handle.
pub fn host_kernel(host: &HostSettings, needs: Needs) -> Result<HostKernel, EnvironmentError> {
    match needs {
        Needs::Load => {
            let apparmor = securityfs(host)?;
            let parser = parser(host)?;
            let kernel = HostKernel::new(apparmor, parser.clone(), host.parser_timeout, host.state_dir.clone())
                .with_jobs(host.parser_jobs);
            let version = kernel.parser_version().map_err(|source| EnvironmentError::ParserBroken { parser, source })?;
            tracing::debug!(%version, "parser works");
            // AppArmor 4 parsers can fail a file whose rules the kernel would not enforce.
            let rules_enforced = crate::kernel::parser_major(&version) >= Some(4);
            Ok(kernel
                .with_rules_enforced(rules_enforced)
                .with_parser_version(version, std::path::Path::new(crate::defaults::PARSER_CONF)))
        }
        Needs::Compile => Ok(HostKernel::new(host.apparmor_dir(), parser(host)?, host.parser_timeout, std::env::temp_dir())),
        Needs::List => {
            let apparmor = securityfs(host)?;
            // Listing needs no parser; the handle just wants a path.
            let parser = kernel::resolve_parser(host.parser.as_deref()).unwrap_or_else(|| crate::defaults::PARSER.into());
            Ok(HostKernel::new(apparmor, parser, host.parser_timeout, host.state_dir.clone()))
        }
    }
}
