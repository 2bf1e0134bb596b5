//! A cluster node: its Raft, its RocksDB for the log and state machine, its gRPC server, and the
//! calls the broker's server side makes (claim, subscribe, forward, takeover).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_core::{Command, Outcome};
use berth_proto::v1 as pb;
use berth_proto::v1::cluster_client::ClusterClient;
use openraft::error::{CheckIsLeaderError, RaftError};
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::batch::{Batcher, Proposer};
use crate::log_store::{CF_LOG, CF_META, LogStore};
use crate::network::Network;
use crate::pool::ChannelPool;
use crate::state_machine::{SharedState, StateMachine};
use crate::types::{Node, NodeId, Raft};

/// How a node finds its cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// The address other nodes reach this node's cluster listener at.
    pub advertise: String,
    /// Static membership (node id → cluster address), including this node. Empty with `join`.
    pub peers: BTreeMap<NodeId, String>,
    /// The cluster address of a running member to join through (as learner, then voter).
    pub join: Option<String>,
    /// How long a replicated command may wait for consensus before it fails.
    pub commit_timeout: Duration,
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no quorum: the command was not committed within {0:?}")]
    Timeout(Duration),
    #[error("no leader is known")]
    NoLeader,
    #[error("raft storage failed: {0}")]
    Storage(String),
    #[error("node {node} is not a member")]
    UnknownNode { node: NodeId },
    #[error("rpc to node {node} failed: {message}")]
    Rpc { node: NodeId, message: String },
    #[error("raft: {0}")]
    Raft(String),
}

/// A committed command: its outcome, and where it sits in the log (a takeover waits until the
/// old owner applied it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    pub outcome: Outcome,
    pub log_index: u64,
}

/// Raft's health as one node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftHealth {
    pub leader: Option<NodeId>,
    pub is_leader: bool,
    pub term: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub voters: usize,
    /// On the leader: each follower's lag in entries behind the leader's last log index.
    pub follower_lag: Vec<(NodeId, u64)>,
    /// What the Raft database (log, registry) holds in memory for itself.
    pub memory: berth_core::StoreMemory,
}

/// A running cluster node.
#[derive(Clone)]
pub struct ClusterNode {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) state: SharedState,
    pub(crate) pool: ChannelPool,
    pub(crate) commit_timeout: Duration,
    proposer: Proposer,
    /// Every command this node proposes goes through it (`batch.rs`).
    batcher: Batcher,
    /// The Raft database and its block cache, for their memory figures (`RaftHealth::memory`).
    db: Arc<DB>,
    cache: Cache,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Memtable size of each Raft column family.
const RAFT_WRITE_BUFFER_BYTES: usize = 4 << 20;

/// Block cache of the Raft database, shared by its column families. Without one set, RocksDB
/// gives every family a 32 MB cache of its own, which no setting of Berth's would bound. Reads
/// of the log are rare (recent entries are in the memtables and openraft's own cache), so a
/// small one suffices.
const RAFT_BLOCK_CACHE_BYTES: usize = 8 << 20;

/// The Raft database and the block cache its column families share.
struct RaftDb {
    db: DB,
    cache: Cache,
}

/// What the Raft database holds in memory for itself: memtables, table readers and its block
/// cache (RocksDB's approximate usage); zero if RocksDB cannot say (for the metrics only).
fn memory_of(db: &DB, cache: &Cache) -> berth_core::StoreMemory {
    match rocksdb::perf::get_memory_usage_stats(Some(&[db]), Some(&[cache])) {
        Ok(stats) => berth_core::StoreMemory {
            memtables: stats.mem_table_total,
            block_cache: stats.cache_total,
            table_readers: stats.mem_table_readers_total,
        },
        Err(_) => berth_core::StoreMemory::default(),
    }
}

/// Opens (or creates) `<dir>`'s Raft database.
fn open_db(dir: &Path) -> Result<RaftDb, ClusterError> {
    let cache = Cache::new_lru_cache(RAFT_BLOCK_CACHE_BYTES);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_block_based_table_factory(&table);
    let cfs = [CF_LOG, CF_META].into_iter().map(|name| {
        let mut cf = Options::default();
        cf.set_block_based_table_factory(&table);
        // Small memtables: the log is appended, applied, snapshotted and purged; held in 64 MB
        // memtables (RocksDB's default) it would stay in memory long after it was purged, and
        // on a busy node that is ~500 bytes of RAM per session for entries nobody reads again.
        cf.set_write_buffer_size(RAFT_WRITE_BUFFER_BYTES);
        cf.set_max_write_buffer_number(2);
        ColumnFamilyDescriptor::new(name, cf)
    });
    let db = DB::open_cf_descriptors(&options, dir, cfs)
        .map_err(|e| ClusterError::Storage(e.to_string()))?;
    Ok(RaftDb { db, cache })
}

