//! Grants on their own (parsing, placeholders, publish/subscribe/both) and combined with the
//! rules file and `denied_filters` in `BrokerConfig`: both must allow.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use berth_codec::{TopicFilter, TopicName};

use super::*;
use crate::acl::Acl;
use crate::config::BrokerConfig;

fn filter(text: &str) -> TopicFilter {
    TopicFilter::parse(text).unwrap()
}

fn device(username: Option<&str>) -> Principal {
    Principal {
        username: username.map(str::to_owned),
        client_id: "d1".to_owned(),
        ..Principal::default()
    }
}

fn grants(patterns: &[(Granted, &str)]) -> Grants {
    Grants::parse(patterns.iter().copied()).unwrap()
}

#[test]
fn each_pattern_allows_what_it_is_granted_for() {
    let granted = grants(&[
        (Granted::Publish, "up/%c"),
        (Granted::Subscribe, "down/%c/#"),
        (Granted::Both, "shared/+"),
    ]);
    let who = device(None);
    assert!(granted.may_publish(&who, "up/d1"));
    assert!(!granted.may_publish(&who, "up/d2"));
    assert!(!granted.may_publish(&who, "down/d1/x"));
    assert!(granted.may_publish(&who, "shared/a"));
    assert!(!granted.may_receive(&who, "up/d1"));
    assert!(granted.may_receive(&who, "down/d1/x"));
    assert!(granted.may_receive(&who, "shared/a"));
    assert!(granted.may_subscribe(&who, &filter("down/d1/+")));
    assert!(granted.may_subscribe(&who, &filter("shared/+")));
    assert!(!granted.may_subscribe(&who, &filter("up/d1")));
    // Held where part of it is granted (delivery keeps the rest out), refused where none is.
    assert!(granted.may_subscribe(&who, &filter("down/#")));
    assert!(!granted.may_subscribe(&who, &filter("elsewhere/#")));
    // A shared subscription is decided by its filter.
    assert!(granted.may_subscribe(&who, &filter("$share/g/down/d1/x")));
    assert!(!granted.is_empty());
}

#[test]
fn a_username_placeholder_needs_a_username() {
    let granted = grants(&[(Granted::Both, "users/%u/#")]);
    assert!(granted.may_publish(&device(Some("alice")), "users/alice/x"));
    assert!(!granted.may_publish(&device(Some("alice")), "users/bob/x"));
    assert!(!granted.may_publish(&device(None), "users//x"));
    // A name that would widen the pattern binds nothing.
    assert!(!granted.may_publish(&device(Some("+")), "users/+/x"));
}

#[test]
fn no_pattern_allows_nothing() {
    let granted = Grants::parse([]).unwrap();
    assert!(granted.is_empty());
    let who = device(None);
    assert!(!granted.may_publish(&who, "t"));
    assert!(!granted.may_subscribe(&who, &filter("#")));
    assert!(!granted.may_receive(&who, "t"));
}

#[test]
fn a_bad_pattern_is_refused_naming_it() {
    for (text, expected) in [
        ("a/#/b", "a/#/b"),
        ("a/x%c", "whole topic level"),
        ("$share/g/a", "$share"),
        ("", "\"\""),
    ] {
        let error = Grants::parse([(Granted::Publish, text)]).unwrap_err();
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}

/// The combination in `BrokerConfig`: the rules (with `denied_filters`) and the grants must
/// both allow; without grants the rules alone decide.
#[test]
fn the_rules_and_the_grants_must_both_allow() {
    let rules = AclRules::parse(
        "default = \"deny\"\n\
         [[rule]]\npermission = \"allow\"\naction = \"both\"\ntopic = \"devices/%c/#\"\n\
         [[rule]]\npermission = \"allow\"\naction = \"both\"\ntopic = \"fleet/#\"\n",
    )
    .unwrap();
    let config = BrokerConfig {
        acl: Acl::new(rules),
        denied_filters: vec![filter("fleet/secret/#")],
        ..BrokerConfig::default()
    };
    let granted = grants(&[
        (Granted::Both, "devices/%c/telemetry"),
        (Granted::Both, "fleet/#"),
        (Granted::Both, "other/#"),
    ]);
    let with = Principal {
        grants: Some(Arc::new(granted)),
        ..device(None)
    };
    let without = device(None);
    let topic = |text: &str| TopicName::parse(text).unwrap();

    // Both allow.
    assert!(config.may_publish(&with, "devices/d1/telemetry"));
    assert!(config.may_receive(&with, &topic("fleet/a")));
    assert!(config.may_subscribe(&with, &filter("fleet/+")));
    // The rules allow, the grants do not.
    assert!(!config.may_publish(&with, "devices/d1/state"));
    assert!(!config.may_receive(&with, &topic("devices/d1/state")));
    assert!(!config.may_subscribe(&with, &filter("devices/d1/state")));
    assert!(config.may_publish(&without, "devices/d1/state"));
    // The grants allow, the rules do not.
    assert!(!config.may_publish(&with, "other/x"));
    assert!(!config.may_receive(&with, &topic("other/x")));
    assert!(!config.may_subscribe(&with, &filter("other/#")));
    // Both allow, `denied_filters` does not.
    assert!(!config.may_subscribe(&with, &filter("fleet/secret/x")));
    assert!(!config.may_receive(&with, &topic("fleet/secret/x")));
}
