//! A backlog stranded on a node that could not be reached when its session moved: the copy
//! stays there (moving), is appended later to the session running on its new owner, and goes
//! when that session ends; a snapshot showing a newer claim hands a copy over like a log entry.

use super::*;
use crate::cluster::{ClusterEvent, Forwarded, RemoteSession, SessionExport};
use crate::ids::{Epoch, NodeId};
use crate::store::{CopyRef, SubscriptionRecord};

/// A broker that is node `id` of a cluster.
pub(super) fn node(id: u64) -> Harness {
    let mut h = Harness::new();
    h.broker.join_cluster(NodeId(id));
    h
}

/// A QoS 1 subscription.
pub(super) fn record() -> SubscriptionRecord {
    SubscriptionRecord {
        options: SubscriptionOptions::new(QoS::AtLeastOnce),
        subscription_id: None,
    }
}

/// Node `owner` claims `x` (subscribed to `t`) at `epoch`, keeping the session.
pub(super) fn claim(owner: u64, epoch: u64) -> Event {
    claim_from(owner, epoch, None)
}

/// [`claim`], naming the copy the owner took the session over from (the registry's
/// `moved_from`).
pub(super) fn claim_from(owner: u64, epoch: u64, moved_from: Option<CopyRef>) -> Event {
    Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(owner),
        epoch: Epoch(epoch),
        kept: true,
        moved_from,
        subscriptions: vec![(filter("t"), record())],
    })
}

/// A snapshot of the registry holding only `x` (subscribed to `t`), owned by node `owner` at
/// `epoch`, started at `started`.
pub(super) fn snapshot(owner: u64, epoch: u64, started: u64) -> Event {
    Event::Cluster(ClusterEvent::Reset {
        sessions: vec![RemoteSession {
            client: client("x"),
            owner: NodeId(owner),
            epoch: Epoch(epoch),
            started: Epoch(started),
            moved_from: None,
            subscriptions: vec![(filter("t"), record())],
        }],
    })
}

/// Node 1 holds session `x` (subscribed to `t`) offline with m1 in flight and m2, m3 queued.
fn holder_with_backlog() -> Harness {
    let mut a = node(1);
    let conn = a.connect_ok(v3("x", false));
    a.subscribe(conn, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = a.connect_ok(v3("pub", true));
    a.publish(publisher, publish("t", b"m1", QoS::AtLeastOnce, 1));
    a.lose(conn);
    a.publish(publisher, publish("t", b"m2", QoS::AtLeastOnce, 2));
    a.publish(publisher, publish("t", b"m3", QoS::AtLeastOnce, 3));
    a
}

/// Node 2 takes `x` over at epoch 2 without reaching node 1: only the registry's state.
fn owner_without_backlog(a: &mut Harness) -> Harness {
    let mut b = node(2);
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    let mut fallback: SessionExport = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    fallback.record.epoch = Epoch(2);
    fallback.inflight.clear();
    fallback.queued = 0;
    b.event(Event::ImportState {
        client: client("x"),
        export: Box::new(fallback),
    });
    b.event(Event::ImportDone {
        client: client("x"),
    });
    b
}

fn forward(b: &mut Harness, token: u64, payload: &'static [u8]) -> Out {
    b.event(Event::Forwarded {
        token,
        messages: vec![Forwarded {
            message: super::cluster::message("t", payload),
            clients: vec![client("x")],
            publisher: None,
            retried: false,
        }],
    })
}

#[test]
fn a_stranded_backlog_is_appended_to_the_session_on_its_new_owner_and_the_copy_released() {
    let mut a = holder_with_backlog();
    let mut b = owner_without_backlog(&mut a);
    let (conn, out) = b.connect_as(v3("x", false), 2);
    assert!(out.connack(conn).session_present);
    let now = forward(&mut b, 1, b"m4");
    assert_eq!(payloads(&now.publishes(conn)), vec!["m4"]);

    // The holder, back, still has its copy and knows whose it is.
    assert_eq!(
        a.broker.moving_sessions(),
        vec![(client("x"), NodeId(2), Epoch(2))]
    );
    assert!(b.broker.accepts_late_backlog(&client("x"), Epoch(2)));
    assert!(!b.broker.accepts_late_backlog(&client("x"), Epoch(3)));

    // The owner pulls it: the unacknowledged message first, then the queue, after m4.
    let export = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    let (page, next) = a.broker.export_queue(&client("x"), None, 10).unwrap();
    assert_eq!(next, None);
    let late = b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        holder: crate::ids::NodeId(1),
        export: late_copy(export.inflight, Vec::new(), Vec::new()),
        page,
    });
    let sent = late.publishes(conn);
    assert_eq!(payloads(&sent), vec!["m1", "m2", "m3"]);
    // m1 went out on node 1 under id 1 (epoch 1's quarter); node 2's copy (epoch 2) gives
    // out ids from another quarter (m4 holds 16,385), so m1 keeps its id: the client may
    // still hold it.
    assert!(sent[0].dup);
    assert_eq!(sent[0].packet_id, Some(pid(1)));
    // Queued in the copy: it may have been pulled and delivered before (its release lost).
    assert!(sent[1].dup && sent[2].dup, "DUP = 1 [MQTT-3.3.1-1]");

    a.event(Event::Release {
        client: client("x"),
        epoch: Epoch(2),
    });
    assert!(a.stored_session("x").is_none(), "the copy is deleted");
    assert!(a.broker.moving_sessions().is_empty());
}

