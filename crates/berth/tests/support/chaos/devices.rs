//! The chaos test's devices: persistent sessions (3.1.1 Clean Session 0, 5.0 Clean Start 0 +
//! Session Expiry 3600), each subscribed at QoS 1 to `chaos/dN`, hopping: connect through
//! haproxy (or straight to a node, forcing a takeover), receive and acknowledge for a few
//! seconds, drop the socket without DISCONNECT, stay away a moment. Every PUBLISH received and
//! every connection attempt is recorded for the checker. Then the final drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_codec::{
    Connect, Packet, ProtocolVersion, PubAck, QoS, Subscribe, Subscription, SubscriptionOptions,
};
use berth_e2e::client::{connect_packet, connect_v5, filter};

use super::checker::{DeviceConn, SAME};
use super::conn::Conn;
use super::{Rng, Shared};

/// A takeover whose old owner does not answer waits up to 10 s (plus a commit): a CONNACK
/// later than this counts as a failed attempt.
pub const CONNACK_WAIT: Duration = Duration::from_secs(25);

pub fn device_version(idx: usize) -> ProtocolVersion {
    if idx.is_multiple_of(2) {
        ProtocolVersion::V3_1_1
    } else {
        ProtocolVersion::V5
    }
}

fn device_connect(idx: usize) -> Connect {
    let id = format!("chaos-dev-{idx}");
    match device_version(idx) {
        ProtocolVersion::V5 => connect_v5(&id, false, Some(3600)),
        version => connect_packet(version, &id, false),
    }
}

/// Records and acknowledges what arrives on `conn`; `Err` when the connection is gone.
async fn receive(
    shared: &Shared,
    idx: usize,
    conn: &mut Conn,
    wait: Duration,
    drain: bool,
) -> Result<Option<Packet>, String> {
    match conn.recv(wait).await? {
        Some(Packet::Publish(p)) => {
            shared.records().deliver(
                idx,
                p.topic.as_str(),
                &p.payload,
                (p.dup, conn.serial),
                drain,
            );
            if let Some(id) = p.packet_id {
                conn.send(&Packet::PubAck(PubAck::new(id))).await?;
            }
            Ok(None)
        }
        Some(Packet::Disconnect(d)) => Err(format!("DISCONNECT {:?}", d.reason)),
        other => Ok(other),
    }
}

async fn subscribe(shared: &Shared, idx: usize, conn: &mut Conn) -> Result<(), String> {
    let packet_id = conn.next_packet_id();
    conn.send(&Packet::Subscribe(Subscribe {
        packet_id,
        subscriptions: vec![Subscription {
            filter: filter(&format!("chaos/d{idx}")),
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        }],
        properties: Default::default(),
    }))
    .await?;
    let deadline = Instant::now() + CONNACK_WAIT;
    while Instant::now() < deadline {
        if let Some(Packet::SubAck(suback)) =
            receive(shared, idx, conn, Duration::from_millis(500), false).await?
        {
            return match suback.reason_codes.first() {
                Some(code) if !code.is_error() => Ok(()),
                other => Err(format!("SUBACK {other:?}")),
            };
        }
    }
    Err("no SUBACK".into())
}

/// Connects device `idx` to `target`; `None` when the attempt failed or the run stops. Every
/// attempt is recorded (when it began, where, what came of it) for the checker's explanations.
async fn connect(
    shared: &Shared,
    idx: usize,
    target: (SocketAddr, String),
    had_session: bool,
) -> Option<(Conn, bool, Duration)> {
    let began = shared.records().now();
    let attempt = async {
        let mut conn = Conn::open(target.0, device_version(idx), CONNACK_WAIT)
            .await
            .map_err(|e| (0, e))?;
        match conn.handshake(device_connect(idx), CONNACK_WAIT).await {
            Ok(connack) => Ok((conn, connack)),
            Err(e) => Err((conn.local_port, e)),
        }
    };
    let result = tokio::select! {
        r = attempt => r,
        () = shared.until_stopped() => return None,
    };
    let mut records = shared.records();
    let took = records.now().saturating_sub(began).as_secs_f64();
    let mut record = |port: u16, outcome: String| {
        records.device_conns[idx].push(DeviceConn {
            at: began,
            target: target.1.clone(),
            port,
            outcome: format!("{outcome} after {took:.2}s"),
        })
    };
    let (conn, connack) = match result {
        Ok(ok) => ok,
        Err((port, error)) => {
            record(port, format!("failed: {error}"));
            records.count("device connect attempts failed (no CONNACK)");
            return None;
        }
    };
    if connack.reason.is_error() {
        record(conn.local_port, format!("refused {:?}", connack.reason));
        records.count(&format!("device CONNACK refused: {:?}", connack.reason));
        return None;
    }
    record(
        conn.local_port,
        format!("session present {}", connack.session_present),
    );
    records.count(if target.1 == "lb" {
        "device connections via haproxy"
    } else {
        "device connections straight to a node"
    });
    if had_session && !connack.session_present {
        let at = records.now();
        records.lost_session_at.push((idx, at));
        records.lost_sessions.push(format!(
            "device {idx} at {:.2}s via {} (port {})",
            at.as_secs_f64(),
            target.1,
            conn.local_port
        ));
        records.event(format!("LOST SESSION: device {idx} got Session Present 0"));
    }
    Some((conn, connack.session_present, began))
}

