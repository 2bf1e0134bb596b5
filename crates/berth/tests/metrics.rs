//! What Prometheus and an operator see: the README's metric table equals what a node exports
//! (a node that has forwarded included: per-peer series appear with a peer's first forward),
//! its scrapes pass `promtool check metrics`, the dashboard and the alert rules name only
//! exported metrics (and the rules pass `promtool check rules`), and Debian's Prometheus scrapes
//! a three-node cluster. promtool and prometheus come from Debian's `prometheus` package
//! (`scripts/setup.sh` installs it); where it clearly cannot be installed the promtool and
//! Prometheus parts print SKIP.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_codec::{Packet, ProtocolVersion, QoS};
use berth_e2e::client::TestClient;
use berth_e2e::metrics::scrape;
use support::cluster::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `name → type` of every family in the README's table (between its markers).
fn readme_metrics() -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("<!-- metrics:begin -->").expect("begin marker");
    let end = readme.find("<!-- metrics:end -->").expect("end marker");
    readme[start..end]
        .lines()
        .filter_map(|line| {
            let mut cells = line.split('|').map(str::trim).skip(1);
            let name = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            let name = name.split('{').next()?;
            Some((name.to_owned(), cells.next()?.to_owned()))
        })
        .collect()
}

/// `name → type` of every family in a scrape (`# TYPE name type`).
fn exported(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("# TYPE ")?.split(' ');
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// Metric names in a PromQL text: every `berth_…` or `process_…` word, histogram suffixes
/// taken off.
fn names_in(text: &str) -> BTreeSet<String> {
    let word_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        let rest = &text[i..];
        if !word_char(previous) && (rest.starts_with("berth_") || rest.starts_with("process_")) {
            let word = &rest[..rest.find(|c: char| !word_char(c)).unwrap_or(rest.len())];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word);
            names.insert(family.to_owned());
        }
        previous = c;
    }
    names
}

/// A Debian tool from the `prometheus` package, or `None` after a SKIP line where it clearly
/// cannot be installed.
fn tool_or_skip(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin").join(name);
    if path.is_file() {
        return Some(path);
    }
    if let Some(why) = support::chaos::haproxy::cannot_install() {
        println!("SKIP {name}: not installed and cannot be installed here ({why})");
        return None;
    }
    panic!("{name} is not installed: run scripts/setup.sh (it installs Debian's prometheus)");
}

