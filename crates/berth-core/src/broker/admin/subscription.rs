//! An operator adds or removes one subscription of a session, online or offline (the admin
//! API's `PUT|DELETE /api/v1/sessions/{client_id}/subscriptions/{filter}`, `berth ctl
//! subscribe|unsubscribe`).
//!
//! In a cluster it takes the path of a client's SUBSCRIBE / UNSUBSCRIBE: on the session's
//! owner, the registry change is planned here ([`plan_subscription`], with the registry's view
//! of the session for the quota) and committed through Raft, so that every node routes to the
//! session; then the owner's broker holds it ([`Broker::change_subscription`]: the session, the
//! index and the store), which vets it again against its own copy.
//!
//! What is checked: the topic limits, `acl.denied_filters` and `limits.max_subscriptions` —
//! what any session may hold whoever its client is (`BrokerConfig::may_hold`, as for
//! subscriptions that arrive with a session from another node). The ACL's rules for the client
//! are not asked when the subscription is made (the operator is not the client); they apply at
//! every delivery (`may_receive`), so the subscription delivers nothing they deny.
//!
//! No retained message is sent for it, whatever its Retain Handling: retained messages go to
//! a client in answer to its own SUBSCRIBE (MQTT §3.3.1.3), and neither the specification nor
//! the broker sends them later — not when an offline session reconnects either. The options
//! are kept as given (Retain Handling then only matters if the client subscribes again).

use berth_codec::{SubscriptionOptions, TopicFilter};

use super::super::Broker;
use super::AdminError;
use crate::config::{BrokerConfig, SubscribeRefusal};
use crate::ids::{ClientId, Epoch};
use crate::registry::{Command, Subscriptions};
use crate::stats::LimitReason;
use crate::store::{Op, Store, SubscriptionRecord};
use crate::time::UnixMillis;

/// An operator's change to one subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionChange {
    /// Subscribe with `options` (replacing the session's subscription to `filter`, if any),
    /// without a subscription identifier.
    Subscribe {
        filter: TopicFilter,
        options: SubscriptionOptions,
    },
    /// Remove the session's subscription to `filter`.
    Unsubscribe { filter: TopicFilter },
}

impl SubscriptionChange {
    pub fn filter(&self) -> &TopicFilter {
        match self {
            SubscriptionChange::Subscribe { filter, .. }
            | SubscriptionChange::Unsubscribe { filter } => filter,
        }
    }
}

/// The owner's answer to a [`SubscriptionChange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionAnswer {
    /// Held now; `replaced`: the session held the filter already (its options are replaced).
    Subscribed { replaced: bool },
    /// The filter is refused (nothing changed).
    Refused(SubscribeRefusal),
    /// `existed`: the session held the filter (false: there was nothing to remove).
    Unsubscribed { existed: bool },
}

/// Whether a session holding `holding` subscriptions (`held`: whether one of them is
/// `filter`) may hold `filter` too: see the module's comment.
fn vet(
    config: &BrokerConfig,
    holding: usize,
    held: bool,
    filter: &TopicFilter,
) -> Result<(), SubscribeRefusal> {
    if let Some(limit) = config.limits.topic_over(filter.matching_filter()) {
        return Err(SubscribeRefusal::Limit(limit));
    }
    if !config.may_hold(filter) {
        return Err(SubscribeRefusal::NotAuthorized);
    }
    let holding = u64::try_from(holding).unwrap_or(u64::MAX);
    if !held
        && !config
            .limits
            .max_subscriptions
            .allows(holding.saturating_add(1))
    {
        return Err(SubscribeRefusal::Limit(LimitReason::MaxSubscriptions));
    }
    Ok(())
}

fn record_of(options: SubscriptionOptions) -> SubscriptionRecord {
    SubscriptionRecord {
        options,
        subscription_id: None,
    }
}

/// The registry command for `change` of `client`'s session at `epoch` (`held`: its
/// subscriptions as the registry holds them), or why the filter is refused.
pub fn plan_subscription(
    config: &BrokerConfig,
    client: &ClientId,
    epoch: Epoch,
    change: &SubscriptionChange,
    held: &Subscriptions,
) -> Result<Command, SubscribeRefusal> {
    match change {
        SubscriptionChange::Subscribe { filter, options } => {
            vet(config, held.len(), held.contains_key(filter), filter)?;
            Ok(Command::Subscribe {
                client: client.clone(),
                epoch,
                subscriptions: vec![(filter.clone(), record_of(*options))],
            })
        }
        SubscriptionChange::Unsubscribe { filter } => Ok(Command::Unsubscribe {
            client: client.clone(),
            epoch,
            filters: vec![filter.clone()],
        }),
    }
}

impl<S: Store> Broker<S> {
    /// Applies an operator's `change` to `client`'s session held here: its subscriptions, the
    /// index and the store, as a client's SUBSCRIBE / UNSUBSCRIBE does — without the SUBACK,
    /// and without retained messages (see the module's comment). In a cluster the registry
    /// has committed it already. State changes are pending like those of
    /// [`Broker::handle_deferred`].
    pub fn change_subscription(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        change: SubscriptionChange,
    ) -> Result<SubscriptionAnswer, AdminError> {
        self.admin_target(now, client)?;
        let Some(session) = self.sessions.get_mut(client) else {
            return Err(AdminError::NoSession);
        };
        match change {
            SubscriptionChange::Subscribe { filter, options } => {
                let held = session.subscriptions.contains_key(&filter);
                if let Err(refusal) = vet(&self.config, session.subscriptions.len(), held, &filter)
                {
                    return Ok(SubscriptionAnswer::Refused(refusal));
                }
                let record = record_of(options);
                // Kept as long as the session: its own allocation.
                let filter = filter.detached();
                let replaced = session
                    .subscriptions
                    .insert(filter.clone(), record.clone())
                    .is_some();
                if session.stored {
                    self.batch.push(Op::PutSubscription {
                        client: client.clone(),
                        filter: filter.clone(),
                        record: record.clone(),
                    });
                }
                self.index.insert(client, &filter, record);
                Ok(SubscriptionAnswer::Subscribed { replaced })
            }
            SubscriptionChange::Unsubscribe { filter } => {
                let existed = session.subscriptions.remove(&filter).is_some();
                if existed {
                    if session.stored {
                        self.batch.push(Op::DeleteSubscription {
                            client: client.clone(),
                            filter: filter.clone(),
                        });
                    }
                    self.index.remove(client, &filter);
                }
                Ok(SubscriptionAnswer::Unsubscribed { existed })
            }
        }
    }
}
