//! CONNECT, DISCONNECT and connection loss: session creation, resumption, takeover, and the
//! session side of a connection ending (will, expiry).

use berth_codec::{
    ConnAck, ConnAckProperties, Connect, ConnectReasonCode, Disconnect, DisconnectReasonCode,
    MqttString, Packet,
};

use super::session::{Online, Session};
use super::{Broker, CloseReason, Timer, record_of};
use crate::ids::{ClientId, ConnId};
use crate::stats::CloseCause;
use crate::store::{Op, SessionExpiry, Store, WillRecord};
use crate::time::UnixMillis;

/// What the server knows of a connecting client besides its CONNECT: who it is, for the ACL.
#[derive(Debug, Default)]
pub(super) struct Who {
    /// Its address (the PROXY header's behind a balancer).
    pub source: Option<std::net::IpAddr>,
    /// The topics its credentials grant it (a JWT's `acl` claim).
    pub grants: Option<std::sync::Arc<crate::acl::Grants>>,
    /// The principal the server built for the cluster's claim, if any: shared rather than
    /// built again when it names the same client (one fewer copy per connection).
    pub principal: Option<std::sync::Arc<crate::acl::Principal>>,
}

/// Who the connecting client is, for the ACL: the server's principal where it says exactly
/// this (same client id, username, address and grants), else one built here.
fn principal_of(
    client: &ClientId,
    connect: &berth_codec::Connect,
    who: Who,
) -> std::sync::Arc<crate::acl::Principal> {
    let username = connect.username.as_ref().map(|name| name.as_str());
    let same_grants = |shared: &crate::acl::Principal| match (&shared.grants, &who.grants) {
        (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    match who.principal {
        Some(shared)
            if shared.client_id == client.as_str()
                && shared.username.as_deref() == username
                && shared.source == who.source
                && same_grants(&shared) =>
        {
            shared
        }
        _ => std::sync::Arc::new(crate::acl::Principal {
            username: username.map(str::to_owned),
            client_id: client.as_str().to_owned(),
            source: who.source,
            grants: who.grants,
        }),
    }
}

/// How a connection ended, for the will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// DISCONNECT 0x00: the will is discarded.
    Normal,
    /// Anything else (including DISCONNECT 0x04): the will is published, after its delay.
    Abnormal,
}

impl<S: Store> Broker<S> {
    pub(super) fn on_connect(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        connect: Connect,
        granted: Option<(crate::ids::Epoch, bool)>,
        who: Who,
    ) {
        self.stats.connects_total += 1;
        let v5 = connect.protocol.is_v5();

        let mut assigned = None;
        let client = if connect.client_id.is_empty() {
            if crate::registry::plan::empty_id_refused(&connect) {
                return self.refuse(conn, ConnectReasonCode::ClientIdentifierNotValid);
            }
            let id = self.next_assigned_id(now);
            let Ok(id) = MqttString::new(&id) else {
                return self.refuse(conn, ConnectReasonCode::UnspecifiedError);
            };
            if v5 {
                assigned = Some(id.clone());
            }
            ClientId::new(id)
        } else {
            if v5 && granted.is_some_and(|(_, assigned)| assigned) {
                assigned = Some(connect.client_id.clone());
            }
            ClientId::new(connect.client_id.clone())
        };

        let principal = principal_of(&client, &connect, who);
        if let Some(will) = &connect.will
            && let Some(limit) = self.config.limits.topic_over(will.topic.as_str())
        {
            // A will it could not publish itself is not published for it either; refused
            // before the session (or an older connection to it) is touched. MQTT 5 has the
            // exact code (CONNACK 0x90 Topic Name invalid); 3.1.1 has none, and its nearest is
            // 5 (Not authorized): the server refuses this CONNECT as it stands, and the client
            // should not retry it unchanged, which 3 (Server unavailable) would invite.
            self.stats.count_limit(limit);
            let reason = if v5 {
                ConnectReasonCode::TopicNameInvalid
            } else {
                ConnectReasonCode::NotAuthorized
            };
            return self.refuse(conn, reason);
        }
        if let Some(will) = &connect.will
            && !self.config.may_publish(&principal, will.topic.as_str())
        {
            // As above: a will the client may not publish is refused with the CONNECT.
            return self.refuse(conn, ConnectReasonCode::NotAuthorized);
        }
        if let Some((epoch, _)) = granted
            && self.superseded(&client, epoch)
        {
            // A newer claim of this client id has been applied here while this one waited:
            // the newer connection keeps the session; this one is refused and retries.
            return self.refuse(conn, ConnectReasonCode::ServerUnavailable);
        }
        if let Some((epoch, _)) = granted {
            self.claimed_by_connection(&client, epoch);
        }

        let requested = self.config.session.requested_expiry(&connect);
        let expiry = self.config.session.clamp(requested);
        // Taken before the old session may end below: a session that replaces a discarded one
        // (Clean Start, or an old one that ended with its connection) still gets a higher
        // epoch, so that whatever still holds the old epoch is fenced (ARCHITECTURE §4).
        // In a cluster the registry assigns epochs (it fences every node's stale copies).
        let epoch = granted.map_or_else(|| self.new_epoch(&client), |(epoch, _)| epoch);

        // The same client id on another connection: that connection ends, abnormally.
        if let Some(old) = self.sessions.get(&client).and_then(|s| s.conn()) {
            if self
                .sessions
                .get(&client)
                .is_some_and(|s| s.protocol.is_v5())
            {
                let disconnect = Disconnect::new(DisconnectReasonCode::SessionTakenOver);
                self.send(old, Packet::Disconnect(disconnect));
            }
            self.stats.count_close(CloseCause::TakenOver);
            self.actions.push(super::Action::Close { conn: old });
            self.detach(now, &client, Ending::Abnormal);
        }

        let exists = self.sessions.contains_key(&client);
        if exists && connect.clean_start {
            // Clean Start discards the old session; a will still waiting is due now.
            self.end_session(now, &client);
        }
        let session_present = self.sessions.contains_key(&client);
        if !session_present {
            // A session started afresh here owns no route the registry still had for an older
            // one (whose end had not committed before this claim: a flaky end-to-end test
            // delivered the old subscription's messages to the new session).
            self.drop_registry_routes(&client);
        }
        let session = self
            .sessions
            .entry(client.clone())
            .or_insert_with(|| Session::new(epoch, connect.protocol, expiry));
        session.serve_claim(epoch);
        session.protocol = connect.protocol;
        session.expiry = expiry;
        if session.will_due_at.take().is_some() {
            // Resumed within the will delay: the will of the previous connection is cancelled.
            session.will = None;
        }
        // Back online: the expiry countdown stops. A resumed session keeps being stored until
        // it ends, even if this connection asks for expiry 0 (it is deleted then).
        session.expires_at = None;
        if !session_present {
            session.stored = !expiry.is_zero();
        }
        session.will = connect
            .will
            .map(|will| Box::new(WillRecord::of_connect(will)));
        let props = &connect.properties;
        let client_window = props.receive_maximum.map_or(u16::MAX, |max| max.get());
        session.online = Some(Box::new(Online {
            conn,
            principal,
            send_window: usize::from(client_window.min(self.config.limits.max_inflight).max(1)),
            max_packet_size: props.maximum_packet_size.map_or(u32::MAX, |max| max.get()),
            alias_maximum: props.topic_alias_maximum.unwrap_or(0),
            aliases: None,
            publish_credit: self.config.limits.publish_rate.credit_burst(),
            credit_at: now,
            bytes_credit: self.config.limits.publish_rate_bytes.credit_burst(),
            bytes_credit_at: now,
            connected_at: now,
            row_backed: Vec::new(),
            lease: Default::default(),
        }));
        if session.stored {
            let op = Op::PutSession {
                client: client.clone(),
                record: record_of(session),
            };
            self.batch.push(op);
        }
        self.conns.insert(conn, client.clone());

        let mut connack = ConnAck::accepted(session_present);
        if v5 {
            let limits = &self.config.limits;
            connack.properties = ConnAckProperties {
                receive_maximum: std::num::NonZeroU16::new(limits.receive_maximum),
                maximum_packet_size: std::num::NonZeroU32::new(limits.max_packet_size),
                topic_alias_maximum: Some(limits.topic_alias_maximum),
                assigned_client_identifier: assigned,
                session_expiry_interval: (expiry != requested).then(|| expiry.as_interval()),
                server_keep_alive: (connect.keep_alive > limits.max_keep_alive
                    || (connect.keep_alive == 0 && limits.max_keep_alive < u16::MAX))
                    .then_some(limits.max_keep_alive),
                ..Default::default()
            };
        }
        self.send(conn, Packet::ConnAck(Box::new(connack)));
        self.resume_delivery(now, &client);
        if granted.is_some() {
            // Whatever was imported is in: forwards that waited for this session go on.
            self.on_import_done(now, &client);
        }
    }

    /// A refused CONNECT: the connection's version decides the wire form when it is encoded.
    fn refuse(&mut self, conn: ConnId, reason: ConnectReasonCode) {
        self.send(conn, Packet::ConnAck(Box::new(ConnAck::refused(reason))));
        self.actions.push(super::Action::Close { conn });
    }

    pub(super) fn on_disconnect(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        client: &ClientId,
        disconnect: Disconnect,
    ) {
        if let Some(requested) = disconnect.properties.session_expiry_interval {
            let Some(session) = self.sessions.get_mut(client) else {
                return;
            };
            // §3.14.2.2.2: a session that ends with its connection cannot be made to outlive it.
            if session.expiry.is_zero() && requested != 0 {
                return self.disconnect_with(
                    now,
                    conn,
                    client,
                    DisconnectReasonCode::ProtocolError,
                );
            }
            session.expiry = self
                .config
                .session
                .clamp(SessionExpiry::from_interval(requested));
        }
        self.stats.count_close(CloseCause::ClientDisconnect);
        self.actions.push(super::Action::Close { conn });
        let ending = if disconnect.reason == DisconnectReasonCode::DisconnectWithWillMessage {
            Ending::Abnormal
        } else {
            Ending::Normal
        };
        self.detach(now, client, ending);
    }

    pub(super) fn on_closed(&mut self, now: UnixMillis, conn: ConnId, reason: CloseReason) {
        let Some(client) = self.conns.get(&conn).cloned() else {
            return;
        };
        let (code, cause) = match &reason {
            CloseReason::ConnectionLost => (None, CloseCause::ConnectionLost),
            CloseReason::KeepAliveTimeout => (
                Some(DisconnectReasonCode::KeepAliveTimeout),
                CloseCause::KeepAliveTimeout,
            ),
            CloseReason::Malformed(error) => {
                self.stats.protocol_errors_total += 1;
                (Some(error.disconnect_reason()), CloseCause::ProtocolError)
            }
            CloseReason::ServerShutdown => (
                Some(DisconnectReasonCode::ServerShuttingDown),
                CloseCause::ServerShutdown,
            ),
            CloseReason::Drained => (
                Some(DisconnectReasonCode::UseAnotherServer),
                CloseCause::Drained,
            ),
            CloseReason::Kicked => (
                Some(DisconnectReasonCode::AdministrativeAction),
                CloseCause::Kicked,
            ),
        };
        self.stats.count_close(cause);
        if let Some(code) = code
            && self
                .sessions
                .get(&client)
                .is_some_and(|s| s.protocol.is_v5())
        {
            self.send(conn, Packet::Disconnect(Disconnect::new(code)));
        }
        self.actions.push(super::Action::Close { conn });
        if reason == CloseReason::ServerShutdown {
            // Left as stored: after the restart the connection counts as ended then, as after a
            // crash, so wills and expiry follow the same rules either way.
            self.conns.remove(&conn);
            if let Some(session) = self.sessions.get_mut(&client) {
                session.online = None;
            }
            return;
        }
        self.detach(now, &client, Ending::Abnormal);
    }

    /// Ends `conn` from the server side with a DISCONNECT reason (MQTT 5) and an abnormal ending.
    pub(super) fn disconnect_with(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        client: &ClientId,
        reason: DisconnectReasonCode,
    ) {
        if reason == DisconnectReasonCode::ProtocolError
            || reason == DisconnectReasonCode::MalformedPacket
        {
            self.stats.protocol_errors_total += 1;
        }
        self.stats
            .count_close(if reason == DisconnectReasonCode::MessageRateTooHigh {
                CloseCause::RateLimited
            } else {
                CloseCause::ProtocolError
            });
        if self
            .sessions
            .get(client)
            .is_some_and(|s| s.protocol.is_v5())
        {
            self.send(conn, Packet::Disconnect(Disconnect::new(reason)));
        }
        self.actions.push(super::Action::Close { conn });
        self.detach(now, client, Ending::Abnormal);
    }

    /// The session loses its connection: the will is discarded or scheduled, and the session
    /// either ends (expiry 0) or starts counting down to its expiry.
    pub(super) fn detach(&mut self, now: UnixMillis, client: &ClientId, ending: Ending) {
        // Offline, the store holds its in-flight window as in-flight rows.
        self.settle_rows(client);
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let Some(online) = session.online.take() else {
            return;
        };
        self.conns.remove(&online.conn);
        let mut will_now = false;
        match ending {
            Ending::Normal => session.will = None,
            Ending::Abnormal => {
                if let Some(will) = &session.will {
                    // §3.1.3.2.2: after the will delay or when the session ends, whichever is first.
                    let delay = match session.expiry {
                        SessionExpiry::After(secs) => will.delay_secs.min(secs),
                        SessionExpiry::Never => will.delay_secs,
                    };
                    if delay == 0 || !session.protocol.is_v5() {
                        will_now = true;
                    } else {
                        let at = now.plus_secs(delay);
                        session.will_due_at = Some(at);
                        self.timers.insert((at, Timer::Will(client.clone())));
                    }
                }
            }
        }
        // Acknowledgements for that connection can no longer be sent; publishers waiting for
        // this session to drain wait no more (offline, nobody drains it).
        self.held.forget_conn(online.conn);
        self.release_congestion(client);
        if will_now {
            self.publish_will(now, client);
        }
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        if session.expiry.is_zero() {
            self.end_session(now, client);
            return;
        }
        session.expires_at = match session.expiry {
            SessionExpiry::After(secs) => Some(now.plus_secs(secs)),
            SessionExpiry::Never => Some(super::NEVER),
        };
        if let SessionExpiry::After(_) = session.expiry
            && let Some(at) = session.expires_at
        {
            self.timers
                .insert((at, Timer::SessionExpiry(client.clone())));
        }
        let detached = crate::cluster::Replicate::Detach {
            client: client.clone(),
            epoch: session.epoch,
            expires_at: session.expires_at.filter(|at| *at != super::NEVER),
            will_due_at: session.will_due_at,
        };
        // Offline sessions keep their messages on disk, not in memory.
        if session.stored {
            session.queue.head.clear();
            session.queue.head.shrink_to_fit();
            session.inflight.clear();
            session.inflight_loaded = false;
            let op = Op::PutSession {
                client: client.clone(),
                record: record_of(session),
            };
            self.batch.push(op);
        }
        self.replicate(detached);
    }
}
