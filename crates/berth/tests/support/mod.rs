//! A real `berth` process for the binary's tests: started on 127.0.0.1:0 listeners, its bound
//! addresses read from its startup log, killed with SIGKILL when dropped.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

pub mod chaos;
pub mod cluster;
pub mod netns;
pub mod pki;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const START_WAIT: Duration = Duration::from_secs(30);
/// Log lines a [`Berth`] keeps for [`Berth::log_lines`].
const LOG_KEPT: usize = 20_000;

/// A running `berth`.
#[derive(Debug)]
pub struct Berth {
    child: Child,
    /// Its last `LOG_KEPT` log lines after start-up.
    log: Arc<Mutex<VecDeque<String>>>,
    pub mqtt: SocketAddr,
    /// The HTTP listener (`/health`, `/metrics`).
    pub http: SocketAddr,
    /// The cluster listener, when it has one.
    pub cluster: Option<SocketAddr>,
    /// The MQTT over TLS listener, when it has one.
    pub tls: Option<SocketAddr>,
    /// The MQTT over WebSocket listeners (plain, over TLS), when it has them.
    pub ws: Option<SocketAddr>,
    pub wss: Option<SocketAddr>,
    /// Every MQTT listener it bound, in order, as its start-up log names them.
    pub listeners: Vec<BoundListener>,
    pub data_dir: PathBuf,
    pub node_id: u64,
    extra: Vec<String>,
}

/// One MQTT listener of a running `berth`: `MQTT listener bound listener=NAME kind=KIND
/// bound=ADDR` in its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundListener {
    pub name: String,
    /// `tcp`, `tls`, `ws` or `wss`.
    pub kind: String,
    pub addr: SocketAddr,
}

impl BoundListener {
    /// The listener a log line reports, if it is such a line.
    pub fn parse(line: &str) -> Option<BoundListener> {
        if !line.contains("MQTT listener bound") {
            return None;
        }
        let word = |name: &str| -> Option<String> {
            let rest = &line[line.find(name)? + name.len()..];
            rest.split_whitespace().next().map(str::to_owned)
        };
        Some(BoundListener {
            name: word(" listener=")?,
            kind: word(" kind=")?,
            addr: addr_after(line, " bound=")?,
        })
    }
}

/// How to start one.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub node_id: Option<u64>,
    /// Give it a cluster listener on 127.0.0.1:0 ...
    pub cluster: bool,
    /// ... or on this address (a restarted node keeps the address its peers know).
    pub cluster_addr: Option<SocketAddr>,
    /// `--join ADDR`.
    pub join: Option<SocketAddr>,
    pub env: Vec<(String, String)>,
    /// Run it through this command (e.g. `ip netns exec NAME`).
    pub wrapper: Vec<String>,
    /// Listen for MQTT and HTTP on this address (port 0) instead of 127.0.0.1.
    pub mqtt_ip: Option<IpAddr>,
    /// With `cluster`: the cluster listener's address (port 0) instead of 127.0.0.1.
    pub cluster_ip: Option<IpAddr>,
    /// Listen for MQTT on exactly this address (a restarted node keeps the port a load
    /// balancer knows) instead of `mqtt_ip` port 0.
    pub mqtt_addr: Option<SocketAddr>,
    /// Listen for HTTP on exactly this address instead of `mqtt_ip` port 0.
    pub http_addr: Option<SocketAddr>,
}

impl Berth {
    pub fn start(data_dir: &Path, options: &Options) -> Berth {
        let mqtt_ip = options.mqtt_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let mut args: Vec<String> = vec![
            "--listen".into(),
            options
                .mqtt_addr
                .unwrap_or(SocketAddr::new(mqtt_ip, 0))
                .to_string(),
            "--http".into(),
            options
                .http_addr
                .unwrap_or(SocketAddr::new(mqtt_ip, 0))
                .to_string(),
        ];
        if let Some(id) = options.node_id {
            args.extend(["--node-id".into(), id.to_string()]);
        }
        if let Some(addr) = options.cluster_addr {
            args.extend(["--cluster-listen".into(), addr.to_string()]);
        } else if options.cluster {
            let ip = options.cluster_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
            args.extend([
                "--cluster-listen".into(),
                SocketAddr::new(ip, 0).to_string(),
            ]);
        }
        if let Some(join) = options.join {
            args.extend(["--join".into(), join.to_string()]);
        }
        Berth::spawn(
            data_dir,
            args,
            &options.env,
            &options.wrapper,
            options.node_id.unwrap_or(1),
        )
    }

