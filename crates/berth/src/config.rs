//! The node's configuration: built-in defaults, then the TOML file, then `BERTH_*` environment
//! variables, then command-line flags; each later source wins, key by key.
//!
//! ```text
//!   defaults ─┐
//!   --config FILE (TOML) ──▶ Overrides ─┐
//!   BERTH_<SECTION>_<KEY> ──▶ Overrides ─┼─▶ Config::resolve ─▶ Config ─▶ ServerOptions + addresses
//!   --listen, --http, ... ──▶ Overrides ─┘      (cross-key checks)
//! ```
//!
//! The MQTT listeners are the shorthand keys' (`listen`, `tls.listen`, `ws.listen`,
//! `ws.tls_listen`) and the file's `[[listeners]]` list, together ([`Config::mqtt_listeners`]).
//!
//! Every value is converted and checked where it enters (see [`value`]), so an error names the
//! key, or the variable, and the value. `0` never means "unlimited": that is spelled `unlimited`.
//! The example `berth.toml` at the repository root and `docs/configuration.md` list every key;
//! tests keep both in step with [`Config::default`].

mod env;
mod error;
mod file;
mod key;
mod listener;
mod render;
mod validate;
pub mod value;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use berth_codec::TopicFilter;
use berth_core::{BrokerConfig, DropPolicy, Limit, SessionExpiry};
use berth_server::auth::JwtAlgorithm;
use berth_server::proxy_protocol::ProxyMode;
use berth_server::{ProxySettings, ServerOptions};

pub use env::{NOT_KEYS, process_env};
pub use error::{ConfigError, Origin, Problem};
pub use file::parse_file;
pub use listener::{ListenerConfig, Listening};
use value::Input;

/// Default MQTT listener.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1883);
/// Default HTTP listener (`/metrics`, `/health`).
pub const DEFAULT_HTTP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Every configuration key. The environment variable is `BERTH_` followed by the dotted name in
/// upper case with `.` turned into `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Listen,
    ProxyProtocol,
    ProxyHeaderTimeout,
    Http,
    DataDir,
    LogLevel,
    StorageSync,
    SessionV3PersistentExpiry,
    SessionMaxExpiry,
    QueueMaxMessages,
    QueueMaxBytes,
    QueueDropPolicy,
    QueueQos0,
    QueueBackpressure,
    LimitsMaxPacketSize,
    LimitsReceiveMaximum,
    LimitsMaxInflight,
    LimitsTopicAliasMaximum,
    LimitsMaxKeepAlive,
    AclDeniedFilters,
    ClusterNodeId,
    ClusterListen,
    ClusterAdvertise,
    ClusterPeers,
    ClusterJoin,
    ClusterCommitTimeout,
    ClusterHandoffAfter,
    ClusterHandoffMaxPerSession,
    ClusterHandoffMaxTotal,
    TlsListen,
    TlsCert,
    TlsKey,
    TlsClientCa,
    TlsIdentityFromCert,
    TlsProxyProtocol,
    AuthAllowAnonymous,
    AuthPasswordFile,
    AclFile,
    WsListen,
    WsTlsListen,
    WsPath,
    LimitsMaxConnections,
    LimitsConnectionRate,
    LimitsPublishRate,
    LimitsPublishRateBytes,
    LimitsMaxSubscriptions,
    LimitsMaxTopicLength,
    LimitsMaxTopicLevels,
    LogFormat,
    DrainGrace,
    DrainRate,
    AdminTokenFile,
    AuthJwtAlgorithm,
    AuthJwtKeyFile,
}

