//! The environment, the flags, and how the sources stack.

use super::*;

#[test]
fn environment_sets_every_key() {
    let loaded = from_env(&[
        ("BERTH_LISTEN", "127.0.0.1:1884"),
        ("BERTH_HTTP", "127.0.0.1:9090"),
        ("BERTH_DATA_DIR", "/srv/berth"),
        ("BERTH_LOG_LEVEL", "warn"),
        ("BERTH_STORAGE_SYNC", "true"),
        ("BERTH_SESSION_V3_PERSISTENT_EXPIRY", "10m"),
        ("BERTH_SESSION_MAX_EXPIRY", "1d"),
        ("BERTH_QUEUE_MAX_MESSAGES", "50"),
        ("BERTH_QUEUE_MAX_BYTES", "1MiB"),
        ("BERTH_QUEUE_DROP_POLICY", "drop_oldest"),
        ("BERTH_QUEUE_QUEUE_QOS0", "true"),
        ("BERTH_LIMITS_MAX_PACKET_SIZE", "4096"),
        ("BERTH_LIMITS_RECEIVE_MAXIMUM", "10"),
        ("BERTH_LIMITS_MAX_INFLIGHT", "5"),
        ("BERTH_LIMITS_TOPIC_ALIAS_MAXIMUM", "7"),
        ("BERTH_LIMITS_MAX_KEEP_ALIVE", "300"),
        ("BERTH_LIMITS_MAX_SUBSCRIPTIONS", "20"),
        ("BERTH_LIMITS_MAX_TOPIC_LENGTH", "1024"),
        ("BERTH_LIMITS_MAX_TOPIC_LEVELS", "unlimited"),
        ("BERTH_ACL_DENIED_FILTERS", "$SYS/#, private/+"),
        ("BERTH_LOG_FORMAT", "json"),
        ("BERTH_DRAIN_GRACE", "2m"),
        ("BERTH_DRAIN_RATE", "50"),
        ("BERTH_ADMIN_TOKEN_FILE", "/run/secrets/berth-admin"),
        ("BERTH_AUTH_JWT_ALGORITHM", "HS256"),
        ("BERTH_AUTH_JWT_KEY_FILE", "/run/secrets/jwt-secret"),
    ])
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = loaded.config;
    assert_eq!(config.listen.unwrap().to_string(), "127.0.0.1:1884");
    assert_eq!(config.http.to_string(), "127.0.0.1:9090");
    assert_eq!(config.data_dir, Path::new("/srv/berth"));
    assert_eq!(config.log_level, "warn");
    assert!(config.storage_sync);
    let broker = &config.broker;
    assert_eq!(
        broker.session.v3_persistent_expiry,
        SessionExpiry::After(600)
    );
    assert_eq!(broker.session.max_expiry, SessionExpiry::After(86400));
    assert_eq!(broker.queue.max_messages, Limit::AtMost(50));
    assert_eq!(broker.queue.max_bytes, Limit::AtMost(1 << 20));
    assert_eq!(broker.queue.drop_policy, DropPolicy::DropOldest);
    assert!(broker.queue.queue_qos0);
    assert_eq!(broker.limits.max_packet_size, 4096);
    assert_eq!(broker.limits.receive_maximum, 10);
    assert_eq!(broker.limits.max_inflight, 5);
    assert_eq!(broker.limits.topic_alias_maximum, 7);
    assert_eq!(broker.limits.max_keep_alive, 300);
    assert_eq!(broker.limits.max_subscriptions, Limit::AtMost(20));
    assert_eq!(broker.limits.max_topic_length, 1024);
    assert_eq!(broker.limits.max_topic_levels, Limit::Unlimited);
    assert_eq!(
        broker.denied_filters,
        vec![filter("$SYS/#"), filter("private/+")]
    );
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.drain.grace_secs, 120);
    assert_eq!(config.drain.rate, Limit::AtMost(50));
    assert_eq!(
        config.admin_token_file.as_deref(),
        Some(Path::new("/run/secrets/berth-admin"))
    );
    assert_eq!(config.auth.jwt_algorithm, Some(JwtAlgorithm::Hs256));
    assert_eq!(
        config.auth.jwt_key_file.as_deref(),
        Some(Path::new("/run/secrets/jwt-secret"))
    );

    let cleared = from_env(&[("BERTH_ACL_DENIED_FILTERS", "")]).unwrap();
    assert!(cleared.config.broker.denied_filters.is_empty());
}

#[test]
fn a_bad_environment_value_is_refused_naming_the_variable() {
    let cases = [
        (
            "BERTH_LISTEN",
            "nowhere",
            "\"nowhere\" is not a socket address",
        ),
        (
            "BERTH_STORAGE_SYNC",
            "yes",
            "expected true or false, found \"yes\"",
        ),
        ("BERTH_QUEUE_MAX_BYTES", "lots", "\"lots\" is not a size"),
        (
            "BERTH_LIMITS_RECEIVE_MAXIMUM",
            "70000",
            "70000 is out of range 1..=65535",
        ),
        (
            "BERTH_LIMITS_MAX_INFLIGHT",
            "ten",
            "expected an integer, found \"ten\"",
        ),
        (
            "BERTH_SESSION_MAX_EXPIRY",
            "forever",
            "\"forever\" is not a duration",
        ),
        (
            "BERTH_ACL_DENIED_FILTERS",
            "ok/#,bad/#/x",
            "\"bad/#/x\" is not a valid topic filter",
        ),
        (
            "BERTH_LOG_FORMAT",
            "yaml",
            "expected \"text\" or \"json\", found \"yaml\"",
        ),
        ("BERTH_DRAIN_GRACE", "10", "\"10\" is not a duration"),
        (
            "BERTH_DRAIN_GRACE",
            "3601s",
            "3601s is out of range 0..=3600",
        ),
        (
            "BERTH_DRAIN_RATE",
            "0",
            "0 is not allowed; write \"unlimited\"",
        ),
        ("BERTH_ADMIN_TOKEN_FILE", "", "must not be empty"),
        (
            "BERTH_AUTH_JWT_ALGORITHM",
            "HS512",
            "expected \"none\", \"HS256\", \"RS256\" or \"ES256\", found \"HS512\"",
        ),
        ("BERTH_AUTH_JWT_KEY_FILE", "", "must not be empty"),
    ];
    for (var, value, detail) in cases {
        let message = from_env(&[(var, value)]).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("config: environment variable {var} (")),
            "{var}={value} gave {message:?}"
        );
        assert!(
            message.contains(detail),
            "{var}={value} gave {message:?}, wanted {detail:?}"
        );
    }
}

