//! Authentication against the real binary: `berth passwd` writes the password file (hashes,
//! never passwords), a node with it lets in the right password and refuses the rest with the
//! reason codes of both protocol versions, reads the file again on SIGHUP, and stops answering
//! an address that keeps failing. A node with a JWT key lets in valid tokens sent as passwords
//! and refuses expired or forged ones; a token's `acl` claim grants exactly its topics, and
//! one that cannot be read refuses the CONNECT.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_codec::{
    ConnAck, ConnectReasonCode, MqttString, ProtocolVersion, PubAckReasonCode, QoS,
    SubAckReasonCode,
};
use berth_e2e::client::{TestClient, connect_packet, text};
use berth_e2e::metrics;
use bytes::Bytes;
use support::{Berth, Options};

/// `berth passwd FILE USER` with the password on standard input.
fn passwd(file: &Path, user: &str, password: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("passwd")
        .arg(file)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let mut child = child;
    berth_e2e::wait_within(&mut child, Duration::from_secs(30)).expect("berth passwd ends");
    child.wait_with_output().unwrap()
}

fn node_with_passwords(dir: &Path, file: &Path) -> Berth {
    Berth::start(
        &dir.join("data"),
        &Options {
            env: vec![
                (
                    "BERTH_AUTH_PASSWORD_FILE".into(),
                    file.display().to_string(),
                ),
                ("BERTH_AUTH_ALLOW_ANONYMOUS".into(), "false".into()),
            ],
            ..Options::default()
        },
    )
}

async fn attempt(
    node: &Berth,
    version: ProtocolVersion,
    id: &str,
    credentials: Option<(&str, &str)>,
) -> ConnAck {
    let mut connect = connect_packet(version, id, true);
    if let Some((user, password)) = credentials {
        connect.username = Some(MqttString::new(user).unwrap());
        connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    }
    let (mut client, connack) = TestClient::connect_with(node.mqtt, connect).await;
    if connack.reason.is_error() {
        client.expect_closed().await;
    }
    connack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_file_admits_the_right_password_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    for (user, password) in [("alice", "first"), ("bob", "hunter2"), ("alice", "secret")] {
        let out = passwd(&file, user, password);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("alice:")).count(),
        1,
        "a second passwd for alice replaces her line: {text}"
    );
    assert!(text.contains("bob:$argon2id$"), "{text}");
    assert!(
        !text.contains("secret") && !text.contains("hunter2"),
        "hashes only"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
    }

    let node = node_with_passwords(dir.path(), &file);
    use ConnectReasonCode::*;
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let ok = attempt(&node, version, "a", Some(("alice", "secret"))).await;
        assert_eq!(ok.reason, Success, "{version:?}");
        let old = attempt(&node, version, "a", Some(("alice", "first"))).await;
        assert_eq!(
            old.reason, BadUserNameOrPassword,
            "{version:?}: replaced password"
        );
        let unknown = attempt(&node, version, "m", Some(("mallory", "secret"))).await;
        assert_eq!(unknown.reason, BadUserNameOrPassword, "{version:?}");
        let anonymous = attempt(&node, version, "n", None).await;
        assert_eq!(anonymous.reason, NotAuthorized, "{version:?}");
    }
    metrics::wait_for(
        node.http,
        "berth_connects_refused_auth_total{reason=\"bad_credentials\"}",
        4,
    )
    .await;
    metrics::wait_for(
        node.http,
        "berth_connects_refused_auth_total{reason=\"not_authorized\"}",
        2,
    )
    .await;

    // A user added while the node runs counts once the node is told (SIGHUP).
    assert!(passwd(&file, "carol", "pw-of-carol").status.success());
    let before = attempt(
        &node,
        ProtocolVersion::V5,
        "c",
        Some(("carol", "pw-of-carol")),
    )
    .await;
    assert_eq!(before.reason, BadUserNameOrPassword);
    node.hangup();
    node.wait_for_log("password file reloaded", Duration::from_secs(10));
    let after = attempt(
        &node,
        ProtocolVersion::V5,
        "c",
        Some(("carol", "pw-of-carol")),
    )
    .await;
    assert_eq!(after.reason, Success);

    // A password file broken by hand: the node says so and keeps the users it had.
    std::fs::write(&file, "carol\n").unwrap();
    node.hangup();
    node.wait_for_log("password file not reloaded", Duration::from_secs(10));
    let still = attempt(
        &node,
        ProtocolVersion::V5,
        "c",
        Some(("carol", "pw-of-carol")),
    )
    .await;
    assert_eq!(still.reason, Success);
}

/// The HS256 secret of the JWT tests (at least 32 bytes, as Berth requires).
const JWT_SECRET: &[u8] = b"the fleet's shared secret, 32 bytes or more";

