//! The structure rules from the README's "Architecture" section, measured on the sources so they
//! cannot regress: no production file over 400 code lines, no function over 60 code lines, and no
//! module using one that sits above it (or beside it) in the layer order.
//!
//! "Code lines" are lines that are neither blank nor comments, outside `#[cfg(test)]` items and
//! `tests.rs` files.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Longest production file, in code lines.
const MAX_FILE_LINES: usize = 400;
/// Longest function, in code lines (signature to closing brace).
const MAX_FN_LINES: usize = 60;

/// The top-level modules from the bottom up. A module may use the modules of earlier layers only;
/// modules in one layer are independent of each other.
const LAYERS: &[&[&str]] = &[
    &["defaults", "signals"],
    &["scan"],
    &["kernel"],
    &["reconcile", "audit"],
    &["config", "gating"],
    &["preflight"],
    &["agent", "cli"],
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every production source file: all of `src/` but `tests.rs` files and `tests/` directories.
fn production_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src_dir(), &mut files);
    files.sort();
    files
}

/// The file's lines with comments removed and string and character literals emptied, so that
/// braces and paths can be counted without being fooled by text.
fn skeleton(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !is_ident(chars.get(i.wrapping_sub(1))) {
            i = skip_raw_string(&chars, i, &mut out);
        } else if c == '"' {
            i = skip_string(&chars, i, &mut out);
        } else if c == '\'' {
            i = skip_char(&chars, i, &mut out);
        } else {
            out.push(c);
            i += 1;
        }
    }
    out.lines().map(str::to_owned).collect()
}

fn is_ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// Skips `"..."`, keeping its newlines; returns the index after it.
fn skip_string(chars: &[char], start: usize, out: &mut String) -> usize {
    out.push_str("\"\"");
    let mut i = start + 1;
    while i < chars.len() && chars[i] != '"' {
        if chars[i] == '\\' {
            i += 1;
        }
        if chars.get(i) == Some(&'\n') {
            out.push('\n');
        }
        i += 1;
    }
    i + 1
}

/// Skips `r#"..."#` (any number of `#`), or copies a lone `r`/`r#ident`.
fn skip_raw_string(chars: &[char], start: usize, out: &mut String) -> usize {
    let mut i = start + 1;
    let mut hashes = 0;
    while chars.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    if chars.get(i) != Some(&'"') {
        out.push('r');
        return start + 1;
    }
    out.push_str("\"\"");
    i += 1;
    loop {
        if i >= chars.len() {
            return i;
        }
        if chars[i] == '"' && (0..hashes).all(|k| chars.get(i + 1 + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        if chars[i] == '\n' {
            out.push('\n');
        }
        i += 1;
    }
}

/// Skips a character literal; a lifetime or label is copied as it is.
fn skip_char(chars: &[char], start: usize, out: &mut String) -> usize {
    let close = if chars.get(start + 1) == Some(&'\\') {
        (start + 2..chars.len().min(start + 12)).find(|&k| chars[k] == '\'')
    } else if chars.get(start + 2) == Some(&'\'') {
        Some(start + 2)
    } else {
        None
    };
    match close {
        Some(end) => {
            out.push_str("' '");
            end + 1
        }
        None => {
            out.push('\'');
            start + 1
        }
    }
}

/// The skeleton without `#[cfg(test)]` items.
fn production_lines(text: &str) -> Vec<String> {
    let lines = skeleton(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "#[cfg(test)]" {
            i = item_end(&lines, i + 1) + 1;
        } else {
            out.push(lines[i].clone());
            i += 1;
        }
    }
    out
}

/// The last line of the item starting at `start`: the line with its `;`, or with the brace that
/// closes its first `{`.
fn item_end(lines: &[String], start: usize) -> usize {
    let mut depth = 0i64;
    let mut opened = false;
    for (k, line) in lines.iter().enumerate().skip(start) {
        for c in line.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                ';' if !opened && depth == 0 => return k,
                _ => {}
            }
            if opened && depth == 0 {
                return k;
            }
        }
    }
    lines.len() - 1
}

