//! The registry's rules: epochs, fencing, Session Present across nodes, expiry, wills, a lost
//! node and its re-assertion.

use berth_codec::{MqttString, QoS, SubscriptionOptions};

use super::*;

fn id(client: &str) -> ClientId {
    ClientId::new(MqttString::new(client).unwrap())
}

fn will() -> WillRecord {
    WillRecord {
        message: Message {
            topic: TopicName::parse("wills").unwrap(),
            payload: bytes::Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
            received_at: None,
            id: None,
        },
        delay_secs: 5,
    }
}

fn claim(client: &str, node: u64, clean_start: bool, now_ms: u64) -> Command {
    Command::Claim(Claim {
        client: id(client),
        node: NodeId(node),
        clean_start,
        protocol: ProtocolVersion::V3_1_1,
        now: UnixMillis(now_ms),
        expiry: SessionExpiry::After(60),
        will: Some(will()),
    })
}

fn claimed(outcome: Outcome) -> Claimed {
    match outcome {
        Outcome::Claimed(c) => c,
        other => panic!("expected a claim's outcome, got {other:?}"),
    }
}

fn subscription(filter: &str) -> (TopicFilter, SubscriptionRecord) {
    (
        TopicFilter::parse(filter).unwrap(),
        SubscriptionRecord {
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..SubscriptionOptions::new(QoS::AtMostOnce)
            },
            subscription_id: None,
        },
    )
}

fn subscribe(client: &str, epoch: u64, filter: &str) -> Command {
    Command::Subscribe {
        client: id(client),
        epoch: Epoch(epoch),
        subscriptions: vec![subscription(filter)],
    }
}

fn detach(client: &str, epoch: u64, expires_at_ms: Option<u64>) -> Command {
    Command::Detach {
        client: id(client),
        epoch: Epoch(epoch),
        expires_at: expires_at_ms.map(UnixMillis),
        will_due_at: None,
    }
}

fn entry<'r>(r: &'r Registry, client: &str) -> &'r SessionEntry {
    &r.sessions[&id(client)]
}

#[test]
fn a_claim_on_another_node_keeps_the_session_and_names_the_old_owner() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    let first = claimed(r.apply(&claim("x", 1, false, 0), &mut events));
    assert_eq!(
        (first.epoch, first.session_present, first.previous_owner),
        (Epoch(1), false, None)
    );
    r.apply(&subscribe("x", 1, "a/#"), &mut events);
    r.apply(&detach("x", 1, Some(10_000)), &mut events);

    let second = claimed(r.apply(&claim("x", 2, false, 5_000), &mut events));
    assert_eq!(second.epoch, Epoch(2));
    assert!(second.session_present);
    assert_eq!(second.previous_owner, Some(NodeId(1)));
    assert_eq!(second.subscriptions, vec![subscription("a/#")]);
    assert_eq!(entry(&r, "x").owner, NodeId(2));
    assert_eq!(
        entry(&r, "x").started,
        Epoch(1),
        "a takeover keeps the start"
    );
    assert!(matches!(
        events.last(),
        Some(ClusterEvent::Owner {
            owner: NodeId(2),
            epoch: Epoch(2),
            kept: true,
            ..
        })
    ));
}

/// Simulator `--scenario lost-release`, seed 6148: node 3 claimed the session from node 2's
/// copy and crashed before its pull returned; the next claim cannot reach node 3, and the
/// state it lacks is node 2's, which the claim names as an earlier lack.
#[test]
fn a_claim_names_where_the_previous_owner_took_the_session_from() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut events);
    let from_first = claimed(r.apply(&claim("x", 2, false, 0), &mut events));
    assert_eq!(from_first.previous_from, None, "node 1 created it");
    r.apply(&claim("x", 3, false, 0), &mut events);
    let copy_of_2 = Some(CopyRef {
        node: NodeId(2),
        epoch: Epoch(2),
    });
    assert_eq!(entry(&r, "x").moved_from, copy_of_2);
    // The owner's own later claim keeps where it came from.
    let again = claimed(r.apply(&claim("x", 3, false, 0), &mut events));
    assert_eq!((again.previous_owner, again.previous_from), (None, None));
    let fourth = claimed(r.apply(&claim("x", 1, false, 0), &mut events));
    assert_eq!(
        (
            fourth.previous_owner,
            fourth.previous_epoch,
            fourth.previous_from
        ),
        (Some(NodeId(3)), Epoch(4), copy_of_2)
    );
    // A Clean Start keeps nothing to name.
    let fresh = claimed(r.apply(&claim("x", 2, true, 0), &mut events));
    assert_eq!(fresh.previous_from, None);
    let after = claimed(r.apply(&claim("x", 3, false, 0), &mut events));
    assert_eq!(after.previous_from, None, "node 2 started it afresh");
}

