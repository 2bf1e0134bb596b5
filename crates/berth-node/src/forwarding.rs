//! Forwarding to other nodes: one ordered queue per node, batched RPCs retried until a
//! deadline, re-routing of clients a node no longer owns, and the hinted handoff's side here:
//! a node that answers neither a forward nor a probe within the handoff bound gets nothing
//! more until a probe answers — what was and what comes for it goes back to the broker
//! (`Event::HandOff`), which keeps it and acknowledges its publishers.
//!
//! ```text
//!  normal:    batch ─Forward RPC─▶ answer ─▶ ForwardDone   (no answer within half the bound:
//!             probe; no answer in the other half ─▶ HandOff(batch + queue) ─▶ returning;
//!             probes answered but not the batch for 500 ms ─▶ the batch again, as a retry)
//!  returning: every item ─▶ HandOff;  probe every PROBE_EVERY ─answer─▶ NodeReachable
//!             ─broker: Action::ForwardResume─▶ Resume in this queue ─▶ normal
//! ```
//!
//! Every message that leaves a queue is counted once in `berth_forwards_total{peer,result}`:
//! stored, rerouted, failed or handed back (the queue holds its peer's counters).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_cluster::convert::{message_from_pb, message_to_pb};
use berth_cluster::{ClusterNode, pb};
use berth_core::{Event, Forwarded, NodeId};
use berth_server::BrokerHandle;
use berth_server::metrics::{ForwardCounts, ForwardResult};
use tokio::sync::mpsc::UnboundedReceiver;
use tonic::Status;

use berth_cluster::convert::client_id;

/// Messages per Forward RPC at most.
pub(crate) const FORWARD_BATCH: usize = 512;
/// How long a forward is retried (peer down, election) before the publisher is told it failed.
pub(crate) const FORWARD_DEADLINE: Duration = Duration::from_secs(10);
/// One Forward RPC's timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long re-routing may wait for an owner (at least the handoff bound) before what it could
/// not place is kept here.
const REROUTE_WAIT: Duration = Duration::from_millis(500);
/// How long a batch may go unanswered by a node that answers probes before it is sent again.
const RESEND_UNANSWERED: Duration = Duration::from_millis(500);
/// How often a node that could not be reached is probed.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// One message on its way to one node.
#[derive(Debug)]
pub(crate) struct ForwardItem {
    pub(crate) token: Option<u64>,
    pub(crate) forwarded: Forwarded,
    pub(crate) deadline: tokio::time::Instant,
}

/// What the broker thread puts in a node's forward queue.
#[derive(Debug)]
pub(crate) enum ForwardCommand {
    Item(ForwardItem),
    /// `Action::ForwardResume`: the broker counts the node reachable again.
    Resume,
    /// `Action::ProbeNode`: the broker counts the node unreachable (what it forwarded there
    /// is kept): probe it until it answers.
    Probe,
}

