#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use berth_core::{DropReason, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// An HTTP answer (the session tests use these helpers too).
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) headers: String,
    pub(super) body: String,
}

/// One HTTP/1.1 GET over a plain socket; the server closes the connection after it.
async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, None).await
}

/// One HTTP/1.1 request, with a bearer token if given.
pub(super) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Response {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let authorization =
            token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        String::from_utf8(raw).unwrap()
    };
    let raw = timeout(WAIT, exchange)
        .await
        .expect("HTTP response in time");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    Response {
        status,
        headers: headers.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    drain: Arc<DrainState>,
    cluster: Arc<FakeCluster>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// A cluster port whose health the test sets.
#[derive(Debug, Default)]
struct FakeCluster {
    health: std::sync::Mutex<Option<crate::ClusterHealth>>,
}

impl FakeCluster {
    fn set(&self, health: Option<crate::ClusterHealth>) {
        *self.health.lock().unwrap() = health;
    }
}

impl ClusterPort for FakeCluster {
    fn node_id(&self) -> Option<berth_core::NodeId> {
        Some(berth_core::NodeId(7))
    }
    fn claim<'a>(
        &'a self,
        _connect: &'a mut berth_codec::Connect,
        _now: berth_core::UnixMillis,
        _sequence: u64,
    ) -> crate::PortFuture<'a, Result<Option<crate::Grant>, crate::NoConsensus>> {
        Box::pin(async { Ok(None) })
    }
    fn commit<'a>(
        &'a self,
        _grant: &'a crate::Grant,
        _packet: &'a berth_codec::Packet,
        _now: berth_core::UnixMillis,
    ) -> crate::PortFuture<'a, Result<(), berth_codec::Packet>> {
        Box::pin(async { Ok(()) })
    }
    fn forward(&self, _: berth_core::NodeId, _: Option<u64>, _: berth_core::Forwarded) {}
    fn resume_forwards(&self, _: berth_core::NodeId) {}
    fn probe_node(&self, _: berth_core::NodeId) {}
    fn record(&self, _: berth_core::Replicate) {}
    fn adopt(
        &self,
        _: berth_core::ClientId,
        _: berth_core::Epoch,
        _: Option<berth_core::NodeId>,
        _: berth_core::SessionExport,
    ) {
    }
    fn health(&self) -> crate::PortFuture<'_, Option<crate::ClusterHealth>> {
        let health = self.health.lock().unwrap().clone();
        Box::pin(async move { health })
    }
}

async fn start() -> Server {
    start_with(None).await
}

