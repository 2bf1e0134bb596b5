//! Broker unit tests: events in, actions out, with a [`MemStore`] and a fake clock.
//!
//! [`Harness`] owns a broker and the clock. Every call that feeds an event returns the [`Out`]
//! of that event (the actions it produced), which the tests read per connection: the packets a
//! client would receive and whether its connection was closed. What is stored is checked through
//! `store_mut()` (`load`, `read_queue`, `read_inflight`) or by reopening a broker on the same
//! store ([`Harness::restart`]).
//!
//! One module per area of the protocol rules (ARCHITECTURE §5, §6).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests start from the default configuration and change one field: that reads clearest.
#![allow(clippy::field_reassign_with_default)]

mod acl;
mod admin;
mod claims;
mod cluster;
mod connect;
mod delivery_wait;
mod drain;
mod early_sends;
mod fences;
mod flow;
mod grants;
mod handoff;
mod identity;
mod lacked_copy;
mod limits;
mod limits_topic;
mod overtaken_import;
mod qos;
mod qos2_recovery;
mod queue;
mod queue_head;
mod restart;
mod retained;
mod row_backed;
mod sent_as;
mod stale_copy;
mod stranded;
mod subscribe;
mod will;

use std::num::{NonZeroU16, NonZeroU32};

use berth_codec::{
    ConnAck, Connect, ConnectProperties, Disconnect, DisconnectReasonCode, LastWill, MqttString,
    Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS, Subscribe,
    SubscribeProperties, Subscription, SubscriptionId, SubscriptionOptions, TopicFilter, TopicName,
    Unsubscribe, WillProperties,
};
use bytes::Bytes;

use super::{Action, Broker, CloseReason, Event};
use crate::config::BrokerConfig;
use crate::ids::{ClientId, ConnId};
use crate::mem_store::MemStore;
use crate::store::{Loaded, LoadedSession, Store};
use crate::time::UnixMillis;

/// An arbitrary start time far from zero, so that "0" never looks like a valid deadline.
const T0: UnixMillis = UnixMillis(1_700_000_000_000);

pub(super) fn topic(text: &str) -> TopicName {
    TopicName::parse(text).unwrap()
}

pub(super) fn filter(text: &str) -> TopicFilter {
    TopicFilter::parse(text).unwrap()
}

pub(super) fn mqtt(text: &str) -> MqttString {
    MqttString::new(text).unwrap()
}

pub(super) fn client(id: &str) -> ClientId {
    ClientId::new(mqtt(id))
}

pub(super) fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

pub(super) fn sub_id(id: u32) -> SubscriptionId {
    SubscriptionId::new(id).unwrap()
}

/// A CONNECT for MQTT 5 with the given Clean Start and Session Expiry Interval.
pub(super) fn v5(id: &str, clean_start: bool, expiry: Option<u32>) -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start,
        keep_alive: 60,
        client_id: mqtt(id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties {
            session_expiry_interval: expiry,
            ..Default::default()
        },
    }
}

/// A CONNECT for MQTT 3.1.1 with the given Clean Session.
pub(super) fn v3(id: &str, clean_session: bool) -> Connect {
    Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: clean_session,
        keep_alive: 60,
        client_id: mqtt(id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

/// A Will Message with an MQTT 5 Will Delay Interval (ignored by 3.1.1).
pub(super) fn will(topic_name: &str, payload: &'static [u8], delay: Option<u32>) -> LastWill {
    LastWill {
        topic: topic(topic_name),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: delay,
            ..Default::default()
        },
    }
}

pub(super) fn with_will(mut connect: Connect, will: LastWill) -> Connect {
    connect.will = Some(will);
    connect
}

/// A PUBLISH from a client; `id` is the packet identifier for QoS 1/2.
pub(super) fn publish(topic_name: &str, payload: &'static [u8], qos: QoS, id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic(topic_name),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(id)),
        payload: Bytes::from_static(payload),
        properties: Default::default(),
    }
}

pub(super) fn retained(topic_name: &str, payload: &'static [u8], qos: QoS, id: u16) -> Publish {
    Publish {
        retain: true,
        ..publish(topic_name, payload, qos, id)
    }
}

