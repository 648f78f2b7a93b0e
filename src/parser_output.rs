//! Pure parsers of what `apparmor_parser` prints: the `-N` (names) listing and its error
//! messages, which carry the file and line the user has to fix.

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

/// The profile name of the boundary file placed between real files in a batched `-N` call,
/// so that one parser process can tell us which names each file defines.
pub const BOUNDARY_PROFILE: &str = "apparmor-loader.file-boundary";

/// The content of the boundary file.
pub fn boundary_source() -> String {
    format!("profile {BOUNDARY_PROFILE} {{\n}}\n")
}

/// Splits the output of `-N f1 B f2 B … fn` (B = boundary file) into one name list per
/// file. Returns `None` when the output does not have exactly `files` groups, in which
/// case the caller falls back to one `-N` call per file.
pub fn split_names(output: &str, files: usize) -> Option<Vec<Vec<String>>> {
    let mut groups = vec![Vec::new()];
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty() && !l.contains("//")) {
        if line == BOUNDARY_PROFILE {
            groups.push(Vec::new());
        } else {
            groups.last_mut()?.push(line.to_string());
        }
    }
    // The last file is not followed by a boundary, so n files give n groups.
    (groups.len() == files).then_some(groups)
}

/// Parses the output of `-N` for a single file: one name per line. The parser also prints
/// children and hats as `parent//child`; they are part of their parent and are dropped.
pub fn parse_names(output: &str) -> Vec<String> {
    output.lines().map(str::trim).filter(|l| !l.is_empty() && !l.contains("//")).map(str::to_string).collect()
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
    if let Some(rest) = line.strip_prefix("AppArmor parser error for ") {
        // FILE may contain spaces; " in profile " and " at line " separate the parts.
        let (head, message) = split_message(rest)?;
        let (file_part, line_no) = match head.rsplit_once(" at line ") {
            Some((before, n)) => (before, n.trim().parse().ok()),
            None => (head, None),
        };
        let file = file_part.split_once(" in profile ").map_or(file_part, |(f, _)| f);
        return Some(Diagnostic { file: Some(file.to_string()), line: line_no, message: message.to_string() });
    }
    if let Some(rest) = line.strip_prefix("AppArmor parser error at line ") {
        let (n, message) = rest.split_once(": ")?;
        return Some(Diagnostic { file: None, line: n.trim().parse().ok(), message: message.to_string() });
    }
    if let Some(rest) = line.strip_prefix("File ") {
        let file = rest.strip_suffix(" not found, skipping...")?;
        return Some(Diagnostic { file: Some(file.to_string()), line: None, message: "file not found".to_string() });
    }
    None
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
    fn split_names_table() {
        let b = BOUNDARY_PROFILE;
        type Groups<'a> = Option<Vec<Vec<&'a str>>>;
        let cases: Vec<(String, usize, Groups)> = vec![
            ("a\n".into(), 1, Some(vec![vec!["a"]])),
            (format!("a\nb\n{b}\nc\n"), 2, Some(vec![vec!["a", "b"], vec!["c"]])),
            (format!("{b}\nc\n"), 2, Some(vec![vec![], vec!["c"]])),
            (format!("a\n{b}\n"), 2, Some(vec![vec!["a"], vec![]])),
            (format!("zeta\nzeta//child\nzeta//hat1\n{b}\nbeta\n"), 2, Some(vec![vec!["zeta"], vec!["beta"]])),
            (
                format!("a\n{b}\n/usr/bin/x\n{b}\nname with space\n"),
                3,
                Some(vec![vec!["a"], vec!["/usr/bin/x"], vec!["name with space"]]),
            ),
            (format!("a\n{b}\nc\n"), 3, None),
            ("a\nb\n".into(), 2, None),
        ];
        for (out, n, want) in cases {
            let want =
                want.map(|g| g.into_iter().map(|v| v.into_iter().map(String::from).collect::<Vec<_>>()).collect::<Vec<_>>());
            assert_eq!(split_names(&out, n), want, "output {out:?}");
        }
    }

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
                Some(3),
                "Found unexpected character: '%'",
            ),
            ("AppArmor parser error for /p/x in profile /p/x: Could not open 'foo'", Some("/p/x"), None, "Could not open 'foo'"),
            ("AppArmor parser error at line 12: Invalid mode", None, Some(12), "Invalid mode"),
            ("File /p/missing not found, skipping...", Some("/p/missing"), None, "file not found"),
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
    fn control_bytes_are_masked() {
        let d = diagnostics(
            "AppArmor parser error for /p/junk in profile /p/junk at line 1: Lexer found unexpected character: '\x7f' (0x7f) in state: INITIAL",
        );
        assert_eq!(d[0].message, "Lexer found unexpected character: '?' (0x7f) in state: INITIAL");
        assert_eq!(parse_names("alpha\nzeta\nzeta//child\n"), vec!["alpha", "zeta"]);
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
