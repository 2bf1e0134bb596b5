//! How a node is put together from its parts — its MQTT listeners, the session store (RocksDB)
//! and the cluster (openraft, one member unless peers or join say otherwise) — shared by
//! `main.rs` and the end-to-end tests, so that those run against what ships.

use std::path::Path;

use anyhow::Context as _;
use berth_core::Limit;
use berth_server::{ListenerKind, MqttListener};
use berth_store::{RocksOptions, RocksStore};
use tokio::net::TcpListener;

use crate::config;

/// Completed TCP handshakes an MQTT socket holds until the node accepts them (the kernel caps
/// it at `net.core.somaxconn`, 4,096 by default). tokio's 1,024 overflowed in a reconnect storm
/// of 1,024 CONNECTs at once (the accept loop shares two cores with the connections it
/// started): the kernel dropped the handshakes of 450–620 of 9,000 clients, each of which came
/// back only after its one-second SYN retry.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket at `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as tokio's own
/// `TcpListener::bind` sets: a restarted node rebinds a port whose old connections linger in
/// TIME_WAIT).
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds every MQTT listener of the configuration ([`config::Config::mqtt_listeners`]: the
/// shorthand keys' and `[[listeners]]`), in order, and logs each with its name, kind and bound
/// address (`MQTT listener bound listener=NAME kind=KIND bound=ADDR`: tests read the addresses
/// of port-0 listeners from it). A listener that cannot bind stops the node, naming its key.
pub async fn bind_listeners(config: &config::Config) -> anyhow::Result<Vec<MqttListener>> {
    let mut bound = Vec::new();
    for config::Listening { key, listener, .. } in config.mqtt_listeners() {
        let socket = listen(listener.bind).with_context(|| {
            format!(
                "{key}: cannot listen for MQTT ({}) on {}",
                listener.kind, listener.bind
            )
        })?;
        let addr = socket
            .local_addr()
            .with_context(|| format!("{key}: the address bound for {}", listener.bind))?;
        tracing::info!(
            listener = %listener.name,
            kind = %listener.kind,
            bound = %addr,
            "MQTT listener bound"
        );
        bound.push(MqttListener {
            name: listener.name,
            kind: listener.kind,
            socket,
            proxy: Some(config.proxy_settings(listener.proxy_protocol)),
            ws_path: listener.path,
            max_connections: match listener.max_connections {
                Limit::Unlimited => None,
                Limit::AtMost(max) => Some(max),
            },
        });
    }
    Ok(bound)
}

/// The bound address of the first listener of `kind`, or `none` (the start-up line's `mqtt=`,
/// `tls=`, `ws=` and `wss=`).
pub fn first_address(listeners: &[MqttListener], kind: ListenerKind) -> String {
    listeners
        .iter()
        .filter(|listener| listener.kind == kind)
        .find_map(|listener| listener.socket.local_addr().ok())
        .map_or_else(|| "none".to_owned(), |addr| addr.to_string())
}

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
