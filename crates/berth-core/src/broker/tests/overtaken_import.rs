//! Two claims of one node for one session, each pulling from where the session was: the newer
//! claim's import lands first (the older pull was held up by a partition). The older copy
//! that arrives after is a late backlog: its messages are delivered after what the session
//! has, counted as recovered, and its record does not replace the newer one's (simulator
//! seed 147: such a message was taken as part of the session, out of order).

use std::sync::Arc;

use super::stranded::{claim, node};
use super::*;
use crate::cluster::SessionExport;
use crate::ids::Epoch;
use crate::message::Delivery;
use crate::store::SessionRecord;

fn export(epoch: u64, protocol: ProtocolVersion, queued: u64) -> Box<SessionExport> {
    Box::new(SessionExport {
        record: SessionRecord {
            epoch: Epoch(epoch),
            protocol,
            expiry: crate::store::SessionExpiry::Never,
            expires_at: None,
            will: None,
            will_due_at: None,
            qos2_state_elsewhere: false,
            incoming_qos2_elsewhere: false,
            qos2_doubt: Default::default(),
            landed: Epoch(epoch),
        },
        subscriptions: vec![(filter("t"), super::stranded::record())],
        inflight: Vec::new(),
        incoming_qos2: Vec::new(),
        queued,
        seen: Vec::new(),
        qos2_retry: Vec::new(),
        served: None,
    })
}

fn page(payload: &'static [u8]) -> Vec<Delivery> {
    vec![Delivery {
        message: Arc::clone(&super::cluster::message("t", payload)),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: Vec::new(),
        redelivery: false,
        sent_as: None,
    }]
}

/// Node 2 claims `x` at epoch 2 (its pull is held up), then again at epoch 3, and epoch 3's
/// state (MQTT 5) lands first, with `queued` in its one page.
fn newer_state_landed_first(queued: Vec<Delivery>) -> Harness {
    let mut b = node(2);
    let x = client("x");
    b.event(claim(2, 2));
    b.event(Event::ImportBegin { client: x.clone() });
    b.event(claim(2, 3));
    b.event(Event::ImportBegin { client: x.clone() });
    b.event(Event::ImportState {
        client: x.clone(),
        export: export(3, ProtocolVersion::V5, 1),
    });
    b.event(Event::ImportQueue {
        client: x.clone(),
        page: queued,
    });
    b.event(Event::ImportDone { client: x });
    b
}

#[test]
fn an_older_copy_imported_after_a_newer_one_arrives_as_a_late_backlog() {
    let mut b = newer_state_landed_first(page(b"m5"));
    let x = client("x");
    let recovered_before = b.broker.stats().stranded_recovered_total;

    // Then the older copy, with m1.
    b.event(Event::ImportState {
        client: x.clone(),
        export: export(2, ProtocolVersion::V3_1_1, 1),
    });
    b.event(Event::ImportQueue {
        client: x.clone(),
        page: page(b"m1"),
    });
    b.event(Event::ImportDone { client: x.clone() });
    assert_eq!(
        b.broker.stats().stranded_recovered_total,
        recovered_before + 1,
        "counted as a recovered backlog"
    );
    let (conn, out) = b.connect_as(v5("x", false, Some(600)), 3);
    assert!(out.connack(conn).session_present);
    assert_eq!(
        payloads(&out.publishes(conn)),
        vec!["m5", "m1"],
        "late, not lost: after what the newer state holds"
    );
    let stored = b.stored_session("x").unwrap();
    assert_eq!(
        (stored.record.epoch, stored.record.protocol),
        (Epoch(3), ProtocolVersion::V5),
        "the newer state stays the session's"
    );
}

/// A QoS 2 message of `payload` with cluster identity `seq`, as a queue page holds it.
fn qos2_page(payload: &'static [u8], seq: u64) -> Vec<Delivery> {
    let mut message = (*super::cluster::message("t", payload)).clone();
    message.qos = QoS::ExactlyOnce;
    message.id = Some(crate::ids::MessageId {
        origin: crate::ids::NodeId(3),
        seq,
    });
    vec![Delivery {
        message: Arc::new(message),
        qos: QoS::ExactlyOnce,
        ..page(payload).remove(0)
    }]
}

/// Simulator `--scenario lost-release`, seed 6058 of session 40: the newer state came from a
/// copy older than the one the older claim pulls, and still queued a QoS 2 message that copy
/// had delivered (it took it, and holds it no more). Once the older copy is in, that message
/// does not go out again; what the older copy still had queued does, late.
#[test]
fn what_an_older_copy_imported_late_delivered_does_not_go_out_again() {
    for older_queued in [0, 1] {
        let mut b = newer_state_landed_first(qos2_page(b"m2", 7));
        let x = client("x");

        let mut older = export(2, ProtocolVersion::V5, older_queued);
        older.seen = vec![crate::ids::MessageId {
            origin: crate::ids::NodeId(3),
            seq: 7,
        }];
        b.event(Event::ImportState {
            client: x.clone(),
            export: older,
        });
        if older_queued > 0 {
            b.event(Event::ImportQueue {
                client: x.clone(),
                page: page(b"m3"),
            });
            b.event(Event::ImportComplete {
                client: x.clone(),
                epoch: Epoch(2),
            });
        }
        b.event(Event::ImportDone { client: x.clone() });
        let (conn, out) = b.connect_as(v5("x", false, Some(600)), 3);
        assert!(out.connack(conn).session_present);
        let expected: Vec<&str> = if older_queued > 0 { vec!["m3"] } else { vec![] };
        assert_eq!(
            payloads(&out.publishes(conn)),
            expected,
            "m2 went to the client from the older copy (queued: {older_queued})"
        );
    }
}
