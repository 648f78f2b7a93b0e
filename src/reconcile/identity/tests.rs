use super::*;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn source(dir: &Path, key: &str, text: &str) -> SourceFile {
    let path = dir.join(key);
    fs::write(&path, text).unwrap();
    SourceFile {
        key: key.into(),
        shown: path.clone(),
        real: path,
        sha256: scan::hex(&Sha256::digest(text.as_bytes())),
        ..SourceFile::default()
    }
}

fn resolver(profiles: &Path, base: &Path, extra: &[PathBuf]) -> Resolver {
    let search = SearchPath::new(extra, Path::new("/nonexistent/parser.conf"), base, profiles);
    Resolver::new(search, 4096, "parser 3.0.8 / features x".into())
}

#[test]
fn directive_forms() {
    let text = "#include <tunables/global>\n  include <abstractions/base>\ninclude if exists <local/usr.bin.x>\n\
                include \"corp-base\"\n  #include \"/abs/path\"\ninclude if exists \"opt\"\n# include <not/a/directive>\n\
                #includes <no>\n  /usr/bin/include r,\n";
    let got: Vec<(String, bool, bool)> = directives(text).into_iter().map(|d| (d.name, d.search, d.optional)).collect();
    assert_eq!(
        got,
        vec![
            ("tunables/global".into(), true, false),
            ("abstractions/base".into(), true, false),
            ("local/usr.bin.x".into(), true, true),
            ("corp-base".into(), false, false),
            ("/abs/path".into(), false, false),
            ("opt".into(), false, true),
        ]
    );
}

#[test]
fn parser_conf_include_lines_and_base_are_read() {
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("parser.conf");
    fs::write(&conf, "# comment\n#Include /ignored\nInclude /etc/extra\nInclude=/etc/more\nbase /srv/apparmor.d\n").unwrap();
    let s = SearchPath::new(&["/flag".into()], &conf, Path::new("/etc/apparmor.d"), Path::new("/p"));
    let want: Vec<PathBuf> = ["/flag", "/etc/extra", "/etc/more", "/srv/apparmor.d"].iter().map(PathBuf::from).collect();
    assert_eq!(s.dirs, want);
}

/// Every file that reaches the compiled policy is in the identity, wherever the parser finds it;
/// an edit anywhere changes it, and the search path's order is the parser's.
#[test]
fn identity_follows_every_include_recursively() {
    let root = tempfile::tempdir().unwrap();
    let (profiles, base, extra) = (root.path().join("p"), root.path().join("base"), root.path().join("extra"));
    for d in [&profiles, &base.join("abstractions/base.d"), &base.join("local"), &extra.join("abstractions")] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(base.join("abstractions/base"), "include if exists <abstractions/base.d>\n/etc/ld.so.cache r,\n").unwrap();
    fs::write(base.join("abstractions/base.d/one"), "/one r,\n").unwrap();
    fs::write(extra.join("abstractions/corp"), "include \"shared\"\n").unwrap();
    fs::write(profiles.join("shared"), "/shared r,\n").unwrap();
    let text = "include <abstractions/base>\ninclude <abstractions/corp>\ninclude if exists <local/x>\nprofile x {}\n";
    let file = source(&profiles, "x", text);
    let mut r = resolver(&profiles, &base, std::slice::from_ref(&extra));
    let first = r.identify(&file, text);
    let paths: Vec<PathBuf> = first.includes.iter().map(|i| i.path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            base.join("abstractions/base"),
            base.join("abstractions/base.d"),
            base.join("abstractions/base.d/one"),
            extra.join("abstractions/corp"),
            profiles.join("shared"),
        ]
    );
    assert!(first.includes.iter().all(|i| i.problem.is_none()), "{first:?}");
    assert_eq!(r.identify(&file, text), first, "stable");
    // An edit two levels down, a new file in an included directory, a new optional include:
    // each is a new identity.
    let mut keys = BTreeSet::from([first.key.clone()]);
    fs::write(profiles.join("shared"), "/shared rw,\n").unwrap();
    assert!(keys.insert(r.identify(&file, text).key));
    fs::write(base.join("abstractions/base.d/two"), "/two r,\n").unwrap();
    assert!(keys.insert(r.identify(&file, text).key));
    fs::write(base.join("local/x"), "").unwrap();
    assert!(keys.insert(r.identify(&file, text).key));
    // The first directory of the search path wins, like -I before the base dir.
    fs::write(extra.join("abstractions/base"), "/shadowing r,\n").unwrap();
    let shadowed = r.identify(&file, text);
    assert!(shadowed.includes.iter().any(|i| i.path == extra.join("abstractions/base")));
    assert!(!shadowed.includes.iter().any(|i| i.path == base.join("abstractions/base")));
    // The toolchain is part of it.
    let mut other = Resolver::new(r.search.clone(), 4096, "parser 4.0.1 / features x".into());
    assert_ne!(other.identify(&file, text).key, shadowed.key);
}