/// SUBSCRIBE with one filter and default options (no local off, retain handling 0).
pub(super) fn subscribe(id: u16, filter_text: &str, qos: QoS) -> Subscribe {
    subscribe_opts(id, filter_text, SubscriptionOptions::new(qos), None)
}

pub(super) fn subscribe_opts(
    id: u16,
    filter_text: &str,
    options: SubscriptionOptions,
    subscription_id: Option<u32>,
) -> Subscribe {
    Subscribe {
        packet_id: pid(id),
        subscriptions: vec![Subscription {
            filter: filter(filter_text),
            options,
        }],
        properties: SubscribeProperties {
            subscription_identifier: subscription_id.map(sub_id),
            ..Default::default()
        },
    }
}

pub(super) fn unsubscribe(id: u16, filters: &[&str]) -> Unsubscribe {
    Unsubscribe {
        packet_id: pid(id),
        filters: filters.iter().map(|f| filter(f)).collect(),
        properties: Default::default(),
    }
}

pub(super) fn disconnect(reason: DisconnectReasonCode, expiry: Option<u32>) -> Disconnect {
    let mut disconnect = Disconnect::new(reason);
    disconnect.properties.session_expiry_interval = expiry;
    disconnect
}

/// The payloads of `publishes`, as text, in order.
pub(super) fn payloads(publishes: &[Publish]) -> Vec<String> {
    publishes
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// The actions one event (or several) produced.
#[derive(Debug, Default)]
pub(super) struct Out {
    pub actions: Vec<Action>,
}

impl Out {
    /// Packets sent to `conn`, in order.
    pub fn to(&self, conn: ConnId) -> Vec<Packet> {
        self.actions
            .iter()
            .filter_map(|action| match action {
                Action::Send { conn: c, packet } if *c == conn => Some(packet.clone()),
                _ => None,
            })
            .collect()
    }

    /// PUBLISH packets sent to `conn`, in order.
    pub fn publishes(&self, conn: ConnId) -> Vec<Publish> {
        self.to(conn)
            .into_iter()
            .filter_map(|packet| match packet {
                Packet::Publish(publish) => Some(publish),
                _ => None,
            })
            .collect()
    }

    /// The single PUBLISH sent to `conn`.
    pub fn publish(&self, conn: ConnId) -> Publish {
        let publishes = self.publishes(conn);
        assert_eq!(
            publishes.len(),
            1,
            "expected one PUBLISH: {:#?}",
            self.actions
        );
        publishes.into_iter().next().unwrap()
    }

    /// The single packet sent to `conn`.
    pub fn only(&self, conn: ConnId) -> Packet {
        let packets = self.to(conn);
        assert_eq!(packets.len(), 1, "expected one packet: {:#?}", self.actions);
        packets.into_iter().next().unwrap()
    }

    /// The CONNACK sent to `conn` (it must be the first packet).
    pub fn connack(&self, conn: ConnId) -> ConnAck {
        match self.to(conn).into_iter().next() {
            Some(Packet::ConnAck(connack)) => *connack,
            other => panic!("expected CONNACK first, got {other:?}"),
        }
    }

    /// The reason of the DISCONNECT sent to `conn`, if any.
    pub fn disconnect_reason(&self, conn: ConnId) -> Option<DisconnectReasonCode> {
        self.to(conn).into_iter().find_map(|packet| match packet {
            Packet::Disconnect(disconnect) => Some(disconnect.reason),
            _ => None,
        })
    }

    /// Whether the server was told to close `conn`.
    pub fn closed(&self, conn: ConnId) -> bool {
        self.actions
            .iter()
            .any(|action| matches!(action, Action::Close { conn: c } if *c == conn))
    }

    /// Whether nothing at all happened to `conn`.
    pub fn silent(&self, conn: ConnId) -> bool {
        !self.actions.iter().any(|action| match action {
            Action::Send { conn: c, .. } | Action::Close { conn: c } => *c == conn,
            Action::Forward { .. }
            | Action::ForwardResume { .. }
            | Action::ProbeNode { .. }
            | Action::ForwardAccepted { .. }
            | Action::Replicate(_)
            | Action::Adopt { .. } => false,
        })
    }
}

/// A broker on a [`MemStore`] with a fake clock.
#[derive(Debug)]
pub(super) struct Harness {
    pub broker: Broker<MemStore>,
    pub now: UnixMillis,
    next_conn: u64,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(BrokerConfig::default())
    }

    pub fn with_config(config: BrokerConfig) -> Harness {
        Harness {
            broker: Broker::open(config, MemStore::new(), T0).unwrap(),
            now: T0,
            next_conn: 1,
        }
    }

    /// Feeds one event at the current time and returns its actions.
    pub fn event(&mut self, event: Event) -> Out {
        self.broker.handle(self.now, event).unwrap();
        Out {
            actions: self.broker.take_actions(),
        }
    }

    /// Opens a new connection with `connect`; returns the connection and what it got.
    pub fn connect(&mut self, connect: Connect) -> (ConnId, Out) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let out = self.event(Event::Connect {
            conn,
            connect: Box::new(connect),
            source: None,
            grants: None,
        });
        (conn, out)
    }

    /// Opens a new connection whose session the cluster granted at `epoch`.
    pub fn connect_as(&mut self, connect: Connect, epoch: u64) -> (ConnId, Out) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let out = self.event(Event::ConnectAs {
            conn,
            connect: Box::new(connect),
            epoch: crate::ids::Epoch(epoch),
            assigned: false,
            source: None,
            grants: None,
            principal: None,
        });
        (conn, out)
    }

    /// Connects and asserts the CONNACK accepted the connection.
    pub fn connect_ok(&mut self, connect: Connect) -> ConnId {
        let (conn, out) = self.connect(connect);
        let connack = out.connack(conn);
        assert!(!connack.reason.is_error(), "refused: {connack:?}");
        conn
    }

    pub fn packet(&mut self, conn: ConnId, packet: Packet) -> Out {
        self.event(Event::Packet { conn, packet })
    }

    pub fn publish(&mut self, conn: ConnId, publish: Publish) -> Out {
        self.packet(conn, Packet::Publish(publish))
    }

    /// Subscribes and asserts the SUBACK granted every filter.
    pub fn subscribe(&mut self, conn: ConnId, subscribe: Subscribe) -> Out {
        let out = self.packet(conn, Packet::Subscribe(subscribe));
        let suback = out
            .to(conn)
            .into_iter()
            .find_map(|packet| match packet {
                Packet::SubAck(suback) => Some(suback),
                _ => None,
            })
            .expect("SUBACK");
        assert!(
            suback.reason_codes.iter().all(|code| !code.is_error()),
            "{suback:?}"
        );
        out
    }

    pub fn puback(&mut self, conn: ConnId, id: PacketId) -> Out {
        self.packet(conn, Packet::PubAck(PubAck::new(id)))
    }

    pub fn pubrec(&mut self, conn: ConnId, id: PacketId) -> Out {
        self.packet(conn, Packet::PubRec(PubRec::new(id)))
    }

    pub fn pubrel(&mut self, conn: ConnId, id: PacketId) -> Out {
        self.packet(conn, Packet::PubRel(PubRel::new(id)))
    }

    pub fn pubcomp(&mut self, conn: ConnId, id: PacketId) -> Out {
        self.packet(conn, Packet::PubComp(PubComp::new(id)))
    }

    pub fn disconnect(&mut self, conn: ConnId, disconnect: Disconnect) -> Out {
        self.packet(conn, Packet::Disconnect(disconnect))
    }

    /// A normal DISCONNECT (0x00) without properties.
    pub fn disconnect_normal(&mut self, conn: ConnId) -> Out {
        self.disconnect(
            conn,
            Disconnect::new(DisconnectReasonCode::NormalDisconnection),
        )
    }

    /// The socket of `conn` is gone.
    pub fn lose(&mut self, conn: ConnId) -> Out {
        self.event(Event::Closed {
            conn,
            reason: CloseReason::ConnectionLost,
        })
    }

    /// Moves the clock forward and delivers a Tick.
    pub fn tick_after_millis(&mut self, millis: u64) -> Out {
        self.now = self.now.plus_millis(millis);
        self.event(Event::Tick)
    }

    pub fn tick_after(&mut self, secs: u32) -> Out {
        self.tick_after_millis(u64::from(secs) * 1000)
    }

    pub fn store(&mut self) -> &mut MemStore {
        self.broker.store_mut()
    }

    /// Everything stored but queue contents.
    pub fn loaded(&mut self) -> Loaded {
        self.store().load().unwrap()
    }

    /// The stored session of `id`, if any.
    pub fn stored_session(&mut self, id: &str) -> Option<LoadedSession> {
        self.loaded()
            .sessions
            .into_iter()
            .find(|session| session.client == client(id))
    }

    /// The payloads stored in `id`'s queue, in order.
    pub fn stored_queue(&mut self, id: &str) -> Vec<String> {
        let from = self
            .stored_session(id)
            .map(|s| s.queue.first)
            .unwrap_or_default();
        self.store()
            .read_queue(&client(id), from, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, delivery)| String::from_utf8_lossy(&delivery.message.payload).into_owned())
            .collect()
    }

    /// Packet ids of `id`'s stored in-flight window, in send order.
    pub fn stored_inflight(&mut self, id: &str) -> Vec<u16> {
        self.store()
            .read_inflight(&client(id))
            .unwrap()
            .into_iter()
            .map(|(packet_id, _)| packet_id.get())
            .collect()
    }

    /// Simulates a broker restart (crash or shutdown): a new broker on the same store, `secs`
    /// later, with the same configuration. Connection ids keep counting up.
    pub fn restart_after(&mut self, secs: u32) {
        let store = std::mem::take(self.broker.store_mut());
        let config = self.broker.config().clone();
        self.now = self.now.plus_secs(secs);
        self.broker = Broker::open(config, store, self.now).unwrap();
    }
}

