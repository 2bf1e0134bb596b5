//! Cases for exact message round trips: every property, QoS and RETAIN combination, sizes,
//! non-ASCII identifiers.

use berth_codec::QoS;
use bytes::Bytes;

use super::fixtures::*;
use crate::ids::QueueSeq;
use crate::message::Delivery;
use crate::store::{InflightRecord, Op, Store};

pub(super) fn messages_round_trip_exactly(store: &mut dyn Store) {
    let who = client("exact");
    let mut deliveries = Vec::new();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        for delivered in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for (retain, delivered_retain) in
                [(false, false), (true, false), (true, true), (false, true)]
            {
                let mut message = rich("exact/topic", qos, retain);
                if delivered == QoS::AtLeastOnce {
                    message.expires_at = None;
                    message.properties.message_expiry_interval = None;
                }
                deliveries.push(delivery(
                    message,
                    delivered,
                    delivered_retain,
                    &[1, 268_435_455, 7],
                ));
            }
        }
    }
    deliveries.push(delivery(plain("p", b"plain"), QoS::AtMostOnce, false, &[]));
    let mut odd = plain("odd", b"\0");
    odd.properties.payload_format_indicator = Some(berth_codec::PayloadFormat::Unspecified);
    odd.properties.correlation_data = Some(Bytes::new());
    odd.expires_at = Some(crate::time::UnixMillis(u64::MAX));
    deliveries.push(delivery(odd, QoS::ExactlyOnce, true, &[5]));

    let ops = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| Op::Enqueue {
            client: who.clone(),
            seq: QueueSeq(i as u64),
            delivery: d.clone(),
        })
        .collect();
    write(store, ops);
    let read: Vec<Delivery> = queue(store, &who).into_iter().map(|(_, d)| d).collect();
    assert_eq!(read, deliveries);

    let ops = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| Op::PutInflight {
            client: who.clone(),
            packet_id: pid(i as u16 + 1),
            record: sent(i as u64, d.clone()),
        })
        .collect();
    write(store, ops);
    let window: Vec<InflightRecord> = inflight(store, &who).into_iter().map(|(_, r)| r).collect();
    let expected: Vec<_> = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| sent(i as u64, d.clone()))
        .collect();
    assert_eq!(window, expected);

    let retained: Vec<_> = deliveries
        .iter()
        .take(3)
        .map(|d| d.message.as_ref().clone())
        .collect();
    for message in &retained {
        write(
            store,
            vec![Op::PutRetained {
                message: message.clone(),
            }],
        );
        assert_eq!(load(store).retained, vec![message.clone()]);
    }
}

pub(super) fn payload_sizes_round_trip(store: &mut dyn Store) {
    let who = client("sizes");
    let big: Vec<u8> = (0..64 * 1024 + 3).map(|i| (i % 251) as u8).collect();
    let huge: Vec<u8> = (0..1024 * 1024).map(|i| (i % 7) as u8).collect();
    let payloads = [Vec::new(), big, huge];
    let deliveries: Vec<_> = payloads
        .iter()
        .map(|p| delivery(plain("sizes/x", p), QoS::AtLeastOnce, false, &[]))
        .collect();
    let mut ops: Vec<_> = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| Op::Enqueue {
            client: who.clone(),
            seq: QueueSeq(i as u64),
            delivery: d.clone(),
        })
        .collect();
    ops.push(Op::PutSession {
        client: who.clone(),
        record: bare_session(1),
    });
    ops.push(Op::PutRetained {
        message: plain("sizes/empty", b""),
    });
    write(store, ops);
    let read: Vec<_> = queue(store, &who).into_iter().map(|(_, d)| d).collect();
    assert_eq!(read, deliveries);
    let snapshot = load(store);
    let bytes: u64 = deliveries.iter().map(Delivery::size).sum();
    assert_eq!(snapshot.session(&who).expect("loads").queue.bytes, bytes);
    assert_eq!(snapshot.retained, vec![plain("sizes/empty", b"")]);
}

pub(super) fn unicode_ids_and_topics(store: &mut dyn Store) {
    let ids = ["客户端-🚀", "ü", "u", "\u{10FFFF}"];
    for id in ids {
        let who = client(id);
        write(
            store,
            vec![
                Op::PutSession {
                    client: who.clone(),
                    record: full_session(1),
                },
                Op::PutSubscription {
                    client: who.clone(),
                    filter: filter("温度/+/#"),
                    record: subscription(QoS::ExactlyOnce, Some(2)),
                },
                Op::Enqueue {
                    client: who.clone(),
                    seq: QueueSeq(1),
                    delivery: delivery(
                        rich("温度/😀/x", QoS::ExactlyOnce, false),
                        QoS::AtLeastOnce,
                        false,
                        &[2],
                    ),
                },
                Op::PutRetained {
                    message: plain("温度/😀/x", id.as_bytes()),
                },
            ],
        );
    }
    let snapshot = load(store);
    assert_eq!(snapshot.sessions.len(), ids.len());
    for id in ids {
        let session = snapshot.session(&client(id)).expect("loads");
        assert_eq!(session.record, full_session(1));
        assert_eq!(session.subscriptions[0].0, filter("温度/+/#"));
        let read = queue(store, &client(id));
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].1.message.topic, topic("温度/😀/x"));
    }
    assert_eq!(snapshot.retained.len(), 1);
    write(
        store,
        vec![Op::DeleteSession {
            client: client("ü"),
        }],
    );
    assert_nothing_left(store, &client("ü"));
    assert_eq!(load(store).sessions.len(), ids.len() - 1);
}
