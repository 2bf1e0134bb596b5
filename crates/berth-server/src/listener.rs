//! The MQTT listeners: one accept loop per socket, of any kind (TCP, TLS, WebSocket, WebSocket
//! over TLS) and any number of each, every one handing its connections to a task of their own,
//! all feeding the one broker thread.
//!
//! ```text
//!  [[listeners]] / listen, tls.listen, ws.* ─▶ MqttListener (bound by the caller)
//!        ─▶ Listener { name, kind, proxy, tls, ws_path, own limit } ─accept─▶ gate ─▶ Connection
//! ```

use std::fmt;
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
use crate::gate::ListenerGate;
use crate::runtime::Command;
use crate::tls::TlsFiles;
use crate::{Listeners, Metrics, ProxySettings, TlsOptions};

/// How long an accept loop waits after the operating system refused an accept (out of file
/// descriptors, say) before it tries again, instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// MQTT over TCP.
    Tcp,
    /// MQTT over TLS (needs [`crate::ServerOptions::tls`]).
    Tls,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS (needs [`crate::ServerOptions::tls`]).
    Wss,
}

impl ListenerKind {
    pub const ALL: [ListenerKind; 4] = [
        ListenerKind::Tcp,
        ListenerKind::Tls,
        ListenerKind::Ws,
        ListenerKind::Wss,
    ];

    /// The configuration spelling (`kind = "tcp"`), also the `kind` of log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }

    /// TLS underneath (the node's `[tls]` certificate).
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// An HTTP upgrade to a WebSocket first.
    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }

    fn describe(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "MQTT",
            ListenerKind::Tls => "MQTT over TLS",
            ListenerKind::Ws => "MQTT over WebSocket",
            ListenerKind::Wss => "MQTT over WebSocket over TLS",
        }
    }
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One MQTT socket the server serves, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct MqttListener {
    /// Its name in logs and in `berth_listener_refusals_total{listener}`; unique in a node.
    pub name: String,
    pub kind: ListenerKind,
    pub socket: TcpListener,
    /// The PROXY protocol on it; `None`: the server's default for its kind
    /// ([`crate::ServerOptions::proxy`], or [`TlsOptions::proxy`] on tls and wss).
    pub proxy: Option<ProxySettings>,
    /// ws and wss: the HTTP path of the upgrade; `None`: [`crate::ServerOptions::ws_path`].
    pub ws_path: Option<String>,
    /// Connections open at once on this listener, on top of the node's
    /// `limits.max_connections`; `None`: no limit of its own.
    pub max_connections: Option<u64>,
}

/// Every socket a server serves: MQTT listeners of any kinds, several of a kind if need be,
/// and HTTP. [`Listeners`] (one of each kind) converts into it.
#[derive(Debug, Default)]
pub struct ListenerSet {
    pub mqtt: Vec<MqttListener>,
    pub http: Option<TcpListener>,
}

impl From<Listeners> for ListenerSet {
    /// Each socket named after its kind (`tcp`, `tls`, `ws`, `wss`), with the server's
    /// defaults and no limit of its own.
    fn from(listeners: Listeners) -> ListenerSet {
        let Listeners {
            mqtt,
            tls,
            ws,
            wss,
            http,
        } = listeners;
        let sockets = [
            (mqtt, ListenerKind::Tcp),
            (tls, ListenerKind::Tls),
            (ws, ListenerKind::Ws),
            (wss, ListenerKind::Wss),
        ];
        let mqtt = sockets
            .into_iter()
            .filter_map(|(socket, kind)| {
                socket.map(|socket| MqttListener {
                    name: kind.as_str().to_owned(),
                    kind,
                    socket,
                    proxy: None,
                    ws_path: None,
                    max_connections: None,
                })
            })
            .collect();
        ListenerSet { mqtt, http }
    }
}

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

/// What a listener that does not say otherwise gets: the server's options.
pub(crate) struct Defaults {
    /// The PROXY protocol of tcp and ws listeners.
    pub proxy: ProxySettings,
    /// The certificate of tls and wss listeners, and their PROXY protocol.
    pub tls: Option<TlsOptions>,
    pub ws_path: Arc<str>,
}