/// The effective configuration of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// MQTT over TCP; `None`: no plain TCP listener (TLS only, say). Its default,
    /// [`DEFAULT_LISTEN`], applies only when no source sets it and `[[listeners]]` is empty.
    pub listen: Option<SocketAddr>,
    /// The PROXY protocol on `listen`: off, optional or required.
    pub proxy_protocol: ProxyMode,
    /// How long a connection may take to send its PROXY header.
    pub proxy_header_timeout_ms: u32,
    /// HTTP: `/metrics`, `/health` (later the admin API).
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    /// A `tracing` filter: `info`, or directives such as `info,berth_server=debug`.
    pub log_level: String,
    /// `log_format`: text lines or JSON objects.
    pub log_format: LogFormat,
    /// `storage.sync`: fsync once per group commit.
    pub storage_sync: bool,
    pub broker: BrokerConfig,
    pub cluster: ClusterSettings,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    /// `acl.file`: the rules file (read by [`crate::edge::Edge::load`]; `acl.denied_filters`
    /// is in `broker`).
    pub acl_file: Option<PathBuf>,
    pub ws: WsConfig,
    /// `limits.max_connections`: open connections, across listeners.
    pub max_connections: Limit,
    /// `limits.connection_rate`: new connections per second, across listeners.
    pub connection_rate: Limit,
    pub drain: DrainConfig,
    /// `admin.token_file`: the file whose first line is the admin API's bearer token (read
    /// at start by `main`); `None`: the admin API answers only clients on the loopback address.
    pub admin_token_file: Option<PathBuf>,
    /// `[[listeners]]`: MQTT listeners besides the shorthand keys' (all of them:
    /// [`Config::mqtt_listeners`]).
    pub listeners: Vec<ListenerConfig>,
}

/// `log_format`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The spelling of the file and the environment.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `[drain]`: how a stopping node (SIGTERM, or asked to drain) moves its clients elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainConfig {
    /// How long the node spends disconnecting its clients before it closes the rest;
    /// 0: no drain, every connection is closed at once.
    pub grace_secs: u32,
    /// Connections closed per second while draining.
    pub rate: Limit,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            grace_secs: 10,
            rate: Limit::AtMost(500),
        }
    }
}

/// `[ws]`: MQTT over WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsConfig {
    /// `None`: no WebSocket listener.
    pub listen: Option<SocketAddr>,
    /// WebSocket over TLS, with `[tls]`'s certificate; `None`: none.
    pub tls_listen: Option<SocketAddr>,
    /// The HTTP path of the upgrade.
    pub path: String,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            listen: None,
            tls_listen: None,
            path: berth_server::DEFAULT_WS_PATH.to_owned(),
        }
    }
}

/// `[tls]`: MQTT over TLS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// `None`: no TLS listener.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain and private key.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// PEM CA certificates client certificates must chain to; set: every client needs one.
    pub client_ca: Option<PathBuf>,
    /// The client certificate's Common Name is the client's username.
    pub identity_from_cert: bool,
    pub proxy_protocol: ProxyMode,
}

/// `[auth]`: who may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub allow_anonymous: bool,
    pub password_file: Option<PathBuf>,
    /// `auth.jwt_algorithm`: JWTs as passwords, signed with this; `None`: no JWT.
    pub jwt_algorithm: Option<JwtAlgorithm>,
    /// `auth.jwt_key_file`: the HS256 secret or the RS256/ES256 PEM public key.
    pub jwt_key_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous: true,
            password_file: None,
            jwt_algorithm: None,
            jwt_key_file: None,
        }
    }
}

/// `[cluster]`: how this node finds the others. Alone (the default) it is a one-member cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub node_id: u64,
    /// The cluster (gRPC) listener; `None`: no other node can reach this one.
    pub listen: Option<SocketAddr>,
    /// host:port other nodes use to reach `listen` (default: `listen`, or this node's peer entry).
    pub advertise: Option<String>,
    /// Static membership: node id → cluster address, this node included.
    pub peers: Vec<(u64, String)>,
    /// A running member to join through.
    pub join: Option<String>,
    /// How long CONNECT, SUBSCRIBE and takeover wait for consensus before failing.
    pub commit_timeout_secs: u32,
    /// How long a node may leave a forward and a probe unanswered before the messages for
    /// its sessions are kept on the publisher's node instead (hinted handoff).
    pub handoff_after_ms: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_id: 1,
            listen: None,
            advertise: None,
            peers: Vec::new(),
            join: None,
            commit_timeout_secs: 5,
            handoff_after_ms: 100,
        }
    }
}