/// Hops until the run stops. `ready` counts devices subscribed at least once.
pub async fn device(shared: Arc<Shared>, idx: usize, mut rng: Rng, ready: Arc<AtomicUsize>) {
    let mut subscribed = false;
    let mut ever_subscribed = false;
    let mut had_session = false;
    // When the attempt that found its session lost began, until subscribed again.
    let mut reset: Option<Duration> = None;
    while !shared.stopped() {
        let faulty = shared.faulty.load(Ordering::Acquire);
        let target = if subscribed && rng.chance(30) {
            let choices: Vec<u64> = (1..=shared.nodes.len() as u64)
                .filter(|id| *id != faulty)
                .collect();
            let id = choices[rng.range(0, choices.len() as u64 - 1) as usize];
            (shared.nodes[id as usize - 1], format!("n{id}"))
        } else {
            (shared.lb, "lb".to_string())
        };
        let Some((mut conn, present, began)) = connect(&shared, idx, target, had_session).await
        else {
            tokio::time::sleep(rng.millis(200, 800)).await;
            continue;
        };
        if had_session && !present {
            subscribed = false;
            reset.get_or_insert(began);
        }
        had_session = true;
        if !subscribed {
            let result = subscribe(&shared, idx, &mut conn).await;
            let failed = {
                let mut records = shared.records();
                let at = records.now();
                records.device_conns[idx].push(DeviceConn {
                    at,
                    target: SAME.into(),
                    port: conn.local_port,
                    outcome: match &result {
                        Ok(()) => "SUBACK granted".into(),
                        Err(error) => format!("SUBSCRIBE failed: {error}"),
                    },
                });
                match &result {
                    Err(error) => {
                        records.count(&format!("device SUBSCRIBE failed: {error}"));
                        true
                    }
                    Ok(()) => {
                        if let Some(began) = reset.take() {
                            records.reset_windows.push((idx, began..at));
                        }
                        false
                    }
                }
            };
            if failed {
                tokio::time::sleep(rng.millis(200, 800)).await;
                continue;
            }
            if !ever_subscribed {
                ever_subscribed = true;
                ready.fetch_add(1, Ordering::AcqRel);
            }
            subscribed = true;
        }
        let until = Instant::now() + rng.millis(500, 5000);
        while !shared.stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Err(error) = receive(
                &shared,
                idx,
                &mut conn,
                left.min(Duration::from_millis(500)),
                false,
            )
            .await
            {
                shared
                    .records()
                    .count(&format!("device connection lost: {}", short(&error)));
                break;
            }
        }
        // Abruptly: the broker sees a network error, the session stays.
        drop(conn);
        if !shared.stopped() {
            tokio::time::sleep(rng.millis(0, 2500)).await;
        }
    }
}

/// An error without its changing details (ports, errno text), for counting.
fn short(error: &str) -> String {
    error
        .split([':', '('])
        .next()
        .unwrap_or(error)
        .trim()
        .to_string()
}

/// The final drain: connects through haproxy (Clean Start 0) and receives until `quiet` is
/// set; `connected` counts devices connected.
pub async fn drain(
    shared: Arc<Shared>,
    idx: usize,
    quiet: Arc<AtomicBool>,
    connected: Arc<AtomicUsize>,
) {
    let mut counted = false;
    while !quiet.load(Ordering::Acquire) {
        let attempt = Conn::connect(shared.lb, device_connect(idx), CONNACK_WAIT).await;
        let mut conn = match attempt {
            Ok((conn, connack)) if !connack.reason.is_error() => {
                let mut records = shared.records();
                let at = records.now();
                records.device_conns[idx].push(DeviceConn {
                    at,
                    target: "lb".into(),
                    port: conn.local_port,
                    outcome: format!("session present {} (drain)", connack.session_present),
                });
                if !connack.session_present {
                    records.lost_session_at.push((idx, at));
                    records.lost_sessions.push(format!(
                        "device {idx} at {:.2}s in the final drain",
                        at.as_secs_f64()
                    ));
                    records.event(format!("LOST SESSION: device {idx} in the final drain"));
                }
                conn
            }
            _ => {
                shared.records().count("drain connect attempts failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if !counted {
            counted = true;
            connected.fetch_add(1, Ordering::AcqRel);
        }
        while !quiet.load(Ordering::Acquire) {
            if receive(&shared, idx, &mut conn, Duration::from_millis(250), true)
                .await
                .is_err()
            {
                shared.records().count("drain connection lost");
                break;
            }
        }
    }
}
