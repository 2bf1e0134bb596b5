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

#[test]
fn an_older_copy_imported_after_a_newer_one_arrives_as_a_late_backlog() {
    let mut b = node(2);
    let x = client("x");
    // Claim at epoch 2 (its pull is held up), then again at epoch 3.
    b.event(claim(2, 2));
    b.event(Event::ImportBegin { client: x.clone() });
    b.event(claim(2, 3));
    b.event(Event::ImportBegin { client: x.clone() });

    // Epoch 3's state lands first, with m5.
    b.event(Event::ImportState {
        client: x.clone(),
        export: export(3, ProtocolVersion::V5, 1),
    });
    b.event(Event::ImportQueue {
        client: x.clone(),
        page: page(b"m5"),
    });
    b.event(Event::ImportDone { client: x.clone() });
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