#[test]
fn clean_start_discards_the_old_session_everywhere_but_still_raises_the_epoch() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut events);
    r.apply(&subscribe("x", 1, "a"), &mut events);
    let again = claimed(r.apply(&claim("x", 2, true, 0), &mut events));
    assert_eq!(again.epoch, Epoch(2));
    assert!(!again.session_present);
    assert_eq!(again.previous_owner, None);
    assert!(entry(&r, "x").subscriptions.is_empty());
    assert_eq!(entry(&r, "x").started, Epoch(2));
    assert!(matches!(
        events.last(),
        Some(ClusterEvent::Owner { kept: false, .. })
    ));
}

#[test]
fn an_expired_session_is_not_present_on_any_node() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut events);
    r.apply(&detach("x", 1, Some(1_000)), &mut events);
    let late = claimed(r.apply(&claim("x", 2, false, 1_000), &mut events));
    assert!(!late.session_present);
    assert_eq!(late.previous_owner, None);
}

#[test]
fn a_connected_session_is_present_whatever_the_clock_says() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut events);
    let other = claimed(r.apply(&claim("x", 3, false, u64::MAX - 1), &mut events));
    assert!(other.session_present);
    assert_eq!(other.previous_owner, Some(NodeId(1)));
}

#[test]
fn commands_of_an_old_epoch_are_fenced() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut events);
    r.apply(&claim("x", 2, false, 0), &mut events);
    let stale = r.apply(&subscribe("x", 1, "late"), &mut events);
    assert_eq!(stale, Outcome::Fenced { current: Epoch(2) });
    assert!(entry(&r, "x").subscriptions.is_empty());
    let drop_old = Command::Drop {
        client: id("x"),
        epoch: Epoch(1),
    };
    assert_eq!(
        r.apply(&drop_old, &mut events),
        Outcome::Fenced { current: Epoch(2) }
    );
    assert!(
        r.sessions.contains_key(&id("x")),
        "a stale owner cannot drop the session"
    );
    let unknown = r.apply(&detach("nobody", 1, None), &mut events);
    assert_eq!(unknown, Outcome::Fenced { current: Epoch(0) });
}

#[test]
fn a_normal_disconnect_discards_the_will_and_an_abnormal_one_keeps_it_due() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut events);
    r.apply(&detach("x", 1, Some(60_000)), &mut events);
    assert!(entry(&r, "x").will.is_none());

    r.apply(&claim("y", 1, false, 0), &mut events);
    let abnormal = Command::Detach {
        client: id("y"),
        epoch: Epoch(1),
        expires_at: Some(UnixMillis(60_000)),
        will_due_at: Some(UnixMillis(5_000)),
    };
    r.apply(&abnormal, &mut events);
    assert_eq!(entry(&r, "y").due_will(UnixMillis(5_000)), Some(&will()));
    assert_eq!(entry(&r, "y").due_will(UnixMillis(4_999)), None);
}

#[test]
fn a_lost_node_leaves_its_connected_sessions_detached_with_deadlines_from_then() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    r.apply(&claim("on-3", 3, false, 0), &mut events);
    r.apply(&claim("on-1", 1, false, 0), &mut events);
    let down = Command::NodeDown {
        node: NodeId(3),
        at: UnixMillis(10_000),
    };
    r.apply(&down, &mut events);
    let lost = entry(&r, "on-3");
    assert!(lost.detached);
    assert_eq!(
        lost.expires_at,
        Some(UnixMillis(70_000)),
        "60 s expiry from the loss"
    );
    assert_eq!(
        lost.will_due_at,
        Some(UnixMillis(15_000)),
        "5 s will delay from the loss"
    );
    assert!(lost.expired(UnixMillis(70_000)) && !lost.expired(UnixMillis(69_999)));
    assert!(
        !entry(&r, "on-1").detached,
        "other nodes' sessions are untouched"
    );

    let fired = Command::WillFired {
        client: id("on-3"),
        epoch: Epoch(1),
    };
    r.apply(&fired, &mut events);
    assert!(
        entry(&r, "on-3").due_will(UnixMillis(u64::MAX)).is_none(),
        "a will fires once"
    );
}

