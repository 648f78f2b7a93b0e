use proptest::prelude::*;

use super::writer::{self, Profile, VERSION_3_0_8};
use super::*;

/// `apparmor_parser` 3.0.8's cache files of tests/data/blobs/README.md.
const ONE: &[u8] = include_bytes!("../../../tests/data/blobs/one");
const MULTI: &[u8] = include_bytes!("../../../tests/data/blobs/multi");

fn summary(profiles: &[BlobProfile]) -> Vec<(&str, Mode, &str)> {
    profiles.iter().map(|p| (p.name.as_str(), p.mode.clone(), p.sha1.as_str())).collect()
}

#[test]
fn real_blobs_give_the_kernels_names_modes_and_hashes() {
    let one = parse(ONE).unwrap();
    assert_eq!(summary(&one), [("one", Mode::Enforce, "556330e526c7d6bd787d569dc0f1d644ad7cd971")]);
    assert_eq!(one[0].namespace, None);
    assert_eq!(one[0].offset, 16, "after the 16-byte version header");
    let multi = parse(MULTI).unwrap();
    // Top-level hashes are the kernel's (policy/profiles/*/sha1); the children's are the same
    // formula, recomputed independently by the probe's blobcheck.py.
    assert_eq!(
        summary(&multi),
        [
            ("/usr/bin/foo", Mode::Complain, "fd6ec959f085bec0673cfb1bc0245a511d773b2a"),
            ("docker-x", Mode::Enforce, "3843ab72323951531c05471615a70e67b47e79c8"),
            ("docker-x//child", Mode::Enforce, "ff46f23a5ea4e8883b657c235d1fc25363bdc6da"),
            ("docker-x//hat", Mode::Enforce, "80e8eab7d28fe5a2cbcdf4de598a4167429abc03"),
        ]
    );
    check_self_contained(&multi).unwrap();
}

#[test]
fn force_complain_sets_one_bit_per_header_like_parser_dash_c() {
    // `apparmor_parser -Q -T -S -C` of `one` differs from `-S` in byte 13 only: 0x20 → 0x28.
    let forced = force_complain(ONE).unwrap();
    let diff: Vec<(usize, u8, u8)> =
        ONE.iter().zip(&forced).enumerate().filter(|(_, (a, b))| a != b).map(|(i, (a, b))| (i, *a, *b)).collect();
    assert_eq!(diff, [(13, 0x20, 0x28)]);
    assert_eq!(parse(&forced).unwrap()[0].mode, Mode::Complain);
    assert_ne!(parse(&forced).unwrap()[0].sha1, parse(ONE).unwrap()[0].sha1, "the version word is hashed");
    let forced = parse(&force_complain(MULTI).unwrap()).unwrap();
    assert!(forced.iter().all(|p| p.mode == Mode::Complain), "{forced:?}");
    assert_eq!(force_complain(&forced_input_without_version_in_second_header()).map(|b| parse(&b).unwrap().len()), Ok(2));
}

fn forced_input_without_version_in_second_header() -> Vec<u8> {
    let mut out = Vec::new();
    writer::profile(&mut out, &spec(b"a"));
    writer::profile(&mut out, &Profile { version: None, ..spec(b"b") });
    out
}

fn spec(name: &[u8]) -> Profile<'_> {
    Profile { name, namespace: None, version: Some(VERSION_3_0_8), flags: [0, 0, 0], data: &[] }
}

fn one_profile(p: &Profile<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    writer::profile(&mut out, p);
    out
}

