//! A pure parser of `apparmor_parser`'s error messages, which carry the file and line the user
//! has to fix.

use std::path::Path;

/// `text` with every control character except newline and tab written as `\xNN`: parser
/// output ends up on terminals and in logs, where raw escape sequences act.
pub fn printable(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// One problem the parser reported, reduced to what a user needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the parser named, if any.
    pub file: Option<String>,
    /// 1-based line, if the parser gave one.
    pub line: Option<u32>,
    /// The parser's own words.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: {}", self.message),
            (Some(file), None) => write!(f, "{file}: {}", self.message),
            (None, Some(line)) => write!(f, "line {line}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// Extracts the diagnostics from the parser's stderr.
///
/// Known shapes (apparmor 2.13–4.x):
/// - `AppArmor parser error for FILE in profile FILE at line N: MESSAGE`
/// - `AppArmor parser error for FILE in profile FILE: MESSAGE` (no line)
/// - `AppArmor parser error at line N: MESSAGE`
/// - `File FILE not found, skipping...`
/// - `Warning converted to Error from profile NAME (FILE): MESSAGE` (4.x with `--Werror=…`, e.g.
///   `userns rules not enforced` when the kernel lacks the feature)
///
/// Other non-empty lines (warnings, "Cache read/write disabled") are kept as plain
/// messages only when no structured error was found, so that nothing the parser said
/// on failure is lost.
pub fn diagnostics(stderr: &str) -> Vec<Diagnostic> {
    // The parser quotes the offending byte raw ("unexpected character: '\x7f'"): keep
    // control characters out of logs and JSON.
    let stderr: String = stderr.chars().map(|c| if c.is_control() && c != '\n' { '?' } else { c }).collect();
    let stderr = stderr.as_str();
    let structured: Vec<Diagnostic> = stderr.lines().filter_map(parse_error_line).collect();
    if !structured.is_empty() {
        return structured;
    }
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| Diagnostic { file: None, line: None, message: l.to_string() })
        .collect()
}

fn parse_error_line(line: &str) -> Option<Diagnostic> {
    let line = line.trim();
    // Two records in one line: parallel workers interleaved their writes, and the pieces may
    // belong to other files. Dropped, so the files stay ambiguous and are compiled alone.
    let glued = ["AppArmor parser error", "Warning converted to Error", "Warning from "];
    if glued.iter().map(|p| line.matches(p).count()).sum::<usize>() > 1 {
        return None;
    }
    if let Some(rest) = line.strip_prefix("AppArmor parser error for ") {
        // FILE may contain spaces; " in profile " and " at line " separate the parts.
        let (head, message) = split_message(rest)?;
        let (file_part, line_no) = match head.rsplit_once(" at line ") {
            Some((before, n)) => (before, n.trim().parse().ok()),
            None => (head, None),
        };
        let (file, within) = file_part.split_once(" in profile ").unwrap_or((file_part, file_part));
        // "in profile" names the file being read: an include when it differs. Its line is the
        // include's, so it goes with the include's name, not with the file's.
        if within != file {
            let at = line_no.map(|n| format!(":{n}")).unwrap_or_default();
            return Some(Diagnostic { file: Some(file.to_string()), line: None, message: format!("{within}{at}: {message}") });
        }
        return Some(Diagnostic { file: Some(file.to_string()), line: line_no, message: message.to_string() });
    }
    if let Some(rest) = line.strip_prefix("AppArmor parser error at line ") {
        let (n, message) = rest.split_once(": ")?;
        return Some(Diagnostic { file: None, line: n.trim().parse().ok(), message: message.to_string() });
    }
    if let Some(rest) = line.strip_prefix("Warning converted to Error from profile ") {
        return profile_warning(rest);
    }
    if let Some(rest) = line.strip_prefix("File ") {
        let file = rest.strip_suffix(" not found, skipping...")?;
        return Some(Diagnostic { file: Some(file.to_string()), line: None, message: "file not found".to_string() });
    }
    None
}

/// `NAME (FILE): MESSAGE` as a diagnostic of FILE: "profile NAME: MESSAGE". A profile name has
/// no " (" but a path may, so it splits at the first.
fn profile_warning(rest: &str) -> Option<Diagnostic> {
    let (name, rest) = rest.split_once(" (")?;
    let (file, message) = rest.split_once("): ")?;
    Some(Diagnostic { file: Some(file.to_string()), line: None, message: format!("profile {name}: {message}") })
}

/// Rule classes whose "not enforced" warning is not an error. No upstream kernel mediates D-Bus
/// (dbus-daemon does, in user space, only where the kernel exports dbus in its features), yet the
/// distributions' own profiles carry dbus rules: failing them would fail Debian's and Ubuntu's
/// profiles on every kernel a node runs, where the parser itself only warns.
const TOLERATED_UNENFORCED: &[&str] = &["dbus"];

/// What [`unenforced`] read in the parser's warnings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unenforced {
    /// One error per file and rule class the kernel will not enforce.
    pub errors: Vec<Diagnostic>,
    /// Some warning is not a whole line of its own (parallel compile workers interleave their
    /// writes): which file it belongs to is unknown, so no file of the run may count as clean.
    pub garbled: bool,
}

