//! The registry's rules: epochs, fencing, Session Present across nodes, expiry.

use super::*;

fn claim(client: &str, node: u64, clean_start: bool, now_ms: u64) -> pb::Command {
    pb::Command {
        kind: Some(pb::command::Kind::Claim(pb::Claim {
            client_id: client.into(),
            node_id: node,
            clean_start,
            protocol: 4,
            now_ms,
            expiry_interval: 60,
            will: Some(pb::Will {
                message: Some(pb::Message {
                    topic: "wills".into(),
                    ..Default::default()
                }),
                delay_secs: 5,
                message_expiry_interval: None,
            }),
        })),
    }
}

fn claim_result(result: pb::CommandResult) -> pb::ClaimResult {
    match result.kind {
        Some(pb::command_result::Kind::Claim(c)) => c,
        other => panic!("expected a claim result, got {other:?}"),
    }
}

fn subscribe(client: &str, epoch: u64, filter: &str) -> pb::Command {
    pb::Command {
        kind: Some(pb::command::Kind::Subscribe(pb::Subscribe {
            client_id: client.into(),
            epoch,
            subscriptions: vec![pb::Subscription {
                filter: filter.into(),
                qos: 1,
                ..Default::default()
            }],
        })),
    }
}

fn detach(client: &str, epoch: u64, expires_at_ms: Option<u64>) -> pb::Command {
    pb::Command {
        kind: Some(pb::command::Kind::Detach(pb::Detach {
            client_id: client.into(),
            epoch,
            expires_at_ms,
            will_due_at_ms: None,
        })),
    }
}

#[test]
fn a_claim_on_another_node_keeps_the_session_and_names_the_old_owner() {
    let mut r = Registry::default();
    let mut notices = Vec::new();
    let first = claim_result(r.apply(&claim("x", 1, false, 0), &mut notices));
    assert_eq!(
        (first.epoch, first.session_present, first.previous_owner),
        (1, false, None)
    );
    r.apply(&subscribe("x", 1, "a/#"), &mut notices);
    r.apply(&detach("x", 1, Some(10_000)), &mut notices);

    let second = claim_result(r.apply(&claim("x", 2, false, 5_000), &mut notices));
    assert_eq!(second.epoch, 2);
    assert!(second.session_present);
    assert_eq!(second.previous_owner, Some(1));
    assert_eq!(second.subscriptions.len(), 1);
    assert_eq!(r.sessions["x"].owner, 2);
    assert!(matches!(
        notices.last(),
        Some(Notice::Owner {
            owner: 2,
            epoch: 2,
            kept: true,
            ..
        })
    ));
}

#[test]
fn clean_start_discards_the_old_session_everywhere_but_still_raises_the_epoch() {
    let mut r = Registry::default();
    let mut notices = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut notices);
    r.apply(&subscribe("x", 1, "a"), &mut notices);
    let again = claim_result(r.apply(&claim("x", 2, true, 0), &mut notices));
    assert_eq!(again.epoch, 2);
    assert!(!again.session_present);
    assert_eq!(again.previous_owner, None);
    assert!(r.sessions["x"].subscriptions.is_empty());
    assert!(matches!(
        notices.last(),
        Some(Notice::Owner { kept: false, .. })
    ));
}

#[test]
fn an_expired_session_is_not_present_on_any_node() {
    let mut r = Registry::default();
    let mut notices = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut notices);
    r.apply(&detach("x", 1, Some(1_000)), &mut notices);
    let late = claim_result(r.apply(&claim("x", 2, false, 1_000), &mut notices));
    assert!(!late.session_present);
    assert_eq!(late.previous_owner, None);
}

#[test]
fn a_connected_session_is_present_whatever_the_clock_says() {
    let mut r = Registry::default();
    let mut notices = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut notices);
    let other = claim_result(r.apply(&claim("x", 3, false, u64::MAX - 1), &mut notices));
    assert!(other.session_present);
    assert_eq!(other.previous_owner, Some(1));
}

#[test]
fn commands_of_an_old_epoch_are_fenced() {
    let mut r = Registry::default();
    let mut notices = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut notices);
    r.apply(&claim("x", 2, false, 0), &mut notices);
    let stale = r.apply(&subscribe("x", 1, "late"), &mut notices);
    assert_eq!(
        stale.kind,
        Some(pb::command_result::Kind::Fenced(pb::Fenced {
            current_epoch: 2
        }))
    );
    assert!(r.sessions["x"].subscriptions.is_empty());
    let drop_old = pb::Command {
        kind: Some(pb::command::Kind::DropSession(pb::DropSession {
            client_id: "x".into(),
            epoch: 1,
        })),
    };
    r.apply(&drop_old, &mut notices);
    assert!(
        r.sessions.contains_key("x"),
        "a stale owner cannot drop the session"
    );
}

