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
//! Every value is converted and checked where it enters (see [`value`]), so an error names the
//! key, or the variable, and the value. `0` never means "unlimited": that is spelled `unlimited`.
//! The example `berth.toml` at the repository root and `docs/configuration.md` list every key;
//! tests keep both in step with [`Config::default`].

mod env;
mod error;
mod file;
mod render;
pub mod value;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use berth_codec::TopicFilter;
use berth_core::{BrokerConfig, DropPolicy, Limit, SessionExpiry};
use berth_server::ServerOptions;

pub use env::{NOT_KEYS, process_env};
pub use error::{ConfigError, Origin, Problem};
pub use file::parse_file;
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
    LimitsMaxPacketSize,
    LimitsReceiveMaximum,
    LimitsMaxInflight,
    LimitsTopicAliasMaximum,
    LimitsMaxKeepAlive,
    AclDeniedFilters,
}

impl Key {
    pub const ALL: [Key; 17] = [
        Key::Listen,
        Key::Http,
        Key::DataDir,
        Key::LogLevel,
        Key::StorageSync,
        Key::SessionV3PersistentExpiry,
        Key::SessionMaxExpiry,
        Key::QueueMaxMessages,
        Key::QueueMaxBytes,
        Key::QueueDropPolicy,
        Key::QueueQos0,
        Key::LimitsMaxPacketSize,
        Key::LimitsReceiveMaximum,
        Key::LimitsMaxInflight,
        Key::LimitsTopicAliasMaximum,
        Key::LimitsMaxKeepAlive,
        Key::AclDeniedFilters,
    ];

    /// The dotted name: `section.key`, or `key` at the top level of the file.
    pub fn name(self) -> &'static str {
        match self {
            Key::Listen => "listen",
            Key::Http => "http",
            Key::DataDir => "data_dir",
            Key::LogLevel => "log_level",
            Key::StorageSync => "storage.sync",
            Key::SessionV3PersistentExpiry => "session.v3_persistent_expiry",
            Key::SessionMaxExpiry => "session.max_expiry",
            Key::QueueMaxMessages => "queue.max_messages",
            Key::QueueMaxBytes => "queue.max_bytes",
            Key::QueueDropPolicy => "queue.drop_policy",
            Key::QueueQos0 => "queue.queue_qos0",
            Key::LimitsMaxPacketSize => "limits.max_packet_size",
            Key::LimitsReceiveMaximum => "limits.receive_maximum",
            Key::LimitsMaxInflight => "limits.max_inflight",
            Key::LimitsTopicAliasMaximum => "limits.topic_alias_maximum",
            Key::LimitsMaxKeepAlive => "limits.max_keep_alive",
            Key::AclDeniedFilters => "acl.denied_filters",
        }
    }

    pub fn env_var(self) -> &'static str {
        match self {
            Key::Listen => "BERTH_LISTEN",
            Key::Http => "BERTH_HTTP",
            Key::DataDir => "BERTH_DATA_DIR",
            Key::LogLevel => "BERTH_LOG_LEVEL",
            Key::StorageSync => "BERTH_STORAGE_SYNC",
            Key::SessionV3PersistentExpiry => "BERTH_SESSION_V3_PERSISTENT_EXPIRY",
            Key::SessionMaxExpiry => "BERTH_SESSION_MAX_EXPIRY",
            Key::QueueMaxMessages => "BERTH_QUEUE_MAX_MESSAGES",
            Key::QueueMaxBytes => "BERTH_QUEUE_MAX_BYTES",
            Key::QueueDropPolicy => "BERTH_QUEUE_DROP_POLICY",
            Key::QueueQos0 => "BERTH_QUEUE_QUEUE_QOS0",
            Key::LimitsMaxPacketSize => "BERTH_LIMITS_MAX_PACKET_SIZE",
            Key::LimitsReceiveMaximum => "BERTH_LIMITS_RECEIVE_MAXIMUM",
            Key::LimitsMaxInflight => "BERTH_LIMITS_MAX_INFLIGHT",
            Key::LimitsTopicAliasMaximum => "BERTH_LIMITS_TOPIC_ALIAS_MAXIMUM",
            Key::LimitsMaxKeepAlive => "BERTH_LIMITS_MAX_KEEP_ALIVE",
            Key::AclDeniedFilters => "BERTH_ACL_DENIED_FILTERS",
        }
    }
}