impl ClusterSettings {
    /// The address other nodes reach this one at, when configured (otherwise the bound
    /// address of `listen`, which must then be a specific one).
    pub fn advertised(&self) -> Option<String> {
        if let Some(addr) = &self.advertise {
            return Some(addr.clone());
        }
        self.peers
            .iter()
            .find(|(id, _)| *id == self.node_id)
            .map(|(_, addr)| addr.clone())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Some(DEFAULT_LISTEN),
            proxy_protocol: ProxyMode::Off,
            proxy_header_timeout_ms: 5_000,
            http: DEFAULT_HTTP,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            log_format: LogFormat::Text,
            storage_sync: false,
            broker: BrokerConfig::default(),
            cluster: ClusterSettings::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            acl_file: None,
            ws: WsConfig::default(),
            max_connections: Limit::Unlimited,
            connection_rate: Limit::Unlimited,
            drain: DrainConfig::default(),
            admin_token_file: None,
            listeners: Vec::new(),
        }
    }
}

/// The values one source sets; `None` leaves the value of the sources below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub listen: Option<Option<SocketAddr>>,
    pub proxy_protocol: Option<ProxyMode>,
    pub proxy_header_timeout_ms: Option<u32>,
    pub http: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    pub storage_sync: Option<bool>,
    pub v3_persistent_expiry: Option<SessionExpiry>,
    pub max_expiry: Option<SessionExpiry>,
    pub max_messages: Option<Limit>,
    pub max_bytes: Option<Limit>,
    pub drop_policy: Option<DropPolicy>,
    pub queue_qos0: Option<bool>,
    pub backpressure: Option<bool>,
    pub max_packet_size: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub max_inflight: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub max_keep_alive: Option<u16>,
    pub denied_filters: Option<Vec<TopicFilter>>,
    pub node_id: Option<u64>,
    pub cluster_listen: Option<Option<SocketAddr>>,
    pub advertise: Option<Option<String>>,
    pub peers: Option<Vec<(u64, String)>>,
    pub join: Option<Option<String>>,
    pub commit_timeout_secs: Option<u32>,
    pub handoff_after_ms: Option<u32>,
    pub handoff_max_per_session: Option<Limit>,
    pub handoff_max_total: Option<Limit>,
    pub tls_listen: Option<Option<SocketAddr>>,
    pub tls_cert: Option<Option<PathBuf>>,
    pub tls_key: Option<Option<PathBuf>>,
    pub tls_client_ca: Option<Option<PathBuf>>,
    pub tls_identity_from_cert: Option<bool>,
    pub tls_proxy_protocol: Option<ProxyMode>,
    pub allow_anonymous: Option<bool>,
    pub password_file: Option<Option<PathBuf>>,
    pub acl_file: Option<Option<PathBuf>>,
    pub ws_listen: Option<Option<SocketAddr>>,
    pub ws_tls_listen: Option<Option<SocketAddr>>,
    pub ws_path: Option<String>,
    pub max_connections: Option<Limit>,
    pub connection_rate: Option<Limit>,
    pub publish_rate: Option<Limit>,
    pub max_subscriptions: Option<Limit>,
    pub max_topic_length: Option<u16>,
    pub max_topic_levels: Option<Limit>,
    pub log_format: Option<LogFormat>,
    pub drain_grace_secs: Option<u32>,
    pub drain_rate: Option<Limit>,
    pub admin_token_file: Option<Option<PathBuf>>,
    pub jwt_algorithm: Option<Option<JwtAlgorithm>>,
    pub jwt_key_file: Option<Option<PathBuf>>,
    pub publish_rate_bytes: Option<Limit>,
    /// `[[listeners]]`, from the file only (a list has no variable or flag).
    pub listeners: Option<Vec<ListenerConfig>>,
}

/// Reads one source key by key: `get` finds a key's raw value, `origin` names it in errors.
struct Reader<'s> {
    get: &'s dyn Fn(Key) -> Option<Input<'s>>,
    origin: fn(Key) -> Origin,
}

