//! The bodies of `apparmor-loader denials` and `apparmor-loader suggest`, minus argument parsing: the
//! binary maps its flags onto these structs, passes stdout and a stop flag raised on SIGINT/SIGTERM.

use super::cgroup::ContainerResolver;
use super::display::format_record;
use super::record::AuditRecord;
use super::ring::profile_matches;
use super::source::{self, ReadOptions, SourceError, SourcePaths, SourceSpec, StopFlag};
use super::suggest::{SuggestOptions, Suggestions, suggest};
use std::io::{self, BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Errors of the audit subcommands (exit code 3 for a missing source, 1 otherwise, is the suggestion).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No record source could be opened.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// `--audit-source off` was given to a command that needs records.
    #[error("the audit source is off; use --audit-source auto|kmsg|netlink|FILE")]
    SourceOff,
    /// Reading the input or writing the output failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// `apparmor-loader denials [--profile NAME] [--follow] [--json]`.
#[derive(Debug, Clone)]
pub struct DenialsArgs {
    /// Only this profile (and its children).
    pub profile: Option<String>,
    /// Keep printing new records until stopped; without it, print what the source holds now and exit
    /// (the kernel log buffer or the whole audit log; netlink keeps no history, so it prints nothing).
    pub follow: bool,
    /// One JSON object per line instead of the readable form.
    pub json: bool,
    /// Include records other than denials and complain-mode allowances (AUDIT, STATUS).
    pub all: bool,
    /// `--audit-source`.
    pub source: SourceSpec,
    /// Host paths.
    pub paths: SourcePaths,
    /// Attribute records to pods (reads `<proc>/<pid>/cgroup`).
    pub resolve_containers: bool,
}

/// Prints records as they are read. Returns how many were printed.
pub fn denials(args: &DenialsArgs, out: &mut dyn Write, stop: &StopFlag) -> Result<u64, CliError> {
    let read = ReadOptions { from_start: !args.follow, follow: args.follow, lossless: true, ..ReadOptions::default() };
    let src = source::start(&args.source, &args.paths, &read, stop.clone())?.ok_or(CliError::SourceOff)?;
    let mut resolver = args.resolve_containers.then(|| ContainerResolver::new(args.paths.proc_root.clone()));
    let mut printed = 0;
    let result = loop {
        if stop.is_stopped() {
            break Ok(());
        }
        let rec = match src.rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
        };
        if !args.all && !rec.decision.is_violation() {
            continue;
        }
        if args.profile.as_deref().is_some_and(|p| !profile_matches(rec.profile.as_deref(), p)) {
            continue;
        }
        let container = match (&mut resolver, rec.pid) {
            (Some(r), Some(pid)) => r.resolve(pid, Instant::now()),
            _ => None,
        };
        let res = if args.json {
            let mut v = serde_json::to_value(&rec).unwrap_or_default();
            if let (Some(c), Some(obj)) = (&container, v.as_object_mut()) {
                obj.insert("container".into(), serde_json::to_value(c).unwrap_or_default());
            }
            writeln!(out, "{v}")
        } else {
            writeln!(out, "{}", format_record(&rec, container.as_ref()))
        };
        // A closed pipe (`| head`) ends the command quietly.
        if let Err(e) = res.and_then(|_| if args.follow { out.flush() } else { Ok(()) }) {
            break if e.kind() == io::ErrorKind::BrokenPipe { Ok(()) } else { Err(e.into()) };
        }
        printed += 1;
    };
    src.stop();
    src.join();
    result.map(|_| printed)
}

/// Where `suggest` gets its records.
#[derive(Debug, Clone)]
pub enum SuggestInput {
    /// `--from FILE`: a saved kernel log, `journalctl -k` / `dmesg` output, or an audit log.
    File(PathBuf),
    /// `--live`: read the configured source until stopped or for `duration`.
    Live {
        /// `--audit-source`.
        source: SourceSpec,
        /// Host paths.
        paths: SourcePaths,
        /// Stop by itself after this long (otherwise at SIGINT).
        duration: Option<Duration>,
    },
}

/// `apparmor-loader suggest --profile NAME [--from FILE | --live] [--collapse N] [--json]`.
#[derive(Debug, Clone)]
pub struct SuggestArgs {
    /// The profile to write rules for.
    pub profile: String,
    /// Where the records come from.
    pub input: SuggestInput,
    /// Collapse N+ files in one directory into `dir/*`.
    pub collapse: Option<usize>,
    /// Print the suggestions as JSON instead of the patch-like list.
    pub json: bool,
}