/// A CONNECT for MQTT 5 with the client's receive maximum, maximum packet size and topic alias
/// maximum set.
pub(super) fn v5_limits(
    id: &str,
    receive_maximum: Option<u16>,
    maximum_packet_size: Option<u32>,
    topic_alias_maximum: Option<u16>,
) -> Connect {
    let mut connect = v5(id, true, None);
    connect.properties.receive_maximum = receive_maximum.and_then(NonZeroU16::new);
    connect.properties.maximum_packet_size = maximum_packet_size.and_then(NonZeroU32::new);
    connect.properties.topic_alias_maximum = topic_alias_maximum;
    connect
}

/// A takeover's fallback for a 3.1.1 session at `epoch` (its old owner could not be reached):
/// the registry's `subscriptions` and nothing else, its QoS 2 state elsewhere.
pub(super) fn fallback(
    epoch: u64,
    subscriptions: Vec<(TopicFilter, crate::store::SubscriptionRecord)>,
) -> Box<crate::cluster::SessionExport> {
    let mut export = late_copy(Vec::new(), Vec::new(), Vec::new());
    export.record.epoch = crate::ids::Epoch(epoch);
    export.record.qos2_state_elsewhere = true;
    export.subscriptions = subscriptions;
    export
}

/// The state of a copy recovered late (`Event::ImportLate`), with what a test gives of it.
pub(super) fn late_copy(
    inflight: Vec<(PacketId, crate::store::InflightRecord)>,
    incoming_qos2: Vec<PacketId>,
    seen: Vec<crate::ids::MessageId>,
) -> Box<crate::cluster::SessionExport> {
    Box::new(crate::cluster::SessionExport {
        record: crate::store::SessionRecord {
            epoch: crate::ids::Epoch(1),
            protocol: ProtocolVersion::V3_1_1,
            expiry: crate::store::SessionExpiry::Never,
            expires_at: None,
            will: None,
            will_due_at: None,
            qos2_state_elsewhere: false,
            incoming_qos2_elsewhere: false,
            qos2_doubt: Default::default(),
            landed: crate::ids::Epoch(1),
        },
        subscriptions: Vec::new(),
        inflight,
        incoming_qos2,
        queued: 0,
        seen,
        qos2_retry: Vec::new(),
        served: None,
    })
}