fn expected_sha1(version: u32, bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(version.to_le_bytes());
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sha1_is_version_then_the_profile_entry() {
    let blob = one_profile(&Profile { data: &[("k", b"v")], ..spec(b"x") });
    let start = 16;
    assert_eq!(parse(&blob).unwrap()[0].sha1, expected_sha1(VERSION_3_0_8, &blob[start..]));
}

/// Linux 6.8+ (`policy/profiles/*/sha256`): the same bytes, hashed with SHA-256.
#[test]
fn sha256_is_version_then_the_profile_entry() {
    let blob = one_profile(&Profile { data: &[("k", b"v")], ..spec(b"x") });
    let p = &parse(&blob).unwrap()[0];
    let mut h = sha2::Sha256::new();
    h.update(VERSION_3_0_8.to_le_bytes());
    h.update(&blob[16..]);
    let want: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(p.sha256, want);
    assert!(p.is_kernel_hash(&want) && p.is_kernel_hash(&p.sha1.clone()));
    assert!(!p.is_kernel_hash(&want[..40]) && !p.is_kernel_hash(""));
    assert_eq!(p.hash_like(Some(&want)), want);
    assert_eq!(p.hash_like(Some("f0")), p.sha1);
}

#[test]
fn modes_as_the_kernel_derives_them() {
    let cases: &[(u32, u32, Result<Mode, u32>)] = &[
        (VERSION_3_0_8, 0, Ok(Mode::Enforce)),
        (VERSION_3_0_8, 1, Ok(Mode::Complain)),
        (VERSION_3_0_8, 2, Ok(Mode::Kill)),
        (VERSION_3_0_8, 3, Ok(Mode::Unconfined)),
        (VERSION_3_0_8, 4, Ok(Mode::User)),
        (VERSION_3_0_8, 5, Err(5)),
        (VERSION_3_0_8, u32::MAX, Err(u32::MAX)),
        // FORCE_COMPLAIN wins over any packed mode, even one the kernel does not know.
        (VERSION_3_0_8 | 0x800, 0, Ok(Mode::Complain)),
        (VERSION_3_0_8 | 0x800, 2, Ok(Mode::Complain)),
        (VERSION_3_0_8 | 0x800, 9, Ok(Mode::Complain)),
    ];
    for (version, packed, want) in cases {
        let blob = one_profile(&Profile { version: Some(*version), flags: [0, *packed, 0], ..spec(b"p") });
        let got = parse(&blob).map(|p| p[0].mode.clone()).map_err(|e| match e {
            BlobError::Mode { mode, .. } => mode,
            other => panic!("{other}"),
        });
        assert_eq!(&got, want, "version {version:#x} mode {packed}");
    }
}

#[test]
fn versions_outside_the_kernels_abi_range_are_refused() {
    for (version, ok) in [(4, false), (5, true), (8, true), (9, true), (10, false), (0x3ff, false), (0x400 | 7, true)] {
        let got = parse(&one_profile(&Profile { version: Some(version), ..spec(b"p") }));
        assert_eq!(got.is_ok(), ok, "version {version:#x}: {got:?}");
        if !ok {
            assert_eq!(got, Err(BlobError::Version { offset: 0, version }));
        }
    }
}

#[test]
fn a_later_header_inherits_the_version() {
    let mut blob = Vec::new();
    writer::profile(&mut blob, &Profile { version: Some(VERSION_3_0_8 | 0x800), ..spec(b"a") });
    let second = writer::profile(&mut blob, &Profile { version: None, ..spec(b"b") });
    let got = parse(&blob).unwrap();
    assert_eq!(got[1].mode, Mode::Complain);
    assert_eq!(got[1].sha1, expected_sha1(VERSION_3_0_8 | 0x800, &blob[second..]));
    // The first header must carry one.
    let blob = one_profile(&Profile { version: None, ..spec(b"a") });
    assert_eq!(parse(&blob), Err(BlobError::Malformed { offset: 0, expected: "the header's NAME \"version\" U32" }));
}

#[test]
fn names_split_like_aa_splitn_fqname() {
    let cases: &[(&str, Option<&str>, Option<&str>)] = &[
        ("plain", None, Some("plain")),
        ("/usr/bin/foo", None, Some("/usr/bin/foo")),
        ("a//b", None, Some("a//b")),
        (" spaced", None, Some(" spaced")),
        (":ns:name", Some("ns"), Some("name")),
        (":ns://name", Some("ns"), Some("name")),
        (":ns://", Some("ns"), None),
        (":ns:/", Some("ns"), Some("/")),
        ("  :ns:  name", Some("ns"), Some("name")),
        (": ns:name", Some("ns"), Some("name")),
        (":ns:", Some("ns"), None),
        (":ns", Some("ns"), None),
        (":", None, None),
        ("::name", None, Some("::name")),
        (":ns:a//b", Some("ns"), Some("a//b")),
        (":ns:x:y", Some("ns"), Some("x:y")),
        ("a:b:c", None, Some("a:b:c")),
        (":\u{0b}ns:\u{0c}n", Some("ns"), Some("n")),
    ];
    for (full, ns, name) in cases {
        let (got_ns, got_name) = split_fqname(full);
        // Without a namespace the kernel keeps the name as given.
        let got_name = if got_ns.is_none() && got_name.is_some() { Some(*full) } else { got_name };
        assert_eq!((got_ns, got_name), (*ns, *name), "{full:?}");
    }
}

#[test]
fn namespaced_names_and_headers() {
    let parse_all = |specs: &[Profile<'_>]| {
        let mut blob = Vec::new();
        for s in specs {
            writer::profile(&mut blob, s);
        }
        parse(&blob).map(|ps| ps.into_iter().map(|p| (p.namespace, p.name)).collect::<Vec<_>>())
    };
    let ns = |n: &str| Some(n.to_string());
    assert_eq!(parse_all(&[spec(b":x:a")]), Ok(vec![(ns("x"), "a".into())]));
    assert_eq!(parse_all(&[Profile { namespace: Some("x"), ..spec(b"a") }]), Ok(vec![(ns("x"), "a".into())]));
    // The first namespaced name decides; profiles after it without one follow it.
    assert_eq!(parse_all(&[spec(b":x:a"), spec(b"b")]), Ok(vec![(ns("x"), "a".into()), (ns("x"), "b".into())]));
    // A header namespace anywhere covers the whole blob.
    assert_eq!(
        parse_all(&[spec(b"a"), Profile { namespace: Some("y"), ..spec(b"b") }]),
        Ok(vec![(ns("y"), "a".into()), (ns("y"), "b".into())])
    );
    // A later, different header namespace is ignored by the kernel.
    assert_eq!(
        parse_all(&[Profile { namespace: Some("y"), ..spec(b"a") }, Profile { namespace: Some("z"), ..spec(b"b") }]),
        Ok(vec![(ns("y"), "a".into()), (ns("y"), "b".into())])
    );
    let mixed = |specs: &[Profile<'_>]| matches!(parse_all(specs), Err(BlobError::MixedNamespaces { .. }));
    assert!(mixed(&[spec(b"a"), spec(b":x:b")]), "a plain profile before a namespaced one");
    assert!(mixed(&[spec(b":x:a"), spec(b":y:b")]));
    assert!(mixed(&[spec(b":x:a"), Profile { namespace: Some("y"), ..spec(b"b") }]), "header namespace after another name's");
    assert!(!mixed(&[spec(b":x:a"), Profile { namespace: Some("x"), ..spec(b"b") }]));
    assert!(matches!(
        parse_all(&[Profile { namespace: Some(""), ..spec(b"a") }]),
        Err(BlobError::Empty { what: "namespace", .. })
    ));
}

#[test]
fn bad_names_are_refused_with_their_offset() {
    let err = |name: &[u8]| parse(&one_profile(&spec(name))).unwrap_err();
    assert_eq!(err(b""), BlobError::Empty { offset: 28, what: "profile name" });
    assert_eq!(err(b"\0hidden"), BlobError::Empty { offset: 28, what: "profile name" });
    assert_eq!(err(b":ns:"), BlobError::Empty { offset: 28, what: "profile name" });
    assert_eq!(err(b"caf\xe9"), BlobError::NotText { offset: 28, what: "profile name" });
    assert_eq!(err(b"nl\nname"), BlobError::NotText { offset: 28, what: "profile name" });
    assert_eq!(err(b"del\x7f"), BlobError::NotText { offset: 28, what: "profile name" });
    // Leading or trailing spaces: names the listing, the in-use scan and `.remove` could not tell
    // from the unpadded one.
    let padded = |name: &str, what| BlobError::Whitespace { offset: 28, what, name: name.into() };
    assert_eq!(err(b" docker-default"), padded(" docker-default", "profile name"));
    assert_eq!(err(b"docker-default "), padded("docker-default ", "profile name"));
    assert_eq!(err(b"web// admin"), padded("web// admin", "profile name"));
    assert_eq!(err(b"  :ns:a"), padded("  :ns:a", "profile name"));
    assert_eq!(err(b":ns :a"), padded("ns ", "namespace"));
    assert_eq!(parse(&one_profile(&spec(b"my app//a hat"))).unwrap()[0].name, "my app//a hat");
    // The kernel reads the name as a C string: what follows a NUL is not part of it.
    assert_eq!(parse(&one_profile(&spec(b"one\0docker-default"))).unwrap()[0].name, "one");
}

#[test]
fn a_renaming_profile_is_refused() {
    let mut blob = Vec::new();
    writer::u32_entry(&mut blob, Some("version"), VERSION_3_0_8);
    writer::struct_start(&mut blob, "profile");
    writer::string(&mut blob, None, b"innocent");
    writer::string(&mut blob, Some("rename"), b"docker-default");
    assert_eq!(parse(&blob), Err(BlobError::Rename { offset: 16, name: "innocent".into(), target: "docker-default".into() }));
}

/// A profile built entry by entry, for layouts the writer's `profile` does not produce.
fn raw_profile(body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut blob = Vec::new();
    writer::u32_entry(&mut blob, Some("version"), VERSION_3_0_8);
    writer::struct_start(&mut blob, "profile");
    writer::string(&mut blob, None, b"p");
    body(&mut blob);
    blob
}

fn flags(blob: &mut Vec<u8>, mode: u32) {
    writer::struct_start(blob, "flags");
    for w in [0, mode, 0] {
        writer::u32_entry(blob, None, w);
    }
    writer::struct_end(blob);
}

#[test]
fn optional_entries_before_the_flags_and_nested_structs_after() {
    let blob = raw_profile(|b| {
        writer::string(b, Some("attach"), b"/usr/bin/p");
        writer::blob(b, Some("aadfa"), b"not really a dfa");
        writer::u32_entry(b, None, 10);
        writer::string(b, Some("disconnected"), b"/");
        flags(b, 1);
        writer::struct_start(b, "caps64");
        writer::struct_start(b, "deeper");
        b.extend_from_slice(&[code::U8, 1, code::U16, 1, 0, code::U64, 0, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[code::LIST, code::LISTEND, code::ARRAY, 2, 0, code::ARRAYEND]);
        writer::struct_end(b);
        writer::struct_end(b);
        writer::struct_end(b);
    });
    let got = parse(&blob).unwrap();
    assert_eq!((got[0].name.as_str(), got[0].mode.clone()), ("p", Mode::Complain));
    assert_eq!(got[0].sha1, expected_sha1(VERSION_3_0_8, &blob[16..]));
    // An xmatch DFA needs its length word.
    let blob = raw_profile(|b| {
        writer::blob(b, Some("aadfa"), b"dfa");
        flags(b, 0);
        writer::struct_end(b);
    });
    assert!(matches!(parse(&blob), Err(BlobError::Malformed { offset: 33, .. })), "{:?}", parse(&blob));
}

#[test]
fn malformed_blobs_name_the_offset() {
    let no_flags = raw_profile(writer::struct_end);
    assert_eq!(parse(&no_flags), Err(BlobError::Malformed { offset: 33, expected: "NAME \"flags\" STRUCT" }));
    let unknown = raw_profile(|b| {
        flags(b, 0);
        b.push(13);
    });
    assert_eq!(parse(&unknown), Err(BlobError::UnknownType { offset: 59, code: 13 }));
    let unclosed = raw_profile(|b| flags(b, 0));
    assert_eq!(parse(&unclosed), Err(BlobError::Malformed { offset: 59, expected: "the STRUCTEND closing the profile" }));
    let overlong = raw_profile(|b| {
        flags(b, 0);
        b.extend_from_slice(&[code::BLOB, 0xff, 0xff, 0xff, 0xff, 1, 2]);
    });
    assert_eq!(parse(&overlong), Err(BlobError::Malformed { offset: 59, expected: "a complete entry" }));
    let mut garbage = ONE.to_vec();
    garbage.extend_from_slice(b"garbage\n");
    assert_eq!(parse(&garbage), Err(BlobError::Malformed { offset: ONE.len(), expected: "NAME \"profile\" STRUCT" }));
    assert_eq!(parse(b"garbage\n"), Err(BlobError::Malformed { offset: 0, expected: "the header's NAME \"version\" U32" }));
    assert_eq!(parse(b""), Ok(vec![]));
}

#[test]
fn self_contained_children_only() {
    let profiles = |names: &[&str]| -> Vec<BlobProfile> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| BlobProfile {
                name: n.to_string(),
                namespace: None,
                mode: Mode::Enforce,
                sha1: String::new(),
                sha256: String::new(),
                offset: i,
            })
            .collect()
    };
    let check = |names: &[&str]| check_self_contained(&profiles(names));
    assert_eq!(check(&[]), Ok(()));
    assert_eq!(check(&["a", "a//b", "a//b//c", "x"]), Ok(()));
    assert_eq!(check(&["a//b", "a"]), Ok(()), "order does not matter");
    assert_eq!(
        check(&["docker-default//x"]),
        Err(BlobError::Orphan { offset: 0, name: "docker-default//x".into(), parent: "docker-default".into() })
    );
    assert_eq!(check(&["a", "a//b//c"]), Err(BlobError::Orphan { offset: 1, name: "a//b//c".into(), parent: "a//b".into() }));
    assert_eq!(check(&["//b"]), Err(BlobError::Orphan { offset: 0, name: "//b".into(), parent: "".into() }));
    assert_eq!(check(&["a", "b", "a"]), Err(BlobError::Duplicate { offset: 2, name: "a".into() }));
}

#[test]
fn ancestors_split_like_the_kernel() {
    let cases: &[(&str, &[&str])] =
        &[("a", &[]), ("a//b", &["a"]), ("a//b//c", &["a", "a//b"]), ("a///b", &["a"]), ("a////b", &["a", "a//"]), ("//", &[""])];
    for (name, want) in cases {
        assert_eq!(ancestors(name).collect::<Vec<_>>(), *want, "{name:?}");
    }
}

#[test]
fn every_truncation_of_a_real_blob_is_refused_or_a_prefix() {
    let full = parse(MULTI).unwrap();
    for len in 0..MULTI.len() {
        match parse(&MULTI[..len]) {
            Ok(got) => assert!(got.len() < full.len() && got[..] == full[..got.len()], "prefix of {len} bytes: {got:?}"),
            Err(e) => assert!(error_offset(&e) <= len, "{e} beyond {len}"),
        }
    }
}

fn error_offset(e: &BlobError) -> usize {
    match e {
        BlobError::Malformed { offset, .. }
        | BlobError::UnknownType { offset, .. }
        | BlobError::Version { offset, .. }
        | BlobError::Mode { offset, .. }
        | BlobError::Empty { offset, .. }
        | BlobError::NotText { offset, .. }
        | BlobError::Whitespace { offset, .. }
        | BlobError::Rename { offset, .. }
        | BlobError::MixedNamespaces { offset, .. }
        | BlobError::Orphan { offset, .. }
        | BlobError::Duplicate { offset, .. } => *offset,
    }
}

fn checked(blob: &[u8]) {
    match parse(blob) {
        Ok(profiles) => {
            for p in &profiles {
                assert!(!p.name.is_empty() && p.offset < blob.len() && p.sha1.len() == 40, "{p:?}");
            }
            let forced = force_complain(blob).unwrap();
            assert_eq!(forced.len(), blob.len());
            assert!(parse(&forced).unwrap().iter().all(|p| p.mode == Mode::Complain));
        }
        Err(e) => assert!(error_offset(&e) <= blob.len(), "{e}"),
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(blob in proptest::collection::vec(any::<u8>(), 0..512)) {
        checked(&blob);
    }

    #[test]
    fn mutated_real_blobs_never_panic(
        which in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut blob = if which { ONE.to_vec() } else { MULTI.to_vec() };
        for (at, byte, op) in edits {
            let i = at.index(blob.len());
            match op {
                0 => blob[i] = byte,
                1 => blob.insert(i, byte),
                _ => { blob.remove(i); }
            }
        }
        checked(&blob);
        let end = cut.index(blob.len() + 1);
        checked(&blob[..end]);
    }

    #[test]
    fn written_profiles_read_back(
        // Spaces only inside a name part: padded parts are refused (see bad_names_are_refused...).
        names in proptest::collection::vec("[a-z/ :.\\-]{1,12}".prop_filter("a padded name part", |n| {
            !format!("p0{n}").split("//").any(|part| part.starts_with(' ') || part.ends_with(' '))
        }), 1..5),
        packed in proptest::collection::vec(0u32..5, 5),
        force in any::<bool>(),
    ) {
        let version = if force { VERSION_3_0_8 | 0x800 } else { VERSION_3_0_8 };
        let mut blob = Vec::new();
        let mut starts = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let n = format!("p{i}{n}");
            starts.push(writer::profile(&mut blob, &Profile { name: n.as_bytes(), version: Some(version), flags: [0, packed[i], 0], ..spec(b"") }));
        }
        let got = parse(&blob).unwrap();
        prop_assert_eq!(got.len(), names.len());
        for (i, p) in got.iter().enumerate() {
            let end = starts.get(i + 1).map_or(blob.len(), |next| next - 16);
            prop_assert_eq!(&p.name, &format!("p{i}{}", names[i]));
            prop_assert_eq!(&p.sha1, &expected_sha1(version, &blob[starts[i]..end]));
            let want = if force { Mode::Complain } else { [Mode::Enforce, Mode::Complain, Mode::Kill, Mode::Unconfined, Mode::User][packed[i] as usize].clone() };
            prop_assert_eq!(&p.mode, &want);
        }
    }
}
