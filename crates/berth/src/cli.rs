//! The command line. Flags cover the common keys; every key also has a TOML name and a
//! `BERTH_*` variable (docs/configuration.md). Flags win over both.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;
use crate::config::value::{Input, log_filter};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check the configuration (file, environment, flags) and print the effective values as
    /// TOML, then exit: status 0 if it is valid, 1 with a message naming the bad key if not.
    CheckConfig,
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
}

impl ConfigArgs {
    /// The keys the flags set, as the top layer of the configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            http: self.http,
            data_dir: self.data_dir.clone(),
            log_level: self.log_level.clone(),
            storage_sync: self.storage_sync,
            ..Overrides::default()
        }
    }
}

fn parse_log_level(text: &str) -> Result<String, String> {
    log_filter(Input::Text(text)).map_err(|problem| problem.to_string())
}
