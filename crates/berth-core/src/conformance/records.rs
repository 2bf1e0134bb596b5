//! Cases for session records, subscriptions and retained messages.

use berth_codec::{ProtocolVersion, QoS};

use super::fixtures::*;
use crate::message::Message;
use crate::store::{Batch, Op, SessionExpiry, Store};

pub(super) fn empty_store_loads_nothing(store: &mut dyn Store) {
    let snapshot = load(store);
    assert!(snapshot.sessions.is_empty());
    assert!(snapshot.retained.is_empty());
    assert!(queue(store, &client("nobody")).is_empty());
    assert!(inflight(store, &client("nobody")).is_empty());
    store
        .write(Batch::default())
        .expect("an empty batch is fine");
}

pub(super) fn session_round_trips_every_field(store: &mut dyn Store) {
    let full = full_session(u64::MAX - 1);
    let mut never = bare_session(0);
    never.protocol = ProtocolVersion::V3_1;
    let mut zero = bare_session(3);
    zero.expiry = SessionExpiry::After(0);
    zero.protocol = ProtocolVersion::V5;
    zero.expires_at = Some(crate::time::UnixMillis(0));
    let mut plain_will = full_session(4);
    plain_will.will = Some(crate::store::WillRecord {
        message: plain("w", b""),
        delay_secs: 0,
    });
    plain_will.expiry = SessionExpiry::After(u32::MAX - 1);
    write(
        store,
        vec![
            Op::PutSession {
                client: client("full"),
                record: full.clone(),
            },
            Op::PutSession {
                client: client("never"),
                record: never.clone(),
            },
            Op::PutSession {
                client: client("zero"),
                record: zero.clone(),
            },
            Op::PutSession {
                client: client("plain-will"),
                record: plain_will.clone(),
            },
        ],
    );
    let snapshot = load(store);
    assert_eq!(snapshot.sessions.len(), 4);
    for (id, record) in [
        ("full", full),
        ("never", never),
        ("zero", zero),
        ("plain-will", plain_will),
    ] {
        let session = snapshot.session(&client(id)).expect("session loads");
        assert_eq!(session.record, record, "session {id}");
        assert!(session.subscriptions.is_empty());
        assert!(session.incoming_qos2.is_empty());
        assert_eq!(session.queue.count, 0);
        assert_eq!(session.queue.bytes, 0);
    }
}

pub(super) fn put_session_overwrites(store: &mut dyn Store) {
    let who = client("c");
    write(
        store,
        vec![Op::PutSession {
            client: who.clone(),
            record: full_session(1),
        }],
    );
    write(
        store,
        vec![Op::PutSession {
            client: who.clone(),
            record: bare_session(2),
        }],
    );
    let snapshot = load(store);
    assert_eq!(snapshot.sessions.len(), 1);
    assert_eq!(snapshot.sessions[0].record, bare_session(2));
}

