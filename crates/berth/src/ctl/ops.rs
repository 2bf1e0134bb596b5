//! `berth ctl subscribe|unsubscribe|publish|retained|cluster`: the operator's changes over the
//! admin API — a session's subscriptions, a message published as the operator, retained
//! messages, the cluster's membership — and their human output.

use serde_json::{Value, json};

use super::{duration, percent_encode};
use crate::cli::{CtlClusterCommand, CtlCommand, CtlRetainedCommand};

/// One admin API request.
#[derive(Debug)]
pub(super) struct Call {
    pub method: &'static str,
    pub path: String,
    /// A JSON body.
    pub body: Option<String>,
}

fn get(path: String) -> Call {
    Call {
        method: "GET",
        path,
        body: None,
    }
}

fn subscription_path(client_id: &str, filter: &str) -> String {
    format!(
        "/api/v1/sessions/{}/subscriptions/{}",
        percent_encode(client_id),
        percent_encode(filter)
    )
}

fn retained_path(topic: &str) -> String {
    format!("/api/v1/retained/{}", percent_encode(topic))
}

/// The request of `command`; `None`: not one of these commands.
pub(super) fn call(command: &CtlCommand) -> Option<Call> {
    Some(match command {
        CtlCommand::Subscribe {
            client_id,
            filter,
            qos,
            no_local,
            retain_as_published,
            retain_handling,
        } => Call {
            method: "PUT",
            path: subscription_path(client_id, filter),
            body: Some(
                json!({
                    "qos": qos,
                    "no_local": no_local,
                    "retain_as_published": retain_as_published,
                    "retain_handling": retain_handling,
                })
                .to_string(),
            ),
        },
        CtlCommand::Unsubscribe { client_id, filter } => Call {
            method: "DELETE",
            path: subscription_path(client_id, filter),
            body: None,
        },
        CtlCommand::Publish {
            topic,
            message,
            base64,
            qos,
            retain,
            expiry,
            content_type,
            user_properties,
        } => {
            let (payload, encoding) = match (message, base64) {
                (_, Some(coded)) => (coded.clone(), "base64"),
                (Some(text), None) => (text.clone(), "utf8"),
                (None, None) => (String::new(), "utf8"),
            };
            let mut body = json!({
                "topic": topic,
                "payload": payload,
                "payload_encoding": encoding,
                "qos": qos,
                "retain": retain,
            });
            if let Some(expiry) = expiry {
                body["message_expiry_secs"] = json!(expiry);
            }
            if let Some(content_type) = content_type {
                body["content_type"] = json!(content_type);
            }
            if !user_properties.is_empty() {
                body["user_properties"] = user_properties
                    .iter()
                    .map(|(key, value)| json!({ "key": key, "value": value }))
                    .collect();
            }
            Call {
                method: "POST",
                path: "/api/v1/publish".to_owned(),
                body: Some(body.to_string()),
            }
        }
        CtlCommand::Retained(CtlRetainedCommand::List { prefix, limit }) => {
            let mut path = format!("/api/v1/retained?limit={limit}");
            if let Some(prefix) = prefix {
                path.push_str(&format!("&prefix={}", percent_encode(prefix)));
            }
            get(path)
        }
        CtlCommand::Retained(CtlRetainedCommand::Get { topic }) => get(retained_path(topic)),
        CtlCommand::Retained(CtlRetainedCommand::Delete { topic }) => Call {
            method: "DELETE",
            path: retained_path(topic),
            body: None,
        },
        CtlCommand::Cluster { command: None } => get("/api/v1/cluster".to_owned()),
        CtlCommand::Cluster {
            command: Some(CtlClusterCommand::Add { node, addr }),
        } => Call {
            method: "POST",
            path: "/api/v1/cluster/members".to_owned(),
            body: Some(json!({ "id": node, "address": addr }).to_string()),
        },
        CtlCommand::Cluster {
            command: Some(CtlClusterCommand::Remove { node }),
        } => Call {
            method: "DELETE",
            path: format!("/api/v1/cluster/members/{node}"),
            body: None,
        },
        _ => return None,
    })
}

/// A JSON value as a table cell: `-` for null, strings without quotes.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn yes(value: &Value) -> &'static str {
    if *value == Value::Bool(true) {
        "yes"
    } else {
        "no"
    }
}

