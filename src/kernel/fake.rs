//! An in-memory kernel for unit tests of the reconciler: it records every call, compiles to
//! real binary policy (so the reconciler's blob reading and verification run for real), and
//! can be told which contents fail to compile or to load.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use sha2::Digest;

use super::{CompileInput, CompileJob, Compiled, Kernel, KernelError, LoadKind};
use crate::kernel::listing::{KernelProfile, Mode};
use crate::kernel::parser_output::Diagnostic;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `compile` with these file keys.
    Compile(Vec<String>),
    /// `load` of this file key.
    Load(String, LoadKind),
    /// `unload` of this name.
    Unload(String),
}

/// The fake's mutable state.
#[derive(Debug, Default)]
pub struct Inner {
    /// Loaded profiles: name → (mode, kernel hash).
    pub loaded: BTreeMap<String, (String, String)>,
    /// The kernel hashes policy with SHA-256, as Linux 6.8 and later do; SHA-1 otherwise.
    pub sha256: bool,
    /// Names per content hash: what the content defines when it compiles.
    pub names: BTreeMap<String, Vec<String>>,
    /// Content hashes whose policy the kernel refuses.
    pub fail_load: BTreeSet<String>,
    /// Content hashes the kernel accepts but does not apply (a lying kernel or parser).
    pub silently_ignore: BTreeSet<String>,
    /// Foreign profiles someone loads while the next compile runs.
    pub appear_on_compile: BTreeSet<String>,
    /// Every call, in order.
    pub calls: Vec<Call>,
}

/// The fake kernel.
#[derive(Debug, Default)]
pub struct FakeKernel(pub Mutex<Inner>);

impl FakeKernel {
    /// Declares what a content hash compiles to.
    pub fn define(&self, sha256: &str, names: &[&str]) {
        self.0.lock().unwrap().names.insert(sha256.to_string(), names.iter().map(|s| s.to_string()).collect());
    }

    /// Puts a profile in the kernel that the agent did not load.
    pub fn preload(&self, name: &str) {
        self.0.lock().unwrap().loaded.insert(name.to_string(), ("enforce".into(), "foreign".into()));
    }

    /// The calls so far, then forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.0.lock().unwrap().calls)
    }
}

/// Binary policy in the kernel's format: per profile a version header and a profile struct
/// holding the name, the flags and the content hash (so an edit changes the kernel hash).
pub fn policy(names: &[String], content_sha: &str) -> Vec<u8> {
    fn name(out: &mut Vec<u8>, n: &str) {
        out.push(4);
        out.extend_from_slice(&((n.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(n.as_bytes());
        out.push(0);
    }
    fn string(out: &mut Vec<u8>, s: &str) {
        out.push(5);
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    fn u32v(out: &mut Vec<u8>, v: u32) {
        out.push(2);
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut out = Vec::new();
    for n in names {
        name(&mut out, "version");
        u32v(&mut out, 0x0020_2007);
        name(&mut out, "profile");
        out.push(7);
        string(&mut out, n);
        name(&mut out, "flags");
        out.push(7);
        for v in [0, 0, 0] {
            u32v(&mut out, v);
        }
        out.push(8);
        name(&mut out, "content");
        string(&mut out, content_sha);
        out.push(8);
    }
    out
}

fn rejected(path: &Path, message: &str) -> KernelError {
    KernelError::Rejected {
        diagnostics: vec![Diagnostic { file: Some(path.display().to_string()), line: Some(1), message: message.to_string() }],
    }
}

impl Kernel for FakeKernel {
    fn listing(&self) -> Result<Vec<KernelProfile>, KernelError> {
        let inner = self.0.lock().unwrap();
        Ok(inner.loaded.iter().map(|(n, (m, _))| KernelProfile { name: n.clone(), mode: Mode::parse(m) }).collect())
    }

    fn hashes(&self) -> Result<BTreeMap<String, String>, KernelError> {
        Ok(self.0.lock().unwrap().loaded.iter().map(|(n, (_, h))| (n.clone(), h.clone())).collect())
    }

    fn compile(&self, inputs: &[CompileInput<'_>], job: &CompileJob) -> Result<Vec<Result<Compiled, KernelError>>, KernelError> {
        let mut inner = self.0.lock().unwrap();
        let _ = job;
        inner.calls.push(Call::Compile(inputs.iter().map(|i| i.file.key.clone()).collect()));
        for name in std::mem::take(&mut inner.appear_on_compile) {
            inner.loaded.insert(name, ("enforce".into(), "foreign".into()));
        }
        Ok(inputs
            .iter()
            .map(|i| {
                let sha = crate::scan::hex(&sha2::Sha256::digest(i.bytes));
                let names = inner.names.get(&sha).ok_or_else(|| rejected(&i.file.shown, "syntax error"))?;
                Ok(Compiled::from_blob(policy(names, &sha)).expect("the fake writes valid policy"))
            })
            .collect())
    }

    fn load(&self, file: &Path, compiled: &Compiled, kind: LoadKind) -> Result<(), KernelError> {
        let mut inner = self.0.lock().unwrap();
        let key = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        inner.calls.push(Call::Load(key, kind));
        let content = compiled.blob.windows(64).find_map(|w| {
            let s = std::str::from_utf8(w).ok()?;
            inner.fail_load.iter().chain(&inner.silently_ignore).find(|h| h.as_str() == s).cloned()
        });
        if let Some(h) = content {
            if inner.fail_load.contains(&h) {
                return Err(KernelError::LoadRefused { file: file.to_path_buf(), what: "Protocol error".into() });
            }
            return Ok(());
        }
        if kind == LoadKind::New && compiled.profiles.iter().any(|p| inner.loaded.contains_key(&p.name)) {
            return Err(KernelError::Exists { file: file.to_path_buf() });
        }
        for p in &compiled.profiles {
            let hash = if inner.sha256 { &p.sha256 } else { &p.sha1 };
            inner.loaded.insert(p.name.clone(), (p.mode.to_string(), hash.clone()));
        }
        Ok(())
    }

    fn unload(&self, name: &str) -> Result<(), KernelError> {
        let mut inner = self.0.lock().unwrap();
        inner.calls.push(Call::Unload(name.to_string()));
        // Like the kernel: a profile goes with its children.
        let nested = format!("{name}//");
        inner.loaded.retain(|n, _| n != name && !n.starts_with(&nested));
        Ok(())
    }
}
