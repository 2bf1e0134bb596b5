//! Claims that arrive out of step with their connections: a connection granted an epoch older
//! than one already applied here, a newer claim on the node while an older claim's import
//! runs, a node claimed away while its own import runs (chained takeover), and a claim whose
//! CONNECT was refused before it committed (adopted without a connection).

use super::cluster::pubacks;
use super::stranded::{claim, node};
use super::*;
use crate::cluster::{ClusterEvent, SessionExport};
use crate::ids::{Epoch, NodeId};
use crate::store::CopyRef;

fn import_begin() -> Event {
    Event::ImportBegin {
        client: client("x"),
    }
}

fn import_done() -> Event {
    Event::ImportDone {
        client: client("x"),
    }
}

/// Node 1 holds `x` offline (subscribed to `t`) with m1 and m2 queued.
fn holder() -> Harness {
    let mut a = node(1);
    let conn = a.connect_ok(v3("x", false));
    a.subscribe(conn, subscribe(1, "t", QoS::AtLeastOnce));
    a.lose(conn);
    let publisher = a.connect_ok(v3("pub", true));
    a.publish(publisher, publish("t", b"m1", QoS::AtLeastOnce, 1));
    a.publish(publisher, publish("t", b"m2", QoS::AtLeastOnce, 2));
    a
}

/// The state and queue of `x` on `from`, as a takeover at `epoch` pulls them (also used by
/// `fences.rs`).
pub(super) fn pull(
    from: &mut Harness,
    epoch: u64,
) -> (SessionExport, Vec<crate::message::Delivery>) {
    let mut export = from
        .broker
        .export_session(&client("x"), Epoch(epoch))
        .unwrap()
        .expect("the copy is exported to this claim");
    export.record.epoch = Epoch(epoch);
    let (page, _) = from.broker.export_queue(&client("x"), None, 100).unwrap();
    (export, page)
}

/// A whole takeover pull: `into` imports `x` from `from` for the claim at `epoch`.
fn pull_whole(into: &mut Harness, from: &mut Harness, epoch: u64) -> Out {
    let (export, page) = pull(from, epoch);
    import(into, export, page);
    into.event(import_done())
}

/// `x` runs at epoch `newest` on `h`: a connection granted `stale` is refused (it must not run a
/// session the registry records at a newer epoch), one granted `newest` finds the session.
pub(super) fn assert_runs_at(h: &mut Harness, stale: u64, newest: u64) -> (ConnId, Out) {
    let (old, out) = h.connect_as(v3("x", false), stale);
    assert_eq!(
        out.connack(old).reason,
        berth_codec::ConnectReasonCode::ServerUnavailable,
        "the grant of epoch {stale} is older than the session's claim ({newest})"
    );
    let (conn, out) = h.connect_as(v3("x", false), newest);
    assert!(out.connack(conn).session_present);
    (conn, out)
}

pub(super) fn import(
    into: &mut Harness,
    export: SessionExport,
    page: Vec<crate::message::Delivery>,
) {
    into.event(Event::ImportState {
        client: client("x"),
        export: Box::new(export),
    });
    into.event(Event::ImportQueue {
        client: client("x"),
        page,
    });
}

#[test]
fn a_connection_granted_an_epoch_older_than_an_applied_claim_is_refused() {
    let mut b = node(2);
    // Node 3 claimed x at epoch 5; a connection here still holds the grant of epoch 4.
    b.event(claim(3, 5));
    let (conn, out) = b.connect_as(v3("x", false), 4);
    assert_eq!(
        out.connack(conn).reason,
        berth_codec::ConnectReasonCode::ServerUnavailable,
        "a stale grant must not start a connection (it would run a session node 3 owns)"
    );
    assert!(out.closed(conn));
    // The current grant is accepted.
    let (conn, out) = b.connect_as(v3("x", false), 6);
    assert!(!out.connack(conn).reason.is_error());
}

