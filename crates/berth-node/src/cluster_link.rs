//! The link between this node's Raft and its broker: feeds registry changes to the broker
//! thread in log order, forwards routed messages to their owner nodes in per-node batches,
//! records the broker's session changes, and runs the new owner's half of a takeover.
//!
//! ```text
//!  Raft apply ─ClusterEvent─▶ pump ─BrokerHandle::notify(Cluster)─▶ broker thread ─ broker_applied
//!  broker ─Action::Forward─▶ per-node queue ─batched Forward RPC─▶ owner ─ack─▶ ForwardDone
//!  CONNECT ─claim (Raft)─▶ wait broker_applied ≥ claim ─takeover pages─▶ Import* ─▶ ConnectAs
//! ```
//!
//! The connection's steps (claim, commit) are in `admission.rs`, forwarding in `forwarding.rs`,
//! the recording of the broker's session changes in `recorder.rs`, the old owner's side of a
//! takeover in `endpoint.rs`, the recovery of a backlog left on a node that was unreachable at a
//! takeover in `stranded.rs`; `port.rs` puts them behind the server's `ClusterPort`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_cluster::convert::{delivery_from_pb, export_from_pb};
use berth_cluster::{ClusterNode, pb};
use berth_core::{
    ClientId, ClusterEvent, Command, Event, Forwarded, NodeId, Replicate, SessionExport,
};
use berth_server::BrokerHandle;
use berth_server::metrics::TakeoverResult;
use tokio::runtime::Handle;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::watch;

use crate::forwarding::{FORWARD_DEADLINE, ForwardCommand, ForwardItem, forward_loop};

/// Shared by the broker thread (dispatch), connections and the cluster service.
#[derive(Debug)]
pub struct ClusterLink {
    pub(crate) node: ClusterNode,
    pub(crate) broker: BrokerHandle,
    runtime: Handle,
    queues: Mutex<HashMap<NodeId, UnboundedSender<ForwardCommand>>>,
    /// How long a node may leave a forward and a probe unanswered before what goes to it is
    /// kept here instead (hinted handoff).
    handoff_after: Duration,
    /// The last log index whose registry changes the broker thread has been handed.
    broker_applied: watch::Receiver<u64>,
    /// The broker's rules, for the steps taken before a packet reaches the broker.
    rules: berth_core::BrokerConfig,
    /// Clients whose stranded backlog this node is pulling now (`stranded.rs`).
    pub(crate) late_pulls: Mutex<HashSet<ClientId>>,
    /// Copies pulled and stored here whose release the old node has not confirmed yet.
    pulled: Mutex<HashSet<(ClientId, u64, NodeId)>>,
    /// The broker's session changes on their way to the registry (`recorder.rs`).
    records: UnboundedSender<Command>,
}

impl ClusterLink {
    /// Starts the event pump and the timers' release; returns the link.
    pub(crate) fn start(
        node: ClusterNode,
        events: UnboundedReceiver<(u64, Vec<ClusterEvent>)>,
        broker: BrokerHandle,
        rules: berth_core::BrokerConfig,
        handoff_after: Duration,
    ) -> Arc<ClusterLink> {
        let (applied_tx, applied_rx) = watch::channel(0);
        let records = crate::recorder::start(node.clone(), broker.clone());
        let link = Arc::new(ClusterLink {
            node,
            broker,
            runtime: Handle::current(),
            queues: Mutex::new(HashMap::new()),
            handoff_after,
            broker_applied: applied_rx,
            rules,
            late_pulls: Mutex::new(HashSet::new()),
            pulled: Mutex::new(HashSet::new()),
            records,
        });
        tokio::spawn(pump_events(link.clone(), events, applied_tx));
        tokio::spawn(release_timers_when_caught_up(link.clone()));
        link
    }

    /// The broker's rules (core decides what a packet asks of the registry: `registry::plan`).
    pub(crate) fn rules(&self) -> &berth_core::BrokerConfig {
        &self.rules
    }

