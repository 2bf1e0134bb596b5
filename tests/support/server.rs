//! An in-process Berth server on 127.0.0.1:0 for end-to-end tests.

use std::net::SocketAddr;

use berth_core::Store;
use berth_server::{Listeners, ServerOptions, serve};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct TestServer {
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), berth_server::ServerError>>>,
}

impl TestServer {
    pub async fn start<S: Store + 'static>(options: ServerOptions, store: S) -> TestServer {
        let mqtt = TcpListener::bind("127.0.0.1:0").await.expect("bind mqtt");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let (mqtt_addr, http_addr) = (
            mqtt.local_addr().expect("addr"),
            http.local_addr().expect("addr"),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            options,
            store,
            Listeners {
                mqtt,
                http: Some(http),
            },
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            mqtt: mqtt_addr,
            http: http_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A server with these broker rules and an in-memory store.
    pub async fn with_config(broker: berth_core::BrokerConfig) -> TestServer {
        TestServer::start(
            ServerOptions {
                broker,
                storage_sync: false,
            },
            berth_core::MemStore::new(),
        )
        .await
    }

    pub async fn start_default() -> TestServer {
        TestServer::start(ServerOptions::default(), berth_core::MemStore::new()).await
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
    }
}