#[test]
fn an_older_connection_on_the_same_node_does_not_take_the_session_from_a_newer_one() {
    let mut a = node(1);
    let newer = a.connect_as(v5("x", false, Some(600)), 7).0;
    let (older, out) = a.connect_as(v5("x", false, Some(600)), 6);
    assert!(out.connack(older).reason.is_error());
    assert!(!out.closed(newer), "the newer connection keeps its session");
}

#[test]
fn a_newer_claim_here_waits_for_the_import_of_an_older_one_and_finds_the_session() {
    let mut a = holder();
    let mut b = node(2);
    // Two claims of node 2 in a row (epochs 2 and 3): the first one's connection pulls the
    // session from node 1; the second one's CONNECT arrives while that import runs.
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    b.event(import_begin());
    a.event(claim(2, 3));
    b.event(claim(2, 3));
    let (newer, out) = b.connect_as(v3("x", false), 3);
    assert!(
        out.to(newer).is_empty(),
        "no CONNACK before the session is in"
    );
    // The pull of the first claim still gets the copy (the newer claim is the same node's).
    let out = pull_whole(&mut b, &mut a, 2);
    assert!(
        out.connack(newer).session_present,
        "the session arrived: Session Present = 1"
    );
    assert_eq!(payloads(&out.publishes(newer)), vec!["m1", "m2"]);
    // The first claim's connection comes last with an older grant: refused.
    let (older, out) = b.connect_as(v3("x", false), 2);
    assert!(out.connack(older).reason.is_error());
}

#[test]
fn a_node_claimed_away_while_importing_hands_the_imported_session_on() {
    let mut a = holder();
    let mut b = node(2);
    let mut c = node(3);
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    b.event(import_begin());
    // Node 3 claims x before node 2's import is done.
    a.event(claim(3, 3));
    b.event(claim(3, 3));
    c.event(claim(3, 3));
    assert!(
        b.broker.import_pending(&client("x")),
        "node 2's export to node 3 must wait for its import"
    );
    pull_whole(&mut b, &mut a, 2);
    assert!(!b.broker.import_pending(&client("x")));
    // Node 3 pulls from node 2 and gets the whole backlog.
    c.event(import_begin());
    let (export, page) = pull(&mut b, 3);
    import(&mut c, export, page);
    c.event(import_done());
    let (conn, out) = c.connect_as(v3("x", false), 3);
    assert!(out.connack(conn).session_present);
    assert_eq!(payloads(&out.publishes(conn)), vec!["m1", "m2"]);
}

#[test]
fn a_claim_whose_connect_was_refused_is_taken_over_without_a_connection() {
    let mut a = holder();
    let mut b = node(2);
    b.event(claim(1, 1));
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    // No connection comes for the claim (its CONNECT was refused before it committed).
    let out = b.tick_after(11);
    let adopt = out.actions.iter().find_map(|a| match a {
        Action::Adopt { from, epoch, .. } => Some((*from, *epoch)),
        _ => None,
    });
    assert_eq!(
        adopt,
        Some((Some(NodeId(1)), Epoch(2))),
        "node 2 pulls from node 1 alone"
    );
    b.event(import_begin());
    let out = pull_whole(&mut b, &mut a, 2);
    let detached = out.actions.iter().any(|a| {
        matches!(
            a,
            Action::Replicate(crate::cluster::Replicate::Detach {
                epoch: Epoch(2),
                ..
            })
        )
    });
    assert!(detached, "the registry hears the session is offline here");
    // The client comes back later: its session and backlog are here.
    let (conn, out) = b.connect_as(v3("x", false), 3);
    assert!(out.connack(conn).session_present);
    assert_eq!(payloads(&out.publishes(conn)), vec!["m1", "m2"]);
}

