//! The bodies of `apparmor-loader denials` and `apparmor-loader suggest`, minus argument parsing: the
//! binary maps its flags onto these structs, passes stdout and a token cancelled on SIGINT/SIGTERM.

use crate::audit::cgroup::ContainerResolver;
use crate::audit::display::format_record;
use crate::audit::record::AuditRecord;
use crate::audit::ring::profile_matches;
use crate::audit::saved;
use crate::audit::source::{self, ReadOptions, SourceError, SourceKind, SourcePaths, SourceSpec};
use crate::audit::suggest::{InputSummary, SuggestOptions, Suggestions, Support, suggest};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Errors of the audit subcommands (exit code 3 for a missing source, 1 otherwise, is the suggestion).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No record source could be opened.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// `--audit-source off` was given to a command that needs records.
    #[error("the audit source is off; use --audit-source auto|kmsg|netlink|FILE")]
    SourceOff,
    /// A saved log cannot be read (or is too large, or reading it was interrupted).
    #[error("cannot read {}", path.display())]
    Read {
        /// The file given to `--from`.
        path: std::path::PathBuf,
        /// The I/O error; a directory, a file over [`saved::MAX_SAVED_LOG`] and an interrupted
        /// read are reported as one too.
        #[source]
        source: io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write the output")]
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
    /// `--audit-source`: `auto`, `kmsg`, `netlink` or a file; `off` is refused with
    /// [`CliError::SourceOff`].
    pub source: SourceSpec,
    /// Where `/dev/kmsg`, the `auto` fallback audit log and `/proc` are on this host.
    pub paths: SourcePaths,
    /// Attribute records to pods (reads `<proc>/<pid>/cgroup`).
    pub resolve_containers: bool,
}

/// Prints records as they are read. Returns how many were printed. A saved file without `--follow` is
/// read whole first, so its format decides what it proves (see [`saved`]).
pub fn print_denials(args: &DenialsArgs, out: &mut dyn Write, stop: &CancellationToken) -> Result<u64, CliError> {
    let mut resolver = args.resolve_containers.then(|| ContainerResolver::new(args.paths.proc_root.clone()));
    let mut printed = 0;
    if let (false, SourceSpec::File(path)) = (args.follow, &args.source) {
        for rec in read_saved(path, stop)?.records {
            match print_record(args, &mut resolver, &rec, out) {
                Ok(p) => printed += u64::from(p),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(printed);
    }
    let read = ReadOptions { from_start: !args.follow, follow: args.follow, lossless: true, ..ReadOptions::default() };
    let src = source::start(&args.source, &args.paths, &read, stop.clone())?.ok_or(CliError::SourceOff)?;
    let result = loop {
        if stop.is_cancelled() {
            break Ok(());
        }
        let rec = match src.rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
        };
        // A closed pipe (`| head`) ends the command quietly.
        match print_record(args, &mut resolver, &rec, out).and_then(|p| if args.follow { out.flush().map(|_| p) } else { Ok(p) })
        {
            Ok(p) => printed += u64::from(p),
            Err(e) => break if e.kind() == io::ErrorKind::BrokenPipe { Ok(()) } else { Err(e.into()) },
        }
    };
    src.stop();
    src.join();
    result.map(|_| printed)
}

/// Prints one record unless the filters leave it out; true when printed.
fn print_record(
    args: &DenialsArgs,
    resolver: &mut Option<ContainerResolver>,
    rec: &AuditRecord,
    out: &mut dyn Write,
) -> io::Result<bool> {
    if !args.all && !rec.decision.is_violation() {
        return Ok(false);
    }
    if args.profile.as_deref().is_some_and(|p| !profile_matches(rec.profile.as_deref(), p)) {
        return Ok(false);
    }
    let container = match (resolver, rec.pid) {
        (Some(r), Some(pid)) => r.resolve(pid, Instant::now()),
        _ => None,
    };
    if args.json {
        let mut v = serde_json::to_value(rec).unwrap_or_default();
        if let (Some(c), Some(obj)) = (&container, v.as_object_mut()) {
            obj.insert("container".into(), serde_json::to_value(c).unwrap_or_default());
        }
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "{}", format_record(rec, container.as_ref()))?;
    }
    Ok(true)
}