impl ClusterNode {
    /// Starts Raft on the data in `dir`. Returns the node and the stream of registry changes its
    /// broker must apply (the first is a `Reset` when a snapshot was loaded).
    pub async fn start(
        config: &ClusterConfig,
        dir: &Path,
    ) -> Result<
        (
            ClusterNode,
            UnboundedReceiver<(u64, Vec<berth_core::ClusterEvent>)>,
        ),
        ClusterError,
    > {
        let RaftDb { db, cache } = open_db(dir)?;
        let db = Arc::new(db);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let log = LogStore::new(db.clone());
        let sm =
            StateMachine::open(db.clone(), tx).map_err(|e| ClusterError::Storage(e.to_string()))?;
        let state = sm.shared();
        let raft_config = openraft::Config {
            cluster_name: "berth".into(),
            heartbeat_interval: 150,
            election_timeout_min: 600,
            election_timeout_max: 1200,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let pool = ChannelPool::default();
        let network = Network { pool: pool.clone() };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let proposer = Proposer {
            raft: raft.clone(),
            pool: pool.clone(),
        };
        let batcher = Batcher::start(proposer.clone());
        let node = ClusterNode {
            id: config.node_id,
            raft,
            state,
            pool,
            commit_timeout: config.commit_timeout,
            proposer,
            batcher,
            db,
            cache,
        };
        Ok((node, rx))
    }

    /// Forms the cluster from static peers (every node may call it with the same peers: the
    /// first entry of the log is the same everywhere) or joins through a running member.
    pub async fn bootstrap(&self, config: &ClusterConfig) -> Result<(), ClusterError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        if let Some(join) = &config.join {
            return self.join_through(join, &config.advertise).await;
        }
        let mut members: BTreeMap<NodeId, Node> = config
            .peers
            .iter()
            .map(|(id, addr)| (*id, Node::new(addr.clone())))
            .collect();
        members
            .entry(self.id)
            .or_insert_with(|| Node::new(config.advertise.clone()));
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another node's initialization reached us first: fine.
            Err(RaftError::APIError(_)) => Ok(()),
            Err(e) => Err(ClusterError::Raft(e.to_string())),
        }
    }

    /// Asks the member at `addr` to add this node as a learner and then as a voter.
    async fn join_through(&self, addr: &str, advertise: &str) -> Result<(), ClusterError> {
        let channel = self.pool.get(addr).map_err(|e| ClusterError::Rpc {
            node: 0,
            message: e.to_string(),
        })?;
        let mut client = ClusterClient::new(channel);
        let node = pb::Node {
            id: self.id,
            addr: advertise.to_string(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let result = client
                .add_learner(pb::AddLearnerRequest {
                    node: Some(node.clone()),
                })
                .await;
            match result {
                Ok(reply) => {
                    let membership = reply.into_inner().membership.unwrap_or_default();
                    let mut voters: BTreeSet<NodeId> = membership
                        .configs
                        .last()
                        .map(|c| c.ids.iter().copied().collect())
                        .unwrap_or_default();
                    voters.insert(self.id);
                    client
                        .change_membership(pb::ChangeMembershipRequest {
                            voters: voters.into_iter().collect(),
                        })
                        .await
                        .map_err(|e| ClusterError::Rpc {
                            node: 0,
                            message: e.message().to_string(),
                        })?;
                    return Ok(());
                }
                Err(status) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(%addr, error = %status.message(), "join: retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(status) => {
                    return Err(ClusterError::Rpc {
                        node: 0,
                        message: status.message().to_string(),
                    });
                }
            }
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The applied registry (read-only view).
    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// The cluster address of `node`, from the current membership.
    pub fn addr_of(&self, node: NodeId) -> Option<String> {
        self.proposer.addr_of(node)
    }

    /// A client for `node`'s Cluster service on the pooled channel.
    pub fn client(
        &self,
        node: NodeId,
    ) -> Result<ClusterClient<tonic::transport::Channel>, ClusterError> {
        self.proposer.client(node)
    }

    /// Commits `command` through Raft (via the leader if this node is not it), waiting at most
    /// the commit timeout. A node cut off from the majority fails here, never silently.
    pub async fn propose(&self, command: &Command) -> Result<Proposed, ClusterError> {
        // The deadline is the batcher's too (a batch is bounded by its earliest); the timeout
        // here bounds the wait of one whose command waited for a slot past it.
        let timeout = self.commit_timeout;
        tokio::time::timeout(timeout, self.submit(command))
            .await
            .unwrap_or(Err(ClusterError::Timeout(timeout)))
    }

    /// Hands `command` to the proposer now, in the caller's order, with no task waiting for it:
    /// its answer comes through the returned [`Submitted`], by the commit timeout or soon after.
    /// For what is recorded without anyone waiting (the broker's registry changes), so that a
    /// mass disconnect costs a queued command per session, not a task.
    pub fn submit(&self, command: &Command) -> Submitted {
        let deadline = tokio::time::Instant::now() + self.commit_timeout;
        Submitted(
            self.batcher
                .submit(crate::convert::command_to_pb(command), deadline),
        )
    }

    /// Waits until this node has applied the log up to `index` (bounded).
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), ClusterError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "takeover")
            .await
            .map(|_| ())
            .map_err(|_| ClusterError::Timeout(timeout))
    }

    /// Raft's read index, bounded by the commit timeout: every command committed before this
    /// call sits at or below it, so this node's registry, once applied that far, shows every
    /// write acknowledged anywhere before. The leader confirms it still leads (a heartbeat
    /// round to a quorum); a follower asks the leader (`ReadIndex`).
    pub async fn read_index(&self) -> Result<u64, ClusterError> {
        let timeout = self.commit_timeout;
        tokio::time::timeout(timeout, self.read_index_unbounded())
            .await
            .unwrap_or(Err(ClusterError::Timeout(timeout)))
    }

    async fn read_index_unbounded(&self) -> Result<u64, ClusterError> {
        loop {
            let leader = match self.local_read_index().await? {
                Ok(index) => return Ok(index),
                Err(leader) => leader,
            };
            // No leader known yet, or one that has just lost it: ask again shortly (an
            // election takes a few heartbeats; the caller's timeout bounds the loop).
            if let Some(leader) = leader {
                match self
                    .client(leader)?
                    .read_index(pb::ReadIndexRequest {})
                    .await
                {
                    Ok(reply) => return Ok(reply.into_inner().index),
                    Err(status) => tracing::debug!(%status, leader, "read index via leader failed"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The read index as this node's Raft gives it: `Ok` when it leads; otherwise the leader
    /// it knows, if any (what `ReadIndex` answers, and where a follower asks).
    pub(crate) async fn local_read_index(
        &self,
    ) -> Result<Result<u64, Option<NodeId>>, ClusterError> {
        match self.raft.get_read_log_id().await {
            Ok((read, _applied)) => Ok(Ok(read.map_or(0, |id| id.index))),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                Ok(Err(forward.leader_id))
            }
            Err(error) => Err(ClusterError::Raft(error.to_string())),
        }
    }

    /// Current status, for the admin endpoint and `/health`.
    pub fn status(&self) -> pb::StatusReply {
        let metrics = self.raft.metrics().borrow().clone();
        pb::StatusReply {
            node_id: self.id,
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            last_applied: metrics.last_applied.map(|id| id.index),
            membership: Some(crate::convert::membership_to_pb(
                metrics.membership_config.membership(),
            )),
            state: format!("{:?}", metrics.state),
        }
    }

    /// Raft's health as this node sees it (for `/ready` and the metrics). The commit index
    /// comes from Raft's own state (its metrics do not carry it in openraft 0.9); if Raft has
    /// stopped, the commit index reads as what was applied.
    pub async fn health(&self) -> RaftHealth {
        let metrics = self.raft.metrics().borrow().clone();
        let applied = metrics.last_applied.map_or(0, |id| id.index);
        let committed = self
            .raft
            .with_raft_state(|state| state.committed.map_or(0, |id| id.index))
            .await
            .unwrap_or(applied);
        let last_log_index = metrics.last_log_index.unwrap_or(0);
        let follower_lag = metrics
            .replication
            .as_ref()
            .map(|replication| {
                replication
                    .iter()
                    .filter(|(id, _)| **id != self.id)
                    .map(|(id, matched)| {
                        let matched = matched.map_or(0, |log| log.index);
                        (*id, last_log_index.saturating_sub(matched))
                    })
                    .collect()
            })
            .unwrap_or_default();
        RaftHealth {
            leader: metrics.current_leader,
            is_leader: metrics.current_leader == Some(self.id),
            term: metrics.current_term,
            last_log_index,
            committed_index: committed,
            applied_index: applied,
            snapshot_index: metrics.snapshot.map_or(0, |id| id.index),
            voters: metrics.membership_config.membership().voter_ids().count(),
            follower_lag,
            memory: memory_of(&self.db, &self.cache),
        }
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// A command handed to the proposer by [`ClusterNode::submit`]; resolves to its outcome.
#[derive(Debug)]
pub struct Submitted(tokio::sync::oneshot::Receiver<Result<pb::CommandResult, ClusterError>>);

impl std::future::Future for Submitted {
    type Output = Result<Proposed, ClusterError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|answer| {
            proposed(answer.unwrap_or_else(|_| {
                Err(ClusterError::Raft(
                    "the node's proposer has stopped".to_owned(),
                ))
            }))
        })
    }
}

/// A command's answer from the log as the outcome its proposer sees.
fn proposed(result: Result<pb::CommandResult, ClusterError>) -> Result<Proposed, ClusterError> {
    let result = result?;
    match crate::convert::outcome_from_pb(&result) {
        Ok(Some(outcome)) => Ok(Proposed {
            outcome,
            log_index: result.log_index,
        }),
        Ok(None) => Err(ClusterError::Raft(
            "a command answered as a blank entry".into(),
        )),
        Err(error) => Err(ClusterError::Raft(error.to_string())),
    }
}