/// The registry's event for node 3's claim names the copy it took the session from (node 1's
/// at epoch 1). Node 2's claim overtakes it, and no connection comes for it: if node 3 cannot
/// be reached, the state the pull falls back to lacks node 3's copy and, before it, node 1's
/// (node 3 may have crashed before its own pull landed: simulator `--scenario lost-release`,
/// seed 6148, as a connection's takeover meets it).
#[test]
fn an_adopted_claims_fallback_lacks_the_copy_the_previous_owner_took_the_session_from() {
    let mut b = node(2);
    let copy_of_1 = CopyRef {
        node: NodeId(1),
        epoch: Epoch(1),
    };
    b.event(claim(1, 1));
    b.event(super::stranded::claim_from(3, 2, Some(copy_of_1)));
    b.event(claim(2, 3));
    let out = b.tick_after(11);
    let doubt = out.actions.iter().find_map(|a| match a {
        Action::Adopt { from, fallback, .. } => Some((*from, fallback.record.qos2_doubt.clone())),
        _ => None,
    });
    let (from, doubt) = doubt.expect("node 2 pulls alone");
    assert_eq!(from, Some(NodeId(3)));
    assert_eq!(
        (doubt.lacking, doubt.earlier),
        (
            Some(CopyRef {
                node: NodeId(3),
                epoch: Epoch(2)
            }),
            vec![copy_of_1]
        )
    );
}

#[test]
fn routes_left_from_an_empty_import_do_not_take_the_local_sessions_own_with_them() {
    let mut b = node(2);
    b.event(claim(1, 1));
    b.event(claim(2, 2));
    // The old owner had nothing (the session had ended there): the client starts afresh here.
    b.event(import_begin());
    b.event(import_done());
    let conn = b.connect_as(v3("x", false), 2).0;
    b.subscribe(conn, subscribe(1, "t", QoS::AtLeastOnce));
    b.lose(conn);
    // It comes back to this node: a claim of this node again.
    b.event(claim(2, 3));
    let (conn, out) = b.connect_as(v3("x", false), 3);
    assert!(out.connack(conn).session_present);
    let publisher = b.connect_ok(v3("pub", true));
    let out = b.publish(publisher, publish("t", b"m", QoS::AtLeastOnce, 1));
    assert_eq!(
        payloads(&out.publishes(conn)),
        vec!["m"],
        "a local publish still matches the local session's subscription"
    );
}

#[test]
fn state_pulled_for_a_claim_overtaken_before_its_pull_began_is_kept_for_the_new_owner() {
    let mut a = holder();
    let mut b = node(2);
    b.event(claim(1, 1));
    // Node 2's claim (epoch 2) and node 3's (epoch 3) reach node 2 together, before node 2's
    // connection starts pulling; the pull still runs, and node 1 releases its copy.
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    b.event(claim(3, 3));
    b.event(import_begin());
    pull_whole(&mut b, &mut a, 2);
    assert_eq!(
        b.broker.moving_sessions(),
        vec![(client("x"), NodeId(3), Epoch(3))],
        "what node 2 got is a copy for node 3, not dropped"
    );
    let (export, page) = pull(&mut b, 3);
    assert_eq!(export.queued, 2);
    assert_eq!(page.len(), 2);
}

#[test]
fn an_import_is_done_when_the_last_of_two_overlapping_pulls_is() {
    let mut b = node(2);
    b.event(claim(1, 1));
    b.event(claim(2, 2));
    b.event(import_begin());
    b.event(claim(2, 3));
    b.event(import_begin());
    b.event(import_done());
    assert!(
        b.broker.import_pending(&client("x")),
        "the other pull still brings the session: an export must wait for it"
    );
    b.event(import_done());
    assert!(!b.broker.import_pending(&client("x")));
}

#[test]
fn a_claim_of_this_node_learnt_from_a_snapshot_waits_for_its_import() {
    let mut b = node(2);
    b.event(claim(1, 1));
    // Node 2 was behind: its own claim (epoch 2) reaches it in a snapshot, not as an entry.
    b.event(super::stranded::snapshot(2, 2, 1));
    assert!(
        b.broker.import_pending(&client("x")),
        "the session's state is on node 1: a connection here must wait for it"
    );
    let (conn, out) = b.connect_as(v3("x", false), 2);
    assert!(
        out.to(conn).is_empty(),
        "no CONNACK (it would say Session Present 0) before the import"
    );
}