pub(super) fn subscriptions_put_overwrite_delete(store: &mut dyn Store) {
    let who = client("subscriber");
    let other = client("other");
    write(
        store,
        vec![
            Op::PutSession {
                client: who.clone(),
                record: bare_session(1),
            },
            Op::PutSession {
                client: other.clone(),
                record: bare_session(1),
            },
            Op::PutSubscription {
                client: who.clone(),
                filter: filter("a/+/c"),
                record: subscription(QoS::AtMostOnce, None),
            },
            Op::PutSubscription {
                client: who.clone(),
                filter: filter("#"),
                record: rich_subscription(),
            },
            Op::PutSubscription {
                client: who.clone(),
                filter: filter("$share/group/a/#"),
                record: subscription(QoS::AtLeastOnce, Some(1)),
            },
            Op::PutSubscription {
                client: other.clone(),
                filter: filter("a/+/c"),
                record: subscription(QoS::ExactlyOnce, Some(2)),
            },
        ],
    );
    let snapshot = load(store);
    let subs = &snapshot.session(&who).expect("loads").subscriptions;
    assert_eq!(
        subs,
        &vec![
            (filter("#"), rich_subscription()),
            (
                filter("$share/group/a/#"),
                subscription(QoS::AtLeastOnce, Some(1))
            ),
            (filter("a/+/c"), subscription(QoS::AtMostOnce, None)),
        ]
    );
    write(
        store,
        vec![
            Op::PutSubscription {
                client: who.clone(),
                filter: filter("a/+/c"),
                record: subscription(QoS::ExactlyOnce, Some(99)),
            },
            Op::DeleteSubscription {
                client: who.clone(),
                filter: filter("#"),
            },
        ],
    );
    let snapshot = load(store);
    let subs = &snapshot.session(&who).expect("loads").subscriptions;
    assert_eq!(
        subs,
        &vec![
            (
                filter("$share/group/a/#"),
                subscription(QoS::AtLeastOnce, Some(1))
            ),
            (filter("a/+/c"), subscription(QoS::ExactlyOnce, Some(99))),
        ]
    );
    let other_subs = &snapshot.session(&other).expect("loads").subscriptions;
    assert_eq!(
        other_subs,
        &vec![(filter("a/+/c"), subscription(QoS::ExactlyOnce, Some(2)))]
    );
}

pub(super) fn retained_put_replace_delete(store: &mut dyn Store) {
    let first = rich("status/a", QoS::AtLeastOnce, true);
    let mut second = plain("status/a", b"replaced");
    second.retain = true;
    let other = plain("status/b", b"b");
    write(
        store,
        vec![
            Op::PutRetained {
                message: first.clone(),
            },
            Op::PutRetained {
                message: other.clone(),
            },
        ],
    );
    assert_eq!(load(store).retained, vec![first, other.clone()]);
    write(
        store,
        vec![Op::PutRetained {
            message: second.clone(),
        }],
    );
    assert_eq!(load(store).retained, vec![second.clone(), other]);
    write(
        store,
        vec![Op::DeleteRetained {
            topic: topic("status/b"),
        }],
    );
    assert_eq!(load(store).retained, vec![second]);
    write(
        store,
        vec![Op::DeleteRetained {
            topic: topic("status/a"),
        }],
    );
    assert!(load(store).retained.is_empty());
}

/// Hinted-handoff entries: loaded in `seq` order (numeric), every field exact, apart from the
/// rows of a session of the same client (deleting that session leaves them).
pub(super) fn handoff_put_delete_in_seq_order_apart_from_sessions(store: &mut dyn Store) {
    use crate::store::HandoffRecord;
    let entry =
        |seq: u64, who: &str, message: Message, publisher: Option<&str>, retried| HandoffRecord {
            seq,
            client: client(who),
            epoch: crate::ids::Epoch(seq + 1),
            message,
            publisher: publisher.map(client),
            retried,
        };
    let mut with_id = rich("t/rich", QoS::ExactlyOnce, false);
    with_id.id = Some(crate::ids::MessageId {
        origin: crate::ids::NodeId(3),
        seq: 77,
    });
    let entries = vec![
        entry(2, "a", plain("t/a", b"one"), None, false),
        entry(10, "客户端", with_id, Some("pub"), true),
        entry(300, "a", plain("t/a", b""), Some("a"), false),
    ];
    write(
        store,
        entries
            .iter()
            .rev()
            .map(|record| Op::PutHandoff {
                record: record.clone(),
            })
            .chain([Op::PutSession {
                client: client("a"),
                record: bare_session(1),
            }])
            .collect(),
    );
    assert_eq!(load(store).handoff, entries);
    write(
        store,
        vec![
            Op::DeleteSession {
                client: client("a"),
            },
            Op::DeleteHandoff {
                client: client("客户端"),
                seq: 10,
            },
        ],
    );
    assert_eq!(
        load(store).handoff,
        vec![entries[0].clone(), entries[2].clone()]
    );
}
