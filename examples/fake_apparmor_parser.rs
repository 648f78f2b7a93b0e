//! A fake `apparmor_parser` for tests: it applies `-r`/`-R`/`-N`/`-Q`/`-C`/`-B` to a fake kernel that
//! lives in a plain directory passed as `--subdomainfs DIR` (standing in for
//! `/sys/kernel/security/apparmor`).
//!
//! Fake kernel layout under DIR:
//! - `profiles`: lines `NAME (MODE)`, sorted, children as `parent//child (MODE)`;
//! - `revision`: a decimal counter, +1 on every load/replace/remove;
//! - `policy/profiles/<N>/{name,mode,sha1}`: one directory per loaded top-level profile; with a
//!   file `.fake-sha256` in DIR, `sha256` instead of `sha1` (the kernel's hash from Linux 6.8 on);
//! - `.fake-calls` (or `$FAKE_PARSER_LOG`): one JSON line `{"argv":[...],"pid":N}` per invocation.
//!
//! Every file of the fake kernel is replaced atomically (temp file + rename), so a reader never
//! sees a half-written listing. Concurrent invocations serialise their updates with a lock
//! directory (`DIR/.fake-lock`).
//!
//! Mini grammar: top-level `profile NAME [ATTACH] [flags=(...)] {`, `/abs/path [flags=(...)] {`
//! or `NAME flags=(...) {`; nested `profile CHILD {`, `hat CHILD {` or `^CHILD {` define
//! `PARENT//CHILD`; `{}` on the header line is an empty body; `#include`/`include` lines,
//! `abi <...>,` and `@{VAR}=...` lines and comments are ignored; every other line inside a
//! block must end with `,`; braces must balance. Errors are printed in the real parser's format:
//! `AppArmor parser error for FILE in profile FILE at line N: MESSAGE`.
//!
//! Markers in a file's content: `# fake: hang` makes `-r` hang (until killed, or its caller dies) when it reaches that
//! file; `# fake: fail-load` makes `-r` fail for that file (while `-N`/`-Q` succeed).
//! Env: `FAKE_PARSER_DELAY_MS` (sleep before doing anything), `FAKE_PARSER_FILE_DELAY_MS` (sleep before each
//! profile file, like a slow CPU compiling real profiles), `FAKE_PARSER_LOG` (call log path),
//! `FAKE_PARSER_NO_FORK=1` (a syntax error ends the whole run at once, like `yyerror()` in a parser
//! that compiles files in-process rather than in a forked worker per file: later files are not
//! processed; `-j0` does the same), `FAKE_PARSER_PARALLEL=1` (forked per-file workers finish out of
//! order: `-N` prints each file's names in reverse file order, unless `-j1`).
//! `--abort-on-error` stops at the first failed file, like the real flag.
//!
//! Binary policy (`fake_apparmor_parser/binary.rs`), in the real format that
//! `apparmor_loader::kernel::blob` reads, written with the library's test writer:
//! - `-Q -T -W -L DIR [-j N] FILES…` compiles each good file into one blob
//!   `DIR/0fa4e000.0/<basename>` (temp file + rename): a header (version 0x202007) and profile
//!   struct per profile and child, top-level names sorted, each followed by its children; a flags
//!   struct with hat, mode (from `flags=(complain)`; children do not inherit it) and audit words;
//!   a `data` struct holding the source text, so an edit changes the sha1. Like the real 3.0.8
//!   parser, a grandchild is flattened under its direct parent only (`b//c` for `a//b//c`), and
//!   `-C` writes no cache file ("Caching disabled … due to force complain"). A bad file gets no
//!   blob and the usual error; `# fake: hang` hangs; `# fake: fail-load` marks the blob so that
//!   loading it fails.
//! - `-a -B` / `-r -B --subdomainfs DIR BLOBS…` is one `.load` / `.replace` write per file: the
//!   blob is applied whole or not at all; `-a` fails when one of its profiles exists, a child
//!   needs its parent in the blob or the kernel, replacing keeps children the blob does not
//!   redefine, mode and `policy/profiles/*/sha1` come from the blob. Failures are reported like
//!   the real parser's binary load, with the kernel's errno: `Error: Could not replace profile
//!   FILE: Protocol error` (also `File exists`, `Protocol not supported`, `No such file or
//!   directory`). Namespaced blobs are refused: the fake kernel has only the root namespace.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, SystemTime};

