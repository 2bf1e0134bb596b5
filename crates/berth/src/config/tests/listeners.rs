//! `[[listeners]]`: the list, the shorthand keys beside it, every refused value naming its
//! key, and `limits.publish_rate_bytes`.

use std::net::SocketAddr;

use berth_core::Limit;
use berth_server::ListenerKind;
use berth_server::proxy_protocol::ProxyMode;

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn listener(
    name: &str,
    kind: ListenerKind,
    bind: &str,
    proxy_protocol: ProxyMode,
    max_connections: Limit,
    path: Option<&str>,
) -> ListenerConfig {
    ListenerConfig {
        name: name.to_owned(),
        kind,
        bind: addr(bind),
        proxy_protocol,
        max_connections,
        path: path.map(str::to_owned),
    }
}

/// `(key, name, kind, bound address)` of every listener of the node, in order.
fn effective(config: &Config) -> Vec<(String, String, ListenerKind, SocketAddr)> {
    config
        .mqtt_listeners()
        .into_iter()
        .map(|l| (l.key, l.listener.name, l.listener.kind, l.listener.bind))
        .collect()
}

const LIST: &str = r#"
[tls]
cert = "/etc/berth/server.crt"
key = "/etc/berth/server.key"

[[listeners]]
kind = "tcp"
bind = "0.0.0.0:1883"

[[listeners]]
name = "internal"
kind = "tcp"
bind = "10.0.0.5:1884"
proxy_protocol = "required"
max_connections = 100

[[listeners]]
kind = "ws"
bind = "0.0.0.0:8083"

[[listeners]]
kind = "wss"
bind = "0.0.0.0:8084"
path = "/broker"
max_connections = "unlimited"

[[listeners]]
name = "tls.public"
kind = "tls"
bind = "[::]:8883"
proxy_protocol = "optional"
"#;

#[test]
fn a_list_of_listeners_is_read_with_its_defaults() {
    use ListenerKind::{Tcp, Tls, Ws, Wss};
    let config = from_file(LIST).unwrap();
    assert_eq!(
        config.listeners,
        vec![
            listener(
                "tcp-0",
                Tcp,
                "0.0.0.0:1883",
                ProxyMode::Off,
                Limit::Unlimited,
                None
            ),
            listener(
                "internal",
                Tcp,
                "10.0.0.5:1884",
                ProxyMode::Required,
                Limit::AtMost(100),
                None
            ),
            listener(
                "ws-2",
                Ws,
                "0.0.0.0:8083",
                ProxyMode::Off,
                Limit::Unlimited,
                Some("/mqtt")
            ),
            listener(
                "wss-3",
                Wss,
                "0.0.0.0:8084",
                ProxyMode::Off,
                Limit::Unlimited,
                Some("/broker")
            ),
            listener(
                "tls.public",
                Tls,
                "[::]:8883",
                ProxyMode::Optional,
                Limit::Unlimited,
                None
            ),
        ]
    );
    // With a list, `listen`'s default (every interface, plain TCP) is not added to it.
    assert_eq!(config.listen, None);
    let keys: Vec<String> = effective(&config).into_iter().map(|l| l.0).collect();
    assert_eq!(
        keys,
        [
            "listeners[0]",
            "listeners[1]",
            "listeners[2]",
            "listeners[3]",
            "listeners[4]"
        ]
    );
    assert!(config.serves_tls());

    // `check-config` prints it, and what it prints reads back the same.
    let text = config.to_toml();
    assert_eq!(from_file(&text).unwrap(), config, "{text}");
    assert!(
        text.contains(
            "[[listeners]]\nname = \"internal\"\nkind = \"tcp\"\nbind = \"10.0.0.5:1884\"\n\
             proxy_protocol = \"required\"\nmax_connections = 100\n"
        ),
        "{text}"
    );
    assert!(text.contains("path = \"/broker\""), "{text}");
}

