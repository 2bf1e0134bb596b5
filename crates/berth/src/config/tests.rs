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
    assert_eq!(broker.limits.max_subscriptions, Limit::Unlimited);
    assert_eq!(broker.limits.max_topic_length, 65535);
    assert_eq!(broker.limits.max_topic_levels, Limit::AtMost(128));
    assert!(broker.denied_filters.is_empty());
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.drain.grace_secs, 10);
    assert_eq!(config.drain.rate, Limit::AtMost(500));
    assert_eq!(config.admin_token_file, None);
    assert_eq!(config.auth.jwt_algorithm, None);
    assert_eq!(config.auth.jwt_key_file, None);
    let options = config.server_options();
    assert_eq!(options.drain.grace, std::time::Duration::from_secs(10));
    assert_eq!(options.drain.per_second, Some(500));
    assert!(options.admin_token.is_none());

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
log_format = "json"

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
max_subscriptions = 100
max_topic_length = 256
max_topic_levels = "unlimited"

[acl]
denied_filters = ["$SYS/#", "secret/+/keys"]

[drain]
grace = "0s"
rate = "unlimited"

[admin]
token_file = "/etc/berth/admin.token"

[auth]
jwt_algorithm = "RS256"
jwt_key_file = "/etc/berth/jwt.pem"
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
    assert_eq!(broker.limits.max_subscriptions, Limit::AtMost(100));
    assert_eq!(broker.limits.max_topic_length, 256);
    assert_eq!(broker.limits.max_topic_levels, Limit::Unlimited);
    assert_eq!(
        broker.denied_filters,
        vec![filter("$SYS/#"), filter("secret/+/keys")]
    );

    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.drain.grace_secs, 0);
    assert_eq!(config.drain.rate, Limit::Unlimited);
    assert_eq!(
        config.admin_token_file.as_deref(),
        Some(Path::new("/etc/berth/admin.token"))
    );
    assert_eq!(config.auth.jwt_algorithm, Some(JwtAlgorithm::Rs256));
    assert_eq!(
        config.auth.jwt_key_file.as_deref(),
        Some(Path::new("/etc/berth/jwt.pem"))
    );

    let options = config.server_options();
    assert_eq!(options.broker, config.broker);
    assert!(options.storage_sync);
    assert_eq!(options.drain.grace, std::time::Duration::ZERO);
    assert_eq!(options.drain.per_second, None);
    assert!(options.admin_token.is_none(), "main reads the token file");
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
        "--log-format",
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
    assert!(text.contains("log_format = \"text\""), "{text}");
    assert!(
        text.contains("[drain]\ngrace = \"10s\"\nrate = 500\n"),
        "{text}"
    );
    assert!(text.contains("[admin]\ntoken_file = \"none\""), "{text}");
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
            "[limits]\nmax_subscriptions = 0",
            "limits.max_subscriptions",
            "write \"unlimited\"",
        ),
        (
            "[limits]\nmax_subscriptions = \"many\"",
            "limits.max_subscriptions",
            "found string \"many\"",
        ),
        (
            "[limits]\nmax_topic_length = 0",
            "limits.max_topic_length",
            "0 is out of range 1..=65535",
        ),
        (
            "[limits]\nmax_topic_length = 65536",
            "limits.max_topic_length",
            "65536 is out of range 1..=65535",
        ),
        (
            "[limits]\nmax_topic_levels = 0",
            "limits.max_topic_levels",
            "write \"unlimited\"",
        ),
        (
            "[limits]\nmax_topic_levels = -3",
            "limits.max_topic_levels",
            "-3 is out of range",
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
        (
            "log_format = \"xml\"",
            "log_format",
            "expected \"text\" or \"json\", found string \"xml\"",
        ),
        ("log_format = true", "log_format", "found boolean true"),
        (
            "[drain]\ngrace = 10",
            "drain.grace",
            "expected a duration such as \"10s\", found integer 10",
        ),
        (
            "[drain]\ngrace = \"soon\"",
            "drain.grace",
            "\"soon\" is not a duration",
        ),
        (
            "[drain]\ngrace = \"never\"",
            "drain.grace",
            "\"never\" is not a duration",
        ),
        (
            "[drain]\ngrace = \"2h\"",
            "drain.grace",
            "2h is out of range 0..=3600",
        ),
        (
            "[drain]\ngrace = \"99999999999d\"",
            "drain.grace",
            "out of range 0..=3600",
        ),
        (
            "[drain]\nrate = 0",
            "drain.rate",
            "0 is not allowed; write \"unlimited\"",
        ),
        (
            "[drain]\nrate = \"fast\"",
            "drain.rate",
            "found string \"fast\"",
        ),
        ("[drain]\nrate = -3", "drain.rate", "-3 is out of range"),
        (
            "[admin]\ntoken_file = \"\"",
            "admin.token_file",
            "must not be empty",
        ),
        (
            "[admin]\ntoken_file = 5",
            "admin.token_file",
            "expected a path, found integer 5",
        ),
        (
            "[auth]\njwt_algorithm = \"HS512\"",
            "auth.jwt_algorithm",
            "expected \"none\", \"HS256\", \"RS256\" or \"ES256\", found string \"HS512\"",
        ),
        (
            "[auth]\njwt_algorithm = \"hs256\"",
            "auth.jwt_algorithm",
            "found string \"hs256\"",
        ),
        (
            "[auth]\njwt_algorithm = 256",
            "auth.jwt_algorithm",
            "found integer 256",
        ),
        (
            "[auth]\njwt_key_file = \"\"",
            "auth.jwt_key_file",
            "must not be empty",
        ),
        (
            "[auth]\njwt_key_file = true",
            "auth.jwt_key_file",
            "expected a path, found boolean true",
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

    // drain.grace: 0 means no drain; at most an hour.
    for (text, secs) in [
        ("0s", 0),
        ("10s", 10),
        ("2m", 120),
        ("1h", 3600),
        ("3600s", 3600),
    ] {
        assert_eq!(
            value::grace_secs(value::Input::Text(text)),
            Ok(secs),
            "{text}"
        );
    }
    for text in ["10", "3601s", "2h", "never", "-1s", ""] {
        assert!(
            value::grace_secs(value::Input::Text(text)).is_err(),
            "{text}"
        );
    }
}

#[test]
fn jwt_needs_both_its_algorithm_and_its_key_file() {
    assert_eq!(
        error_of("[auth]\njwt_algorithm = \"HS256\"\n"),
        "config: auth.jwt_key_file: is needed when auth.jwt_algorithm is set \
         (the HS256 secret or the RS256/ES256 public key)"
    );
    let message = error_of("[auth]\njwt_key_file = \"/etc/berth/jwt.key\"\n");
    assert!(
        message.starts_with("config: auth.jwt_algorithm: is needed when auth.jwt_key_file is set"),
        "{message}"
    );
    let message = from_env(&[("BERTH_AUTH_JWT_ALGORITHM", "ES256")])
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("config: auth.jwt_key_file: "),
        "{message}"
    );

    // Tokens are a source of credentials: anonymous clients may be refused with JWT alone.
    let config = from_file(
        "[auth]\nallow_anonymous = false\njwt_algorithm = \"ES256\"\n\
         jwt_key_file = \"/etc/berth/jwt.pem\"\n",
    )
    .unwrap();
    assert_eq!(config.auth.jwt_algorithm, Some(JwtAlgorithm::Es256));
    assert!(
        error_of("[auth]\nallow_anonymous = false\n").starts_with("config: auth.allow_anonymous: ")
    );
    // "none" is the default, for both.
    let cleared = from_file("[auth]\njwt_algorithm = \"none\"\njwt_key_file = \"none\"\n");
    assert_eq!(cleared.unwrap().auth, AuthConfig::default());
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

/// Environment variables, flags, and how the sources stack.
mod sources;

/// `[[listeners]]` and the shorthand keys beside it; `limits.publish_rate_bytes`.
mod listeners;
