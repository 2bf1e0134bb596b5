//! Berth's IO side: the MQTT listener, one tokio task per connection, the broker thread that
//! owns all session state, and the HTTP endpoints (`/metrics`, `/health`).
//!
//! ```text
//!  TcpListener ─accept─▶ connection task ─Command─▶ broker thread (berth-core Broker + Store)
//!                        connection task ◀─Outbound─┘
//!  HTTP listener ─▶ axum: /metrics (Prometheus text) · /health
//! ```
//! Nothing here decides protocol rules; it decodes, forwards, executes actions and keeps time.
//! The cluster is a port ([`ClusterPort`]): this crate has its single-node implementation and
//! builds without Raft or gRPC; `berth-node` implements it over openraft and tonic.

mod broker_handle;
mod cluster_port;
mod connection;
pub mod http;
mod mailbox;
pub mod metrics;
pub mod proxy_protocol;
mod runtime;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use berth_core::{Broker, BrokerConfig, ConnId, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use broker_handle::{BrokerHandle, ExportPage, ForwardReply};
pub use cluster_port::{ClusterPort, Grant, NoConsensus, PortFuture, SingleNode, StartCluster};
pub use metrics::{Metrics, MetricsError};

/// Commands (decoded packets) that may wait for the broker thread before connections stop
/// reading their sockets.
const COMMAND_CAPACITY: usize = 16 * 1024;

/// Options of a running server besides the broker rules.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub broker: BrokerConfig,
    /// fsync the write-ahead log once per group commit (survives power loss, not just a kill).
    pub storage_sync: bool,
    /// The PROXY protocol on the MQTT listener (behind HAProxy, an NLB, a K8s LoadBalancer).
    pub proxy: ProxySettings,
}

/// Whether the MQTT listener expects a PROXY protocol header before MQTT, and how long it
/// waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySettings {
    pub mode: proxy_protocol::ProxyMode,
    pub header_timeout: std::time::Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            mode: proxy_protocol::ProxyMode::Off,
            header_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// Sockets the server serves, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    pub mqtt: TcpListener,
    pub http: Option<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("storage failed: {0}")]
    Store(#[from] berth_core::StoreError),
    #[error("metrics registry: {0}")]
    Metrics(#[from] MetricsError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker thread panicked")]
    BrokerPanicked,
}

/// Serves MQTT (and HTTP, if given) until `shutdown` completes; then every connection gets
/// DISCONNECT 0x8B (MQTT 5), the store is synced, and this returns.
pub async fn serve<S: Store + 'static>(
    options: ServerOptions,
    store: S,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_node(options, store, listeners, None, shutdown).await
}

/// [`serve`], as a node of a cluster when `cluster` is given (it starts the port once the
/// broker thread can be reached).
pub async fn serve_node<S: Store + 'static>(
    options: ServerOptions,
    store: S,
    listeners: Listeners,
    cluster: Option<StartCluster>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let metrics = Arc::new(Metrics::new()?);
    let ready = Arc::new(AtomicBool::new(false));
    let max_packet_size = options.broker.limits.max_packet_size;
    let proxy = options.proxy;
    let mut broker = Broker::open(options.broker, store, runtime::now())?;
    let (commands, receiver) = tokio::sync::mpsc::channel(COMMAND_CAPACITY);
    let port: Arc<dyn ClusterPort> = match cluster {
        Some(start) => start(BrokerHandle {
            commands: commands.clone(),
        }),
        None => Arc::new(SingleNode),
    };
    if let Some(node) = port.node_id() {
        broker.join_cluster(node);
    }
    let broker_loop = runtime::BrokerLoop {
        broker,
        commands: receiver,
        runtime: tokio::runtime::Handle::current(),
        storage_sync: options.storage_sync,
        metrics: metrics.clone(),
        ready: ready.clone(),
        cluster: port.clone(),
    };
    // Stops accepting when shutdown is asked for or when the broker thread ends on its own
    // (a storage failure): a broker that cannot keep its promises takes no new clients.
    let (stop_tx, stop_rx) = watch::channel(false);
    let thread_stop = stop_tx.clone();
    let broker_thread = std::thread::Builder::new()
        .name("berth-broker".into())
        .spawn(move || {
            let _abort = AbortOnPanic;
            let result = broker_loop.run();
            let _ = thread_stop.send(true);
            result
        })?;

    let http_task = listeners.http.map(|listener| {
        let mut stop = stop_rx.clone();
        tokio::spawn(http::serve_http(
            listener,
            metrics.clone(),
            ready.clone(),
            async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            },
        ))
    });

    tracing::info!(addr = ?listeners.mqtt.local_addr().ok(), "serving MQTT");
    let next_conn = AtomicU64::new(1);
    let mut stop = stop_rx.clone();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = stop.changed() => break,
            accepted = listeners.mqtt.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let connection = connection::Connection {
                    conn: ConnId(next_conn.fetch_add(1, Ordering::Relaxed)),
                    stream,
                    edge: Box::new(connection::Edge {
                        peer,
                        proxy,
                        metrics: metrics.clone(),
                        cluster: port.clone(),
                    }),
                    commands: commands.clone(),
                    max_packet_size,
                };
                tokio::spawn(connection.run());
            }
        }
    }
    tracing::info!("shutting down");
    let _ = commands.send(runtime::Command::Shutdown).await;
    let _ = stop_tx.send(true);
    let result = tokio::task::spawn_blocking(move || broker_thread.join())
        .await
        .map_err(|_| ServerError::BrokerPanicked)?
        .map_err(|_| ServerError::BrokerPanicked)?;
    if let Some(task) = http_task {
        let _ = task.await;
    }
    result.map_err(ServerError::from)
}

/// Ends the process when the broker thread panics. The broker thread is the single writer of
/// session state: without it the node would go on accepting connections and acknowledging
/// nothing, or worse, hold what it already stored where no client can reach it. Aborting lets
/// the supervisor restart the node, which recovers from its store (what was acknowledged was
/// stored first).
struct AbortOnPanic;

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                "the broker thread panicked: aborting so that the node restarts from its store"
            );
            std::process::abort();
        }
    }
}
