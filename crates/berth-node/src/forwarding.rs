//! Forwarding to other nodes: one ordered queue per node, batched RPCs retried until a
//! deadline, and re-routing of clients a node no longer owns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_cluster::convert::message_from_pb;
use berth_cluster::{ClusterNode, pb};
use berth_core::{Event, Forwarded, NodeId};
use berth_server::BrokerHandle;
use tokio::sync::mpsc::UnboundedReceiver;
use tonic::Status;

use berth_cluster::convert::client_id;

/// Messages per Forward RPC at most.
pub(crate) const FORWARD_BATCH: usize = 512;
/// How long a forward is retried (peer down, election) before the publisher is told it failed.
pub(crate) const FORWARD_DEADLINE: Duration = Duration::from_secs(10);

/// One message on its way to one node.
#[derive(Debug)]
pub(crate) struct ForwardItem {
    pub(crate) token: Option<u64>,
    pub(crate) message: pb::ForwardedMessage,
    pub(crate) deadline: tokio::time::Instant,
}

/// One node's forward queue: batches in order, retries until the deadline, reports outcomes.
pub(crate) async fn forward_loop(
    node: ClusterNode,
    broker: BrokerHandle,
    target: NodeId,
    mut queue: UnboundedReceiver<ForwardItem>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < FORWARD_BATCH {
            match queue.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let outcome = send_with_retry(&node, target, &batch).await;
        let delivered = match outcome {
            Ok((not_owned, retried)) => {
                not_owned.is_empty() || reroute(&node, &broker, &batch, not_owned, retried).await
            }
            Err(error) => {
                tracing::warn!(target = %target, %error, messages = batch.len(), "forwarding failed");
                false
            }
        };
        for item in batch {
            if let Some(token) = item.token {
                let event = Event::ForwardDone {
                    token,
                    delivered,
                    node: target,
                };
                let _ = broker.notify(event).await;
            }
        }
    }
}

async fn send_with_retry(
    node: &ClusterNode,
    target: NodeId,
    batch: &[ForwardItem],
) -> Result<(Vec<String>, bool), String> {
    let deadline = batch.iter().map(|i| i.deadline).min();
    let mut request = pb::ForwardBatch {
        from_node: node.id(),
        messages: batch.iter().map(|i| i.message.clone()).collect(),
        retry: false,
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = async {
            let mut client = node.client(target.0).map_err(|e| e.to_string())?;
            let mut req = tonic::Request::new(request.clone());
            req.set_timeout(Duration::from_secs(5));
            client
                .forward(req)
                .await
                .map(|r| r.into_inner().not_owned)
                .map_err(|s: Status| s.message().to_string())
        };
        match attempt.await {
            Ok(not_owned) => return Ok((not_owned, request.retry)),
            Err(error) => {
                if deadline.is_some_and(|d| tokio::time::Instant::now() + backoff > d) {
                    return Err(error);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                // The attempt may have been stored there, its answer lost.
                request.retry = true;
            }
        }
    }
}

/// Clients a node said it does not own (ownership moved while the message travelled): send
/// their messages to the owner the registry names now, once it has caught up.
async fn reroute(
    node: &ClusterNode,
    broker: &BrokerHandle,
    batch: &[ForwardItem],
    not_owned: Vec<String>,
    sent_before: bool,
) -> bool {
    for attempt in 0..20 {
        let mut pending: HashMap<NodeId, Vec<pb::ForwardedMessage>> = HashMap::new();
        let owners: HashMap<String, NodeId> = match node.state().read() {
            Ok(state) => not_owned
                .iter()
                .filter_map(|c| {
                    let owner = state.registry.sessions.get(&client_id(c)?)?.owner;
                    Some((c.clone(), owner))
                })
                .collect(),
            Err(_) => return false,
        };
        for item in batch {
            for client in &item.message.client_ids {
                let Some(owner) = owners.get(client) else {
                    continue;
                };
                if !not_owned.contains(client) {
                    continue;
                }
                let mut message = item.message.clone();
                message.client_ids = vec![client.clone()];
                pending.entry(*owner).or_default().push(message);
            }
        }
        let mut all_taken = true;
        for (owner, messages) in pending {
            if owner.0 == node.id() {
                // The session moved to this very node meanwhile: hand it to the local broker.
                if !forward_locally(broker, messages, sent_before || attempt > 0).await {
                    all_taken = false;
                }
                continue;
            }
            let Ok(mut client) = node.client(owner.0) else {
                all_taken = false;
                continue;
            };
            let request = pb::ForwardBatch {
                from_node: node.id(),
                messages,
                retry: sent_before || attempt > 0,
            };
            match client.forward(request).await {
                Ok(reply) if reply.get_ref().not_owned.is_empty() => {}
                _ => all_taken = false,
            }
        }
        if all_taken {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    tracing::warn!(clients = ?not_owned, "forward: no owner accepted re-routed messages");
    false
}

/// Gives forwarded messages to this node's own broker; true if it owned every client.
async fn forward_locally(
    broker: &BrokerHandle,
    messages: Vec<pb::ForwardedMessage>,
    retried: bool,
) -> bool {
    let mut forwarded = Vec::with_capacity(messages.len());
    for m in messages {
        let Some(message) = m.message.and_then(|m| message_from_pb(m).ok()) else {
            continue;
        };
        forwarded.push(Forwarded {
            message: Arc::new(message),
            clients: m.client_ids.iter().filter_map(|c| client_id(c)).collect(),
            publisher: m.publisher.as_deref().and_then(client_id),
            retried,
        });
    }
    broker
        .forwarded(forwarded)
        .await
        .is_some_and(|not_owned| not_owned.is_empty())
}
