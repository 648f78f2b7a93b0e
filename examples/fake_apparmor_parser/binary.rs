//! The fake parser's binary policy: `-Q -W -L DIR` compiles files into cache blobs in the real
//! format, and `-a -B` / `-r -B` load blobs into the fake kernel the way the kernel's `.load` and
//! `.replace` take them.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use apparmor_loader::kernel::blob::{self, BlobError};

use super::{Action, Kernel, Opts, Profile, lock, write_atomic_bytes, writer};

/// The cache subdirectory. The real parser names it after a hash of the kernel's feature set.
pub const CACHE_SUBDIR: &str = "0fa4e000.0";
/// The `data` key carrying a profile's source text, so that an edit changes the sha1.
const SOURCE_KEY: &str = "fake-source";
/// The `data` key that `# fake: fail-load` adds; the fake kernel refuses a blob carrying it.
const FAIL_LOAD_KEY: &str = "fake-fail-load";

/// Compiles one parsed file into `CACHE/CACHE_SUBDIR/<basename>` (temp file + rename). Under
/// `-C` it writes nothing and warns, like the real parser, which never caches force-complain
/// output.
pub fn write_cache(cache: &Path, file: &str, text: &str, profiles: &[Profile], force_complain: bool) -> Result<(), String> {
    let base = Path::new(file).file_name().map(|b| b.to_string_lossy().into_owned()).unwrap_or_default();
    if force_complain {
        let line = text.lines().count() + 1;
        eprintln!("Warning from {file} ({file} line {line}): Caching disabled for: '{base}' due to force complain");
        return Ok(());
    }
    let dir = cache.join(CACHE_SUBDIR);
    fs::create_dir_all(&dir).map_err(|e| format!("apparmor_parser: cannot create cache dir {}: {e}", dir.display()))?;
    write_atomic_bytes(&dir.join(&base), &compile(text, profiles))
        .map_err(|e| format!("apparmor_parser: cannot write cache file {base}: {e}"))
}

/// `-o FILE`: the file's compiled policy written to `out` (no cache, no kernel), as `check` asks.
pub fn write_ofile(out: &Path, text: &str, profiles: &[Profile]) -> Result<(), String> {
    write_atomic_bytes(out, &compile(text, profiles)).map_err(|e| format!("apparmor_parser: cannot write {}: {e}", out.display()))
}

/// One blob for a file: every profile and child flattened, top-level names sorted and each
/// followed by its children depth-first, as the real parser orders them.
fn compile(text: &str, profiles: &[Profile]) -> Vec<u8> {
    let fail = text.contains("# fake: fail-load");
    let mode = |flag: Option<bool>| u32::from(flag.unwrap_or(false));
    // (sort key, name in the blob, flags, source)
    let mut entries: Vec<(Vec<String>, String, [u32; 3], String)> = Vec::new();
    for p in profiles {
        entries.push((vec![p.name.clone()], p.name.clone(), [0, mode(p.complain_flag), 0], p.text.clone()));
        for c in &p.children {
            let key = c.name.split("//").map(str::to_string).collect();
            // A child's mode is its own flags only: the real parser does not inherit the parent's.
            entries.push((
                key,
                c.flattened.clone(),
                [u32::from(c.hat), mode(c.complain_flag), 0],
                format!("{}\n{}", c.name, p.text),
            ));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (_, name, flags, source) in &entries {
        let mut data: Vec<(&str, &[u8])> = vec![(SOURCE_KEY, source.as_bytes())];
        if fail {
            data.push((FAIL_LOAD_KEY, b"1"));
        }
        let spec = writer::Profile {
            name: name.as_bytes(),
            namespace: None,
            version: Some(writer::VERSION_3_0_8),
            flags: *flags,
            data: &data,
        };
        writer::profile(&mut out, &spec);
    }
    out
}

/// `-a -B` / `-r -B FILES…`: each file is one write to `.load` / `.replace`.
pub fn load_files(opts: &Opts, action: Action, files: &[String]) -> ExitCode {
    let verb = match action {
        Action::Add => "load",
        Action::Replace => "replace",
        _ => {
            eprintln!("Error: Invalid load option specified: {action:?}");
            return ExitCode::from(1);
        }
    };
    if opts.skip_kernel_load {
        return ExitCode::SUCCESS;
    }
    let Some(dir) = opts.subdomainfs.as_deref().filter(|d| d.is_dir()) else {
        eprintln!("Warning: unable to find a suitable fs in /proc/mounts, is it mounted?");
        eprintln!("Use --subdomainfs to override.");
        return ExitCode::from(1);
    };
    let mut failed = false;
    for file in files {
        if failed && opts.abort_on_error {
            break;
        }
        if let Err(reason) = load_one(dir, file, action == Action::Add) {
            eprintln!("Error: Could not {verb} profile {file}: {reason}");
            failed = true;
        }
    }
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// `-a FILE` / `-r FILE`: compile and apply the policy the cache would hold.
pub fn load_source(dir: &Path, text: &str, profiles: &[Profile], force_complain: bool, add_only: bool) -> Result<(), String> {
    let mut bytes = compile(text, profiles);
    if force_complain {
        bytes = blob::force_complain(&bytes).map_err(|e| e.to_string())?;
    }
    apply(dir, &bytes, add_only)
}

fn load_one(dir: &Path, file: &str, add_only: bool) -> Result<(), String> {
    let bytes = fs::read(file).map_err(|e| strerror(&e))?;
    apply(dir, &bytes, add_only)
}

/// Applies one blob as the kernel would: all of it or nothing. Returns `strerror()` of the
/// kernel's errno on failure.
fn apply(dir: &Path, bytes: &[u8], add_only: bool) -> Result<(), String> {
    let profiles = blob::parse(bytes).map_err(|e| match e {
        BlobError::Version { .. } | BlobError::Malformed { offset: 0, .. } => "Protocol not supported".to_string(),
        BlobError::MixedNamespaces { .. } => "Permission denied".to_string(),
        _ => "Protocol error".to_string(),
    })?;
    if contains(bytes, FAIL_LOAD_KEY.as_bytes()) {
        return Err("Protocol error".into());
    }
    if profiles.iter().any(|p| p.namespace.is_some()) {
        return Err("Operation not supported (the fake kernel has no policy namespaces)".into());
    }
    let _lock = lock(dir)?;
    let mut k = Kernel::open(dir).map_err(|e| format!("fake kernel: {e}"))?;
    if add_only && profiles.iter().any(|p| k.listing.contains_key(&p.name)) {
        return Err("File exists".into());
    }
    // A child attaches to a parent in the same blob or already loaded (`__lookup_parent`).
    let defined = |name: &str| profiles.iter().any(|p| p.name == name) || k.listing.contains_key(name);
    if profiles.iter().any(|p| blob::ancestors(&p.name).any(|a| !defined(a))) {
        return Err("No such file or directory".into());
    }
    // Replacing a profile keeps the old one's children that the blob does not redefine, as the
    // kernel's __replace_profile() moves them to the new profile.
    for p in &profiles {
        k.listing.insert(p.name.clone(), p.mode.to_string());
        if !p.name.contains("//") {
            k.set_policy(&p.name, p.mode.as_str(), (&p.sha1, &p.sha256)).map_err(|e| format!("fake kernel: {e}"))?;
        }
    }
    k.commit().map_err(|e| format!("fake kernel: {e}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The C library's wording for the errors a file read can hit.
fn strerror(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "Permission denied".into(),
        _ => e.to_string(),
    }
}
