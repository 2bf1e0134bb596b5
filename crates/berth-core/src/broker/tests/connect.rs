//! Session lifetime: Clean Session / Clean Start, Session Expiry Interval, Session Present,
//! client identifiers, and takeover of a connected client id.

use berth_codec::{ConnectReasonCode, DisconnectReasonCode, Packet, ProtocolVersion, QoS, encode};
use bytes::BytesMut;

use super::*;
use crate::config::SessionConfig;
use crate::store::SessionExpiry;

/// 3.1.1 Clean Session = 0: the session outlives the connection for the configured v3 expiry.
#[test]
fn v3_persistent_session_is_resumed_and_expires_after_the_v3_default() {
    let mut h = Harness::new();
    let (conn, out) = h.connect(v3("dev", false));
    assert!(!out.connack(conn).session_present, "nothing to resume yet");
    h.subscribe(conn, subscribe(1, "cmd/#", QoS::AtLeastOnce));
    h.disconnect_normal(conn);

    let stored = h.stored_session("dev").expect("persistent session stored");
    assert_eq!(stored.record.expiry, SessionExpiry::After(2 * 60 * 60));
    assert_eq!(stored.record.expires_at, Some(h.now.plus_secs(7200)));
    assert_eq!(stored.subscriptions.len(), 1);

    // Just before the deadline it is still there and is resumed.
    h.tick_after(7199);
    let (conn, out) = h.connect(v3("dev", false));
    assert!(out.connack(conn).session_present);
    h.lose(conn);

    // After two hours offline, a Tick ends it.
    let stats_before = h.broker.stats().sessions_expired_total;
    h.tick_after(7199);
    assert!(h.stored_session("dev").is_some());
    h.tick_after(1);
    assert!(h.stored_session("dev").is_none());
    assert_eq!(h.broker.stats().sessions_expired_total, stats_before + 1);
    assert_eq!(h.broker.stats().sessions, 0);

    let (conn, out) = h.connect(v3("dev", false));
    assert!(!out.connack(conn).session_present);
}

#[test]
fn v3_clean_session_ends_with_the_connection() {
    let mut h = Harness::new();
    let (conn, out) = h.connect(v3("dev", true));
    assert!(!out.connack(conn).session_present);
    h.subscribe(conn, subscribe(1, "cmd/#", QoS::AtLeastOnce));
    assert!(
        h.stored_session("dev").is_none(),
        "a clean session is never stored"
    );
    h.disconnect_normal(conn);
    assert_eq!(h.broker.stats().sessions, 0);

    let (conn, out) = h.connect(v3("dev", false));
    assert!(!out.connack(conn).session_present);
    // The old subscription is gone with its session.
    let publisher = h.connect_ok(v3("pub", true));
    let out = h.publish(publisher, publish("cmd/x", b"x", QoS::AtLeastOnce, 1));
    assert!(out.publishes(conn).is_empty());
}

#[test]
fn v3_clean_session_discards_a_stored_session_and_reports_it_absent() {
    let mut h = Harness::new();
    let conn = h.connect_ok(v3("dev", false));
    h.subscribe(conn, subscribe(1, "cmd/#", QoS::AtLeastOnce));
    h.disconnect_normal(conn);

    let (conn, out) = h.connect(v3("dev", true));
    assert!(!out.connack(conn).session_present);
    assert!(h.stored_session("dev").is_none());
    let publisher = h.connect_ok(v3("pub", true));
    let out = h.publish(publisher, publish("cmd/x", b"x", QoS::AtLeastOnce, 1));
    assert!(
        out.publishes(conn).is_empty(),
        "subscriptions were discarded"
    );
}

#[test]
fn v3_empty_client_id_with_clean_session_0_is_refused_with_return_code_2() {
    let mut h = Harness::new();
    let (conn, out) = h.connect(v3("", false));
    let connack = out.connack(conn);
    assert_eq!(connack.reason, ConnectReasonCode::ClientIdentifierNotValid);
    assert!(!connack.session_present);
    assert!(out.closed(conn));
    let mut wire = BytesMut::new();
    encode(
        &Packet::ConnAck(Box::new(connack)),
        ProtocolVersion::V3_1_1,
        &mut wire,
    )
    .unwrap();
    assert_eq!(&wire[..], [0x20, 0x02, 0x00, 0x02]);
    assert_eq!(h.broker.stats().sessions, 0);
}