#[test]
fn a_late_backlog_for_another_epoch_is_not_stored() {
    let mut a = holder_with_backlog();
    let mut b = owner_without_backlog(&mut a);
    let export = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(1),
        holder: crate::ids::NodeId(1),
        export: late_copy(Vec::new(), Vec::new(), Vec::new()),
        page: export.unacknowledged(),
    });
    assert!(b.stored_queue("x").is_empty());
    b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        holder: crate::ids::NodeId(1),
        export: late_copy(Vec::new(), Vec::new(), Vec::new()),
        page: export.unacknowledged(),
    });
    assert_eq!(b.stored_queue("x"), vec!["m1"]);
}

#[test]
fn the_owner_does_not_take_a_late_backlog_while_the_session_is_arriving() {
    let mut a = holder_with_backlog();
    let mut b = node(2);
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    let mut export = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    export.record.epoch = Epoch(2);
    b.event(Event::ImportState {
        client: client("x"),
        export: Box::new(export),
    });
    assert!(
        !b.broker.accepts_late_backlog(&client("x"), Epoch(2)),
        "the session exists but its import has not ended"
    );
    b.event(Event::ImportDone {
        client: client("x"),
    });
    assert!(b.broker.accepts_late_backlog(&client("x"), Epoch(2)));
}

#[test]
fn a_clean_start_elsewhere_discards_a_copy_that_was_still_moving() {
    let mut a = holder_with_backlog();
    a.event(claim(2, 2));
    a.event(Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(3),
        epoch: Epoch(3),
        kept: false,
        moved_from: None,
        subscriptions: vec![],
    }));
    assert!(
        a.stored_session("x").is_none(),
        "the old session's messages go with it"
    );
    assert!(a.broker.moving_sessions().is_empty());
}

#[test]
fn a_snapshot_showing_a_fresh_session_since_the_copy_discards_it() {
    let mut a = holder_with_backlog();
    a.event(Event::Cluster(ClusterEvent::Reset {
        sessions: vec![RemoteSession {
            client: client("x"),
            owner: NodeId(2),
            epoch: Epoch(3),
            started: Epoch(3),
            moved_from: None,
            subscriptions: vec![],
        }],
    }));
    assert!(a.stored_session("x").is_none());
    assert!(a.broker.moving_sessions().is_empty());
}

#[test]
fn a_release_at_or_before_the_copys_own_epoch_leaves_it() {
    let mut a = holder_with_backlog();
    a.event(claim(2, 2));
    a.event(Event::Release {
        client: client("x"),
        epoch: Epoch(1),
    });
    assert!(
        a.stored_session("x").is_some(),
        "epoch 1 is the copy's own: no claim of it was pulled"
    );
    assert!(
        a.broker
            .export_session(&client("x"), Epoch(1))
            .unwrap()
            .is_none(),
        "nor is it exported to it"
    );
}

#[test]
fn a_release_for_an_overtaken_claim_deletes_the_copy_its_puller_stored() {
    // Node 2's claim (epoch 2) pulled the copy; node 3's claim (epoch 3) came meanwhile. Node
    // 2 stored the copy and hands it on to node 3 (a chained takeover), so its release is good.
    let mut a = holder_with_backlog();
    a.event(claim(2, 2));
    a.event(claim(3, 3));
    assert!(
        a.broker
            .export_session(&client("x"), Epoch(2))
            .unwrap()
            .is_some()
    );
    a.event(Event::Release {
        client: client("x"),
        epoch: Epoch(2),
    });
    assert!(a.stored_session("x").is_none());
    assert!(a.broker.moving_sessions().is_empty());
}

