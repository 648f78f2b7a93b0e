//! An in-memory kernel for unit tests of the reconciler: it records every call and can be
//! told which files fail.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{Kernel, KernelError};
use crate::listing::{KernelProfile, Mode};
use crate::parser_output::Diagnostic;
use crate::plan::DesiredMode;
use crate::scan::SourceFile;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `names` with these file keys.
    Names(Vec<String>),
    /// `load` with these file keys and mode.
    Load(Vec<String>, DesiredMode),
    /// `unload` of this name.
    Unload(String),
}

/// The fake's mutable state.
#[derive(Debug, Default)]
pub struct Inner {
    /// Loaded profiles: name → (mode, sha1).
    pub loaded: BTreeMap<String, (String, String)>,
    /// Names per content hash, as `-N` would print them.
    pub names: BTreeMap<String, Vec<String>>,
    /// Content hashes that fail to load.
    pub fail_load: BTreeSet<String>,
    /// Every call, in order.
    pub calls: Vec<Call>,
}

/// The fake kernel.
#[derive(Debug, Default)]
pub struct FakeKernel(pub Mutex<Inner>);

impl FakeKernel {
    /// Declares what `-N` says for a content hash.
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

fn rejected(file: &SourceFile, message: &str) -> KernelError {
    KernelError::Rejected {
        diagnostics: vec![Diagnostic {
            file: Some(file.shown.display().to_string()),
            line: Some(1),
            message: message.to_string(),
        }],
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

    fn names(&self, files: &[&SourceFile]) -> Vec<Result<Vec<String>, KernelError>> {
        let mut inner = self.0.lock().unwrap();
        inner.calls.push(Call::Names(files.iter().map(|f| f.key.clone()).collect()));
        files.iter().map(|f| inner.names.get(&f.sha256).cloned().ok_or_else(|| rejected(f, "syntax error"))).collect()
    }

    fn load(&self, files: &[&SourceFile], mode: DesiredMode) -> Vec<Result<(), KernelError>> {
        let mut inner = self.0.lock().unwrap();
        inner.calls.push(Call::Load(files.iter().map(|f| f.key.clone()).collect(), mode));
        files
            .iter()
            .map(|f| {
                if inner.fail_load.contains(&f.sha256) {
                    return Err(rejected(f, "load failure"));
                }
                for name in inner.names.get(&f.sha256).cloned().unwrap_or_default() {
                    inner.loaded.insert(name, (mode.as_str().to_string(), format!("{}-{}", f.sha256, mode.as_str())));
                }
                Ok(())
            })
            .collect()
    }

    fn unload(&self, name: &str) -> Result<(), KernelError> {
        let mut inner = self.0.lock().unwrap();
        inner.calls.push(Call::Unload(name.to_string()));
        inner.loaded.remove(name);
        Ok(())
    }
}