    pub(crate) fn node_id(&self) -> NodeId {
        NodeId(self.node.id())
    }

    /// Waits (bounded) until the broker thread has been handed the registry up to `index`.
    pub(crate) async fn broker_caught_up(&self, index: u64) -> bool {
        let mut applied = self.broker_applied.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            applied.wait_for(|applied| *applied >= index),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// From the broker thread: queue `forwarded` for `node`.
    pub(crate) fn forward(&self, node: NodeId, token: Option<u64>, forwarded: Forwarded) {
        let item = ForwardItem {
            token,
            forwarded,
            deadline: tokio::time::Instant::now() + FORWARD_DEADLINE,
        };
        self.forward_queue(node, ForwardCommand::Item(item));
    }

    /// From the broker thread: forwards to `node` go out again (`Action::ForwardResume`).
    pub(crate) fn resume_forwards(&self, node: NodeId) {
        self.forward_queue(node, ForwardCommand::Resume);
    }

    /// From the broker thread: `node` counts as unreachable (`Action::ProbeNode`).
    pub(crate) fn probe_node(&self, node: NodeId) {
        self.forward_queue(node, ForwardCommand::Probe);
    }

    fn forward_queue(&self, node: NodeId, command: ForwardCommand) {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let queue = queues.entry(node).or_insert_with(|| {
            let (tx, rx) = unbounded_channel();
            let _guard = self.runtime.enter();
            self.runtime.spawn(forward_loop(
                self.node.clone(),
                self.broker.clone(),
                node,
                rx,
                self.handoff_after,
            ));
            tx
        });
        let _ = queue.send(command);
    }

    /// From the broker thread: record a session change in the registry, in the broker's order
    /// (best effort: a fenced or failed one is logged; the owner's own state stays authoritative
    /// for its sessions).
    pub(crate) fn record(&self, change: Replicate) {
        if let Replicate::Reassert { client, .. } = &change {
            tracing::warn!(
                client = client.as_str(),
                "declared down while serving it: re-asserting the session"
            );
        }
        // Only fails once the node's runtime is gone, and with it the registry.
        let _ = self
            .records
            .send(Command::of_replicate(self.node_id(), change));
    }

    /// Commits `command` through Raft, timing it (`berth_raft_commit_duration_seconds`).
    pub(crate) async fn propose(
        &self,
        command: &Command,
    ) -> Result<berth_cluster::Proposed, berth_cluster::ClusterError> {
        propose_timed(&self.node, &self.broker, command).await
    }

    /// Runs `task` on the node's runtime (from any thread, the broker thread included).
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.runtime.spawn(task);
    }

    /// Sends `event` to the broker thread and waits until its effects are stored.
    pub(crate) async fn call(&self, event: Event) -> bool {
        self.broker.call(event).await
    }

