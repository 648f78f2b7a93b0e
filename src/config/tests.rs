use super::*;
use clap::Parser;

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("apparmor-loader").chain(args.iter().copied())).unwrap()
}

#[test]
fn flags_win_over_file_which_wins_over_defaults() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("config.yaml");
    std::fs::write(
        &path,
        "profiles: /from/file\nresync_interval: 2m\nadopt: [host-*]\nmodes:\n  payment-api: complain\nlog_format: json\nunload_removed: true\n",
    )
    .unwrap();
    let c = cli(&["run", "--resync-interval", "5s", "--config", path.to_str().unwrap()]);
    let r = Resolver::new(c.global.config.as_deref()).unwrap();
    let Command::Run(args) = &c.command else { panic!() };
    let host = r.host(&c).unwrap();
    let run = r.run(args, &host).unwrap();
    assert_eq!(run.resync_interval, Duration::from_secs(5));
    assert_eq!(run.reconcile.profiles, PathBuf::from("/from/file"));
    assert_eq!(run.reconcile.adopt, vec!["host-*"]);
    assert!(run.reconcile.unload_removed);
    assert_eq!(run.reconcile.modes["payment-api"], DesiredMode::Complain);
    assert_eq!(run.debounce, defaults::DEBOUNCE);
    assert_eq!(run.listen, vec!["127.0.0.1:9741".parse::<SocketAddr>().unwrap()], "loopback unless told otherwise");
    let host = r.host(&c).unwrap();
    assert_eq!(host.log_format, LogFormat::Json);
    assert_eq!(host.securityfs, PathBuf::from(defaults::SECURITYFS));
    assert!(host.securityfs_is_default);
}

#[test]
fn config_errors_name_the_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("bad.yaml");
    let load_error = |yaml: &str| {
        std::fs::write(&path, yaml).unwrap();
        Resolver::new(Some(&path)).err().map(|e| e.to_string()).unwrap_or_else(|| panic!("{yaml:?} was accepted"))
    };
    let err = load_error("profiles: /p\nresync_intervall: 5s\n");
    assert!(err.contains("bad.yaml") && err.contains("\"resync_intervall\" at line 2"), "{err}");
    // `config` is a flag, but naming another config file from one would be a loop, not a setting.
    assert!(load_error("config: /etc/other.yaml\n").contains("unknown key \"config\""));
    // Every value is checked when the file is read, whichever subcommand reads it.
    let cases = [
        ("debounce: soon\n", "line 1 column 11: \"soon\" is not a duration"),
        ("profiles: /p\nparser_timeout: 5\n", "line 2"),
        ("audit_source: \"\"\n", "empty audit source"),
        ("listen: []\n", "at least one address"),
        ("parser_jobs: many\n", "line 1"),
        ("modes: {x: loud}\n", "line 1"),
        ("adopt: web-*\n", "line 1"),
        ("profiles: [a, b]\n", "line 1"),
    ];
    for (yaml, want) in cases {
        let err = load_error(yaml);
        assert!(err.contains("bad.yaml") && err.contains(want), "{yaml:?}: {err}");
    }
}

