//! An operator's request about one session and its owner's answer (the admin API relayed to
//! the session's owner: `SessionAdmin`) ⇄ their protobuf form: the session operations
//! (`AdminRequest`) and the subscription changes (`SubscriptionChange`), which share the RPC.

use berth_codec::{TopicFilter, TopicName};
use berth_core::broker::{SubscriptionAnswer, SubscriptionChange};
use berth_core::{
    AdminAnswer, AdminError, AdminRequest, ClientId, Discarded, Kicked, LimitReason, Purged,
    QueuedView, SessionView, SubscribeRefusal, SubscriptionRecord, UnixMillis,
};
use berth_proto::v1 as pb;
use pb::session_admin_reply::Result as Reply;
use pb::session_admin_request::Op;

use super::message::{Invalid, invalid, qos_from, subscription_from_pb, subscription_to_pb};
use super::session::client_id;

/// An operator's request relayed to a session's owner, as the owner reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAdminCall {
    Session(AdminRequest),
    Subscription(SubscriptionChange),
}

pub fn subscription_request_to_pb(
    client: &ClientId,
    change: &SubscriptionChange,
) -> pb::SessionAdminRequest {
    let op = match change {
        SubscriptionChange::Subscribe { filter, options } => {
            let record = SubscriptionRecord {
                options: *options,
                subscription_id: None,
            };
            Op::Subscribe(subscription_to_pb(filter, &record))
        }
        SubscriptionChange::Unsubscribe { filter } => Op::Unsubscribe(pb::AdminUnsubscribe {
            filter: filter.as_str().to_owned(),
        }),
    };
    pb::SessionAdminRequest {
        client_id: client.as_str().to_owned(),
        op: Some(op),
    }
}

/// Any request of `SessionAdmin`: a session operation or a subscription change.
pub fn admin_call_from_pb(
    request: pb::SessionAdminRequest,
) -> Result<(ClientId, SessionAdminCall), Invalid> {
    let client = client_id(&request.client_id).ok_or(invalid("client_id"))?;
    let call = match request.op.ok_or(invalid("op"))? {
        Op::Kick(_) => SessionAdminCall::Session(AdminRequest::Kick),
        Op::Discard(_) => SessionAdminCall::Session(AdminRequest::Discard),
        Op::Inspect(inspect) => SessionAdminCall::Session(AdminRequest::Inspect {
            limit: usize::try_from(inspect.limit).unwrap_or(usize::MAX),
        }),
        Op::Purge(_) => SessionAdminCall::Session(AdminRequest::Purge),
        Op::Subscribe(subscription) => {
            // An operator's subscription carries no identifier.
            let (filter, record) = subscription_from_pb(&subscription)?;
            SessionAdminCall::Subscription(SubscriptionChange::Subscribe {
                filter,
                options: record.options,
            })
        }
        Op::Unsubscribe(unsubscribe) => {
            SessionAdminCall::Subscription(SubscriptionChange::Unsubscribe {
                filter: TopicFilter::parse(&unsubscribe.filter).map_err(|_| invalid("filter"))?,
            })
        }
    };
    Ok((client, call))
}

/// A refused filter as the reply names it: the limit's key, or `not_authorized`.
fn refusal_to_pb(refusal: SubscribeRefusal) -> String {
    match refusal {
        SubscribeRefusal::Limit(limit) => limit.label().to_owned(),
        SubscribeRefusal::NotAuthorized => "not_authorized".to_owned(),
    }
}

fn refusal_from_pb(text: &str) -> Result<SubscribeRefusal, Invalid> {
    if text == "not_authorized" {
        return Ok(SubscribeRefusal::NotAuthorized);
    }
    LimitReason::ALL
        .into_iter()
        .find(|limit| limit.label() == text)
        .map(SubscribeRefusal::Limit)
        .ok_or(invalid("subscribe_refused"))
}

pub fn subscription_reply_to_pb(
    answer: &Result<SubscriptionAnswer, AdminError>,
) -> pb::SessionAdminReply {
    let result = match answer {
        Ok(SubscriptionAnswer::Subscribed { replaced }) => Reply::Subscribed(pb::AdminSubscribed {
            replaced: *replaced,
        }),
        Ok(SubscriptionAnswer::Refused(refusal)) => {
            Reply::SubscribeRefused(refusal_to_pb(*refusal))
        }
        Ok(SubscriptionAnswer::Unsubscribed { existed }) => {
            Reply::Unsubscribed(pb::AdminUnsubscribed { existed: *existed })
        }
        Err(AdminError::NoSession) => Reply::NoSession(pb::Blank {}),
        Err(AdminError::Moving) => Reply::Moving(pb::Blank {}),
        Err(AdminError::Storage(message)) => Reply::StorageError(message.clone()),
    };
    pb::SessionAdminReply {
        result: Some(result),
    }
}