async fn start_with(admin_token: Option<&str>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let ready = Arc::new(AtomicBool::new(false));
    let drain = Arc::new(DrainState::default());
    let cluster = Arc::new(FakeCluster::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let state = HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        cluster: cluster.clone(),
        drain: drain.clone(),
        admin_token: admin_token.map(Arc::from),
        broker: None,
    };
    let task = tokio::spawn(serve_http(listener, state, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        metrics,
        ready,
        drain,
        cluster,
        stop,
        task,
    }
}

impl Server {
    async fn shut_down(self) {
        self.stop.send(()).unwrap();
        timeout(WAIT, self.task)
            .await
            .expect("stops in time")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn health_follows_the_readiness_flag() {
    let server = start().await;
    let response = get(server.addr, "/health").await;
    assert_eq!(response.status, 503);
    server.ready.store(true, Ordering::Release);
    let response = get(server.addr, "/health").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ok\n");
    assert!(
        response.headers.contains("content-type: text/plain"),
        "{}",
        response.headers
    );
    server.shut_down().await;
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let server = start().await;
    let mut stats = Stats::default();
    stats.connections = 3;
    stats.connects_total = 8;
    stats.count_drop(DropReason::TooLargeForClient);
    server.metrics.observe(&stats);

    let response = get(server.addr, "/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .headers
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        response.headers
    );
    let body = response.body;
    assert!(
        body.contains("# TYPE berth_connections gauge\nberth_connections 3\n"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE berth_connects_total counter\nberth_connects_total 8\n"),
        "{body}"
    );
    assert!(body.contains("berth_messages_dropped_total{reason=\"too_large_for_client\"} 1\n"));
    assert!(body.contains("berth_messages_dropped_total{reason=\"queue_full\"} 0\n"));

    // The next scrape sees the counters advanced by the difference only.
    stats.connects_total = 11;
    server.metrics.observe(&stats);
    let body = get(server.addr, "/metrics").await.body;
    assert!(body.contains("berth_connects_total 11\n"), "{body}");
    server.shut_down().await;
}

#[tokio::test]
async fn an_unknown_path_is_not_found() {
    let server = start().await;
    assert_eq!(get(server.addr, "/nope").await.status, 404);
    server.shut_down().await;
}

fn leader_known(applied: u64, committed: u64) -> crate::ClusterHealth {
    crate::ClusterHealth {
        leader: Some(berth_core::NodeId(1)),
        term: 3,
        committed_index: committed,
        applied_index: applied,
        last_log_index: committed,
        voters: 3,
        ..Default::default()
    }
}

#[tokio::test]
async fn ready_needs_the_broker_a_leader_everything_applied_and_no_drain() {
    let server = start().await;
    let ready = get(server.addr, "/ready").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "the broker is not running\n")
    );
    server.ready.store(true, Ordering::Release);
    // Not a cluster node (no health): the broker is enough.
    assert_eq!(get(server.addr, "/ready").await.status, 200);

    server.cluster.set(Some(crate::ClusterHealth::default()));
    let ready = get(server.addr, "/ready").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "no Raft leader known\n")
    );
    server.cluster.set(Some(leader_known(40, 42)));
    let ready = get(server.addr, "/ready").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body, "applied 40 of 42 committed Raft entries\n");
    server.cluster.set(Some(leader_known(42, 42)));
    let ready = get(server.addr, "/ready").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    // Liveness is another question: a node that is not ready is still alive.
    server.cluster.set(Some(crate::ClusterHealth::default()));
    assert_eq!(get(server.addr, "/health").await.status, 200);
    server.cluster.set(Some(leader_known(42, 42)));

    assert_eq!(
        request(server.addr, "POST", "/api/v1/drain", None)
            .await
            .status,
        202
    );
    // The request reaches the server's drain, which sets the flag; here the test does.
    timeout(WAIT, server.drain.asked())
        .await
        .expect("the drain was asked for");
    server.drain.mark_draining();
    let ready = get(server.addr, "/ready").await;
    assert_eq!((ready.status, ready.body.as_str()), (503, "draining\n"));
    server.shut_down().await;
}

#[tokio::test]
async fn raft_health_is_exported_at_each_scrape() {
    let server = start().await;
    let mut health = leader_known(42, 42);
    health.is_leader = true;
    health.follower_lag = vec![(berth_core::NodeId(2), 0), (berth_core::NodeId(3), 17)];
    server.cluster.set(Some(health));
    let body = get(server.addr, "/metrics").await.body;
    for line in [
        "berth_raft_leader 1\n",
        "berth_raft_has_leader 1\n",
        "berth_raft_term 3\n",
        "berth_raft_committed_index 42\n",
        "berth_raft_applied_index 42\n",
        "berth_raft_voters 3\n",
        "berth_raft_follower_lag_entries{follower=\"3\"} 17\n",
        "berth_draining 0\n",
    ] {
        assert!(body.contains(line), "{line} in:\n{body}");
    }
    // A follower that left the membership leaves the metrics too.
    let mut health = leader_known(43, 43);
    health.is_leader = true;
    health.follower_lag = vec![(berth_core::NodeId(2), 1)];
    server.cluster.set(Some(health));
    let body = get(server.addr, "/metrics").await.body;
    assert!(!body.contains("follower=\"3\""), "{body}");
    assert!(body.contains("berth_raft_follower_lag_entries{follower=\"2\"} 1\n"));
    server.shut_down().await;
}