/// The human output of `command`'s answer `value`.
pub(super) fn render(command: &CtlCommand, value: &Value) -> String {
    match command {
        CtlCommand::Subscribe {
            client_id, filter, ..
        } => format!(
            "subscribed {client_id} to {filter} at QoS {}{}\n",
            text(&value["qos"]),
            if value["replaced"] == Value::Bool(true) {
                " (its earlier options replaced)"
            } else {
                ""
            }
        ),
        CtlCommand::Unsubscribe { client_id, filter } => {
            format!("unsubscribed {client_id} from {filter}\n")
        }
        CtlCommand::Publish { topic, qos, .. } => {
            let mut out = format!(
                "published to {topic} at QoS {qos}{}: {} matching sessions",
                if value["retain"] == Value::Bool(true) {
                    ", retained"
                } else {
                    ""
                },
                text(&value["matched"]),
            );
            if *qos > 0 {
                out.push_str(", stored for every one of them");
            }
            if value["refused_by_full_queues"]
                .as_u64()
                .is_some_and(|n| n > 0)
            {
                out.push_str(&format!(
                    " ({} full queues refused it)",
                    value["refused_by_full_queues"]
                ));
            }
            out.push('\n');
            out
        }
        CtlCommand::Retained(CtlRetainedCommand::List { .. }) => retained_table(value),
        CtlCommand::Retained(CtlRetainedCommand::Get { .. }) => retained_message(value),
        CtlCommand::Retained(CtlRetainedCommand::Delete { topic }) => format!(
            "deleted the retained message of {topic} ({} bytes) on every node\n",
            text(&value["bytes"])
        ),
        CtlCommand::Cluster { .. } => cluster_table(value),
        _ => format!("{value}\n"),
    }
}

fn retained_table(page: &Value) -> String {
    let mut out = format!(
        "{:<40} {:>3} {:>10} {:>13}\n",
        "TOPIC", "QOS", "BYTES", "EXPIRES AT MS"
    );
    for message in page["retained"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<40} {:>3} {:>10} {:>13}\n",
            text(&message["topic"]),
            text(&message["qos"]),
            text(&message["bytes"]),
            text(&message["expires_at_ms"]),
        ));
    }
    if let Some(next) = page["next"].as_str() {
        out.push_str(&format!(
            "(more after {next}: the API's `after` parameter)\n"
        ));
    }
    out
}

fn retained_message(message: &Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let expires = match message["expires_at_ms"].as_u64() {
        Some(at) => format!("in {}", duration(&Value::from(at.saturating_sub(now)))),
        None => "never".to_owned(),
    };
    let mut out = format!(
        "{}: QoS {}, {} bytes ({}), expires {expires}\n",
        text(&message["topic"]),
        text(&message["qos"]),
        text(&message["bytes"]),
        text(&message["payload_encoding"]),
    );
    for (name, field) in [
        ("content type", "content_type"),
        ("payload format", "payload_format"),
        ("response topic", "response_topic"),
        ("correlation data (base64)", "correlation_data"),
    ] {
        if !message[field].is_null() {
            out.push_str(&format!("  {name}: {}\n", text(&message[field])));
        }
    }
    for property in message["user_properties"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {} = {}\n",
            text(&property["key"]),
            text(&property["value"])
        ));
    }
    out.push_str(&text(&message["payload"]));
    out.push('\n');
    out
}

fn cluster_table(cluster: &Value) -> String {
    let mut out = format!(
        "leader {}, term {}{}; node {}: committed {}, applied {}\n",
        text(&cluster["leader"]),
        text(&cluster["term"]),
        if cluster["joint"] == Value::Bool(true) {
            " (a membership change is under way)"
        } else {
            ""
        },
        text(&cluster["node_id"]),
        text(&cluster["committed_index"]),
        text(&cluster["applied_index"]),
    );
    out.push_str(&format!(
        "{:>4} {:<24} {:<7} {:<6} {:<9} {:>9} {:>6}\n",
        "ID", "ADDRESS", "ROLE", "ONLINE", "STATE", "APPLIED", "LAG"
    ));
    for member in cluster["members"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:>4} {:<24} {:<7} {:<6} {:<9} {:>9} {:>6}\n",
            text(&member["id"]),
            text(&member["address"]),
            if member["voter"] == Value::Bool(true) {
                "voter"
            } else {
                "learner"
            },
            yes(&member["online"]),
            text(&member["state"]),
            text(&member["applied_index"]),
            text(&member["lag"]),
        ));
    }
    out
}