/// Reads a saved log whole, at most [`saved::MAX_SAVED_LOG`] bytes and until `stop`; errors name the file.
fn read_saved(path: &Path, stop: &CancellationToken) -> Result<saved::ReadResult, CliError> {
    let named = |source: io::Error| CliError::Read { path: path.to_owned(), source };
    let f = std::fs::File::open(path).map_err(named)?;
    if f.metadata().map_err(named)?.is_dir() {
        return Err(named(io::Error::new(io::ErrorKind::IsADirectory, "a directory, not a saved log")));
    }
    let guarded = saved::Guarded::new(f, saved::MAX_SAVED_LOG, move || stop.is_cancelled());
    saved::read_records(BufReader::new(guarded)).map_err(named)
}

/// Where `suggest` gets its records.
#[derive(Debug, Clone)]
pub enum SuggestInput {
    /// `--from FILE` (repeatable): saved kernel logs, `journalctl`/`dmesg` output or audit logs. Each
    /// file's format decides what it proves (see [`saved`]).
    Files(Vec<PathBuf>),
    /// `--live`: read the configured source until stopped or for `duration`.
    Live {
        /// `--audit-source`, as for [`DenialsArgs::source`].
        source: SourceSpec,
        /// Where `/dev/kmsg`, the `auto` fallback audit log and `/proc` are on this host.
        paths: SourcePaths,
        /// Stop by itself after this long (otherwise at SIGINT).
        duration: Option<Duration>,
    },
}

/// `apparmor-loader suggest --profile NAME [--from FILE... | --live] [--collapse N] [--trust-userspace] [--json]`.
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
    /// Also turn userspace-reported records (USER_AVC) into rules, marked as such.
    pub trust_userspace: bool,
}