/// Simulator seed 2040: three CONNECTs of `x` queued on a paused node claim it at epochs 2, 3
/// and 4; the node, behind, learns the newest from a snapshot while the first claim's import
/// runs. The connection granted 3 is stale once the import is done: it must not start (it
/// would run under 3 while the registry records 4, and nobody would close it).
#[test]
fn a_newer_claim_of_this_node_learnt_from_a_snapshot_makes_older_grants_stale() {
    let mut a = holder();
    let mut b = node(2);
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    b.event(import_begin());
    b.event(super::stranded::snapshot(2, 4, 1));
    pull_whole(&mut b, &mut a, 2);
    assert_runs_at(&mut b, 3, 4);
}

#[test]
fn a_publishers_export_waits_for_its_qos2_publish_still_out() {
    let mut h = node(1);
    h.event(Event::Cluster(ClusterEvent::Subscribed {
        client: client("far"),
        owner: NodeId(2),
        subscriptions: vec![(filter("t"), super::stranded::record())],
    }));
    let publisher = h.connect_ok(v5("p", false, Some(600)));
    let out = h.publish(publisher, publish("t", b"x", QoS::ExactlyOnce, 9));
    let token = out
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Forward { token, .. } => *token,
            _ => None,
        })
        .expect("forwarded with a token");
    assert!(
        h.broker.export_waits(&client("p")),
        "whether a re-sent PUBLISH 9 is a duplicate is not known yet"
    );
    h.event(Event::ForwardDone {
        token,
        delivered: true,
        node: NodeId(2),
    });
    assert!(!h.broker.export_waits(&client("p")));
}

#[test]
fn a_snapshot_during_an_import_keeps_the_routes_that_wait_for_it() {
    let mut b = node(2);
    b.event(claim(1, 1));
    b.event(claim(2, 2));
    b.event(import_begin());
    // A snapshot arrives while the pull runs (this node fell behind meanwhile).
    b.event(super::stranded::snapshot(2, 2, 1));
    let publisher = b.connect_ok(v3("pub", true));
    let out = b.publish(publisher, publish("t", b"m", QoS::AtLeastOnce, 1));
    assert_eq!(
        pubacks(&out, publisher),
        vec![(1, berth_codec::PubAckReasonCode::Success)],
        "kept for after the backlog: Success, not 0x10 (it matched the session's route)"
    );
    assert_eq!(b.broker.stats().handoff_messages, 1);
}

/// Simulator seed 15710: node 2's import for its claim at epoch 2 still runs when node 1 claims
/// the session (epoch 3, an entry: the routes go to node 1); node 2, behind, learns its own
/// newer claim (epoch 4) from a snapshot. What matches the session is now node 2's to keep for
/// after the backlog: sent to node 1, it was answered "not mine" for seconds.
#[test]
fn a_snapshot_with_this_nodes_claim_after_another_nodes_routes_back_here() {
    let mut b = node(2);
    b.event(claim(1, 1));
    b.event(claim(2, 2));
    b.event(import_begin());
    b.event(claim(1, 3));
    b.event(super::stranded::snapshot(2, 4, 1));
    let publisher = b.connect_ok(v3("pub", true));
    let out = b.publish(publisher, publish("t", b"m", QoS::AtLeastOnce, 1));
    assert!(
        !out.actions
            .iter()
            .any(|a| matches!(a, Action::Forward { .. })),
        "nothing goes to node 1: the session is node 2's"
    );
    assert_eq!(
        pubacks(&out, publisher),
        vec![(1, berth_codec::PubAckReasonCode::Success)],
        "kept for after the backlog"
    );
    assert_eq!(b.broker.stats().handoff_messages, 1);
    // A message another node forwards here is kept too, not answered "not mine".
    let out = b.event(Event::Forwarded {
        token: 7,
        messages: vec![crate::cluster::Forwarded {
            message: super::cluster::message("t", b"f"),
            clients: vec![client("x")],
            publisher: None,
            retried: false,
        }],
    });
    assert!(out.actions.iter().any(|a| matches!(
        a,
        Action::ForwardAccepted { token: 7, not_owned } if not_owned.is_empty()
    )));
}

