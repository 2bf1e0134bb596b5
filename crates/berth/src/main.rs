//! `berth`: parse the command line, load the configuration, bind the listeners, open the store,
//! and serve until Ctrl-C or SIGTERM.

use std::future::Future;

use anyhow::{Context as _, anyhow};
use berth::cli::{Cli, Command};
use berth::config::{self, LogFormat, Sources};
use berth::node;
use berth_server::{ListenerKind, ListenerSet};
use clap::Parser as _;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, FormatEvent, FormatFields, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// mimalloc rather than glibc's malloc: the broker allocates and frees small buffers per packet
/// on several threads; medians of 3 runs on the 2-core bench machine, with
/// freed pages purged at once: QoS 1 fan-in +17 %, fan-out +12 %, pairs +14 %
/// (bench/results/2026-12-04-allocator.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`, by its index in mimalloc v3 (the crate's default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// Milliseconds a freed page stays mapped before it goes back to the OS.
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// How mimalloc gives memory back, measured on the 2-core bench machine (persistent fan-in
/// QoS 1, 8 → 1, msg/s; RSS per idle connection of 10,000):
///
/// - purged at once, transparent huge pages (the setting before): 62,000–72,000 msg/s,
///   3,710 B. A third of the broker thread went to the kernel: every purge was an `madvise`,
///   and the next allocation faulted a 2 MiB huge page back in and zeroed it.
/// - purged after 100 ms, no huge pages (libmimalloc-sys's `no_thp`: mimalloc no longer asks
///   for them, and the kernel gives them only when asked): 85,000–95,000 msg/s, 3,697 B.
///   mimalloc purges on its next activity after the delay, and the broker thread wakes every
///   500 ms even when idle, so an idle broker still gives back what its connections'
///   handshakes freed (mimalloc's own default, 10 ms with huge pages, kept it: 4,976 B per
///   idle connection).
///
/// `MIMALLOC_PURGE_DELAY` in the environment wins over this.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets a process-wide allocator option by its documented index; mimalloc reads
    // options on use, so setting one after start is supported.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}

/// RocksDB is built for CPUs with SSE 4.2 and PCLMULQDQ on x86_64 Linux (`.cargo/config.toml`:
/// its CRC32C uses them, with no fallback chosen at run time). On a CPU without them the store's
/// first checksum would be an illegal instruction; this says why instead, before anything is
/// opened.
fn check_cpu() -> anyhow::Result<()> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    if !(std::arch::is_x86_feature_detected!("sse4.2")
        && std::arch::is_x86_feature_detected!("pclmulqdq"))
    {
        return Err(anyhow!(
            "this CPU lacks SSE 4.2 or PCLMULQDQ, which Berth's RocksDB is built to use \
             (.cargo/config.toml); in a virtual machine, pass the host's CPU model through \
             (QEMU: -cpu host)"
        ));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(collect_when_idle)
        .build()
        .context("cannot start the runtime")?
        .block_on(run())
}

/// How often at most an idle runtime thread hands what was freed on it back to the allocator.
const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A runtime thread going idle collects what mimalloc holds for it, at most once per
/// `COLLECT_EVERY`. mimalloc frees a page, and after the purge delay gives it back to the OS,
/// only when the thread that owns the page next allocates or collects, and memory freed by
/// another thread waits for that too. A thread that went idle after a burst (a crowd of
/// connections that parked, giving up their tasks) would keep it all until its next burst.
fn collect_when_idle() {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> =
            const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    if LAST
        .get()
        .is_some_and(|last| now.duration_since(last) < COLLECT_EVERY)
    {
        return;
    }
    LAST.set(Some(now));
    // SAFETY: collects the calling thread's own heap; safe at any point outside an allocation.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(false);
    }
}

