//! Builders for the values the conformance cases store: valid identifiers, messages that use
//! every PUBLISH property, deliveries, sessions, and a comparable view of [`Loaded`].

use std::sync::Arc;

use berth_codec::{
    MqttString, PacketId, PayloadFormat, ProtocolVersion, PublishProperties, QoS, RetainHandling,
    SubscriptionId, SubscriptionOptions, TopicFilter, TopicName, UserProperty,
};
use bytes::Bytes;

use crate::ids::{ClientId, Epoch, QueueSeq};
use crate::message::{Delivery, Message};
use crate::store::{
    Batch, InflightRecord, Loaded, LoadedSession, Op, QueueBounds, SessionExpiry, SessionRecord,
    Store, SubscriptionRecord, WillRecord,
};
use crate::time::UnixMillis;

pub(crate) fn client(id: &str) -> ClientId {
    ClientId::new(MqttString::new(id).expect("valid client id"))
}

pub(crate) fn topic(name: &str) -> TopicName {
    TopicName::parse(name).expect("valid topic name")
}

pub(crate) fn filter(text: &str) -> TopicFilter {
    TopicFilter::parse(text).expect("valid topic filter")
}

pub(crate) fn pid(value: u16) -> PacketId {
    PacketId::new(value).expect("non-zero packet id")
}

pub(crate) fn sub_id(value: u32) -> SubscriptionId {
    SubscriptionId::new(value).expect("valid subscription id")
}

fn mqtt(text: &str) -> MqttString {
    MqttString::new(text).expect("valid MQTT string")
}

/// A QoS 1 message without properties.
pub(crate) fn plain(topic_name: &str, payload: &[u8]) -> Message {
    Message {
        topic: topic(topic_name),
        payload: Bytes::copy_from_slice(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        expires_at: None,
        received_at: None,
        id: None,
    }
}

/// A message that sets every property a stored message can carry (repeated user properties,
/// in an order that is not sorted, to catch stores that reorder them).
pub(crate) fn rich(topic_name: &str, qos: QoS, retain: bool) -> Message {
    Message {
        topic: topic(topic_name),
        payload: Bytes::from_static(b"\x00\x01binary\xff payload"),
        qos,
        retain,
        properties: PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(3600),
            topic_alias: None,
            response_topic: Some(topic("replies/for/ünïcode")),
            correlation_data: Some(Bytes::from_static(b"\x00corr\xfe")),
            user_properties: vec![
                UserProperty::new(mqtt("z-key"), mqtt("last")),
                UserProperty::new(mqtt("a-key"), mqtt("first")),
                UserProperty::new(mqtt("z-key"), mqtt("repeated")),
                UserProperty::new(mqtt(""), mqtt("")),
            ],
            subscription_identifiers: Vec::new(),
            content_type: Some(mqtt("application/json; charset=utf-8")),
        }
        .into(),
        expires_at: Some(UnixMillis(1_700_000_123_456)),
        received_at: Some(UnixMillis(1_700_000_000_456)),
        id: Some(crate::ids::MessageId {
            origin: crate::ids::NodeId(u64::MAX),
            seq: (1 << 63) | 5,
        }),
    }
}

pub(crate) fn delivery(message: Message, qos: QoS, retain: bool, ids: &[u32]) -> Delivery {
    Delivery {
        message: Arc::new(message),
        qos,
        retain,
        subscription_ids: ids.iter().map(|&id| sub_id(id)).collect(),
        redelivery: false,
        sent_as: None,
    }
}

/// The `n`th message of a test queue: topic and payload differ per `n` so sizes differ too.
pub(crate) fn numbered(n: u64) -> Delivery {
    let payload = format!("message number {n}");
    delivery(
        plain(&format!("queue/{n}"), payload.as_bytes()),
        QoS::AtLeastOnce,
        false,
        &[],
    )
}

/// A session record that sets every optional field.
pub(crate) fn full_session(epoch: u64) -> SessionRecord {
    SessionRecord {
        epoch: Epoch(epoch),
        protocol: ProtocolVersion::V5,
        expiry: SessionExpiry::After(300),
        expires_at: Some(UnixMillis(1_800_000_000_000)),
        will: Some(WillRecord {
            message: rich("wills/gone", QoS::ExactlyOnce, true),
            delay_secs: 45,
        }),
        will_due_at: Some(UnixMillis(1_800_000_045_000)),
        qos2_state_elsewhere: true,
        incoming_qos2_elsewhere: false,
        qos2_doubt: Default::default(),
        landed: Epoch(epoch),
    }
}

/// A session record with every optional field absent.
pub(crate) fn bare_session(epoch: u64) -> SessionRecord {
    SessionRecord {
        epoch: Epoch(epoch),
        protocol: ProtocolVersion::V3_1_1,
        expiry: SessionExpiry::Never,
        expires_at: None,
        will: None,
        will_due_at: None,
        qos2_state_elsewhere: false,
        incoming_qos2_elsewhere: false,
        qos2_doubt: Default::default(),
        landed: Epoch(epoch),
    }
}

pub(crate) fn subscription(qos: QoS, id: Option<u32>) -> SubscriptionRecord {
    SubscriptionRecord {
        options: SubscriptionOptions::new(qos),
        subscription_id: id.map(sub_id),
    }
}

/// A subscription with every MQTT 5 option set away from its default.
pub(crate) fn rich_subscription() -> SubscriptionRecord {
    SubscriptionRecord {
        options: SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        },
        subscription_id: Some(sub_id(SubscriptionId::MAX)),
    }
}

pub(crate) fn sent(order: u64, delivery: Delivery) -> InflightRecord {
    InflightRecord::Sent { order, delivery }
}