/// One node's forward queue: batches in order, retries until the deadline, reports outcomes;
/// hands everything back while the node cannot be reached (module docs).
pub(crate) async fn forward_loop(
    node: ClusterNode,
    broker: BrokerHandle,
    target: NodeId,
    mut queue: UnboundedReceiver<ForwardCommand>,
    handoff_after: Duration,
) {
    let counts = broker.metrics().forwards_to(target);
    let mut returning = false;
    // An interval, not a sleep renewed each turn: items handed back one after another must not
    // keep the probe from ever running.
    let mut probe_tick = tokio::time::interval(PROBE_EVERY);
    probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if returning {
            tokio::select! {
                command = queue.recv() => match command {
                    None => return,
                    Some(ForwardCommand::Resume) => returning = false,
                    Some(ForwardCommand::Probe) => {}
                    Some(ForwardCommand::Item(item)) => {
                        let (items, resumed) = take_queued(&mut queue, vec![item]);
                        hand_back(&broker, target, items, &counts).await;
                        returning = !resumed;
                    }
                },
                _ = probe_tick.tick() => {
                    if probe(&node, target, handoff_after).await {
                        tracing::info!(peer = %target, "node reachable again: forwarding resumes");
                        let _ = broker.notify(Event::NodeReachable { node: target }).await;
                    }
                }
            }
            continue;
        }
        let first = match queue.recv().await {
            None => return,
            // A resume for a node never handed back (or handed back and resumed already).
            Some(ForwardCommand::Resume) => continue,
            Some(ForwardCommand::Probe) => {
                returning = true;
                continue;
            }
            Some(ForwardCommand::Item(item)) => item,
        };
        let (batch, control) = take_batch(&mut queue, first);
        // The broker counts the node unreachable (a re-route could not reach it): what comes
        // after this batch goes back to it until a probe answers. Dropped, the broker would
        // keep everything for that node and nothing would ever probe it (a chaos run: 51
        // acknowledged messages kept and never delivered).
        if matches!(control, Some(ForwardCommand::Probe)) {
            returning = true;
        }
        let sent = std::time::Instant::now();
        let outcome = match send_watched(&node, target, &batch, handoff_after).await {
            Some(outcome) => {
                if outcome.is_ok() {
                    broker.metrics().observe_forward(sent.elapsed());
                }
                outcome
            }
            None => {
                tracing::warn!(peer = %target, bound = ?handoff_after, "node unreachable: handing its messages back to be kept here");
                let (items, resumed) = take_queued(&mut queue, sent_once(batch));
                hand_back(&broker, target, items, &counts).await;
                returning = !resumed;
                continue;
            }
        };
        let delivered = match outcome {
            Ok((not_owned, _)) if not_owned.is_empty() => {
                counts.add(ForwardResult::Stored, batch.len());
                true
            }
            Ok((not_owned, retried)) => {
                let moved = moved_messages(&batch, &not_owned);
                let placed =
                    reroute(&node, &broker, &batch, not_owned, retried, handoff_after).await;
                counts.add(ForwardResult::Stored, batch.len() - moved);
                let result = if placed {
                    ForwardResult::Rerouted
                } else {
                    ForwardResult::Failed
                };
                counts.add(result, moved);
                placed
            }
            Err(error) => {
                tracing::warn!(peer = %target, %error, messages = batch.len(), "forwarding failed");
                counts.add(ForwardResult::Failed, batch.len());
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

/// `first` and the items queued behind it, up to a batch; stops at a `Resume` or `Probe` and
/// returns it (what follows it is left in the queue).
fn take_batch(
    queue: &mut UnboundedReceiver<ForwardCommand>,
    first: ForwardItem,
) -> (Vec<ForwardItem>, Option<ForwardCommand>) {
    let mut items = vec![first];
    while items.len() < FORWARD_BATCH {
        match queue.try_recv() {
            Ok(ForwardCommand::Item(item)) => items.push(item),
            Ok(control) => return (items, Some(control)),
            Err(_) => break,
        }
    }
    (items, None)
}

/// While handing back: `items` and what waits behind them in `queue`; whether a `Resume` was
/// among them (what follows it is left in the queue).
fn take_queued(
    queue: &mut UnboundedReceiver<ForwardCommand>,
    mut items: Vec<ForwardItem>,
) -> (Vec<ForwardItem>, bool) {
    loop {
        match queue.try_recv() {
            Ok(ForwardCommand::Item(item)) => items.push(item),
            Ok(ForwardCommand::Resume) => return (items, true),
            // Handing back already.
            Ok(ForwardCommand::Probe) => {}
            Err(_) => break,
        }
    }
    (items, false)
}

/// Messages of `batch` with a client among `not_owned` (its session moved while it travelled).
fn moved_messages(batch: &[ForwardItem], not_owned: &[String]) -> usize {
    batch
        .iter()
        .filter(|item| {
            item.forwarded
                .clients
                .iter()
                .any(|client| not_owned.iter().any(|n| n.as_str() == client.as_str()))
        })
        .count()
}

/// A batch handed back after it was sent: it may have arrived (its answer lost), so what is
/// kept of it goes again with DUP = 1, like a retry (else a copy delivered there before the
/// cut reaches the session again as new: DUP = 0 re-deliveries in the chaos test).
fn sent_once(mut batch: Vec<ForwardItem>) -> Vec<ForwardItem> {
    for item in &mut batch {
        item.forwarded.retried = true;
    }
    batch
}

/// The broker keeps `items` for their sessions (`Event::HandOff`).
async fn hand_back(
    broker: &BrokerHandle,
    target: NodeId,
    items: Vec<ForwardItem>,
    counts: &ForwardCounts,
) {
    counts.add(ForwardResult::HandedBack, items.len());
    let items = items
        .into_iter()
        .map(|item| (item.token, item.forwarded))
        .collect();
    let _ = broker
        .notify(Event::HandOff {
            node: target,
            items,
        })
        .await;
}

/// Whether `target` answers an empty forward within `bound` (its broker thread included).
async fn probe(node: &ClusterNode, target: NodeId, bound: Duration) -> bool {
    let Ok(mut client) = node.client(target.0) else {
        return false;
    };
    let mut request = tonic::Request::new(pb::ForwardBatch {
        from_node: node.id(),
        messages: Vec::new(),
        retry: false,
    });
    request.set_timeout(bound);
    tokio::time::timeout(bound, client.forward(request))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Sends `batch` (`send_with_retry`), watching that `target` answers: `None` when the forward
/// is not answered within half of `bound` and a probe then not within the other half (the
/// forward is abandoned; it may have arrived). A node that answers probes but not the batch
/// for `RESEND_UNANSWERED` (doubling each time) gets the batch again, marked as a retry: its
/// broker answers a forward at once (messages for a session still arriving are kept there), so
/// the request or its answer went down with a connection; waiting for the attempt's own 5 s
/// timeout would hold the batch's publishers that long (simulator seed 202, `7-ack-wait`).
async fn send_watched(
    node: &ClusterNode,
    target: NodeId,
    batch: &[ForwardItem],
    bound: Duration,
) -> Option<Result<(Vec<String>, bool), String>> {
    let send = send_with_retry(node, target, batch, false);
    tokio::pin!(send);
    let half = bound / 2;
    let mut sent_at = tokio::time::Instant::now();
    let mut resend_after = RESEND_UNANSWERED;
    loop {
        tokio::select! {
            outcome = &mut send => return Some(outcome),
            () = tokio::time::sleep(half) => {
                if !probe(node, target, half).await {
                    return None;
                }
                if sent_at.elapsed() >= resend_after {
                    tracing::debug!(peer = %target, messages = batch.len(), "forward unanswered by a node that answers probes: sending it again");
                    send.set(send_with_retry(node, target, batch, true));
                    sent_at = tokio::time::Instant::now();
                    resend_after = (resend_after * 2).min(ATTEMPT_TIMEOUT);
                }
            }
        }
    }
}

fn to_pb(forwarded: &Forwarded) -> pb::ForwardedMessage {
    pb::ForwardedMessage {
        message: Some(message_to_pb(&forwarded.message)),
        client_ids: forwarded
            .clients
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        publisher: forwarded.publisher.as_ref().map(|p| p.as_str().to_string()),
        retried: forwarded.retried,
    }
}

/// Sends `batch` until answered or its first item's deadline; `retry` when an earlier attempt
/// may have been stored there.
async fn send_with_retry(
    node: &ClusterNode,
    target: NodeId,
    batch: &[ForwardItem],
    retry: bool,
) -> Result<(Vec<String>, bool), String> {
    let deadline = batch.iter().map(|i| i.deadline).min();
    let mut request = pb::ForwardBatch {
        from_node: node.id(),
        messages: batch.iter().map(|i| to_pb(&i.forwarded)).collect(),
        retry,
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = async {
            let mut client = node.client(target.0).map_err(|e| e.to_string())?;
            let mut req = tonic::Request::new(request.clone());
            req.set_timeout(ATTEMPT_TIMEOUT);
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
/// their messages to the owner the registry names now, once it has caught up. An owner that
/// does not answer within `bound` (at least `REROUTE_WAIT`), and whatever is still not taken
/// that long after the first round, is kept here as a handoff entry (`Event::HandOff` without a token: the batch's
/// publishers are answered by its `ForwardDone`, which the broker handles after storing the
/// entries), so that no publisher waits on re-routing rounds (simulator seeds 686, 2943, 3487).
async fn reroute(
    node: &ClusterNode,
    broker: &BrokerHandle,
    batch: &[ForwardItem],
    not_owned: Vec<String>,
    sent_before: bool,
    bound: Duration,
) -> bool {
    // Longer than the handoff bound: a node that just answered the first forward is likely up,
    // and a batch of 512 stored with an fsync may take a while.
    let bound = bound.max(REROUTE_WAIT);
    let started = tokio::time::Instant::now();
    let mut not_owned = not_owned;
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
            for client in &item.forwarded.clients {
                let client = client.as_str().to_string();
                let client = &client;
                let Some(owner) = owners.get(client) else {
                    continue;
                };
                if !not_owned.contains(client) {
                    continue;
                }
                let mut message = to_pb(&item.forwarded);
                message.client_ids = vec![client.clone()];
                pending.entry(*owner).or_default().push(message);
            }
        }
        let retry = sent_before || attempt > 0;
        let mut refused = Vec::new();
        let mut refused_here = Vec::new();
        for (owner, messages) in pending {
            if owner.0 == node.id() {
                // The session moved to this very node meanwhile: hand it to the local broker
                // (which has not seen the move yet if it refuses: the next round).
                if !forward_locally(broker, messages.clone(), retry).await {
                    refused_here.extend(messages);
                }
                continue;
            }
            let request = pb::ForwardBatch {
                from_node: node.id(),
                messages: messages.clone(),
                retry,
            };
            let answer = async {
                let mut client = node.client(owner.0).map_err(|e| e.to_string())?;
                let mut request = tonic::Request::new(request);
                request.set_timeout(bound);
                client
                    .forward(request)
                    .await
                    .map_err(|s: Status| s.message().to_string())
            };
            match tokio::time::timeout(bound, answer).await {
                Ok(Ok(reply)) if reply.get_ref().not_owned.is_empty() => {}
                Ok(Ok(_)) => refused.push((owner, messages)),
                // Not reachable within the bound: kept here for it, as its own queue would.
                Ok(Err(_)) | Err(_) => keep(broker, owner, messages).await,
            }
        }
        if started.elapsed() >= bound {
            for (owner, messages) in std::mem::take(&mut refused) {
                keep(broker, owner, messages).await;
            }
        }
        // The next round re-routes only what was refused and not kept.
        not_owned = refused
            .iter()
            .flat_map(|(_, messages)| messages)
            .chain(&refused_here)
            .flat_map(|m| m.client_ids.iter().cloned())
            .collect();
        if not_owned.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    tracing::warn!(clients = ?not_owned, "forward: no owner accepted re-routed messages");
    false
}

/// Keeps `messages` here for `owner`'s sessions (`Event::HandOff`, no token: the publishers
/// wait on the batch's own outcome).
async fn keep(broker: &BrokerHandle, owner: NodeId, messages: Vec<pb::ForwardedMessage>) {
    let items = forwarded_of(messages, true)
        .into_iter()
        .map(|forwarded| (None, forwarded))
        .collect();
    let _ = broker.notify(Event::HandOff { node: owner, items }).await;
}

/// Gives forwarded messages to this node's own broker; true if it owned every client.
async fn forward_locally(
    broker: &BrokerHandle,
    messages: Vec<pb::ForwardedMessage>,
    retried: bool,
) -> bool {
    broker
        .forwarded(forwarded_of(messages, retried))
        .await
        .is_some_and(|not_owned| not_owned.is_empty())
}

fn forwarded_of(messages: Vec<pb::ForwardedMessage>, retried: bool) -> Vec<Forwarded> {
    let mut forwarded = Vec::with_capacity(messages.len());
    for m in messages {
        let Some(message) = m.message.and_then(|m| message_from_pb(m).ok()) else {
            continue;
        };
        forwarded.push(Forwarded {
            message: Arc::new(message),
            clients: m.client_ids.iter().filter_map(|c| client_id(c)).collect(),
            publisher: m.publisher.as_deref().and_then(client_id),
            retried: retried || m.retried,
        });
    }
    forwarded
}
