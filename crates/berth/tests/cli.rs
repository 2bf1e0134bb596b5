//! The `berth` executable as an operator meets it: help, check-config, start and stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn berth() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    // Only what a test sets: no BERTH_* or RUST_LOG from the machine running the tests.
    command.env_clear();
    command
}

fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().unwrap();
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    (output, stdout, stderr)
}

#[test]
fn help_explains_every_flag_and_the_defaults() {
    let (output, help, _) = run(berth().arg("--help"));
    assert!(output.status.success());
    for text in [
        "--config <FILE>",
        "--listen <ADDR>",
        "--http <ADDR>",
        "--data-dir <DIR>",
        "--log-level <FILTER>",
        "--storage-sync",
        "check-config",
        "0.0.0.0:1883",
        "0.0.0.0:8080",
        "./data",
        "BERTH_LISTEN",
        "BERTH_CONFIG",
        "/metrics",
    ] {
        assert!(help.contains(text), "--help lacks {text:?}:\n{help}");
    }
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, "[queue]\nmax_messages = 10\n").unwrap();
    let (output, stdout, stderr) = run(berth()
        .args(["check-config", "--config"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:1999"])
        .env("BERTH_QUEUE_MAX_BYTES", "unlimited"));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("listen = \"127.0.0.1:1999\"\n"), "{stdout}");
    assert!(stdout.contains("max_messages = 10\n"), "{stdout}");
    assert!(stdout.contains("max_bytes = \"unlimited\"\n"), "{stdout}");
    assert!(stdout.contains("max_expiry = \"never\"\n"), "{stdout}");
}

#[test]
fn check_config_refuses_a_bad_value_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, "[queue]\nmax_messages = 0\n").unwrap();
    let (output, stdout, stderr) = run(berth().arg("check-config").env("BERTH_CONFIG", &file));
    assert!(!output.status.success());
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("config: queue.max_messages: 0 is not allowed; write \"unlimited\""),
        "{stderr}"
    );

    let (output, _, stderr) = run(berth()
        .arg("check-config")
        .env("BERTH_LIMITS_MAX_INFLIGHT", "0"));
    assert!(!output.status.success());
    assert!(stderr.contains("BERTH_LIMITS_MAX_INFLIGHT"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn starts_creates_its_data_dir_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = berth()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .arg("--data-dir")
        .arg(&data)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    // The data dir appears after the signal handlers are installed.
    while !data.is_dir() {
        assert!(child.try_wait().unwrap().is_none(), "berth exited early");
        assert!(Instant::now() < deadline, "berth did not start in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "berth exited with {status}");
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("berth did not stop on SIGTERM in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `berth` with `args` (and a temporary data dir) and returns its log lines up to and
/// including the one saying it is starting; then kills it.
fn startup_lines(args: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, rx) = spawn_logging(berth().args(args), dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            child.kill().unwrap();
            panic!("no start-up line within 20 s; lines: {lines:?}");
        };
        let starting = line.contains(" starting");
        lines.push(line);
        if starting {
            break;
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    lines
}

#[test]
fn json_logs_are_one_object_per_line_with_the_event_fields_at_the_top() {
    let lines = startup_lines(&[
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not a JSON object ({error}): {line}"))
        })
        .collect();
    let starting = objects.last().unwrap();
    assert!(
        starting["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("berth ") && m.ends_with(" starting")),
        "{starting}"
    );
    assert_eq!(starting["level"], "INFO", "{starting}");
    assert!(starting["timestamp"].is_string(), "{starting}");
    assert!(
        starting["mqtt"]
            .as_str()
            .is_some_and(|addr| addr.starts_with("127.0.0.1:")),
        "the event's fields are at the top level: {starting}"
    );
    assert_eq!(starting["node_id"], 1, "{starting}");
    // Every line names the node that wrote it (`cluster.node_id`, 1 by default).
    for object in &objects {
        assert_eq!(object["node"], 1, "{object}");
    }
}

#[test]
fn anonymous_clients_on_a_listener_other_hosts_reach_are_warned_about_at_start() {
    const WARNING: &str = "anonymous clients are allowed";
    let open = startup_lines(&["--listen", "0.0.0.0:0", "--http", "127.0.0.1:0"]);
    assert!(
        open.iter()
            .any(|line| line.contains(WARNING) && line.contains("WARN")),
        "{open:?}"
    );
    let loopback = startup_lines(&["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    assert!(
        !loopback.iter().any(|line| line.contains(WARNING)),
        "{loopback:?}"
    );
}

/// Starts `command` with the data dir `dir`; its log lines (stdout) arrive on the receiver.
fn spawn_logging(
    command: &mut Command,
    dir: &std::path::Path,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .arg("--data-dir")
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The first JSON log line `matches` accepts within 20 s.
fn wait_for_line(
    rx: &std::sync::mpsc::Receiver<String>,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!("no such line within 20 s; lines: {seen:#?}");
        };
        let object: serde_json::Value = serde_json::from_str(&line).unwrap();
        if matches(&object) {
            return object;
        }
        seen.push(line);
    }
}

/// A connection's log lines say which listener accepted it and, once its CONNECT named it,
/// which client it is — so an operator can find one device's handshake among thousands.
#[test]
fn a_connections_log_lines_name_its_listener_and_client() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    // No users, and anonymous clients refused: the refusal is logged inside the connection's
    // span.
    let passwords = dir.path().join("passwords");
    std::fs::write(&passwords, "").unwrap();
    let (mut child, rx) = spawn_logging(
        berth()
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--log-format", "json", "--log-level", "info"])
            .env("BERTH_AUTH_ALLOW_ANONYMOUS", "false")
            .env("BERTH_AUTH_PASSWORD_FILE", &passwords),
        &dir.path().join("data"),
    );
    let starting = wait_for_line(&rx, |o| {
        o["message"]
            .as_str()
            .is_some_and(|m| m.ends_with(" starting"))
    });
    let addr = starting["mqtt"].as_str().unwrap().to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // CONNECT, MQTT 3.1.1, Clean Session, keep-alive 60, client id "span-check", no credentials.
    let mut connect = vec![
        0x10, 22, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 10,
    ];
    connect.extend_from_slice(b"span-check");
    stream.write_all(&connect).unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).unwrap();
    assert_eq!(connack[0], 0x20, "CONNACK");
    assert_ne!(connack[3], 0, "an anonymous client is refused");
    let refused = wait_for_line(&rx, |o| {
        o["message"].as_str() == Some("refused: authentication")
    });
    assert_eq!(refused["listener"], "tcp", "{refused}");
    assert_eq!(refused["client_id"], "span-check", "{refused}");
    child.kill().unwrap();
    let _ = child.wait();
}