use apparmor_loader::kernel::blob::code;
use sha2::{Digest, Sha256};

#[path = "fake_apparmor_parser/binary.rs"]
mod binary;
/// The library's test writer of binary policy, shared so that both write the same layout.
#[path = "../src/kernel/blob/writer.rs"]
mod writer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Add,
    Replace,
    Remove,
    Names,
    Version,
}

#[derive(Debug)]
struct Opts {
    action: Option<Action>,
    skip_kernel_load: bool,
    complain: bool,
    subdomainfs: Option<PathBuf>,
    files: Vec<String>,
    abort_on_error: bool,
    /// `-j N` / `--jobs=N` as given.
    jobs: Option<String>,
    /// `-W`: write each compiled file to the cache.
    write_cache: bool,
    /// `-L DIR`: where the cache is.
    cache_loc: Option<PathBuf>,
    /// `-B`: the files are binary policy to load as they are.
    binary: bool,
    /// `-I DIR` / `--Include DIR`, in order: searched for `include <…>`.
    include_dirs: Vec<PathBuf>,
    /// `-b DIR` / `--base DIR`: searched last.
    base: Option<PathBuf>,
    /// `-o FILE` / `--ofile FILE`: write the compiled policy there.
    ofile: Option<PathBuf>,
}

/// One parsed top-level profile.
#[derive(Debug, Clone)]
struct Profile {
    name: String,
    /// `Some(true)` complain, `Some(false)` enforce, `None` not given in flags.
    complain_flag: Option<bool>,
    /// Child profiles and hats, nested ones included, in file order.
    children: Vec<Child>,
    /// The raw text of the block (header to closing brace), for the sha1.
    text: String,
}

/// A child profile or hat.
#[derive(Debug, Clone)]
struct Child {
    /// The full name `-N` prints: `parent//child`, `a//b//c`.
    name: String,
    /// The name the compiled blob carries: like the real parser 3.0.8, only the direct parent's
    /// last component (`b//c` for `a//b//c`).
    flattened: String,
    /// `Some(true)` complain, `Some(false)` enforce, `None` not given in flags.
    complain_flag: Option<bool>,
    /// `^name` or `hat name`, not `profile name`.
    hat: bool,
}

#[derive(Debug)]
struct ParseError {
    line: usize,
    message: String,
    /// The include the error is in (`None`: the file itself).
    in_file: Option<String>,
}

