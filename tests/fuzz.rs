//! Property/fuzz harnesses for every parser of outside input, run by `cargo test` with a fixed
//! budget (a fixed number of cases from a fixed seed, so CI is reproducible). Inputs are real
//! ones (tests/data: audit lines from bug reports and kernels, a kernel profile listing, the
//! parser's messages, real compiled policy, the shipped config files) mutated at random, plus
//! pure noise. A panic fails the test; so does an allocation past RLIMIT_DATA (the process
//! aborts), which an input-sized length field would hit.

use std::io::Cursor;
use std::path::Path;
use std::sync::Once;

use apparmor_loader::audit::{record, saved};
use apparmor_loader::config::{Cli, Command, Resolver};
use apparmor_loader::kernel::{Compiled, blob, listing, parser_output};
use clap::Parser;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// No input here is more than a few KiB; a parser that wants more than this is unbounded.
const DATA_LIMIT: u64 = 1024 * 1024 * 1024;

fn limit_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_DATA).unwrap();
        setrlimit(Resource::RLIMIT_DATA, DATA_LIMIT.min(hard), hard).unwrap();
    });
}

/// Tokens the parsers give meaning to, spliced in by the mutator.
const TOKENS: &[&str] = &[
    "\"",
    "=",
    "(",
    ")",
    "\n",
    "//",
    ":",
    ";",
    ",",
    " ",
    "audit(",
    "type=1400 ",
    "type=AVC msg=audit(1.2:3): ",
    "apparmor=\"DENIED\" ",
    "profile=\"",
    "name=",
    "99999999999999999999999",
    "-1",
    "\0",
    "\u{ff}",
    "{",
    "}",
    "[",
    "]",
    "%",
    "'",
    "\\",
    "0x",
    "4142",
    "AppArmor parser error for ",
    " at line ",
    " in profile ",
    " (enforce)",
    "//null-",
    "&a [*a, *a]",
    "- ",
    ": ",
    "---\n",
    "\t",
];

/// A seed changed by up to eight edits (flip, insert a token or a byte, delete, cut, repeat).
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    (0..n, prop::collection::vec((0u8..6, any::<u32>(), any::<u32>(), any::<u8>()), 0..8)).prop_map(move |(i, edits)| {
        let mut v = seeds[i].clone();
        for (op, a, b, byte) in edits {
            let at = if v.is_empty() { 0 } else { a as usize % (v.len() + 1) };
            match op {
                0 if !v.is_empty() => {
                    let last = v.len() - 1;
                    v[at.min(last)] = byte;
                }
                1 => {
                    let t = TOKENS[b as usize % TOKENS.len()].as_bytes();
                    v.splice(at..at, t.iter().copied());
                }
                2 => v.insert(at, byte),
                3 => {
                    let end = (at + (b as usize % 16)).min(v.len());
                    v.drain(at..end);
                }
                4 => v.truncate(at),
                _ => {
                    let end = (at + (b as usize % 64)).min(v.len());
                    let piece = v[at..end].to_vec();
                    v.splice(at..at, piece);
                }
            }
        }
        v
    })
}

/// Mutated seeds, and now and then plain noise.
fn inputs(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![9 => mutated(seeds), 1 => prop::collection::vec(any::<u8>(), 0..512)].boxed()
}

/// Runs `check` on `cases` inputs from a fixed seed.
fn fuzz(cases: u32, seeds: Vec<Vec<u8>>, check: impl Fn(&[u8])) {
    limit_memory();
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner
        .run(&inputs(seeds), |input| {
            check(&input);
            Ok(())
        })
        .unwrap();
}

fn data(path: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn lines(path: &str) -> Vec<Vec<u8>> {
    data(path).split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

#[test]
fn audit_record_parsers_never_panic() {
    fuzz(3000, lines("tests/data/fuzz/audit-lines.txt"), |input| {
        let line = String::from_utf8_lossy(input);
        let _ = record::parse_line(&line);
        let _ = record::parse_text(&line);
        let _ = record::parse_audit_log_line(&line);
        let _ = record::parse_written_by_process(&line);
        let _ = record::parse_kernel_message(&line);
        let _ = record::parse_netlink_payload(1400, &line);
        let _ = record::parse_netlink_payload(1107, &line);
        if let Some((hdr, msg)) = record::split_kmsg(&line) {
            let _ = record::parse_kmsg(&hdr, msg);
        }
        let _ = record::unescape_kmsg(&line);
    });
}

#[test]
fn saved_log_reader_never_panics() {
    // Whole files: the seed lines joined in runs, so the format detection sees real files.
    let all = data("tests/data/fuzz/audit-lines.txt");
    let seeds: Vec<Vec<u8>> = all.split(|&b| b == b'\n').collect::<Vec<_>>().chunks(5).map(|c| c.join(&b'\n')).collect();
    fuzz(1500, seeds, |input| {
        let got = saved::read_records(Cursor::new(input)).unwrap();
        assert!(got.records.len() <= input.len(), "more records than bytes");
    });
}

#[test]
fn kernel_listing_parser_never_panics() {
    let whole = data("tests/data/fuzz/listing.txt");
    let mut seeds = lines("tests/data/fuzz/listing.txt");
    seeds.push(whole);
    fuzz(3000, seeds, |input| {
        let text = String::from_utf8_lossy(input);
        if let Ok(profiles) = listing::parse(&text) {
            for p in &profiles {
                assert!(p.name.len() <= text.len() && p.top_level().len() <= p.name.len(), "{p:?}");
            }
        }
    });
}

#[test]
fn parser_output_parsers_never_panic() {
    let mut seeds = lines("tests/data/fuzz/parser-stderr.txt");
    seeds.push(data("tests/data/fuzz/parser-stderr.txt"));
    fuzz(3000, seeds, |input| {
        let text = String::from_utf8_lossy(input);
        let diags = parser_output::diagnostics(&text);
        let _ = parser_output::summary(&diags);
        let shown = parser_output::printable(&text);
        assert!(!shown.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{shown:?}");
    });
}

#[test]
fn binary_policy_reader_never_panics() {
    let seeds = vec![data("tests/data/blobs/one"), data("tests/data/blobs/multi")];
    fuzz(3000, seeds, |input| {
        if let Ok(profiles) = blob::parse(input) {
            let _ = blob::check_self_contained(&profiles);
        }
        let _ = blob::force_complain(input);
        let _ = Compiled::from_blob(input.to_vec());
    });
}

#[test]
fn config_loader_never_panics() {
    let seeds = vec![
        data("manifests/base/config.yaml"),
        data("manifests/examples/overlays/complain-payment-api/config.yaml"),
        b"profiles: /p\nresync_interval: 5s\nlisten: [10.1.2.3:9741, \"127.0.0.1:9741\"]\nmodes:\n  a: complain\nmax_file_size: 10\n".to_vec(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    fuzz(600, seeds, |input| {
        std::fs::write(&path, input).unwrap();
        let cli = Cli::try_parse_from(["apparmor-loader", "run", "--config", path.to_str().unwrap()]).unwrap();
        let Ok(resolver) = Resolver::new(cli.global.config.as_deref()) else { return };
        let Ok(host) = resolver.host(&cli) else { return };
        let Command::Run(args) = &cli.command else { unreachable!() };
        if let Ok(run) = resolver.run(args, &host) {
            assert!(!run.resync_interval.is_zero() && !host.parser_timeout.is_zero());
            assert!(run.reconcile.max_file_size > 0 && run.denials_buffer > 0);
        }
    });
}
