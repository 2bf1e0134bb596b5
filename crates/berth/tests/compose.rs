//! The shipped `docker-compose.yml`, run for real: its three Berth services, from an image made
//! here of the binary under test (no registry can be reached, so nothing is pulled; the
//! load balancer and Prometheus services need pulled images and are not started). The nodes
//! find each other by their service names, form the cluster from the file's static peers, route
//! between nodes, hand a session over with its backlog; a killed container restarted on its
//! volume rejoins, and a container cut off the network catches up once connected again.
//!
//! Needs the Docker engine and docker-compose, as this machine kind has.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_codec::{ConnAck, Connect, Packet, ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, connect_packet};
use support::cluster::*;

const MQTT_PORT: u16 = 1883;
const CLUSTER_PORT: u16 = 7001;

/// A connection to a node as HAProxy's `send-proxy-v2` makes it: the shipped compose file has
/// the nodes require a PROXY header (the balancer's service is not started here, no image can
/// be pulled), so the test sends one (v1, naming this process as the client) before MQTT.
async fn open_as_balancer(addr: SocketAddr, version: ProtocolVersion) -> TestClient {
    let mut client = TestClient::open(addr, version).await;
    let local = client.local_addr();
    let family = if local.is_ipv4() { "TCP4" } else { "TCP6" };
    let header = format!(
        "PROXY {family} {} {} {} {}\r\n",
        local.ip(),
        addr.ip(),
        local.port(),
        addr.port()
    );
    client.send_raw(header.as_bytes()).await;
    client
}

