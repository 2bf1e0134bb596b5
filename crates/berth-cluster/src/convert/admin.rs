//! An operator's request about one session and its owner's answer (the admin API relayed to
//! the session's owner: `SessionAdmin`) ⇄ their protobuf form.

use berth_codec::TopicName;
use berth_core::{
    AdminAnswer, AdminError, AdminRequest, ClientId, Discarded, Kicked, Purged, QueuedView,
    SessionView, UnixMillis,
};
use berth_proto::v1 as pb;
use pb::session_admin_reply::Result as Reply;
use pb::session_admin_request::Op;

use super::message::{Invalid, invalid, qos_from};
use super::session::client_id;

pub fn admin_request_to_pb(client: &ClientId, request: &AdminRequest) -> pb::SessionAdminRequest {
    let op = match request {
        AdminRequest::Kick => Op::Kick(pb::Blank {}),
        AdminRequest::Discard => Op::Discard(pb::Blank {}),
        AdminRequest::Inspect { limit } => Op::Inspect(pb::AdminInspect {
            limit: u32::try_from(*limit).unwrap_or(u32::MAX),
        }),
        AdminRequest::Purge => Op::Purge(pb::Blank {}),
    };
    pb::SessionAdminRequest {
        client_id: client.as_str().to_owned(),
        op: Some(op),
    }
}

pub fn admin_request_from_pb(
    request: pb::SessionAdminRequest,
) -> Result<(ClientId, AdminRequest), Invalid> {
    let client = client_id(&request.client_id).ok_or(invalid("client_id"))?;
    let request = match request.op.ok_or(invalid("op"))? {
        Op::Kick(_) => AdminRequest::Kick,
        Op::Discard(_) => AdminRequest::Discard,
        Op::Inspect(inspect) => AdminRequest::Inspect {
            limit: usize::try_from(inspect.limit).unwrap_or(usize::MAX),
        },
        Op::Purge(_) => AdminRequest::Purge,
    };
    Ok((client, request))
}

pub fn admin_reply_to_pb(answer: &Result<AdminAnswer, AdminError>) -> pb::SessionAdminReply {
    let result = match answer {
        Ok(AdminAnswer::Kicked(kicked)) => Reply::Kicked(pb::AdminKicked {
            was_connected: kicked.was_connected,
            session_kept: kicked.session_kept,
        }),
        Ok(AdminAnswer::Discarded(discarded)) => Reply::Discarded(pb::AdminDiscarded {
            was_connected: discarded.was_connected,
            messages: discarded.messages,
        }),
        Ok(AdminAnswer::Inspected(view)) => Reply::Inspected(view_to_pb(view)),
        Ok(AdminAnswer::Purged(purged)) => Reply::Purged(pb::AdminPurged {
            messages: purged.messages,
            bytes: purged.bytes,
        }),
        Err(AdminError::NoSession) => Reply::NoSession(pb::Blank {}),
        Err(AdminError::Moving) => Reply::Moving(pb::Blank {}),
        Err(AdminError::Storage(message)) => Reply::StorageError(message.clone()),
    };
    pb::SessionAdminReply {
        result: Some(result),
    }
}

pub fn admin_reply_from_pb(
    reply: pb::SessionAdminReply,
) -> Result<Result<AdminAnswer, AdminError>, Invalid> {
    Ok(match reply.result.ok_or(invalid("result"))? {
        Reply::Kicked(kicked) => Ok(AdminAnswer::Kicked(Kicked {
            was_connected: kicked.was_connected,
            session_kept: kicked.session_kept,
        })),
        Reply::Discarded(discarded) => Ok(AdminAnswer::Discarded(Discarded {
            was_connected: discarded.was_connected,
            messages: discarded.messages,
        })),
        Reply::Inspected(view) => Ok(AdminAnswer::Inspected(view_from_pb(view)?)),
        Reply::Purged(purged) => Ok(AdminAnswer::Purged(Purged {
            messages: purged.messages,
            bytes: purged.bytes,
        })),
        Reply::NoSession(_) => Err(AdminError::NoSession),
        Reply::Moving(_) => Err(AdminError::Moving),
        Reply::StorageError(message) => Err(AdminError::Storage(message)),
    })
}