fn reassert(client: &str, node: u64, epoch: u64) -> Command {
    Command::Reassert(Reassert {
        client: id(client),
        node: NodeId(node),
        epoch: Epoch(epoch),
        protocol: ProtocolVersion::V5,
        expiry: SessionExpiry::After(0),
        will: None,
        subscriptions: vec![subscription("t/#")],
    })
}

#[test]
fn an_owner_declared_down_while_alive_reasserts_its_connected_sessions() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    r.apply(&claim("on-3", 3, false, 0), &mut events);
    let down = Command::NodeDown {
        node: NodeId(3),
        at: UnixMillis(10_000),
    };
    events.clear();
    r.apply(&down, &mut events);
    assert_eq!(events, vec![ClusterEvent::NodeDown { node: NodeId(3) }]);
    assert!(entry(&r, "on-3").detached);

    r.apply(&reassert("on-3", 3, 1), &mut events);
    let back = entry(&r, "on-3");
    assert!(!back.detached && back.expires_at.is_none() && back.will_due_at.is_none());

    // Ended by the leader meanwhile: recorded again as the owner holds it, routes included.
    r.sessions.remove(&id("on-3"));
    events.clear();
    r.apply(&reassert("on-3", 3, 1), &mut events);
    assert_eq!(entry(&r, "on-3").epoch, Epoch(1));
    assert!(matches!(
        &events[..],
        [ClusterEvent::Owner {
            owner: NodeId(3),
            kept: true,
            ..
        }]
    ));

    // Claimed elsewhere since: the older owner's word is fenced.
    r.apply(&claim("on-3", 1, false, 0), &mut events);
    let result = r.apply(&reassert("on-3", 3, 1), &mut events);
    assert!(matches!(result, Outcome::Fenced { .. }));
    assert_eq!(entry(&r, "on-3").owner, NodeId(1));
}

#[test]
fn retained_messages_are_set_and_cleared_for_every_broker() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    let mut message = will().message;
    message.payload = bytes::Bytes::from_static(b"on");
    message.retain = true;
    r.apply(&Command::SetRetained(message.clone()), &mut events);
    assert_eq!(r.retained.get(&message.topic), Some(&message));
    r.apply(&Command::ClearRetained(message.topic.clone()), &mut events);
    assert!(r.retained.is_empty());
    assert!(matches!(
        &events[..],
        [ClusterEvent::Retained { message: set }, ClusterEvent::Retained { message: cleared }]
            if set.payload == message.payload && cleared.payload.is_empty()
    ));
}

#[test]
fn reset_names_every_session_with_its_start() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut events);
    r.apply(&subscribe("x", 1, "a"), &mut events);
    r.apply(&claim("x", 2, false, 0), &mut events);
    let ClusterEvent::Reset { sessions } = r.reset_event() else {
        panic!("not a reset");
    };
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (sessions[0].owner, sessions[0].epoch, sessions[0].started),
        (NodeId(2), Epoch(2), Epoch(1))
    );
    assert_eq!(sessions[0].subscriptions, vec![subscription("a")]);
}

#[test]
fn a_claim_says_whether_the_session_outlived_its_connection() {
    let mut r = Registry::default();
    let mut events = Vec::new();
    r.apply(&claim("x", 1, false, 0), &mut events);
    let kept = claimed(r.apply(&claim("x", 2, false, 0), &mut events));
    assert_eq!(kept.previous_expiry, SessionExpiry::After(60));
    assert!(
        kept.resumes_without_state(),
        "a session that outlives its connection may be in transit: resume it"
    );
    let mut ends_with_connection = claim("y", 1, false, 0);
    if let Command::Claim(c) = &mut ends_with_connection {
        c.expiry = SessionExpiry::After(0);
    }
    r.apply(&ends_with_connection, &mut events);
    let after = claimed(r.apply(&claim("y", 2, false, 0), &mut events));
    assert!(after.session_present, "its end is not in the registry yet");
    assert!(
        !after.resumes_without_state(),
        "nothing on its old owner means it ended there: the client starts afresh"
    );
}