fn node_with_jwt_secret(dir: &Path) -> Berth {
    let key = dir.join("jwt.secret");
    std::fs::write(&key, JWT_SECRET).unwrap();
    Berth::start(
        &dir.join("data"),
        &Options {
            env: vec![
                ("BERTH_AUTH_JWT_ALGORITHM".into(), "HS256".into()),
                ("BERTH_AUTH_JWT_KEY_FILE".into(), key.display().to_string()),
                ("BERTH_AUTH_ALLOW_ANONYMOUS".into(), "false".into()),
            ],
            ..Options::default()
        },
    )
}

/// An HS256 token for `sub`, expiring at `exp` (seconds since the epoch).
fn hs256_token(secret: &[u8], sub: &str, exp: u64) -> String {
    hs256_signed(secret, &serde_json::json!({ "sub": sub, "exp": exp }))
}

/// An HS256 token carrying exactly `claims`.
fn hs256_signed(secret: &[u8], claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Connects with `token` as the password; the client and its CONNACK, whatever it says.
async fn connect_with_token(
    node: &Berth,
    version: ProtocolVersion,
    id: &str,
    username: Option<&str>,
    token: &str,
) -> (TestClient, ConnAck) {
    let mut connect = connect_packet(version, id, true);
    connect.username = username.map(|name| MqttString::new(name).unwrap());
    connect.password = Some(Bytes::copy_from_slice(token.as_bytes()));
    TestClient::connect_with(node.mqtt, connect).await
}

async fn attempt_with_token(
    node: &Berth,
    version: ProtocolVersion,
    id: &str,
    username: Option<&str>,
    token: &str,
) -> ConnAck {
    let (mut client, connack) = connect_with_token(node, version, id, username, token).await;
    if connack.reason.is_error() {
        client.expect_closed().await;
    }
    connack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_password_admits_a_valid_token_and_refuses_expired_or_forged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_jwt_secret(dir.path());
    let now = jsonwebtoken::get_current_timestamp();
    let valid = hs256_token(JWT_SECRET, "sensor-17", now + 600);
    let expired = hs256_token(JWT_SECRET, "sensor-17", now - 60);
    let forged = hs256_token(
        b"some other secret, also 32 bytes or more",
        "sensor-17",
        now + 600,
    );
    use ConnectReasonCode::*;

    // MQTT 5 may send the token alone: its sub becomes the username.
    let alone = attempt_with_token(&node, ProtocolVersion::V5, "s0", None, &valid).await;
    assert_eq!(alone.reason, Success);
    // 3.1.1 sends a username with every password: the token's sub.
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let ok = attempt_with_token(&node, version, "s1", Some("sensor-17"), &valid).await;
        assert_eq!(ok.reason, Success, "{version:?}");
        let late = attempt_with_token(&node, version, "s2", Some("sensor-17"), &expired).await;
        assert_eq!(late.reason, BadUserNameOrPassword, "{version:?}: expired");
        let fake = attempt_with_token(&node, version, "s3", Some("sensor-17"), &forged).await;
        assert_eq!(
            fake.reason, BadUserNameOrPassword,
            "{version:?}: wrong secret"
        );
    }
    // Another device's name with this token, or a plain password (there is no password file).
    let borrowed =
        attempt_with_token(&node, ProtocolVersion::V5, "s4", Some("sensor-18"), &valid).await;
    assert_eq!(borrowed.reason, BadUserNameOrPassword);
    let plain = attempt(
        &node,
        ProtocolVersion::V5,
        "s5",
        Some(("sensor-17", "hunter2")),
    )
    .await;
    assert_eq!(plain.reason, BadUserNameOrPassword);
    let anonymous = attempt(&node, ProtocolVersion::V5, "s6", None).await;
    assert_eq!(anonymous.reason, NotAuthorized);
    metrics::wait_for(
        node.http,
        "berth_connects_refused_auth_total{reason=\"bad_credentials\"}",
        6,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_acl_claim_grants_exactly_its_topics_and_a_malformed_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_jwt_secret(dir.path());
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    // No acl claim and no rules file: the watcher may use every topic.
    let watcher_token = hs256_token(JWT_SECRET, "watcher", exp);
    // %c is the client id ("dev1"), not the username (the token's sub).
    let device_token = hs256_signed(
        JWT_SECRET,
        &serde_json::json!({
            "sub": "alice",
            "exp": exp,
            "acl": { "pub": ["devices/%c/up"], "sub": ["devices/%c/down"] }
        }),
    );

    let (mut watcher, connack) = connect_with_token(
        &node,
        ProtocolVersion::V5,
        "watcher",
        Some("watcher"),
        &watcher_token,
    )
    .await;
    assert_eq!(connack.reason, ConnectReasonCode::Success);
    let ack = watcher.subscribe("devices/+/up", QoS::AtLeastOnce).await;
    assert_eq!(ack.reason_codes, [SubAckReasonCode::GrantedQoS1]);

    let (mut device, connack) = connect_with_token(
        &node,
        ProtocolVersion::V5,
        "dev1",
        Some("alice"),
        &device_token,
    )
    .await;
    assert_eq!(connack.reason, ConnectReasonCode::Success);

    // PUBLISH: its own "up" only ("down" is granted for subscribing, not publishing).
    assert_eq!(
        device.publish_reason("devices/dev1/up", b"mine").await,
        PubAckReasonCode::Success
    );
    assert_eq!(
        device.publish_reason("devices/dev2/up", b"not mine").await,
        PubAckReasonCode::NotAuthorized
    );
    assert_eq!(
        device
            .publish_reason("devices/dev1/down", b"sub only")
            .await,
        PubAckReasonCode::NotAuthorized
    );
    let got = watcher.recv_publish_and_ack().await;
    assert_eq!(text(&got), "mine");
    watcher.expect_nothing(Duration::from_millis(300)).await;

    // SUBSCRIBE: its own "down" only.
    let ack = device
        .subscribe("devices/dev1/down", QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.reason_codes, [SubAckReasonCode::GrantedQoS1]);
    let ack = device
        .subscribe("devices/dev2/down", QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.reason_codes, [SubAckReasonCode::NotAuthorized]);
    let ack = device.subscribe("devices/dev1/up", QoS::AtLeastOnce).await;
    assert_eq!(
        ack.reason_codes,
        [SubAckReasonCode::NotAuthorized],
        "pub only"
    );
    // What the granted subscription hears.
    assert_eq!(
        watcher
            .publish_reason("devices/dev1/down", b"command")
            .await,
        PubAckReasonCode::Success
    );
    let got = device.recv_publish_and_ack().await;
    assert_eq!(text(&got), "command");
    metrics::wait_for(node.http, &metrics::dropped("not_authorized"), 2).await;

    // A genuine token whose acl claim cannot be read: 0x87 (3.1.1: 5), never "no grants".
    for (n, acl) in [
        serde_json::json!({ "pub": "not-a-list" }),
        serde_json::json!({ "publish": ["devices/%c/up"] }),
        serde_json::json!(["devices/%c/up"]),
    ]
    .into_iter()
    .enumerate()
    {
        let token = hs256_signed(
            JWT_SECRET,
            &serde_json::json!({ "sub": "alice", "exp": exp, "acl": acl }),
        );
        for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
            let refused =
                attempt_with_token(&node, version, &format!("bad{n}"), Some("alice"), &token).await;
            assert_eq!(
                refused.reason,
                ConnectReasonCode::NotAuthorized,
                "{version:?}: acl {acl}"
            );
        }
    }
    metrics::wait_for(
        node.http,
        "berth_connects_refused_auth_total{reason=\"not_authorized\"}",
        6,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_failing_is_refused_without_a_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    assert!(passwd(&file, "alice", "secret").status.success());
    let node = node_with_passwords(dir.path(), &file);
    // Ten wrong passwords at once (each refusal costs its client 0.5 s, not the others).
    let mut failures = Vec::new();
    for n in 0..10 {
        let node_addr = node.mqtt;
        failures.push(tokio::spawn(async move {
            let mut connect = connect_packet(ProtocolVersion::V5, &format!("guess-{n}"), true);
            connect.username = Some(MqttString::new("alice").unwrap());
            connect.password = Some(Bytes::from_static(b"guess"));
            TestClient::connect_with(node_addr, connect).await.1
        }));
    }
    for failure in failures {
        assert_eq!(
            failure.await.unwrap().reason,
            ConnectReasonCode::BadUserNameOrPassword
        );
    }
    // Now even the right password is refused from this address, at once.
    let started = std::time::Instant::now();
    let limited = attempt(&node, ProtocolVersion::V5, "a", Some(("alice", "secret"))).await;
    assert_eq!(limited.reason, ConnectReasonCode::ConnectionRateExceeded);
    assert!(started.elapsed() < Duration::from_millis(450), "no delay");
    let limited_v3 = attempt(
        &node,
        ProtocolVersion::V3_1_1,
        "a",
        Some(("alice", "secret")),
    )
    .await;
    assert_eq!(limited_v3.reason, ConnectReasonCode::ServerUnavailable);
    metrics::wait_for(
        node.http,
        "berth_connects_refused_auth_total{reason=\"rate_limited\"}",
        2,
    )
    .await;
}

#[test]
fn allow_anonymous_false_without_any_credential_source_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("check-config")
        .env("BERTH_AUTH_ALLOW_ANONYMOUS", "false")
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.allow_anonymous"), "{stderr}");
}