    /// The new owner's half of a takeover: pull the session from `from`, store it, release it
    /// (or, where nothing came, hand the broker the fallback state). What follows the release
    /// (the fallback, the import's end) is handed to the broker, not awaited: the CONNECT
    /// sent after this returns is handled after it. Returns whether a session was imported;
    /// counts the takeover by its result.
    pub(crate) async fn take_over(
        &self,
        client: &ClientId,
        from: NodeId,
        epoch: u64,
        claim_log_index: u64,
        fallback: SessionExport,
        resume_if_absent: bool,
    ) -> bool {
        // Sent, not awaited: the broker handles its commands in the order they were sent, so
        // this is handled before anything this pull hands it, and before the CONNECT behind it.
        self.broker
            .notify(Event::ImportBegin {
                client: client.clone(),
            })
            .await;
        let pulled = self
            .pull(client, from, epoch, claim_log_index, Pull::Takeover)
            .await;
        let result = match pulled {
            Ok(true) => TakeoverResult::Completed,
            // The old owner holds nothing: the session ended there with its connection, and the
            // registry had not heard yet. The client starts afresh.
            Ok(false) if !resume_if_absent => TakeoverResult::StartedAfresh,
            Ok(false) => {
                // The old owner holds nothing, but the registry kept a session that outlives its
                // connection (`Claimed::resumes_without_state`): its state is on its way through
                // another node (claims that overlapped, each pulling from the one before), which
                // offers it here as a stranded backlog once it lands. Meanwhile the session goes
                // on with the registry's subscriptions instead of starting afresh (Session
                // Present 0 and messages for its subscriptions dropped).
                tracing::info!(client = client.as_str(), from = %from, "takeover: nothing on the old owner; continuing with the registry's subscriptions");
                self.broker
                    .notify(Event::ImportState {
                        client: client.clone(),
                        export: Box::new(fallback),
                    })
                    .await;
                TakeoverResult::FromRegistry
            }
            Err(error) => {
                // The old owner is unreachable: go on with the replicated subscriptions. The
                // backlog stays on that node, which offers it here once it is back
                // (`stranded.rs`).
                tracing::warn!(%error, client = client.as_str(), from = %from, "takeover: old owner unreachable; continuing without its backlog until it is back");
                self.broker
                    .notify(Event::ImportState {
                        client: client.clone(),
                        export: Box::new(fallback),
                    })
                    .await;
                TakeoverResult::OldOwnerUnreachable
            }
        };
        // Not awaited either: the CONNECT (or the adoption) behind it follows it in the broker's
        // queue, and nothing here reads what it changes.
        self.broker
            .notify(Event::ImportDone {
                client: client.clone(),
            })
            .await;
        self.broker.metrics().count_takeover(result);
        result != TakeoverResult::StartedAfresh
    }

    /// Pulls the session `client` from `from` (state, then queue pages) and releases the copy
    /// there once it is stored here. Whether anything was found there.
    pub(crate) async fn pull(
        &self,
        client: &ClientId,
        from: NodeId,
        epoch: u64,
        claim_log_index: u64,
        mode: Pull,
    ) -> Result<bool, String> {
        let mut imports = Imports {
            broker: &self.broker,
            held: None,
        };
        let asked = Asked {
            client,
            from,
            epoch,
            claim_log_index,
            mode,
        };
        let received = self.receive(&asked, &mut imports).await;
        // A takeover whose pages all came settles them before the old copy goes
        // (`Broker::on_import_complete`), as the last event of the import: the one wait below
        // covers it, no extra trip to the broker.
        if matches!(received, Ok(Received::Imported)) {
            imports
                .send(Event::ImportComplete {
                    client: client.clone(),
                    epoch: berth_core::Epoch(epoch),
                })
                .await;
        }
        // However the stream ended, what it brought reaches the broker (a takeover cut short
        // goes on from it with its fallback state); a release waits until it is stored.
        let stored = imports.stored().await;
        let late = match received? {
            Received::Nothing => return Ok(false),
            Received::Imported => None,
            Received::Late(export, page) => Some((export, page)),
        };
        if !stored {
            return Err("the broker is gone before the session was stored".to_string());
        }
        if let Some((export, page)) = late {
            self.call(Event::ImportLate {
                client: client.clone(),
                epoch: berth_core::Epoch(epoch),
                holder: from,
                export,
                page,
            })
            .await;
            // The owner checked the session was settled here at `epoch` before pulling; an
            // epoch never comes back, so settled now means it was when the backlog arrived.
            if !self.accepts_late(client, epoch).await {
                // The session moved on (or ended) meanwhile: nothing was stored for it, and the
                // copy there stays for whoever owns the session now.
                return Ok(false);
            }
        }
        self.release(client, from, epoch).await;
        Ok(true)
    }