/// The keys the file may hold are exactly the flags of the groups it layers under, plus `modes`.
#[test]
fn every_layered_flag_is_a_key_and_nothing_else_is() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("config.yaml");
    let yaml = "securityfs: /s\nparser: p\nstate_dir: /st\nproc: /pr\nparser_timeout: 1s\nparser_jobs: 2\nlog_format: json\n\
                log_level: debug\nprofiles: /p\nrecursive: true\nmax_file_size: 9\nadopt: [a]\nunload_removed: true\n\
                default_mode: complain\ninclude_dir: [/i]\ncache_size: 0\nmodes: {}\nlisten: 127.0.0.1:1\n\
                resync_interval: 2s\ndebounce: 0s\naudit_source: off\nkmsg: /k\naudit_log: /a\ndenials_buffer: 3\n\
                node_features_file: /n\nnode_taint: true\nnode_name: n1\n";
    let keys: Vec<&str> = yaml.lines().map(|l| l.split(':').next().unwrap().trim()).collect();
    assert_eq!(
        file::FileConfig::known_keys().into_iter().collect::<Vec<_>>(),
        keys.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>()
    );
    std::fs::write(&path, yaml).unwrap();
    let r = Resolver::new(Some(&path)).unwrap();
    let c = cli(&["run", "--config", path.to_str().unwrap()]);
    let Command::Run(a) = &c.command else { panic!() };
    let host = r.host(&c).unwrap();
    let run = r.run(a, &host).unwrap();
    assert_eq!((host.securityfs.to_str(), host.parser.as_deref(), host.parser_jobs), (Some("/s"), Some(Path::new("p")), 2));
    assert_eq!((host.state_dir.to_str(), host.proc_dir.to_str()), (Some("/st"), Some("/pr")));
    assert_eq!(
        (host.parser_timeout, host.log_format, host.log_level.as_str()),
        (Duration::from_secs(1), LogFormat::Json, "debug")
    );
    assert_eq!(host.node_features_file, Path::new("/n"));
    let rc = &run.reconcile;
    assert_eq!(
        (rc.profiles.to_str(), rc.recursive, rc.max_file_size, rc.adopt.as_slice()),
        (Some("/p"), true, 9, &["a".to_string()][..])
    );
    assert_eq!(
        (rc.unload_removed, rc.default_mode, rc.include_dirs.as_slice(), rc.cache_size),
        (true, DesiredMode::Complain, &[PathBuf::from("/i")][..], 0)
    );
    assert_eq!(
        (run.listen.len(), run.resync_interval, run.debounce, run.denials_buffer),
        (1, Duration::from_secs(2), Duration::ZERO, 3)
    );
    assert_eq!(
        (&run.audit.source, run.audit.paths.kmsg.to_str(), run.audit.paths.audit_log.to_str()),
        (&SourceSpec::Off, Some("/k"), Some("/a"))
    );
    assert_eq!(run.node_taint.as_deref(), Some("n1"));
}

#[test]
fn listen_takes_several_addresses() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("config.yaml");
    let run_with = |yaml: &str, args: &[&str]| {
        std::fs::write(&path, format!("profiles: /p\n{yaml}")).unwrap();
        let mut argv = vec!["run", "--config", path.to_str().unwrap()];
        argv.extend_from_slice(args);
        let c = cli(&argv);
        let r = Resolver::new(c.global.config.as_deref())?;
        let Command::Run(a) = &c.command else { panic!() };
        r.run(a, &r.host(&c)?).map(|run| run.listen.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    let both = vec!["10.1.2.3:9741".to_string(), "127.0.0.1:9741".to_string()];
    assert_eq!(run_with("listen: 10.1.2.3:9741,127.0.0.1:9741\n", &[]).unwrap(), both);
    assert_eq!(run_with("listen: [10.1.2.3:9741, \"127.0.0.1:9741\"]\n", &[]).unwrap(), both);
    assert_eq!(run_with("listen: \"[::1]:9741\"\n", &[]).unwrap(), ["[::1]:9741"]);
    assert_eq!(run_with("", &["--listen", "10.1.2.3:9741,127.0.0.1:9741"]).unwrap(), both);
    assert_eq!(
        run_with("listen: 10.9.9.9:1\n", &["--listen", "127.0.0.1:1", "--listen", "[::1]:2"]).unwrap(),
        ["127.0.0.1:1", "[::1]:2"]
    );
    let err = run_with("listen: 10.1.2.3\n", &[]).unwrap_err().to_string();
    assert!(err.contains("config.yaml") && err.contains("\"10.1.2.3\""), "{err}");
    assert!(Cli::try_parse_from(["apparmor-loader", "run", "--listen", "fd00::1:9741"]).is_err(), "IPv6 needs brackets");
}

/// Every duration and size is checked when the settings are read, from a flag or the file.
#[test]
fn out_of_range_values_are_refused_naming_their_origin() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("config.yaml");
    let resolve = |yaml: &str, args: &[&str]| -> Result<RunSettings, ConfigError> {
        std::fs::write(&path, format!("profiles: /p\n{yaml}")).unwrap();
        let mut argv = vec!["run", "--config", path.to_str().unwrap()];
        argv.extend_from_slice(args);
        let c = cli(&argv);
        let r = Resolver::new(c.global.config.as_deref())?;
        let Command::Run(a) = &c.command else { panic!() };
        r.run(a, &r.host(&c)?)
    };
    let cases: [(&str, &[&str], &str); 12] = [
        ("", &["--resync-interval", "0s"], "--resync-interval: resync_interval = 0s"),
        ("resync_interval: 0s\n", &[], "config.yaml: resync_interval = 0s"),
        ("", &["--parser-timeout", "0s"], "--parser-timeout: parser_timeout = 0s"),
        ("parser_timeout: 0ms\n", &[], "config.yaml: parser_timeout = 0s"),
        ("debounce: 2h\n", &[], "config.yaml: debounce = 2h"),
        ("", &["--max-file-size", "0"], "--max-file-size: max_file_size = 0"),
        ("denials_buffer: 0\n", &[], "config.yaml: denials_buffer = 0"),
        ("parser_jobs: 0\n", &[], "config.yaml: parser_jobs = 0"),
        ("", &["--parser-jobs", "65"], "--parser-jobs: parser_jobs = 65"),
        ("cache_size: 17179869185\n", &[], "config.yaml: cache_size = 17179869185"),
        ("", &["--log-level", "garbage"], "--log-level: log_level \"garbage\""),
        ("log_level: \"a=b=c\"\n", &[], "config.yaml: log_level"),
    ];
    for (yaml, args, want) in cases {
        let err = resolve(yaml, args).unwrap_err().to_string();
        assert!(err.contains(want), "{yaml} {args:?}: {err}");
    }
    assert!(resolve("debounce: 0s\nlog_level: apparmor_loader=debug\n", &["--resync-interval", "1s"]).is_ok());
}