fn code_lines(lines: &[String]) -> usize {
    lines.iter().filter(|l| !l.trim().is_empty()).count()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(src_dir()).unwrap().display().to_string()
}

/// Every function with a body: (name, code lines).
fn functions(lines: &[String]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        let end = item_end(lines, i);
        if lines[i..=end].iter().any(|l| l.contains('{')) {
            out.push((name, code_lines(&lines[i..=end])));
        }
    }
    out
}

/// The name after a `fn` keyword on this line, if any.
fn fn_name(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split(|c: char| !(c.is_alphanumeric() || c == '_')).collect();
    let at = words.iter().position(|w| *w == "fn")?;
    let name = words[at + 1..].iter().find(|w| !w.is_empty())?;
    (line.contains(&format!("fn {name}"))).then(|| (*name).to_owned())
}

/// The top-level module a file belongs to (`None` for the crate roots).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src_dir()).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules a file names through `crate::`, grouped imports included.
fn crate_imports(lines: &[String]) -> BTreeSet<String> {
    let text = lines.join("\n");
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut name = String::new();
            let mut names = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => names.push(std::mem::take(&mut name)),
                    _ => name.push(c),
                }
            }
            names.push(name);
            out.extend(names.iter().filter_map(|n| n.split("::").next()).map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()));
        } else {
            out.insert(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    out
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn no_production_file_is_over_the_line_limit() {
    let mut over = Vec::new();
    let mut largest = (0, String::new());
    for path in production_files() {
        let lines = code_lines(&production_lines(&fs::read_to_string(&path).unwrap()));
        largest = largest.max((lines, relative(&path)));
        if lines > MAX_FILE_LINES {
            over.push(format!("{} has {lines} code lines", relative(&path)));
        }
    }
    println!("largest file: {} ({} code lines)", largest.1, largest.0);
    assert!(over.is_empty(), "files over {MAX_FILE_LINES} code lines:\n{}", over.join("\n"));
}

#[test]
fn no_function_is_over_the_line_limit() {
    let mut over = Vec::new();
    let mut longest = (0, String::new());
    for path in production_files() {
        for (name, lines) in functions(&production_lines(&fs::read_to_string(&path).unwrap())) {
            longest = longest.max((lines, format!("{}::{name}", relative(&path))));
            if lines > MAX_FN_LINES {
                over.push(format!("{}: fn {name} has {lines} code lines", relative(&path)));
            }
        }
    }
    println!("longest function: {} ({} code lines)", longest.1, longest.0);
    assert!(over.is_empty(), "functions over {MAX_FN_LINES} code lines:\n{}", over.join("\n"));
}

#[test]
fn every_module_is_in_a_layer_and_uses_only_lower_layers() {
    let mut wrong = Vec::new();
    for path in production_files() {
        let Some(module) = module_of(&path) else { continue };
        let Some(own) = layer_of(&module) else {
            wrong.push(format!("{module} is in no layer of tests/architecture.rs"));
            continue;
        };
        for used in crate_imports(&production_lines(&fs::read_to_string(&path).unwrap())) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                _ => wrong.push(format!("{} ({module}) uses crate::{used}", relative(&path))),
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "modules using one above or beside them:\n{}", wrong.join("\n"));
}

/// The measures themselves must see what they claim to: a long function, a test module that does
/// not count, an upward import in a grouped `use`, braces inside strings.
#[test]
fn the_measures_see_what_they_should() {
    let body: String = (0..70).map(|i| format!("    let x{i} = \"{{\";\n")).collect();
    let text = format!(
        "use crate::{{agent::x, kernel}};\n// crate::cli\nfn long() {{\n{body}}}\nfn short() {{ let c = '{{'; }}\n#[cfg(test)]\nmod tests {{\n    fn t() {{\n{body}    }}\n}}\n"
    );
    let lines = production_lines(&text);
    assert_eq!(functions(&lines), vec![("long".to_owned(), 72), ("short".to_owned(), 1)]);
    assert_eq!(code_lines(&lines), 74);
    assert_eq!(crate_imports(&lines), BTreeSet::from(["agent".to_owned(), "kernel".to_owned()]));
}
