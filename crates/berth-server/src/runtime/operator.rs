//! Operators' requests on the broker thread whose answers need more than the group's commit:
//! a PUBLISH (the admin API's `POST /api/v1/publish`) and a subscription change of a session.
//!
//! An operator's PUBLISH at QoS 1/2 is answered when its acknowledgement comes out of the
//! broker — after the commit that stored it here and after every owner node stored its
//! forwards, as a client's PUBACK — addressed to its *operator connection*
//! (`berth_core::broker::operator_conn`), which no listener hands out: `Action::Send` to it
//! means stored everywhere, `Action::Close` that an owner did not store it. A QoS 0 one, a
//! refused one and a subscription change are answered once the group's commit is done.

use std::collections::HashMap;

use berth_core::broker::{
    OperatorPublish, OperatorPublished, PublishRefusal, SubscriptionAnswer, SubscriptionChange,
    is_operator_conn, operator_conn,
};
use berth_core::{AdminError, Broker, ClientId, ConnId, Store};
use tokio::sync::oneshot;

use crate::broker_handle::PublishOutcome;

/// The broker's answer to an operator's PUBLISH.
pub(crate) type PublishReply = Result<PublishOutcome, PublishRefusal>;

/// The broker's answer to an operator's subscription change.
pub(crate) type SubscriptionReply = Result<SubscriptionAnswer, AdminError>;

#[derive(Debug, Default)]
pub(crate) struct Operators {
    /// The last operator connection numbered.
    last_conn: u64,
    /// Publishes whose acknowledgement has not come out yet, by operator connection.
    waiting: HashMap<ConnId, (oneshot::Sender<PublishReply>, OperatorPublished)>,
    /// Answers sent once the group is committed.
    publishes: Vec<(oneshot::Sender<PublishReply>, PublishReply)>,
    subscriptions: Vec<(oneshot::Sender<SubscriptionReply>, SubscriptionReply)>,
}

impl Operators {
    /// Hands an operator's PUBLISH to the broker.
    pub(crate) fn publish<S: Store>(
        &mut self,
        broker: &mut Broker<S>,
        request: OperatorPublish,
        reply: oneshot::Sender<PublishReply>,
    ) {
        self.last_conn += 1;
        let conn = operator_conn(self.last_conn);
        match broker.operator_publish(super::now(), conn, request) {
            Ok(published) if published.acknowledged => {
                self.waiting.insert(conn, (reply, published));
            }
            Ok(published) => self
                .publishes
                .push((reply, Ok(PublishOutcome::Stored(published)))),
            Err(refusal) => self.publishes.push((reply, Err(refusal))),
        }
    }

    /// Hands an operator's subscription change to the broker.
    pub(crate) fn subscription<S: Store>(
        &mut self,
        broker: &mut Broker<S>,
        client: ClientId,
        change: SubscriptionChange,
        reply: oneshot::Sender<SubscriptionReply>,
    ) {
        let answer = broker.change_subscription(super::now(), &client, change);
        self.subscriptions.push((reply, answer));
    }

    /// An action for `conn` that no client connection took: if `conn` is an operator
    /// connection, its publish is settled — `stored` (its acknowledgement) or not (closed).
    pub(crate) fn settle(&mut self, conn: ConnId, stored: bool) {
        if !is_operator_conn(conn) {
            return;
        }
        if let Some((reply, published)) = self.waiting.remove(&conn) {
            let outcome = if stored {
                PublishOutcome::Stored(published)
            } else {
                PublishOutcome::NotStored(published)
            };
            let _ = reply.send(Ok(outcome));
        }
    }

    /// Sends the answers the group's commit made true.
    pub(crate) fn answer_committed(&mut self) {
        for (reply, answer) in self.publishes.drain(..) {
            let _ = reply.send(answer);
        }
        for (reply, answer) in self.subscriptions.drain(..) {
            let _ = reply.send(answer);
        }
    }
}
