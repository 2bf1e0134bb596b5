//! The MQTT X session walk-through (seeds/004: "Clean Start and Session Expiry Interval") replayed
//! against a real Berth server with Debian's `mosquitto_sub` / `mosquitto_pub`: a subscriber with
//! a fixed client id and a persistent session subscribes at QoS 1 and leaves, two QoS 1 messages
//! are published while it is away, and when it comes back (no clean start) it receives both.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_e2e::server::TestServer;
use berth_e2e::{stdout_of, wait_within};

const CLIENT_ID: &str = "mqttx_290c747e";
const TOPIC: &str = "mqttx_290c747e/test";
/// Bound on every client run; `mosquitto_sub -W 10` gives up by itself before this.
const RUN: Duration = Duration::from_secs(15);

/// Runs a mosquitto client to completion (bounded) and returns its stdout; it must succeed.
async fn run(program: &'static str, args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(program)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} (mosquitto-clients, scripts/setup.sh): {e}"));
        let status =
            wait_within(&mut child, RUN).unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
        let out = stdout_of(&mut child);
        assert!(
            status.success(),
            "{program} {args:?} failed: {status}; stdout: {out}"
        );
        out
    })
    .await
    .expect("client thread")
}

fn common(addr: SocketAddr, version: &str) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &addr.port().to_string(),
        "-V",
        version,
    ]
    .map(str::to_owned)
    .into()
}

fn args(mut base: Vec<String>, more: &[&str]) -> Vec<String> {
    base.extend(more.iter().map(|s| (*s).to_owned()));
    base
}

/// `first_sub` subscribes and exits once the SUBACK arrives (`-E`); the two publishes happen
/// while the subscriber is away; `resume_sub` comes back and must print both messages.
async fn walk_through(version: &str, first_sub: &[&str], resume_sub: &[&str]) {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let subscribe = ["-i", CLIENT_ID, "-q", "1", "-t", TOPIC];

    let out = run(
        "mosquitto_sub",
        args(args(common(addr, version), &subscribe), first_sub),
    )
    .await;
    assert!(out.is_empty(), "nothing was published yet: {out:?}");

    for payload in ["hello world", "second message"] {
        run(
            "mosquitto_pub",
            args(
                common(addr, version),
                &["-q", "1", "-t", TOPIC, "-m", payload],
            ),
        )
        .await;
    }

    let resume = args(args(common(addr, version), &subscribe), resume_sub);
    let out = run("mosquitto_sub", args(resume, &["-C", "2", "-W", "10"])).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["hello world", "second message"]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_311_persistent_session_walkthrough() {
    // 3.1.1: Clean Session = 0 (`-c`) on both connections.
    walk_through("mqttv311", &["-c", "-E"], &["-c"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_clean_start_and_session_expiry_walkthrough() {
    // 5.0: first Clean Start = 1 with Session Expiry Interval 300 s, then Clean Start = 0 (`-c`).
    walk_through("5", &["-x", "300", "-E"], &["-c", "-x", "300"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_without_session_expiry_nothing_is_kept() {
    // The counter-example from the article: Session Expiry Interval 0 ends the session with the
    // connection, so the messages published meanwhile are not kept for the client.
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let subscribe = ["-i", CLIENT_ID, "-q", "1", "-t", TOPIC];
    run(
        "mosquitto_sub",
        args(args(common(addr, "5"), &subscribe), &["-E"]),
    )
    .await;
    run(
        "mosquitto_pub",
        args(common(addr, "5"), &["-q", "1", "-t", TOPIC, "-m", "lost"]),
    )
    .await;
    let resume = args(
        args(common(addr, "5"), &subscribe),
        &["-c", "-x", "300", "-C", "1", "-W", "2"],
    );
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("mosquitto_sub")
            .args(&resume)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let _ = wait_within(&mut child, RUN).expect("mosquitto_sub -W 2 exits");
        stdout_of(&mut child)
    })
    .await
    .expect("client thread");
    assert!(out.is_empty(), "no message was kept: {out:?}");
    server.stop().await;
}
