//! The `apparmor-loader` binary: parse flags, set up logging, dispatch, map the outcome to
//! an exit code.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use apparmor_loader::agent;
use apparmor_loader::cli::audit::{CliError as AuditCliError, DenialsArgs, SuggestArgs, SuggestInput};
use apparmor_loader::cli::check::{self, CheckArgs};
use apparmor_loader::cli::gating;
use apparmor_loader::cli::inspect::{self, InspectArgs};
#[cfg(feature = "kubectl-plugin")]
use apparmor_loader::cli::kubectl;
use apparmor_loader::cli::{self as commands, Verdict};
use apparmor_loader::config::{Cli, Command, ConfigError, HostSettings, LogFormat, Resolver};
use apparmor_loader::preflight::EnvironmentError;
use apparmor_loader::signals::AgentSignals;
use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;

/// Exit code for a bad flag or config file.
const EXIT_USAGE: u8 = 2;
/// Exit code when AppArmor or the parser is missing.
const EXIT_ENVIRONMENT: u8 = 3;

fn main() -> ExitCode {
    // Installed as a symlink named kubectl-apparmor_loader, the binary is the kubectl plugin.
    if std::env::args_os().next().is_some_and(|a| commands::invoked_as_plugin(&a.to_string_lossy())) {
        return kubectl_plugin();
    }
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        // Before the config file is read: completions need nothing from the host.
        return completions(shell);
    }
    let resolver = match Resolver::new(cli.global.config.as_deref()) {
        Ok(r) => r,
        Err(e) => return fail(&e.into()),
    };
    let host = match resolver.host(&cli) {
        Ok(h) => h,
        Err(e) => return fail(&e.into()),
    };
    init_tracing(host.log_format, &host.log_level);
    let verdict = match &cli.command {
        // The agent runs for as long as the node does: it must not hold the stdout lock meanwhile.
        Command::Run(args) => {
            resolver.run(args, &host).map_err(Into::into).and_then(|run| run_agent(host, run)).map(|()| Verdict::Ok)
        }
        command => dispatch(command, &resolver, host, &mut std::io::stdout().lock()),
    };
    match verdict {
        Ok(Verdict::Ok) => ExitCode::SUCCESS,
        Ok(Verdict::Failures) => ExitCode::FAILURE,
        Err(e) => fail(&e),
    }
}

/// Runs a one-shot subcommand with its resolved settings; it prints its report on `out` (the
/// locked stdout), errors and refusals on stderr.
fn dispatch(command: &Command, resolver: &Resolver, host: HostSettings, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    match command {
        Command::Run(_) => unreachable!("the agent is started by main, without the stdout lock"),
        Command::Sync(args) => resolver.reconcile(args).map_err(Into::into).and_then(|r| commands::sync(&host, &r, out)),
        Command::Diff(args) => resolver.reconcile(args).map_err(Into::into).and_then(|r| commands::diff(&host, &r, out)),
        Command::Check { paths, include, features, json, strict_names, .. } => {
            let (paths, features, json, strict_names) = (paths.clone(), features.clone(), *json, *strict_names);
            let include_dirs = resolver.include_dirs(include);
            check::check(&host, &CheckArgs { paths, include_dirs, features, json, strict_names }, out)
        }
        Command::Status { json, .. } => commands::status(&host, *json, out),
        Command::Completions { .. } => unreachable!("answered before the config file is read"),
        Command::Unload { names, force, .. } => commands::unload(&host, names, *force, out, &mut std::io::stderr()),
        Command::AdmissionPolicy(args) => gating::admission_policy(&host, args, &resolver.include_dirs(&args.include), out),
        Command::ClearNodeFeatures(_) => gating::clear_node_features(&host, out),
        Command::Inspect { files, binary, complain, kernel, json, .. } => {
            let args = InspectArgs { files: files.clone(), binary: *binary, complain: *complain, kernel: *kernel, json: *json };
            inspect::inspect(&host, &args, out)
        }
        Command::Denials { profile, follow, json, all, audit, .. } => {
            let a = resolver.audit(audit, &host.proc_dir);
            let (follow, json, all) = (*follow, *json, *all);
            let (source, paths) = (a.source, a.paths);
            commands::denials(
                &DenialsArgs { profile: profile.clone(), follow, json, all, source, paths, resolve_containers: true },
                out,
            )
        }
        Command::Suggest { profile, from, live: _, duration, collapse, json, trust_userspace, audit, .. } => {
            let a = resolver.audit(audit, &host.proc_dir);
            let input = if from.is_empty() {
                SuggestInput::Live { source: a.source, paths: a.paths, duration: duration.map(Into::into) }
            } else {
                SuggestInput::Files(from.clone())
            };
            let (collapse, json, trust_userspace) = (*collapse, *json, *trust_userspace);
            commands::suggest(&SuggestArgs { profile: profile.clone(), input, collapse, json, trust_userspace }, out)
        }
    }
}

/// Prints the completion script. Generated into memory first: clap_complete panics on a write
/// error, and `completions bash | head` closes the pipe early.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "apparmor-loader", &mut script);
    match std::io::Write::write_all(&mut std::io::stdout().lock(), &script) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader has all it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(&anyhow::Error::new(e).context("cannot write the completion script")),
    }
}

#[cfg(feature = "kubectl-plugin")]
fn kubectl_plugin() -> ExitCode {
    match kubectl::run(&kubectl::PluginCli::parse(), &mut std::io::stdout().lock()) {
        Ok(Verdict::Ok) => ExitCode::SUCCESS,
        Ok(Verdict::Failures) => ExitCode::FAILURE,
        Err(e) => fail(&e),
    }
}

#[cfg(not(feature = "kubectl-plugin"))]
fn kubectl_plugin() -> ExitCode {
    eprintln!("error: this apparmor-loader was built without the kubectl plugin (cargo feature `kubectl-plugin`)");
    ExitCode::from(EXIT_USAGE)
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    if e.downcast_ref::<ConfigError>().is_some() {
        ExitCode::from(EXIT_USAGE)
    } else if e.downcast_ref::<EnvironmentError>().is_some()
        || matches!(e.downcast_ref::<AuditCliError>(), Some(AuditCliError::Source(_) | AuditCliError::SourceOff))
    {
        ExitCode::from(EXIT_ENVIRONMENT)
    } else {
        ExitCode::FAILURE
    }
}

fn init_tracing(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(apparmor_loader::defaults::LOG_LEVEL));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn run_agent(host: HostSettings, run: apparmor_loader::config::RunSettings) -> anyhow::Result<()> {
    // Before the runtime starts its threads, so they inherit the blocked signals.
    let shutdown = CancellationToken::new();
    let signals = AgentSignals::default();
    apparmor_loader::signals::cancel_on_signals(&shutdown, Some(&signals))?;
    // One thread is plenty for a few sockets and timers; parser calls run on the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let result = runtime.block_on(async { agent::run(host, run, shutdown, signals).await });
    // Do not wait for a blocking sync that outlived the shutdown grace period.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
