//! A session resumed without an unreachable older copy's state (`qos2_state_elsewhere`) does
//! not know the packet ids its client still holds for QoS 2 messages that copy sent (PUBREC
//! sent, PUBREL not yet): a new PUBLISH under such an id would be dropped by the client as a
//! duplicate, and the copy's own re-send, merged later under another id, taken twice
//! (simulator `6-qos2-id`, then `6-qos2`). So its QoS 2 deliveries wait for that copy, at most
//! `QOS2_STATE_WAIT`; QoS 0 and 1 go on.

use super::stranded::node;
use super::*;
use crate::broker::delivery::QOS2_STATE_WAIT;
use crate::cluster::{ClusterEvent, SessionExport};
use crate::ids::{Epoch, NodeId};
use crate::store::{InflightRecord, SubscriptionRecord};

/// Node 2 takes `x` (subscribed to `t` at QoS 2) over at epoch 2 from node 1 without reaching
/// it; returns the node, `x`'s connection and a publisher's.
pub(super) fn resumed_without_state() -> (Harness, ConnId, ConnId) {
    let mut b = node(2);
    b.event(Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(2),
        epoch: Epoch(2),
        kept: true,
        moved_from: None,
        subscriptions: Vec::new(),
    }));
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    let subscription = SubscriptionRecord {
        options: berth_codec::SubscriptionOptions::new(QoS::ExactlyOnce),
        subscription_id: None,
    };
    b.event(Event::ImportState {
        client: client("x"),
        export: fallback(2, vec![(filter("t"), subscription)]),
    });
    b.event(Event::ImportDone {
        client: client("x"),
    });
    let (x, out) = b.connect_as(v3("x", false), 2);
    assert!(out.connack(x).session_present);
    let publisher = b.connect_ok(v5("pub", true, None));
    (b, x, publisher)
}

/// The older copy's window: `m1` sent at QoS 2 under packet id 1, not acknowledged there.
fn older_copy_with_m1_in_flight() -> Box<SessionExport> {
    older_copy_with_m1_in_flight_as(pid(1))
}

/// The older copy's window: `m1` sent at QoS 2 under packet id `id`, not acknowledged there.
pub(super) fn older_copy_with_m1_in_flight_as(id: PacketId) -> Box<SessionExport> {
    late_copy(vec![(id, sent_qos2(b"m1", None))], Vec::new(), Vec::new())
}

/// A QoS 2 message on `t` (with the cluster identity `id`, if any), as a copy's window holds
/// it once sent.
pub(super) fn sent_qos2(
    payload: &'static [u8],
    id: Option<crate::ids::MessageId>,
) -> InflightRecord {
    let mut message = (*super::cluster::message("t", payload)).clone();
    message.qos = QoS::ExactlyOnce;
    message.id = id;
    InflightRecord::Sent {
        order: 1,
        delivery: crate::message::Delivery {
            message: std::sync::Arc::new(message),
            qos: QoS::ExactlyOnce,
            retain: false,
            subscription_ids: Vec::new(),
            redelivery: false,
            sent_as: None,
        },
    }
}

#[test]
fn deliveries_wait_for_the_older_copy_and_its_message_keeps_its_packet_id() {
    let (mut b, x, publisher) = resumed_without_state();
    let out = b.publish(publisher, publish("t", b"m0", QoS::AtLeastOnce, 9));
    assert_eq!(
        payloads(&out.publishes(x)),
        vec!["m0"],
        "QoS 1 goes on: it does not wait for the older copy"
    );
    let m0 = out.publishes(x)[0].packet_id.unwrap();
    b.puback(x, m0);
    let out = b.publish(publisher, publish("t", b"m2", QoS::ExactlyOnce, 1));
    assert!(
        out.publishes(x).is_empty(),
        "m2 waits: the client may still hold any packet id for the older copy's messages"
    );
    assert!(
        out.to(publisher)
            .iter()
            .any(|p| matches!(p, Packet::PubRec(_))),
        "the publisher does not wait for it"
    );

    let out = b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        holder: crate::ids::NodeId(1),
        export: older_copy_with_m1_in_flight(),
        page: Vec::new(),
    });
    let sent = out.publishes(x);
    assert_eq!(payloads(&sent), vec!["m1", "m2"]);
    assert_eq!(
        (sent[0].packet_id, sent[0].dup),
        (Some(pid(1)), true),
        "m1 again under the id the client may hold: it drops it as a duplicate"
    );
    assert_ne!(sent[1].packet_id, Some(pid(1)), "m2 under a free id");
}

#[test]
fn without_the_older_copy_deliveries_go_out_after_the_wait() {
    let (mut b, x, publisher) = resumed_without_state();
    let out = b.publish(publisher, publish("t", b"m2", QoS::ExactlyOnce, 1));
    assert!(out.publishes(x).is_empty());
    let out = b.tick_after_millis(QOS2_STATE_WAIT - 1);
    assert!(out.publishes(x).is_empty(), "still within the wait");
    let out = b.tick_after_millis(1);
    assert_eq!(payloads(&out.publishes(x)), vec!["m2"]);
    // From then on, delivered as they come.
    let out = b.publish(publisher, publish("t", b"m3", QoS::AtLeastOnce, 2));
    assert_eq!(payloads(&out.publishes(x)), vec!["m3"]);
}

#[test]
fn a_session_that_knows_its_state_does_not_wait() {
    let mut b = node(2);
    let x = b.connect_ok(v3("x", false));
    b.subscribe(x, subscribe(1, "t", QoS::ExactlyOnce));
    let publisher = b.connect_ok(v5("pub", true, None));
    let out = b.publish(publisher, publish("t", b"m1", QoS::ExactlyOnce, 1));
    assert_eq!(payloads(&out.publishes(x)), vec!["m1"]);
}
