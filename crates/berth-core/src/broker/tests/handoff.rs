//! Hinted handoff: a publisher is acknowledged at once when the owner of a matched session
//! cannot be reached; what was kept for that session reaches its owner (or its next owner, or
//! this node) in order once it can, survives a restart, and goes when the session ends.

use std::sync::Arc;

use super::cluster::{forwards, pubacks};
use super::*;
use crate::cluster::{ClusterEvent, Forwarded};
use crate::config::{HandoffLimits, Limit};
use crate::ids::NodeId;
use crate::store::SubscriptionRecord;

const SUCCESS: berth_codec::PubAckReasonCode = berth_codec::PubAckReasonCode::Success;

fn caught_up_node(id: u64, config: BrokerConfig) -> Harness {
    let mut h = Harness::with_config(config);
    h.broker.join_cluster(NodeId(id));
    h.event(Event::Cluster(ClusterEvent::CaughtUp));
    h
}

fn far_subscriber(h: &mut Harness, client_id: &str, owner: u64) {
    h.event(Event::Cluster(ClusterEvent::Subscribed {
        client: client(client_id),
        owner: NodeId(owner),
        subscriptions: vec![(
            filter("t/#"),
            SubscriptionRecord {
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
                subscription_id: None,
            },
        )],
    }));
}

/// Node 1 with `far` owned by node 2, whose first forward (m1 from a 3.1.1 publisher) went
/// unanswered and was handed back: returns the harness and the publisher's connection.
fn owner_unreachable() -> (Harness, ConnId) {
    let mut h = caught_up_node(1, BrokerConfig::default());
    far_subscriber(&mut h, "far", 2);
    let publisher = h.connect_ok(v3("pub", false));
    let out = h.publish(publisher, publish("t/1", b"m1", QoS::AtLeastOnce, 1));
    assert!(pubacks(&out, publisher).is_empty(), "waits for the owner");
    let out = h.event(Event::HandOff {
        node: NodeId(2),
        items: handed_back(&out),
    });
    assert_eq!(
        pubacks(&out, publisher),
        vec![(1, SUCCESS)],
        "kept here: the publisher is acknowledged without the owner"
    );
    (h, publisher)
}

/// The forwards in `out` with their tokens, as the forward queue hands them back.
fn handed_back(out: &Out) -> Vec<(Option<u64>, Forwarded)> {
    out.actions
        .iter()
        .filter_map(|a| match a {
            Action::Forward {
                token,
                message,
                clients,
                publisher,
                retried,
                ..
            } => Some((
                *token,
                Forwarded {
                    message: Arc::clone(message),
                    clients: clients.clone(),
                    publisher: publisher.clone(),
                    retried: *retried,
                },
            )),
            _ => None,
        })
        .collect()
}

fn kept(h: &mut Harness) -> Vec<(String, String, bool)> {
    h.loaded()
        .handoff
        .into_iter()
        .map(|r| {
            (
                r.client.as_str().to_string(),
                String::from_utf8_lossy(&r.message.payload).into_owned(),
                r.retried,
            )
        })
        .collect()
}

fn retried_flags(out: &Out) -> Vec<(u64, String, bool)> {
    out.actions
        .iter()
        .filter_map(|a| match a {
            Action::Forward {
                node,
                message,
                retried,
                ..
            } => Some((
                node.0,
                String::from_utf8_lossy(&message.payload).into_owned(),
                *retried,
            )),
            _ => None,
        })
        .collect()
}

fn done(h: &mut Harness, out: &Out, node: u64) -> Out {
    let mut last = Out {
        actions: Vec::new(),
    };
    for (_, token, _, _) in forwards(out) {
        last = h.event(Event::ForwardDone {
            token: token.unwrap(),
            delivered: true,
            node: NodeId(node),
        });
    }
    last
}

#[test]
fn an_unreachable_owner_costs_the_publisher_nothing_and_the_message_is_kept() {
    let (mut h, publisher) = owner_unreachable();
    assert_eq!(kept(&mut h), vec![("far".into(), "m1".into(), true)]);

    // While node 2 cannot be reached, its sessions' messages are kept at once.
    let out = h.publish(publisher, publish("t/2", b"m2", QoS::AtLeastOnce, 2));
    assert!(
        forwards(&out).is_empty(),
        "nothing goes to an unreachable node"
    );
    assert_eq!(pubacks(&out, publisher), vec![(2, SUCCESS)]);
    assert_eq!(
        kept(&mut h),
        vec![
            ("far".into(), "m1".into(), true),
            ("far".into(), "m2".into(), false)
        ]
    );
    assert_eq!(h.broker.stats().handoff_messages, 2);
}

