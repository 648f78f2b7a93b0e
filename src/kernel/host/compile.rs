//! The batch compile: staged files to binary policy in one parser process, each file's outcome
//! told apart by the policy the parser wrote and the diagnostics that name it.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::{HostKernel, MAX_BATCH_TIMEOUTS, RULES_ENFORCED, Stage, cached_blobs, rejected};
use crate::kernel::parser_output::{self, Diagnostic};
use crate::kernel::{CompileInput, CompileJob, Compiled, KernelError, ParserOp};

impl HostKernel {
    /// The arguments of one batch compile of `files` into `cache`.
    fn compile_args(&self, cache: &Path, job: &CompileJob, files: impl Iterator<Item = PathBuf>) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["-Q".into(), "-T".into(), "-W".into(), "-L".into(), cache.into()];
        // The warnings that fail a file must be whole lines to be attributed, and parallel
        // workers interleave theirs: one job when they are read (see parser_output::unenforced).
        args.push(format!("-j{}", if self.rules_enforced { 1 } else { self.jobs }).into());
        args.extend(job.include_dirs.iter().flat_map(|dir| [OsString::from("-I"), dir.clone().into()]));
        if self.rules_enforced {
            args.push(RULES_ENFORCED.into());
        }
        args.extend(["--subdomainfs".into(), self.apparmor_dir.clone().into()]);
        args.extend(job.kernel_features.iter().flat_map(|f| [OsString::from("--kernel-features"), f.clone().into()]));
        args.extend(files.map(PathBuf::into_os_string));
        args
    }

    /// One compile process for `chunk` (indices into `inputs`, staged as `stage/files/<i>`).
    /// Each file ends up compiled, rejected with a diagnostic that names it, or ambiguous
    /// (`None`: the parser stopped or died before it said anything about it).
    pub(super) fn compile_round(
        &self,
        stage: &Stage,
        round: usize,
        chunk: &[usize],
        inputs: &[CompileInput<'_>],
        job: &CompileJob,
    ) -> (Vec<Option<Result<Compiled, KernelError>>>, Option<KernelError>) {
        let cache = stage.dir.join(format!("cache-{round}"));
        let args = self.compile_args(&cache, job, chunk.iter().map(|&i| stage.file(i)));
        let what = match chunk {
            [one] => inputs[*one].file.shown.display().to_string(),
            _ => format!("compiling {} files", chunk.len()),
        };
        // --parser-timeout is per file: a batch of real profiles under a slow CPU takes many times
        // one file's time. Capped where a sync would count as stuck (20 timeouts).
        let timeout = self.timeout.saturating_mul(chunk.len().clamp(1, MAX_BATCH_TIMEOUTS) as u32);
        let (diagnostics, unenforced, failure) = match self.run_for(ParserOp::Compile, args, Some(&job.cwd), &what, timeout) {
            Ok(out) if out.status.success() => (Vec::new(), parser_output::unenforced(&out.stderr_text()), None),
            Ok(out) => {
                let text = out.stderr_text();
                (parser_output::diagnostics(&text), parser_output::unenforced(&text), Some(rejected(&out)))
            }
            Err(e) => (Vec::new(), parser_output::Unenforced::default(), Some(e)),
        };
        let said = Said { blobs: cached_blobs(&cache), diagnostics, unenforced };
        let results = chunk.iter().map(|&i| said.outcome(stage, i, &inputs[i])).collect();
        let _ = fs::remove_dir_all(&cache);
        (results, failure)
    }
}

/// What one compile process left: the policy it wrote and what its stderr said.
struct Said {
    blobs: std::collections::BTreeMap<String, PathBuf>,
    diagnostics: Vec<Diagnostic>,
    unenforced: parser_output::Unenforced,
}

impl Said {
    /// File `i`'s outcome: compiled, rejected with the diagnostics that name it, or ambiguous.
    fn outcome(&self, stage: &Stage, i: usize, input: &CompileInput<'_>) -> Option<Result<Compiled, KernelError>> {
        let staged = stage.file(i);
        let of_file = |diags: &[Diagnostic]| -> Vec<Diagnostic> {
            diags
                .iter()
                .filter(|d| d.file.as_deref() == Some(&*staged.to_string_lossy()))
                .cloned()
                .map(|mut d| {
                    parser_output::rename_file(&mut d, &staged, &input.file.shown);
                    d
                })
                .collect()
        };
        // Compiled without a rule the kernel cannot enforce: never loaded.
        let unenforced = of_file(&self.unenforced.errors);
        if !unenforced.is_empty() {
            return Some(Err(KernelError::Rejected { diagnostics: unenforced }));
        }
        // A warning nobody can attribute may be this file's: compiled again (ambiguous).
        if self.unenforced.garbled {
            return None;
        }
        if let Some(path) = self.blobs.get(&stage.name(i)) {
            // A parser killed mid-write leaves a truncated file: ambiguous, not broken.
            let bytes = fs::read(path).ok()?;
            return Some(
                Compiled::from_blob(bytes).map_err(|source| KernelError::BadPolicy { file: input.file.shown.clone(), source }),
            );
        }
        let mine = of_file(&self.diagnostics);
        (!mine.is_empty()).then_some(Err(KernelError::Rejected { diagnostics: mine }))
    }
}
