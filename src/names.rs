//! A conservative reader of the top-level profile names a file defines, so that the
//! common case (a plain profile file) costs one parser process (`-r`) instead of two
//! (`-N`, then `-r`).
//!
//! It only answers when it understands every top-level statement of the file; anything
//! it is unsure of — an include other than `<tunables/…>` or `<abi/…>`, a variable or
//! alternation in a profile name, a namespace, unbalanced braces, unknown text — makes it
//! answer `None`, and the caller asks `apparmor_parser -N`, which stays the authority.
//! Getting a name wrong would let a load replace a foreign profile, so "don't know" is
//! always the safe answer.

/// The top-level profile names of `text`, sorted and deduplicated, or `None` when the
/// file needs the parser to tell.
pub fn quick_names(text: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    // Parentheses at the top level (a flags list) may hold commas that end nothing.
    let mut parens = 0usize;
    let mut stmt = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Strings may hold braces and '#'; copy them through verbatim.
                if depth == 0 {
                    stmt.push(c);
                }
                let mut closed = false;
                while let Some(s) = chars.next() {
                    if depth == 0 {
                        stmt.push(s);
                    }
                    match s {
                        '\\' => {
                            let escaped = chars.next()?;
                            if depth == 0 {
                                stmt.push(escaped);
                            }
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\n' => return None,
                        _ => {}
                    }
                }
                if !closed {
                    return None;
                }
            }
            '#' => {
                let line: String = chars.by_ref().take_while(|&c| c != '\n').collect();
                if depth == 0 && stmt.trim().is_empty() && line.trim_start().starts_with("include") {
                    top_level_include(&line.trim_start()["include".len()..])?;
                }
                // Anything else after '#' is a comment, braces included.
                if depth == 0 && !stmt.trim().is_empty() {
                    stmt.push('\n');
                }
            }
            '{' if depth == 0 => {
                if stmt.trim() == "@" || stmt.trim_start().starts_with("@{") {
                    // A variable assignment `@{VAR} = …` (whose value may use `@{OTHER}`):
                    // copy each `{…}` through.
                    stmt.push(c);
                    for v in chars.by_ref() {
                        stmt.push(v);
                        if v == '}' {
                            break;
                        }
                    }
                    continue;
                }
                // A block opener follows white space or a flags list; anything else is an
                // alternation inside a header path, which only the parser can expand.
                if !stmt.ends_with(|ch: char| ch.is_whitespace() || ch == ')') {
                    return None;
                }
                names.push(header_name(stmt.trim())?);
                stmt.clear();
                depth = 1;
            }
            '{' => depth += 1,
            '}' if depth == 0 => return None,
            '}' => depth -= 1,
            '\n' if depth == 0 => {
                let s = stmt.trim();
                if s.starts_with("@{") {
                    // `@{VAR} = value` ends at the line's end.
                    if !s.contains('=') {
                        return None;
                    }
                    stmt.clear();
                } else if let Some(rest) = s.strip_prefix("include") {
                    top_level_include(rest)?;
                    stmt.clear();
                } else {
                    stmt.push(' ');
                }
            }
            '(' if depth == 0 => {
                parens += 1;
                stmt.push(c);
            }
            ')' if depth == 0 => {
                parens = parens.checked_sub(1)?;
                stmt.push(c);
            }
            ',' if depth == 0 && parens > 0 => stmt.push(c),
            ',' if depth == 0 => {
                let s = stmt.trim();
                let known = s.starts_with("abi ") && s.contains('<') || s.starts_with("alias ") && s.contains("->");
                if !known {
                    return None;
                }
                stmt.clear();
            }
            _ if depth == 0 => stmt.push(c),
            _ => {}
        }
    }
    if depth != 0 || !stmt.trim().is_empty() {
        return None;
    }
    names.sort();
    names.dedup();
    Some(names)
}

/// A top-level include may only bring variables or the ABI; anything else could define
/// profiles.
fn top_level_include(rest: &str) -> Option<()> {
    let rest = rest.trim();
    let target = rest.strip_prefix("if exists").map(str::trim).unwrap_or(rest);
    let inner = target.strip_prefix('<')?.strip_suffix('>')?;
    (inner.starts_with("tunables/") || inner.starts_with("abi/")).then_some(())
}

/// The name a profile header declares: `profile NAME [ATTACH] [flags]`, or `/attach/path
/// [flags]` (the path is the name).
fn header_name(header: &str) -> Option<String> {
    let tokens = tokens(header)?;
    let mut it = tokens.iter().map(String::as_str);
    let first = it.next()?;
    let name = if first == "profile" { it.next()? } else { first };
    let valid_name = !name.is_empty()
        && !name.contains("@{")
        && !name.contains(['{', '}', ',', '#'])
        && !name.starts_with(':')
        && !name.starts_with('^')
        && !name.contains("//")
        && (first == "profile" || name.starts_with('/'));
    if !valid_name || matches!(name, "flags=" | "xattrs=") {
        return None;
    }
    for rest in it {
        let ok = rest.starts_with('/') && !rest.contains(['{', '}'])
            || rest.starts_with("flags=(") && rest.ends_with(')')
            || rest.starts_with("xattrs=(") && rest.ends_with(')')
            || rest.starts_with('(') && rest.ends_with(')');
        if !ok {
            return None;
        }
    }
    Some(name.to_string())
}