/// Node 2 pulled `x` from node 1 at `epoch` is answered: the exported state and queue are
/// imported on node 1 and the import ends.
pub(super) fn pull_back(a: &mut Harness, b: &mut Harness, epoch: u64) -> Out {
    let mut export = b
        .broker
        .export_session(&client("x"), Epoch(epoch))
        .unwrap()
        .unwrap();
    let (page, _) = b.broker.export_queue(&client("x"), None, 10).unwrap();
    export.record.epoch = Epoch(epoch);
    a.event(Event::ImportState {
        client: client("x"),
        export: Box::new(export),
    });
    a.event(Event::ImportQueue {
        client: client("x"),
        page,
    });
    // As the node does: settled and stored before the old copy's release.
    a.event(Event::ImportComplete {
        client: client("x"),
        epoch: Epoch(epoch),
    });
    a.event(Event::ImportDone {
        client: client("x"),
    })
}

/// The client came back to the node holding the stranded copy before the copy was pulled:
/// that node takes the session over from the owner in between and merges both.
#[test]
fn taking_a_session_back_to_a_node_holding_an_older_copy_merges_both() {
    let mut a = holder_with_backlog();
    let mut b = owner_without_backlog(&mut a);
    let (conn, _) = b.connect_as(v3("x", false), 2);
    b.subscribe(conn, subscribe(2, "u", QoS::AtLeastOnce));
    let m4_id = forward(&mut b, 1, b"m4").publish(conn).packet_id; // in flight on node 2
    b.lose(conn);
    let _ = forward(&mut b, 2, b"m5"); // queued on node 2

    // Back on node 1, at epoch 3.
    a.event(claim(1, 3));
    b.event(claim(1, 3));
    a.event(Event::ImportBegin {
        client: client("x"),
    });
    pull_back(&mut a, &mut b, 3);
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert!(out.connack(conn).session_present);
    let sent = out.publishes(conn);
    assert_eq!(
        payloads(&sent),
        vec!["m4", "m1", "m2", "m3", "m5"],
        "the newer owner's window, the older copy's messages (late), the newer owner's queue"
    );
    // The client holds m4 under the id node 2 sent it with; node 1 had sent m1 under the same
    // id on its older connection. m4 keeps it, m1 gets another: a QoS 2 message re-sent
    // under a new id would reach the client's application twice.
    assert_eq!(sent[0].packet_id, m4_id);
    assert_ne!(sent[1].packet_id, m4_id);
    let subs: Vec<String> = a
        .stored_session("x")
        .unwrap()
        .subscriptions
        .iter()
        .map(|(f, _)| f.as_str().to_string())
        .collect();
    assert!(
        subs.contains(&"u".to_string()) && subs.contains(&"t".to_string()),
        "the newer owner's subscriptions: {subs:?}"
    );
}

#[test]
fn a_copy_is_deleted_when_its_session_ends_on_the_new_owner() {
    let mut a = holder_with_backlog();
    a.event(claim(2, 2));
    assert_eq!(a.broker.moving_sessions().len(), 1);
    // An older epoch's end is not this copy's.
    a.event(Event::Cluster(ClusterEvent::Dropped {
        client: client("x"),
        epoch: Epoch(1),
    }));
    assert!(a.stored_session("x").is_some());
    a.event(Event::Cluster(ClusterEvent::Dropped {
        client: client("x"),
        epoch: Epoch(2),
    }));
    assert!(a.stored_session("x").is_none());
    assert!(a.broker.moving_sessions().is_empty());
}

#[test]
fn a_snapshot_with_a_newer_claim_hands_the_local_copy_over() {
    let mut a = holder_with_backlog();
    a.event(snapshot(2, 2, 1));
    assert_eq!(
        a.broker.moving_sessions(),
        vec![(client("x"), NodeId(2), Epoch(2))]
    );
    let export = a.broker.export_session(&client("x"), Epoch(2)).unwrap();
    assert!(export.is_some_and(|e| e.queued == 2 && e.inflight.len() == 1));
}