pub fn subscription_reply_from_pb(
    reply: pb::SessionAdminReply,
) -> Result<Result<SubscriptionAnswer, AdminError>, Invalid> {
    Ok(match reply.result.ok_or(invalid("result"))? {
        Reply::Subscribed(subscribed) => Ok(SubscriptionAnswer::Subscribed {
            replaced: subscribed.replaced,
        }),
        Reply::SubscribeRefused(text) => Ok(SubscriptionAnswer::Refused(refusal_from_pb(&text)?)),
        Reply::Unsubscribed(unsubscribed) => Ok(SubscriptionAnswer::Unsubscribed {
            existed: unsubscribed.existed,
        }),
        Reply::NoSession(_) => Err(AdminError::NoSession),
        Reply::Moving(_) => Err(AdminError::Moving),
        Reply::StorageError(message) => Err(AdminError::Storage(message)),
        // An answer to a session operation: a peer at odds with this node.
        Reply::Kicked(_) | Reply::Discarded(_) | Reply::Inspected(_) | Reply::Purged(_) => {
            return Err(invalid("result"));
        }
    })
}

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

/// A session operation (a subscription change is `Invalid` here: see [`admin_call_from_pb`]).
pub fn admin_request_from_pb(
    request: pb::SessionAdminRequest,
) -> Result<(ClientId, AdminRequest), Invalid> {
    match admin_call_from_pb(request)? {
        (client, SessionAdminCall::Session(request)) => Ok((client, request)),
        (_, SessionAdminCall::Subscription(_)) => Err(invalid("op")),
    }
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
        // An answer to a subscription change: a peer at odds with this node.
        Reply::Subscribed(_) | Reply::SubscribeRefused(_) | Reply::Unsubscribed(_) => {
            return Err(invalid("result"));
        }
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
    fn every_subscription_change_and_answer_round_trips() {
        use berth_codec::{RetainHandling, SubscriptionOptions};
        let options = SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        for change in [
            SubscriptionChange::Subscribe {
                filter: TopicFilter::parse("$share/g/cmd/+/#").unwrap(),
                options,
            },
            SubscriptionChange::Unsubscribe {
                filter: TopicFilter::parse("cmd/#").unwrap(),
            },
        ] {
            let request = subscription_request_to_pb(&client(), &change);
            assert_eq!(
                admin_call_from_pb(request.clone()).unwrap(),
                (client(), SessionAdminCall::Subscription(change))
            );
            assert_eq!(admin_request_from_pb(request).unwrap_err().field, "op");
        }
        for answer in [
            Ok(SubscriptionAnswer::Subscribed { replaced: true }),
            Ok(SubscriptionAnswer::Refused(SubscribeRefusal::NotAuthorized)),
            Ok(SubscriptionAnswer::Refused(SubscribeRefusal::Limit(
                LimitReason::MaxSubscriptions,
            ))),
            Ok(SubscriptionAnswer::Refused(SubscribeRefusal::Limit(
                LimitReason::MaxTopicLevels,
            ))),
            Ok(SubscriptionAnswer::Unsubscribed { existed: false }),
            Err(AdminError::NoSession),
            Err(AdminError::Moving),
            Err(AdminError::Storage("disk on fire".into())),
        ] {
            assert_eq!(
                subscription_reply_from_pb(subscription_reply_to_pb(&answer)).unwrap(),
                answer
            );
        }
        // Answers of the other kind do not convert as these.
        let kicked = admin_reply_to_pb(&Ok(AdminAnswer::Kicked(Kicked {
            was_connected: true,
            session_kept: true,
        })));
        assert_eq!(
            subscription_reply_from_pb(kicked).unwrap_err().field,
            "result"
        );
        let subscribed =
            subscription_reply_to_pb(&Ok(SubscriptionAnswer::Unsubscribed { existed: true }));
        assert_eq!(admin_reply_from_pb(subscribed).unwrap_err().field, "result");
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
