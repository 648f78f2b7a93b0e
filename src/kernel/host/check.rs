//! `check`'s compile: one file to binary policy in a file of its own, read back as a load would be.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::{HostKernel, ParserOp, RULES_ENFORCED, rejected};
use crate::kernel::{Compiled, KernelError, blob, parser_output};

/// How `check` compiles a file.
#[derive(Debug, Clone, Copy)]
pub struct CheckJob<'a> {
    /// Searched for `include <…>` (`-I`), as the agent searches them.
    pub include_dirs: &'a [PathBuf],
    /// A kernel feature set to compile for (`-M`) instead of the running kernel's.
    pub features: Option<&'a Path>,
    /// A rule the kernel cannot enforce is an error, not a rule silently left out (AppArmor 4
    /// parsers' `--warn=rule-not-enforced`, read by `parser_output::unenforced`), e.g. `userns,`
    /// on Linux 6.1; dbus rules, which no upstream kernel enforces, stay allowed.
    pub rules_enforced: bool,
    /// Where the parser writes the compiled policy (`-o`).
    pub output: &'a Path,
}

impl HostKernel {
    /// Compiles one file without loading it (`-Q -K -o`), for `check`, and reads the policy the
    /// parser wrote to `job.output`: the names are the compiled policy's, as for a load.
    pub fn check(&self, path: &Path, job: &CheckJob<'_>) -> Result<Compiled, KernelError> {
        let mut args: Vec<OsString> = vec!["-Q".into(), "-K".into(), "-o".into(), job.output.into()];
        for dir in job.include_dirs {
            args.extend(["-I".into(), dir.clone().into()]);
        }
        if let Some(f) = job.features {
            args.extend(["-M".into(), f.into()]);
        }
        if job.rules_enforced {
            args.push(RULES_ENFORCED.into());
        }
        args.push(path.into());
        let out = self.run(ParserOp::Check, args, None, &path.display().to_string())?;
        if !out.status.success() {
            return Err(rejected(&out));
        }
        let unenforced = parser_output::unenforced(&out.stderr_text());
        if !unenforced.errors.is_empty() {
            return Err(KernelError::Rejected { diagnostics: unenforced.errors });
        }
        if unenforced.garbled {
            let message = format!("the parser's warnings could not be read: {}", out.stderr_text().trim());
            return Err(KernelError::Rejected {
                diagnostics: vec![parser_output::Diagnostic { file: None, line: None, message }],
            });
        }
        let blob = fs::read(job.output).map_err(|source| KernelError::Read { path: job.output.to_path_buf(), source })?;
        let bad = |source| KernelError::BadPolicy { file: path.to_path_buf(), source };
        let compiled = Compiled::from_blob(blob).map_err(bad)?;
        blob::check_self_contained(&compiled.profiles).map_err(bad)?;
        Ok(compiled)
    }
}
