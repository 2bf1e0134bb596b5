//! berth-bench: a load generator for MQTT 3.1.1 and 5.0 brokers, built so that it is never the
//! bottleneck, and the comparison table of `bench/compare`.
//!
//! It speaks MQTT through `berth-codec` only and must not depend on Berth's server or store (the
//! store pulls in RocksDB): it measures any broker the same way.
//!
//! ```text
//!  publisher task (one per connection)              subscriber task (one per connection)
//!  template PUBLISH ─copy+patch id, stamp─▶ BytesMut   read 256 KiB ─▶ decode in place
//!   × batch ─▶ one write_all                           ─▶ ledger (lost/dup/reordered per stream)
//!  PUBACKs ─▶ window (≤ 64 in flight)                  ─▶ HDR histogram (now − stamp.sent_ns)
//!        └──────── Board: final sent count per stream ───────┘  ─▶ PUBACKs in one write
//! ```
//!
//! No channel, lock or allocation per message: the publisher and subscriber of a message share
//! only the process clock (the stamp's send time) and, at the end, the per-stream counts.
//!
//! With `--tls-ca` every connection is MQTT over TLS (rustls on *ring*, see `transport`); the
//! report's shape then names the TLS version, cipher suite and key exchange the broker agreed.

mod board;
mod cli;
mod conn;
mod frame;
mod latency;
mod ledger;
mod payload;
mod publisher;
mod report;
mod scenario;
mod scrape;
mod subscriber;
mod sys;
mod table;
mod transport;
mod window;

use std::process::ExitCode;

use anyhow::Context;
use berth_codec::QoS;
use clap::Parser;

use crate::cli::{Cli, Command, Settings};
use crate::report::Report;
use crate::scenario::conns::ConnsPlan;
use crate::scenario::sessions::SessionsPlan;
use crate::scenario::storm::StormPlan;
use crate::scenario::traffic::Shape;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Table {
            files,
            subject,
            peers,
        } => match table::render_files(files, subject, peers) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("berth-bench table: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::FreePort => {
            match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(addr) => {
                    println!("{}", addr.port());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("berth-bench free-port: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => run_scenario(&cli),
    }
}

fn run_scenario(cli: &Cli) -> ExitCode {
    let threads = cli
        .common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("berth-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let name = cli.command.name();
    let result = runtime.block_on(scenario(cli));
    let report = result.unwrap_or_else(|error| Report {
        scenario: name.to_owned(),
        case: cli.common.case.clone().unwrap_or_else(|| name.to_owned()),
        broker: cli
            .common
            .label
            .clone()
            .unwrap_or_else(|| "broker".to_owned()),
        summary: "failed".to_owned(),
        errors: vec![format!("{error:#}")],
        ..Report::default()
    });
    if cli.common.json {
        match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => eprintln!("berth-bench: cannot write JSON: {error}"),
        }
        eprintln!("{}", report.human());
    } else {
        println!("{}", report.human());
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn scenario(cli: &Cli) -> anyhow::Result<Report> {
    let common = &cli.common;
    let default_qos = match cli.command {
        Command::Latency { .. }
        | Command::OfflineQueue { .. }
        | Command::Sessions { .. }
        | Command::ReconnectStorm { .. }
        | Command::Takeover { .. } => QoS::AtLeastOnce,
        _ => QoS::AtMostOnce,
    };
    let s = Settings::new(common, default_qos).await?;
    let report = match cli.command.clone() {
        Command::FanIn {
            publishers,
            persistent_subscriber,
        } => {
            let shape = Shape::FanIn {
                publishers,
                persistent: persistent_subscriber,
            };
            scenario::traffic::scenario(&s, shape).await
        }
        Command::FanOut { subscribers } => {
            scenario::traffic::scenario(&s, Shape::FanOut { subscribers }).await
        }
        Command::Pairs { pairs } => scenario::traffic::scenario(&s, Shape::Pairs { pairs }).await,
        Command::Latency { publishers, warmup } => {
            scenario::traffic::scenario(&s, Shape::Latency { publishers, warmup }).await
        }
        Command::OfflineQueue { publishers } => scenario::offline::scenario(&s, publishers).await,
        Command::Takeover { rounds, queued } => {
            scenario::takeover::scenario(&s, rounds, queued).await
        }
        Command::Conns {
            connections,
            concurrency,
            settle,
            hold,
            subscribe,
        } => {
            scenario::conns::scenario(
                &s,
                ConnsPlan {
                    connections,
                    concurrency,
                    settle,
                    hold,
                    subscribe,
                },
            )
            .await
        }
        Command::Sessions {
            sessions,
            per_session,
            concurrency,
            publishers,
            settle,
            verify,
        } => {
            let plan = SessionsPlan {
                sessions,
                per_session,
                concurrency,
                publishers,
                settle,
                verify,
            };
            scenario::sessions::scenario(&s, plan).await
        }
        Command::ReconnectStorm {
            sessions,
            per_session,
            concurrency,
            storm_concurrency,
            publishers,
        } => {
            let plan = StormPlan {
                sessions,
                per_session,
                concurrency,
                storm_concurrency,
                publishers,
            };
            scenario::storm::scenario(&s, plan).await
        }
        Command::Table { .. } | Command::FreePort => unreachable_command(),
    };
    let mut report =
        report.with_context(|| format!("{} against {}", cli.command.name(), s.addr))?;
    if let Some(tls) = &s.tls {
        // Brokers that agree on another version or cipher suite do different work per byte and
        // per handshake: each run's shape names what it had.
        let agreed = tls.negotiated().unwrap_or("no handshake completed");
        report.params.push_str(&format!(", TLS ({agreed})"));
    }
    Ok(report)
}

fn unreachable_command() -> anyhow::Result<Report> {
    anyhow::bail!("not a scenario")
}