    /// The takeover stream of `client` from `from`: a takeover's state and pages go to the
    /// broker as they arrive (through `imports`), a late backlog is returned whole.
    async fn receive(
        &self,
        asked: &Asked<'_>,
        imports: &mut Imports<'_>,
    ) -> Result<Received, String> {
        let &Asked {
            client,
            from,
            epoch,
            claim_log_index,
            mode,
        } = asked;
        let mut rpc = self.node.client(from.0).map_err(|e| e.to_string())?;
        let request = pb::TakeoverRequest {
            client_id: client.as_str().to_string(),
            epoch,
            claim_log_index,
            new_owner: self.node.id(),
        };
        let mut request = tonic::Request::new(request);
        request.set_timeout(Duration::from_secs(60));
        // The old owner answers once its broker has the claim (milliseconds, normally). An
        // owner that does not answer within this is treated as unreachable: the takeover goes
        // on without its backlog, which it offers here once it is back (`stranded.rs`).
        let mut stream = tokio::time::timeout(TAKEOVER_HEADER_WAIT, rpc.takeover_session(request))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|s| s.message().to_string())?
            .into_inner();
        let mut found = false;
        let mut expected = 0;
        let mut received = 0;
        // A late backlog is stored in one piece once it is complete: a stream cut short and
        // pulled again must not append its first part twice.
        let mut late = Vec::new();
        let mut late_export = None;
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| s.message().to_string())?
        {
            match chunk.part {
                Some(pb::takeover_chunk::Part::Header(header)) => {
                    if !header.found {
                        return Ok(Received::Nothing);
                    }
                    let export = export_from_pb(header, epoch).map_err(|e| e.to_string())?;
                    expected = export.queued;
                    found = true;
                    match mode {
                        Pull::Takeover => {
                            imports
                                .send(Event::ImportState {
                                    client: client.clone(),
                                    export: Box::new(export),
                                })
                                .await;
                        }
                        Pull::Late => {
                            late_export = Some(Box::new(export));
                        }
                    }
                }
                Some(pb::takeover_chunk::Part::Queued(batch)) => {
                    let page = batch
                        .deliveries
                        .into_iter()
                        .map(delivery_from_pb)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| e.to_string())?;
                    received += page.len() as u64;
                    match mode {
                        Pull::Takeover => {
                            imports
                                .send(Event::ImportQueue {
                                    client: client.clone(),
                                    page,
                                })
                                .await;
                        }
                        Pull::Late => late.extend(page),
                    }
                }
                None => {}
            }
        }
        if !found {
            return Ok(Received::Nothing);
        }
        if received != expected {
            // A stream cut short: keep the old copy (no release) and say so.
            return Err(format!(
                "takeover stream ended after {received} of {expected} queued messages"
            ));
        }
        Ok(match late_export {
            Some(export) if mode == Pull::Late => Received::Late(export, late),
            _ => Received::Imported,
        })
    }

    /// Stored here: the old owner may delete its copy. Until it confirms, the pull is
    /// remembered, so that an offer of the same copy is answered with a release, not a second
    /// pull (which would deliver it twice).
    pub(crate) async fn release(&self, client: &ClientId, from: NodeId, epoch: u64) {
        let key = (client.clone(), epoch, from);
        self.pulled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
        let request = pb::ReleaseRequest {
            client_id: client.as_str().to_string(),
            epoch,
        };
        let released = match self.node.client(from.0) {
            Ok(mut rpc) => rpc.release_session(request).await.map(|_| ()),
            Err(error) => Err(tonic::Status::unavailable(error.to_string())),
        };
        match released {
            Ok(()) => {
                self.pulled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            }
            Err(status) => {
                tracing::warn!(error = %status.message(), client = client.as_str(), from = %from, "takeover: release failed; the old node offers its copy again and is answered with a release");
            }
        }
    }

    /// Whether the copy `from` holds of `client` at `epoch` was pulled and stored here already.
    pub(crate) fn already_pulled(&self, client: &ClientId, epoch: u64, from: NodeId) -> bool {
        self.pulled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(client.clone(), epoch, from))
    }
}