#[test]
fn without_a_list_the_shorthand_keys_are_the_listeners() {
    let config = Config::default();
    assert!(config.listeners.is_empty());
    assert_eq!(
        effective(&config),
        [(
            "listen".to_owned(),
            "tcp".to_owned(),
            ListenerKind::Tcp,
            addr("0.0.0.0:1883")
        )]
    );
    assert!(!config.serves_tls());
    assert!(!config.to_toml().contains("[[listeners]]"), "no list");

    let config = from_file(
        "listen = \"127.0.0.1:1883\"\nproxy_protocol = \"required\"\n\
         [tls]\nlisten = \"127.0.0.1:8883\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
         proxy_protocol = \"optional\"\n\
         [ws]\nlisten = \"127.0.0.1:8083\"\ntls_listen = \"127.0.0.1:8084\"\npath = \"/ws\"\n",
    )
    .unwrap();
    let listeners: Vec<ListenerConfig> = config
        .mqtt_listeners()
        .into_iter()
        .map(|l| l.listener)
        .collect();
    use ListenerKind::{Tcp, Tls, Ws, Wss};
    assert_eq!(
        listeners,
        [
            listener(
                "tcp",
                Tcp,
                "127.0.0.1:1883",
                ProxyMode::Required,
                Limit::Unlimited,
                None
            ),
            listener(
                "tls",
                Tls,
                "127.0.0.1:8883",
                ProxyMode::Optional,
                Limit::Unlimited,
                None
            ),
            listener(
                "ws",
                Ws,
                "127.0.0.1:8083",
                ProxyMode::Required,
                Limit::Unlimited,
                Some("/ws")
            ),
            listener(
                "wss",
                Wss,
                "127.0.0.1:8084",
                ProxyMode::Optional,
                Limit::Unlimited,
                Some("/ws")
            ),
        ]
    );
}

const TWO: &str = r#"
[[listeners]]
kind = "tcp"
bind = "127.0.0.1:1884"

[[listeners]]
name = "web"
kind = "ws"
bind = "127.0.0.1:8083"
"#;

#[test]
fn shorthand_keys_and_the_list_add_up_whatever_sets_them() {
    // In the same file.
    let config = from_file(&format!(
        "listen = \"0.0.0.0:1883\"\n[ws]\nlisten = \"0.0.0.0:9083\"\n{TWO}"
    ))
    .unwrap();
    let listeners = effective(&config);
    let names: Vec<(&str, &str)> = listeners
        .iter()
        .map(|(key, name, _, _)| (key.as_str(), name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("listen", "tcp"),
            ("ws.listen", "ws"),
            ("listeners[0]", "tcp-0"),
            ("listeners[1]", "web"),
        ]
    );

    // `listen` from a variable, the list from the file.
    let file = parse_file(TWO, Path::new("berth.toml")).unwrap();
    let (env, warnings) =
        crate::config::env::overrides(&vars(&[("BERTH_LISTEN", "127.0.0.1:1883")])).unwrap();
    assert!(warnings.is_empty());
    let config = Config::resolve([file.clone(), env]).unwrap();
    assert_eq!(config.listen, Some(addr("127.0.0.1:1883")));
    assert_eq!(config.mqtt_listeners().len(), 3);

    // ... or from a flag.
    let flags = Overrides {
        listen: Some(Some(addr("127.0.0.1:1883"))),
        ..Overrides::default()
    };
    let config = Config::resolve([file.clone(), flags]).unwrap();
    assert_eq!(config.mqtt_listeners().len(), 3);

    // Neither: the list alone.
    let config = Config::resolve([file]).unwrap();
    assert_eq!(config.listen, None);
    assert_eq!(config.mqtt_listeners().len(), 2);
}

/// A file of two good entries and `entry` as the third (`listeners[2]`).
fn third(entry: &str) -> String {
    format!(
        "[[listeners]]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nkind = \"ws\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\n{entry}\n"
    )
}

