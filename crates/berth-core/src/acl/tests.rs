//! The rules file's parsing and errors, and the matching contract of the module documentation.

use berth_codec::TopicError;

use super::*;

const EXAMPLE: &str = r#"
# Devices own their subtree, except their configuration, which only the console writes.
default = "deny"

[[rule]]
permission = "deny"
action = "publish"
topic = "devices/%c/config"

[[rule]]
permission = "allow"
action = "both"
topic = "devices/%c/#"

[[rule]]
permission = "allow"
action = "subscribe"
topic = "alerts/#"
username = "alice"
client_id = "console-1"
source = "10.0.0.0/8"
"#;

fn parse(text: &str) -> AclRules {
    AclRules::parse(text).unwrap()
}

fn refused(text: &str) -> AclError {
    AclRules::parse(text).unwrap_err()
}

/// A file of `default` and one rule per entry, each the inside of an inline table.
fn rules(default: &str, rules: &[&str]) -> AclRules {
    let mut text = format!("default = \"{default}\"\nrule = [\n");
    for rule in rules {
        text.push_str(&format!("{{ {rule} }},\n"));
    }
    text.push_str("]\n");
    parse(&text)
}

/// The error of a file whose only rule has the TOML lines `fields`.
fn rule_error(fields: &str) -> AclError {
    refused(&format!("default = \"allow\"\n[[rule]]\n{fields}\n"))
}

fn client(client_id: &str) -> Principal {
    Principal {
        username: None,
        client_id: client_id.to_owned(),
        source: None,
        grants: None,
    }
}

fn user(username: &str, client_id: &str) -> Principal {
    Principal {
        username: Some(username.to_owned()),
        ..client(client_id)
    }
}

fn from(source: &str) -> Principal {
    Principal {
        source: Some(source.parse().unwrap()),
        ..client("c")
    }
}

fn filter(text: &str) -> TopicFilter {
    TopicFilter::parse(text).unwrap()
}

fn levels(text: &str) -> impl Iterator<Item = Resolved<'_>> {
    text.split('/').map(Resolved::of)
}

// Parsing.

#[test]
fn the_example_parses_in_file_order() {
    let parsed = parse(EXAMPLE);
    assert_eq!(parsed.len(), 3);
    assert!(!parsed.is_empty());
    assert_eq!(parsed.default_permission(), Permission::Deny);
    assert!(!parsed.is_allow_all());

    let first = &parsed.rules[0];
    assert_eq!(first.permission, Permission::Deny);
    assert_eq!(first.action, Action::Publish);
    assert_eq!(
        first.pattern.levels,
        [
            Level::Literal("devices".to_owned()),
            Level::ClientId,
            Level::Literal("config".to_owned())
        ]
    );
    assert!(first.pattern.uses_client_id);
    assert!(!first.pattern.uses_username);
    assert!(first.username.is_none() && first.client_id.is_none() && first.source.is_none());

    let second = &parsed.rules[1];
    assert_eq!(
        (second.permission, second.action),
        (Permission::Allow, Action::Both)
    );
    assert_eq!(second.pattern.levels.last(), Some(&Level::Hash));

    let third = &parsed.rules[2];
    assert_eq!(third.action, Action::Subscribe);
    assert_eq!(third.username.as_deref(), Some("alice"));
    assert_eq!(third.client_id.as_deref(), Some("console-1"));
    assert_eq!(
        third.source,
        Some(Network {
            addr: "10.0.0.0".parse().unwrap(),
            prefix: 8
        })
    );
}

#[test]
fn the_example_decides_as_its_comment_says() {
    let parsed = parse(EXAMPLE);
    let device = client("d1");
    assert!(parsed.may_publish(&device, "devices/d1/temp"));
    assert!(!parsed.may_publish(&device, "devices/d1/config"));
    assert!(parsed.may_receive(&device, "devices/d1/config"));
    assert!(!parsed.may_publish(&device, "devices/d2/temp"));
    let console = Principal {
        source: Some("10.2.3.4".parse().unwrap()),
        ..user("alice", "console-1")
    };
    assert!(parsed.may_subscribe(&console, &filter("alerts/#")));
    assert!(!parsed.may_subscribe(&device, &filter("alerts/#")));
}