/// Collects the records, prints the suggested rules, returns them. Never writes a profile.
pub fn run_suggest(args: &SuggestArgs, out: &mut dyn Write, stop: &StopFlag) -> Result<Suggestions, CliError> {
    let mut malformed = 0;
    let records: Vec<AuditRecord> = match &args.input {
        SuggestInput::File(path) => {
            let f = std::fs::File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            let read = super::saved::read_records(BufReader::new(f))?;
            malformed = read.parse_errors;
            read.records
        }
        SuggestInput::Live { source: spec, paths, duration } => {
            let src = source::start(spec, paths, &ReadOptions { lossless: true, ..ReadOptions::default() }, stop.clone())?
                .ok_or(CliError::SourceOff)?;
            let until = duration.map(|d| Instant::now() + d);
            let mut recs = Vec::new();
            while !stop.is_stopped() && until.is_none_or(|u| Instant::now() < u) {
                match src.rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(r) if r.profile.as_deref() == Some(args.profile.as_str()) => recs.push(r),
                    Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            src.stop();
            src.join();
            recs
        }
    };
    let s = suggest(&args.profile, &records, &SuggestOptions { collapse_threshold: args.collapse });
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&s).unwrap_or_default())?;
    } else {
        out.write_all(s.render().as_bytes())?;
        if malformed > 0 {
            writeln!(out, "#  note: {malformed} malformed AppArmor line(s) in the input were skipped")?;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avc(name: &str, profile: &str, decision: &str) -> String {
        format!(
            "type=AVC msg=audit(1795834070.095:1): apparmor=\"{decision}\" operation=\"open\" profile=\"{profile}\" name=\"{name}\" pid=4242 comm=\"c\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0\n"
        )
    }

    #[test]
    fn denials_prints_a_file_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        std::fs::write(
            &log,
            [avc("/a", "web", "DENIED"), avc("/b", "db", "DENIED"), avc("/c", "web", "STATUS"), avc("/d", "web//x", "ALLOWED")]
                .concat(),
        )
        .unwrap();
        let args = DenialsArgs {
            profile: Some("web".into()),
            follow: false,
            json: false,
            all: false,
            source: SourceSpec::File(log.clone()),
            paths: SourcePaths { proc_root: dir.path().into(), ..SourcePaths::default() },
            resolve_containers: true,
        };
        let mut out = Vec::new();
        assert_eq!(denials(&args, &mut out, &StopFlag::new()).unwrap(), 2);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "2026-11-28T02:47:50.095Z DENIED web open /a mask=r pid=4242 comm=c\n2026-11-28T02:47:50.095Z ALLOWED web//x open /d mask=r pid=4242 comm=c\n"
        );
        let mut out = Vec::new();
        denials(&DenialsArgs { json: true, profile: None, ..args }, &mut out, &StopFlag::new()).unwrap();
        let lines: Vec<serde_json::Value> =
            String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["profile"], "db");
    }

    #[test]
    fn denials_off_is_an_error() {
        let args = DenialsArgs {
            profile: None,
            follow: false,
            json: false,
            all: false,
            source: SourceSpec::Off,
            paths: SourcePaths::default(),
            resolve_containers: false,
        };
        assert!(matches!(denials(&args, &mut Vec::new(), &StopFlag::new()), Err(CliError::SourceOff)));
    }

    #[test]
    fn suggest_from_file_and_live() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("saved.log");
        std::fs::write(&log, [avc("/a", "web", "DENIED"), avc("/a", "web", "DENIED"), avc("/b", "db", "DENIED")].concat())
            .unwrap();
        let args = SuggestArgs { profile: "web".into(), input: SuggestInput::File(log.clone()), collapse: None, json: false };
        let mut out = Vec::new();
        let s = run_suggest(&args, &mut out, &StopFlag::new()).unwrap();
        assert_eq!(s.rules.len(), 1);
        assert!(String::from_utf8(out).unwrap().contains("+  /a r,  # 2 denials"));

        // Live: follow the file for a short while, records appended meanwhile are used.
        let live_log = dir.path().join("audit.log");
        std::fs::write(&live_log, avc("/old", "web", "DENIED")).unwrap();
        let stop = StopFlag::new();
        let writer = {
            let live_log = live_log.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let mut f = std::fs::OpenOptions::new().append(true).open(&live_log).unwrap();
                f.write_all(avc("/new", "web", "DENIED").as_bytes()).unwrap();
            })
        };
        let args = SuggestArgs {
            profile: "web".into(),
            input: SuggestInput::Live {
                source: SourceSpec::File(live_log),
                paths: SourcePaths::default(),
                duration: Some(Duration::from_millis(1500)),
            },
            collapse: None,
            json: true,
        };
        let mut out = Vec::new();
        let s = run_suggest(&args, &mut out, &stop).unwrap();
        writer.join().unwrap();
        let rules: Vec<&str> = s.rules.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(rules, ["/new r,"], "only records that arrived while following");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["rules"][0]["count"], 1);
    }
}
