//! Debian's `haproxy` in front of the chaos test's nodes, as a deployment would put a TCP load
//! balancer in front of a cluster: round robin over the nodes' MQTT ports, each node taken out
//! while its HTTP `/health` does not answer 200 (its connections closed then, so clients move),
//! and a log line per connection naming the node it went to (for the checker's diagnostics).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One node behind the balancer.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    pub id: u64,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
}

#[derive(Debug)]
pub struct HaProxy {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

/// The `haproxy` program, if installed (Debian puts it in /usr/sbin, not always on PATH).
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file())
}

/// Why `scripts/setup.sh` could not install haproxy on this machine, if it clearly could not:
/// not a Debian-like system, or neither root nor passwordless sudo.
pub fn cannot_install() -> Option<String> {
    let has = |program: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has("apt-get") || !has("dpkg") {
        return Some("not a Debian-like system (no apt-get/dpkg)".into());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let sudo = || {
        Command::new("sudo")
            .args(["-n", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !root && !sudo() {
        return Some("not root and no passwordless sudo".into());
    }
    None
}

/// How the balancer treats the nodes.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// A PROXY v2 header on every connection to a node.
    send_proxy_v2: bool,
    /// The HTTP check: `/health` (alive) or `/ready` (alive, a leader, caught up, not draining).
    check_path: &'static str,
    /// Cut a node's connections when it is marked down (so clients of a paused node move);
    /// off for a drain, which moves them itself at its own pace.
    shutdown_sessions: bool,
}

fn config(port: u16, backends: &[Backend], settings: Settings) -> String {
    let Settings {
        send_proxy_v2,
        check_path,
        shutdown_sessions,
    } = settings;
    let on_down = if shutdown_sessions {
        " on-marked-down shutdown-sessions"
    } else {
        ""
    };
    let mut servers = String::new();
    // `send-proxy-v2`: each connection to a node starts with a PROXY v2 header naming the
    // client (the health checks go to the HTTP port without one).
    let proxy = if send_proxy_v2 { " send-proxy-v2" } else { "" };
    for b in backends {
        servers.push_str(&format!(
            "    server n{} {} check port {}{proxy}\n",
            b.id,
            b.mqtt,
            b.http.port()
        ));
    }
    // Client and server timeouts above the devices' keep-alive (60 s): an idle MQTT connection
    // is the client's to end, not the balancer's.
    format!(
        "global
    log stderr format raw local0 info
    nbthread 1
    maxconn 4000

defaults
    mode tcp
    log global
    option logasap
    log-format \"conn %cp %s\"
    timeout connect 2s
    timeout client 90s
    timeout server 90s
    timeout check 1s
    retries 2
    option redispatch

frontend mqtt
    bind 127.0.0.1:{port}
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk GET {check_path}
    http-check expect status 200
    default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2{on_down}
{servers}"
    )
}

impl HaProxy {
    /// Starts `program` on a free loopback port (another process may take the port between
    /// choosing and binding it: a few tries).
    pub fn start(program: &Path, backends: &[Backend]) -> Result<HaProxy, String> {
        HaProxy::start_with(program, backends, false)
    }

    /// [`HaProxy::start`], sending a PROXY v2 header on every connection to a node.
    pub fn start_with(
        program: &Path,
        backends: &[Backend],
        send_proxy_v2: bool,
    ) -> Result<HaProxy, String> {
        let settings = Settings {
            send_proxy_v2,
            check_path: "/health",
            shutdown_sessions: true,
        };
        HaProxy::launch(program, backends, settings)
    }

    /// As deployed (`deploy/haproxy.cfg`): nodes checked by `/ready`, and a node marked down
    /// keeps its connections (a draining node moves its clients itself, at its pace).
    pub fn start_ready(program: &Path, backends: &[Backend]) -> Result<HaProxy, String> {
        let settings = Settings {
            send_proxy_v2: false,
            check_path: "/ready",
            shutdown_sessions: false,
        };
        HaProxy::launch(program, backends, settings)
    }

    fn launch(program: &Path, backends: &[Backend], settings: Settings) -> Result<HaProxy, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let cfg = dir.path().join("haproxy.cfg");
        let log = dir.path().join("haproxy.log");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("find a free port: {e}"))?
                .port();
            std::fs::write(&cfg, config(port, backends, settings))
                .map_err(|e| format!("write: {e}"))?;
            let log_file = std::fs::File::create(&log).map_err(|e| format!("log: {e}"))?;
            let mut child = Command::new(program)
                .arg("-f")
                .arg(&cfg)
                .arg("-db")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .map_err(|e| format!("start {}: {e}", program.display()))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!(
                        "haproxy exited ({status}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default().trim()
                    );
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Ok(HaProxy {
                        child,
                        addr,
                        log,
                        _dir: dir,
                    });
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = "haproxy did not listen within 10 s".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(last_error)
    }

    /// Client port → the node (`n1`..) haproxy sent that connection to, from its log.
    pub fn routes(&self) -> HashMap<u16, String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next()? == "conn").then_some(())?;
                Some((words.next()?.parse().ok()?, words.next()?.to_string()))
            })
            .collect()
    }

    /// The log lines that are not per-connection lines (server state changes, warnings).
    pub fn events(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.starts_with("conn "))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /health` answered 200 within a second.
pub async fn healthy(http: SocketAddr) -> bool {
    answers_ok(http, "/health").await
}

/// `GET /ready` answered 200 within a second.
pub async fn ready(http: SocketAddr) -> bool {
    answers_ok(http, "/ready").await
}

async fn answers_ok(http: SocketAddr, path: &str) -> bool {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(http).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
