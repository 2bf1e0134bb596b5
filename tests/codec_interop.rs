//! The codec against real third-party clients: Debian's `mosquitto_pub` and `mosquitto_sub`
//! (mosquitto-clients, installed by scripts/setup.sh) talk to a tiny scripted server built on
//! `berth-codec` over a real TCP socket on 127.0.0.1:0.
//!
//! Each test proves both directions: the packets the client sends decode to the expected typed
//! values, and the client accepts what Berth's encoder answers (CONNACK, PUBACK, PUBREC, PUBCOMP,
//! SUBACK, PUBLISH with properties and topic aliases), or it would exit with an error.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroU16;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_codec::{
    ConnAck, ConnAckProperties, DecodeOptions, MqttString, Packet, PacketId, PayloadFormat,
    ProtocolVersion, PubAck, PubComp, PubRec, Publish, PublishProperties, QoS, SubAck,
    SubAckReasonCode, SubscriptionId, TopicName, UserProperty, decode, encode,
};
use berth_e2e::{accept_within, stdout_of, wait_within};
use bytes::{Bytes, BytesMut};

const WAIT: Duration = Duration::from_secs(10);

/// A scripted server side of one connection.
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl Peer {
    fn accept(listener: &TcpListener) -> Peer {
        let stream = accept_within(listener, WAIT).expect("client connects");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        Peer {
            stream,
            buf: BytesMut::new(),
            version: ProtocolVersion::V5,
        }
    }

    /// The next packet the client sends, decoded under the version its CONNECT announced.
    fn recv(&mut self) -> Packet {
        loop {
            let opts = DecodeOptions::new(self.version);
            if let Some(packet) = decode(&mut self.buf, &opts).expect("client sends valid packets")
            {
                if let Packet::Connect(connect) = &packet {
                    self.version = connect.protocol;
                }
                return packet;
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .expect("client keeps talking within the timeout");
            assert!(
                n > 0,
                "client closed the connection early; buffered: {:?}",
                self.buf
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, self.version, &mut out).expect("encodable");
        self.stream.write_all(&out).expect("write to client");
    }
}

fn spawn(program: &str, port: u16, args: &[&str]) -> Child {
    Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|err| panic!("{program} must be installed (scripts/setup.sh): {err}"))
}

fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = listener.local_addr().expect("local addr").port();
    (listener, port)
}

fn text(s: &str) -> MqttString {
    MqttString::new(s).expect("valid string")
}

fn expect_success(child: &mut Child) -> String {
    let status = wait_within(child, WAIT).expect("client exits");
    let out = stdout_of(child);
    assert!(
        status.success(),
        "client failed with {status}; stdout: {out}"
    );
    out
}

#[test]
fn mosquitto_pub_v31_qos1_with_will_and_credentials() {
    let (listener, port) = listener();
    let mut child = spawn(
        "mosquitto_pub",
        port,
        &[
            "-V",
            "mqttv31",
            "-i",
            "pub31",
            "-q",
            "1",
            "-t",
            "sensors/a",
            "-m",
            "hello 3.1",
            "-u",
            "fleet",
            "-P",
            "s3cret",
            "--will-topic",
            "will/pub31",
            "--will-payload",
            "gone",
            "--will-qos",
            "1",
            "--will-retain",
        ],
    );
    let mut peer = Peer::accept(&listener);
    let Packet::Connect(connect) = peer.recv() else {
        panic!("expected CONNECT")
    };
    assert_eq!(connect.protocol, ProtocolVersion::V3_1);
    assert!(connect.clean_start);
    assert_eq!(connect.client_id, "pub31");
    assert_eq!(connect.username, Some(text("fleet")));
    assert_eq!(connect.password.as_deref(), Some(&b"s3cret"[..]));
    let will = connect.will.as_ref().expect("will");
    assert_eq!(will.topic.as_str(), "will/pub31");
    assert_eq!(&will.payload[..], b"gone");
    assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, true));
    peer.send(Packet::ConnAck(Box::new(ConnAck::accepted(false))));

    let Packet::Publish(publish) = peer.recv() else {
        panic!("expected PUBLISH")
    };
    assert_eq!(
        (publish.topic.as_str(), &publish.payload[..]),
        ("sensors/a", &b"hello 3.1"[..])
    );
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    let id = publish.packet_id.expect("packet id");
    peer.send(Packet::PubAck(PubAck::new(id)));
    assert!(matches!(peer.recv(), Packet::Disconnect(_)));
    expect_success(&mut child);
}