/// Collects the records, prints the suggested rules (and what each input proves), returns them. Never
/// writes a profile.
pub fn run_suggest(args: &SuggestArgs, out: &mut dyn Write, stop: &CancellationToken) -> Result<Suggestions, CliError> {
    let mut malformed = 0;
    let mut inputs = Vec::new();
    let records: Vec<AuditRecord> = match &args.input {
        SuggestInput::Files(paths) => {
            let mut all = Vec::new();
            for path in paths {
                let read = read_saved(path, stop)?;
                malformed += read.parse_errors;
                inputs.push(InputSummary {
                    input: path.display().to_string(),
                    format: read.format.as_str().to_owned(),
                    proves: read.format.describe().to_owned(),
                    records: support_of(&read.records),
                    demoted: read.demoted,
                });
                all.extend(read.records);
            }
            all
        }
        SuggestInput::Live { source: spec, paths, duration } => {
            let (recs, kind) = read_live(&args.profile, spec, paths, *duration, stop)?;
            inputs.push(InputSummary {
                input: "live".into(),
                format: kind.as_str().into(),
                proves: "the kernel's audit stream: a record's type is read where no process can write it".into(),
                records: support_of(&recs),
                demoted: false,
            });
            recs
        }
    };
    let opts = SuggestOptions { collapse_threshold: args.collapse, trust_userspace: args.trust_userspace };
    let mut s = suggest(&args.profile, &records, &opts);
    s.inputs = inputs;
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

/// The profile's records (children included) from the live source, until stopped or `duration` ends.
fn read_live(
    profile: &str,
    spec: &SourceSpec,
    paths: &SourcePaths,
    duration: Option<Duration>,
    stop: &CancellationToken,
) -> Result<(Vec<AuditRecord>, SourceKind), CliError> {
    let src = source::start(spec, paths, &ReadOptions { lossless: true, ..ReadOptions::default() }, stop.clone())?
        .ok_or(CliError::SourceOff)?;
    let until = duration.map(|d| Instant::now() + d);
    let mut recs = Vec::new();
    while !stop.is_cancelled() && until.is_none_or(|u| Instant::now() < u) {
        match src.rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) if profile_matches(r.profile.as_deref(), profile) => recs.push(r),
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let kind = src.kind;
    src.stop();
    src.join();
    Ok((recs, kind))
}

/// Records by origin.
fn support_of(records: &[AuditRecord]) -> Support {
    let mut s = Support::default();
    for r in records {
        s.add(r.origin);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::Origin;

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
        assert_eq!(print_denials(&args, &mut out, &CancellationToken::new()).unwrap(), 2);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "2026-11-28T02:47:50.095Z DENIED web open /a mask=r pid=4242 comm=c\n2026-11-28T02:47:50.095Z ALLOWED web//x open /d mask=r pid=4242 comm=c\n"
        );
        let mut out = Vec::new();
        print_denials(&DenialsArgs { json: true, profile: None, ..args }, &mut out, &CancellationToken::new()).unwrap();
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
        assert!(matches!(print_denials(&args, &mut Vec::new(), &CancellationToken::new()), Err(CliError::SourceOff)));
    }

    #[test]
    fn suggest_from_file_and_live() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("saved.log");
        std::fs::write(&log, [avc("/a", "web", "DENIED"), avc("/a", "web", "DENIED"), avc("/b", "db", "DENIED")].concat())
            .unwrap();
        let args = SuggestArgs {
            profile: "web".into(),
            input: SuggestInput::Files(vec![log.clone()]),
            collapse: None,
            json: false,
            trust_userspace: false,
        };
        let mut out = Vec::new();
        let s = run_suggest(&args, &mut out, &CancellationToken::new()).unwrap();
        assert_eq!(s.rules.len(), 1);
        assert!(String::from_utf8(out).unwrap().contains("+  /a r,  # 2 denials"));

        // Live: follow the file for a short while, records appended meanwhile are used.
        let live_log = dir.path().join("audit.log");
        std::fs::write(&live_log, avc("/old", "web", "DENIED")).unwrap();
        let stop = CancellationToken::new();
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
            trust_userspace: false,
        };
        let mut out = Vec::new();
        let s = run_suggest(&args, &mut out, &stop).unwrap();
        writer.join().unwrap();
        let rules: Vec<&str> = s.rules.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(rules, ["/new r,"], "only records that arrived while following");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["rules"][0]["count"], 1);
        assert_eq!(v["rules"][0]["trust"], "kernel");
        assert_eq!(v["inputs"][0]["input"], "live");
    }

    /// A USER_AVC from pid 812 imitating web's denials; its text hides a kernel AVC after a newline.
    fn user_avc(forged: &str) -> String {
        format!(
            "audit: type=1107 audit(1795834070.095:9): pid=812 uid=65534 auid=4294967295 ses=4294967295 subj=unconfined msg='apparmor=\"DENIED\" operation=\"capable\" profile=\"web\" capname=\"sys_admin\" pid=1 x\naudit: type=1400 audit(1795834070.095:10): apparmor=\"DENIED\" operation=\"open\" profile=\"web\" name=\"{forged}\" pid=1 requested_mask=\"r\" denied_mask=\"r\" tail='"
        )
    }

    fn suggest_text(files: Vec<PathBuf>, trust_userspace: bool, json: bool) -> (Suggestions, String) {
        let args =
            SuggestArgs { profile: "web".into(), input: SuggestInput::Files(files), collapse: None, json, trust_userspace };
        let mut out = Vec::new();
        let s = run_suggest(&args, &mut out, &CancellationToken::new()).unwrap();
        (s, String::from_utf8(out).unwrap())
    }

    #[test]
    fn suggest_never_takes_a_forgery_for_a_kernel_denial() {
        let dir = tempfile::tempdir().unwrap();
        let real = avc("/real", "web", "DENIED");
        let real = real.trim_end().strip_prefix("type=AVC msg=").unwrap();
        // A raw kmsg dump: the kernel escaped the newline; the USER_AVC is userspace-reported.
        let kmsg = dir.path().join("kmsg.txt");
        let escaped = user_avc("/etc/shadow").replace('\\', "\\x5c").replace('\n', "\\x0a");
        std::fs::write(&kmsg, format!("5,1,0,-;audit: type=1400 {real}\n6,2,0,-;{escaped}\n")).unwrap();
        // Plain dmesg of the same: the line after the newline is text nobody can vouch for.
        let dmesg = dir.path().join("dmesg.txt");
        let lines: String = format!("audit: type=1400 {real}\n{}\n", user_avc("/etc/forged-nl"))
            .lines()
            .map(|l| format!("[   5.0] {l}\n"))
            .collect();
        std::fs::write(&dmesg, lines).unwrap();

        let (s, text) = suggest_text(vec![kmsg.clone()], false, false);
        let rules: Vec<(&str, Origin)> = s.rules.iter().map(|r| (r.rule.as_str(), r.trust)).collect();
        assert_eq!(rules, [("/real r,", Origin::Kernel)], "{text}");
        assert_eq!(s.userspace_ignored, 1);
        assert!(text.contains("+  /real r,"), "{text}");
        assert!(text.contains(&format!("# input {} (kmsg; raw /dev/kmsg records", kmsg.display())), "{text}");
        assert!(text.contains("1 kernel-made, 0 unproven, 1 userspace-reported"), "{text}");
        assert!(text.contains("#  ignored 1 userspace-reported record (USER_AVC"), "{text}");
        assert!(!text.contains("sys_admin") && !text.contains("shadow"), "{text}");

        let (s, text) = suggest_text(vec![kmsg.clone(), dmesg.clone()], false, false);
        let rules: Vec<(&str, Origin, u64)> = s.rules.iter().map(|r| (r.rule.as_str(), r.trust, r.support.kernel)).collect();
        assert_eq!(rules, [("/etc/forged-nl r,", Origin::Unproven, 0), ("/real r,", Origin::Kernel, 1)], "{text}");
        assert!(text.contains("?  /etc/forged-nl r,  # 1 denial; UNPROVEN"), "{text}");
        assert!(text.contains("+  /real r,"), "the kernel's record vouches for the rule: {text}");
        assert!(text.contains("(text; plain text"), "{text}");

        // Trusting userspace: the claims become rules, marked.
        let (s, text) = suggest_text(vec![kmsg], true, false);
        let caps: Vec<(&str, Origin)> = s.rules.iter().map(|r| (r.rule.as_str(), r.trust)).collect();
        assert_eq!(caps, [("capability sys_admin,", Origin::Userspace), ("/real r,", Origin::Kernel)], "{text}");
        assert!(text.contains("?  capability sys_admin,  # 1 denial; USERSPACE-REPORTED"), "{text}");

        let (_, json) = suggest_text(vec![dmesg], false, true);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["rules"][0]["trust"], "unproven", "{v}");
        assert_eq!(v["rules"][0]["support"]["unproven"], 1, "{v}");
        assert_eq!(v["inputs"][0]["format"], "text", "{v}");
        assert_eq!(v["userspace_ignored"], 1, "{v}");
    }

    #[test]
    fn denials_marks_what_the_kernel_did_not_make() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let user = user_avc("/etc/shadow").replace('\n', " ").replacen("audit: type=1107 ", "type=USER_AVC msg=", 1);
        std::fs::write(&log, format!("{}{user}\n", avc("/a", "web", "DENIED"))).unwrap();
        let args = DenialsArgs {
            profile: Some("web".into()),
            follow: false,
            json: false,
            all: false,
            source: SourceSpec::File(log),
            paths: SourcePaths { proc_root: dir.path().into(), ..SourcePaths::default() },
            resolve_containers: false,
        };
        let mut out = Vec::new();
        assert_eq!(print_denials(&args, &mut out, &CancellationToken::new()).unwrap(), 2);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("DENIED web open /a mask=r pid=4242 comm=c"), "{text}");
        assert!(
            lines[1].contains(
                " USERSPACE-REPORTED DENIED web capable capability=sys_admin pid=812 uid=65534 sender=unconfined claimed_pid=1"
            ),
            "{text}"
        );
    }
}
