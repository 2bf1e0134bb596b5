//! `berth ctl …`: a node's admin API (`/api/v1` on its HTTP listener) from the command line.
//! Human output by default, the API's JSON with `--json`. The session, retained message,
//! publish and cluster commands added for the operator's changes are in [`ops`].

mod ops;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::cli::{CtlArgs, CtlCommand};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: &CtlArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    if let Some(call) = ops::call(&args.command) {
        let body = request(
            &args.at,
            call.method,
            &call.path,
            token.as_deref(),
            call.body.as_deref(),
        )
        .await?;
        if args.json {
            println!("{body}");
            return Ok(());
        }
        let value: Value = serde_json::from_str(&body)
            .with_context(|| format!("{} answered something that is not JSON: {body}", args.at))?;
        print!("{}", ops::render(&args.command, &value));
        return Ok(());
    }
    let (method, path) = match &args.command {
        CtlCommand::Status => ("GET", "/api/v1/node".to_owned()),
        CtlCommand::Drain => ("POST", "/api/v1/drain".to_owned()),
        CtlCommand::Sessions {
            prefix,
            node,
            limit,
        } => {
            let mut path = format!("/api/v1/sessions?limit={limit}");
            if let Some(prefix) = prefix {
                path.push_str(&format!("&prefix={}", percent_encode(prefix)));
            }
            if let Some(node) = node {
                path.push_str(&format!("&node={node}"));
            }
            ("GET", path)
        }
        CtlCommand::Kick { client_id } => ("POST", format!("{}/kick", session_path(client_id))),
        CtlCommand::Discard { client_id } => ("DELETE", session_path(client_id)),
        CtlCommand::Queue { client_id, limit } => (
            "GET",
            format!("{}/queue?limit={limit}", session_path(client_id)),
        ),
        CtlCommand::Purge { client_id } => ("DELETE", format!("{}/queue", session_path(client_id))),
        // Answered by `ops` above.
        CtlCommand::Subscribe { .. }
        | CtlCommand::Unsubscribe { .. }
        | CtlCommand::Publish { .. }
        | CtlCommand::Retained(_)
        | CtlCommand::Cluster { .. } => bail!("not an admin API call: {:?}", args.command),
    };
    let body = request(&args.at, method, &path, token.as_deref(), None).await?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let value: Value = serde_json::from_str(&body)
        .with_context(|| format!("{} answered something that is not JSON: {body}", args.at))?;
    match &args.command {
        CtlCommand::Status => print!("{}", describe(&value)),
        CtlCommand::Sessions { .. } => print!("{}", session_table(&value)),
        CtlCommand::Kick { client_id } => {
            if value["was_connected"] == Value::Bool(true) {
                print!("kicked {client_id}");
            } else {
                print!("{client_id} was not connected");
            }
            if value["session_kept"] == Value::Bool(true) {
                println!("; its session stays");
            } else {
                println!("; its session ended with the connection (session expiry 0)");
            }
        }
        CtlCommand::Discard { client_id } => println!(
            "discarded the session of {client_id}{} ({} queued messages dropped)",
            if value["was_connected"] == Value::Bool(true) {
                " and closed its connection"
            } else {
                ""
            },
            value["queued_messages_dropped"],
        ),
        CtlCommand::Queue { .. } => print!("{}", queue_table(&value)),
        CtlCommand::Purge { client_id } => println!(
            "purged {} messages ({} bytes) from the queue of {client_id}; its session and subscriptions stay",
            value["purged_messages"], value["purged_bytes"],
        ),
        CtlCommand::Drain => {
            if value["already_draining"] == Value::Bool(true) {
                println!("{} is already draining", args.at);
            } else {
                println!(
                    "{} is draining: it sends its clients to the other nodes, then stops",
                    args.at
                );
            }
        }
        CtlCommand::Subscribe { .. }
        | CtlCommand::Unsubscribe { .. }
        | CtlCommand::Publish { .. }
        | CtlCommand::Retained(_)
        | CtlCommand::Cluster { .. } => {}
    }
    Ok(())
}

/// `/api/v1/sessions/{client_id}`, the id percent-encoded (a client id may hold `/`, `?`, `#`).
fn session_path(client_id: &str) -> String {
    format!("/api/v1/sessions/{}", percent_encode(client_id))
}