/// The leader's scrape once it reports its followers (the family a follower lacks).
async fn leader_scrape(cluster: &Cluster) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for id in 1..=3 {
            let body = scrape(cluster.node(id).http).await;
            if body.contains("berth_raft_leader 1\n")
                && body.matches("berth_raft_follower_lag_entries{").count() == 2
            {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader reported two followers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node 2's scrape once a message published there has reached a subscriber on node 1: node 2
/// has forwarded to node 1, so its `berth_forwards_total{peer="1",…}` series exist.
async fn forwarding_scrape(cluster: &Cluster) -> String {
    let topic = "metrics/forward";
    let (mut subscriber, _) =
        TestClient::connect(cluster.mqtt(1), ProtocolVersion::V5, "metrics-sub", true).await;
    subscriber.subscribe(topic, QoS::AtLeastOnce).await;
    let (mut publisher, _) =
        TestClient::connect(cluster.mqtt(2), ProtocolVersion::V5, "metrics-pub", true).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until node 2 has applied the subscription, what is published there has no subscriber.
    loop {
        let reason = publisher.publish_reason(topic, b"forwarded").await;
        assert!(!reason.is_error(), "{reason:?}");
        if let Some(Packet::Publish(_)) = subscriber.try_recv(Duration::from_millis(300)).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing published on node 2 reached node 1's subscriber within 30 s"
        );
    }
    let stored = "berth_forwards_total{peer=\"1\",result=\"stored\"} ";
    loop {
        let body = scrape(cluster.node(2).http).await;
        let counted = body
            .lines()
            .find_map(|line| line.strip_prefix(stored))
            .is_some_and(|value| value != "0");
        if counted {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 did not count its forward to node 1:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `promtool check metrics` on `scrape`.
fn promtool_accepts(promtool: &Path, scrape: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_lists_every_metric_a_node_exports_and_promtool_accepts_a_scrape() {
    let cluster = Cluster::start(3).await;
    let body = leader_scrape(&cluster).await;
    let forwarding = forwarding_scrape(&cluster).await;
    let mut families = exported(&body);
    families.extend(exported(&forwarding));
    let exported = families;
    let documented = readme_metrics();
    let missing: Vec<_> = exported
        .keys()
        .filter(|n| !documented.contains_key(*n))
        .collect();
    let stale: Vec<_> = documented
        .keys()
        .filter(|n| !exported.contains_key(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "exported but not in the README's table: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "in the README's table but not exported: {stale:?}"
    );
    for (name, kind) in &exported {
        assert_eq!(&documented[name], kind, "the README's type of {name}");
    }
    assert!(body.contains("berth_raft_has_leader 1\n"), "{body}");
    assert!(body.contains("berth_raft_voters 3\n"), "{body}");
    // The Raft database's own memory, read at the scrape: its memtables hold the log so far.
    let raft_memtables = body
        .lines()
        .find_map(|line| {
            line.strip_prefix("berth_store_memory_bytes{kind=\"memtables\",store=\"raft\"} ")
        })
        .and_then(|value| value.parse::<u64>().ok());
    assert!(raft_memtables.is_some_and(|bytes| bytes > 0), "{body}");
    assert!(body.contains("berth_ready 1\n"), "{body}");

    for zero in [
        "berth_takeovers_total{result=\"completed\"} 0\n",
        "berth_takeovers_total{result=\"old_owner_unreachable\"} 0\n",
    ] {
        assert!(body.contains(zero), "exported from the start: {zero}{body}");
    }
    assert!(
        body.contains("# TYPE berth_raft_elections_total counter\n"),
        "{body}"
    );

    let Some(promtool) = tool_or_skip("promtool") else {
        return;
    };
    promtool_accepts(&promtool, &body);
    promtool_accepts(&promtool, &forwarding);
}

#[test]
fn the_dashboard_and_the_alert_rules_name_only_exported_metrics() {
    let documented = readme_metrics();
    let dashboard = std::fs::read_to_string(repo().join("deploy/grafana/berth.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 20,
        "the dashboard has {} queries",
        exprs.len()
    );
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    for (what, text) in exprs
        .iter()
        .map(|e| ("dashboard", e.as_str()))
        .chain([("alert rules", rules.as_str())])
    {
        for name in names_in(text) {
            assert!(
                documented.contains_key(&name),
                "{what} name {name}, which Berth does not export (in: {text})"
            );
        }
    }
    let Some(promtool) = tool_or_skip("promtool") else {
        return;
    };
    let output = Command::new(promtool)
        .args(["check", "rules"])
        .arg(repo().join("deploy/prometheus/alerts.yml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// `GET path` on Prometheus's HTTP API: the JSON answer.
async fn api(addr: SocketAddr, path_and_query: &str) -> Option<serde_json::Value> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request =
            format!("GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") {
            return None;
        }
        serde_json::from_str(body).ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// The query's result vector as `(instance, value)`.
async fn query(addr: SocketAddr, promql: &str) -> Vec<(String, String)> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    let Some(answer) = api(addr, &format!("/api/v1/query?query={encoded}")).await else {
        return Vec::new();
    };
    answer["data"]["result"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .map(|r| {
                    (
                        r["metric"]["instance"].as_str().unwrap_or("").to_owned(),
                        r["value"][1].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_node_of_a_cluster() {
    let Some(prometheus) = tool_or_skip("prometheus") else {
        return;
    };
    let cluster = Cluster::start(3).await;
    let targets: Vec<String> = (1..=3)
        .map(|id| format!("\"{}\"", cluster.node(id).http))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: [{}]\n",
            repo().join("deploy/prometheus/alerts.yml").display(),
            targets.join(", ")
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut server = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (up, voters) = loop {
        let up = query(addr, "up{job=\"berth\"} == 1").await;
        let voters = query(addr, "berth_raft_voters").await;
        if up.len() == 3 && voters.len() == 3 {
            break (up, voters);
        }
        if Instant::now() >= deadline {
            let _ = server.kill();
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            panic!(
                "Prometheus did not scrape the three nodes within 60 s: up {up:?}, voters {voters:?}\n{log}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = server.kill();
    let _ = server.wait();
    println!("prometheus: up {up:?}; berth_raft_voters {voters:?}");
    let instances: BTreeSet<String> = up.into_iter().map(|(instance, _)| instance).collect();
    let nodes: BTreeSet<String> = (1..=3)
        .map(|id| cluster.node(id).http.to_string())
        .collect();
    assert_eq!(instances, nodes, "one `up` series per node");
    assert!(voters.iter().all(|(_, v)| v == "3"), "{voters:?}");
}