pub(crate) fn write(store: &mut dyn Store, ops: Vec<Op>) {
    store.write(Batch { ops }).expect("write succeeds");
}

pub(crate) fn queue(store: &dyn Store, client: &ClientId) -> Vec<(QueueSeq, Delivery)> {
    store
        .read_queue(client, QueueSeq(0), usize::MAX)
        .expect("read_queue succeeds")
}

pub(crate) fn seqs(entries: &[(QueueSeq, Delivery)]) -> Vec<u64> {
    entries.iter().map(|(seq, _)| seq.0).collect()
}

pub(crate) fn inflight(store: &dyn Store, client: &ClientId) -> Vec<(PacketId, InflightRecord)> {
    store.read_inflight(client).expect("read_inflight succeeds")
}

/// [`Loaded`] with every list sorted, so that stores may return rows in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub sessions: Vec<LoadedSession>,
    pub retained: Vec<Message>,
    /// In `seq` order, as every store must load them.
    pub handoff: Vec<crate::store::HandoffRecord>,
}

impl Snapshot {
    pub(crate) fn session(&self, client: &ClientId) -> Option<&LoadedSession> {
        self.sessions
            .iter()
            .find(|session| &session.client == client)
    }
}

pub(crate) fn normalize(loaded: Loaded) -> Snapshot {
    let mut sessions = loaded.sessions;
    for session in &mut sessions {
        session
            .subscriptions
            .sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        session.incoming_qos2.sort();
    }
    sessions.sort_by(|a, b| a.client.as_str().cmp(b.client.as_str()));
    let mut retained = loaded.retained;
    retained.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
    Snapshot {
        sessions,
        retained,
        handoff: loaded.handoff,
    }
}

pub(crate) fn load(store: &mut dyn Store) -> Snapshot {
    normalize(store.load().expect("load succeeds"))
}

/// Everything a client can own, so that deletion tests can check nothing is left behind.
pub(crate) fn populate(store: &mut dyn Store, who: &ClientId, tag: &str) {
    write(
        store,
        vec![
            Op::PutSession {
                client: who.clone(),
                record: full_session(7),
            },
            Op::PutSubscription {
                client: who.clone(),
                filter: filter(&format!("{tag}/+/x")),
                record: subscription(QoS::AtLeastOnce, Some(3)),
            },
            Op::PutSubscription {
                client: who.clone(),
                filter: filter("#"),
                record: rich_subscription(),
            },
            Op::Enqueue {
                client: who.clone(),
                seq: QueueSeq(1),
                delivery: numbered(1),
            },
            Op::Enqueue {
                client: who.clone(),
                seq: QueueSeq(2),
                delivery: numbered(2),
            },
            Op::PutInflight {
                client: who.clone(),
                packet_id: pid(1),
                record: sent(1, numbered(0)),
            },
            Op::PutInflight {
                client: who.clone(),
                packet_id: pid(2),
                record: InflightRecord::Released { order: 2 },
            },
            Op::PutIncomingQos2 {
                client: who.clone(),
                packet_id: pid(9),
            },
            Op::PutKeptIds {
                client: who.clone(),
                ids: vec![pid(5)],
            },
        ],
    );
}

/// Asserts `who` owns nothing: re-creating its session must show no leftover rows.
pub(crate) fn assert_nothing_left(store: &mut dyn Store, who: &ClientId) {
    assert!(
        load(store).session(who).is_none(),
        "session record of {who} still loads"
    );
    assert!(queue(store, who).is_empty(), "queue of {who} not empty");
    assert!(
        inflight(store, who).is_empty(),
        "in-flight window of {who} not empty"
    );
    write(
        store,
        vec![Op::PutSession {
            client: who.clone(),
            record: bare_session(1),
        }],
    );
    let snapshot = load(store);
    let session = snapshot.session(who).expect("re-created session loads");
    assert!(
        session.subscriptions.is_empty(),
        "subscriptions of {who} survived: {session:?}"
    );
    assert!(
        session.incoming_qos2.is_empty(),
        "QoS 2 state of {who} survived: {session:?}"
    );
    assert!(
        session.kept_ids.is_empty(),
        "kept packet ids of {who} survived: {session:?}"
    );
    assert_eq!(session.queue.count, 0, "queue rows of {who} survived");
    assert_eq!(session.queue.bytes, 0, "queue bytes of {who} survived");
    write(
        store,
        vec![Op::DeleteSession {
            client: who.clone(),
        }],
    );
}

/// A clean start in one batch: `who`'s session deleted and a bare one at `epoch` written.
pub(crate) fn recreate(store: &mut dyn Store, who: &ClientId, epoch: u64) {
    write(
        store,
        vec![
            Op::DeleteSession {
                client: who.clone(),
            },
            Op::PutSession {
                client: who.clone(),
                record: bare_session(epoch),
            },
        ],
    );
}

pub(crate) fn enqueue_all(
    store: &mut dyn Store,
    who: &ClientId,
    seqs: impl IntoIterator<Item = u64>,
) {
    let ops = seqs
        .into_iter()
        .map(|n| Op::Enqueue {
            client: who.clone(),
            seq: QueueSeq(n),
            delivery: numbered(n),
        })
        .collect();
    write(store, ops);
}

pub(crate) fn bounds(store: &mut dyn Store, who: &ClientId) -> QueueBounds {
    load(store).session(who).expect("session loads").queue
}

pub(crate) fn size_of(seqs: impl IntoIterator<Item = u64>) -> u64 {
    seqs.into_iter().map(|n| numbered(n).size()).sum()
}