async fn run() -> anyhow::Result<()> {
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
    check_cpu()?;

    let filter = EnvFilter::try_new(log_filter(&config.log_level))?;
    match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).try_init(),
        // One JSON object per line: the node, the event's fields (reason, error) and its
        // connection's client id, all at its top (`JsonLines`).
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .event_format(JsonLines::new(config.cluster.node_id))
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
    // Every MQTT listener (the shorthand keys' and `[[listeners]]`), each logged as bound.
    let mqtt = node::bind_listeners(&config).await?;
    let http = bind(&config.http, "HTTP").await?;
    let mqtt_addrs: Vec<_> = mqtt
        .iter()
        .filter_map(|l| l.socket.local_addr().ok())
        .collect();
    edge.warn_if_open(&mqtt_addrs);
    berth::edge::reload_on_sighup(edge.clone())?;
    let cluster_listener = match &config.cluster.listen {
        Some(addr) => Some(bind(addr, "the cluster").await?),
        None => None,
    };
    let store = node::open_store(&config.data_dir, config.storage_sync)?;
    let (cluster, node) = node::start_cluster(&config, cluster_listener).await?;
    // The first listener of each kind, as before there could be several.
    let shown = |kind| berth::node::first_address(&mqtt, kind);
    tracing::info!(
        mqtt = %shown(ListenerKind::Tcp),
        tls = %shown(ListenerKind::Tls),
        ws = %shown(ListenerKind::Ws),
        wss = %shown(ListenerKind::Wss),
        listeners = mqtt.len(),
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
        ListenerSet {
            mqtt,
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

/// The JSON log format: one object per line with the node's id (`node`), the event's own fields
/// and those of the spans it happened in (a connection's `client_id`) at its top level, so that
/// a log shipper indexes them without knowing how tracing nests spans. An event's own field wins
/// over a span's of the same name; an event's own `node` (a member it is about) is written as
/// `event_node`, `node` being always the node that logged.
#[derive(Debug)]
struct JsonLines {
    node: u64,
    inner: Format<Json>,
}

/// Keys the inner format writes itself, which a span's field must not repeat.
const FORMAT_KEYS: [&str; 4] = ["timestamp", "level", "target", "message"];

impl JsonLines {
    fn new(node: u64) -> JsonLines {
        JsonLines {
            node,
            inner: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let own = |name: &str| event.fields().any(|field| field.name() == name);
        let mut top = serde_json::Map::new();
        top.insert("node".to_owned(), self.node.into());
        // Innermost span first: its value of a field wins over an outer span's.
        for span in ctx.event_scope().into_iter().flatten() {
            let extensions = span.extensions();
            // With `.json()`, a span's fields are kept as one JSON object.
            let Some(formatted) = extensions.get::<FormattedFields<N>>() else {
                continue;
            };
            let Ok(serde_json::Value::Object(fields)) =
                serde_json::from_str::<serde_json::Value>(formatted.fields.as_str())
            else {
                continue;
            };
            for (name, value) in fields {
                if !own(name.as_str()) && !FORMAT_KEYS.contains(&name.as_str()) {
                    top.entry(name).or_insert(value);
                }
            }
        }
        let renamed;
        let line = if own("node") {
            let mut fields: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&line).map_err(|_| std::fmt::Error)?;
            if let Some(theirs) = fields.remove("node") {
                fields.insert("event_node".to_owned(), theirs);
            }
            renamed = serde_json::to_string(&fields).map_err(|_| std::fmt::Error)? + "\n";
            renamed.as_str()
        } else {
            line.as_str()
        };
        let Some(body) = line.strip_prefix('{') else {
            return writer.write_str(line);
        };
        // `{"node":…,…` without its closing brace, then the event's object without its opening
        // one.
        let head = serde_json::to_string(&top).map_err(|_| std::fmt::Error)?;
        writer.write_str(head.strip_suffix('}').unwrap_or(&head))?;
        if !body.starts_with('}') {
            writer.write_char(',')?;
        }
        writer.write_str(body)
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

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::JsonLines;

    /// What the subscriber writes, shared with the test.
    #[derive(Debug, Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Written {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The lines `log` writes with the JSON format of node 7.
    fn logged(log: impl FnOnce()) -> Vec<String> {
        let written = Written::default();
        let writer = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .event_format(JsonLines::new(7))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = written.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn object(line: &str) -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))
    }

    #[test]
    fn json_lines_carry_the_node_and_their_connection_s_client_id_at_the_top() {
        let lines = logged(|| {
            tracing::info!(mqtt = "127.0.0.1:1883", "starting");
            // As a connection's handshake does (`connection.rs`).
            let span = tracing::info_span!("connection", client_id = tracing::field::Empty);
            let _entered = span.enter();
            tracing::debug!("below the level: not written");
            tracing::info!("before CONNECT");
            span.record("client_id", "sensor-1");
            tracing::warn!(reason = "bad_credentials", "refused: authentication");
            tracing::info!(client_id = "its-own", "an event naming a client itself");
            tracing::warn!(node = 3, "a member stopped answering");
        });
        assert_eq!(lines.len(), 5, "{lines:#?}");
        let objects: Vec<_> = lines.iter().map(|line| object(line)).collect();
        for (line, object) in lines.iter().zip(&objects) {
            assert_eq!(object["node"], 7, "{line}");
            assert!(object["timestamp"].is_string(), "{line}");
            assert!(
                object.get("spans").is_none() && object.get("span").is_none(),
                "{line}"
            );
            assert_eq!(
                line.matches("\"client_id\"").count(),
                usize::from(object.get("client_id").is_some()),
                "one client_id at most: {line}"
            );
        }
        assert_eq!(objects[0]["message"], "starting");
        assert_eq!(objects[0]["mqtt"], "127.0.0.1:1883");
        assert!(objects[0].get("client_id").is_none(), "{}", lines[0]);
        assert!(
            objects[1].get("client_id").is_none(),
            "not named yet: {}",
            lines[1]
        );
        assert_eq!(objects[2]["client_id"], "sensor-1", "{}", lines[2]);
        assert_eq!(objects[2]["reason"], "bad_credentials");
        assert_eq!(objects[2]["level"], "WARN");
        assert_eq!(objects[3]["client_id"], "its-own", "{}", lines[3]);
        assert_eq!(objects[4]["event_node"], 3, "{}", lines[4]);
        assert_eq!(objects[4]["client_id"], "sensor-1");
    }
}