/// Starts one accept loop per listener; each ends when `stop` turns true. The caller has
/// checked that TLS listeners have their certificate (`defaults.tls`).
pub(crate) fn spawn_all(
    listeners: Vec<MqttListener>,
    defaults: &Defaults,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) {
    let tls_proxy = defaults
        .tls
        .as_ref()
        .map_or(defaults.proxy, |tls| tls.proxy);
    for listener in listeners {
        let MqttListener {
            name,
            kind,
            socket,
            proxy,
            ws_path,
            max_connections,
        } = listener;
        let default_proxy = if kind.is_tls() {
            tls_proxy
        } else {
            defaults.proxy
        };
        let tls = if kind.is_tls() {
            defaults.tls.as_ref().map(|tls| tls.files.clone())
        } else {
            None
        };
        let ws_path = kind
            .is_websocket()
            .then(|| match ws_path.filter(|path| !path.is_empty()) {
                Some(path) => Arc::<str>::from(path),
                None => defaults.ws_path.clone(),
            });
        let listener = Listener {
            name: Arc::from(name),
            kind,
            socket,
            proxy: proxy.unwrap_or(default_proxy),
            tls,
            ws_path,
            limit: ListenerGate::new(max_connections),
        };
        tracing::info!(
            listener = %listener.name,
            kind = %kind,
            addr = ?listener.socket.local_addr().ok(),
            max_connections = ?max_connections,
            "serving MQTT"
        );
        tokio::spawn(listener.run(shared.clone(), stop.clone()));
    }
}

/// One listening socket and how its connections start.
pub(crate) struct Listener {
    pub name: Arc<str>,
    pub kind: ListenerKind,
    pub socket: TcpListener,
    pub proxy: ProxySettings,
    /// `Some` on a TLS listener (and a WebSocket one over TLS).
    pub tls: Option<Arc<TlsFiles>>,
    /// `Some` on a WebSocket listener: the path MQTT is served on.
    pub ws_path: Option<Arc<str>>,
    /// Its own limit of open connections (and its count).
    pub limit: Arc<ListenerGate>,
}

impl Listener {
    /// Accepts until `stop` turns true.
    pub(crate) async fn run(self, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
        let kind = self.kind.describe();
        tracing::debug!(addr = ?self.socket.local_addr().ok(), listener = %self.name, kind, "accepting");
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
                            tracing::warn!(%error, listener = %self.name, kind, "accept failed");
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                            continue;
                        }
                    };
                    let now = std::time::Instant::now();
                    let permit = match shared.gate.admit(Some(&self.limit), now) {
                        Ok(permit) => permit,
                        Err(refused) => {
                            if refused.by_listener() {
                                shared.metrics.count_listener_refused(&self.name, refused.reason());
                            } else {
                                shared.metrics.count_connection_refused(refused.reason());
                            }
                            tracing::debug!(
                                %peer,
                                listener = %self.name,
                                reason = refused.reason(),
                                by_listener = refused.by_listener(),
                                "connection refused at accept"
                            );
                            continue;
                        }
                    };
                    let connection = Connection {
                        permit: Some(permit),
                        conn: ConnId(shared.next_conn.fetch_add(1, Ordering::Relaxed)),
                        stream,
                        edge: Box::new(Edge {
                            listener: self.name.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_one_of_each_kind_listeners_become_a_set_named_by_kind() {
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
        let set = ListenerSet::from(Listeners {
            mqtt: Some(bind().await),
            tls: None,
            ws: Some(bind().await),
            wss: None,
            http: Some(bind().await),
        });
        let named: Vec<(&str, ListenerKind)> = set
            .mqtt
            .iter()
            .map(|listener| (listener.name.as_str(), listener.kind))
            .collect();
        assert_eq!(
            named,
            [("tcp", ListenerKind::Tcp), ("ws", ListenerKind::Ws)]
        );
        assert!(set.mqtt.iter().all(|listener| listener.proxy.is_none()
            && listener.ws_path.is_none()
            && listener.max_connections.is_none()));
        assert!(set.http.is_some());
    }

    #[test]
    fn kinds_are_spelled_as_the_configuration_writes_them() {
        let spelled: Vec<&str> = ListenerKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(spelled, ["tcp", "tls", "ws", "wss"]);
        assert!(ListenerKind::Wss.is_tls() && ListenerKind::Wss.is_websocket());
        assert!(!ListenerKind::Tcp.is_tls() && !ListenerKind::Tcp.is_websocket());
    }
}