#[test]
fn kept_messages_reach_the_owner_in_order_once_it_answers_and_are_then_deleted() {
    let (mut h, publisher) = owner_unreachable();
    h.publish(publisher, publish("t/2", b"m2", QoS::AtLeastOnce, 2));

    let out = h.event(Event::NodeReachable { node: NodeId(2) });
    assert!(
        out.actions
            .iter()
            .any(|a| matches!(a, Action::ForwardResume { node } if node.0 == 2)),
        "the forward queue resumes"
    );
    assert_eq!(
        retried_flags(&out),
        vec![(2, "m1".into(), true), (2, "m2".into(), false)],
        "in order; the one whose first forward went unanswered with DUP = 1"
    );

    // A newer message for the same session while they travel queues behind them.
    let newer = h.publish(publisher, publish("t/3", b"m3", QoS::AtLeastOnce, 3));
    assert!(forwards(&newer).is_empty(), "must not overtake m1, m2");
    assert_eq!(pubacks(&newer, publisher), vec![(3, SUCCESS)]);

    let next = done(&mut h, &out, 2);
    assert_eq!(
        retried_flags(&next),
        vec![(2, "m3".into(), false)],
        "the next round once the first is stored"
    );
    done(&mut h, &next, 2);
    assert!(kept(&mut h).is_empty());
    let stats = h.broker.stats();
    assert_eq!(
        (stats.handoff_messages, stats.handoff_delivered_total),
        (0, 3)
    );

    // Nothing waits any more: the next message is forwarded directly again.
    let out = h.publish(publisher, publish("t/4", b"m4", QoS::AtLeastOnce, 4));
    assert_eq!(forwards(&out).len(), 1);
    assert!(pubacks(&out, publisher).is_empty());
}

#[test]
fn a_session_that_moved_meanwhile_gets_the_kept_messages_from_its_new_owner() {
    let (mut h, _) = owner_unreachable();
    h.event(Event::Cluster(ClusterEvent::Owner {
        client: client("far"),
        owner: NodeId(3),
        epoch: crate::ids::Epoch(5),
        kept: true,
        moved_from: None,
        subscriptions: Vec::new(),
    }));
    let out = h.tick_after_millis(1_000);
    assert_eq!(retried_flags(&out), vec![(3, "m1".into(), true)]);
    done(&mut h, &out, 3);
    assert!(kept(&mut h).is_empty());
}

#[test]
fn a_session_that_ends_takes_its_kept_messages_with_it() {
    let (mut h, _) = owner_unreachable();
    h.event(Event::Cluster(ClusterEvent::Dropped {
        client: client("far"),
        epoch: crate::ids::Epoch(1),
    }));
    assert!(kept(&mut h).is_empty());
    let out = h.event(Event::NodeReachable { node: NodeId(2) });
    assert!(forwards(&out).is_empty());
}

#[test]
fn a_session_started_afresh_elsewhere_does_not_get_the_old_sessions_messages() {
    let (mut h, _) = owner_unreachable();
    h.event(Event::Cluster(ClusterEvent::Owner {
        client: client("far"),
        owner: NodeId(2),
        epoch: crate::ids::Epoch(9),
        kept: false,
        moved_from: None,
        subscriptions: Vec::new(),
    }));
    assert!(kept(&mut h).is_empty());
}

#[test]
fn kept_messages_survive_a_restart_and_go_out_once_the_owner_is_known() {
    let (mut h, _) = owner_unreachable();
    h.restart_after(1);
    h.broker.join_cluster(NodeId(1));
    assert_eq!(h.broker.stats().handoff_messages, 1);
    let out = h.tick_after_millis(1_000);
    assert!(
        forwards(&out).is_empty(),
        "before catching up with the log the owner is not known"
    );
    far_subscriber(&mut h, "far", 2);
    let out = h.event(Event::Cluster(ClusterEvent::CaughtUp));
    assert_eq!(retried_flags(&out), vec![(2, "m1".into(), true)]);
    done(&mut h, &out, 2);
    assert!(kept(&mut h).is_empty());
}

