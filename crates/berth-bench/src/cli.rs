//! The command line, and its validation into [`Settings`] before anything connects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use berth_codec::{ProtocolVersion, QoS};
use clap::{Args, Parser, Subcommand};

use crate::payload::STAMP_LEN;
use crate::transport::{DEFAULT_SERVER_NAME, TlsClient};

/// Load generator for MQTT 3.1.1 and 5.0 brokers.
///
/// Every message carries its publisher stream, sequence number and send time in the first 20
/// bytes of its payload; subscribers report msg/s, latency percentiles and exact
/// lost/duplicated/reordered counts. The generator's own CPU time is reported so its share can
/// be checked; with --broker-pid, the broker's CPU time and RSS too.
#[derive(Debug, Parser)]
#[command(name = "berth-bench", disable_version_flag = true)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every scenario; they may come before or after the scenario name.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Broker host: an IP address or a name.
    #[arg(long, default_value = "127.0.0.1", global = true)]
    pub host: String,

    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883, global = true)]
    pub port: u16,

    /// Port subscribers (and a reconnecting offline session) use, e.g. another node of a
    /// cluster on the same host. [default: --port]
    #[arg(long, global = true)]
    pub sub_port: Option<u16>,

    /// MQTT version: 311 (3.1.1) or 5.
    #[arg(long = "version", value_name = "311|5", default_value = "311", value_parser = parse_version, global = true)]
    pub mqtt_version: ProtocolVersion,

    /// QoS of publishes and subscriptions, 0, 1 or 2. [default: 0; latency, offline-queue,
    /// sessions and reconnect-storm: 1]
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2), global = true)]
    pub qos: Option<u8>,

    /// Payload bytes per message; at least 20 (the stamp).
    #[arg(long, default_value_t = 64, global = true)]
    pub payload: usize,

    /// How long publishers send, e.g. 10s, 500ms, 2m. [default: 10s unless --messages]
    #[arg(long, value_parser = parse_duration, global = true)]
    pub duration: Option<Duration>,

    /// Messages per publisher (offline-queue: in total, default 100000). With --duration, the
    /// first limit reached ends sending.
    #[arg(long, global = true)]
    pub messages: Option<u64>,

    /// Publish rate over all publishers together, msg/s. [default: as fast as the broker takes
    /// them; latency: 20000]
    #[arg(long, global = true)]
    pub rate: Option<f64>,

    /// QoS 1 and 2 messages in flight per publisher (each PUBACK, or PUBCOMP, lets one more go);
    /// also capped by the broker's Receive Maximum.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65535), global = true)]
    pub window: u32,

    /// Messages encoded into one write at most.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65535), global = true)]
    pub batch: u32,

    /// Keep Alive asked for in CONNECT, seconds (the tool sends no PINGREQ: keep it above the
    /// run's length).
    #[arg(long, default_value_t = 3600, global = true)]
    pub keep_alive: u16,

    /// Bound on each handshake step and on waiting for a PUBACK.
    #[arg(long, default_value = "10s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,

    /// Once the publishers are done, how long subscribers wait for messages still missing.
    #[arg(long, default_value = "3s", value_parser = parse_duration, global = true)]
    pub drain_timeout: Duration,

    /// Tokio worker threads. [default: the number of cores]
    #[arg(long, global = true)]
    pub threads: Option<usize>,

    /// PID of the broker: its CPU time and RSS (VmRSS) are reported. conns and sessions need it
    /// for their memory figures.
    #[arg(long, global = true)]
    pub broker_pid: Option<u32>,

    /// The broker's Prometheus endpoint, e.g. http://127.0.0.1:8080/metrics: sessions reads the
    /// memory its databases hold for themselves there (Berth's berth_store_memory_bytes) and
    /// reports the RSS per session without it.
    #[arg(long, global = true)]
    pub metrics_url: Option<String>,

    /// Name of the broker in the report, e.g. berth or mosquitto.
    #[arg(long, global = true)]
    pub label: Option<String>,

    /// Key of the result in comparison tables. [default: scenario name, plus -qosN for the
    /// traffic scenarios, e.g. fan-in-qos1]
    #[arg(long, global = true)]
    pub case: Option<String>,

    /// Print the result as one JSON object on stdout; the human line goes to stderr.
    #[arg(long, global = true)]
    pub json: bool,

    /// PEM file of the CA certificate(s) the broker's certificate must chain to. With it, every
    /// connection is MQTT over TLS (TLS 1.3 or 1.2, whichever the broker picks), each one a
    /// full handshake: no session is resumed.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,

    /// Name the broker's certificate must be valid for, also sent as SNI: a DNS name or an IP
    /// address. Needs --tls-ca. [default: localhost]
    #[arg(long, value_name = "NAME", global = true)]
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// P publishers, each on its own topic, to one subscriber on a wildcard filter.
    FanIn {
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
        publishers: u32,
        /// The subscriber has a persistent session (Clean Session 0; MQTT 5: a long Session
        /// Expiry), so a broker that stores sessions durably does so for every message.
        #[arg(long)]
        persistent_subscriber: bool,
    },
    /// One publisher to S subscribers of its topic.
    FanOut {
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
        subscribers: u32,
    },
    /// N independent publisher → subscriber pairs, one topic each.
    Pairs {
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
        pairs: u32,
    },
    /// Latency at a fixed rate (--rate, default 20000 msg/s; QoS 1 unless --qos): p50/p99/max.
    Latency {
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        publishers: u32,
        /// Messages sent in the first part of the run are not counted in the latency figures.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        warmup: Duration,
    },
    /// A persistent subscriber is offline while --messages QoS 1 messages are published, then
    /// reconnects and drains them. Reports the publish rate into the offline session (and, for
    /// reference, to an online clean subscriber), the drain rate, and lost/duplicated counts.
    OfflineQueue {
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        publishers: u32,
    },
    /// A persistent session moving between two nodes (--port and --sub-port), round after
    /// round: K queued QoS 1 messages published through the node it left, then CONNECT at the
    /// other. Reports CONNECT→CONNACK (p50/p99/max) and the time to drain the backlog.
    Takeover {
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
        /// Messages queued before each takeover (0: an empty queue).
        #[arg(long, default_value_t = 0)]
        queued: u64,
    },
    /// C idle connections held open: connect rate and broker RSS per connection.
    Conns {
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
        connections: u32,
        /// Connections being opened at once.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
        concurrency: u32,
        /// Wait after the last CONNACK before reading the broker's RSS: long enough for an
        /// idle broker to have given back what its handshakes freed (Berth parks a connection
        /// 1–2 s after its last packet, and its idle threads hand freed memory back at most
        /// once a second).
        #[arg(long, default_value = "4s", value_parser = parse_duration)]
        settle: Duration,
        /// Keep the connections open this much longer after measuring.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        hold: Duration,
        /// Each connection also subscribes to a topic of its own after its CONNACK (on a
        /// cluster, a Raft commit per SUBSCRIBE): reports the SUBSCRIBE rate and latency.
        #[arg(long)]
        subscribe: bool,
    },
    /// N offline persistent sessions with M queued QoS 1 messages each: broker RSS per session.
    Sessions {
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
        sessions: u32,
        /// Queued messages per session (each session subscribes to its own topic).
        #[arg(long, default_value_t = 10)]
        per_session: u32,
        /// Sessions being created at once.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
        concurrency: u32,
        /// Publishers that fill the queues.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        publishers: u32,
        /// Wait before each RSS reading.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        settle: Duration,
        /// Sessions reconnected at the end to check that their messages are all there.
        #[arg(long, default_value_t = 10)]
        verify: u32,
    },
    /// N persistent sessions, each subscribed to its own topic and offline with M queued QoS 1
    /// messages, all reconnecting at once: time until every CONNACK (Session Present = 1) and
    /// until every backlog is delivered, lost and duplicated exactly.
    ReconnectStorm {
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
        sessions: u32,
        /// Queued messages per session.
        #[arg(long, default_value_t = 10)]
        per_session: u32,
        /// Sessions being created at once, before the storm.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
        concurrency: u32,
        /// CONNECTs awaiting their CONNACK at once during the storm.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
        storm_concurrency: u32,
        /// Publishers that fill the queues.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        publishers: u32,
    },
    /// Renders bench/compare's Markdown table (medians, ratios to the best peer, targets) from
    /// JSON result lines.
    Table {
        /// Files of JSON lines written by --json runs.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Label of the broker under test.
        #[arg(long, default_value = "berth")]
        subject: String,
        /// Labels of the brokers compared against, in column order, e.g. mosquitto,rumqttd.
        /// [default: every other label in the files, sorted]
        #[arg(long, value_delimiter = ',')]
        peers: Vec<String>,
    },
    /// Prints a TCP port that is free on 127.0.0.1 right now.
    FreePort,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::FanIn { .. } => "fan-in",
            Command::FanOut { .. } => "fan-out",
            Command::Pairs { .. } => "pairs",
            Command::Latency { .. } => "latency",
            Command::OfflineQueue { .. } => "offline-queue",
            Command::Takeover { .. } => "takeover",
            Command::Conns { .. } => "conns",
            Command::Sessions { .. } => "sessions",
            Command::ReconnectStorm { .. } => "reconnect-storm",
            Command::Table { .. } => "table",
            Command::FreePort => "free-port",
        }
    }
}