/// How long a takeover waits for the old owner to start sending the session.
/// Longer than the old owner may itself wait for the claim to reach its broker (up to the
/// commit timeout, then `broker_caught_up`'s 10 s).
const TAKEOVER_HEADER_WAIT: Duration = Duration::from_secs(20);

/// What a pull asks the old owner for: the copy of `client` on `from` for the claim at `epoch`.
struct Asked<'a> {
    client: &'a ClientId,
    from: NodeId,
    epoch: u64,
    claim_log_index: u64,
    mode: Pull,
}

/// What a takeover stream brought.
enum Received {
    /// No copy there (for that claim).
    Nothing,
    /// A takeover's state and queue, handed to the broker.
    Imported,
    /// A late backlog, whole, to be stored in one piece.
    Late(Box<SessionExport>, Vec<berth_core::Delivery>),
}

/// A pull's import events, handed to the broker without waiting for each: the broker handles
/// its commands in the order they were sent and stores a group's effects before it answers
/// anything of the next group, so once the last event is stored, so is every one before it.
/// Only that one is awaited (a takeover of a session with a short backlog was two waits for
/// two group commits, the release behind them).
struct Imports<'a> {
    broker: &'a BrokerHandle,
    /// The latest event, not handed over yet: the one to wait for if no other follows.
    held: Option<Event>,
}

impl Imports<'_> {
    async fn send(&mut self, event: Event) {
        if let Some(previous) = self.held.replace(event) {
            self.broker.notify(previous).await;
        }
    }

    /// Hands over the last event and waits until it is stored. False if the broker is gone.
    async fn stored(&mut self) -> bool {
        match self.held.take() {
            Some(last) => self.broker.call(last).await,
            None => true,
        }
    }
}

/// What a pull is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pull {
    /// The session arrives here with a new claim: its state and backlog become the session.
    Takeover,
    /// The session already runs here: a backlog stranded on a node that was unreachable at the
    /// takeover is appended to it.
    Late,
}

/// After a start, wills and expiries wait until this node knows a leader and has applied its
/// log: what the leader did for this node's sessions while it was away (a will published, a
/// session ended) must reach the broker before the broker's own timers could repeat it.
async fn release_timers_when_caught_up(link: Arc<ClusterLink>) {
    let mut metrics = link.node.raft().metrics();
    let caught_up = metrics
        .wait_for(|m| {
            m.current_leader.is_some() && m.last_applied.map(|id| id.index) >= m.last_log_index
        })
        .await
        .is_ok();
    if !caught_up {
        return;
    }
    // One more heartbeat round for entries the leader had not sent yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let applied = link
        .node
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |id| id.index);
    link.broker_caught_up(applied).await;
    let event = Event::Cluster(ClusterEvent::CaughtUp);
    let _ = link.broker.notify(event).await;
}

/// Registry changes → broker events, in log order.
async fn pump_events(
    link: Arc<ClusterLink>,
    mut events: UnboundedReceiver<(u64, Vec<ClusterEvent>)>,
    applied: watch::Sender<u64>,
) {
    while let Some((index, batch)) = events.recv().await {
        for event in batch {
            if !link.broker.notify(Event::Cluster(event)).await {
                return;
            }
        }
        // The channel is FIFO: whatever is sent after this is handled after these changes.
        applied.send_replace(index);
    }
}

/// [`ClusterNode::propose`], its commit time observed when it commits.
async fn propose_timed(
    node: &ClusterNode,
    broker: &BrokerHandle,
    command: &Command,
) -> Result<berth_cluster::Proposed, berth_cluster::ClusterError> {
    let started = std::time::Instant::now();
    let proposed = node.propose(command).await?;
    broker.metrics().observe_raft_commit(started.elapsed());
    Ok(proposed)
}