#[test]
fn unknown_berth_variables_are_reported_not_applied() {
    let loaded = from_env(&[
        ("BERTH_QUEUE_MAX_MESAGES", "5"),
        ("BERTH_CONFIG", "/etc/berth.toml"),
        ("HOME", "/root"),
    ])
    .unwrap();
    assert_eq!(loaded.config, Config::default());
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("BERTH_QUEUE_MAX_MESAGES"));
}

fn write_file(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("berth.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn environment_wins_over_the_file_and_flags_win_over_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        &dir,
        "listen = \"127.0.0.1:1000\"\nhttp = \"127.0.0.1:2000\"\ndata_dir = \"/file\"\n\
         [queue]\nmax_messages = 10\nmax_bytes = \"1MiB\"\n[storage]\nsync = true\n",
    );
    let env = vars(&[
        ("BERTH_LISTEN", "127.0.0.1:1001"),
        ("BERTH_DATA_DIR", "/env"),
        ("BERTH_QUEUE_MAX_MESSAGES", "20"),
    ]);
    let cli = Cli::try_parse_from([
        "berth",
        "--listen",
        "127.0.0.1:1002",
        "--storage-sync=false",
        "--log-level",
        "debug",
    ])
    .unwrap();
    let config = load(Sources {
        file: Some(&path),
        env: &env,
        flags: cli.config.overrides(),
    })
    .unwrap()
    .config;
    assert_eq!(
        config.listen.unwrap().to_string(),
        "127.0.0.1:1002",
        "flag over env over file"
    );
    assert_eq!(
        config.http.to_string(),
        "127.0.0.1:2000",
        "file over default"
    );
    assert_eq!(config.data_dir, Path::new("/env"), "env over file");
    assert_eq!(
        config.broker.queue.max_messages,
        Limit::AtMost(20),
        "env over file"
    );
    assert_eq!(
        config.broker.queue.max_bytes,
        Limit::AtMost(1 << 20),
        "file over default"
    );
    assert!(!config.storage_sync, "flag over file");
    assert_eq!(config.log_level, "debug");
    assert_eq!(config.broker.limits, berth_core::ProtocolLimits::default());
}

#[test]
fn flags_parse_and_override() {
    let cli = Cli::try_parse_from([
        "berth",
        "--config",
        "/etc/berth.toml",
        "--http",
        "127.0.0.1:0",
        "--data-dir",
        "/tmp/d",
        "--storage-sync",
        "--log-format",
        "json",
    ])
    .unwrap();
    assert_eq!(cli.command, None);
    assert_eq!(
        cli.config.config.as_deref(),
        Some(Path::new("/etc/berth.toml"))
    );
    let overrides = cli.config.overrides();
    assert_eq!(
        overrides.http.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:0")
    );
    assert_eq!(overrides.data_dir.as_deref(), Some(Path::new("/tmp/d")));
    assert_eq!(overrides.storage_sync, Some(true));
    assert_eq!(overrides.log_format, Some(LogFormat::Json));
    assert_eq!(overrides.listen, None);
    assert_eq!(overrides.drain_grace_secs, None);
    let config = Config::resolve([overrides]).unwrap();
    assert_eq!(config.log_format, LogFormat::Json);

    // Flags are accepted after the subcommand too.
    let cli = Cli::try_parse_from(["berth", "check-config", "--listen", "127.0.0.1:5"]).unwrap();
    assert_eq!(cli.command, Some(Command::CheckConfig));
    assert_eq!(
        cli.config.overrides().listen.flatten().map(|a| a.port()),
        Some(5)
    );

    // `--storage-sync` takes its value only after `=`, so it cannot swallow a subcommand.
    let cli = Cli::try_parse_from(["berth", "--storage-sync", "check-config"]).unwrap();
    assert_eq!(cli.config.storage_sync, Some(true));
    assert_eq!(cli.command, Some(Command::CheckConfig));
}

#[test]
fn bad_flags_are_refused_naming_the_flag() {
    for (args, flag) in [
        (&["berth", "--listen", "nowhere"][..], "--listen"),
        (&["berth", "--http", "1.2.3.4"][..], "--http"),
        (&["berth", "--log-level", "loud"][..], "--log-level"),
        (&["berth", "--log-format", "xml"][..], "--log-format"),
        (&["berth", "--storage-sync=maybe"][..], "--storage-sync"),
        (&["berth", "--max-messages", "5"][..], "--max-messages"),
    ] {
        let message = Cli::try_parse_from(args).unwrap_err().to_string();
        assert!(message.contains(flag), "{args:?} gave {message}");
    }
}

#[test]
fn a_missing_file_is_refused_naming_it() {
    let path = Path::new("/nonexistent/berth.toml");
    let error = load(Sources {
        file: Some(path),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert_eq!(
        error.to_string(),
        "config: cannot read /nonexistent/berth.toml"
    );
}