impl<'s> Reader<'s> {
    fn field<T>(
        &self,
        key: Key,
        convert: impl FnOnce(Input<'s>) -> Result<T, Problem>,
    ) -> Result<Option<T>, ConfigError> {
        match (self.get)(key) {
            None => Ok(None),
            Some(input) => convert(input)
                .map(Some)
                .map_err(|problem| ConfigError::Invalid {
                    origin: (self.origin)(key),
                    problem,
                }),
        }
    }
}

impl Overrides {
    /// Converts every key a source sets; the first bad value is the error.
    fn read(reader: &Reader<'_>) -> Result<Overrides, ConfigError> {
        Ok(Overrides {
            listen: reader.field(Key::Listen, value::optional_socket_addr)?,
            proxy_protocol: reader.field(Key::ProxyProtocol, value::proxy_mode)?,
            proxy_header_timeout_ms: reader.field(Key::ProxyHeaderTimeout, value::millis)?,
            http: reader.field(Key::Http, value::socket_addr)?,
            data_dir: reader.field(Key::DataDir, value::path)?,
            log_level: reader.field(Key::LogLevel, value::log_filter)?,
            storage_sync: reader.field(Key::StorageSync, value::boolean)?,
            v3_persistent_expiry: reader.field(Key::SessionV3PersistentExpiry, value::expiry)?,
            max_expiry: reader.field(Key::SessionMaxExpiry, value::expiry)?,
            max_messages: reader.field(Key::QueueMaxMessages, value::count_limit)?,
            max_bytes: reader.field(Key::QueueMaxBytes, value::byte_limit)?,
            drop_policy: reader.field(Key::QueueDropPolicy, value::drop_policy)?,
            queue_qos0: reader.field(Key::QueueQos0, value::boolean)?,
            backpressure: reader.field(Key::QueueBackpressure, value::boolean)?,
            max_packet_size: reader.field(Key::LimitsMaxPacketSize, value::packet_size)?,
            receive_maximum: reader.field(Key::LimitsReceiveMaximum, |v| value::u16_in(v, 1))?,
            max_inflight: reader.field(Key::LimitsMaxInflight, |v| value::u16_in(v, 1))?,
            topic_alias_maximum: reader
                .field(Key::LimitsTopicAliasMaximum, |v| value::u16_in(v, 0))?,
            max_keep_alive: reader.field(Key::LimitsMaxKeepAlive, |v| value::u16_in(v, 1))?,
            denied_filters: reader.field(Key::AclDeniedFilters, value::filters)?,
            node_id: reader.field(Key::ClusterNodeId, |v| {
                value::integer_in(v, 1, u64::MAX >> 1)
            })?,
            cluster_listen: reader.field(Key::ClusterListen, value::optional_socket_addr)?,
            advertise: reader.field(Key::ClusterAdvertise, value::optional_host_port)?,
            peers: reader.field(Key::ClusterPeers, value::peers)?,
            join: reader.field(Key::ClusterJoin, value::optional_host_port)?,
            commit_timeout_secs: reader.field(Key::ClusterCommitTimeout, value::timeout_secs)?,
            handoff_after_ms: reader.field(Key::ClusterHandoffAfter, value::millis)?,
            handoff_max_per_session: reader
                .field(Key::ClusterHandoffMaxPerSession, value::count_limit)?,
            handoff_max_total: reader.field(Key::ClusterHandoffMaxTotal, value::count_limit)?,
            tls_listen: reader.field(Key::TlsListen, value::optional_socket_addr)?,
            tls_cert: reader.field(Key::TlsCert, value::optional_path)?,
            tls_key: reader.field(Key::TlsKey, value::optional_path)?,
            tls_client_ca: reader.field(Key::TlsClientCa, value::optional_path)?,
            tls_identity_from_cert: reader.field(Key::TlsIdentityFromCert, value::boolean)?,
            tls_proxy_protocol: reader.field(Key::TlsProxyProtocol, value::proxy_mode)?,
            allow_anonymous: reader.field(Key::AuthAllowAnonymous, value::boolean)?,
            password_file: reader.field(Key::AuthPasswordFile, value::optional_path)?,
            acl_file: reader.field(Key::AclFile, value::optional_path)?,
            ws_listen: reader.field(Key::WsListen, value::optional_socket_addr)?,
            ws_tls_listen: reader.field(Key::WsTlsListen, value::optional_socket_addr)?,
            ws_path: reader.field(Key::WsPath, value::http_path)?,
            max_connections: reader.field(Key::LimitsMaxConnections, value::count_limit)?,
            connection_rate: reader.field(Key::LimitsConnectionRate, value::count_limit)?,
            publish_rate: reader.field(Key::LimitsPublishRate, value::count_limit)?,
            max_subscriptions: reader.field(Key::LimitsMaxSubscriptions, value::count_limit)?,
            max_topic_length: reader.field(Key::LimitsMaxTopicLength, |v| value::u16_in(v, 1))?,
            max_topic_levels: reader.field(Key::LimitsMaxTopicLevels, value::count_limit)?,
            log_format: reader.field(Key::LogFormat, value::log_format)?,
            drain_grace_secs: reader.field(Key::DrainGrace, value::grace_secs)?,
            drain_rate: reader.field(Key::DrainRate, value::count_limit)?,
            admin_token_file: reader.field(Key::AdminTokenFile, value::optional_path)?,
            jwt_algorithm: reader.field(Key::AuthJwtAlgorithm, value::jwt_algorithm)?,
            jwt_key_file: reader.field(Key::AuthJwtKeyFile, value::optional_path)?,
            publish_rate_bytes: reader.field(Key::LimitsPublishRateBytes, value::byte_limit)?,
            // Read by `file::parse_file`, which alone has lists of tables.
            listeners: None,
        })
    }
}

impl Config {
    /// The defaults with `layers` applied in order (later wins), then the cross-key checks.
    pub fn resolve(layers: impl IntoIterator<Item = Overrides>) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut listen_set = false;
        for layer in layers {
            listen_set |= layer.listen.is_some();
            config.apply(layer);
        }
        // A node configured with a list listens where the list says: the default `listen`
        // (every interface, without TLS) is not added behind the operator's back.
        if !listen_set && !config.listeners.is_empty() {
            config.listen = None;
        }
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, layer: Overrides) {
        // Destructured so that a new field cannot be forgotten here.
        let Overrides {
            listen,
            proxy_protocol,
            proxy_header_timeout_ms,
            http,
            data_dir,
            log_level,
            storage_sync,
            v3_persistent_expiry,
            max_expiry,
            max_messages,
            max_bytes,
            drop_policy,
            queue_qos0,
            backpressure,
            max_packet_size,
            receive_maximum,
            max_inflight,
            topic_alias_maximum,
            max_keep_alive,
            denied_filters,
            node_id,
            cluster_listen,
            advertise,
            peers,
            join,
            commit_timeout_secs,
            handoff_after_ms,
            handoff_max_per_session,
            handoff_max_total,
            tls_listen,
            tls_cert,
            tls_key,
            tls_client_ca,
            tls_identity_from_cert,
            tls_proxy_protocol,
            allow_anonymous,
            password_file,
            acl_file,
            ws_listen,
            ws_tls_listen,
            ws_path,
            max_connections,
            connection_rate,
            publish_rate,
            max_subscriptions,
            max_topic_length,
            max_topic_levels,
            log_format,
            drain_grace_secs,
            drain_rate,
            admin_token_file,
            jwt_algorithm,
            jwt_key_file,
            publish_rate_bytes,
            listeners,
        } = layer;
        let broker = &mut self.broker;
        set(&mut self.listen, listen);
        set(&mut self.proxy_protocol, proxy_protocol);
        set(&mut self.proxy_header_timeout_ms, proxy_header_timeout_ms);
        set(&mut self.http, http);
        set(&mut self.data_dir, data_dir);
        set(&mut self.log_level, log_level);
        set(&mut self.storage_sync, storage_sync);
        set(
            &mut broker.session.v3_persistent_expiry,
            v3_persistent_expiry,
        );
        set(&mut broker.session.max_expiry, max_expiry);
        set(&mut broker.queue.max_messages, max_messages);
        set(&mut broker.queue.max_bytes, max_bytes);
        set(&mut broker.queue.drop_policy, drop_policy);
        set(&mut broker.queue.queue_qos0, queue_qos0);
        set(&mut broker.queue.backpressure, backpressure);
        set(&mut broker.limits.max_packet_size, max_packet_size);
        set(&mut broker.limits.receive_maximum, receive_maximum);
        set(&mut broker.limits.max_inflight, max_inflight);
        set(&mut broker.limits.topic_alias_maximum, topic_alias_maximum);
        set(&mut broker.limits.max_keep_alive, max_keep_alive);
        set(&mut broker.denied_filters, denied_filters);
        set(&mut broker.handoff.max_per_session, handoff_max_per_session);
        set(&mut broker.handoff.max_total, handoff_max_total);
        let cluster = &mut self.cluster;
        set(&mut cluster.node_id, node_id);
        set(&mut cluster.listen, cluster_listen);
        set(&mut cluster.advertise, advertise);
        set(&mut cluster.peers, peers);
        set(&mut cluster.join, join);
        set(&mut cluster.commit_timeout_secs, commit_timeout_secs);
        set(&mut cluster.handoff_after_ms, handoff_after_ms);
        let tls = &mut self.tls;
        set(&mut tls.listen, tls_listen);
        set(&mut tls.cert, tls_cert);
        set(&mut tls.key, tls_key);
        set(&mut tls.client_ca, tls_client_ca);
        set(&mut tls.identity_from_cert, tls_identity_from_cert);
        set(&mut tls.proxy_protocol, tls_proxy_protocol);
        set(&mut self.auth.allow_anonymous, allow_anonymous);
        set(&mut self.auth.password_file, password_file);
        set(&mut self.acl_file, acl_file);
        set(&mut self.ws.listen, ws_listen);
        set(&mut self.ws.tls_listen, ws_tls_listen);
        set(&mut self.ws.path, ws_path);
        set(&mut self.max_connections, max_connections);
        set(&mut self.connection_rate, connection_rate);
        set(&mut self.broker.limits.publish_rate, publish_rate);
        set(&mut self.broker.limits.max_subscriptions, max_subscriptions);
        set(&mut self.broker.limits.max_topic_length, max_topic_length);
        set(&mut self.broker.limits.max_topic_levels, max_topic_levels);
        set(&mut self.log_format, log_format);
        set(&mut self.drain.grace_secs, drain_grace_secs);
        set(&mut self.drain.rate, drain_rate);
        set(&mut self.admin_token_file, admin_token_file);
        set(&mut self.auth.jwt_algorithm, jwt_algorithm);
        set(&mut self.auth.jwt_key_file, jwt_key_file);
        set(
            &mut self.broker.limits.publish_rate_bytes,
            publish_rate_bytes,
        );
        set(&mut self.listeners, listeners);
    }

