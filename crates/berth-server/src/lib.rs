//! Berth's IO side: the MQTT listeners (TCP, TLS), one tokio task per connection, the broker
//! thread that owns all session state, and the HTTP endpoints (`/metrics`, `/health`).
//!
//! ```text
//!  TCP / TLS listener ─accept─▶ connection task ─Command─▶ broker thread (berth-core Broker + Store)
//!   (PROXY header, TLS,         connection task ◀─Outbound─┘
//!    credentials)
//!  HTTP listener ─▶ axum: /metrics (Prometheus text) · /health
//! ```
//! Nothing here decides protocol rules; it decodes, forwards, executes actions and keeps time.
//! The cluster is a port ([`ClusterPort`]): this crate has its single-node implementation and
//! builds without Raft or gRPC; `berth-node` implements it over openraft and tonic.

mod ack_run;
pub mod auth;
mod broker_handle;
mod cluster_port;
mod connection;
mod drain;
/// For the fuzz targets in `fuzz/` only.
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod http;
mod listener;
mod mailbox;
pub mod metrics;
pub mod proxy_protocol;
mod runtime;
mod timing;
pub mod tls;
mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use berth_core::{Broker, BrokerConfig, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use broker_handle::{BrokerHandle, ExportPage, Exported, ForwardReply, PublishOutcome};
pub use cluster_port::{
    ADMIN_COMMIT_WAIT, ADMIN_WAIT, AdminFailure, ClusterHealth, ClusterMembers, ClusterPort, Grant,
    Member, NoConsensus, OperatorFailure, PortFuture, SingleNode, StartCluster,
};
pub use drain::{DrainSettings, DrainState};
pub use listener::{ListenerKind, ListenerSet, MqttListener};
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
    /// The TLS listener's certificate files and PROXY protocol (with [`Listeners::tls`]).
    pub tls: Option<TlsOptions>,
    /// Client authentication; `None`: every client is let in (no password file).
    pub auth: Option<Arc<auth::Authenticator>>,
    /// The path of the WebSocket listeners; empty: [`DEFAULT_WS_PATH`].
    pub ws_path: String,
    /// How many connections may be open, and start per second, across all listeners.
    pub connection_limits: gate::ConnectionLimits,
    /// How the node drains its clients before it stops.
    pub drain: DrainSettings,
    /// The bearer token of the admin API (`/api/v1`); `None`: it answers loopback clients only.
    pub admin_token: Option<Arc<str>>,
}

/// The WebSocket path MQTT clients expect by default.
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// The TLS listener's settings. `files` is shared with whoever reloads it (SIGHUP).
#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub files: Arc<tls::TlsFiles>,
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

/// Sockets the server serves, bound by the caller (tests bind port 0): one MQTT listener of
/// each kind at most (a [`ListenerSet`] has any number).
#[derive(Debug, Default)]
pub struct Listeners {
    /// MQTT over TCP.
    pub mqtt: Option<TcpListener>,
    /// MQTT over TLS (needs [`ServerOptions::tls`]).
    pub tls: Option<TcpListener>,
    /// MQTT over WebSocket.
    pub ws: Option<TcpListener>,
    /// MQTT over WebSocket over TLS (needs [`ServerOptions::tls`]).
    pub wss: Option<TcpListener>,
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
    #[error("a TLS listener was given without its certificate (ServerOptions::tls)")]
    TlsWithoutCertificate,
    #[error("password file: {0}")]
    Auth(#[from] auth::AuthError),
}

/// Serves MQTT (and HTTP, if given) until `shutdown` completes; then every connection gets
/// DISCONNECT 0x8B (MQTT 5), the store is synced, and this returns.
pub async fn serve<S: Store + 'static>(
    options: ServerOptions,
    store: S,
    listeners: impl Into<ListenerSet>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_node(options, store, listeners, None, shutdown).await
}

/// [`serve`], as a node of a cluster when `cluster` is given (it starts the port once the
/// broker thread can be reached).
pub async fn serve_node<S: Store + 'static>(
    options: ServerOptions,
    store: S,
    listeners: impl Into<ListenerSet>,
    cluster: Option<StartCluster>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let metrics = Arc::new(Metrics::new()?);
    let ready = Arc::new(AtomicBool::new(false));
    let drain = Arc::new(DrainState::default());
    let max_packet_size = options.broker.limits.max_packet_size;
    let proxy = options.proxy;
    let tls = options.tls.clone();
    let listeners: ListenerSet = listeners.into();
    if listeners.mqtt.iter().any(|l| l.kind.is_tls()) && tls.is_none() {
        return Err(ServerError::TlsWithoutCertificate);
    }
    let auth = match options.auth.clone() {
        Some(auth) => auth,
        None => Arc::new(auth::Authenticator::load(auth::AuthSettings::default())?),
    };
    let mut broker = Broker::open(options.broker, store, runtime::now())?;
    let (commands, receiver) = tokio::sync::mpsc::channel(COMMAND_CAPACITY);
    let handle = BrokerHandle {
        commands: commands.clone(),
        metrics: metrics.clone(),
    };
    let port: Arc<dyn ClusterPort> = match cluster {
        Some(start) => start(handle.clone()),
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

    // Every listener's refusal series exists (at 0) before the first scrape can come: made
    // as each listener started, a scrape racing the start saw only some of them.
    for listener in &listeners.mqtt {
        metrics.show_listener(&listener.name);
    }
    let http_task = listeners.http.map(|listener| {
        let mut stop = stop_rx.clone();
        let state = http::HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
            cluster: port.clone(),
            drain: drain.clone(),
            admin_token: options.admin_token.clone(),
            broker: Some(handle.clone()),
        };
        tokio::spawn(http::serve_http(listener, state, async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }))
    });

    let shared = Arc::new(listener::Shared {
        auth,
        metrics: metrics.clone(),
        cluster: port.clone(),
        commands: commands.clone(),
        max_packet_size,
        next_conn: AtomicU64::new(1),
        gate: gate::Gate::new(options.connection_limits),
        drain: drain.clone(),
    });
    let ws_path: Arc<str> = if options.ws_path.is_empty() {
        Arc::from(DEFAULT_WS_PATH)
    } else {
        Arc::from(options.ws_path.as_str())
    };
    let defaults = listener::Defaults {
        proxy,
        tls,
        ws_path,
    };
    listener::spawn_all(listeners.mqtt, &defaults, &shared, &stop_rx);
    drop(shared);
    let mut stop = stop_rx.clone();
    let broker_stopped = tokio::select! {
        () = shutdown => false,
        () = drain.asked() => {
            tracing::info!("drain asked for through the admin API");
            false
        }
        _ = stop.wait_for(|stopped| *stopped) => true,
    };
    // A broker that stopped on its own (a storage failure) has nothing left to drain.
    if !broker_stopped {
        drain::run(&drain, options.drain, &commands, port.as_ref()).await;
    }
    tracing::info!("shutting down");
    // Accepting stops first, then the broker says goodbye to the connections it has.
    let _ = stop_tx.send(true);
    let _ = commands.send(runtime::Command::Shutdown).await;
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