#[test]
fn v3_empty_client_id_with_clean_session_1_is_accepted() {
    let mut h = Harness::new();
    let (conn, out) = h.connect(v3("", true));
    let connack = out.connack(conn);
    assert_eq!(connack.reason, ConnectReasonCode::Success);
    assert_eq!(connack.properties.assigned_client_identifier, None);
    assert!(!out.closed(conn));
}

#[test]
fn v5_empty_client_id_gets_an_assigned_client_identifier() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect(v5("", false, Some(60)));
    let (b, out_b) = h.connect(v5("", true, None));
    let id_a = out_a
        .connack(a)
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    let id_b = out_b
        .connack(b)
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    assert!(!id_a.is_empty());
    assert_ne!(id_a, id_b, "assigned identifiers are unique");
    // The session is keyed by the assigned identifier and can be resumed with it.
    h.disconnect_normal(a);
    assert!(h.stored_session(id_a.as_str()).is_some());
    let (again, out) = h.connect(v5(id_a.as_str(), false, Some(60)));
    assert!(out.connack(again).session_present);
}

#[test]
fn v5_absent_or_zero_expiry_ends_the_session_with_the_connection() {
    for expiry in [None, Some(0)] {
        let mut h = Harness::new();
        let conn = h.connect_ok(v5("dev", false, expiry));
        h.subscribe(conn, subscribe(1, "a", QoS::AtLeastOnce));
        assert!(h.stored_session("dev").is_none(), "expiry {expiry:?}");
        h.lose(conn);
        assert_eq!(h.broker.stats().sessions, 0);
        let (conn, out) = h.connect(v5("dev", false, Some(10)));
        assert!(!out.connack(conn).session_present, "expiry {expiry:?}");
    }
}

#[test]
fn v5_session_is_kept_for_its_expiry_interval_then_expires_on_tick() {
    let mut h = Harness::new();
    let conn = h.connect_ok(v5("dev", false, Some(30)));
    h.subscribe(conn, subscribe(1, "a", QoS::AtLeastOnce));
    h.disconnect_normal(conn);
    let deadline = h.now.plus_secs(30);
    assert_eq!(h.broker.next_deadline(), Some(deadline));
    assert_eq!(
        h.stored_session("dev").unwrap().record.expires_at,
        Some(deadline)
    );

    h.tick_after_millis(29_999);
    assert_eq!(h.broker.stats().sessions, 1);
    assert_eq!(h.broker.stats().sessions_expired_total, 0);
    h.tick_after_millis(1);
    assert_eq!(h.broker.stats().sessions, 0);
    assert_eq!(h.broker.stats().sessions_expired_total, 1);
    assert!(h.stored_session("dev").is_none());
    assert_eq!(h.broker.next_deadline(), None);

    let (conn, out) = h.connect(v5("dev", false, Some(30)));
    assert!(!out.connack(conn).session_present);
}

#[test]
fn v5_resume_within_expiry_stops_the_countdown() {
    let mut h = Harness::new();
    let conn = h.connect_ok(v5("dev", false, Some(30)));
    h.lose(conn);
    h.tick_after(20);
    let (conn, out) = h.connect(v5("dev", false, Some(30)));
    assert!(out.connack(conn).session_present);
    assert_eq!(h.stored_session("dev").unwrap().record.expires_at, None);
    // The old deadline passes while connected: nothing happens.
    h.tick_after(60);
    assert_eq!(h.broker.stats().sessions_expired_total, 0);
    assert!(h.stored_session("dev").is_some());
    // The new countdown starts at the new disconnect.
    h.lose(conn);
    h.tick_after(29);
    assert!(h.stored_session("dev").is_some());
    h.tick_after(1);
    assert!(h.stored_session("dev").is_none());
}

#[test]
fn v5_expiry_ffffffff_never_expires() {
    let mut h = Harness::new();
    let conn = h.connect_ok(v5("dev", false, Some(u32::MAX)));
    h.disconnect_normal(conn);
    assert_eq!(h.broker.next_deadline(), None);
    h.tick_after(u32::MAX);
    h.tick_after(u32::MAX);
    assert_eq!(h.broker.stats().sessions_expired_total, 0);
    let stored = h.stored_session("dev").unwrap();
    assert_eq!(stored.record.expiry, SessionExpiry::Never);
    let (conn, out) = h.connect(v5("dev", false, Some(u32::MAX)));
    assert!(out.connack(conn).session_present);
}