#[test]
fn missing_fifo_oversized_and_cyclic_includes_are_problems_not_hangs() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    nix::unistd::mkfifo(&p.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    fs::write(p.join("big"), vec![b'a'; 5000]).unwrap();
    fs::write(p.join("loop-a"), "include \"loop-b\"\n").unwrap();
    fs::write(p.join("loop-b"), "include \"loop-a\"\n").unwrap();
    let text =
        "include \"fifo\"\ninclude \"big\"\ninclude \"gone\"\ninclude if exists \"gone-too\"\ninclude \"loop-a\"\nprofile x {}\n";
    let file = source(p, "x", text);
    let mut r = resolver(p, &p.join("base"), &[]);
    let start = std::time::Instant::now();
    let id = r.identify(&file, text);
    assert!(start.elapsed() < Duration::from_secs(5));
    let problem = |name: &str| id.includes.iter().find(|i| i.path == p.join(name)).and_then(|i| i.problem.clone());
    assert_eq!(problem("fifo").as_deref(), Some("not a regular file"));
    assert!(problem("big").unwrap().contains("4096-byte limit"));
    assert_eq!(problem("gone").as_deref(), Some(MISSING));
    assert!(!id.includes.iter().any(|i| i.path == p.join("gone-too")));
    assert!(problem("loop-a").is_none() && problem("loop-b").is_none());
}

#[test]
fn settled_includes_are_not_read_again() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    fs::write(p.join("inc"), "/a r,\n").unwrap();
    let old = SystemTime::now() - Duration::from_secs(60);
    fs::File::options().write(true).open(p.join("inc")).unwrap().set_modified(old).unwrap();
    let text = "include \"inc\"\nprofile x {}\n";
    let file = source(p, "x", text);
    let mut r = resolver(p, p, &[]);
    let first = r.identify(&file, text);
    r.end_pass();
    assert!(r.cache.contains_key(&p.join("inc")), "a settled file is remembered");
    // Same size, same mtime, but a new inode: read again (an atomic rename is seen).
    fs::write(p.join("inc.new"), "/b r,\n").unwrap();
    fs::File::options().write(true).open(p.join("inc.new")).unwrap().set_modified(old).unwrap();
    fs::rename(p.join("inc.new"), p.join("inc")).unwrap();
    assert_ne!(r.identify(&file, text).key, first.key);
    // Not used in a pass: forgotten.
    r.end_pass();
    r.end_pass();
    assert!(r.cache.is_empty());
}

#[test]
fn files_of_the_directory_that_others_include_are_include_sources() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    let a = source(p, "a", "include \"corp-base\"\nprofile a {}\n");
    let b = source(p, "corp-base", "/corp r,\n");
    let c = source(p, "c", "profile c {}\n");
    let mut r = resolver(p, p, &[]);
    let includes: BTreeMap<String, Vec<Included>> =
        [&a, &b, &c].iter().map(|f| (f.key.clone(), r.identify(f, &fs::read_to_string(&f.real).unwrap()).includes)).collect();
    assert_eq!(include_sources(&[&a, &b, &c], &includes), BTreeSet::from(["corp-base".to_string()]));
}