#[test]
fn a_replayed_claim_overtaken_before_it_pulled_hands_the_session_on_when_the_new_owner_asks() {
    // Node 2 claimed x from node 1 (epoch 2) and crashed before pulling; node 3 claims x
    // (epoch 3) while node 2 restarts, and pulls from node 2, as the registry says.
    let mut a = holder();
    a.event(claim(2, 2));
    a.event(claim(3, 3));
    let mut b = node(2);
    b.event(claim(1, 1));
    b.event(claim(2, 2));
    b.event(claim(3, 3));
    let out = b.tick_after(11);
    assert!(
        !out.actions
            .iter()
            .any(|a| matches!(a, Action::Adopt { .. })),
        "nothing is pulled for a replayed claim unless the claim that overtook it asks"
    );
    assert!(!b.broker.export_waits(&client("x")));

    let out = b.event(Event::ExportWanted {
        client: client("x"),
        epoch: Epoch(3),
    });
    let adopt = out.actions.iter().find_map(|a| match a {
        Action::Adopt { from, epoch, .. } => Some((*from, *epoch)),
        _ => None,
    });
    assert_eq!(
        adopt,
        Some((Some(NodeId(1)), Epoch(2))),
        "node 2 pulls from node 1 (where the session is) for node 3"
    );
    assert!(
        b.broker.export_waits(&client("x")),
        "node 3's pull waits for the session to arrive here (else: Session Present 0)"
    );
    b.event(import_begin());
    pull_whole(&mut b, &mut a, 2);
    assert!(!b.broker.export_waits(&client("x")));
    assert_eq!(
        b.broker.moving_sessions(),
        vec![(client("x"), NodeId(3), Epoch(3))]
    );
    let (export, page) = pull(&mut b, 3);
    assert_eq!(export.subscriptions.len(), 1);
    let queued: Vec<&[u8]> = page.iter().map(|d| &d.message.payload[..]).collect();
    assert_eq!(queued, vec![&b"m1"[..], &b"m2"[..]]);
}

#[test]
fn a_dormant_claim_is_void_once_this_node_claims_again_or_the_session_ends() {
    let mut b = node(2);
    b.event(claim(1, 1));
    b.event(claim(2, 2));
    b.event(claim(3, 3));
    b.event(Event::Cluster(ClusterEvent::Dropped {
        client: client("x"),
        epoch: Epoch(3),
    }));
    let out = b.event(Event::ExportWanted {
        client: client("x"),
        epoch: Epoch(3),
    });
    assert!(
        !out.actions
            .iter()
            .any(|a| matches!(a, Action::Adopt { .. })),
        "the session ended: nothing to pull"
    );
    assert!(!b.broker.export_waits(&client("x")));
}

#[test]
fn an_import_for_an_older_claim_lands_at_the_newest_claim_of_this_node() {
    // Two CONNECTs of x on node 2 claimed epochs 2 and 3; the first one's takeover imports.
    let mut a = holder();
    a.event(claim(2, 2));
    a.event(claim(2, 3));
    let mut b = node(2);
    b.event(claim(1, 1));
    b.event(claim(2, 2));
    b.event(claim(2, 3));
    b.event(import_begin());
    pull_whole(&mut b, &mut a, 2);
    let (conn, out) = assert_runs_at(&mut b, 2, 3);
    assert_eq!(payloads(&out.publishes(conn)), vec!["m1", "m2"]);
}