#[test]
fn missing_profiles_is_a_clear_error() {
    let r = Resolver::new(None).unwrap();
    let c = cli(&["sync"]);
    let Command::Sync(args) = &c.command else { panic!() };
    assert!(r.reconcile(args).unwrap_err().to_string().contains("--profiles"));
}

#[test]
fn node_taint_is_off_by_default_and_needs_the_node_name() {
    let r = Resolver::new(None).unwrap();
    let run = |args: &[&str]| {
        let c = cli(args);
        let host = r.host(&c).unwrap();
        let Command::Run(a) = &c.command else { panic!() };
        (r.run(a, &host).map(|s| s.node_taint), host.node_features_file)
    };
    let (taint, features) = run(&["run", "--profiles", "/p"]);
    assert_eq!(taint.unwrap(), None);
    assert_eq!(features, Path::new(defaults::NFD_FEATURES_FILE));
    assert!(matches!(run(&["run", "--profiles", "/p", "--node-taint"]).0, Err(ConfigError::NoNodeName)));
    let (taint, features) = run(&["run", "--node-features-file", "/f", "--profiles", "/p", "--node-taint", "--node-name", "n1"]);
    assert_eq!(taint.unwrap().as_deref(), Some("n1"));
    assert_eq!(features, Path::new("/f"));
}

#[test]
fn include_dirs_and_cache_size_come_from_flags_or_the_file() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("config.yaml");
    std::fs::write(&path, "profiles: /p\ninclude_dir: [/abs, rel]\ncache_size: 1024\n").unwrap();
    let r = Resolver::new(Some(&path)).unwrap();
    let reconcile = |args: &[&str]| {
        let c = cli(args);
        let Command::Sync(a) = &c.command else { panic!() };
        r.reconcile(a)
    };
    let got = reconcile(&["sync"]).unwrap();
    assert_eq!(got.include_dirs, vec![PathBuf::from("/abs"), std::path::absolute("rel").unwrap()], "anchored");
    assert_eq!(got.cache_size, 1024);
    let got = reconcile(&["sync", "--include-dir", "/x,/y", "--cache-size", "0"]).unwrap();
    assert_eq!(got.include_dirs, vec![PathBuf::from("/x"), PathBuf::from("/y")]);
    assert_eq!(got.cache_size, 0);
    let Command::Sync(a) = &cli(&["sync", "--profiles", "/p"]).command else { panic!() };
    assert_eq!(Resolver::new(None).unwrap().reconcile(a).unwrap().cache_size, defaults::CACHE_SIZE);
    std::fs::write(&path, format!("profiles: /p\ncache_size: {}\n", defaults::MAX_CACHE_SIZE + 1)).unwrap();
    let r = Resolver::new(Some(&path)).unwrap();
    let Command::Sync(a) = &cli(&["sync"]).command else { panic!() };
    assert!(r.reconcile(a).unwrap_err().to_string().contains("cache_size"));
    let Command::Check { include, .. } = &cli(&["check", "f", "--include-dir", "/z"]).command else { panic!() };
    assert_eq!(r.include_dirs(include), vec![PathBuf::from("/z")]);
}
