//! `berth`: parse the command line, load the configuration, bind the listeners, open the store,
//! and serve until Ctrl-C or SIGTERM.

use std::future::Future;

use anyhow::{Context as _, anyhow};
use berth::cli::{Cli, Command};
use berth::config::{self, LogFormat, Sources};
use berth::node;
use berth_server::Listeners;
use clap::Parser as _;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Cluster(command)) => return berth::admin::run(command).await,
        Some(Command::Ctl(args)) => return berth::ctl::run(args).await,
        Some(Command::Passwd { file, user }) => return berth::passwd::run(file, user),
        _ => {}
    }
    let env = config::process_env()?;
    let loaded = config::load(Sources {
        file: cli.config.config.as_deref(),
        env: &env,
        flags: cli.config.overrides(),
    })?;
    let config = loaded.config;
    if cli.command == Some(Command::CheckConfig) {
        for warning in &loaded.warnings {
            eprintln!("berth: warning: {warning}");
        }
        print!("{}", config.to_toml());
        return Ok(());
    }

    let filter = EnvFilter::try_new(log_filter(&config.log_level))?;
    match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).try_init(),
        // One JSON object per line, the event's fields (client id, node, reason) at its top.
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter)
            .try_init(),
    }
    .map_err(|error| anyhow!("cannot install the logger: {error}"))?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    // Before anything else starts, so that an early SIGTERM already stops the node cleanly.
    let shutdown = shutdown_signal()?;

    // The certificate, password and token files first: a bad one stops the node before it binds.
    let edge = berth::edge::Edge::load(&config)?;
    let admin_token = match &config.admin_token_file {
        Some(path) => {
            Some(berth::ctl::read_token(path).context("admin.token_file: the admin API's token")?)
        }
        None => None,
    };
    let mqtt = match &config.listen {
        Some(addr) => Some(bind(addr, "MQTT").await?),
        None => None,
    };
    let tls = match &config.tls.listen {
        Some(addr) => Some(bind(addr, "MQTT over TLS").await?),
        None => None,
    };
    let ws = match &config.ws.listen {
        Some(addr) => Some(bind(addr, "MQTT over WebSocket").await?),
        None => None,
    };
    let wss = match &config.ws.tls_listen {
        Some(addr) => Some(bind(addr, "MQTT over WebSocket over TLS").await?),
        None => None,
    };
    let http = bind(&config.http, "HTTP").await?;
    let mqtt_addrs: Vec<_> = mqtt
        .iter()
        .chain(tls.iter())
        .chain(ws.iter())
        .chain(wss.iter())
        .filter_map(|l| l.local_addr().ok())
        .collect();
    edge.warn_if_open(&mqtt_addrs);
    berth::edge::reload_on_sighup(edge.clone())?;
    let cluster_listener = match &config.cluster.listen {
        Some(addr) => Some(bind(addr, "the cluster").await?),
        None => None,
    };
    let store = node::open_store(&config.data_dir, config.storage_sync)?;
    let (cluster, node) = node::start_cluster(&config, cluster_listener).await?;
    let shown = |listener: &Option<TcpListener>| {
        listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or_else(|| "none".to_owned(), |addr| addr.to_string())
    };
    tracing::info!(
        mqtt = %shown(&mqtt),
        tls = %shown(&tls),
        ws = %shown(&ws),
        wss = %shown(&wss),
        http = %http.local_addr()?,
        node_id = config.cluster.node_id,
        data_dir = %config.data_dir.display(),
        "berth {} starting",
        env!("CARGO_PKG_VERSION"),
    );
    let mut options = config.server_options();
    options.admin_token = admin_token.map(std::sync::Arc::from);
    options.tls = edge.tls;
    options.auth = Some(edge.auth);
    let served = berth_server::serve_node(
        options,
        store,
        Listeners {
            mqtt,
            tls,
            ws,
            wss,
            http: Some(http),
        },
        Some(cluster),
        shutdown,
    )
    .await;
    node.shutdown().await;
    served?;
    tracing::info!("berth stopped");
    Ok(())
}

/// openraft reports every election step and membership change at `info`; unless the operator
/// asks for openraft's logs by name, only its warnings and errors are shown.
fn log_filter(configured: &str) -> String {
    if configured.contains("openraft") {
        configured.to_owned()
    } else {
        format!("{configured},openraft=warn")
    }
}

async fn bind(addr: &std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM (what `docker stop` and systemd send).
/// The handlers are installed here, before the future is first polled.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!("{name} received; shutting down");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot wait for Ctrl-C; shutting down");
        }
        tracing::info!("Ctrl-C received; shutting down");
    })
}