#[test]
fn v5_expiry_is_clamped_to_the_configured_maximum_and_connack_says_so() {
    let mut config = BrokerConfig::default();
    config.session = SessionConfig {
        max_expiry: SessionExpiry::After(100),
        ..SessionConfig::default()
    };
    let mut h = Harness::with_config(config);

    let (conn, out) = h.connect(v5("small", false, Some(50)));
    assert_eq!(out.connack(conn).properties.session_expiry_interval, None);
    let (conn, out) = h.connect(v5("never", false, Some(u32::MAX)));
    assert_eq!(
        out.connack(conn).properties.session_expiry_interval,
        Some(100)
    );
    let (conn, out) = h.connect(v5("big", false, Some(1000)));
    assert_eq!(
        out.connack(conn).properties.session_expiry_interval,
        Some(100)
    );
    h.lose(conn);
    h.tick_after(99);
    assert!(h.stored_session("big").is_some());
    h.tick_after(1);
    assert!(h.stored_session("big").is_none());
}

#[test]
fn v3_persistent_expiry_never_is_allowed() {
    let mut config = BrokerConfig::default();
    config.session.v3_persistent_expiry = SessionExpiry::Never;
    let mut h = Harness::with_config(config);
    let conn = h.connect_ok(v3("dev", false));
    h.lose(conn);
    h.tick_after(365 * 24 * 3600);
    let (conn, out) = h.connect(v3("dev", false));
    assert!(out.connack(conn).session_present);
}

#[test]
fn disconnect_may_change_the_session_expiry() {
    let mut h = Harness::new();
    // Lengthen: 10 s at CONNECT, 100 s at DISCONNECT.
    let conn = h.connect_ok(v5("longer", false, Some(10)));
    let out = h.disconnect(
        conn,
        disconnect(DisconnectReasonCode::NormalDisconnection, Some(100)),
    );
    assert!(out.closed(conn));
    assert!(out.disconnect_reason(conn).is_none());
    h.tick_after(50);
    assert!(h.stored_session("longer").is_some());
    h.tick_after(50);
    assert!(h.stored_session("longer").is_none());

    // Shorten to zero: the session ends at once.
    let conn = h.connect_ok(v5("shorter", false, Some(100)));
    h.subscribe(conn, subscribe(1, "a", QoS::AtLeastOnce));
    assert!(h.stored_session("shorter").is_some());
    h.disconnect(
        conn,
        disconnect(DisconnectReasonCode::NormalDisconnection, Some(0)),
    );
    assert!(h.stored_session("shorter").is_none());
    let (conn, out) = h.connect(v5("shorter", false, Some(100)));
    assert!(!out.connack(conn).session_present);
}

#[test]
fn disconnect_from_zero_to_non_zero_expiry_is_a_protocol_error() {
    let mut h = Harness::new();
    let conn = h.connect_ok(v5("dev", false, None));
    let out = h.disconnect(
        conn,
        disconnect(DisconnectReasonCode::NormalDisconnection, Some(30)),
    );
    assert_eq!(
        out.disconnect_reason(conn),
        Some(DisconnectReasonCode::ProtocolError)
    );
    assert!(out.closed(conn));
    assert_eq!(h.broker.stats().protocol_errors_total, 1);
    // The session did not gain an expiry: it ended with the connection.
    assert_eq!(h.broker.stats().sessions, 0);
    assert!(h.stored_session("dev").is_none());
}

#[test]
fn session_present_is_0_with_clean_start_even_when_a_session_existed() {
    let mut h = Harness::new();
    let conn = h.connect_ok(v5("dev", false, Some(60)));
    h.subscribe(conn, subscribe(1, "a", QoS::AtLeastOnce));
    h.lose(conn);
    let (conn, out) = h.connect(v5("dev", true, Some(60)));
    assert!(!out.connack(conn).session_present);
    assert!(h.stored_session("dev").unwrap().subscriptions.is_empty());
}