/// Splits a header on white space, keeping quoted names and parenthesised flag lists whole.
fn tokens(header: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut parens = 0usize;
    let mut chars = header.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => cur.push(chars.next()?),
            '(' if !quoted => {
                parens += 1;
                cur.push(c);
            }
            ')' if !quoted => {
                parens = parens.checked_sub(1)?;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted && parens == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted || parens != 0 {
        return None;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    // `flags = (x)` with spaces: join so each flag list is one token.
    let mut joined: Vec<String> = Vec::new();
    for t in out {
        match joined.last_mut() {
            Some(last) if last.ends_with('=') || t.starts_with('=') || (t.starts_with('(') && last.ends_with("flags")) => {
                last.push_str(&t)
            }
            _ => joined.push(t),
        }
    }
    Some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("", Some(&[])),
            ("# only a comment\n", Some(&[])),
            ("profile a {\n  /tmp/** r,\n}\n", Some(&["a"])),
            (
                "abi <abi/3.0>,\ninclude <tunables/global>\n#include <tunables/home>\nprofile payment-api /usr/local/bin/node flags=(attach_disconnected) {\n  #include <abstractions/base>\n  include <abstractions/nameservice>\n  /app/** r,\n  @{PROC}/@{pid}/fd/ r,\n  /usr/{lib,lib64}/** mr,\n  deny /**/*.sh x,\n  ^hat { /x r, }\n  profile child { /y r, }\n}\n",
                Some(&["payment-api"]),
            ),
            ("/usr/sbin/nginx {\n  /etc/nginx/** r,\n}\n", Some(&["/usr/sbin/nginx"])),
            ("/usr/bin/foo flags=(complain) {\n}\n/usr/bin/bar{\n}\n", None),
            ("profile \"with space\" {\n}\nprofile b flags = (complain) {\n}\n", Some(&["b", "with space"])),
            ("profile a {\n  \"/odd{name}#x\" r,\n}\n", Some(&["a"])),
            ("profile a {\n  # a comment with { brace\n}\n", Some(&["a"])),
            ("@{APP}=/app\n@{X} += @{APP}/y /z\nprofile a {\n  @{APP}/** r,\n}\n", Some(&["a"])),
            ("profile b {}\nprofile a {}\nprofile a {}\n", Some(&["a", "b"])),
            ("include <local/extra>\nprofile a {}\n", None),
            ("#include \"other-file\"\nprofile a {}\n", None),
            ("profile @{NAME} {}\n", None),
            ("/usr/{bin,sbin}/x {\n}\n", None),
            ("profile :ns:a {}\n", None),
            ("profile a {\n  /x r,\n", None),
            ("profile a {}\n}\n", None),
            ("junk junk junk\n", None),
            ("foo {\n}\n", None),
            ("\u{7f}\u{1} {\n}\n", None),
            ("profile a /usr/bin/a xattrs=(user.x=y) {\n}\n", Some(&["a"])),
            ("profile n flags=(attach_disconnected,mediate_deleted) {\n}\n", Some(&["n"])),
            ("profile n flags=(complain {\n}\n", None),
        ];
        for (text, want) in cases {
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(quick_names(text), want, "{text:?}");
        }
    }

    /// The repository's own example profiles are read without the parser, each defining
    /// the profile its file is named after.
    #[test]
    fn repository_profiles_are_plain() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let opts = crate::scan::ScanOptions { recursive: false, max_file_size: crate::defaults::MAX_FILE_SIZE };
        for entry in crate::scan::scan(&dir, &opts).unwrap() {
            let crate::scan::Entry::File(f) = entry else { panic!("{entry:?}") };
            let text = std::fs::read_to_string(&f.real).unwrap();
            assert_eq!(quick_names(&text), Some(vec![f.key.clone()]), "{}", f.shown.display());
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = quick_names(&s);
        }

        #[test]
        fn plain_profiles_are_named(names in proptest::collection::btree_set("[a-z][a-z0-9._-]{0,20}", 1..5)) {
            let text: String = names.iter().map(|n| format!("profile {n} {{\n  /tmp/{n} r,\n}}\n")).collect();
            let got = quick_names(&text).unwrap();
            proptest::prop_assert_eq!(got, names.into_iter().collect::<Vec<_>>());
        }
    }
}