#[test]
fn a_snapshot_without_the_session_deletes_a_copy_that_was_moving() {
    let mut a = holder_with_backlog();
    a.event(claim(2, 2));
    a.event(Event::Cluster(ClusterEvent::Reset { sessions: vec![] }));
    assert!(a.stored_session("x").is_none());
    // A session the registry never knew (from before the cluster) stays.
    let mut c = holder_with_backlog();
    c.event(Event::Cluster(ClusterEvent::Reset { sessions: vec![] }));
    assert!(c.stored_session("x").is_some());
}

/// Node 1 holds an older copy of `x` (m1 in flight, m2 and m3 queued); node 2 owns `x` at
/// epoch 2 with m4 sent and unacknowledged, and its client gone.
fn older_copy_and_owner_with_m4_in_flight() -> (Harness, Harness) {
    let mut a = holder_with_backlog();
    let mut b = owner_without_backlog(&mut a);
    let (conn, _) = b.connect_as(v3("x", false), 2);
    let _ = forward(&mut b, 1, b"m4");
    b.lose(conn);
    (a, b)
}

/// (payload, DUP) of every PUBLISH `out` sends to `conn`.
fn dup_flags(out: &Out, conn: ConnId) -> Vec<(String, bool)> {
    out.publishes(conn)
        .iter()
        .map(|p| (String::from_utf8_lossy(&p.payload).into_owned(), p.dup))
        .collect()
}

/// Issue 11, the stale-copy loss: node 1 holds an older copy of `x` and claims it back while the
/// current owner (node 2) does not answer yet. A QoS 1 message published *through node 1* in
/// that wait must neither be answered 0x10 (No matching subscribers) nor be lost: it is kept
/// (durably) and acknowledged, and delivered after the backlog.
#[test]
fn a_publish_through_the_node_taking_back_an_older_copy_comes_after_the_backlog() {
    let (mut a, mut b) = older_copy_and_owner_with_m4_in_flight();

    a.event(claim(1, 3));
    b.event(claim(1, 3));
    a.event(Event::ImportBegin {
        client: client("x"),
    });
    let publisher = a.connect_ok(v5("pub5", true, None));
    let out = a.publish(publisher, publish("t", b"m6", QoS::AtLeastOnce, 9));
    match out.only(publisher) {
        Packet::PubAck(ack) => assert_eq!(
            ack.reason,
            berth_codec::PubAckReasonCode::Success,
            "kept for the session: not 0x10"
        ),
        other => panic!("expected a PUBACK, got {other:?}"),
    }

    pull_back(&mut a, &mut b, 3);
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert!(out.connack(conn).session_present);
    assert_eq!(
        payloads(&out.publishes(conn)),
        vec!["m4", "m1", "m2", "m3", "m6"],
        "the newer owner's window, the older copy (late), then what waited"
    );
    assert_eq!(
        dup_flags(&out, conn),
        vec![
            ("m4".to_string(), true),
            ("m1".to_string(), true),
            // The older copy's queue: node 2 may have pulled this copy before (a release lost
            // in a crash here) and delivered it, so each "might be a re-delivery".
            ("m2".to_string(), true),
            ("m3".to_string(), true),
            ("m6".to_string(), false),
        ],
        "sent before and unacknowledged (m1 here, m4 on node 2), or queued in the older copy: DUP = 1 [MQTT-3.3.1-1]"
    );
}

/// The same wait, but the current owner never answers: the session goes on with the local copy
/// and the registry's subscriptions, and the message that waited is delivered.
#[test]
fn a_publish_through_the_node_taking_back_an_older_copy_survives_an_unreachable_owner() {
    // Node 2 (holding m4) never answers: m4 stays there, stranded, for later.
    let (mut a, _b) = older_copy_and_owner_with_m4_in_flight();
    a.event(claim(1, 3));
    a.event(Event::ImportBegin {
        client: client("x"),
    });
    let publisher = a.connect_ok(v5("pub5", true, None));
    let out = a.publish(publisher, publish("t", b"m6", QoS::AtLeastOnce, 9));
    assert!(
        matches!(out.only(publisher), Packet::PubAck(ack) if ack.reason == berth_codec::PubAckReasonCode::Success),
        "kept here: the publisher does not wait for the unreachable owner"
    );
    let fallback = SessionExport {
        record: crate::store::SessionRecord {
            epoch: Epoch(3),
            protocol: berth_codec::ProtocolVersion::V3_1_1,
            expiry: crate::store::SessionExpiry::Never,
            expires_at: None,
            will: None,
            will_due_at: None,
            qos2_state_elsewhere: false,
            incoming_qos2_elsewhere: false,
            qos2_doubt: Default::default(),
            landed: Epoch(3),
        },
        subscriptions: vec![(filter("t"), record())],
        inflight: Vec::new(),
        incoming_qos2: Vec::new(),
        queued: 0,
        seen: Vec::new(),
        qos2_retry: Vec::new(),
        served: None,
    };
    a.event(Event::ImportState {
        client: client("x"),
        export: Box::new(fallback),
    });
    a.event(Event::ImportDone {
        client: client("x"),
    });
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert!(out.connack(conn).session_present);
    assert_eq!(payloads(&out.publishes(conn)), vec!["m1", "m2", "m3", "m6"]);
    // A message published now is delivered at once.
    let out = a.publish(publisher, publish("t", b"m7", QoS::AtLeastOnce, 10));
    assert_eq!(payloads(&out.publishes(conn)), vec!["m7"]);
}