#[test]
fn takeover_v5_old_connection_gets_disconnect_0x8e_and_close() {
    let mut h = Harness::new();
    let old = h.connect_ok(v5("dev", false, Some(60)));
    h.subscribe(old, subscribe(1, "a", QoS::AtLeastOnce));
    let (new, out) = h.connect(v5("dev", false, Some(60)));
    assert_eq!(
        out.disconnect_reason(old),
        Some(DisconnectReasonCode::SessionTakenOver)
    );
    assert!(out.closed(old));
    assert!(out.connack(new).session_present);
    assert!(!out.closed(new));
    assert_eq!(h.broker.stats().connections, 1);

    // Packets of the old connection are ignored; its late Closed event changes nothing.
    let out = h.publish(old, publish("a", b"stale", QoS::AtLeastOnce, 1));
    assert!(out.actions.is_empty());
    let out = h.lose(old);
    assert!(out.actions.is_empty());
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish("a", b"fresh", QoS::AtLeastOnce, 1));
    assert_eq!(payloads(&out.publishes(new)), ["fresh"]);
}

#[test]
fn takeover_v3_old_connection_is_just_closed() {
    let mut h = Harness::new();
    let old = h.connect_ok(v3("dev", false));
    let (new, out) = h.connect(v3("dev", false));
    assert_eq!(out.to(old), []);
    assert!(out.closed(old));
    assert!(out.connack(new).session_present);
}

#[test]
fn takeover_publishes_the_old_will_when_its_delay_is_0() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    h.connect_ok(with_will(
        v5("dev", false, Some(60)),
        will("wills/dev", b"gone", None),
    ));
    let (_, out) = h.connect(v5("dev", false, Some(60)));
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
}

#[test]
fn takeover_resuming_within_the_will_delay_cancels_the_will() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    h.connect_ok(with_will(
        v5("dev", false, Some(60)),
        will("wills/dev", b"gone", Some(30)),
    ));
    let (_, out) = h.connect(v5("dev", false, Some(60)));
    assert!(out.publishes(watcher).is_empty());
    let out = h.tick_after(31);
    assert!(out.publishes(watcher).is_empty());
    assert_eq!(h.broker.stats().wills_published_total, 0);
}

#[test]
fn takeover_with_clean_start_ends_the_old_session_and_publishes_its_will() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    h.connect_ok(with_will(
        v5("dev", false, Some(60)),
        will("wills/dev", b"gone", Some(30)),
    ));
    let (new, out) = h.connect(v5("dev", true, Some(60)));
    assert!(!out.connack(new).session_present);
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
    assert_eq!(h.broker.stats().wills_published_total, 1);
}

#[test]
fn ping_gets_a_pingresp() {
    let mut h = Harness::new();
    let conn = h.connect_ok(v3("dev", true));
    let out = h.packet(conn, Packet::PingReq);
    assert_eq!(out.only(conn), Packet::PingResp);
}

#[test]
fn a_second_connect_on_a_connection_is_a_protocol_error() {
    let mut h = Harness::new();
    let conn = h.connect_ok(v5("dev", true, None));
    let out = h.packet(conn, Packet::Connect(Box::new(v5("dev", true, None))));
    assert_eq!(
        out.disconnect_reason(conn),
        Some(DisconnectReasonCode::ProtocolError)
    );
    assert!(out.closed(conn));
}

#[test]
fn a_session_past_its_deadline_is_not_resumed_even_if_no_tick_came() {
    let mut h = Harness::new();
    let conn = h.connect_ok(v5("dev", false, Some(30)));
    h.lose(conn);
    h.now = h.now.plus_secs(31);
    let (conn, out) = h.connect(v5("dev", false, Some(30)));
    assert!(!out.connack(conn).session_present);
}

/// The epoch grows with every connect, also when Clean Start replaces the session.
#[test]
fn every_connect_gets_a_higher_epoch() {
    let mut h = Harness::new();
    let mut epochs = Vec::new();
    for clean_start in [false, false, true, false] {
        let conn = h.connect_ok(v5("dev", clean_start, Some(60)));
        epochs.push(h.stored_session("dev").unwrap().record.epoch.0);
        h.lose(conn);
    }
    // Taken over while connected, by a Clean Start connection.
    h.connect_ok(v5("dev", false, Some(60)));
    h.connect_ok(v5("dev", true, Some(60)));
    epochs.push(h.stored_session("dev").unwrap().record.epoch.0);
    assert!(epochs.windows(2).all(|w| w[0] < w[1]), "{epochs:?}");
}