    /// What `berth_server::serve` takes besides sockets and the store.
    /// (The TLS listener's files and the password file are read by [`Config::edge`].)
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            broker: self.broker.clone(),
            storage_sync: self.storage_sync,
            proxy: self.proxy_settings(self.proxy_protocol),
            tls: None,
            auth: None,
            ws_path: self.ws.path.clone(),
            connection_limits: berth_server::gate::ConnectionLimits {
                max_connections: at_most(self.max_connections),
                per_second: at_most(self.connection_rate),
            },
            drain: berth_server::DrainSettings {
                grace: std::time::Duration::from_secs(u64::from(self.drain.grace_secs)),
                per_second: at_most(self.drain.rate),
            },
            // Read from `admin.token_file` by `main`.
            admin_token: None,
        }
    }

    pub fn proxy_settings(&self, mode: ProxyMode) -> ProxySettings {
        ProxySettings {
            mode,
            header_timeout: std::time::Duration::from_millis(u64::from(
                self.proxy_header_timeout_ms,
            )),
        }
    }
}

fn at_most(limit: Limit) -> Option<u64> {
    match limit {
        Limit::Unlimited => None,
        Limit::AtMost(n) => Some(n),
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// Where the configuration comes from, besides the defaults.
#[derive(Debug, Default)]
pub struct Sources<'a> {
    /// The TOML file, if one was given.
    pub file: Option<&'a Path>,
    /// `(name, value)` pairs of the environment; only `BERTH_*` names are looked at.
    pub env: &'a [(String, String)],
    /// Values of command-line flags.
    pub flags: Overrides,
}

/// An effective configuration and what the operator should hear about it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// E.g. a `BERTH_*` variable that names no key (a typo is ignored, but said).
    pub warnings: Vec<String>,
}

/// Reads every source and resolves them: defaults < file < environment < flags.
pub fn load(sources: Sources<'_>) -> Result<Loaded, ConfigError> {
    let file = match sources.file {
        Some(path) => file::read(path)?,
        None => Overrides::default(),
    };
    let (env, warnings) = env::overrides(sources.env)?;
    let config = Config::resolve([file, env, sources.flags])?;
    Ok(Loaded { config, warnings })
}
