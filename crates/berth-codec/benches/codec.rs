//! Encode/decode cost of the packets on the broker's hot path: a 64-byte QoS 1 PUBLISH and a
//! CONNECT, in MQTT 3.1.1 and 5.0. Run with `cargo bench -p berth-codec`.

#![allow(clippy::unwrap_used)] // a benchmark with a bad fixture should stop loudly

use std::hint::black_box;

use berth_codec::{
    Connect, ConnectProperties, DecodeOptions, MqttString, Packet, PacketId, ProtocolVersion,
    Publish, QoS, TopicName, decode, encode,
};
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn publish_qos1() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::parse("sensors/building-7/floor-3/temperature").unwrap(),
        packet_id: PacketId::new(4242),
        payload: Bytes::from(vec![0x5A; 64]),
        properties: Default::default(),
    })
}

fn connect(protocol: ProtocolVersion) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: false,
        keep_alive: 60,
        client_id: MqttString::new("device-000123456").unwrap(),
        will: None,
        username: Some(MqttString::new("fleet").unwrap()),
        password: Some(Bytes::from_static(b"secret-token")),
        properties: if protocol.is_v5() {
            ConnectProperties {
                session_expiry_interval: Some(300),
                ..Default::default()
            }
        } else {
            ConnectProperties::default()
        },
    }))
}

fn bench_packet(c: &mut Criterion, name: &str, packet: &Packet, version: ProtocolVersion) {
    let mut wire = BytesMut::new();
    encode(packet, version, &mut wire).unwrap();
    let wire = wire.freeze();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            encode(black_box(packet), version, &mut out).unwrap();
            black_box(&out);
        })
    });
    let opts = DecodeOptions::new(version);
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&wire[..]);
            black_box(decode(black_box(&mut buf), &opts).unwrap());
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    let publish = publish_qos1();
    bench_packet(
        c,
        "publish_qos1_64B_v311",
        &publish,
        ProtocolVersion::V3_1_1,
    );
    bench_packet(c, "publish_qos1_64B_v5", &publish, ProtocolVersion::V5);
    bench_packet(
        c,
        "connect_v311",
        &connect(ProtocolVersion::V3_1_1),
        ProtocolVersion::V3_1_1,
    );
    bench_packet(
        c,
        "connect_v5",
        &connect(ProtocolVersion::V5),
        ProtocolVersion::V5,
    );
}

criterion_group!(benches, codec);
criterion_main!(benches);