/// The rules the kernel will not enforce, from an AppArmor 4 parser run with
/// `--warn=rule-not-enforced`: `Warning from profile NAME (FILE): CLASS rules not enforced` (e.g.
/// `userns,` against Linux 6.1's features). Such a profile would load with the rule left out, so
/// its file fails instead; [`TOLERATED_UNENFORCED`] classes stay warnings.
pub fn unenforced(stderr: &str) -> Unenforced {
    const PREFIX: &str = "Warning from profile ";
    const SUFFIX: &str = " rules not enforced";
    let stderr = printable(stderr);
    let mut out = Unenforced::default();
    let (mut records, mut rules) = (0, 0);
    for line in stderr.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix(PREFIX) else { continue };
        let Some(d) = profile_warning(rest).filter(|_| !rest.contains(PREFIX)) else { continue };
        records += 1;
        let Some(class) = d.message.rsplit(": ").next().and_then(|m| m.strip_suffix(SUFFIX)) else { continue };
        rules += 1;
        if !TOLERATED_UNENFORCED.contains(&class) {
            out.errors.push(d);
        }
    }
    out.garbled = stderr.matches(PREFIX).count() != records || stderr.matches(SUFFIX).count() != rules;
    out
}

/// Splits `HEAD: MESSAGE` at the first `: ` that follows the location part.
fn split_message(rest: &str) -> Option<(&str, &str)> {
    // Prefer the colon right after "at line N", which cannot be part of a path.
    if let Some(idx) = rest.find(" at line ") {
        let after = &rest[idx..];
        let colon = after.find(": ")?;
        return Some((&rest[..idx + colon], &after[colon + 2..]));
    }
    rest.rsplit_once(": ").or_else(|| rest.split_once(": "))
}

/// Rewrites the paths the parser saw (a ConfigMap's resolved `..2026_…/name`) back to the
/// path the user knows (`DIR/name`) in a diagnostic.
pub fn rename_file(diag: &mut Diagnostic, seen: &Path, shown: &Path) {
    let seen = seen.to_string_lossy();
    if let Some(file) = &mut diag.file {
        if *file == seen {
            *file = shown.display().to_string();
        }
    }
    if diag.message.contains(seen.as_ref()) {
        diag.message = diag.message.replace(seen.as_ref(), &shown.display().to_string());
    }
}