#[test]
fn a_claim_of_this_node_in_the_snapshot_it_restarts_from_pulls_from_the_owner_before() {
    // Node 2 claimed x from node 1 (epoch 2) and crashed before pulling; it restarts from a
    // snapshot holding that claim, and the client comes back to node 2 (epoch 3).
    let mut a = holder();
    a.event(claim(2, 2));
    a.event(claim(2, 3));
    let mut b = node(2);
    b.event(Event::Cluster(ClusterEvent::Reset {
        sessions: vec![crate::cluster::RemoteSession {
            client: client("x"),
            owner: NodeId(2),
            epoch: Epoch(2),
            started: Epoch(1),
            moved_from: Some(crate::store::CopyRef {
                node: NodeId(1),
                epoch: Epoch(1),
            }),
            subscriptions: vec![(filter("t"), super::stranded::record())],
        }],
    }));
    assert!(
        b.broker.import_pending(&client("x")),
        "the session's state is on node 1: a connection here must wait for it"
    );
    b.event(claim(2, 3));
    let (conn, out) = b.connect_as(v3("x", false), 3);
    assert!(out.to(conn).is_empty(), "no CONNACK before the import");
    let adopt = out.actions.iter().find_map(|a| match a {
        Action::Adopt { from, .. } => Some(*from),
        _ => None,
    });
    assert_eq!(adopt, Some(Some(NodeId(1))), "the pull starts, from node 1");
    b.event(import_begin());
    let out = pull_whole(&mut b, &mut a, 2);
    assert!(out.connack(conn).session_present);
    assert_eq!(payloads(&out.publishes(conn)), vec!["m1", "m2"]);
}

#[test]
fn a_second_pull_for_the_same_claim_does_not_take_the_session_back_to_an_older_epoch() {
    // Node 2 claimed x at epochs 2, 3 and 4; two pulls ran for epoch 2 (an adopted one beside
    // its connection's). The session lands at epoch 4 and stays there.
    let mut a = holder();
    a.event(claim(2, 2));
    a.event(claim(2, 4));
    let mut b = node(2);
    b.event(claim(1, 1));
    b.event(claim(2, 2));
    b.event(claim(2, 3));
    b.event(claim(2, 4));
    b.event(import_begin());
    b.event(import_begin());
    for _ in 0..2 {
        pull_whole(&mut b, &mut a, 2);
    }
    assert_runs_at(&mut b, 2, 4);
}

#[test]
fn a_qos2_message_in_flight_goes_out_once_when_two_pulls_bring_it() {
    // Simulator seed 3272: node 2 still held an older copy of x (its release lost) when it
    // claimed x at epochs 3 and 4, and two pulls ran for epoch 3 (an adopted one beside its
    // connection's). Both states arrived before either import was done: the first merged with
    // the older copy, the second went behind it as a late window, and m1 — sent to x at QoS 2
    // on node 1, PUBREC not yet — went out under its own id and again under a new one: the
    // device, which holds only the first id, delivered it twice.
    let mut b = node(2);
    b.event(claim(2, 1));
    let (x, _) = b.connect_as(v3("x", false), 1);
    b.subscribe(x, subscribe(1, "t", QoS::ExactlyOnce));
    b.lose(x);
    let mut a = node(1);
    a.event(claim(2, 1));
    a.event(claim(1, 2));
    b.event(claim(1, 2));
    a.event(import_begin());
    pull_whole(&mut a, &mut b, 2);
    let (x, out) = a.connect_as(v3("x", false), 2);
    assert!(out.connack(x).session_present);
    let publisher = a.connect_ok(v3("pub", true));
    let out = a.publish(publisher, publish("t", b"m1", QoS::ExactlyOnce, 1));
    assert_eq!(payloads(&out.publishes(x)), vec!["m1"]);
    a.lose(x);
    for epoch in [3, 4] {
        a.event(claim(2, epoch));
        b.event(claim(2, epoch));
    }
    b.event(import_begin());
    b.event(import_begin());
    let first = pull(&mut a, 3);
    let second = pull(&mut a, 3);
    assert_eq!(first.0.inflight.len(), 1, "m1 is in flight on node 1");
    for (export, _) in [&first, &second] {
        b.event(Event::ImportState {
            client: client("x"),
            export: Box::new(export.clone()),
        });
    }
    for (_, page) in [first, second] {
        b.event(Event::ImportQueue {
            client: client("x"),
            page,
        });
    }
    b.event(import_done());
    b.event(import_done());
    let (conn, out) = b.connect_as(v3("x", false), 4);
    assert!(out.connack(conn).session_present);
    assert_eq!(payloads(&out.publishes(conn)), vec!["m1"]);
}
