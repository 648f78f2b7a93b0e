//! Parser of the kernel's `profiles` listing (`<securityfs>/apparmor/profiles`).
//!
//! Each line is `NAME (MODE)`. Names may contain spaces, parentheses and `//` (a child
//! profile or hat), so the mode is taken from the *last* ` (` of the line.

use std::fmt;

/// A profile's mode as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Rules are enforced and violations denied.
    Enforce,
    /// Violations are allowed and logged.
    Complain,
    /// Violations kill the task.
    Kill,
    /// The profile confines nothing.
    Unconfined,
    /// User-space mediation (newer kernels).
    User,
    /// A mode this version does not know; kept verbatim.
    Other(String),
}

impl Mode {
    /// Parses the word inside the parentheses.
    pub fn parse(word: &str) -> Mode {
        match word {
            "enforce" => Mode::Enforce,
            "complain" => Mode::Complain,
            "kill" => Mode::Kill,
            "unconfined" => Mode::Unconfined,
            "user" => Mode::User,
            other => Mode::Other(other.to_string()),
        }
    }

    /// The kernel's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Complain => "complain",
            Mode::Kill => "kill",
            Mode::Unconfined => "unconfined",
            Mode::User => "user",
            Mode::Other(s) => s,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelProfile {
    /// Full name, `parent//child` for children.
    pub name: String,
    /// Mode reported by the kernel.
    pub mode: Mode,
}

impl KernelProfile {
    /// The top-level profile this entry belongs to (itself when it is not a child).
    pub fn top_level(&self) -> &str {
        top_level(&self.name)
    }
}

/// The top-level part of a profile name: `a//b//c` → `a`.
pub fn top_level(name: &str) -> &str {
    name.split_once("//").map_or(name, |(top, _)| top)
}

/// A listing line that is not `NAME (MODE)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the kernel profile listing is not `NAME (MODE)`: {text:?}")]
pub struct ListingError {
    /// 1-based line number.
    pub line: usize,
    /// The offending line.
    pub text: String,
}

/// Parses the whole listing. Empty lines are ignored.
pub fn parse(listing: &str) -> Result<Vec<KernelProfile>, ListingError> {
    listing
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| parse_line(line).ok_or_else(|| ListingError { line: i + 1, text: line.to_string() }))
        .collect()
}

fn parse_line(line: &str) -> Option<KernelProfile> {
    let body = line.strip_suffix(')')?;
    let (name, mode) = body.rsplit_once(" (")?;
    if name.is_empty() || mode.is_empty() || mode.contains(char::is_whitespace) {
        return None;
    }
    Some(KernelProfile { name: name.to_string(), mode: Mode::parse(mode) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &[(&str, Mode)])] = &[
            ("", &[]),
            ("payment-api (enforce)\n", &[("payment-api", Mode::Enforce)]),
            (
                "a (complain)\nb (kill)\nc (unconfined)\nd (user)\n",
                &[("a", Mode::Complain), ("b", Mode::Kill), ("c", Mode::Unconfined), ("d", Mode::User)],
            ),
            (
                "/usr/sbin/nginx (enforce)\n/usr/sbin/nginx//HANDLING (complain)\n",
                &[("/usr/sbin/nginx", Mode::Enforce), ("/usr/sbin/nginx//HANDLING", Mode::Complain)],
            ),
            ("my profile (with paren) (enforce)\n", &[("my profile (with paren)", Mode::Enforce)]),
            ("snap.lxd.lxc (prompt)\n", &[("snap.lxd.lxc", Mode::Other("prompt".into()))]),
            ("x (enforce)\n\n  \ny (complain)", &[("x", Mode::Enforce), ("y", Mode::Complain)]),
        ];
        for (input, want) in cases {
            let got = parse(input).unwrap();
            let got: Vec<(&str, Mode)> = got.iter().map(|p| (p.name.as_str(), p.mode.clone())).collect();
            let want: Vec<(&str, Mode)> = want.iter().map(|(n, m)| (*n, m.clone())).collect();
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn malformed_lines_name_the_line() {
        for (input, line) in [("ok (enforce)\nbroken\n", 2), ("noparen", 1), (" (enforce)", 1), ("a ()", 1), ("a (two words)", 1)]
        {
            assert_eq!(parse(input).unwrap_err().line, line, "input {input:?}");
        }
    }

    #[test]
    fn top_level_of_children() {
        assert_eq!(top_level("a//b//c"), "a");
        assert_eq!(top_level("/usr/bin/x"), "/usr/bin/x");
    }

    #[test]
    fn mode_round_trips() {
        for m in ["enforce", "complain", "kill", "unconfined", "user", "mixed"] {
            assert_eq!(Mode::parse(m).as_str(), m);
        }
    }
}