#[test]
fn a_session_that_moved_here_gets_the_kept_messages_here() {
    let (mut h, _) = owner_unreachable();
    // The session is claimed by this node and its (empty) state arrives.
    h.event(Event::Cluster(ClusterEvent::Owner {
        client: client("far"),
        owner: NodeId(1),
        epoch: crate::ids::Epoch(5),
        kept: true,
        moved_from: None,
        subscriptions: Vec::new(),
    }));
    h.event(Event::ImportBegin {
        client: client("far"),
    });
    let mut export = super::late_copy(Vec::new(), Vec::new(), Vec::new());
    export.record.epoch = crate::ids::Epoch(5);
    export.subscriptions = vec![(
        filter("t/#"),
        SubscriptionRecord {
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
            subscription_id: None,
        },
    )];
    h.event(Event::ImportState {
        client: client("far"),
        export,
    });
    h.event(Event::ImportDone {
        client: client("far"),
    });
    h.tick_after_millis(1_000);
    assert!(kept(&mut h).is_empty());
    assert_eq!(h.stored_queue("far"), vec!["m1".to_string()]);
}

#[test]
fn a_full_handoff_refuses_with_quota_exceeded_under_drop_newest() {
    let config = BrokerConfig {
        handoff: HandoffLimits {
            max_per_session: Limit::AtMost(1),
            max_total: Limit::Unlimited,
        },
        ..BrokerConfig::default()
    };
    let mut h = caught_up_node(1, config);
    far_subscriber(&mut h, "far", 2);
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish("t/1", b"m1", QoS::AtLeastOnce, 1));
    h.event(Event::HandOff {
        node: NodeId(2),
        items: handed_back(&out),
    });
    let out = h.publish(publisher, publish("t/2", b"m2", QoS::AtLeastOnce, 2));
    assert_eq!(
        pubacks(&out, publisher),
        vec![(2, berth_codec::PubAckReasonCode::QuotaExceeded)]
    );
    assert_eq!(kept(&mut h), vec![("far".into(), "m1".into(), true)]);
    assert_eq!(
        h.broker
            .stats()
            .dropped_total(crate::stats::DropReason::HandoffFull),
        1
    );
}

#[test]
fn an_entry_whose_forward_went_unanswered_goes_again_with_dup() {
    let (mut h, publisher) = owner_unreachable();
    h.publish(publisher, publish("t/2", b"m2", QoS::AtLeastOnce, 2));
    let out = h.event(Event::NodeReachable { node: NodeId(2) });
    // The round reaches node 2, which stores m2 and stops answering before it says so.
    h.event(Event::HandOff {
        node: NodeId(2),
        items: handed_back(&out),
    });
    assert_eq!(
        kept(&mut h),
        vec![
            ("far".into(), "m1".into(), true),
            ("far".into(), "m2".into(), true)
        ],
        "both stay, and both may have arrived"
    );
    let out = h.event(Event::NodeReachable { node: NodeId(2) });
    assert_eq!(
        retried_flags(&out),
        vec![(2, "m1".into(), true), (2, "m2".into(), true)]
    );
}

/// A re-routed forward whose owner did not answer is kept here without a token (the batch's
/// own outcome answers the publishers): the message is kept for its session, and the node,
/// newly counted unreachable, is probed until it answers.
#[test]
fn a_message_kept_for_an_owner_that_a_re_route_could_not_reach_asks_for_a_probe() {
    let mut h = caught_up_node(1, BrokerConfig::default());
    far_subscriber(&mut h, "far", 3);
    let message = super::cluster::message("t/1", b"m1");
    let kept_for = |node: u64| Event::HandOff {
        node: NodeId(node),
        items: vec![(
            None,
            Forwarded {
                message: Arc::clone(&message),
                clients: vec![client("far")],
                publisher: None,
                retried: true,
            },
        )],
    };
    let out = h.event(kept_for(3));
    assert!(
        out.actions
            .iter()
            .any(|a| matches!(a, Action::ProbeNode { node } if node.0 == 3)),
        "{:?}",
        out.actions
    );
    assert_eq!(kept(&mut h).len(), 1);
    // Already counted unreachable: no second probe request.
    let out = h.event(kept_for(3));
    assert!(
        !out.actions
            .iter()
            .any(|a| matches!(a, Action::ProbeNode { .. }))
    );
}
