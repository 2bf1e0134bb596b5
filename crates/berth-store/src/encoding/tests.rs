//! Layout facts the store relies on (key order, prefix ranges) and the promise that no stored
//! bytes, however damaged, make a decoder panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use berth_codec::{MqttString, PublishProperties, SubscriptionOptions, UserProperty};
use bytes::Bytes;

use super::*;

fn client(id: &str) -> ClientId {
    ClientId::new(MqttString::new(id).unwrap())
}

fn message() -> Message {
    Message {
        topic: TopicName::parse("a/b").unwrap(),
        payload: Bytes::from_static(b"payload"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: PublishProperties {
            user_properties: vec![UserProperty::new(
                MqttString::new("k").unwrap(),
                MqttString::new("v").unwrap(),
            )],
            content_type: Some(MqttString::new("text/plain").unwrap()),
            ..Default::default()
        }
        .into(),
        expires_at: Some(UnixMillis(42)),
        received_at: Some(UnixMillis(7)),
        id: None,
    }
}

fn delivery() -> Delivery {
    Delivery {
        message: Arc::new(message()),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![
            SubscriptionId::new(3).unwrap(),
            SubscriptionId::new(70_000).unwrap(),
        ],
        redelivery: true,
        sent_as: None,
    }
}

fn session() -> SessionRecord {
    SessionRecord {
        epoch: Epoch(9),
        protocol: ProtocolVersion::V5,
        expiry: SessionExpiry::After(60),
        expires_at: Some(UnixMillis(1)),
        will: Some(WillRecord {
            message: message(),
            delay_secs: 5,
        }),
        will_due_at: None,
        qos2_state_elsewhere: false,
        incoming_qos2_elsewhere: true,
        qos2_doubt: Default::default(),
        landed: Epoch(9),
    }
}

#[test]
fn client_prefixes_never_interleave() {
    let a = client_prefix(&client("a"));
    let ab = client_prefix(&client("ab"));
    assert_eq!(a, [0, 1, b'a']);
    assert_eq!(ab, [0, 2, b'a', b'b']);
    assert!(!ab.starts_with(&a));
    let a_end = prefix_end(&a).unwrap();
    // Every key of `a` sorts below the end of `a`'s range, and `ab`'s keys are outside it.
    let a_last = queue_key(&client("a"), QueueSeq(u64::MAX));
    assert!(a_last < a_end);
    let ab_first = queue_key(&client("ab"), QueueSeq(0));
    assert!(!(a.as_slice()..a_end.as_slice()).contains(&ab_first.as_slice()));
    // A long multi-byte id: the length is in bytes (400), and its range still has an end.
    let long = client(&"é".repeat(200));
    let prefix = client_prefix(&long);
    assert_eq!(&prefix[..2], &400u16.to_be_bytes());
    assert!(prefix_end(&prefix).unwrap() > packet_key(&long, PacketId::new(u16::MAX).unwrap()));
}

#[test]
fn prefix_end_is_the_exclusive_upper_bound() {
    assert_eq!(prefix_end(&[0, 0]), Some(vec![0, 1]));
    assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
    assert_eq!(prefix_end(&[0, 1, 0x61]), Some(vec![0, 1, 0x62]));
    assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    assert_eq!(prefix_end(&[]), None);
    assert!(prefix_end(&client_prefix(&client(""))).is_some());
}

#[test]
fn sequences_and_packet_ids_sort_numerically() {
    let who = client("c");
    assert!(queue_key(&who, QueueSeq(255)) < queue_key(&who, QueueSeq(256)));
    assert!(queue_key(&who, QueueSeq(u64::MAX - 1)) < queue_key(&who, QueueSeq(u64::MAX)));
    let id = |v| PacketId::new(v).unwrap();
    assert!(packet_key(&who, id(255)) < packet_key(&who, id(256)));
}

#[test]
fn keys_decode_back() {
    let who = client("客户端");
    let key = queue_key(&who, QueueSeq(77));
    let (prefix, rest) = split_prefix(Cf::Queues, &key).unwrap();
    assert_eq!(prefix_client(Cf::Queues, &key, prefix).unwrap(), who);
    assert_eq!(seq_from_key(&key, rest).unwrap(), QueueSeq(77));
    let filter = TopicFilter::parse("$share/g/x/#").unwrap();
    let key = subscription_key(&who, &filter);
    let (_, rest) = split_prefix(Cf::Subscriptions, &key).unwrap();
    assert_eq!(filter_from_key(&key, rest).unwrap(), filter);
}

#[test]
fn values_round_trip() {
    let key = b"k";
    assert_eq!(
        decode_session(key, &encode_session(&session()).unwrap()).unwrap(),
        session()
    );
    // In doubt about its QoS 2 state, named and with releases, having served several claims.
    let in_doubt = SessionRecord {
        qos2_state_elsewhere: true,
        qos2_doubt: berth_core::Qos2Doubt {
            lacking: Some(berth_core::CopyRef {
                node: berth_core::NodeId(3),
                epoch: Epoch(7),
            }),
            earlier: vec![
                berth_core::CopyRef {
                    node: berth_core::NodeId(1),
                    epoch: Epoch(2),
                },
                berth_core::CopyRef {
                    node: berth_core::NodeId(2),
                    epoch: Epoch(5),
                },
            ],
            released: vec![PacketId::new(1).unwrap(), PacketId::new(65_535).unwrap()],
        },
        ..session()
    };
    assert_eq!(
        decode_session(key, &encode_session(&in_doubt).unwrap()).unwrap(),
        in_doubt
    );
    // `landed` is not stored: it reads back as the epoch, and a session not in doubt writes
    // no new flag bit (a binary from before them still reads the row).
    let served_several = SessionRecord {
        landed: Epoch(5),
        ..session()
    };
    let value = encode_session(&served_several).unwrap();
    assert_eq!(value[14] & 0b10_0000, 0);
    assert_eq!(decode_session(key, &value).unwrap(), session());
    let record = SubscriptionRecord {
        options: SubscriptionOptions::new(QoS::AtLeastOnce),
        subscription_id: SubscriptionId::new(SubscriptionId::MAX),
    };
    assert_eq!(
        decode_subscription(key, &encode_subscription(&record)).unwrap(),
        record
    );
    let value = encode_delivery(&delivery()).unwrap();
    assert_eq!(decode_delivery(key, &value).unwrap(), delivery());
    assert_eq!(delivery_size(key, &value).unwrap(), delivery().size());
    // A QoS 2 message waiting for the packet id an older copy sent it under keeps that id.
    let pinned = Delivery {
        qos: QoS::ExactlyOnce,
        sent_as: PacketId::new(65_535),
        ..delivery()
    };
    let value = encode_delivery(&pinned).unwrap();
    assert_eq!(decode_delivery(key, &value).unwrap(), pinned);
    assert_eq!(delivery_size(key, &value).unwrap(), pinned.size());
    let sent = InflightRecord::Sent {
        order: 5,
        delivery: delivery(),
    };
    assert_eq!(
        decode_inflight(key, &encode_inflight(&sent).unwrap()).unwrap(),
        sent
    );
    let released = InflightRecord::Released { order: 6 };
    assert_eq!(
        decode_inflight(key, &encode_inflight(&released).unwrap()).unwrap(),
        released
    );
    let value = encode_retained(&message()).unwrap();
    assert_eq!(decode_retained(b"a/b", &value).unwrap(), message());
}

/// Every value kind with a decoder, as `(name, value, decoder)`.
type Decoder = fn(&[u8]) -> Result<(), StoreError>;

fn samples() -> Vec<(&'static str, Vec<u8>, Decoder)> {
    let record = SubscriptionRecord {
        options: SubscriptionOptions::new(QoS::ExactlyOnce),
        subscription_id: None,
    };
    vec![
        (
            "session",
            encode_session(&session()).unwrap().to_vec(),
            |v| decode_session(b"k", v).map(drop),
        ),
        ("subscription", encode_subscription(&record).to_vec(), |v| {
            decode_subscription(b"k", v).map(drop)
        }),
        (
            "delivery",
            encode_delivery(&delivery()).unwrap().to_vec(),
            |v| decode_delivery(b"k", v).map(drop),
        ),
        (
            "inflight",
            encode_inflight(&InflightRecord::Sent {
                order: 1,
                delivery: delivery(),
            })
            .unwrap()
            .to_vec(),
            |v| decode_inflight(b"k", v).map(drop),
        ),
        (
            "retained",
            encode_retained(&message()).unwrap().to_vec(),
            |v| decode_retained(b"a/b", v).map(drop),
        ),
    ]
}

fn assert_corrupt(name: &str, result: Result<(), StoreError>) {
    match result {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("{name}: expected Corrupt, got {other:?}"),
    }
}

#[test]
fn truncated_extended_and_unknown_versions_are_corrupt() {
    for (name, value, decode) in samples() {
        decode(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
        for len in 0..value.len() {
            assert_corrupt(name, decode(&value[..len]));
        }
        let mut longer = value.clone();
        longer.push(0);
        assert_corrupt(name, decode(&longer));
        let mut version = value.clone();
        version[0] = 2;
        assert_corrupt(name, decode(&version));
    }
    assert_corrupt("size", delivery_size(b"k", &[1, 0, 0]).map(drop));
}

#[test]
fn damaged_bytes_never_panic() {
    // Flip every bit of every byte in turn: the result may decode (a changed payload byte is
    // still a message) but it must be a value or a Corrupt error, never a panic.
    for (name, value, decode) in samples() {
        for i in 0..value.len() {
            for bit in 0..8 {
                let mut damaged = value.clone();
                damaged[i] ^= 1 << bit;
                if let Err(e) = decode(&damaged) {
                    assert!(matches!(e, StoreError::Corrupt { .. }), "{name}: {e:?}");
                }
            }
        }
    }
}

#[test]
fn stored_size_must_match_the_message() {
    let mut value = encode_delivery(&delivery()).unwrap().to_vec();
    value[8] ^= 1;
    assert_corrupt("size", decode_delivery(b"k", &value).map(drop));
}

#[test]
fn corrupt_keys_are_reported_readably() {
    let key = queue_key(&client("dev-1"), QueueSeq(300));
    let StoreError::Corrupt { key: shown, .. } = corrupt(Cf::Queues, &key, "x") else {
        panic!()
    };
    assert_eq!(shown, "queues/\"dev-1\"/300");
    let StoreError::Corrupt { key: shown, .. } = corrupt(Cf::Inflight, &[0, 9, 1], "x") else {
        panic!()
    };
    assert_eq!(shown, "inflight/0x000901");
    assert!(split_prefix(Cf::Queues, &[0]).is_err());
    assert!(split_prefix(Cf::Queues, &[0, 5, b'a']).is_err());
    assert!(seq_from_key(&key, &[1, 2]).is_err());
    assert!(packet_id_from_key(Cf::Qos2In, &key, &[0, 0]).is_err());
    let bad_utf8 = [0, 1, 0xFF];
    assert!(prefix_client(Cf::Sessions, &bad_utf8, &bad_utf8).is_err());
}
