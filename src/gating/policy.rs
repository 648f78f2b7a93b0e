//! What `admission-policy` (src/cli/gating.rs) prints: a ValidatingAdmissionPolicy (and its
//! binding) that rejects Pods and pod templates naming a Localhost AppArmor profile the profiles
//! directory does not define.
//!
//! The names come from the files' compiled policy, as the agent itself names them, never from
//! a reading of the source. The CEL covers the GA field (`appArmorProfile.localhostProfile`, pod
//! and container level, init and ephemeral containers) and the deprecated
//! `container.apparmor.security.beta.kubernetes.io/*` annotation (`localhost/NAME`), in Pods and
//! in the templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::kernel::{CompileInput, CompileJob, Kernel};
use crate::scan::{self, ScanEntry, ScanOptions};

/// The policy's and the binding's name.
pub const POLICY_NAME: &str = "apparmor-loader-known-profiles";

/// A profile file the policy cannot be generated from.
#[derive(Debug, thiserror::Error)]
#[error("{} profile file(s) cannot be named, so no policy was written:\n{}", .0.len(), .0.join("\n"))]
pub struct UnnamedFiles(pub Vec<String>);

/// The feature set to compile for: the one given, else none when this host's kernel has AppArmor
/// (`apparmor_dir` has `features`), else Debian's pinned set (`apt-get install apparmor`) when it is
/// there: the parser cannot compile without one, and the names do not depend on it.
pub fn features_file(apparmor_dir: &Path, given: Option<&Path>) -> Option<PathBuf> {
    if let Some(f) = given {
        return Some(f.to_path_buf());
    }
    let fallback = Path::new(crate::defaults::PARSER_KERNEL_FEATURES);
    (!apparmor_dir.join("features").exists() && fallback.is_file()).then(|| fallback.to_path_buf())
}