#[test]
fn mosquitto_pub_v311_qos2_retained_persistent_session() {
    let (listener, port) = listener();
    let mut child = spawn(
        "mosquitto_pub",
        port,
        &[
            "-V", "mqttv311", "-i", "pub311", "-c", "-q", "2", "-r", "-t", "t/q2", "-m", "exactly",
        ],
    );
    let mut peer = Peer::accept(&listener);
    let Packet::Connect(connect) = peer.recv() else {
        panic!("expected CONNECT")
    };
    assert_eq!(connect.protocol, ProtocolVersion::V3_1_1);
    assert!(!connect.clean_start, "-c asks for a persistent session");
    peer.send(Packet::ConnAck(Box::new(ConnAck::accepted(false))));

    let Packet::Publish(publish) = peer.recv() else {
        panic!("expected PUBLISH")
    };
    assert_eq!((publish.qos, publish.retain), (QoS::ExactlyOnce, true));
    let id = publish.packet_id.expect("packet id");
    peer.send(Packet::PubRec(PubRec::new(id)));
    let Packet::PubRel(rel) = peer.recv() else {
        panic!("expected PUBREL")
    };
    assert_eq!(rel.packet_id, id);
    peer.send(Packet::PubComp(PubComp::new(id)));
    assert!(matches!(peer.recv(), Packet::Disconnect(_)));
    expect_success(&mut child);
}

#[test]
fn mosquitto_pub_v5_properties_both_ways() {
    let (listener, port) = listener();
    let mut child = spawn(
        "mosquitto_pub",
        port,
        &[
            "-V",
            "mqttv5",
            "-i",
            "pub5",
            "-q",
            "1",
            "-t",
            "t/v5",
            "-m",
            "{\"t\":21.5}",
            "-x",
            "300",
            "-D",
            "connect",
            "receive-maximum",
            "20",
            "-D",
            "connect",
            "user-property",
            "fleet",
            "north",
            "-D",
            "publish",
            "user-property",
            "k1",
            "v1",
            "-D",
            "publish",
            "user-property",
            "k2",
            "v2",
            "-D",
            "publish",
            "message-expiry-interval",
            "60",
            "-D",
            "publish",
            "content-type",
            "application/json",
            "-D",
            "publish",
            "response-topic",
            "reply/pub5",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
            "--will-topic",
            "will/pub5",
            "--will-payload",
            "bye",
            "-D",
            "will",
            "will-delay-interval",
            "10",
        ],
    );
    let mut peer = Peer::accept(&listener);
    let Packet::Connect(connect) = peer.recv() else {
        panic!("expected CONNECT")
    };
    assert_eq!(connect.protocol, ProtocolVersion::V5);
    assert_eq!(connect.properties.session_expiry_interval, Some(300));
    assert_eq!(connect.properties.receive_maximum, NonZeroU16::new(20));
    assert_eq!(
        connect.properties.user_properties,
        vec![UserProperty::new(text("fleet"), text("north"))]
    );
    let will = connect.will.as_ref().expect("will");
    assert_eq!(will.properties.will_delay_interval, Some(10));

    let properties = ConnAckProperties {
        receive_maximum: NonZeroU16::new(5),
        topic_alias_maximum: Some(10),
        retain_available: Some(true),
        shared_subscription_available: Some(true),
        reason_string: Some(text("welcome aboard")),
        user_properties: vec![UserProperty::new(text("node"), text("1"))],
        ..Default::default()
    };
    peer.send(Packet::ConnAck(Box::new(ConnAck {
        properties,
        ..ConnAck::accepted(false)
    })));

    let Packet::Publish(publish) = peer.recv() else {
        panic!("expected PUBLISH")
    };
    let props = &publish.properties;
    assert_eq!(props.message_expiry_interval, Some(60));
    assert_eq!(props.content_type, Some(text("application/json")));
    assert_eq!(
        props.response_topic.as_ref().map(TopicName::as_str),
        Some("reply/pub5")
    );
    assert_eq!(props.payload_format_indicator, Some(PayloadFormat::Utf8));
    assert_eq!(
        props.user_properties,
        vec![
            UserProperty::new(text("k1"), text("v1")),
            UserProperty::new(text("k2"), text("v2"))
        ]
    );
    let id = publish.packet_id.expect("packet id");
    let mut ack = PubAck::new(id);
    ack.properties.reason_string = Some(text("stored"));
    peer.send(Packet::PubAck(ack));
    assert!(matches!(peer.recv(), Packet::Disconnect(_)));
    expect_success(&mut child);
}