#[test]
fn snapshots_round_trip_the_registry() {
    let mut r = Registry::default();
    let mut notices = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut notices);
    r.apply(&subscribe("x", 1, "a/+"), &mut notices);
    r.apply(&claim("y", 2, false, 0), &mut notices);
    r.apply(&detach("y", 1, None), &mut notices);
    r.apply(&claim("z", 2, false, 0), &mut notices);
    r.apply(&detach("z", 1, Some(77)), &mut notices);
    let (sessions, retained) = r.to_snapshot();
    assert_eq!(Registry::from_snapshot(sessions, retained), r);
}

#[test]
fn a_lost_node_leaves_its_connected_sessions_detached_with_deadlines_from_then() {
    let mut r = Registry::default();
    let mut notices = Vec::new();
    r.apply(&claim("on-3", 3, false, 0), &mut notices);
    r.apply(&claim("on-1", 1, false, 0), &mut notices);
    let down = pb::Command {
        kind: Some(pb::command::Kind::NodeDown(pb::NodeDown {
            node_id: 3,
            at_ms: 10_000,
        })),
    };
    r.apply(&down, &mut notices);
    let lost = &r.sessions["on-3"];
    assert!(lost.detached);
    assert_eq!(
        lost.expires_at_ms,
        Some(70_000),
        "60 s expiry from the loss"
    );
    assert_eq!(
        lost.will_due_at_ms,
        Some(15_000),
        "5 s will delay from the loss"
    );
    assert!(lost.due_will(15_000).is_some() && lost.due_will(14_999).is_none());
    assert!(lost.expired(70_000) && !lost.expired(69_999));
    assert!(
        !r.sessions["on-1"].detached,
        "other nodes' sessions are untouched"
    );

    let fired = pb::Command {
        kind: Some(pb::command::Kind::WillFired(pb::WillFired {
            client_id: "on-3".into(),
            epoch: 1,
        })),
    };
    r.apply(&fired, &mut notices);
    assert!(
        r.sessions["on-3"].due_will(u64::MAX).is_none(),
        "a will fires once"
    );
}

fn reassert(client: &str, node: u64, epoch: u64) -> pb::Command {
    pb::Command {
        kind: Some(pb::command::Kind::Reassert(pb::Reassert {
            client_id: client.into(),
            node_id: node,
            epoch,
            protocol: 5,
            expiry_interval: 0,
            will: None,
            subscriptions: vec![pb::Subscription {
                filter: "t/#".into(),
                ..Default::default()
            }],
        })),
    }
}

#[test]
fn an_owner_declared_down_while_alive_reasserts_its_connected_sessions() {
    let mut r = Registry::default();
    let mut notices = Vec::new();
    r.apply(&claim("on-3", 3, false, 0), &mut notices);
    let down = pb::Command {
        kind: Some(pb::command::Kind::NodeDown(pb::NodeDown {
            node_id: 3,
            at_ms: 10_000,
        })),
    };
    notices.clear();
    r.apply(&down, &mut notices);
    assert_eq!(notices, vec![Notice::NodeDown { node: 3 }]);
    assert!(r.sessions["on-3"].detached);

    r.apply(&reassert("on-3", 3, 1), &mut notices);
    let back = &r.sessions["on-3"];
    assert!(!back.detached && back.expires_at_ms.is_none() && back.will_due_at_ms.is_none());

    // Ended by the leader meanwhile: recorded again as the owner holds it, routes included.
    r.sessions.remove("on-3");
    notices.clear();
    r.apply(&reassert("on-3", 3, 1), &mut notices);
    assert_eq!(r.sessions["on-3"].epoch, 1);
    assert!(matches!(
        &notices[..],
        [Notice::Owner {
            owner: 3,
            kept: true,
            ..
        }]
    ));

    // Claimed elsewhere since: the older owner's word is fenced.
    r.apply(&claim("on-3", 1, false, 0), &mut notices);
    let result = r.apply(&reassert("on-3", 3, 1), &mut notices);
    assert!(matches!(
        result.kind,
        Some(pb::command_result::Kind::Fenced(_))
    ));
    assert_eq!(r.sessions["on-3"].owner, 1);
}