    fn spawn(
        data_dir: &Path,
        args: Vec<String>,
        env: &[(String, String)],
        wrapper: &[String],
        node_id: u64,
    ) -> Berth {
        let berth = env!("CARGO_BIN_EXE_berth");
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(berth);
                command
            }
            None => Command::new(berth),
        };
        command
            .args(&args)
            .arg("--data-dir")
            .arg(data_dir)
            .env("NO_COLOR", "1")
            // `BERTH_TEST_LOG_LEVEL`: the nodes' log filter instead of `info` (e.g.
            // `info,berth::delivery=trace` to follow messages, with `BERTH_TEST_LOG_DIR`).
            .env(
                "BERTH_LOG_LEVEL",
                std::env::var("BERTH_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("BERTH_TEST_LOG_LEVEL")
            .env_remove("BERTH_TEST_LOG_DIR")
            .env_remove("BERTH_TEST_LOGS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start berth");
        let (tx, rx) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            // `BERTH_TEST_LOG_DIR=DIR`: each node's log appended to DIR/node-ID.log (kept across
            // restarts), for a long test whose failure needs the nodes' side.
            let mut file = std::env::var_os("BERTH_TEST_LOG_DIR").and_then(|dir| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(Path::new(&dir).join(format!("node-{node_id}.log")))
                    .ok()
            });
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("panicked at") {
                        note_panic(node_id, &line);
                    }
                    if std::env::var_os("BERTH_TEST_LOGS").is_some() {
                        eprintln!("[node {node_id}] {line}");
                    }
                    if let Some(file) = file.as_mut() {
                        use std::io::Write as _;
                        let _ = writeln!(file, "{line}");
                    }
                    let _ = tx.send(line);
                }
            });
        }
        let wants_cluster = args.iter().any(|a| a == "--cluster-listen");
        let deadline = Instant::now() + START_WAIT;
        let mut mqtt = None;
        let mut http = None;
        let mut cluster = None;
        let mut tls = None;
        let mut ws = None;
        let mut wss = None;
        let mut listeners = Vec::new();
        loop {
            if let (Some(mqtt), Some(http), true) =
                (mqtt, http, cluster.is_some() || !wants_cluster)
            {
                // Keep draining the log so the child never blocks on a full pipe; the last
                // lines stay readable (`log_lines`).
                let log = Arc::new(Mutex::new(VecDeque::new()));
                let kept = log.clone();
                std::thread::spawn(move || {
                    while let Ok(line) = rx.recv() {
                        let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                        if kept.len() == LOG_KEPT {
                            kept.pop_front();
                        }
                        kept.push_back(strip_ansi(&line));
                    }
                });
                return Berth {
                    log,
                    child,
                    mqtt,
                    http,
                    cluster,
                    tls,
                    ws,
                    wss,
                    listeners,
                    data_dir: data_dir.to_owned(),
                    node_id,
                    extra: args,
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berth did not print its listening addresses within {START_WAIT:?}");
            };
            let line = strip_ansi(&line);
            mqtt = mqtt.or_else(|| addr_after(&line, "mqtt="));
            http = http.or_else(|| addr_after(&line, "http="));
            cluster = cluster.or_else(|| addr_after(&line, "cluster="));
            tls = tls.or_else(|| addr_after(&line, " tls="));
            ws = ws.or_else(|| addr_after(&line, " ws="));
            wss = wss.or_else(|| addr_after(&line, " wss="));
            // Logged before the start-up line, one per listener.
            listeners.extend(BoundListener::parse(&line));
        }
    }

    /// The bound address of its MQTT listener named `name` (see [`BoundListener`]).
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|listener| listener.name == name)
            .map(|listener| listener.addr)
            .unwrap_or_else(|| panic!("no listener {name:?} in {:?}", self.listeners))
    }

    /// The process id, for signals (`SIGSTOP`/`SIGCONT`). With a wrapper such as
    /// `ip netns exec`, which execs the program, it is still `berth`'s.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGHUP: the node reads its certificate and password files again.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// Waits (bounded) for a log line containing `text`, counted from the start.
    pub fn wait_for_log(&self, text: &str, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(line) = self.log_lines().into_iter().find(|l| l.contains(text)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?} within {wait:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log lines since start-up (the last `LOG_KEPT`), without colour codes.
    pub fn log_lines(&self) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().cloned().collect()
    }

    /// SIGKILL: no shutdown path runs, exactly like a crash.
    pub fn kill9(self) {
        drop(self);
    }

    /// Sends SIGTERM (what `docker stop` and Kubernetes send).
    pub fn term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits (bounded) for the process to exit on its own; panics unless it exits with
    /// status 0 within `wait`. Returns how long it took.
    pub fn wait_exit(&mut self, wait: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for berth") {
                assert!(status.success(), "berth exited with {status}");
                return started.elapsed();
            }
            assert!(
                started.elapsed() < wait,
                "berth did not exit within {wait:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then [`Berth::wait_exit`]: how long the node took to drain and stop.
    pub fn terminate(mut self, wait: Duration) -> Duration {
        self.term();
        self.wait_exit(wait)
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `... name=127.0.0.1:PORT ...` → the address.
pub fn addr_after(line: &str, name: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(name)? + name.len()..];
    rest.split_whitespace()
        .next()?
        .trim_matches(',')
        .parse()
        .ok()
}

/// Panics any node started by this test process reported on its output (a panicking broker
/// thread aborts its node; a panic elsewhere may not show in any other way).
static NODE_PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn note_panic(node_id: u64, line: &str) {
    if let Ok(mut panics) = NODE_PANICS.lock() {
        panics.push(format!("node {node_id}: {line}"));
    }
}

/// The panics nodes reported so far (see `NODE_PANICS`).
#[allow(dead_code)]
pub fn node_panics() -> Vec<String> {
    NODE_PANICS.lock().map(|p| p.clone()).unwrap_or_default()
}

/// `berth ctl --at HTTP ARGS…`: its standard output; panics unless it succeeds.
pub async fn ctl(http: SocketAddr, args: &[&str]) -> String {
    let mut all = vec!["ctl".to_owned(), "--at".to_owned(), http.to_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(&all)
            .env_clear()
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
