//! An in-process Berth server on 127.0.0.1:0 for end-to-end tests. By default it is what ships:
//! the node as the `berth` binary wires it (`berth::node`): RocksDB in a temporary directory and
//! a one-member Raft cluster, so every CONNECT, SUBSCRIBE and retained PUBLISH goes through a
//! Raft commit as in production. `start` takes any store, without a cluster, for tests of the
//! server itself.

use std::net::SocketAddr;

use berth_core::Store;
use berth_server::{Listeners, ServerOptions, serve_node};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct TestServer {
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), berth_server::ServerError>>>,
    /// The node's Raft, when it runs as one (stopped after the server).
    raft: Option<berth_cluster::ClusterNode>,
    /// The node's data directory, removed when the server is dropped.
    _data: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server on `store`, without a cluster.
    pub async fn start<S: Store + 'static>(options: ServerOptions, store: S) -> TestServer {
        TestServer::launch(options, store, None).await
    }

    /// What ships, with these broker rules: a RocksDB store and a one-member Raft cluster.
    pub async fn with_config(broker: berth_core::BrokerConfig) -> TestServer {
        let data = tempfile::tempdir().expect("temp dir");
        let config = berth::config::Config {
            data_dir: data.path().to_path_buf(),
            broker,
            ..berth::config::Config::default()
        };
        let store =
            berth::node::open_store(&config.data_dir, config.storage_sync).expect("open store");
        let (cluster, raft) = berth::node::start_cluster(&config, None)
            .await
            .expect("start the node's Raft");
        let mut server = TestServer::launch(config.server_options(), store, Some(cluster)).await;
        server.raft = Some(raft);
        server._data = Some(data);
        server
    }

    async fn launch<S: Store + 'static>(
        options: ServerOptions,
        store: S,
        cluster: Option<berth_server::StartCluster>,
    ) -> TestServer {
        let mqtt = TcpListener::bind("127.0.0.1:0").await.expect("bind mqtt");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let (mqtt_addr, http_addr) = (
            mqtt.local_addr().expect("addr"),
            http.local_addr().expect("addr"),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_node(
            options,
            store,
            Listeners {
                mqtt: Some(mqtt),
                tls: None,
                ws: None,
                wss: None,
                http: Some(http),
            },
            cluster,
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            mqtt: mqtt_addr,
            http: http_addr,
            stop: Some(stop),
            task: Some(task),
            raft: None,
            _data: None,
        }
    }

    /// What ships, with the default rules.
    pub async fn start_default() -> TestServer {
        TestServer::with_config(berth_core::BrokerConfig::default()).await
    }

    /// Stops the server and waits (bounded) for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(crate::client::WAIT, task).await;
            let result = result.expect("server stops in time").expect("server task");
            result.expect("server ends cleanly");
        }
        if let Some(raft) = self.raft.take() {
            raft.shutdown().await;
        }
    }
}
