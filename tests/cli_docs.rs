//! Shell completions and man pages come from the clap definitions, so they list every
//! subcommand and flag, and need nothing from the host.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::BIN;

fn completions(shell: &str) -> String {
    // A config file that does not exist: completions must not read it.
    let out = Command::new(BIN)
        .args(["completions", shell])
        .env("APPARMOR_LOADER_CONFIG", "/nonexistent/apparmor-loader.yaml")
        .output()
        .unwrap();
    assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_name_every_subcommand_and_its_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = completions(shell);
        // Flags without dashes: fish writes `-l profiles`.
        for word in ["run", "check", "denials", "suggest", "inspect", "unload", "profiles", "trust-userspace"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    assert!(completions("bash").contains("complete -F _apparmor__loader"), "bash script registers no completion");
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(BIN).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

#[test]
fn a_reader_that_stops_early_is_not_a_crash() {
    let mut child = Command::new(BIN).args(["completions", "zsh"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Close the pipe before anything is read, as `| head -0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}

/// `target/debug/examples/man`, built by `cargo test` like the fake parser.
fn man_example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("examples").join("man");
    assert!(p.is_file(), "man example not built at {}", p.display());
    p
}

#[test]
fn make_man_writes_one_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(man_example()).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    // The subcommands as --help lists them: the lines between "Commands:" and "Options:".
    let subcommands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    assert!(subcommands.len() >= 10, "{help}");
    let main_page = std::fs::read_to_string(dir.path().join("apparmor-loader.1")).unwrap();
    assert!(main_page.starts_with(".ie") || main_page.contains(".TH apparmor-loader 1"), "{main_page}");
    for sub in subcommands {
        let page = std::fs::read_to_string(dir.path().join(format!("apparmor-loader-{sub}.1")))
            .unwrap_or_else(|e| panic!("no page for {sub}: {e}"));
        assert!(page.contains(&format!(".TH apparmor-loader-{sub} 1")), "{sub}: {page}");
        assert!(page.contains(".SH SYNOPSIS") && page.contains(".SH OPTIONS"), "{sub}");
    }
    let check = std::fs::read_to_string(dir.path().join("apparmor-loader-check.1")).unwrap();
    assert!(check.contains("Compile profile files"), "{check}");
}