#[test]
fn mosquitto_sub_v311_receives_a_berth_encoded_publish() {
    let (listener, port) = listener();
    let mut child = spawn(
        "mosquitto_sub",
        port,
        &[
            "-V",
            "mqttv311",
            "-i",
            "sub311",
            "-q",
            "1",
            "-t",
            "sensors/#",
            "-C",
            "1",
            "-v",
        ],
    );
    let mut peer = Peer::accept(&listener);
    assert!(matches!(peer.recv(), Packet::Connect(_)));
    peer.send(Packet::ConnAck(Box::new(ConnAck::accepted(false))));
    let Packet::Subscribe(subscribe) = peer.recv() else {
        panic!("expected SUBSCRIBE")
    };
    assert_eq!(subscribe.subscriptions.len(), 1);
    assert_eq!(subscribe.subscriptions[0].filter.as_str(), "sensors/#");
    assert_eq!(subscribe.subscriptions[0].options.qos, QoS::AtLeastOnce);
    peer.send(Packet::SubAck(SubAck {
        packet_id: subscribe.packet_id,
        reason_codes: vec![SubAckReasonCode::GrantedQoS1],
        properties: Default::default(),
    }));

    let id = PacketId::new(7).expect("non-zero");
    peer.send(Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        packet_id: Some(id),
        ..Publish::at_most_once(
            TopicName::parse("sensors/x").expect("topic"),
            Bytes::from_static(b"from berth"),
        )
    }));
    let Packet::PubAck(ack) = peer.recv() else {
        panic!("expected PUBACK")
    };
    assert_eq!(ack.packet_id, id);
    assert!(matches!(peer.recv(), Packet::Disconnect(_)));
    assert_eq!(
        expect_success(&mut child).trim_end(),
        "sensors/x from berth"
    );
}

#[test]
fn mosquitto_sub_v5_topic_alias_and_subscription_identifier() {
    let (listener, port) = listener();
    let mut child = spawn(
        "mosquitto_sub",
        port,
        &[
            "-V",
            "mqttv5",
            "-i",
            "sub5",
            "-q",
            "1",
            "-t",
            "a/+",
            "-C",
            "2",
            "-D",
            "connect",
            "topic-alias-maximum",
            "5",
            "-D",
            "subscribe",
            "subscription-identifier",
            "42",
            "-F",
            "%t|%p|%S|%C",
        ],
    );
    let mut peer = Peer::accept(&listener);
    let Packet::Connect(connect) = peer.recv() else {
        panic!("expected CONNECT")
    };
    assert_eq!(connect.properties.topic_alias_maximum, Some(5));
    peer.send(Packet::ConnAck(Box::new(ConnAck::accepted(false))));
    let Packet::Subscribe(subscribe) = peer.recv() else {
        panic!("expected SUBSCRIBE")
    };
    assert_eq!(
        subscribe.properties.subscription_identifier,
        SubscriptionId::new(42)
    );
    peer.send(Packet::SubAck(SubAck {
        packet_id: subscribe.packet_id,
        reason_codes: vec![SubAckReasonCode::GrantedQoS1],
        properties: Default::default(),
    }));

    // Both messages carry the topic and set alias 1 (re-mapping an alias is allowed). The alias-only
    // form (empty topic) is covered byte for byte in berth-codec's tests: libmosquitto 2.0.11
    // does not resolve server-to-client aliases and closes with a protocol error if sent one.
    let alias = NonZeroU16::new(1);
    let sub_ids = vec![SubscriptionId::new(42).expect("valid id")];
    for n in 1u16..=2 {
        let topic = TopicName::parse("a/b").expect("topic");
        peer.send(Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            packet_id: PacketId::new(n),
            properties: PublishProperties {
                topic_alias: alias,
                subscription_identifiers: sub_ids.clone(),
                content_type: Some(text("text/plain")),
                ..Default::default()
            }
            .into(),
            ..Publish::at_most_once(topic, Bytes::from(format!("msg{n}")))
        }));
        let Packet::PubAck(ack) = peer.recv() else {
            panic!("expected PUBACK")
        };
        assert_eq!(ack.packet_id.get(), n);
    }
    assert!(matches!(peer.recv(), Packet::Disconnect(_)));
    let out = expect_success(&mut child);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["a/b|msg1|42|text/plain", "a/b|msg2|42|text/plain"]);
}
