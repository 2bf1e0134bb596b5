#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use berth_codec::TopicFilter;
use berth_core::{DropPolicy, Limit, SessionExpiry};
use clap::Parser as _;

use super::*;
use crate::cli::{Cli, Command};

const EXAMPLE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../berth.toml"));
const DOCS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/configuration.md"
));

fn from_file(text: &str) -> Result<Config, ConfigError> {
    Config::resolve([parse_file(text, Path::new("berth.toml"))?])
}

fn error_of(text: &str) -> String {
    from_file(text).expect_err("refused").to_string()
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn from_env(pairs: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    load(Sources {
        env: &vars(pairs),
        ..Sources::default()
    })
}

fn filter(text: &str) -> TopicFilter {
    TopicFilter::parse(text).unwrap()
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = Config::default();
    assert_eq!(config.listen.unwrap().to_string(), "0.0.0.0:1883");
    assert_eq!(config.http.to_string(), "0.0.0.0:8080");
    assert_eq!(config.data_dir, Path::new("./data"));
    assert_eq!(config.log_level, "info");
    assert!(!config.storage_sync);
    let broker = &config.broker;
    assert_eq!(
        broker.session.v3_persistent_expiry,
        SessionExpiry::After(7200)
    );
    assert_eq!(broker.session.max_expiry, SessionExpiry::Never);
    assert_eq!(broker.queue.max_messages, Limit::AtMost(1000));
    assert_eq!(broker.queue.max_bytes, Limit::AtMost(64 << 20));
    assert_eq!(broker.queue.drop_policy, DropPolicy::DropNewest);
    assert!(!broker.queue.queue_qos0);
    assert!(broker.queue.backpressure);
    assert_eq!(broker.limits.max_packet_size, 1 << 20);
    assert_eq!(broker.limits.receive_maximum, 1024);
    assert_eq!(broker.limits.max_inflight, 32);
    assert_eq!(broker.limits.topic_alias_maximum, 64);
    assert_eq!(broker.limits.max_keep_alive, 65535);
    assert!(broker.denied_filters.is_empty());

    // No file, no environment, no flags: the defaults, valid as they are.
    let loaded = load(Sources::default()).unwrap();
    assert_eq!(loaded.config, config);
    assert!(loaded.warnings.is_empty());
    // An empty file changes nothing either.
    assert_eq!(from_file("").unwrap(), config);
}

const EVERY_KEY: &str = r#"
listen = "127.0.0.1:1884"
http = "[::1]:9090"
data_dir = "/var/lib/berth"
log_level = "debug,berth_server=trace"

[storage]
sync = true

[session]
v3_persistent_expiry = "30m"
max_expiry = "7d"

[queue]
max_messages = "unlimited"
max_bytes = "10MB"
drop_policy = "drop_oldest"
queue_qos0 = true
backpressure = false

[limits]
max_packet_size = 65536
receive_maximum = 100
max_inflight = 10
topic_alias_maximum = 0
max_keep_alive = 600

[acl]
denied_filters = ["$SYS/#", "secret/+/keys"]
"#;

#[test]
fn every_key_is_read_from_the_file() {
    let config = from_file(EVERY_KEY).unwrap();
    assert_eq!(config.listen.unwrap().to_string(), "127.0.0.1:1884");
    assert_eq!(config.http.to_string(), "[::1]:9090");
    assert_eq!(config.data_dir, Path::new("/var/lib/berth"));
    assert_eq!(config.log_level, "debug,berth_server=trace");
    assert!(config.storage_sync);
    let broker = &config.broker;
    assert_eq!(
        broker.session.v3_persistent_expiry,
        SessionExpiry::After(1800)
    );
    assert_eq!(broker.session.max_expiry, SessionExpiry::After(7 * 86400));
    assert_eq!(broker.queue.max_messages, Limit::Unlimited);
    assert_eq!(broker.queue.max_bytes, Limit::AtMost(10_000_000));
    assert_eq!(broker.queue.drop_policy, DropPolicy::DropOldest);
    assert!(broker.queue.queue_qos0);
    assert!(!broker.queue.backpressure);
    assert_eq!(broker.limits.max_packet_size, 65536);
    assert_eq!(broker.limits.receive_maximum, 100);
    assert_eq!(broker.limits.max_inflight, 10);
    assert_eq!(broker.limits.topic_alias_maximum, 0);
    assert_eq!(broker.limits.max_keep_alive, 600);
    assert_eq!(
        broker.denied_filters,
        vec![filter("$SYS/#"), filter("secret/+/keys")]
    );

    let options = config.server_options();
    assert_eq!(options.broker, config.broker);
    assert!(options.storage_sync);
}

#[test]
fn the_example_file_sets_every_key_to_its_default() {
    let table: toml::Table = toml::from_str(EXAMPLE).unwrap();
    for key in Key::ALL {
        let mut value = Some(&table);
        let parts: Vec<&str> = key.name().split('.').collect();
        let (leaf, sections) = parts.split_last().unwrap();
        for section in sections {
            value = value
                .and_then(|t| t.get(*section))
                .and_then(|v| v.as_table());
        }
        assert!(
            value.and_then(|t| t.get(*leaf)).is_some(),
            "berth.toml does not set {} (write it with its default)",
            key.name()
        );
    }
    assert_eq!(from_file(EXAMPLE).unwrap(), Config::default());
}

#[test]
fn the_docs_name_every_key_and_variable() {
    for key in Key::ALL {
        let leaf = key.name().rsplit('.').next().unwrap();
        assert!(
            DOCS.contains(&format!("`{leaf}`")),
            "docs/configuration.md lacks {}",
            key.name()
        );
        assert!(
            DOCS.contains(key.env_var()),
            "docs/configuration.md lacks {}",
            key.env_var()
        );
    }
    for flag in [
        "--config",
        "--listen",
        "--http",
        "--data-dir",
        "--log-level",
        "--storage-sync",
    ] {
        assert!(DOCS.contains(flag), "docs/configuration.md lacks {flag}");
    }
}

#[test]
fn variable_names_follow_one_rule() {
    for key in Key::ALL {
        let expected = format!("BERTH_{}", key.name().replace('.', "_").to_uppercase());
        assert_eq!(key.env_var(), expected);
    }
}

#[test]
fn effective_config_prints_as_toml_that_reads_back_the_same() {
    for config in [Config::default(), from_file(EVERY_KEY).unwrap()] {
        let text = config.to_toml();
        assert_eq!(from_file(&text).unwrap(), config, "{text}");
    }
    let text = Config::default().to_toml();
    assert!(text.contains("max_bytes = \"64MiB\""), "{text}");
    assert!(text.contains("v3_persistent_expiry = \"2h\""), "{text}");
    assert!(text.contains("max_expiry = \"never\""), "{text}");
    assert!(text.contains("max_packet_size = \"1MiB\""), "{text}");
}

#[test]
fn unknown_keys_and_sections_are_refused_by_name() {
    let message = error_of("[queue]\nmax_mesages = 5\n");
    assert!(message.starts_with("config: berth.toml:"), "{message}");
    assert!(message.contains("unknown field `max_mesages`"), "{message}");
    assert!(
        message.contains("max_messages"),
        "suggests the known keys: {message}"
    );

    assert!(error_of("lissten = \"0.0.0.0:1\"\n").contains("`lissten`"));
    assert!(error_of("[queues]\nmax_messages = 5\n").contains("`queues`"));
    assert!(error_of("[limits]\nmax_packet = 5\n").contains("`max_packet`"));
    // A key written in the wrong section is unknown there.
    assert!(error_of("[session]\nmax_messages = 5\n").contains("`max_messages`"));
    // Broken TOML says where.
    assert!(error_of("[queue\n").contains("line 1"));
}

#[test]
fn zero_is_never_unlimited() {
    let config = from_file("[queue]\nmax_messages = \"unlimited\"\nmax_bytes = \"unlimited\"\n");
    let queue = config.unwrap().broker.queue;
    assert_eq!(queue.max_messages, Limit::Unlimited);
    assert_eq!(queue.max_bytes, Limit::Unlimited);

    assert_eq!(
        error_of("[queue]\nmax_messages = 0\n"),
        "config: queue.max_messages: 0 is not allowed; write \"unlimited\" for no limit"
    );
    assert_eq!(
        error_of("[queue]\nmax_bytes = 0\n"),
        "config: queue.max_bytes: 0 is not allowed; write \"unlimited\" for no limit"
    );
    assert!(error_of("[queue]\nmax_bytes = \"0MiB\"\n").contains("write \"unlimited\""));
    let message = from_env(&[("BERTH_QUEUE_MAX_MESSAGES", "0")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "config: environment variable BERTH_QUEUE_MAX_MESSAGES (queue.max_messages): \
         0 is not allowed; write \"unlimited\" for no limit"
    );
    let loaded = from_env(&[("BERTH_QUEUE_MAX_MESSAGES", "unlimited")]).unwrap();
    assert_eq!(loaded.config.broker.queue.max_messages, Limit::Unlimited);
}

#[test]
fn every_bad_value_is_refused_naming_key_and_value() {
    // (file text, key, a piece of the message that shows the value or the rule)
    let cases: &[(&str, &str, &str)] = &[
        (
            "listen = \"localhost\"",
            "listen",
            "\"localhost\" is not a socket address",
        ),
        ("listen = 1883", "listen", "found integer 1883"),
        ("http = \"0.0.0.0:99999\"", "http", "\"0.0.0.0:99999\""),
        ("data_dir = \"\"", "data_dir", "must not be empty"),
        ("data_dir = false", "data_dir", "found boolean false"),
        (
            "log_level = \"loud\"",
            "log_level",
            "\"loud\" is not a log filter",
        ),
        ("log_level = \"\"", "log_level", "must not be empty"),
        (
            "[storage]\nsync = \"yes\"",
            "storage.sync",
            "expected true or false, found string \"yes\"",
        ),
        (
            "[session]\nv3_persistent_expiry = 7200",
            "session.v3_persistent_expiry",
            "found integer 7200",
        ),
        (
            "[session]\nv3_persistent_expiry = \"2 hours\"",
            "session.v3_persistent_expiry",
            "\"2 hours\" is not a duration",
        ),
        (
            "[session]\nmax_expiry = \"5y\"",
            "session.max_expiry",
            "\"5y\" is not a duration",
        ),
        (
            "[session]\nmax_expiry = \"h\"",
            "session.max_expiry",
            "\"h\" is not a duration",
        ),
        (
            "[session]\nmax_expiry = \"50000d\"",
            "session.max_expiry",
            "write \"never\"",
        ),
        (
            "[session]\nmax_expiry = \"-1s\"",
            "session.max_expiry",
            "\"-1s\" is not a duration",
        ),
        (
            "[queue]\nmax_messages = -5",
            "queue.max_messages",
            "-5 is out of range",
        ),
        (
            "[queue]\nmax_messages = \"lots\"",
            "queue.max_messages",
            "found string \"lots\"",
        ),
        (
            "[queue]\nmax_messages = \"1000\"",
            "queue.max_messages",
            "found string \"1000\"",
        ),
        (
            "[queue]\nmax_messages = 1.5",
            "queue.max_messages",
            "found float 1.5",
        ),
        (
            "[queue]\nmax_bytes = \"64 MiBs\"",
            "queue.max_bytes",
            "\"64 MiBs\" is not a size",
        ),
        (
            "[queue]\nmax_bytes = -1",
            "queue.max_bytes",
            "-1 is out of range",
        ),
        (
            "[queue]\nmax_bytes = \"99999999TiB\"",
            "queue.max_bytes",
            "out of range",
        ),
        (
            "[queue]\ndrop_policy = \"newest\"",
            "queue.drop_policy",
            "\"newest\" is not a drop policy",
        ),
        (
            "[queue]\nqueue_qos0 = 1",
            "queue.queue_qos0",
            "found integer 1",
        ),
        (
            "[queue]\nbackpressure = \"yes\"",
            "queue.backpressure",
            "found string",
        ),
        (
            "[limits]\nmax_packet_size = 15",
            "limits.max_packet_size",
            "15 is out of range 16..=268435460",
        ),
        (
            "[limits]\nmax_packet_size = \"1GiB\"",
            "limits.max_packet_size",
            "1073741824 is out of range",
        ),
        (
            "[limits]\nmax_packet_size = 0",
            "limits.max_packet_size",
            "0 is out of range",
        ),
        (
            "[limits]\nreceive_maximum = 0",
            "limits.receive_maximum",
            "0 is out of range 1..=65535",
        ),
        (
            "[limits]\nreceive_maximum = 65536",
            "limits.receive_maximum",
            "65536 is out of range 1..=65535",
        ),
        (
            "[limits]\nmax_inflight = 0",
            "limits.max_inflight",
            "0 is out of range 1..=65535",
        ),
        (
            "[limits]\ntopic_alias_maximum = -1",
            "limits.topic_alias_maximum",
            "-1 is out of range 0..=65535",
        ),
        (
            "[limits]\nmax_keep_alive = 0",
            "limits.max_keep_alive",
            "0 is out of range 1..=65535",
        ),
        (
            "[limits]\nmax_keep_alive = \"10m\"",
            "limits.max_keep_alive",
            "expected an integer",
        ),
        (
            "[acl]\ndenied_filters = \"a/#\"",
            "acl.denied_filters",
            "expected an array of topic filters",
        ),
        (
            "[acl]\ndenied_filters = [\"a/#/b\"]",
            "acl.denied_filters",
            "\"a/#/b\" is not a valid topic filter",
        ),
        (
            "[acl]\ndenied_filters = [\"a+\"]",
            "acl.denied_filters",
            "\"a+\" is not a valid topic filter",
        ),
        (
            "[acl]\ndenied_filters = [\"\"]",
            "acl.denied_filters",
            "\"\" is not a valid topic filter",
        ),
        (
            "[acl]\ndenied_filters = [3]",
            "acl.denied_filters",
            "found integer 3",
        ),
    ];
    for (text, key, detail) in cases {
        let message = error_of(text);
        assert!(
            message.starts_with(&format!("config: {key}: ")),
            "{text:?} gave {message:?}"
        );
        assert!(
            message.contains(detail),
            "{text:?} gave {message:?}, wanted {detail:?}"
        );
    }
}

#[test]
fn accepted_spellings_of_sizes_and_durations() {
    let sizes = [
        ("1024", 1024),
        ("1B", 1),
        ("2KiB", 2048),
        ("64MiB", 64 << 20),
        ("64 MiB", 64 << 20),
        ("1GiB", 1 << 30),
        ("1TiB", 1 << 40),
        ("3kB", 3000),
        ("3KB", 3000),
        ("5MB", 5_000_000),
        ("2GB", 2_000_000_000),
        ("1TB", 1_000_000_000_000),
    ];
    for (text, bytes) in sizes {
        assert_eq!(value::parse_size(text), Ok(bytes), "{text}");
    }
    let durations = [
        ("0s", SessionExpiry::After(0)),
        ("30s", SessionExpiry::After(30)),
        ("15m", SessionExpiry::After(900)),
        ("2h", SessionExpiry::After(7200)),
        ("7d", SessionExpiry::After(604_800)),
        ("never", SessionExpiry::Never),
        ("4294967294s", SessionExpiry::After(u32::MAX - 1)),
    ];
    for (text, expiry) in durations {
        assert_eq!(value::parse_expiry(text), Ok(expiry), "{text}");
        if text != "4294967294s" {
            assert_eq!(value::format_expiry(expiry), text);
        }
    }
    // u32::MAX seconds is MQTT's "never"; it must be written so.
    assert!(value::parse_expiry("4294967295s").is_err());
}

#[test]
fn v3_expiry_may_not_exceed_the_maximum() {
    let message = error_of("[session]\nv3_persistent_expiry = \"never\"\nmax_expiry = \"1d\"\n");
    assert_eq!(
        message,
        "config: session.v3_persistent_expiry: never is longer than session.max_expiry (1d)"
    );
    assert!(error_of("[session]\nmax_expiry = \"1h\"\n").contains("2h is longer"));
    assert!(from_file("[session]\nv3_persistent_expiry = \"1d\"\nmax_expiry = \"1d\"\n").is_ok());
}

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
        ("BERTH_ACL_DENIED_FILTERS", "$SYS/#, private/+"),
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
    assert_eq!(
        broker.denied_filters,
        vec![filter("$SYS/#"), filter("private/+")]
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
    assert_eq!(overrides.listen, None);

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
