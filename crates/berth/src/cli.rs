//! The command line. Flags cover the common keys; every key also has a TOML name and a
//! `BERTH_*` variable (docs/configuration.md). Flags win over both.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::value::{Input, log_filter};
use crate::config::{LogFormat, Overrides};

/// Berth, an MQTT 3.1 / 3.1.1 / 5.0 broker whose persistent sessions keep their place.
///
/// Without arguments it serves MQTT on 0.0.0.0:1883 and HTTP (/metrics, /health) on
/// 0.0.0.0:8080, with its data in ./data.
///
/// Configuration, lowest precedence first: built-in defaults, the TOML file given with --config,
/// BERTH_<SECTION>_<KEY> environment variables (e.g. BERTH_QUEUE_MAX_MESSAGES), then the flags
/// below. A bad value is refused at start with a message naming the key. Every key, its default
/// and its variable: docs/configuration.md and the example berth.toml.
#[derive(Debug, Parser)]
#[command(name = "berth", version)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check the configuration (file, environment, flags) and print the effective values as
    /// TOML, then exit: status 0 if it is valid, 1 with a message naming the bad key if not.
    CheckConfig,
    /// Administer a running cluster through any member's cluster listener.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Ask a running node through its admin API (/api/v1 on its HTTP listener).
    Ctl(CtlArgs),
    /// Add USER to the password FILE (created if missing), or change their password: an
    /// argon2id hash, never the password itself. The password is asked for on a terminal, or
    /// read as the first line of standard input. A running node reads the file again on SIGHUP.
    Passwd {
        /// The password file (auth.password_file).
        file: PathBuf,
        /// The username (no ':' in it).
        user: String,
    },
}

/// `berth ctl ...`: the admin API of one node.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CtlArgs {
    /// The node's HTTP address (host:port of its `http` listener).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port, default_value = "127.0.0.1:8080")]
    pub at: String,
    /// A file whose first line is the node's admin token (its `admin.token_file`). Without
    /// one, only a node on this machine's loopback address answers.
    #[arg(long, value_name = "FILE", env = "BERTH_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum CtlCommand {
    /// The node's readiness, drain state and Raft view (leader, term, log indexes, followers'
    /// lag).
    Status,
    /// Drain the node, then stop it: /ready turns 503, new clients are sent elsewhere, and
    /// connected ones are disconnected at drain.rate per second (MQTT 5: DISCONNECT 0x9C Use
    /// another server) so their sessions move to the nodes they reconnect to.
    Drain,
    /// Sessions of the whole cluster (from the replicated registry of the node asked): client
    /// id, owner node, connected or not, protocol, subscriptions.
    Sessions {
        /// Only client ids starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only sessions owned by this node.
        #[arg(long)]
        node: Option<u64>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Close a client's connection (MQTT 5: DISCONNECT 0x98 Administrative action; 3.1.1:
    /// closed). Its session stays; the client may reconnect at once. Any node relays it to
    /// the session's owner.
    Kick {
        /// The client id.
        client_id: String,
    },
    /// End a session everywhere, as its expiry would: the connection (if any) is closed, a
    /// waiting will is published, its subscriptions and queued messages are dropped.
    Discard {
        /// The client id.
        client_id: String,
    },
    /// A session's queue as its owner sees it: depth, bytes, in-flight count, connection, and
    /// the first messages (topic, QoS, size, age, expiry).
    Queue {
        /// The client id.
        client_id: String,
        /// List at most this many messages (1 to 1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Empty a session's queue (counted as dropped, reason "purged"); the session, its
    /// subscriptions and the messages in flight to a connected client stay.
    Purge {
        /// The client id.
        client_id: String,
    },
    /// Add a subscription to a session, connected or not (or replace the options of the one
    /// it has to FILTER). The session's owner commits it to the registry, so every node routes
    /// to it; no retained message is sent for it.
    Subscribe {
        /// The client id.
        client_id: String,
        /// The topic filter (wildcards allowed; quote it for the shell).
        filter: String,
        /// The maximum QoS the session gets messages with.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
        qos: u8,
        /// Do not deliver the client's own messages back to it.
        #[arg(long)]
        no_local: bool,
        /// Keep the RETAIN flag of messages as published.
        #[arg(long)]
        retain_as_published: bool,
        /// MQTT 5 Retain Handling kept with the subscription (0, 1 or 2); it matters only if
        /// the client subscribes again itself.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
        retain_handling: u8,
    },
    /// Remove a subscription of a session, connected or not.
    Unsubscribe {
        /// The client id.
        client_id: String,
        /// The topic filter, exactly as the session holds it.
        filter: String,
    },
    /// Publish a message as the operator, routed as a client's PUBLISH is (the ACL does not
    /// apply). At QoS 1 or 2 it returns once the message is stored for every matched session,
    /// on every node.
    Publish {
        /// The topic (no wildcards).
        topic: String,
        /// The payload as text (UTF-8); empty if neither this nor --base64 is given.
        #[arg(long, short = 'm', conflicts_with = "base64")]
        message: Option<String>,
        /// The payload as base64, for bytes that are not text.
        #[arg(long)]
        base64: Option<String>,
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
        qos: u8,
        /// Retain it (an empty payload clears the topic's retained message, and is delivered).
        #[arg(long)]
        retain: bool,
        /// MQTT 5 Message Expiry Interval, in seconds.
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..))]
        expiry: Option<u32>,
        /// MQTT 5 Content Type.
        #[arg(long)]
        content_type: Option<String>,
        /// An MQTT 5 User Property, KEY=VALUE (repeat for more).
        #[arg(long = "user-property", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        user_properties: Vec<(String, String)>,
    },
    /// Retained messages of the whole cluster: list, show one, delete one.
    #[command(subcommand)]
    Retained(CtlRetainedCommand),
    /// The cluster's members (address, voter or learner, online, Raft state, lag), leader and
    /// term; `add` and `remove` change the membership through the leader.
    Cluster {
        #[command(subcommand)]
        command: Option<CtlClusterCommand>,
    },
}

