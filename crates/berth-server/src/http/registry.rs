//! The admin API's reads of the replicated registry: every node holds the whole registry (each
//! session's owner, state, subscriptions and will; every retained message), so these answers
//! are cluster-wide from any node, as of what that node has applied.
//!
//! - `GET /api/v1/sessions?prefix=&node=&connected=&protocol=&after=&limit=`: sessions in client
//!   id order, `limit` (default 100, at most 1000) at a time; `next` is the `after` of the next
//!   page.
//! - `GET /api/v1/sessions/{client_id}`: one session, its subscriptions and will (with what
//!   only its owner knows added by [`super::sessions`]).
//! - `GET /api/v1/retained?prefix=&after=&limit=`: retained messages in topic order.

use std::collections::HashMap;
use std::ops::Bound;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_codec::{ProtocolVersion, QoS};
use berth_core::registry::SessionEntry;
use berth_core::{ClientId, Registry, SessionExpiry, UnixMillis};
use serde_json::{Value, json};

use super::HttpState;
use super::admin::error;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub(super) type Params = Query<HashMap<String, String>>;

/// A request refused: its status and message (answered as the API's JSON error).
#[derive(Debug)]
pub(super) struct Refused(pub(super) StatusCode, pub(super) String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

/// Whether this server keeps the replicated registry (a cluster node).
pub(super) fn has_registry(state: &HttpState) -> bool {
    state.cluster.with_registry(&mut |_| {})
}

/// Reads the registry, or answers that this server keeps none (not a cluster node).
pub(super) fn with_registry<T>(
    state: &HttpState,
    read: impl FnOnce(&Registry) -> T,
) -> Result<T, Refused> {
    let mut read = Some(read);
    let mut out = None;
    let held = state.cluster.with_registry(&mut |registry| {
        if let Some(read) = read.take() {
            out = Some(read(registry));
        }
    });
    match out {
        Some(out) if held => Ok(out),
        _ => Err(Refused(
            StatusCode::NOT_FOUND,
            "this server keeps no registry (it is not a cluster node)".to_owned(),
        )),
    }
}

/// The `limit` parameter: 1 to 1000, 100 if absent.
pub(super) fn limit(params: &HashMap<String, String>) -> Result<usize, Refused> {
    match params.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(Refused(
                StatusCode::BAD_REQUEST,
                format!("limit must be an integer from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

/// A session filter from the query; `Err`: a parameter with a bad value, named.
struct SessionFilter {
    prefix: String,
    node: Option<u64>,
    connected: Option<bool>,
    protocol: Option<ProtocolVersion>,
}

impl SessionFilter {
    fn parse(params: &HashMap<String, String>) -> Result<SessionFilter, Refused> {
        let bad = |name: &str, expected: &str| {
            Refused(
                StatusCode::BAD_REQUEST,
                format!("{name} must be {expected}"),
            )
        };
        let node = match params.get("node") {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| bad("node", "a node id"))?),
        };
        let connected = match params.get("connected").map(String::as_str) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(bad("connected", "true or false")),
        };
        let protocol = match params.get("protocol").map(String::as_str) {
            None => None,
            Some("3.1") => Some(ProtocolVersion::V3_1),
            Some("3.1.1") => Some(ProtocolVersion::V3_1_1),
            Some("5" | "5.0") => Some(ProtocolVersion::V5),
            Some(_) => return Err(bad("protocol", "3.1, 3.1.1 or 5.0")),
        };
        Ok(SessionFilter {
            prefix: params.get("prefix").cloned().unwrap_or_default(),
            node,
            connected,
            protocol,
        })
    }

    fn matches(&self, client: &ClientId, entry: &SessionEntry) -> bool {
        client.as_str().starts_with(&self.prefix)
            && self.node.is_none_or(|node| entry.owner.0 == node)
            && self
                .connected
                .is_none_or(|connected| connected != entry.detached)
            && self.protocol.is_none_or(|p| p == entry.protocol)
    }
}

fn protocol_name(protocol: ProtocolVersion) -> &'static str {
    match protocol {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}

pub(super) fn qos_number(qos: QoS) -> u8 {
    qos as u8
}

fn expiry(expiry: SessionExpiry) -> Value {
    match expiry {
        SessionExpiry::After(secs) => json!(secs),
        SessionExpiry::Never => json!("never"),
    }
}

pub(super) fn millis(at: Option<UnixMillis>) -> Value {
    at.map_or(Value::Null, |at| json!(at.0))
}

fn summary(client: &ClientId, entry: &SessionEntry) -> Value {
    json!({
        "client_id": client.as_str(),
        "node": entry.owner.0,
        "connected": !entry.detached,
        "protocol": protocol_name(entry.protocol),
        "session_expiry": expiry(entry.expiry),
        "expires_at_ms": millis(entry.expires_at),
        "subscriptions": entry.subscriptions.len(),
        "will": entry.will.is_some(),
        "epoch": entry.epoch.0,
    })
}

pub(super) async fn sessions(State(state): State<HttpState>, Query(params): Params) -> Response {
    let (filter, limit) = match (SessionFilter::parse(&params), limit(&params)) {
        (Ok(filter), Ok(limit)) => (filter, limit),
        (Err(refused), _) | (_, Err(refused)) => return refused.into_response(),
    };
    let after = params.get("after").cloned();
    let page = with_registry(&state, |registry| {
        let start = match &after {
            Some(after) => Bound::Excluded(after.as_str()),
            None => Bound::Unbounded,
        };
        let mut found: Vec<Value> = Vec::new();
        let mut more = false;
        for (client, entry) in registry
            .sessions
            .iter()
            .filter(|(client, _)| in_range(client.as_str(), start))
        {
            if !filter.matches(client, entry) {
                continue;
            }
            if found.len() == limit {
                more = true;
                break;
            }
            found.push(summary(client, entry));
        }
        let next = more
            .then(|| {
                found
                    .last()
                    .and_then(|s| s["client_id"].as_str().map(str::to_owned))
            })
            .flatten();
        json!({ "sessions": found, "next": next })
    });
    match page {
        Ok(page) => Json(page).into_response(),
        Err(refused) => refused.into_response(),
    }
}

fn in_range(id: &str, start: Bound<&str>) -> bool {
    match start {
        Bound::Excluded(after) => id > after,
        _ => true,
    }
}

/// One session as the registry holds it (`None`: the registry does not list it), with its
/// subscriptions and will.
pub(super) fn session_detail(state: &HttpState, client_id: &str) -> Result<Option<Value>, Refused> {
    with_registry(state, |registry| {
        registry
            .sessions
            .iter()
            .find(|(client, _)| client.as_str() == client_id)
            .map(|(client, entry)| {
                let mut detail = summary(client, entry);
                detail["moved_from"] = json!(entry.moved_from.map(|copy| copy.node.0));
                detail["subscription_list"] = entry
                    .subscriptions
                    .iter()
                    .map(|(filter, record)| {
                        json!({
                            "filter": filter.as_str(),
                            "qos": qos_number(record.options.qos),
                            "no_local": record.options.no_local,
                            "retain_as_published": record.options.retain_as_published,
                            "retain_handling": format!("{:?}", record.options.retain_handling),
                        })
                    })
                    .collect();
                detail["will_message"] = entry.will.as_ref().map_or(Value::Null, |will| {
                    json!({
                        "topic": will.message.topic.as_str(),
                        "qos": qos_number(will.message.qos),
                        "retain": will.message.retain,
                        "bytes": will.message.payload.len(),
                        "delay_secs": will.delay_secs,
                        "due_at_ms": millis(entry.will_due_at),
                    })
                });
                detail
            })
    })
}

pub(super) async fn retained(State(state): State<HttpState>, Query(params): Params) -> Response {
    let limit = match limit(&params) {
        Ok(limit) => limit,
        Err(refused) => return refused.into_response(),
    };
    let prefix = params.get("prefix").cloned().unwrap_or_default();
    let after = params.get("after").cloned();
    let page = with_registry(&state, |registry| {
        let mut found: Vec<Value> = Vec::new();
        let mut more = false;
        for (topic, message) in registry.retained.iter().filter(|(topic, _)| {
            topic.as_str().starts_with(&prefix)
                && after.as_deref().is_none_or(|after| topic.as_str() > after)
        }) {
            if found.len() == limit {
                more = true;
                break;
            }
            found.push(json!({
                "topic": topic.as_str(),
                "qos": qos_number(message.qos),
                "bytes": message.payload.len(),
                "expires_at_ms": millis(message.expires_at),
            }));
        }
        let next = more
            .then(|| {
                found
                    .last()
                    .and_then(|m| m["topic"].as_str().map(str::to_owned))
            })
            .flatten();
        json!({ "retained": found, "next": next })
    });
    match page {
        Ok(page) => Json(page).into_response(),
        Err(refused) => refused.into_response(),
    }
}