/// Validated options of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    /// Where subscribers connect (`addr` unless --sub-port).
    pub sub_addr: SocketAddr,
    pub version: ProtocolVersion,
    pub qos: QoS,
    pub payload: usize,
    pub duration: Option<Duration>,
    pub messages: Option<u64>,
    pub rate: Option<f64>,
    pub window: u32,
    pub batch: u32,
    pub keep_alive: u16,
    pub timeout: Duration,
    pub drain_timeout: Duration,
    pub broker_pid: Option<u32>,
    pub metrics_url: Option<String>,
    pub label: String,
    pub case: Option<String>,
    /// Unique per run: keeps topics and client ids apart from earlier runs on the same broker.
    pub run_id: String,
    /// With --tls-ca: every connection's TLS; `None`: plain TCP.
    pub tls: Option<TlsClient>,
}

impl Settings {
    pub async fn new(common: &Common, default_qos: QoS) -> anyhow::Result<Settings> {
        let addr = tokio::net::lookup_host((common.host.as_str(), common.port))
            .await
            .with_context(|| format!("resolving {}", common.host))?
            .next()
            .with_context(|| format!("{} has no address", common.host))?;
        if common.payload < STAMP_LEN {
            bail!(
                "--payload {} is too small: at least {STAMP_LEN} bytes",
                common.payload
            );
        }
        if let Some(rate) = common.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("--rate {rate} must be a positive number of messages per second");
        }
        if common.messages == Some(0) {
            bail!("--messages 0 sends nothing");
        }
        let tls = match (&common.tls_ca, &common.tls_server_name) {
            (Some(ca), name) => Some(TlsClient::load(
                ca,
                name.as_deref().unwrap_or(DEFAULT_SERVER_NAME),
            )?),
            (None, Some(_)) => bail!("--tls-server-name needs --tls-ca"),
            (None, None) => None,
        };
        let qos = match common.qos {
            None => default_qos,
            Some(0) => QoS::AtMostOnce,
            Some(1) => QoS::AtLeastOnce,
            Some(_) => QoS::ExactlyOnce,
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let sub_addr = SocketAddr::new(addr.ip(), common.sub_port.unwrap_or(common.port));
        Ok(Settings {
            addr,
            sub_addr,
            version: common.mqtt_version,
            qos,
            payload: common.payload,
            duration: common.duration,
            messages: common.messages,
            rate: common.rate,
            window: common.window,
            batch: common.batch,
            keep_alive: common.keep_alive,
            timeout: common.timeout,
            drain_timeout: common.drain_timeout,
            broker_pid: common.broker_pid,
            metrics_url: common.metrics_url.clone(),
            label: common.label.clone().unwrap_or_else(|| "broker".to_owned()),
            case: common.case.clone(),
            run_id: format!("{:x}{:06x}", std::process::id(), nanos >> 8),
            tls,
        })
    }