/// A session arriving from another node (or from the registry when its old owner is
/// unreachable) keeps only the subscriptions this node's rules allow: the same decision as a
/// SUBSCRIBE here (issue 11).
#[test]
fn an_imported_session_keeps_only_the_subscriptions_the_rules_allow() {
    let mut h = Harness::with_config(BrokerConfig {
        denied_filters: vec![filter("secret/#")],
        ..BrokerConfig::default()
    });
    h.broker.join_cluster(NodeId(1));
    h.event(claim(1, 2));
    h.event(Event::ImportBegin {
        client: client("x"),
    });
    let export = SessionExport {
        record: crate::store::SessionRecord {
            epoch: Epoch(2),
            protocol: berth_codec::ProtocolVersion::V3_1_1,
            expiry: crate::store::SessionExpiry::Never,
            expires_at: None,
            will: None,
            will_due_at: None,
            qos2_state_elsewhere: false,
            incoming_qos2_elsewhere: false,
            qos2_doubt: Default::default(),
            landed: Epoch(2),
        },
        subscriptions: vec![(filter("t"), record()), (filter("secret/a"), record())],
        inflight: Vec::new(),
        incoming_qos2: Vec::new(),
        queued: 0,
        seen: Vec::new(),
        qos2_retry: Vec::new(),
        served: None,
    };
    h.event(Event::ImportState {
        client: client("x"),
        export: Box::new(export),
    });
    h.event(Event::ImportDone {
        client: client("x"),
    });
    let (conn, _) = h.connect_as(v3("x", false), 2);
    let subs: Vec<String> = h
        .stored_session("x")
        .unwrap()
        .subscriptions
        .iter()
        .map(|(f, _)| f.as_str().to_string())
        .collect();
    assert_eq!(subs, vec!["t"]);
    let publisher = h.connect_ok(v3("pub", true));
    let out = h.publish(publisher, publish("secret/a", b"no", QoS::AtLeastOnce, 1));
    assert!(
        out.publishes(conn).is_empty(),
        "nothing from a denied filter"
    );
}

/// The older copy merged at a takeover back may have been delivered by the newer owner already
/// (it pulled this copy, and the release was lost in a crash here): its messages go out with
/// DUP = 1, also after a restart between the merge and the client's return.
#[test]
fn an_older_copys_messages_keep_dup_through_a_restart_after_the_merge() {
    let (mut a, mut b) = older_copy_and_owner_with_m4_in_flight();
    a.event(claim(1, 3));
    b.event(claim(1, 3));
    a.event(Event::ImportBegin {
        client: client("x"),
    });
    pull_back(&mut a, &mut b, 3);
    a.restart_after(1);
    a.broker.join_cluster(NodeId(1));
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert_eq!(
        dup_flags(&out, conn),
        vec![
            ("m4".to_string(), true),
            ("m1".to_string(), true),
            ("m2".to_string(), true),
            ("m3".to_string(), true),
        ]
    );
}

/// Two claims back on the node holding an older copy (epochs 3 and 4, two CONNECTs there): the
/// merged session lands at epoch 4, so the connection granted epoch 3 is refused instead of
/// running a session the registry records at 4 (a zombie: simulator seed 87).
#[test]
fn a_merge_for_an_older_claim_lands_at_the_newest_claim_of_this_node() {
    let (mut a, mut b) = older_copy_and_owner_with_m4_in_flight();
    for epoch in [3, 4] {
        a.event(claim(1, epoch));
        b.event(claim(1, epoch));
    }
    a.event(Event::ImportBegin {
        client: client("x"),
    });
    pull_back(&mut a, &mut b, 3);
    super::claims::assert_runs_at(&mut a, 3, 4);
}