/// Joins diagnostics into one human sentence list (`file:line: message; …`).
pub fn summary(diags: &[Diagnostic]) -> String {
    diags.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_table() {
        let cases = [
            (
                "AppArmor parser error for /p/payment-api in profile /p/payment-api at line 7: syntax error, unexpected TOK_ID, expecting TOK_END_OF_RULE\n",
                Some("/p/payment-api"),
                Some(7),
                "syntax error, unexpected TOK_ID, expecting TOK_END_OF_RULE",
            ),
            (
                "AppArmor parser error for /p/my dir/x in profile /etc/apparmor.d/abstractions/base at line 3: Found unexpected character: '%'",
                Some("/p/my dir/x"),
                None,
                "/etc/apparmor.d/abstractions/base:3: Found unexpected character: '%'",
            ),
            ("AppArmor parser error for /p/x in profile /p/x: Could not open 'foo'", Some("/p/x"), None, "Could not open 'foo'"),
            ("AppArmor parser error at line 12: Invalid mode", None, Some(12), "Invalid mode"),
            ("File /p/missing not found, skipping...", Some("/p/missing"), None, "file not found"),
            // apparmor_parser 4.1 with --Werror=rule-not-enforced against Linux 6.1's features (seen in the VM).
            (
                "Cache read/write disabled: interface file missing. (Kernel needs AppArmor 2.4 compatibility patch.)\nWarning converted to Error from profile uns (/p/my (1)/uns): userns rules not enforced\n",
                Some("/p/my (1)/uns"),
                None,
                "profile uns: userns rules not enforced",
            ),
            ("Warning: unknown flag\n", None, None, "Warning: unknown flag"),
        ];
        for (input, file, line, message) in cases {
            let d = diagnostics(input);
            assert_eq!(d.len(), 1, "{input:?}");
            assert_eq!(d[0].file.as_deref(), file, "{input:?}");
            assert_eq!(d[0].line, line, "{input:?}");
            assert_eq!(d[0].message, message, "{input:?}");
        }
    }

    #[test]
    fn unenforced_rules_table() {
        // apparmor_parser 4.1 with --warn=rule-not-enforced against Linux 6.1's features.
        let cases: [(&str, &[&str], bool); 7] = [
            (
                "Warning from profile uns (/p/uns): userns rules not enforced\n",
                &["/p/uns: profile uns: userns rules not enforced"],
                false,
            ),
            // dbus is mediated by no upstream kernel: the distributions' profiles must still load.
            ("Warning from profile /usr/bin/totem (/p/usr.bin.totem): dbus rules not enforced\n", &[], false),
            (
                "Warning from profile p (/p/my (1)/p): dbus rules not enforced\nWarning from profile p (/p/my (1)/p): mqueue rules not enforced\n",
                &["/p/my (1)/p: profile p: mqueue rules not enforced"],
                false,
            ),
            // Other warnings are not about enforcement.
            ("Warning from profile p (/p/p): some other thing\nWarning: unknown flag\n", &[], false),
            // A class name that merely ends like a tolerated one is not tolerated.
            (
                "Warning from profile p (/p/p): nodbus rules not enforced\n",
                &["/p/p: profile p: nodbus rules not enforced"],
                false,
            ),
            // Two workers' writes interleaved (seen with -j2 in the VM): the userns warning of
            // /p/a cannot be attributed, so the run is garbled.
            (
                "Warning from profile a (/p/aWarning from profile b (/p/b): dbus rules not enforced\n): userns rules not enforced\n",
                &[],
                true,
            ),
            // The phrase without its record is garbled too.
            ("Warning from profile b (/p/b): dbus rules not enforced\nns rules not enforced\n", &[], true),
        ];
        for (input, want, garbled) in cases {
            let got = unenforced(input);
            let errors: Vec<String> = got.errors.iter().map(ToString::to_string).collect();
            assert_eq!(errors, want, "{input:?}");
            assert_eq!(got.garbled, garbled, "{input:?}");
        }
    }

    #[test]
    fn interleaved_records_are_attributed_to_no_file() {
        // Seen in the VM (scenario 21, -j4): broken-include's record cut by broken-syntax's.
        let d = diagnostics(
            "AppArmor parser error for /s/files/00000 in profile /s/filAppArmor parser error for /s/files/00001 in profile /s/files/00001 at line 3: syntax error\nes/00000 at line 2: Could not open 'local/x'\n",
        );
        assert!(d.iter().all(|d| d.file.is_none()), "{d:?}");
    }

    #[test]
    fn control_bytes_are_masked() {
        let d = diagnostics(
            "AppArmor parser error for /p/junk in profile /p/junk at line 1: Lexer found unexpected character: '\x7f' (0x7f) in state: INITIAL",
        );
        assert_eq!(d[0].message, "Lexer found unexpected character: '?' (0x7f) in state: INITIAL");
    }

    #[test]
    fn structured_errors_hide_noise() {
        let d = diagnostics("Cache read/write disabled: interface file missing.\nAppArmor parser error at line 2: bad\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_string(), "line 2: bad");
    }

    #[test]
    fn rename_maps_resolved_path_back() {
        let mut d =
            diagnostics("AppArmor parser error for /p/..2026_11_28/x in profile /p/..2026_11_28/x at line 1: bad").remove(0);
        rename_file(&mut d, Path::new("/p/..2026_11_28/x"), Path::new("/p/x"));
        assert_eq!(d.to_string(), "/p/x:1: bad");
    }
}
