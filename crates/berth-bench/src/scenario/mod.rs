//! The scenarios. Each builds its connections, drives them, and returns a `Report`.
//!
//! - `traffic`: fan-in (also with a persistent subscriber), fan-out, pairs and latency —
//!   publishers and subscribers wired by a `traffic::Topology`;
//! - `offline`: offline-queue;
//! - `conns`: idle connections;
//! - `sessions`: offline persistent sessions with queued messages;
//! - `storm`: reconnect-storm, the same sessions all coming back at once;
//! - `takeover`: a persistent session moving between cluster nodes.

pub mod conns;
pub mod offline;
pub mod sessions;
pub mod storm;
pub mod takeover;
pub mod traffic;

use anyhow::anyhow;
use berth_codec::{TopicFilter, TopicName};

use crate::cli::Settings;
use crate::conn::{ConnectSpec, SessionKind};

pub fn topic(text: &str) -> anyhow::Result<TopicName> {
    TopicName::parse(text).map_err(|e| anyhow!("topic {text:?}: {e}"))
}

pub fn filter(text: &str) -> anyhow::Result<TopicFilter> {
    TopicFilter::parse(text).map_err(|e| anyhow!("topic filter {text:?}: {e}"))
}

/// Topics of this run start with this.
pub fn prefix(s: &Settings) -> String {
    format!("berth-bench/{}", s.run_id)
}

pub fn connect_spec(s: &Settings, client_id: String, session: SessionKind) -> ConnectSpec {
    ConnectSpec {
        version: s.version,
        client_id,
        session,
        keep_alive: s.keep_alive,
        tls: s.tls.clone(),
    }
}

/// `8 → 1, MQTT 3.1.1, QoS 1, 64 B` and the limits.
pub fn describe(s: &Settings, shape: &str) -> String {
    let mut text = format!(
        "{shape}, MQTT {}, QoS {}, {} B",
        s.version_name(),
        s.qos_number(),
        s.payload
    );
    if let Some(d) = s.duration_or_default() {
        text.push_str(&format!(", {:.0} s", d.as_secs_f64()));
    }
    if let Some(m) = s.messages {
        text.push_str(&format!(", {m} msgs/publisher"));
    }
    if let Some(r) = s.rate {
        text.push_str(&format!(", {r:.0} msg/s"));
    }
    text
}

/// Seconds between two instants as a positive divisor.
pub fn seconds(from: std::time::Instant, to: std::time::Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64().max(1e-9)
}

/// Connects as `client_id`, subscribes to `filter_text` at QoS 1 and disconnects normally: how
/// the memory scenarios create a session (persistent `kind`) or pass through one (clean).
pub async fn subscribe_and_leave(
    s: &Settings,
    client_id: String,
    kind: SessionKind,
    filter_text: &str,
) -> anyhow::Result<()> {
    use anyhow::Context;

    let spec = connect_spec(s, client_id, kind);
    let mut conn = crate::conn::Conn::connect(s.addr, &spec, s.timeout).await?;
    conn.subscribe(
        &[filter(filter_text)?],
        berth_codec::QoS::AtLeastOnce,
        s.timeout,
    )
    .await
    .context("SUBSCRIBE")?;
    conn.disconnect(s.timeout).await
}

/// Connections and sessions the memory scenarios make and discard before their first RSS
/// reading.
const WARM_UP: u32 = 64;

/// Runs the broker once through the paths a memory scenario measures (CONNECT, SUBSCRIBE, and
/// with `persistent` a queued QoS 1 message per session), then ends those sessions again.
///
/// Why: a broker's first connections page in code and grow allocator and storage structures
/// once. Counted against the measured connections, that fixed cost reads as memory per
/// connection (on a 10,000-connection run, 10 MB of code pages are 1 KB "per connection").
/// Both brokers get the same warm-up.
pub async fn warm_up(s: &Settings, persistent: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    use berth_codec::{Packet, PacketId, Publish, QoS};

    use crate::conn::Conn;

    let p = prefix(s);
    let id = |i: u32| format!("bb{}-warm{i}", s.run_id);
    let kind = if persistent {
        SessionKind::Persistent { fresh: true }
    } else {
        SessionKind::Clean
    };
    for i in 0..WARM_UP {
        subscribe_and_leave(s, id(i), kind, &format!("{p}/warm/{i}"))
            .await
            .context("warm-up")?;
    }
    if !persistent {
        return Ok(());
    }
    let spec = connect_spec(s, format!("bb{}-warmpub", s.run_id), SessionKind::Clean);
    let mut publisher = Conn::connect(s.addr, &spec, s.timeout).await?;
    for i in 0..WARM_UP {
        let packet_id = PacketId::new(1).context("packet id")?;
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic(&format!("{p}/warm/{i}"))?,
            packet_id: Some(packet_id),
            payload: bytes::Bytes::from(vec![b'.'; s.payload]),
            properties: Default::default(),
        };
        publisher.send(&Packet::Publish(publish)).await?;
        match tokio::time::timeout(s.timeout, publisher.recv_unbounded()).await {
            Ok(Ok(Packet::PubAck(ack))) if ack.packet_id == packet_id => {}
            Ok(Ok(other)) => anyhow::bail!("warm-up: expected PUBACK, got {other:?}"),
            Ok(Err(e)) => return Err(e.context("warm-up PUBLISH")),
            Err(_) => anyhow::bail!("warm-up: no PUBACK within {:?}", s.timeout),
        }
    }
    publisher.disconnect(s.timeout).await?;
    // A clean reconnect discards each warm-up session and its queued message.
    for i in 0..WARM_UP {
        let conn = Conn::connect(
            s.addr,
            &connect_spec(s, id(i), SessionKind::Clean),
            s.timeout,
        )
        .await?;
        conn.disconnect(s.timeout).await?;
    }
    Ok(())
}