/// `berth ctl retained ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum CtlRetainedCommand {
    /// Retained messages in topic order (topic, QoS, size, expiry).
    List {
        /// Only topics starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One retained message, with its payload and properties.
    Get {
        /// The topic.
        topic: String,
    },
    /// Delete the retained message of a topic on every node (nothing is delivered to
    /// subscribers).
    Delete {
        /// The topic.
        topic: String,
    },
}

/// `berth ctl cluster ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum CtlClusterCommand {
    /// Add a node (running with that --node-id and --cluster-listen): a learner first, then a
    /// voter.
    Add {
        /// The new node's id.
        #[arg(long)]
        node: u64,
        /// The new node's cluster address.
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
        addr: String,
    },
    /// Remove a voter from the cluster.
    Remove {
        /// The id of the node to remove.
        #[arg(long)]
        node: u64,
    },
}

/// `berth cluster ...`: talks to the Cluster gRPC service of a running node.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ClusterCommand {
    /// Print the node's view: leader, term, voters, learners and their addresses.
    Status {
        /// Cluster address (host:port) of any member.
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
        at: String,
    },
    /// Add a node: first as a learner (it catches up), then as a voter. The node itself must be
    /// running with --node-id and --cluster-listen (starting it with --join does the same).
    Add {
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
        at: String,
        /// The new node's id.
        #[arg(long)]
        node: u64,
        /// The new node's cluster address.
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
        addr: String,
    },
    /// Remove a node from the voters (and the cluster). Its sessions' subscriptions stay in the
    /// registry; clients reconnecting elsewhere take their sessions over.
    Remove {
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
        at: String,
        /// The id of the node to remove.
        #[arg(long)]
        node: u64,
    },
}