/// The top-level profile names of every file of `dir`, compiled by `kernel` in one parser call
/// with `job` (its `cwd` should be `dir`, its include dirs those the agent searches).
pub fn profile_names(kernel: &impl Kernel, dir: &Path, recursive: bool, job: CompileJob) -> anyhow::Result<Vec<String>> {
    let opts = ScanOptions { recursive, max_file_size: crate::defaults::MAX_FILE_SIZE };
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for entry in scan::scan(dir, &opts)? {
        match entry {
            ScanEntry::File(f) => {
                let bytes = std::fs::read(&f.real).with_context(|| format!("cannot read {}", f.shown.display()))?;
                files.push((f, bytes));
            }
            ScanEntry::Rejected { key, reason } => errors.push(format!("{}: {reason}", dir.join(key).display())),
        }
    }
    let inputs: Vec<CompileInput<'_>> = files.iter().map(|(file, bytes)| CompileInput { file, bytes }).collect();
    let compiled = kernel.compile(&inputs, &job)?;
    let mut names = Vec::new();
    for ((file, _), result) in files.iter().zip(compiled) {
        match result {
            Ok(c) => names.extend(c.top_level()),
            Err(e) => errors.push(format!("{}: {:#}", file.shown.display(), anyhow::Error::from(e))),
        }
    }
    if !errors.is_empty() {
        return Err(UnnamedFiles(errors).into());
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// A CEL string literal: double-quoted, with backslash, quote and control characters escaped,
/// so any profile name is one literal (and the expression stays one printable YAML line).
pub fn cel_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The pod-level and container-level Localhost profile names of a pod spec (`variables.spec`).
const NAMED: &str = r#"(has(variables.spec.securityContext) && has(variables.spec.securityContext.appArmorProfile) && has(variables.spec.securityContext.appArmorProfile.localhostProfile) ? [variables.spec.securityContext.appArmorProfile.localhostProfile] : [])
      + variables.spec.containers.filter(c, has(c.securityContext) && has(c.securityContext.appArmorProfile) && has(c.securityContext.appArmorProfile.localhostProfile)).map(c, c.securityContext.appArmorProfile.localhostProfile)
      + (has(variables.spec.initContainers) ? variables.spec.initContainers.filter(c, has(c.securityContext) && has(c.securityContext.appArmorProfile) && has(c.securityContext.appArmorProfile.localhostProfile)).map(c, c.securityContext.appArmorProfile.localhostProfile) : [])
      + (has(variables.spec.ephemeralContainers) ? variables.spec.ephemeralContainers.filter(c, has(c.securityContext) && has(c.securityContext.appArmorProfile) && has(c.securityContext.appArmorProfile.localhostProfile)).map(c, c.securityContext.appArmorProfile.localhostProfile) : [])"#;

/// The policy and its binding, as one YAML stream.
pub fn render(names: &[String], source: &str) -> String {
    let known = names.iter().map(|n| cel_string(n)).collect::<Vec<_>>().join(", ");
    format!(
        r#"# Generated by `apparmor-loader admission-policy --profiles {source}`: do not edit, regenerate.
# Rejects Pods and pod templates whose Localhost AppArmor profile is not one of the {count}
# profiles the files define (names read from the compiled policy, as the agent names them).
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {POLICY_NAME}
  labels:
    app.kubernetes.io/name: apparmor-loader
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["pods", "pods/ephemeralcontainers"]
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["deployments", "statefulsets", "daemonsets", "replicasets"]
    - apiGroups: ["batch"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["jobs", "cronjobs"]
  variables:
  - name: known
    expression: |-
      [{known}]
  - name: spec
    expression: |-
      object.kind == 'Pod' ? object.spec : object.kind == 'CronJob' ? object.spec.jobTemplate.spec.template.spec : object.spec.template.spec
  - name: annotations
    expression: |-
      object.kind == 'Pod' ? (has(object.metadata.annotations) ? object.metadata.annotations : {{}})
      : object.kind == 'CronJob' ? (has(object.spec.jobTemplate.spec.template.metadata) && has(object.spec.jobTemplate.spec.template.metadata.annotations) ? object.spec.jobTemplate.spec.template.metadata.annotations : {{}})
      : (has(object.spec.template.metadata) && has(object.spec.template.metadata.annotations) ? object.spec.template.metadata.annotations : {{}})
  - name: named
    expression: |-
      {NAMED}
  - name: annotated
    expression: |-
      variables.annotations.filter(k, k.startsWith('container.apparmor.security.beta.kubernetes.io/') && variables.annotations[k].startsWith('localhost/')).map(k, variables.annotations[k])
  - name: unknown
    expression: |-
      variables.named.filter(n, !(n in variables.known)) + variables.annotated.filter(a, !(a in variables.known.map(n, 'localhost/' + n)))
  validations:
  - expression: size(variables.unknown) == 0
    reason: Invalid
    message: names an AppArmor profile that apparmor-loader does not ship
    messageExpression: |-
      'AppArmor profile ' + variables.unknown[0] + ' is not shipped by apparmor-loader: add its file to profiles/ (and profiles/kustomization.yaml), regenerate this policy with `apparmor-loader admission-policy`, let the DaemonSet load it on the nodes, then apply this workload again'
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {POLICY_NAME}
  labels:
    app.kubernetes.io/name: apparmor-loader
spec:
  policyName: {POLICY_NAME}
  validationActions: [Deny]
"#,
        count = names.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_name_is_one_cel_literal() {
        assert_eq!(cel_string("payment-api"), r#""payment-api""#);
        assert_eq!(cel_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(cel_string("a\nb\u{7f}"), r#""a\u000ab\u007f""#);
    }

    #[test]
    fn the_known_list_holds_every_name_and_nothing_else_varies() {
        let a = render(&["nginx-web".into(), "payment-api".into()], "profiles");
        assert!(a.contains("[\"nginx-web\", \"payment-api\"]\n"));
        let b = render(&["x".into()], "profiles");
        let differing: Vec<_> = a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect();
        assert_eq!(differing.len(), 2, "only the count and the list differ: {differing:?}");
    }
}