#[test]
fn every_bad_entry_value_is_refused_naming_its_entry_and_field() {
    assert_eq!(
        error_of(&third("kind = \"udp\"\nbind = \"127.0.0.1:1\"")),
        "config: listeners[2].kind: expected one of tcp, tls, ws, wss, got \"udp\""
    );
    let bind = "bind = \"127.0.0.1:1\"";
    let cases: &[(String, &str, &str)] = &[
        (
            format!("kind = 4\n{bind}"),
            "listeners[2].kind",
            "expected one of tcp, tls, ws, wss, found integer 4",
        ),
        (
            bind.to_owned(),
            "listeners[2].kind",
            "is required: one of tcp, tls, ws, wss",
        ),
        (
            "kind = \"TCP\"\nbind = \"127.0.0.1:1\"".to_owned(),
            "listeners[2].kind",
            "got \"TCP\"",
        ),
        (
            "kind = \"tcp\"".to_owned(),
            "listeners[2].bind",
            "is required: an address",
        ),
        (
            "kind = \"tcp\"\nbind = \"localhost:1883\"".to_owned(),
            "listeners[2].bind",
            "\"localhost:1883\" is not a socket address",
        ),
        (
            "kind = \"tcp\"\nbind = 1883".to_owned(),
            "listeners[2].bind",
            "found integer 1883",
        ),
        (
            format!("kind = \"tcp\"\n{bind}\nproxy_protocol = \"v2\""),
            "listeners[2].proxy_protocol",
            "\"v2\" is not a PROXY protocol mode",
        ),
        (
            format!("kind = \"tcp\"\n{bind}\nmax_connections = 0"),
            "listeners[2].max_connections",
            "0 is not allowed; write \"unlimited\" for no limit",
        ),
        (
            format!("kind = \"tcp\"\n{bind}\nmax_connections = \"many\""),
            "listeners[2].max_connections",
            "found string \"many\"",
        ),
        (
            format!("kind = \"tcp\"\n{bind}\nmax_connections = -1"),
            "listeners[2].max_connections",
            "-1 is out of range",
        ),
        (
            format!("kind = \"tls\"\n{bind}\npath = \"/mqtt\""),
            "listeners[2].path",
            "only ws and wss listeners have a path; this one is tls",
        ),
        (
            format!("kind = \"ws\"\n{bind}\npath = \"mqtt\""),
            "listeners[2].path",
            "expected a path such as \"/mqtt\"",
        ),
        (
            format!("kind = \"ws\"\n{bind}\nname = \"\""),
            "listeners[2].name",
            "\"\" is not a listener name",
        ),
        (
            format!("kind = \"ws\"\n{bind}\nname = \"front door\""),
            "listeners[2].name",
            "\"front door\" is not a listener name",
        ),
        (
            format!("kind = \"ws\"\n{bind}\nname = \"{}\"", "n".repeat(65)),
            "listeners[2].name",
            "1 to 64 letters",
        ),
        (
            format!("kind = \"ws\"\n{bind}\nname = 7"),
            "listeners[2].name",
            "expected a name, found integer 7",
        ),
    ];
    for (entry, key, detail) in cases {
        let message = error_of(&third(entry));
        assert!(
            message.starts_with(&format!("config: {key}: ")),
            "{entry:?} gave {message:?}"
        );
        assert!(
            message.contains(detail),
            "{entry:?} gave {message:?}, wanted {detail:?}"
        );
    }
    // A field that does not exist is refused by name, as everywhere in the file.
    let message = error_of(&third("kind = \"tcp\"\nbind = \"127.0.0.1:1\"\nport = 1"));
    assert!(message.starts_with("config: berth.toml:"), "{message}");
    assert!(message.contains("unknown field `port`"), "{message}");
}

#[test]
fn two_listeners_on_one_address_or_with_one_name_are_refused_naming_both() {
    let entry =
        |kind: &str, bind: &str| format!("[[listeners]]\nkind = \"{kind}\"\nbind = \"{bind}\"\n");
    assert_eq!(
        error_of(&format!(
            "listen = \"127.0.0.1:1883\"\n{}",
            entry("ws", "127.0.0.1:1883")
        )),
        "config: listeners[0].bind: 127.0.0.1:1883 is also the address of listen"
    );
    assert_eq!(
        error_of(&format!(
            "{}{}",
            entry("tcp", "10.0.0.1:8883"),
            entry("tcp", "10.0.0.1:8883")
        )),
        "config: listeners[1].bind: 10.0.0.1:8883 is also the address of listeners[0]"
    );
    assert_eq!(
        error_of(&format!(
            "{}{}",
            entry("tcp", "0.0.0.0:1883"),
            entry("ws", "127.0.0.1:1883")
        )),
        "config: listeners[1].bind: 127.0.0.1:1883 overlaps 0.0.0.0:1883, the address of \
         listeners[0] (the same port)"
    );
    // Between shorthand keys too.
    assert_eq!(
        error_of("listen = \"0.0.0.0:1883\"\n[ws]\nlisten = \"0.0.0.0:1883\"\n"),
        "config: ws.listen: 0.0.0.0:1883 is also the address of listen"
    );
    // Port 0: each gets a port of its own.
    let config = from_file(&format!(
        "listen = \"127.0.0.1:0\"\n{}{}",
        entry("tcp", "127.0.0.1:0"),
        entry("ws", "127.0.0.1:0")
    ))
    .unwrap();
    assert_eq!(config.mqtt_listeners().len(), 3);

    let named = |name: &str, bind: &str| {
        format!("[[listeners]]\nname = \"{name}\"\nkind = \"tcp\"\nbind = \"{bind}\"\n")
    };
    assert_eq!(
        error_of(&format!(
            "{}{}",
            named("edge", "127.0.0.1:1"),
            named("edge", "127.0.0.1:2")
        )),
        "config: listeners[1].name: \"edge\" is also the name of listeners[0]"
    );
    assert_eq!(
        error_of(&format!(
            "listen = \"127.0.0.1:0\"\n{}",
            named("tcp", "127.0.0.1:2")
        )),
        "config: listeners[0].name: \"tcp\" is also the name of listen"
    );
    // A name that is another entry's default.
    assert_eq!(
        error_of(&format!(
            "{}{}",
            named("tcp-1", "127.0.0.1:1"),
            entry("tcp", "127.0.0.1:2")
        )),
        "config: listeners[1].name: \"tcp-1\" is also the name of listeners[0]"
    );
}