#[tokio::test]
async fn the_admin_api_needs_the_token_when_there_is_one() {
    let server = start_with(Some("s3cret")).await;
    server.ready.store(true, Ordering::Release);
    let refused = request(server.addr, "GET", "/api/v1/node", None).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused.headers.contains("www-authenticate: bearer"),
        "{}",
        refused.headers
    );
    let wrong = request(server.addr, "GET", "/api/v1/node", Some("s3creT")).await;
    assert_eq!(wrong.status, 401);
    let refused = request(server.addr, "POST", "/api/v1/drain", Some("nope")).await;
    assert_eq!(refused.status, 401);
    assert!(!server.drain.is_draining());

    let node = request(server.addr, "GET", "/api/v1/node", Some("s3cret")).await;
    assert_eq!(node.status, 200);
    let node: serde_json::Value = serde_json::from_str(&node.body).unwrap();
    assert_eq!(node["node_id"], 7);
    assert_eq!(node["ready"], true);
    assert_eq!(node["draining"], false);
    server.shut_down().await;
}

#[tokio::test]
async fn without_a_token_the_admin_api_answers_loopback_clients() {
    // The test client is on the loopback address: answered. (A client on another address is
    // refused with 403; the end-to-end tests bind loopback only.)
    let server = start().await;
    let node = request(server.addr, "GET", "/api/v1/node", None).await;
    assert_eq!(node.status, 200, "{}", node.body);
    let node: serde_json::Value = serde_json::from_str(&node.body).unwrap();
    assert_eq!(node["ready"], false);
    assert_eq!(node["not_ready_because"], "the broker is not running");
    server.shut_down().await;
}

#[tokio::test]
async fn the_openapi_document_is_served_without_the_token() {
    let server = start_with(Some("s3cret")).await;
    let response = request(server.addr, "GET", "/api/v1/openapi.yaml", None).await;
    assert_eq!(response.status, 200);
    assert!(
        response.headers.contains("content-type: application/yaml"),
        "{}",
        response.headers
    );
    assert_eq!(response.body, admin::OPENAPI);
    assert!(
        response.body.starts_with("openapi: 3.1"),
        "{}",
        response.body
    );
    server.shut_down().await;
}

/// `path → methods` of the `paths:` section of the OpenAPI document: path keys are indented by
/// two spaces, their operations by four (the document keeps to that layout).
fn documented_operations(document: &str) -> Vec<(String, String)> {
    let mut operations = Vec::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in document.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line == "paths:";
            path = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(key) = line.strip_prefix("  ").filter(|l| l.starts_with('/')) {
            path = key.strip_suffix(':').map(str::to_owned);
        } else if let Some(method) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')) {
            let method = method.to_ascii_uppercase();
            let known = ["GET", "POST", "PUT", "DELETE", "PATCH"];
            if let (Some(path), true) = (&path, known.contains(&method.as_str())) {
                operations.push((method, path.clone()));
            }
        }
    }
    operations
}

#[test]
fn every_admin_route_is_in_the_openapi_document() {
    let documented = documented_operations(admin::OPENAPI);
    assert!(
        documented.len() > 5,
        "the scan found the operations: {documented:?}"
    );
    for (method, path, _) in admin::endpoints() {
        let full = format!("/api/v1{path}");
        assert!(
            documented.contains(&(method.to_owned(), full.clone())),
            "{method} {full} is routed but not in docs/openapi.yaml"
        );
    }
    for extra in ["/api/v1/openapi.yaml", "/metrics", "/health", "/ready"] {
        assert!(
            documented.contains(&("GET".to_owned(), extra.to_owned())),
            "GET {extra} is routed but not in docs/openapi.yaml"
        );
    }
}

#[tokio::test]
async fn every_documented_admin_operation_is_routed() {
    // Each answers something of its own (JSON, even as a 404 or 503 here: no broker, no
    // registry), never the router's bare 404 or 405 for a path or method it does not know.
    let server = start().await;
    for (method, path) in documented_operations(admin::OPENAPI) {
        let path = path.replace("{client_id}", "dev-1");
        let response = request(server.addr, &method, &path, None).await;
        assert_ne!(response.status, 405, "{method} {path}");
        assert!(
            !(response.status == 404 && response.body.is_empty()),
            "{method} {path} is documented but not routed"
        );
    }
    server.shut_down().await;
}