    /// `--duration`, or 10 s when neither it nor `--messages` is given.
    pub fn duration_or_default(&self) -> Option<Duration> {
        match (self.duration, self.messages) {
            (None, None) => Some(Duration::from_secs(10)),
            (d, _) => d,
        }
    }

    pub fn version_name(&self) -> &'static str {
        match self.version {
            ProtocolVersion::V5 => "5",
            _ => "3.1.1",
        }
    }

    pub fn qos_number(&self) -> u8 {
        self.qos.as_u8()
    }
}

fn parse_version(text: &str) -> Result<ProtocolVersion, String> {
    match text {
        "311" | "3.1.1" | "4" => Ok(ProtocolVersion::V3_1_1),
        "5" | "5.0" => Ok(ProtocolVersion::V5),
        other => Err(format!("{other:?}: write 311 or 5")),
    }
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    if !value.is_finite() || value < 0.0 || value * scale > 1e9 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_bare_seconds() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("inf").is_err());
    }

    #[test]
    fn versions_are_311_or_5() {
        assert_eq!(parse_version("311"), Ok(ProtocolVersion::V3_1_1));
        assert_eq!(parse_version("5"), Ok(ProtocolVersion::V5));
        assert!(parse_version("3").is_err());
    }

    #[test]
    fn options_may_follow_the_scenario() {
        let cli = Cli::try_parse_from([
            "berth-bench",
            "fan-in",
            "--publishers",
            "4",
            "--qos",
            "1",
            "--version",
            "5",
            "--json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::FanIn {
                publishers: 4,
                persistent_subscriber: false
            }
        ));
        assert_eq!(cli.common.qos, Some(1));
        assert_eq!(cli.common.mqtt_version, ProtocolVersion::V5);
        assert!(cli.common.json);
        assert!(Cli::try_parse_from(["berth-bench", "pairs", "--qos", "3"]).is_err());
        assert!(Cli::try_parse_from(["berth-bench", "fan-in", "--publishers", "0"]).is_err());
    }

    #[test]
    fn the_new_cases_of_bench_compare_parse() {
        let cli = Cli::try_parse_from([
            "berth-bench",
            "fan-in",
            "--publishers",
            "8",
            "--qos",
            "1",
            "--persistent-subscriber",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::FanIn {
                publishers: 8,
                persistent_subscriber: true
            }
        ));
        let cli =
            Cli::try_parse_from(["berth-bench", "pairs", "--pairs", "16", "--qos", "2"]).unwrap();
        assert!(matches!(cli.command, Command::Pairs { pairs: 16 }));
        assert_eq!(cli.common.qos, Some(2));
        let cli = Cli::try_parse_from([
            "berth-bench",
            "reconnect-storm",
            "--sessions",
            "2000",
            "--per-session",
            "10",
        ])
        .unwrap();
        assert_eq!(cli.command.name(), "reconnect-storm");
        assert!(matches!(
            cli.command,
            Command::ReconnectStorm {
                sessions: 2000,
                per_session: 10,
                concurrency: 64,
                storm_concurrency: 1024,
                publishers: 4,
            }
        ));
        assert!(
            Cli::try_parse_from(["berth-bench", "reconnect-storm", "--sessions", "0"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["berth-bench", "reconnect-storm", "--storm-concurrency", "0"])
                .is_err()
        );
    }

    #[test]
    fn table_peers_are_a_comma_list_or_every_other_label() {
        let cli = Cli::try_parse_from([
            "berth-bench",
            "table",
            "results.jsonl",
            "--peers",
            "mosquitto,rumqttd",
        ])
        .unwrap();
        let Command::Table { subject, peers, .. } = cli.command else {
            panic!("not the table command");
        };
        assert_eq!(subject, "berth");
        assert_eq!(peers, ["mosquitto", "rumqttd"]);
        let cli = Cli::try_parse_from(["berth-bench", "table", "results.jsonl"]).unwrap();
        assert!(matches!(cli.command, Command::Table { peers, .. } if peers.is_empty()));
    }

    #[tokio::test]
    async fn tls_options_are_checked_before_anything_connects() {
        let cli = Cli::try_parse_from(["berth-bench", "pairs"]).unwrap();
        let s = Settings::new(&cli.common, QoS::AtMostOnce).await.unwrap();
        assert!(s.tls.is_none(), "plain TCP unless --tls-ca");
        let cli = Cli::try_parse_from([
            "berth-bench",
            "conns",
            "--tls-server-name",
            "broker.example",
        ])
        .unwrap();
        let err = Settings::new(&cli.common, QoS::AtMostOnce)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("needs --tls-ca"), "{err}");
        let cli = Cli::try_parse_from(["berth-bench", "conns", "--tls-ca", "/nonexistent/ca.crt"])
            .unwrap();
        let err = Settings::new(&cli.common, QoS::AtMostOnce)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("--tls-ca /nonexistent/ca.crt"),
            "{err}"
        );
        let cli = Cli::try_parse_from([
            "berth-bench",
            "conns",
            "--tls-ca",
            "/nonexistent/ca.crt",
            "--tls-server-name",
            "not a name",
        ])
        .unwrap();
        let err = Settings::new(&cli.common, QoS::AtMostOnce)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--tls-server-name"), "{err}");
    }

    #[tokio::test]
    async fn settings_refuse_a_payload_too_small_for_the_stamp() {
        let cli = Cli::try_parse_from(["berth-bench", "pairs", "--payload", "8"]).unwrap();
        let err = Settings::new(&cli.common, QoS::AtMostOnce)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--payload"), "{err}");
        let cli = Cli::try_parse_from(["berth-bench", "pairs", "--rate", "0"]).unwrap();
        assert!(Settings::new(&cli.common, QoS::AtMostOnce).await.is_err());
        let cli = Cli::try_parse_from(["berth-bench", "latency"]).unwrap();
        let s = Settings::new(&cli.common, QoS::AtLeastOnce).await.unwrap();
        assert_eq!(s.qos, QoS::AtLeastOnce);
        assert_eq!(s.duration_or_default(), Some(Duration::from_secs(10)));
        let cli = Cli::try_parse_from(["berth-bench", "pairs", "--qos", "2"]).unwrap();
        let s = Settings::new(&cli.common, QoS::AtMostOnce).await.unwrap();
        assert_eq!((s.qos, s.qos_number()), (QoS::ExactlyOnce, 2));
    }
}
