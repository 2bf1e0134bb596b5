//! How a node is put together from its parts — the session store (RocksDB) and the cluster
//! (openraft, one member unless peers or join say otherwise) — shared by `main.rs` and the
//! end-to-end tests, so that those run against what ships.

use std::path::Path;

use anyhow::Context as _;
use berth_store::{RocksOptions, RocksStore};
use tokio::net::TcpListener;

use crate::config;

/// The node's RocksDB in `data_dir` (created if missing). RocksDB locks the directory, so a
/// second node on the same directory stops here with a clear error.
pub fn open_store(data_dir: &Path, storage_sync: bool) -> anyhow::Result<RocksStore> {
    RocksStore::open(
        data_dir,
        RocksOptions {
            sync_writes: storage_sync,
        },
    )
    .with_context(|| format!("cannot open the store in {}", data_dir.display()))
}

/// Starts this node's Raft (a one-member cluster unless peers or join say otherwise) on
/// `<data_dir>/raft` and its cluster listener if it has one; returns the cluster port for
/// `berth_server::serve_node` (`berth-node` over this Raft) and the Raft node itself.
pub async fn start_cluster(
    config: &config::Config,
    listener: Option<TcpListener>,
) -> anyhow::Result<(berth_server::StartCluster, berth_cluster::ClusterNode)> {
    let settings = &config.cluster;
    let advertise = match (&listener, settings.advertised()) {
        (_, Some(addr)) => addr,
        (Some(listener), None) => listener.local_addr()?.to_string(),
        // Nobody can reach this node: its address is never dialled.
        (None, None) => "127.0.0.1:0".to_owned(),
    };
    let cluster_config = berth_cluster::ClusterConfig {
        node_id: settings.node_id,
        advertise: advertise.clone(),
        peers: settings.peers.iter().cloned().collect(),
        join: settings.join.clone(),
        commit_timeout: std::time::Duration::from_secs(u64::from(settings.commit_timeout_secs)),
    };
    let raft_dir = config.data_dir.join("raft");
    std::fs::create_dir_all(&raft_dir)
        .with_context(|| format!("cannot create {}", raft_dir.display()))?;
    let (node, events) = berth_cluster::ClusterNode::start(&cluster_config, &raft_dir)
        .await
        .with_context(|| format!("cannot start the cluster node on {}", raft_dir.display()))?;
    let slot = berth_cluster::BrokerSlot::default();
    if let Some(listener) = listener {
        tracing::info!(cluster = %listener.local_addr()?, %advertise, "serving the cluster");
        let serving = node.clone();
        let slot = slot.clone();
        tokio::spawn(async move {
            let forever = std::future::pending::<()>();
            if let Err(error) = berth_cluster::serve(serving, slot, listener, forever).await {
                tracing::error!(%error, "the cluster listener failed");
            }
        });
    }
    tokio::spawn(berth_cluster::leader::run(node.clone(), slot.clone()));
    let bootstrap = node.clone();
    tokio::spawn(async move {
        if let Err(error) = bootstrap.bootstrap(&cluster_config).await {
            tracing::error!(%error, "could not form or join the cluster");
        }
    });
    Ok((
        berth_node::port(
            berth_node::ClusterParts {
                node: node.clone(),
                events,
                slot,
                handoff_after: std::time::Duration::from_millis(u64::from(
                    settings.handoff_after_ms,
                )),
            },
            config.broker.clone(),
        ),
        node,
    ))
}