#[test]
fn a_tls_or_wss_entry_needs_the_certificate_and_its_key() {
    let wss = "[[listeners]]\nkind = \"wss\"\nbind = \"127.0.0.1:0\"\n";
    assert_eq!(
        error_of(wss),
        "config: tls.cert: is needed by listeners[0], a wss listener"
    );
    assert_eq!(
        error_of(&format!("[tls]\ncert = \"server.crt\"\n\n{wss}")),
        "config: tls.key: is needed by listeners[0], a wss listener"
    );
    let config = from_file(&format!(
        "[tls]\ncert = \"server.crt\"\nkey = \"server.key\"\n\n{wss}"
    ))
    .unwrap();
    assert!(config.serves_tls());
    // The shorthand keys keep their message.
    assert_eq!(
        error_of("[tls]\nlisten = \"127.0.0.1:0\"\n"),
        "config: tls.cert: is needed when tls.listen or ws.tls_listen is set"
    );
}

#[test]
fn a_node_needs_one_listener_of_some_kind() {
    let message = error_of("listen = \"none\"\n");
    assert!(
        message.starts_with("config: listen: is \"none\""),
        "{message}"
    );
    assert!(message.contains("no [[listeners]] entry"), "{message}");
    let config =
        from_file("listen = \"none\"\n[[listeners]]\nkind = \"ws\"\nbind = \"127.0.0.1:0\"\n")
            .unwrap();
    assert_eq!(effective(&config).len(), 1);
}

#[test]
fn publish_rate_bytes_is_a_size_per_second() {
    assert_eq!(
        Config::default().broker.limits.publish_rate_bytes,
        Limit::Unlimited
    );
    let config = from_file("[limits]\npublish_rate_bytes = \"64KiB\"\n").unwrap();
    assert_eq!(
        config.broker.limits.publish_rate_bytes,
        Limit::AtMost(65536)
    );
    assert_eq!(
        config.server_options().broker.limits.publish_rate_bytes,
        Limit::AtMost(65536)
    );
    let text = config.to_toml();
    assert!(text.contains("publish_rate_bytes = \"64KiB\""), "{text}");
    assert_eq!(from_file(&text).unwrap(), config);
    assert!(
        Config::default()
            .to_toml()
            .contains("publish_rate_bytes = \"unlimited\"")
    );

    let loaded = from_env(&[("BERTH_LIMITS_PUBLISH_RATE_BYTES", "1000")]).unwrap();
    assert_eq!(
        loaded.config.broker.limits.publish_rate_bytes,
        Limit::AtMost(1000)
    );
    assert_eq!(
        error_of("[limits]\npublish_rate_bytes = 0\n"),
        "config: limits.publish_rate_bytes: 0 is not allowed; write \"unlimited\" for no limit"
    );
    assert!(
        error_of("[limits]\npublish_rate_bytes = \"fast\"\n")
            .starts_with("config: limits.publish_rate_bytes: \"fast\" is not a size")
    );
    let message = from_env(&[("BERTH_LIMITS_PUBLISH_RATE_BYTES", "0")])
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(
            "config: environment variable BERTH_LIMITS_PUBLISH_RATE_BYTES \
             (limits.publish_rate_bytes): 0 is not allowed"
        ),
        "{message}"
    );
}
