//! The TOML file. Its shape is fixed by the structs below: a key or section that is not one of
//! them is refused (`deny_unknown_fields`), with its name, so a typo never passes silently.
//! Leaf values stay raw TOML here and are converted by [`super::value`], which names the key.

use std::path::Path;

use serde::Deserialize;

use super::value::Input;
use super::{ConfigError, Key, Origin, Overrides, Reader};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<toml::Value>,
    proxy_protocol: Option<toml::Value>,
    proxy_header_timeout: Option<toml::Value>,
    http: Option<toml::Value>,
    data_dir: Option<toml::Value>,
    log_level: Option<toml::Value>,
    log_format: Option<toml::Value>,
    #[serde(default)]
    storage: Storage,
    #[serde(default)]
    session: Session,
    #[serde(default)]
    queue: Queue,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    acl: Acl,
    #[serde(default)]
    cluster: Cluster,
    #[serde(default)]
    tls: Tls,
    #[serde(default)]
    auth: Auth,
    #[serde(default)]
    ws: Ws,
    #[serde(default)]
    drain: Drain,
    #[serde(default)]
    admin: Admin,
    /// `[[listeners]]`: converted by [`super::listener::read`], which names the entry.
    listeners: Option<Vec<super::listener::RawListener>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Drain {
    grace: Option<toml::Value>,
    rate: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Admin {
    token_file: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ws {
    listen: Option<toml::Value>,
    tls_listen: Option<toml::Value>,
    path: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tls {
    listen: Option<toml::Value>,
    cert: Option<toml::Value>,
    key: Option<toml::Value>,
    client_ca: Option<toml::Value>,
    identity_from_cert: Option<toml::Value>,
    proxy_protocol: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Auth {
    allow_anonymous: Option<toml::Value>,
    password_file: Option<toml::Value>,
    jwt_algorithm: Option<toml::Value>,
    jwt_key_file: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cluster {
    node_id: Option<toml::Value>,
    listen: Option<toml::Value>,
    advertise: Option<toml::Value>,
    peers: Option<toml::Value>,
    join: Option<toml::Value>,
    commit_timeout: Option<toml::Value>,
    handoff_after: Option<toml::Value>,
    handoff_max_per_session: Option<toml::Value>,
    handoff_max_total: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Storage {
    sync: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Session {
    v3_persistent_expiry: Option<toml::Value>,
    max_expiry: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Queue {
    max_messages: Option<toml::Value>,
    max_bytes: Option<toml::Value>,
    drop_policy: Option<toml::Value>,
    queue_qos0: Option<toml::Value>,
    backpressure: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    max_packet_size: Option<toml::Value>,
    receive_maximum: Option<toml::Value>,
    max_inflight: Option<toml::Value>,
    topic_alias_maximum: Option<toml::Value>,
    max_keep_alive: Option<toml::Value>,
    max_connections: Option<toml::Value>,
    connection_rate: Option<toml::Value>,
    publish_rate: Option<toml::Value>,
    publish_rate_bytes: Option<toml::Value>,
    max_subscriptions: Option<toml::Value>,
    max_topic_length: Option<toml::Value>,
    max_topic_levels: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Acl {
    denied_filters: Option<toml::Value>,
    file: Option<toml::Value>,
}

impl FileConfig {
    fn value(&self, key: Key) -> Option<&toml::Value> {
        match key {
            Key::Listen => self.listen.as_ref(),
            Key::ProxyProtocol => self.proxy_protocol.as_ref(),
            Key::ProxyHeaderTimeout => self.proxy_header_timeout.as_ref(),
            Key::Http => self.http.as_ref(),
            Key::DataDir => self.data_dir.as_ref(),
            Key::LogLevel => self.log_level.as_ref(),
            Key::StorageSync => self.storage.sync.as_ref(),
            Key::SessionV3PersistentExpiry => self.session.v3_persistent_expiry.as_ref(),
            Key::SessionMaxExpiry => self.session.max_expiry.as_ref(),
            Key::QueueMaxMessages => self.queue.max_messages.as_ref(),
            Key::QueueMaxBytes => self.queue.max_bytes.as_ref(),
            Key::QueueDropPolicy => self.queue.drop_policy.as_ref(),
            Key::QueueQos0 => self.queue.queue_qos0.as_ref(),
            Key::QueueBackpressure => self.queue.backpressure.as_ref(),
            Key::LimitsMaxPacketSize => self.limits.max_packet_size.as_ref(),
            Key::LimitsReceiveMaximum => self.limits.receive_maximum.as_ref(),
            Key::LimitsMaxInflight => self.limits.max_inflight.as_ref(),
            Key::LimitsTopicAliasMaximum => self.limits.topic_alias_maximum.as_ref(),
            Key::LimitsMaxKeepAlive => self.limits.max_keep_alive.as_ref(),
            Key::AclDeniedFilters => self.acl.denied_filters.as_ref(),
            Key::ClusterNodeId => self.cluster.node_id.as_ref(),
            Key::ClusterListen => self.cluster.listen.as_ref(),
            Key::ClusterAdvertise => self.cluster.advertise.as_ref(),
            Key::ClusterPeers => self.cluster.peers.as_ref(),
            Key::ClusterJoin => self.cluster.join.as_ref(),
            Key::ClusterCommitTimeout => self.cluster.commit_timeout.as_ref(),
            Key::ClusterHandoffAfter => self.cluster.handoff_after.as_ref(),
            Key::ClusterHandoffMaxPerSession => self.cluster.handoff_max_per_session.as_ref(),
            Key::ClusterHandoffMaxTotal => self.cluster.handoff_max_total.as_ref(),
            Key::TlsListen => self.tls.listen.as_ref(),
            Key::TlsCert => self.tls.cert.as_ref(),
            Key::TlsKey => self.tls.key.as_ref(),
            Key::TlsClientCa => self.tls.client_ca.as_ref(),
            Key::TlsIdentityFromCert => self.tls.identity_from_cert.as_ref(),
            Key::TlsProxyProtocol => self.tls.proxy_protocol.as_ref(),
            Key::AuthAllowAnonymous => self.auth.allow_anonymous.as_ref(),
            Key::AuthPasswordFile => self.auth.password_file.as_ref(),
            Key::AclFile => self.acl.file.as_ref(),
            Key::WsListen => self.ws.listen.as_ref(),
            Key::WsTlsListen => self.ws.tls_listen.as_ref(),
            Key::WsPath => self.ws.path.as_ref(),
            Key::LimitsMaxConnections => self.limits.max_connections.as_ref(),
            Key::LimitsConnectionRate => self.limits.connection_rate.as_ref(),
            Key::LimitsPublishRate => self.limits.publish_rate.as_ref(),
            Key::LimitsPublishRateBytes => self.limits.publish_rate_bytes.as_ref(),
            Key::LimitsMaxSubscriptions => self.limits.max_subscriptions.as_ref(),
            Key::LimitsMaxTopicLength => self.limits.max_topic_length.as_ref(),
            Key::LimitsMaxTopicLevels => self.limits.max_topic_levels.as_ref(),
            Key::LogFormat => self.log_format.as_ref(),
            Key::DrainGrace => self.drain.grace.as_ref(),
            Key::DrainRate => self.drain.rate.as_ref(),
            Key::AdminTokenFile => self.admin.token_file.as_ref(),
            Key::AuthJwtAlgorithm => self.auth.jwt_algorithm.as_ref(),
            Key::AuthJwtKeyFile => self.auth.jwt_key_file.as_ref(),
        }
    }
}

/// Reads and converts the file at `path`.
pub(super) fn read(path: &Path) -> Result<Overrides, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_file(&text, path)
}

/// Converts the text of a configuration file; `path` only names it in errors.
pub fn parse_file(text: &str, path: &Path) -> Result<Overrides, ConfigError> {
    let file: FileConfig = toml::from_str(text).map_err(|error| ConfigError::File {
        path: path.to_owned(),
        message: error.to_string().trim_end().to_owned(),
    })?;
    let get = |key: Key| file.value(key).map(Input::Toml);
    let mut overrides = Overrides::read(&Reader {
        get: &get,
        origin: |key| Origin::File { key },
    })?;
    overrides.listeners = file
        .listeners
        .as_deref()
        .map(super::listener::read)
        .transpose()?;
    Ok(overrides)
}
