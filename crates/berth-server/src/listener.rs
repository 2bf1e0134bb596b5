//! The MQTT listeners: one accept loop per socket (plain TCP, TLS), each handing its
//! connections to a task of their own, all feeding the one broker thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_core::ConnId;
use tokio::net::TcpListener;
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::cluster_port::ClusterPort;
use crate::connection::{Connection, Edge};
use crate::runtime::Command;
use crate::tls::TlsFiles;
use crate::{Metrics, ProxySettings};

/// How long an accept loop waits after the operating system refused an accept (out of file
/// descriptors, say) before it tries again, instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What every listener's connections share.
pub(crate) struct Shared {
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<Metrics>,
    pub cluster: Arc<dyn ClusterPort>,
    pub commands: Sender<Command>,
    pub max_packet_size: u32,
    /// Connection ids are unique across listeners.
    pub next_conn: AtomicU64,
    /// The node's connection limits.
    pub gate: Arc<crate::gate::Gate>,
    pub drain: Arc<crate::drain::DrainState>,
}

/// One listening socket and how its connections start.
pub(crate) struct Listener {
    pub socket: TcpListener,
    pub proxy: ProxySettings,
    /// `Some` on a TLS listener (and a WebSocket one over TLS).
    pub tls: Option<Arc<TlsFiles>>,
    /// `Some` on a WebSocket listener: the path MQTT is served on.
    pub ws_path: Option<Arc<str>>,
}

impl Listener {
    /// Accepts until `stop` turns true.
    pub(crate) async fn run(self, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
        let kind = match (self.tls.is_some(), self.ws_path.is_some()) {
            (false, false) => "MQTT",
            (true, false) => "MQTT over TLS",
            (false, true) => "MQTT over WebSocket",
            (true, true) => "MQTT over WebSocket over TLS",
        };
        tracing::debug!(addr = ?self.socket.local_addr().ok(), kind, "accepting");
        // The watch guard is dropped inside this future, never held across the accept loop's
        // awaits (it is not `Send`).
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => return,
                accepted = self.socket.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, kind, "accept failed");
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                            continue;
                        }
                    };
                    let permit = match shared.gate.admit(std::time::Instant::now()) {
                        Ok(permit) => permit,
                        Err(refused) => {
                            shared.metrics.count_connection_refused(refused.reason());
                            tracing::debug!(%peer, reason = refused.reason(), "connection refused at accept");
                            continue;
                        }
                    };
                    let connection = Connection {
                        permit: Some(permit),
                        conn: ConnId(shared.next_conn.fetch_add(1, Ordering::Relaxed)),
                        stream,
                        edge: Box::new(Edge {
                            peer,
                            proxy: self.proxy,
                            tls: self.tls.clone(),
                            ws_path: self.ws_path.clone(),
                            auth: shared.auth.clone(),
                            metrics: shared.metrics.clone(),
                            cluster: shared.cluster.clone(),
                            drain: shared.drain.clone(),
                        }),
                        commands: shared.commands.clone(),
                        max_packet_size: shared.max_packet_size,
                    };
                    tokio::spawn(connection.run());
                }
            }
        }
    }
}
