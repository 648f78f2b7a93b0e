//! The subcommands of the gates that keep pods off nodes without their profiles (`src/gating/`):
//! `admission-policy` and `clear-node-features`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::Verdict;
use crate::config::{AdmissionPolicyArgs, HostSettings};
use crate::gating::{features, policy};
use crate::kernel::CompileJob;
use crate::preflight::{self, Needs};

/// `admission-policy`: names the directory's profiles from their compiled policy (one parser call,
/// nothing loaded; `--kernel-features`: see [`policy::features_file`]) and prints the policy on
/// `out`, or writes it to a file. `include_dirs`: `--include-dir`, resolved. Nothing is written
/// when a file cannot be named.
pub fn admission_policy(
    host: &HostSettings,
    args: &AdmissionPolicyArgs,
    include_dirs: &[PathBuf],
    out: &mut dyn Write,
) -> anyhow::Result<Verdict> {
    let kernel = preflight::host_kernel(host, Needs::Compile)?.with_jobs(host.parser_jobs);
    let kernel_features = policy::features_file(&host.apparmor_dir(), args.kernel_features.as_deref());
    let job = CompileJob { cwd: args.profiles.clone(), include_dirs: include_dirs.to_vec(), kernel_features };
    let names = policy::profile_names(&kernel, &args.profiles, args.recursive, job)?;
    let text = policy::render(&names, &args.profiles.display().to_string());
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?,
        None => out.write_all(text.as_bytes()).context("cannot write to stdout")?,
    }
    Ok(Verdict::Ok)
}

/// `clear-node-features`: removes the Node Feature Discovery feature file, saying on `out` whether
/// there was one.
pub fn clear_node_features(host: &HostSettings, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let path = &host.node_features_file;
    if features::remove(path)? {
        writeln!(out, "removed {}", path.display())?;
    } else {
        writeln!(out, "{} does not exist", path.display())?;
    }
    Ok(Verdict::Ok)
}
