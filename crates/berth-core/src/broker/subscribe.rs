//! SUBSCRIBE and UNSUBSCRIBE: the session's subscriptions, the index, retained messages.

use berth_codec::{
    Packet, QoS, SubAck, SubAckReasonCode, Subscribe, UnsubAck, UnsubAckReasonCode, Unsubscribe,
};

use super::Broker;
use crate::ids::{ClientId, ConnId};
use crate::message::Delivery;
use crate::store::{Op, Store, SubscriptionRecord};
use crate::time::UnixMillis;

use berth_codec::RetainHandling;

impl<S: Store> Broker<S> {
    pub(super) fn on_subscribe(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        client: &ClientId,
        subscribe: Subscribe,
    ) {
        let subscription_id = subscribe.properties.subscription_identifier;
        let mut reason_codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained_for = Vec::new();
        let Some(session) = self.sessions.get(client) else {
            return;
        };
        let Some(online) = session.online.as_ref() else {
            return;
        };
        // Decided for the whole packet first (core's one rule, which the cluster's plan of
        // this SUBSCRIBE asked too): the quota counts the filters granted before each one.
        let verdicts = self.config.vet_subscribe(
            &online.principal,
            session.subscriptions.len(),
            |filter| session.subscriptions.contains_key(filter),
            subscribe.subscriptions.iter().map(|s| &s.filter),
        );
        for (requested, verdict) in subscribe.subscriptions.into_iter().zip(verdicts) {
            if let Err(refusal) = verdict {
                if let crate::config::SubscribeRefusal::Limit(limit) = refusal {
                    self.stats.count_limit(limit);
                }
                reason_codes.push(refusal.reason_code());
                continue;
            }
            let Some(session) = self.sessions.get_mut(client) else {
                return;
            };
            let record = SubscriptionRecord {
                options: requested.options,
                subscription_id,
            };
            // Kept as long as the session: not a slice pinning the whole SUBSCRIBE packet.
            let filter = requested.filter.detached();
            let existed = session
                .subscriptions
                .insert(filter, record.clone())
                .is_some();
            if session.stored {
                self.batch.push(Op::PutSubscription {
                    client: client.clone(),
                    filter: requested.filter.clone(),
                    record: record.clone(),
                });
            }
            self.index.insert(client, &requested.filter, record.clone());
            reason_codes.push(SubAckReasonCode::granted(requested.options.qos));
            // §3.3.1.3: retained messages are not sent for shared subscriptions.
            let wants_retained = match requested.options.retain_handling {
                RetainHandling::SendOnSubscribe => true,
                RetainHandling::SendIfNewSubscription => !existed,
                RetainHandling::DoNotSend => false,
            };
            if wants_retained && !requested.filter.is_shared() {
                retained_for.push((requested.filter, record));
            }
        }
        self.send(
            conn,
            Packet::SubAck(SubAck {
                packet_id: subscribe.packet_id,
                reason_codes,
                properties: Default::default(),
            }),
        );
        for (filter, record) in retained_for {
            let matching: Vec<_> = self
                .retained
                .values()
                .filter(|message| filter.matches(&message.topic))
                .cloned()
                .collect();
            for message in matching {
                let qos: QoS = message.qos.min(record.options.qos);
                let delivery = Delivery {
                    message,
                    qos,
                    // Sent because of a new subscription: RETAIN stays set (§3.3.1.3).
                    retain: true,
                    subscription_ids: record.subscription_id.into_iter().collect(),
                    redelivery: false,
                    sent_as: None,
                };
                self.deliver(now, client, delivery);
            }
        }
    }

    pub(super) fn on_unsubscribe(
        &mut self,
        conn: ConnId,
        client: &ClientId,
        unsubscribe: Unsubscribe,
    ) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in unsubscribe.filters {
            if session.subscriptions.remove(&filter).is_some() {
                if session.stored {
                    self.batch.push(Op::DeleteSubscription {
                        client: client.clone(),
                        filter: filter.clone(),
                    });
                }
                self.index.remove(client, &filter);
                reason_codes.push(UnsubAckReasonCode::Success);
            } else {
                reason_codes.push(UnsubAckReasonCode::NoSubscriptionExisted);
            }
        }
        self.send(
            conn,
            Packet::UnsubAck(UnsubAck {
                packet_id: unsubscribe.packet_id,
                reason_codes,
                properties: Default::default(),
            }),
        );
    }
}