/// Flags that set configuration keys; each is also accepted after `check-config`.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// TOML configuration file (see the example berth.toml). Without it: defaults, environment
    /// and flags only.
    #[arg(long, value_name = "FILE", env = "BERTH_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Address of the MQTT listener (TCP). Key `listen`, variable BERTH_LISTEN.
    /// [default: 0.0.0.0:1883]
    #[arg(long, value_name = "ADDR", global = true)]
    pub listen: Option<SocketAddr>,

    /// Address of the HTTP listener: /metrics (Prometheus text format) and /health.
    /// Key `http`, variable BERTH_HTTP. [default: 0.0.0.0:8080]
    #[arg(long, value_name = "ADDR", global = true)]
    pub http: Option<SocketAddr>,

    /// Directory of the node's data (sessions, queues, retained messages); created if missing.
    /// Key `data_dir`, variable BERTH_DATA_DIR. [default: ./data]
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives such as
    /// "info,berth_server=debug". Key `log_level`, variable BERTH_LOG_LEVEL. [default: info]
    #[arg(long, value_name = "FILTER", value_parser = parse_log_level, global = true)]
    pub log_level: Option<String>,

    /// Log line format: "text" (one readable line per event) or "json" (one JSON object per
    /// line, for log collectors). Key `log_format`, variable BERTH_LOG_FORMAT. [default: text]
    #[arg(long, value_name = "FORMAT", value_parser = parse_log_format, global = true)]
    pub log_format: Option<LogFormat>,

    /// fsync the write-ahead log at every group commit, so that acknowledged messages survive
    /// power loss, not only a crash of the process (slower). `--storage-sync` alone means true;
    /// `--storage-sync=false` turns it off. Key `storage.sync`, variable BERTH_STORAGE_SYNC.
    /// [default: false]
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        global = true
    )]
    pub storage_sync: Option<bool>,

    /// This node's id in the cluster (a positive integer, unique in the cluster).
    /// Key `cluster.node_id`, variable BERTH_CLUSTER_NODE_ID. [default: 1]
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub node_id: Option<u64>,

    /// Address of the cluster (gRPC) listener other nodes connect to. Key `cluster.listen`,
    /// variable BERTH_CLUSTER_LISTEN. [default: none: a single node no other node can reach]
    #[arg(long, value_name = "ADDR", global = true)]
    pub cluster_listen: Option<SocketAddr>,

    /// host:port other nodes use to reach this node's cluster listener, when it differs from
    /// --cluster-listen (e.g. behind NAT or with 0.0.0.0). Key `cluster.advertise`.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port, global = true)]
    pub advertise: Option<String>,

    /// Static membership: id=host:port of every node, this one included, comma-separated, e.g.
    /// 1=10.0.0.1:7001,2=10.0.0.2:7001,3=10.0.0.3:7001. The cluster forms when a majority is up.
    /// Key `cluster.peers`, variable BERTH_CLUSTER_PEERS.
    #[arg(long, value_name = "PEERS", value_parser = parse_peers, global = true)]
    pub peers: Option<PeerList>,

    /// Join a running cluster through the member whose cluster listener is at HOST:PORT (as a
    /// learner, then a voter). Key `cluster.join`, variable BERTH_CLUSTER_JOIN.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port, global = true)]
    pub join: Option<String>,

    /// Address of the MQTT over TLS listener. Key `tls.listen`, variable BERTH_TLS_LISTEN.
    /// Needs --tls-cert and --tls-key. [default: none]
    #[arg(long, value_name = "ADDR", global = true)]
    pub tls_listen: Option<SocketAddr>,

    /// PEM certificate chain of the TLS listener, leaf first. Key `tls.cert`.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of the TLS listener. Key `tls.key`.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_key: Option<PathBuf>,

    /// Password file (`berth passwd FILE USER` writes it); clients that send a username must
    /// match it. Key `auth.password_file`, variable BERTH_AUTH_PASSWORD_FILE.
    #[arg(long, value_name = "FILE", global = true)]
    pub password_file: Option<PathBuf>,
}

/// `--peers`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerList(pub Vec<(u64, String)>);

impl ConfigArgs {
    /// The keys the flags set, as the top layer of the configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.map(Some),
            http: self.http,
            data_dir: self.data_dir.clone(),
            log_level: self.log_level.clone(),
            log_format: self.log_format,
            storage_sync: self.storage_sync,
            node_id: self.node_id,
            cluster_listen: self.cluster_listen.map(Some),
            advertise: self.advertise.clone().map(Some),
            peers: self.peers.clone().map(|p| p.0),
            join: self.join.clone().map(Some),
            tls_listen: self.tls_listen.map(Some),
            tls_cert: self.tls_cert.clone().map(Some),
            tls_key: self.tls_key.clone().map(Some),
            password_file: self.password_file.clone().map(Some),
            ..Overrides::default()
        }
    }
}

fn parse_log_level(text: &str) -> Result<String, String> {
    log_filter(Input::Text(text)).map_err(|problem| problem.to_string())
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    crate::config::value::log_format(Input::Text(text)).map_err(|problem| problem.to_string())
}

/// `KEY=VALUE` (the value may hold `=`).
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

fn parse_host_port(text: &str) -> Result<String, String> {
    crate::config::value::parse_host_port(text).map_err(|problem| problem.to_string())
}

fn parse_peers(text: &str) -> Result<PeerList, String> {
    crate::config::value::peers(Input::Text(text))
        .map(PeerList)
        .map_err(|problem| problem.to_string())
}