/// A line of a file with its includes inlined, and where it came from.
struct Line {
    /// The include it is from (`None`: the file itself).
    src: Option<String>,
    no: usize,
    raw: String,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            log_call(&args, None);
            return ExitCode::from(1);
        }
    };
    log_call(&args, opts.subdomainfs.as_deref());
    if let Some(ms) = std::env::var("FAKE_PARSER_DELAY_MS").ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        thread::sleep(Duration::from_millis(ms));
    }
    run(opts)
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        action: None,
        skip_kernel_load: false,
        complain: false,
        subdomainfs: None,
        files: Vec::new(),
        abort_on_error: false,
        jobs: None,
        write_cache: false,
        cache_loc: None,
        binary: false,
        include_dirs: Vec::new(),
        base: None,
        ofile: None,
    };
    let set_action = |opts: &mut Opts, a: Action| -> Result<(), String> {
        match opts.action {
            Some(prev) if prev != a => Err(format!("apparmor_parser: conflicting actions {prev:?} and {a:?}")),
            _ => {
                opts.action = Some(a);
                Ok(())
            }
        }
    };
    let mut i = 0;
    let mut only_files = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if only_files || arg == "-" || !arg.starts_with('-') {
            opts.files.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_files = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (key, inline) = match long.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (long, None),
            };
            let mut value = |name: &str| -> Result<String, String> {
                if let Some(v) = inline.clone() {
                    return Ok(v);
                }
                let v = args.get(i).cloned().ok_or_else(|| format!("apparmor_parser: option '--{name}' requires an argument"))?;
                i += 1;
                Ok(v)
            };
            match key {
                "subdomainfs" => opts.subdomainfs = Some(PathBuf::from(value(key)?)),
                "add" => set_action(&mut opts, Action::Add)?,
                "replace" => set_action(&mut opts, Action::Replace)?,
                "remove" => set_action(&mut opts, Action::Remove)?,
                "names" => set_action(&mut opts, Action::Names)?,
                "version" => set_action(&mut opts, Action::Version)?,
                "skip-kernel-load" => opts.skip_kernel_load = true,
                "complain" => opts.complain = true,
                "abort-on-error" => opts.abort_on_error = true,
                "write-cache" => opts.write_cache = true,
                "binary" => opts.binary = true,
                "skip-cache" | "skip-read-cache" | "quiet" | "verbose" | "skip-bad-cache" => {}
                "jobs" => opts.jobs = Some(value(key)?),
                "cache-loc" => opts.cache_loc = Some(PathBuf::from(value(key)?)),
                "ofile" => opts.ofile = Some(PathBuf::from(value(key)?)),
                "Include" => opts.include_dirs.push(PathBuf::from(value(key)?)),
                "base" => opts.base = Some(PathBuf::from(value(key)?)),
                "Optimize" | "config-file" | "warn" | "Werror" | "max-jobs" | "kernel-features" => {
                    value(key)?;
                }
                _ => return Err(format!("apparmor_parser: unrecognized option '--{key}'")),
            }
            continue;
        }
        // Short options, possibly combined (`-rK`); `-j`, `-I`, `-b`, `-O`, `-L`, `-f`, `-o`, `-M` take a value.
        let chars: Vec<char> = arg[1..].chars().collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            k += 1;
            match c {
                'a' => set_action(&mut opts, Action::Add)?,
                'r' => set_action(&mut opts, Action::Replace)?,
                'R' => set_action(&mut opts, Action::Remove)?,
                'N' => set_action(&mut opts, Action::Names)?,
                'V' => set_action(&mut opts, Action::Version)?,
                'Q' => opts.skip_kernel_load = true,
                'C' => opts.complain = true,
                'W' => opts.write_cache = true,
                'B' => opts.binary = true,
                'K' | 'T' | 'q' | 'v' => {}
                'j' | 'I' | 'b' | 'O' | 'L' | 'f' | 'o' | 'M' => {
                    let rest: String = chars[k..].iter().collect();
                    k = chars.len();
                    let v = if rest.is_empty() {
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or_else(|| format!("apparmor_parser: option requires an argument -- '{c}'"))?;
                        i += 1;
                        v
                    } else {
                        rest
                    };
                    match c {
                        'f' => opts.subdomainfs = Some(PathBuf::from(v)),
                        'j' => opts.jobs = Some(v),
                        'L' => opts.cache_loc = Some(PathBuf::from(v)),
                        'I' => opts.include_dirs.push(PathBuf::from(v)),
                        'b' => opts.base = Some(PathBuf::from(v)),
                        'o' => opts.ofile = Some(PathBuf::from(v)),
                        _ => {}
                    }
                }
                _ => return Err(format!("apparmor_parser: invalid option -- '{c}'")),
            }
        }
    }
    Ok(opts)
}

fn log_call(args: &[String], subdomainfs: Option<&Path>) {
    let path = match std::env::var_os("FAKE_PARSER_LOG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => match subdomainfs {
            Some(dir) if dir.is_dir() => dir.join(".fake-calls"),
            _ => return,
        },
    };
    // The content of each file operand, so that tests can tell which profile a staged copy is.
    let inputs: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| fs::read(a).ok())
        .map(|bytes| apparmor_loader::scan::hex(&Sha256::digest(&bytes)))
        .collect();
    let line = serde_json::json!({ "argv": args, "pid": std::process::id(), "inputs": inputs }).to_string() + "\n";
    // O_APPEND with one write per line: concurrent invocations do not interleave.
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