fn view_to_pb(view: &SessionView) -> pb::AdminSessionView {
    pb::AdminSessionView {
        queued: view.queued,
        queued_bytes: view.queued_bytes,
        in_flight: view.in_flight,
        connected_since_ms: view.connected_since.map(|at| at.0),
        address: view.address.map(|address| address.to_string()),
        oldest_age_ms: view.oldest_age_ms,
        messages: view
            .messages
            .iter()
            .map(|queued| pb::AdminQueued {
                topic: queued.topic.as_str().to_owned(),
                qos: u32::from(queued.qos.as_u8()),
                retain: queued.retain,
                bytes: queued.bytes,
                age_ms: queued.age_ms,
                expires_in_ms: queued.expires_in_ms,
            })
            .collect(),
    }
}

fn view_from_pb(view: pb::AdminSessionView) -> Result<SessionView, Invalid> {
    let address = match &view.address {
        Some(text) => Some(text.parse().map_err(|_| invalid("address"))?),
        None => None,
    };
    let messages = view
        .messages
        .into_iter()
        .map(|queued| {
            Ok(QueuedView {
                topic: TopicName::parse(&queued.topic).map_err(|_| invalid("topic"))?,
                qos: qos_from(queued.qos)?,
                retain: queued.retain,
                bytes: queued.bytes,
                age_ms: queued.age_ms,
                expires_in_ms: queued.expires_in_ms,
            })
        })
        .collect::<Result<Vec<_>, Invalid>>()?;
    Ok(SessionView {
        queued: view.queued,
        queued_bytes: view.queued_bytes,
        in_flight: view.in_flight,
        connected_since: view.connected_since_ms.map(UnixMillis),
        address,
        oldest_age_ms: view.oldest_age_ms,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use berth_codec::{MqttString, QoS};

    use super::*;

    fn client() -> ClientId {
        ClientId::new(MqttString::new("dev/ü").unwrap())
    }

    #[test]
    fn every_request_round_trips() {
        for request in [
            AdminRequest::Kick,
            AdminRequest::Discard,
            AdminRequest::Inspect { limit: 25 },
            AdminRequest::Purge,
        ] {
            let back = admin_request_from_pb(admin_request_to_pb(&client(), &request)).unwrap();
            assert_eq!(back, (client(), request));
        }
        let missing = pb::SessionAdminRequest {
            client_id: "dev".into(),
            op: None,
        };
        assert_eq!(admin_request_from_pb(missing).unwrap_err().field, "op");
    }

    #[test]
    fn every_answer_round_trips() {
        let view = SessionView {
            queued: 3,
            queued_bytes: 120,
            in_flight: 2,
            connected_since: Some(UnixMillis(1_700_000_000_000)),
            address: Some("2001:db8::7".parse().unwrap()),
            oldest_age_ms: Some(4_000),
            messages: vec![QueuedView {
                topic: TopicName::parse("cmd/dev").unwrap(),
                qos: QoS::AtLeastOnce,
                retain: true,
                bytes: 33,
                age_ms: Some(4_000),
                expires_in_ms: None,
            }],
        };
        for answer in [
            Ok(AdminAnswer::Kicked(Kicked {
                was_connected: true,
                session_kept: false,
            })),
            Ok(AdminAnswer::Discarded(Discarded {
                was_connected: false,
                messages: 9,
            })),
            Ok(AdminAnswer::Inspected(view)),
            Ok(AdminAnswer::Inspected(SessionView::default())),
            Ok(AdminAnswer::Purged(Purged {
                messages: 7,
                bytes: 700,
            })),
            Err(AdminError::NoSession),
            Err(AdminError::Moving),
            Err(AdminError::Storage("disk on fire".into())),
        ] {
            assert_eq!(
                admin_reply_from_pb(admin_reply_to_pb(&answer)).unwrap(),
                answer
            );
        }
    }
}