async fn connect_with(addr: SocketAddr, connect: Connect) -> (TestClient, ConnAck) {
    let mut client = open_as_balancer(addr, connect.protocol).await;
    client.send(Packet::Connect(Box::new(connect))).await;
    match client.recv().await {
        Packet::ConnAck(connack) => (client, *connack),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

async fn connect(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    clean: bool,
) -> (TestClient, ConnAck) {
    let (client, connack) = connect_with(addr, connect_packet(version, id, clean)).await;
    assert!(!connack.reason.is_error(), "refused: {connack:?}");
    (client, connack)
}

async fn connect_waiting_as_balancer(
    addr: SocketAddr,
    connect: Connect,
    wait: Duration,
) -> (TestClient, Packet) {
    let mut client = open_as_balancer(addr, connect.protocol).await;
    client.send(Packet::Connect(Box::new(connect))).await;
    let packet = client
        .try_recv(wait)
        .await
        .unwrap_or_else(|| panic!("no CONNACK within {wait:?}"));
    (client, packet)
}

fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program} {}: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The binary under test and the shared libraries it loads, as a root filesystem for an image
/// `FROM scratch`.
fn build_image(tag: &str) {
    let context = tempfile::tempdir().expect("temp dir");
    let root = context.path().join("rootfs");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_berth"));
    let target = root.join("usr/local/bin/berth");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::create_dir_all(root.join("var/lib/berth")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    // Without debug info the image is a tenth of the size and builds in a second.
    run(
        "objcopy",
        &[
            "--strip-debug",
            binary.to_str().unwrap(),
            target.to_str().unwrap(),
        ],
        &[],
    );
    for library in shared_libraries(&binary) {
        let inside = root.join(library.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::copy(&library, &inside).unwrap_or_else(|e| panic!("copy {library:?}: {e}"));
    }
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nWORKDIR /var/lib/berth\n\
         ENTRYPOINT [\"/usr/local/bin/berth\", \"--data-dir\", \"/var/lib/berth/data\"]\n",
    )
    .unwrap();
    run(
        "docker",
        &["build", "-q", "-t", tag, context.path().to_str().unwrap()],
        &[],
    );
}

/// `ldd`'s list: every resolved path, and the loader.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    run("ldd", &[binary.to_str().unwrap()], &[])
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A compose project of the three Berth services, taken down (with its volumes) on drop.
struct Project {
    name: String,
    file: PathBuf,
    image: String,
}

impl Project {
    fn compose(&self, args: &[&str]) -> String {
        let mut all = vec!["-p", &self.name, "-f", self.file.to_str().unwrap()];
        all.extend_from_slice(args);
        run("docker-compose", &all, &[("BERTH_IMAGE", &self.image)])
    }

    fn container(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service]).trim().to_string()
    }

    fn ip(&self, service: &str) -> IpAddr {
        let container = self.container(service);
        let ip = run(
            "docker",
            &[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                &container,
            ],
            &[],
        );
        ip.trim()
            .parse()
            .unwrap_or_else(|_| panic!("no address for {service}: {ip:?}"))
    }

    fn mqtt(&self, service: &str) -> SocketAddr {
        SocketAddr::new(self.ip(service), MQTT_PORT)
    }

    /// Waits until every node answers with three voters and a leader.
    async fn wait_formed(&self) {
        let deadline = Instant::now() + FORM_WAIT;
        loop {
            let mut formed = true;
            for service in ["berth1", "berth2", "berth3"] {
                let addr = SocketAddr::new(self.ip(service), CLUSTER_PORT);
                formed &= status(addr).await.is_some_and(|s| {
                    s.leader_id.is_some()
                        && s.membership
                            .and_then(|m| m.configs.last().map(|c| c.ids.len()))
                            == Some(3)
                });
            }
            if formed {
                return;
            }
            if Instant::now() >= deadline {
                let logs = self.compose(&["logs", "--tail", "30"]);
                panic!("the compose cluster did not form within {FORM_WAIT:?}:\n{logs}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .args(["-p", &self.name, "-f", self.file.to_str().unwrap()])
            .args(["down", "-v", "--timeout", "1"])
            .env("BERTH_IMAGE", &self.image)
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_cluster_forms_routes_hands_sessions_over_and_survives_a_killed_container() {
    let id = std::process::id();
    let project = Project {
        name: format!("berthtest{id}"),
        file: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker-compose.yml"),
        image: format!("berth-test:{id}"),
    };
    build_image(&project.image);
    project.compose(&["up", "-d", "--no-build", "berth1", "berth2", "berth3"]);
    project.wait_formed().await;

    // A persistent session on node 1, a backlog published through node 2, resumed on node 3.
    let (mut device, _) = connect(
        project.mqtt("berth1"),
        ProtocolVersion::V3_1_1,
        "device",
        false,
    )
    .await;
    device.subscribe("fleet/#", QoS::AtLeastOnce).await;
    device.disconnect().await;
    let (mut publisher, _) =
        connect(project.mqtt("berth2"), ProtocolVersion::V3_1_1, "pub", true).await;
    publish_all(&mut publisher, "fleet/t", "m", 100).await;
    let (mut device, connack) = connect(
        project.mqtt("berth3"),
        ProtocolVersion::V3_1_1,
        "device",
        false,
    )
    .await;
    assert!(connack.session_present);
    let got = receive_payloads(&mut device, 100).await;
    assert_eq!(got, names("m", 100));

    // SIGKILL one container; the other two go on; restarted on its volume it rejoins.
    run("docker", &["kill", &project.container("berth1")], &[]);
    publish_all(&mut publisher, "fleet/t", "k", 10).await;
    let got = receive_payloads(&mut device, 10).await;
    assert_eq!(got, names("k", 10));
    project.compose(&["start", "berth1"]);
    project.wait_formed().await;
    let (mut late, _) = connect(
        project.mqtt("berth1"),
        ProtocolVersion::V3_1_1,
        "late",
        true,
    )
    .await;
    late.subscribe("fleet/#", QoS::AtLeastOnce).await;
    // A new connection: its CONNECT commits after the SUBSCRIBE, and berth2 answers it only
    // once it has applied the log that far, so the new route is known there. (The older
    // publisher connection could race the route's arrival on berth2.)
    let (mut publisher, _) = connect(
        project.mqtt("berth2"),
        ProtocolVersion::V3_1_1,
        "pub-r",
        true,
    )
    .await;
    publish_all(&mut publisher, "fleet/t", "r", 1).await;
    assert_eq!(receive(&mut late, 1).await[0].0, "r-0");
    assert_eq!(receive(&mut device, 1).await[0].0, "r-0");
    drop(device);

    // Cut berth3 off the network: the other two go on (the device's session moves to berth1);
    // connected again under its service name, berth3 catches up and serves again.
    let network = format!("{}_default", project.name);
    let berth3 = project.container("berth3");
    run("docker", &["network", "disconnect", &network, &berth3], &[]);
    // If berth3 led, the other two elect a leader first.
    let deadline = Instant::now() + FORM_WAIT;
    while status(SocketAddr::new(project.ip("berth1"), CLUSTER_PORT))
        .await
        .and_then(|s| s.leader_id)
        .is_none_or(|leader| leader == 3)
    {
        assert!(
            Instant::now() < deadline,
            "berth1 and berth2 elected no leader"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The takeover waits (bounded) for the unreachable old owner before going on.
    let (mut device, connack) = connect_waiting_as_balancer(
        project.mqtt("berth1"),
        connect_packet(ProtocolVersion::V3_1_1, "device", false),
        Duration::from_secs(40),
    )
    .await;
    match connack {
        Packet::ConnAck(c) => {
            assert!(!c.reason.is_error() && c.session_present, "{c:?}");
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // A new publisher connection: berth2 has applied the device's new claim before it answers.
    let (mut publisher, _) = connect(
        project.mqtt("berth2"),
        ProtocolVersion::V3_1_1,
        "pub-c",
        true,
    )
    .await;
    publish_all(&mut publisher, "fleet/t", "c", 5).await;
    let got = receive_payloads(&mut device, 5).await;
    assert_eq!(got, names("c", 5));
    run(
        "docker",
        &["network", "connect", "--alias", "berth3", &network, &berth3],
        &[],
    );
    project.wait_formed().await;
    let deadline = Instant::now() + FORM_WAIT;
    loop {
        let (client, connack) = connect_with(
            project.mqtt("berth3"),
            connect_packet(ProtocolVersion::V3_1_1, "back", true),
        )
        .await;
        if !connack.reason.is_error() {
            client.disconnect().await;
            break;
        }
        assert!(Instant::now() < deadline, "berth3 never accepted again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