/// Two nodes pulling a session from each other (each claimed it while the other's pull was
/// cut off) cannot both wait for the other's import: when the export's wait ends with the
/// import still running, the export is refused rather than handing over half a session whose
/// release would then delete what arrives after it (seen as 4 acknowledged messages lost in
/// simulator seed 1113). The copy stays here, whole once its import ends.
#[test]
fn a_session_still_being_imported_is_not_exported() {
    let mut a = holder_with_backlog();
    let mut b = node(2);
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    let export = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    b.event(Event::ImportState {
        client: client("x"),
        export: Box::new(export),
    });
    // Node 3 claims the session while node 2's import still runs.
    b.event(claim(3, 3));
    assert!(matches!(
        b.broker.export_session(&client("x"), Epoch(3)),
        Err(crate::cluster::ExportError::StillArriving)
    ));
    // Once the backlog is in, the session is handed on whole.
    let (page, _) = a.broker.export_queue(&client("x"), None, 10).unwrap();
    b.event(Event::ImportQueue {
        client: client("x"),
        page,
    });
    b.event(Event::ImportDone {
        client: client("x"),
    });
    let export = b
        .broker
        .export_session(&client("x"), Epoch(3))
        .unwrap()
        .unwrap();
    assert_eq!(export.queued + export.inflight.len() as u64, 3);
}

/// A late copy's unacknowledged message goes out under the packet id it had there when the
/// session does not use that id here: the client may still hold it (a QoS 2 message received
/// there, PUBREL not yet come), and recognises the message as the one it has.
#[test]
fn a_late_copys_unacknowledged_message_keeps_its_packet_id_where_it_is_free() {
    let mut a = holder_with_backlog();
    let mut b = owner_without_backlog(&mut a);
    let (conn, _) = b.connect_as(v3("x", false), 2);
    let m4 = forward(&mut b, 1, b"m4").publish(conn);
    assert_eq!(m4.packet_id, Some(pid(16_385)), "epoch 2: another quarter");
    b.puback(conn, pid(16_385));
    let export = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    let (page, _) = a.broker.export_queue(&client("x"), None, 10).unwrap();
    let late = b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        holder: crate::ids::NodeId(1),
        export: late_copy(export.inflight, Vec::new(), Vec::new()),
        page,
    });
    let sent = late.publishes(conn);
    assert_eq!(payloads(&sent), vec!["m1", "m2", "m3"]);
    assert_eq!((sent[0].packet_id, sent[0].dup), (Some(pid(1)), true));
    assert!(sent[1..].iter().all(|p| p.packet_id != Some(pid(1))));
    // Acknowledged under that id, it is gone for good.
    b.puback(conn, pid(1));
    assert_eq!(
        b.stored_inflight("x"),
        sent[1..]
            .iter()
            .map(|p| p.packet_id.unwrap().get())
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_late_message_moved_to_a_new_packet_id_never_takes_one_another_late_message_keeps() {
    let mut a = holder_with_backlog();
    let mut b = owner_without_backlog(&mut a);
    let (conn, _) = b.connect_as(v3("x", false), 2);
    // m4 holds id 1 here; the late copy brings m1 under id 1 (taken) and m2 under id 2 (free).
    forward(&mut b, 1, b"m4");
    let sent = |order: u64, payload: &'static [u8]| crate::store::InflightRecord::Sent {
        order,
        delivery: crate::message::Delivery {
            message: super::cluster::message("t", payload),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
            redelivery: false,
            sent_as: None,
        },
    };
    let late = b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        holder: crate::ids::NodeId(1),
        export: late_copy(
            vec![(pid(1), sent(1, b"m1")), (pid(2), sent(2, b"m2"))],
            Vec::new(),
            Vec::new(),
        ),
        page: Vec::new(),
    });
    let ids: Vec<(String, Option<u16>)> = late
        .publishes(conn)
        .iter()
        .map(|p| {
            (
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.packet_id.map(|id| id.get()),
            )
        })
        .collect();
    assert!(
        ids.contains(&("m2".into(), Some(2))),
        "m2 keeps the id the device may hold: {ids:?}"
    );
    let mut window = b.stored_inflight("x");
    window.sort_unstable();
    window.dedup();
    assert_eq!(
        window.len(),
        3,
        "m4, m2 and m1 each under an id of their own: {ids:?}"
    );
}