/// Milliseconds as a short duration (`850ms`, `12.4s`, `3m05s`, `2h07m`), `-` for none.
pub(crate) fn duration(ms: &Value) -> String {
    let Some(ms) = ms.as_u64() else {
        return "-".to_owned();
    };
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// A session's queue: the owner's figures, then one line per message listed.
fn queue_table(queue: &Value) -> String {
    let connection = match queue["connected_since_ms"].as_u64() {
        Some(since) => {
            // The owner's clock against this machine's: close enough for "how long".
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            format!(
                "connected from {} for {}",
                queue["client_address"].as_str().unwrap_or("?"),
                duration(&Value::from(now.saturating_sub(since)))
            )
        }
        None => "offline".to_owned(),
    };
    let mut out = format!(
        "{}: {connection}\n  queued: {} messages, {} bytes; in flight: {}; oldest: {}\n",
        queue["client_id"].as_str().unwrap_or("?"),
        queue["queued_messages"],
        queue["queued_bytes"],
        queue["in_flight"],
        duration(&queue["oldest_message_age_ms"]),
    );
    let messages = queue["messages"].as_array().map_or(&[][..], Vec::as_slice);
    if messages.is_empty() {
        return out;
    }
    out.push_str(&format!(
        "{:<40} {:>3} {:>6} {:>10} {:>8} {:>10}\n",
        "TOPIC", "QOS", "RETAIN", "BYTES", "AGE", "EXPIRES IN"
    ));
    for message in messages {
        out.push_str(&format!(
            "{:<40} {:>3} {:>6} {:>10} {:>8} {:>10}\n",
            message["topic"].as_str().unwrap_or("?"),
            message["qos"],
            if message["retain"] == Value::Bool(true) {
                "yes"
            } else {
                "no"
            },
            message["bytes"],
            duration(&message["age_ms"]),
            duration(&message["expires_in_ms"]),
        ));
    }
    let listed = messages.len() as u64;
    if queue["queued_messages"]
        .as_u64()
        .is_some_and(|queued| queued > listed)
    {
        out.push_str(&format!("(the first {listed}; --limit lists more)\n"));
    }
    out
}

/// Query-string encoding of a value: unreserved characters as they are, the rest as `%XX`.
pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// One line per session, then where the next page starts.
fn session_table(page: &Value) -> String {
    let mut out = format!(
        "{:<32} {:>5} {:<9} {:<8} {:>13}\n",
        "CLIENT ID", "NODE", "STATE", "PROTOCOL", "SUBSCRIPTIONS"
    );
    for session in page["sessions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<32} {:>5} {:<9} {:<8} {:>13}\n",
            session["client_id"].as_str().unwrap_or("?"),
            session["node"],
            if session["connected"] == Value::Bool(true) {
                "connected"
            } else {
                "offline"
            },
            session["protocol"].as_str().unwrap_or("?"),
            session["subscriptions"],
        ));
    }
    if let Some(next) = page["next"].as_str() {
        out.push_str(&format!(
            "(more after {next}: the API's `after` parameter)\n"
        ));
    }
    out
}

/// The token is the file's first line (`admin.token_file`).
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        bail!("the admin token file {} is empty", path.display());
    }
    Ok(token)
}

fn describe(node: &Value) -> String {
    let text = |value: &Value| match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = format!(
        "node {}: {}{}\n",
        text(&node["node_id"]),
        if node["ready"] == Value::Bool(true) {
            "ready".to_owned()
        } else {
            format!("not ready ({})", text(&node["not_ready_because"]))
        },
        if node["draining"] == Value::Bool(true) {
            ", draining"
        } else {
            ""
        },
    );
    let cluster = &node["cluster"];
    if !cluster.is_null() {
        out.push_str(&format!(
            "  raft: leader {}{}, term {}, voters {}\n  log: last {}, committed {}, applied {}, snapshot {}\n",
            text(&cluster["leader"]),
            if cluster["is_leader"] == Value::Bool(true) { " (this node)" } else { "" },
            text(&cluster["term"]),
            text(&cluster["voters"]),
            text(&cluster["last_log_index"]),
            text(&cluster["committed_index"]),
            text(&cluster["applied_index"]),
            text(&cluster["snapshot_index"]),
        ));
        if let Some(lag) = cluster["follower_lag"].as_object() {
            for (follower, entries) in lag {
                out.push_str(&format!(
                    "  follower {follower}: {} entries behind\n",
                    text(entries)
                ));
            }
        }
    }
    out
}

/// One HTTP/1.1 request to `at` (host:port), with a JSON `body` if given; the body of a 2xx
/// answer, or an error with the API's message.
async fn request(
    at: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(at)
            .await
            .with_context(|| format!("cannot reach the HTTP listener at {at}"))?;
        let authorization =
            token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        let content_type = if body.is_some() {
            "Content-Type: application/json\r\n"
        } else {
            ""
        };
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {at}\r\n{authorization}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(String::from_utf8_lossy(&raw).into_owned())
    };
    let raw = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("{at} did not answer within {REQUEST_TIMEOUT:?}"))??;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{at} answered something that is not HTTP"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("{at} answered something that is not HTTP"))?;
    // axum answers with Content-Length (no chunked bodies for these small JSON answers).
    let body = body.trim().to_owned();
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or(body);
    bail!("{method} {path} at {at}: HTTP {status}: {message}")
}