fn run(opts: Opts) -> ExitCode {
    let action = opts.action.unwrap_or(Action::Add);
    if action == Action::Version {
        println!("AppArmor parser version 4.0.1");
        println!("Copyright (C) 1999-2008 Novell Inc.");
        println!("Copyright 2009-2018 Canonical Ltd.");
        return ExitCode::SUCCESS;
    }
    let files = expand_files(&opts.files);
    if files.is_empty() {
        eprintln!("apparmor_parser: no profile files given (the fake parser does not read stdin)");
        return ExitCode::from(1);
    }
    if opts.binary {
        return binary::load_files(&opts, action, &files);
    }
    let touches_kernel = matches!(action, Action::Add | Action::Replace | Action::Remove) && !opts.skip_kernel_load;
    let kernel = if touches_kernel {
        match opts.subdomainfs.as_deref() {
            Some(dir) if dir.is_dir() => Some(dir.to_path_buf()),
            _ => {
                eprintln!("Warning: unable to find a suitable fs in /proc/mounts, is it mounted?");
                eprintln!("Use --subdomainfs to override.");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };

    let mut failed = false;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    // `-j0` compiles in-process like FAKE_PARSER_NO_FORK; FAKE_PARSER_PARALLEL=1 models forked
    // workers finishing out of order (their -N output comes in reverse file order) unless `-j1`.
    let no_fork = std::env::var("FAKE_PARSER_NO_FORK").is_ok_and(|v| v == "1") || opts.jobs.as_deref() == Some("0");
    let reorder = std::env::var("FAKE_PARSER_PARALLEL").is_ok_and(|v| v == "1") && opts.jobs.as_deref() != Some("1") && !no_fork;
    let mut name_groups: Vec<String> = Vec::new();
    for file in &files {
        if failed && opts.abort_on_error {
            break;
        }
        if let Some(ms) = std::env::var("FAKE_PARSER_FILE_DELAY_MS").ok().and_then(|v| v.trim().parse::<u64>().ok()) {
            thread::sleep(Duration::from_millis(ms));
        }
        let text = match read_file(file) {
            Ok(t) => t,
            Err(FileError::NotFound) => {
                eprintln!("File {file} not found, skipping...");
                failed = true;
                continue;
            }
            Err(FileError::Other(e)) => {
                eprintln!("Error: Could not read profile {file}: {e}.");
                failed = true;
                continue;
            }
        };
        let profiles = match expand(&text, None, &opts, 0).and_then(|lines| parse_lines(&lines)) {
            Ok(p) => p,
            Err(e) => {
                let within = e.in_file.as_deref().unwrap_or(file);
                eprintln!("AppArmor parser error for {file} in profile {within} at line {}: {}", e.line, e.message);
                if no_fork {
                    // yyerror() exits: without a forked worker per file, the rest is never processed.
                    return ExitCode::from(1);
                }
                failed = true;
                continue;
            }
        };
        match action {
            Action::Names => {
                let group: String = profiles.iter().map(|p| format!("{}\n", p.name)).collect();
                if reorder {
                    name_groups.push(group);
                } else {
                    let _ = out.write_all(group.as_bytes());
                    let _ = out.flush();
                }
            }
            // -Q -W -L: compile into the cache.
            _ if kernel.is_none() && opts.write_cache && opts.cache_loc.is_some() => {
                if text.contains("# fake: hang") {
                    return hang();
                }
                let cache = opts.cache_loc.as_deref().expect("checked above");
                if let Err(msg) = binary::write_cache(cache, file, &text, &profiles, opts.complain) {
                    eprintln!("{msg}");
                    failed = true;
                }
            }
            // -o FILE: the compiled policy into that file.
            _ if kernel.is_none() && opts.ofile.is_some() => {
                if let Err(msg) = binary::write_ofile(opts.ofile.as_deref().expect("checked above"), &text, &profiles) {
                    eprintln!("{msg}");
                    failed = true;
                }
            }
            _ if kernel.is_none() => {} // -Q: compile only
            Action::Add | Action::Replace => {
                if text.contains("# fake: hang") {
                    return hang();
                }
                if text.contains("# fake: fail-load") {
                    eprintln!("AppArmor parser error for {file} in profile {file} at line 1: fake load failure");
                    failed = true;
                    continue;
                }
                let dir = kernel.as_deref().expect("checked above");
                // Like the real parser: `-r FILE` sends the kernel exactly what `-Q -W` would cache
                // (with the complain bit under -C), so both paths give the same kernel hash.
                if let Err(reason) = binary::load_source(dir, &text, &profiles, opts.complain, action == Action::Add) {
                    let verb = if action == Action::Add { "add" } else { "replace" };
                    eprintln!("apparmor_parser: Unable to {verb} \"{file}\".  {reason}");
                    failed = true;
                }
            }
            Action::Remove => {
                let dir = kernel.as_deref().expect("checked above");
                match remove(dir, &profiles) {
                    Ok(missing) => {
                        for name in missing {
                            eprintln!("apparmor_parser: Unable to remove \"{name}\".  Profile doesn't exist");
                            failed = true;
                        }
                    }
                    Err(msg) => {
                        eprintln!("{msg}");
                        failed = true;
                    }
                }
            }
            Action::Version => unreachable!("handled above"),
        }
    }
    for group in name_groups.iter().rev() {
        let _ = out.write_all(group.as_bytes());
    }
    let _ = out.flush();
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// Hangs until killed; but does not outlive a caller that was itself killed.
fn hang() -> ExitCode {
    let parent = std::os::unix::process::parent_id();
    while std::os::unix::process::parent_id() == parent {
        thread::sleep(Duration::from_millis(100));
    }
    ExitCode::from(137)
}

enum FileError {
    NotFound,
    Other(io::Error),
}

fn read_file(file: &str) -> Result<String, FileError> {
    let mut f = fs::File::open(file)
        .map_err(|e| if e.kind() == io::ErrorKind::NotFound { FileError::NotFound } else { FileError::Other(e) })?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(FileError::Other)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Like the real parser, a directory argument means every (non-hidden) file in it, sorted.
fn expand_files(files: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        let p = Path::new(f);
        if p.is_dir() {
            let mut entries: Vec<String> = fs::read_dir(p)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                        .filter(|e| e.path().is_file())
                        .map(|e| e.path().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            entries.sort();
            out.extend(entries);
        } else {
            out.push(f.clone());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The mini grammar.

fn syntax(line: usize, message: impl Into<String>) -> ParseError {
    ParseError { line, message: message.into(), in_file: None }
}

/// The lines of `text` with every include inlined after its include line, like the real
/// parser's preprocessor: `include "x"` relative to the working directory, `include <x>` in the
/// `-I` dirs then the `-b` base; `include if exists` may be missing. Without any `-I` or `-b` the
/// fake has no search path and skips `<…>` includes (the tests' profiles all include
/// `<abstractions/base>`, which the fake cannot parse).
fn expand(text: &str, src: Option<&str>, opts: &Opts, depth: usize) -> Result<Vec<Line>, ParseError> {
    let fail = |no: usize, message: String| ParseError { line: no, message, in_file: src.map(str::to_string) };
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let no = idx + 1;
        out.push(Line { src: src.map(str::to_string), no, raw: raw.to_string() });
        let t = raw.trim();
        let Some(rest) = t.strip_prefix("#include").or_else(|| t.strip_prefix("include")) else { continue };
        let rest = rest.trim_start();
        let (optional, rest) = match rest.strip_prefix("if exists") {
            Some(r) => (true, r.trim_start()),
            None => (false, rest),
        };
        let (search, name) = match (rest.strip_prefix('<'), rest.strip_prefix('"')) {
            (Some(r), _) => (true, r.split('>').next().unwrap_or_default()),
            (_, Some(r)) => (false, r.split('"').next().unwrap_or_default()),
            _ => continue,
        };
        if search && opts.include_dirs.is_empty() && opts.base.is_none() {
            continue;
        }
        let candidates: Vec<PathBuf> = if Path::new(name).is_absolute() || !search {
            vec![PathBuf::from(name)]
        } else {
            opts.include_dirs.iter().chain(&opts.base).map(|d| d.join(name)).collect()
        };
        let Some(found) = candidates.into_iter().find(|c| c.exists()) else {
            if optional {
                continue;
            }
            return Err(fail(no, format!("Could not open '{name}'")));
        };
        if depth > 16 {
            return Err(fail(no, "includes nested too deeply".into()));
        }
        let files = if found.is_dir() {
            expand_files(&[found.to_string_lossy().into_owned()])
        } else {
            vec![found.to_string_lossy().into_owned()]
        };
        for f in files {
            let text = fs::read_to_string(&f).map_err(|e| fail(no, format!("Could not open '{name}': {e}")))?;
            out.extend(expand(&text, Some(&f), opts, depth + 1)?);
        }
    }
    Ok(out)
}

/// Strips a `#` comment (outside double quotes). `#include` lines are handled by the caller.
fn strip_comment(line: &str) -> &str {
    let mut in_quote = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quote = !in_quote,
            '#' if !in_quote => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Removes a `flags=(...)` clause from a header; returns the rest and the complain flag if any.
fn take_flags(header: &str, line: usize) -> Result<(String, Option<bool>), ParseError> {
    let Some(start) = header.find("flags") else {
        return Ok((header.to_string(), None));
    };
    let after = header[start + "flags".len()..].trim_start();
    let Some(after_eq) = after.strip_prefix('=') else {
        return Ok((header.to_string(), None));
    };
    let after_eq = after_eq.trim_start();
    let Some(inner_start) = after_eq.strip_prefix('(') else {
        return Err(syntax(line, "syntax error, unexpected TOK_ID, expecting TOK_OPENPAREN"));
    };
    let Some(close) = inner_start.find(')') else {
        return Err(syntax(line, "syntax error, unexpected TOK_OPEN, expecting TOK_CLOSEPAREN"));
    };
    let inner = &inner_start[..close];
    let rest_after = &inner_start[close + 1..];
    let mut mode = None;
    for flag in inner.split(|c: char| c == ',' || c.is_whitespace()) {
        match flag.trim() {
            "complain" | "mode=complain" => mode = Some(true),
            "enforce" | "mode=enforce" => mode = Some(false),
            _ => {}
        }
    }
    let rest = format!("{} {}", &header[..start], rest_after);
    Ok((rest, mode))
}

/// Splits a header into words, honouring double quotes (which are removed).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut has = false;
    for c in s.chars() {
        match c {
            '"' => {
                in_quote = !in_quote;
                has = true;
            }
            c if c.is_whitespace() && !in_quote => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        out.push(cur);
    }
    out
}

/// Parses a header (without the trailing `{`). Returns (name, complain flag).
fn parse_header(header: &str, line: usize, nested: bool) -> Result<(String, Option<bool>), ParseError> {
    let (rest, mode) = take_flags(header, line)?;
    let w = words(&rest);
    let Some(first) = w.first() else {
        return Err(syntax(line, "syntax error, unexpected TOK_OPEN"));
    };
    let name = if first == "profile" || (nested && first == "hat") {
        match w.get(1) {
            Some(n) => n.clone(),
            None => {
                return Err(syntax(line, "syntax error, unexpected TOK_OPEN, expecting TOK_ID"));
            }
        }
    } else if nested {
        match first.strip_prefix('^') {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                return Err(syntax(line, "syntax error, unexpected TOK_OPEN, expecting TOK_END_OF_RULE"));
            }
        }
    } else if first.starts_with('^') || first == "hat" {
        return Err(syntax(line, "Found a hat outside of a profile"));
    } else {
        first.clone()
    };
    if name.contains('%') {
        return Err(syntax(line, "Found unexpected character: '%'"));
    }
    Ok((name, mode))
}

/// The profiles of a file whose includes are inlined; an error names the include it is in.
fn parse_lines(lines: &[Line]) -> Result<Vec<Profile>, ParseError> {
    let mut at = None;
    parse_profile_lines(lines, &mut at).map_err(|mut e| {
        e.in_file = at;
        e
    })
}

fn parse_profile_lines(lines: &[Line], at: &mut Option<String>) -> Result<Vec<Profile>, ParseError> {
    // Stack of open blocks: (full name, complain flag).
    let mut stack: Vec<(String, Option<bool>)> = Vec::new();
    let mut profiles: Vec<Profile> = Vec::new();
    let mut last_line = 0;
    for l in lines {
        let (lineno, raw) = (l.no, l.raw.as_str());
        *at = l.src.clone();
        if l.src.is_none() {
            last_line = lineno;
        }
        let trimmed = raw.trim();
        if trimmed.starts_with("#include") || trimmed.starts_with("include ") || trimmed == "include" {
            if let Some(p) = profiles.last_mut().filter(|_| !stack.is_empty()) {
                p.text.push_str(raw);
                p.text.push('\n');
            }
            continue;
        }
        let line = strip_comment(raw).trim();
        if !stack.is_empty() {
            let p = profiles.last_mut().expect("a block is open");
            p.text.push_str(raw);
            p.text.push('\n');
        }
        if line.is_empty() {
            continue;
        }
        if line.contains('%') && !line.starts_with("@{") {
            return Err(syntax(lineno, "Found unexpected character: '%'"));
        }
        if line == "}" {
            if stack.pop().is_none() {
                return Err(syntax(lineno, "syntax error, unexpected TOK_CLOSE"));
            }
            continue;
        }
        // A header: ends with `{`, or with `{}` / `{ }` (empty body).
        let (header, closes) = if let Some(h) = line.strip_suffix('{') {
            (Some(h), false)
        } else if let Some(h) = line.strip_suffix('}') {
            let h = h.trim_end();
            match h.strip_suffix('{') {
                Some(h) => (Some(h), true),
                None => {
                    return Err(syntax(lineno, "syntax error, unexpected TOK_CLOSE, expecting TOK_END_OF_RULE"));
                }
            }
        } else {
            (None, false)
        };
        if let Some(header) = header {
            let nested = !stack.is_empty();
            let (name, mode) = parse_header(header.trim(), lineno, nested)?;
            if nested {
                let parent = &stack.last().expect("nested").0;
                let full = format!("{parent}//{name}");
                let direct_parent = parent.rsplit("//").next().unwrap_or(parent);
                let hat = header.trim_start().starts_with('^') || header.trim_start().starts_with("hat ");
                let flattened = format!("{direct_parent}//{name}");
                let p = profiles.last_mut().expect("a block is open");
                p.children.push(Child { name: full.clone(), flattened, complain_flag: mode, hat });
                if !closes {
                    stack.push((full, mode));
                }
            } else {
                if name.contains("//") {
                    return Err(syntax(lineno, "syntax error, unexpected TOK_ID"));
                }
                profiles.push(Profile {
                    name: name.clone(),
                    complain_flag: mode,
                    children: Vec::new(),
                    text: format!("{raw}\n"),
                });
                if !closes {
                    stack.push((name, mode));
                }
            }
            continue;
        }
        // A rule or a top-level statement.
        if stack.is_empty() {
            if line.starts_with("@{") || (line.starts_with("abi") && line.ends_with(',')) {
                continue;
            }
            return Err(syntax(lineno, "syntax error, unexpected TOK_ID"));
        }
        if !line.ends_with(',') {
            return Err(syntax(lineno, "syntax error, unexpected TOK_ID, expecting TOK_END_OF_RULE"));
        }
    }
    if !stack.is_empty() {
        *at = None;
        return Err(syntax(last_line.max(1), "syntax error, unexpected $end, expecting TOK_CLOSE"));
    }
    Ok(profiles)
}

// ---------------------------------------------------------------------------------------------
// The fake kernel.

struct Kernel {
    dir: PathBuf,
    /// name -> mode, for every loaded profile (children included).
    listing: BTreeMap<String, String>,
    /// top-level name -> policy dir id.
    policy: BTreeMap<String, u64>,
}

struct Lock(PathBuf);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

fn lock(dir: &Path) -> Result<Lock, String> {
    let path = dir.join(".fake-lock");
    let deadline = SystemTime::now() + Duration::from_secs(30);
    loop {
        match fs::create_dir(&path) {
            Ok(()) => return Ok(Lock(path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A holder that was killed mid-update leaves the lock behind: break it when stale.
                let stale = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(10));
                if stale {
                    let _ = fs::remove_dir(&path);
                    continue;
                }
                if SystemTime::now() > deadline {
                    return Err("apparmor_parser: fake kernel lock timed out".into());
                }
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(format!("apparmor_parser: fake kernel lock: {e}")),
        }
    }
}

fn write_atomic(path: &Path, content: &str) -> io::Result<()> {
    write_atomic_bytes(path, content.as_bytes())
}

fn write_atomic_bytes(path: &Path, content: &[u8]) -> io::Result<()> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    fs::write(&tmp, content)?;
    fs::rename(&tmp, path)
}

impl Kernel {
    fn open(dir: &Path) -> io::Result<Kernel> {
        let mut listing = BTreeMap::new();
        match fs::read_to_string(dir.join("profiles")) {
            Ok(text) => {
                for line in text.lines() {
                    let line = line.trim_end();
                    if line.is_empty() {
                        continue;
                    }
                    match line.rsplit_once(" (") {
                        Some((name, mode)) if mode.ends_with(')') => {
                            listing.insert(name.to_string(), mode[..mode.len() - 1].to_string());
                        }
                        _ => {
                            listing.insert(line.to_string(), "enforce".to_string());
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut policy = BTreeMap::new();
        if let Ok(rd) = fs::read_dir(dir.join("policy/profiles")) {
            for entry in rd.flatten() {
                let Ok(id) = entry.file_name().to_string_lossy().parse::<u64>() else {
                    continue;
                };
                if let Ok(name) = fs::read_to_string(entry.path().join("name")) {
                    policy.insert(name.trim_end_matches('\n').to_string(), id);
                }
            }
        }
        Ok(Kernel { dir: dir.to_path_buf(), listing, policy })
    }

    fn remove_tree(&mut self, name: &str) -> bool {
        let prefix = format!("{name}//");
        let before = self.listing.len();
        self.listing.retain(|k, _| k != name && !k.starts_with(&prefix));
        let existed = self.listing.len() != before;
        if let Some(id) = self.policy.remove(name) {
            let _ = fs::remove_dir_all(self.dir.join("policy/profiles").join(id.to_string()));
        }
        existed
    }

    /// `hashes` is (SHA-1, SHA-256) of the profile's policy; the kernel shows one of them.
    fn set_policy(&mut self, name: &str, mode: &str, hashes: (&str, &str)) -> io::Result<()> {
        let root = self.dir.join("policy/profiles");
        fs::create_dir_all(&root)?;
        let id = match self.policy.get(name) {
            Some(id) => *id,
            None => {
                let id = self.policy.values().max().map_or(1, |m| m + 1);
                self.policy.insert(name.to_string(), id);
                id
            }
        };
        let d = root.join(id.to_string());
        fs::create_dir_all(&d)?;
        write_atomic(&d.join("name"), &format!("{name}\n"))?;
        write_atomic(&d.join("mode"), &format!("{mode}\n"))?;
        if self.dir.join(".fake-sha256").exists() {
            write_atomic(&d.join("sha256"), &format!("{}\n", hashes.1))?;
        } else {
            write_atomic(&d.join("sha1"), &format!("{}\n", hashes.0))?;
        }
        Ok(())
    }

    fn commit(&self) -> io::Result<()> {
        let mut text = String::new();
        for (name, mode) in &self.listing {
            text.push_str(&format!("{name} ({mode})\n"));
        }
        write_atomic(&self.dir.join("profiles"), &text)?;
        let rev = fs::read_to_string(self.dir.join("revision")).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
        write_atomic(&self.dir.join("revision"), &format!("{}\n", rev + 1))
    }
}

/// Removes the names the file defines (with their children); returns the names not loaded.
fn remove(dir: &Path, profiles: &[Profile]) -> Result<Vec<String>, String> {
    let _lock = lock(dir)?;
    let mut k = Kernel::open(dir).map_err(|e| format!("apparmor_parser: fake kernel: {e}"))?;
    let mut missing = Vec::new();
    let mut changed = false;
    for p in profiles {
        if k.remove_tree(&p.name) {
            changed = true;
        } else {
            missing.push(p.name.clone());
        }
    }
    if changed {
        k.commit().map_err(|e| format!("apparmor_parser: fake kernel: {e}"))?;
    }
    Ok(missing)
}
