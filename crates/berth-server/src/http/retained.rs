//! One retained message, cluster-wide from any node:
//!
//! - `GET /api/v1/retained/{topic}`: the message as the replicated registry holds it (topic,
//!   QoS, payload — as UTF-8 text when it is, otherwise base64, with `payload_encoding` saying
//!   which — its properties, when it was published and when it expires);
//! - `DELETE /api/v1/retained/{topic}`: removes it on every node, the way a retained PUBLISH
//!   with an empty payload does — the registry's `ClearRetained`, committed through Raft and
//!   applied by every node's broker — except that nothing is delivered to subscribers (an
//!   empty retained PUBLISH is; use `POST /api/v1/publish` for that). The answer comes once it
//!   is committed and this node's broker has applied it.
//!
//! The topic is percent-encoded in the path (a `/` as `%2F`). 404: no retained message on
//! that topic (or this server keeps no registry: it is not a cluster node). A GET answers from
//! the registry as this node has applied it (as every registry read does: cheap, and it works
//! on a node cut off from the majority). A DELETE first catches up with everything the cluster
//! committed before the request (Raft's read index), so a message retained through another
//! node a moment ago is deleted, not answered 404 by a lagging follower; 503 when that cannot
//! be known (a node cut off from the majority, which could not commit the delete either).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_codec::{PayloadFormat, TopicName};
use berth_core::{Message, Registry};
use serde_json::{Value, json};

use super::HttpState;
use super::admin::{error, operator_failed};
use super::base64;
use super::registry::{Refused, millis, qos_number, with_registry};

/// `payload` and `payload_encoding` of `bytes`: text when it is UTF-8, base64 otherwise.
pub(super) fn payload_fields(bytes: &[u8]) -> (Value, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (json!(text), "utf8"),
        Err(_) => (json!(base64::encode(bytes)), "base64"),
    }
}

/// A retained message as the API shows it.
fn view(message: &Message) -> Value {
    let (payload, encoding) = payload_fields(&message.payload);
    let properties = &message.properties;
    json!({
        "topic": message.topic.as_str(),
        "qos": qos_number(message.qos),
        "payload": payload,
        "payload_encoding": encoding,
        "bytes": message.payload.len(),
        "payload_format": properties.payload_format_indicator.map(|format| match format {
            PayloadFormat::Utf8 => "utf8",
            PayloadFormat::Unspecified => "unspecified",
        }),
        "content_type": properties.content_type.as_ref().map(|t| t.as_str()),
        "response_topic": properties.response_topic.as_ref().map(TopicName::as_str),
        "correlation_data": properties.correlation_data.as_ref().map(|d| base64::encode(d)),
        "user_properties": properties
            .user_properties
            .iter()
            .map(|p| json!({ "key": p.key.as_str(), "value": p.value.as_str() }))
            .collect::<Vec<_>>(),
        "published_at_ms": millis(message.received_at),
        "expires_at_ms": millis(message.expires_at),
    })
}

/// `topic` as a topic name; a wildcard or an empty one cannot name a retained message.
fn topic_of(topic: &str) -> Result<TopicName, Refused> {
    TopicName::parse(topic).map_err(|why| {
        Refused(
            StatusCode::BAD_REQUEST,
            format!("topic: not a topic name ({why})"),
        )
    })
}

/// `read` of this node's registry once it has applied everything the cluster committed before
/// the request (`sync_registry`, Raft's read index): a message retained through another node
/// a moment ago is seen, not missed by a lagging follower. A node cut off from the majority
/// cannot know that and answers 503.
async fn read_synced<T>(
    state: &HttpState,
    read: impl FnOnce(&Registry) -> Option<T>,
) -> Result<Option<T>, Response> {
    if let Some(Err(failure)) = state.cluster.sync_registry().await {
        return Err(operator_failed(failure));
    }
    with_registry(state, read).map_err(IntoResponse::into_response)
}

fn absent() -> Response {
    error(StatusCode::NOT_FOUND, "no retained message on this topic")
}

pub(super) async fn get_one(State(state): State<HttpState>, Path(topic): Path<String>) -> Response {
    let topic = match topic_of(&topic) {
        Ok(topic) => topic,
        Err(refused) => return refused.into_response(),
    };
    match with_registry(&state, |registry| registry.retained.get(&topic).map(view)) {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => absent(),
        Err(refused) => refused.into_response(),
    }
}

pub(super) async fn delete(State(state): State<HttpState>, Path(topic): Path<String>) -> Response {
    let topic = match topic_of(&topic) {
        Ok(topic) => topic,
        Err(refused) => return refused.into_response(),
    };
    let held = match read_synced(&state, |registry| {
        registry.retained.get(&topic).map(|m| m.payload.len())
    })
    .await
    {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return absent(),
        Err(refused) => return refused,
    };
    match state.cluster.clear_retained(topic.clone()).await {
        Some(Ok(())) => Json(json!({
            "topic": topic.as_str(),
            "deleted": true,
            "bytes": held,
        }))
        .into_response(),
        Some(Err(failure)) => operator_failed(failure),
        // `with_registry` answered: this is a cluster node, whose port clears it.
        None => Refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "this node keeps a registry but its cluster port cannot clear it".to_owned(),
        )
        .into_response(),
    }
}