/// The effective configuration of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// MQTT over TCP.
    pub listen: SocketAddr,
    /// HTTP: `/metrics`, `/health` (later the admin API).
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    /// A `tracing` filter: `info`, or directives such as `info,berth_server=debug`.
    pub log_level: String,
    /// `storage.sync`: fsync once per group commit.
    pub storage_sync: bool,
    pub broker: BrokerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN,
            http: DEFAULT_HTTP,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            storage_sync: false,
            broker: BrokerConfig::default(),
        }
    }
}

/// The values one source sets; `None` leaves the value of the sources below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
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
    pub max_packet_size: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub max_inflight: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub max_keep_alive: Option<u16>,
    pub denied_filters: Option<Vec<TopicFilter>>,
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
            listen: reader.field(Key::Listen, value::socket_addr)?,
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
            max_packet_size: reader.field(Key::LimitsMaxPacketSize, value::packet_size)?,
            receive_maximum: reader.field(Key::LimitsReceiveMaximum, |v| value::u16_in(v, 1))?,
            max_inflight: reader.field(Key::LimitsMaxInflight, |v| value::u16_in(v, 1))?,
            topic_alias_maximum: reader
                .field(Key::LimitsTopicAliasMaximum, |v| value::u16_in(v, 0))?,
            max_keep_alive: reader.field(Key::LimitsMaxKeepAlive, |v| value::u16_in(v, 1))?,
            denied_filters: reader.field(Key::AclDeniedFilters, value::filters)?,
        })
    }
}

impl Config {
    /// The defaults with `layers` applied in order (later wins), then the cross-key checks.
    pub fn resolve(layers: impl IntoIterator<Item = Overrides>) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for layer in layers {
            config.apply(layer);
        }
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, layer: Overrides) {
        // Destructured so that a new field cannot be forgotten here.
        let Overrides {
            listen,
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
            max_packet_size,
            receive_maximum,
            max_inflight,
            topic_alias_maximum,
            max_keep_alive,
            denied_filters,
        } = layer;
        let broker = &mut self.broker;
        set(&mut self.listen, listen);
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
        set(&mut broker.limits.max_packet_size, max_packet_size);
        set(&mut broker.limits.receive_maximum, receive_maximum);
        set(&mut broker.limits.max_inflight, max_inflight);
        set(&mut broker.limits.topic_alias_maximum, topic_alias_maximum);
        set(&mut broker.limits.max_keep_alive, max_keep_alive);
        set(&mut broker.denied_filters, denied_filters);
    }

    /// Rules between keys; single values were checked where they entered.
    fn validate(&self) -> Result<(), ConfigError> {
        let session = &self.broker.session;
        if longer(session.v3_persistent_expiry, session.max_expiry) {
            return Err(ConfigError::Conflict {
                key: Key::SessionV3PersistentExpiry.name(),
                value: value::format_expiry(session.v3_persistent_expiry),
                limit_key: Key::SessionMaxExpiry.name(),
                limit: value::format_expiry(session.max_expiry),
            });
        }
        Ok(())
    }

    /// What `berth_server::serve` takes besides sockets and the store.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            broker: self.broker.clone(),
            storage_sync: self.storage_sync,
        }
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

fn longer(a: SessionExpiry, b: SessionExpiry) -> bool {
    match (a, b) {
        (_, SessionExpiry::Never) => false,
        (SessionExpiry::Never, SessionExpiry::After(_)) => true,
        (SessionExpiry::After(a), SessionExpiry::After(b)) => a > b,
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