#[test]
fn a_default_alone_is_allow_all_only_when_it_allows() {
    assert!(AclRules::allow_all().is_allow_all());
    assert!(AclRules::allow_all().is_empty());
    assert_eq!(parse("default = \"allow\""), AclRules::allow_all());
    assert!(parse("default = \"allow\"").is_allow_all());
    let deny = parse("default = \"deny\"");
    assert!(!deny.is_allow_all());
    assert!(deny.is_empty());
    assert!(!deny.may_publish(&client("c"), "t"));
    assert!(!deny.may_receive(&client("c"), "t"));
    assert!(!deny.may_subscribe(&client("c"), &filter("#")));
    assert!(
        !rules(
            "allow",
            &[r#"permission = "deny", action = "both", topic = "x""#]
        )
        .is_allow_all()
    );
}

#[test]
fn the_default_is_required_and_checked() {
    assert_eq!(
        refused(""),
        AclError {
            rule: None,
            message: "default: missing: write default = \"allow\" or \"deny\"".to_owned()
        }
    );
    assert_eq!(
        refused("default = \"maybe\"").to_string(),
        "default: expected \"allow\" or \"deny\", found \"maybe\""
    );
    assert_eq!(
        refused("default = true").to_string(),
        "default: expected a string, found boolean"
    );
}

#[test]
fn file_level_errors_name_no_rule() {
    let unknown = refused("default = \"deny\"\nrules = []\n");
    assert_eq!(unknown.rule, None);
    assert!(
        unknown.message.contains("unknown field `rules`"),
        "{unknown}"
    );

    let syntax = refused("default = \n");
    assert_eq!(syntax.rule, None);
    assert!(
        syntax.message.contains("TOML parse error at line 1"),
        "{syntax}"
    );
}

#[test]
fn an_unknown_key_names_its_rule() {
    let valid = "permission = \"allow\"\naction = \"both\"\ntopic = \"a\"";
    let error = refused(&format!(
        "default = \"allow\"\n[[rule]]\n{valid}\n[[rule]]\n{valid}\ncolour = \"red\"\n"
    ));
    assert_eq!(error.rule, Some(2));
    assert!(
        error
            .to_string()
            .starts_with("rule 2: unknown field `colour`"),
        "{error}"
    );
}

#[test]
fn permission_and_action_are_checked() {
    let permission = rule_error("permission = \"permit\"\naction = \"both\"\ntopic = \"a\"");
    assert_eq!(
        permission.to_string(),
        "rule 1: permission: expected \"allow\" or \"deny\", found \"permit\""
    );
    let action = rule_error("permission = \"allow\"\naction = \"read\"\ntopic = \"a\"");
    assert_eq!(
        action,
        AclError {
            rule: Some(1),
            message: "action: expected \"publish\", \"subscribe\" or \"both\", found \"read\""
                .to_owned()
        }
    );
    let typed = rule_error("permission = 1\naction = \"both\"\ntopic = \"a\"");
    assert_eq!(
        typed.to_string(),
        "rule 1: permission: expected a string, found integer"
    );
}

#[test]
fn required_keys_are_named_when_missing() {
    assert_eq!(
        rule_error("action = \"both\"\ntopic = \"a\"").to_string(),
        "rule 1: permission: missing"
    );
    assert_eq!(
        rule_error("permission = \"allow\"\ntopic = \"a\"").to_string(),
        "rule 1: action: missing"
    );
    assert_eq!(
        rule_error("permission = \"allow\"\naction = \"both\"").to_string(),
        "rule 1: topic: missing"
    );
}

#[test]
fn sources_must_be_networks() {
    let source = |value: &str| {
        rule_error(&format!(
            "permission = \"allow\"\naction = \"both\"\ntopic = \"a\"\nsource = \"{value}\""
        ))
    };
    let not_an_address = source("ten.0.0.0/8");
    assert_eq!(not_an_address.rule, Some(1));
    assert!(
        not_an_address
            .message
            .starts_with("source: \"ten.0.0.0/8\" is not an address"),
        "{not_an_address}"
    );
    let too_long = source("10.0.0.0/33");
    assert!(too_long.message.contains("from 0 to 32"), "{too_long}");
    let too_long_v6 = source("2001:db8::/129");
    assert!(
        too_long_v6.message.contains("from 0 to 128"),
        "{too_long_v6}"
    );
    let not_a_number = source("10.0.0.0/x");
    assert!(
        not_a_number.message.starts_with("source:"),
        "{not_a_number}"
    );
    let host_bits = source("10.0.0.1/8");
    assert_eq!(
        host_bits.message,
        "source: \"10.0.0.1/8\" has host bits set: the network is 10.0.0.0/8"
    );
}

#[test]
fn placeholders_must_fill_a_whole_level() {
    let inside = |topic: &str| {
        rule_error(&format!(
            "permission = \"allow\"\naction = \"both\"\ntopic = \"{topic}\""
        ))
        .to_string()
    };
    assert_eq!(
        inside("a/%ux"),
        "rule 1: topic \"a/%ux\": %u and %c must be a whole topic level"
    );
    assert_eq!(
        inside("a/x%c/b"),
        "rule 1: topic \"a/x%c/b\": %u and %c must be a whole topic level"
    );
    let whole = rules(
        "deny",
        &[r#"permission = "allow", action = "both", topic = "%u/%c""#],
    );
    assert_eq!(
        whole.rules[0].pattern.levels,
        [Level::Username, Level::ClientId]
    );
}

#[test]
fn topics_must_be_valid_filters() {
    let topic = |topic: &str| {
        rule_error(&format!(
            "permission = \"allow\"\naction = \"both\"\ntopic = \"{topic}\""
        ))
    };
    assert_eq!(
        topic("a/#/b").message,
        format!(
            "topic \"a/#/b\": {}",
            TopicError::MisplacedMultiLevelWildcard
        )
    );
    assert_eq!(
        topic("a+/%u").message,
        format!(
            "topic \"a+/%u\": {}",
            TopicError::MisplacedSingleLevelWildcard
        )
    );
    assert_eq!(
        topic("").message,
        format!("topic \"\": {}", TopicError::Empty)
    );
}

#[test]
fn shared_subscription_prefixes_are_refused() {
    let error =
        rule_error("permission = \"deny\"\naction = \"subscribe\"\ntopic = \"$share/g/a/#\"");
    assert_eq!(error.rule, Some(1));
    assert!(
        error
            .message
            .starts_with("topic \"$share/g/a/#\": a $share/<group>/ prefix is not part of a topic"),
        "{error}"
    );
    let bare = rule_error("permission = \"deny\"\naction = \"subscribe\"\ntopic = \"$share\"");
    assert!(bare.message.contains("$share/<group>/"), "{bare}");
    // Only the exact prefix: `$shared` is an ordinary level.
    let shared = rules(
        "deny",
        &[r#"permission = "deny", action = "both", topic = "$shared/x""#],
    );
    assert_eq!(shared.len(), 1);
}

// Whom a rule applies to.

#[test]
fn a_named_username_or_client_id_must_be_the_clients() {
    let by_name = rules(
        "deny",
        &[r#"permission = "allow", action = "publish", topic = "t", username = "alice""#],
    );
    assert!(by_name.may_publish(&user("alice", "c"), "t"));
    assert!(!by_name.may_publish(&user("bob", "c"), "t"));
    assert!(!by_name.may_publish(&client("alice"), "t"));

    let by_id = rules(
        "deny",
        &[r#"permission = "allow", action = "publish", topic = "t", client_id = "c1""#],
    );
    assert!(by_id.may_publish(&client("c1"), "t"));
    assert!(by_id.may_publish(&user("anyone", "c1"), "t"));
    assert!(!by_id.may_publish(&client("c2"), "t"));
}

#[test]
fn a_named_network_must_hold_the_clients_address() {
    let rule = |source: &str| {
        rules(
            "deny",
            &[&format!(
                r#"permission = "allow", action = "publish", topic = "t", source = "{source}""#
            )],
        )
    };
    let v4 = rule("10.0.0.0/8");
    assert!(v4.may_publish(&from("10.1.2.3"), "t"));
    assert!(v4.may_publish(&from("10.255.255.255"), "t"));
    assert!(!v4.may_publish(&from("11.0.0.1"), "t"));
    assert!(v4.may_publish(&from("::ffff:10.1.2.3"), "t"), "mapped IPv4");
    assert!(
        !v4.may_publish(&from("::a01:203"), "t"),
        "IPv4-compatible is not mapped"
    );
    assert!(!v4.may_publish(&client("c"), "t"), "unknown source");

    let v6 = rule("2001:db8::/32");
    assert!(v6.may_publish(&from("2001:db8:1::5"), "t"));
    assert!(!v6.may_publish(&from("2001:db9::1"), "t"));
    assert!(!v6.may_publish(&from("10.0.0.1"), "t"));
    assert!(!v6.may_publish(&client("c"), "t"));

    let host = rule("192.0.2.7");
    assert!(host.may_publish(&from("192.0.2.7"), "t"));
    assert!(!host.may_publish(&from("192.0.2.8"), "t"));
    let host_v6 = rule("2001:db8::7");
    assert!(host_v6.may_publish(&from("2001:db8::7"), "t"));
    assert!(!host_v6.may_publish(&from("2001:db8::8"), "t"));

    let mapped = rule("::ffff:10.0.0.0/104");
    assert!(mapped.may_publish(&from("10.9.9.9"), "t"));
    assert!(!mapped.may_publish(&from("11.0.0.1"), "t"));

    let everyone_v4 = rule("0.0.0.0/0");
    assert!(everyone_v4.may_publish(&from("203.0.113.9"), "t"));
    assert!(!everyone_v4.may_publish(&from("2001:db8::1"), "t"));
}

// Placeholders.

#[test]
fn placeholders_stand_for_the_clients_own_names() {
    let own = rules(
        "deny",
        &[
            r#"permission = "allow", action = "both", topic = "users/%u/#""#,
            r#"permission = "allow", action = "both", topic = "devices/%c/+""#,
        ],
    );
    let alice = user("alice", "d1");
    assert!(own.may_publish(&alice, "users/alice/inbox"));
    assert!(own.may_publish(&alice, "users/alice"));
    assert!(!own.may_publish(&alice, "users/bob/inbox"));
    assert!(own.may_receive(&alice, "devices/d1/temp"));
    assert!(!own.may_receive(&alice, "devices/d2/temp"));
    // Without a username the `%u` rule does not apply; the `%c` one still does.
    assert!(!own.may_publish(&client("d1"), "users/d1/inbox"));
    assert!(own.may_publish(&client("d1"), "devices/d1/temp"));
}

#[test]
fn names_that_are_not_one_level_do_not_widen_a_pattern() {
    let own = rules(
        "deny",
        &[
            r#"permission = "allow", action = "both", topic = "users/%u/#""#,
            r#"permission = "allow", action = "both", topic = "devices/%c""#,
        ],
    );
    // A `+` or `#` name would read as a wildcard next to the requested filter.
    assert!(!own.may_subscribe(&user("+", "c"), &filter("users/+/#")));
    assert!(!own.may_subscribe(&user("#", "c"), &filter("users/#")));
    assert!(!own.may_subscribe(&client("+"), &filter("devices/+")));
    // A name with `/` reaches no deeper topics.
    assert!(!own.may_publish(&user("bob/x", "c"), "users/bob/x/inbox"));
    // An empty name would stand for an empty level.
    assert!(!own.may_publish(&client(""), "devices/"));
    assert!(!own.may_publish(&user("", "c"), "users//inbox"));
    // An ordinary name still works.
    assert!(own.may_subscribe(&user("bob", "c"), &filter("users/bob/#")));
}

// Decisions.

#[test]
fn publish_is_decided_by_the_first_matching_rule_then_the_default() {
    let first_deny = rules(
        "allow",
        &[
            r#"permission = "deny", action = "publish", topic = "a/secret""#,
            r#"permission = "allow", action = "publish", topic = "a/#""#,
            r#"permission = "deny", action = "publish", topic = "a/#""#,
        ],
    );
    let c = client("c");
    assert!(!first_deny.may_publish(&c, "a/secret"));
    assert!(
        first_deny.may_publish(&c, "a/x"),
        "the allow comes before the deny"
    );
    assert!(first_deny.may_publish(&c, "b"), "the default");

    let first_allow = rules(
        "deny",
        &[
            r#"permission = "allow", action = "publish", topic = "a/#""#,
            r#"permission = "deny", action = "publish", topic = "a/secret""#,
        ],
    );
    assert!(first_allow.may_publish(&c, "a/secret"));
    assert!(!first_allow.may_publish(&c, "b"), "the default");
}

#[test]
fn publish_and_receive_see_only_their_own_rules() {
    let split = rules(
        "allow",
        &[
            r#"permission = "deny", action = "subscribe", topic = "in/#""#,
            r#"permission = "deny", action = "publish", topic = "out/#""#,
            r#"permission = "deny", action = "both", topic = "both/#""#,
        ],
    );
    let c = client("c");
    assert!(split.may_publish(&c, "in/x"));
    assert!(!split.may_receive(&c, "in/x"));
    assert!(!split.may_publish(&c, "out/x"));
    assert!(split.may_receive(&c, "out/x"));
    assert!(!split.may_publish(&c, "both/x"));
    assert!(!split.may_receive(&c, "both/x"));
    assert!(split.may_receive(&c, "other"));
}

#[test]
fn a_covering_deny_refuses_a_subscription_even_under_allow() {
    let secret = rules(
        "allow",
        &[r#"permission = "deny", action = "subscribe", topic = "secret/#""#],
    );
    let c = client("c");
    assert!(!secret.may_subscribe(&c, &filter("secret/#")));
    assert!(!secret.may_subscribe(&c, &filter("secret/+/x")));
    assert!(!secret.may_subscribe(&c, &filter("secret")));
    // Not covered: allowed by the default, and the deliveries keep the secret out.
    assert!(secret.may_subscribe(&c, &filter("#")));
    assert!(!secret.may_receive(&c, "secret/x"));
    assert!(secret.may_receive(&c, "public/x"));
}

#[test]
fn a_wildcard_under_deny_is_held_when_an_allow_intersects_and_delivers_only_that() {
    let own = rules(
        "deny",
        &[r#"permission = "allow", action = "both", topic = "devices/%c/#""#],
    );
    let c1 = client("c1");
    assert!(own.may_subscribe(&c1, &filter("#")));
    assert!(own.may_subscribe(&c1, &filter("devices/+/t")));
    assert!(own.may_subscribe(&c1, &filter("devices/c1/#")));
    assert!(own.may_receive(&c1, "devices/c1/t"));
    assert!(!own.may_receive(&c1, "devices/c2/t"));
    assert!(!own.may_receive(&c1, "other/x"));
    assert!(!own.may_subscribe(&c1, &filter("other/x")));
    assert!(!own.may_subscribe(&c1, &filter("devices/c2/#")));
    assert!(!own.may_subscribe(&c1, &filter("other/#")));
}

#[test]
fn only_allow_subscribe_rules_open_a_subscription_under_deny() {
    // Intersecting counts only for allow rules.
    let denied = rules(
        "deny",
        &[r#"permission = "deny", action = "subscribe", topic = "a/b""#],
    );
    assert!(!denied.may_subscribe(&client("c"), &filter("a/+")));
    // Nor do publish rules.
    let publish = rules(
        "deny",
        &[r#"permission = "allow", action = "publish", topic = "a/#""#],
    );
    assert!(!publish.may_subscribe(&client("c"), &filter("a/+")));
}

#[test]
fn the_first_covering_rule_decides_a_subscription() {
    let ordered = rules(
        "allow",
        &[
            r#"permission = "allow", action = "subscribe", topic = "a/b""#,
            r#"permission = "deny", action = "subscribe", topic = "a/#""#,
        ],
    );
    let c = client("c");
    assert!(ordered.may_subscribe(&c, &filter("a/b")));
    assert!(
        !ordered.may_subscribe(&c, &filter("a/+")),
        "a/b does not cover a/+"
    );
    assert!(ordered.may_subscribe(&c, &filter("b/#")));
}

#[test]
fn a_shared_subscription_is_checked_by_its_filter() {
    let own = rules(
        "deny",
        &[r#"permission = "allow", action = "subscribe", topic = "devices/%c/#""#],
    );
    assert!(own.may_subscribe(&client("c1"), &filter("$share/g/devices/c1/t")));
    assert!(!own.may_subscribe(&client("c2"), &filter("$share/g/devices/c1/t")));

    let denied = rules(
        "allow",
        &[r#"permission = "deny", action = "subscribe", topic = "devices/#""#],
    );
    assert!(!denied.may_subscribe(&client("c1"), &filter("$share/g/devices/c1/t")));
    assert!(denied.may_subscribe(&client("c1"), &filter("$share/g/other/t")));
}

#[test]
fn hash_matches_dollar_topics_too() {
    let nothing = rules(
        "allow",
        &[r##"permission = "deny", action = "both", topic = "#""##],
    );
    let c = client("c");
    assert!(!nothing.may_publish(&c, "$SYS/x"));
    assert!(!nothing.may_receive(&c, "$SYS/broker/uptime"));
    assert!(!nothing.may_subscribe(&c, &filter("$SYS/#")));
    assert!(!nothing.may_subscribe(&c, &filter("+/monitor")));

    let everything = rules(
        "deny",
        &[r#"permission = "allow", action = "both", topic = "+/#""#],
    );
    assert!(everything.may_receive(&c, "$SYS/uptime"));
    assert!(everything.may_publish(&c, "$SYS/uptime"));
}

// The level functions.

#[test]
fn topic_matching_table() {
    for (pattern, topic, expected) in [
        ("#", "a", true),
        ("#", "$SYS/x", true),
        ("+/x", "$SYS/x", true),
        ("a/#", "a", true),
        ("a/#", "a/b/c", true),
        ("a/#", "b", false),
        ("a/+", "a", false),
        ("a/+", "a/", true),
        ("a/+", "a/b/c", false),
        ("a/b", "a/b", true),
        ("a/b", "a/b/c", false),
        ("a/b/c", "a/b", false),
        ("+", "/a", false),
        ("+/+", "/a", true),
    ] {
        assert_eq!(
            matches_topic(levels(pattern), topic),
            expected,
            "{pattern} matches {topic}"
        );
    }
}

#[test]
fn covers_table() {
    for (pattern, filter, expected) in [
        ("#", "#", true),
        ("#", "a/b", true),
        ("#", "$SYS/#", true),
        ("a/#", "a", true),
        ("a/#", "a/#", true),
        ("a/#", "a/+/c", true),
        ("a/#", "b", false),
        ("a/#", "#", false),
        ("a/+", "a/b", true),
        ("a/+", "a/+", true),
        ("a/+", "a/#", false),
        ("a/+", "a", false),
        ("a/+", "a/b/c", false),
        ("a/b", "a/b", true),
        ("a/b", "a/+", false),
        ("a/b", "a/b/c", false),
        ("a/b", "a/b/#", false),
        ("a", "a/#", false),
        ("+", "#", false),
        ("+/+", "/x", true),
        ("a/+/#", "a/#", false),
        // Conservative: both match every topic, but only `#` is read as covering everything.
        ("+/#", "#", false),
    ] {
        assert_eq!(
            covers(levels(pattern), levels(filter)),
            expected,
            "{pattern} covers {filter}"
        );
    }
}

#[test]
fn intersects_table() {
    for (a, b, expected) in [
        ("#", "a/b", true),
        ("a/#", "a", true),
        ("a", "a/#", true),
        ("a/+", "+/b", true),
        ("a/b/c", "a/+/c", true),
        ("+", "+", true),
        ("a/b", "a/b", true),
        ("devices/c1/#", "#", true),
        ("devices/c1/#", "devices/+/t", true),
        ("a/b", "a/c", false),
        ("a/+", "a", false),
        ("a", "a/+", false),
        ("+/+", "a", false),
        ("devices/c1/#", "other/x", false),
        ("devices/c1/#", "devices/c2/t", false),
    ] {
        assert_eq!(intersects(levels(a), levels(b)), expected, "{a} and {b}");
        assert_eq!(intersects(levels(b), levels(a)), expected, "{b} and {a}");
    }
}

// The shared handle.

#[test]
fn a_replacement_is_seen_by_every_clone() {
    let acl = Acl::default();
    let clone = acl.clone();
    let c = client("c");
    assert!(clone.may_publish(&c, "t"));

    acl.replace(rules(
        "allow",
        &[r#"permission = "deny", action = "both", topic = "t""#],
    ));
    assert!(!clone.may_publish(&c, "t"));
    assert!(!clone.may_receive(&c, "t"));
    assert!(!clone.may_subscribe(&c, &filter("t")));
    assert!(clone.may_publish(&c, "u"));
    assert_eq!(clone.rules().len(), 1);

    acl.replace(AclRules::allow_all());
    assert!(clone.may_publish(&c, "t"));
    assert!(clone.rules().is_allow_all());
}

#[test]
fn the_open_flag_follows_the_rules_and_short_cuts_the_checks() {
    let acl = Acl::default();
    assert!(acl.shared.open.load(Ordering::Acquire));
    assert!(
        Acl::new(parse("default = \"allow\""))
            .shared
            .open
            .load(Ordering::Acquire)
    );

    acl.replace(parse("default = \"deny\""));
    assert!(!acl.shared.open.load(Ordering::Acquire));
    let c = client("c");
    assert!(!acl.may_publish(&c, "t"));

    // While open, the checks answer without reading the rules.
    acl.shared.open.store(true, Ordering::Release);
    assert!(acl.may_publish(&c, "t"));
    assert!(acl.may_receive(&c, "t"));
    assert!(acl.may_subscribe(&c, &filter("#")));

    acl.replace(AclRules::allow_all());
    assert!(acl.shared.open.load(Ordering::Acquire));
}

#[test]
fn handles_are_equal_by_their_rules() {
    let example = Acl::new(parse(EXAMPLE));
    assert_eq!(example, Acl::new(parse(EXAMPLE)));
    assert_eq!(example, example.clone());
    assert_ne!(example, Acl::default());
    assert_eq!(Acl::default(), Acl::new(AclRules::allow_all()));

    let other = Acl::default();
    other.replace(parse(EXAMPLE));
    assert_eq!(example, other);

    let debug = format!("{example:?}");
    assert!(debug.contains("rules: 3"), "{debug}");
    assert!(debug.contains("Deny"), "{debug}");
}
