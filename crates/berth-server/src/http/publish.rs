//! `POST /api/v1/publish`: the operator publishes a message, which goes through the broker as
//! a client's PUBLISH does (`Broker::operator_publish`): a retained one is committed to the
//! registry first (as a client's retained PUBLISH is, `ClusterPort::operator_retain`), then it
//! is routed — delivered to this node's sessions (queued for offline ones), forwarded to the
//! owners of other nodes' sessions, retained.
//!
//! ```json
//! {"topic": "cmd/dev-1", "payload": "reboot", "payload_encoding": "utf8", "qos": 1,
//!  "retain": false, "message_expiry_secs": 60, "content_type": "text/plain",
//!  "user_properties": [{"key": "by", "value": "ops"}],
//!  "response_topic": "replies/ops", "correlation_data": "AQI="}
//! ```
//!
//! Only `topic` is required (`payload` defaults to empty, `payload_encoding` to `utf8`
//! — `base64` for bytes —, `qos` to 0, `retain` to false; `correlation_data` is base64). A bad
//! or unknown field is a 400 that names it, as is a message a client could not publish either:
//! a wildcard in the topic, a topic over `limits.max_topic_length` / `max_topic_levels`, a
//! message over `limits.max_packet_size`. The ACL does not apply: the operator is not a client
//! (each subscriber's own rules still decide what it receives).
//!
//! The answer, 200 with `matched` (sessions it matched, cluster-wide), comes when a QoS 1 PUBACK
//! would: at QoS 1/2 once it is stored for every matched session, here and on every owner node
//! it was forwarded to (or kept here for an owner that cannot be reached, as hinted handoff
//! does for clients); at QoS 0 once routed. 503 when an owner did not store it (it answered
//! neither the forward nor a retry), when the registry did not commit a retained message, or
//! when no answer came within the bound — in the last two cases it may still be delivered.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_codec::{MqttString, PublishProperties, QoS, TopicName, UserProperty};
use berth_core::broker::OperatorPublish;
use serde_json::{Value, json};

use super::HttpState;
use super::admin::{error, operator_failed};
use super::base64;
use super::body::{Fields, field_error};
use super::registry::Refused;
use crate::ADMIN_COMMIT_WAIT;
use crate::broker_handle::PublishOutcome;

/// How long the answer waits for the broker: longer than a forward's own deadline (10 s), so
/// that an owner that fails to store the message is reported as such rather than as a wait
/// that ran out.
const PUBLISH_WAIT: Duration = Duration::from_secs(15);

const FIELDS: &[&str] = &[
    "topic",
    "payload",
    "payload_encoding",
    "qos",
    "retain",
    "message_expiry_secs",
    "content_type",
    "user_properties",
    "response_topic",
    "correlation_data",
];

/// A string field as an MQTT string.
fn mqtt_string(name: &str, text: &str) -> Result<MqttString, Refused> {
    MqttString::new(text).map_err(|why| field_error(name, why))
}

fn user_property(key: &str, value: &Value) -> Result<UserProperty, Refused> {
    let Value::String(value) = value else {
        return Err(field_error(
            "user_properties",
            format!("the value of {key:?} must be a string"),
        ));
    };
    Ok(UserProperty::new(
        mqtt_string("user_properties", key)?,
        mqtt_string("user_properties", value)?,
    ))
}

/// `[{"key": k, "value": v}, ...]` (order and repeats kept), or `{"k": "v", ...}`.
fn user_properties(value: Option<&Value>) -> Result<Vec<UserProperty>, Refused> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Object(pairs)) => pairs
            .iter()
            .map(|(key, value)| user_property(key, value))
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match (item.get("key"), item.get("value")) {
                (Some(Value::String(key)), Some(value)) => user_property(key, value),
                _ => Err(field_error(
                    "user_properties",
                    "each item must be {\"key\": string, \"value\": string}",
                )),
            })
            .collect(),
        Some(_) => Err(field_error(
            "user_properties",
            "must be an array of {\"key\", \"value\"} objects, or an object",
        )),
    }
}

/// The request's message; `Err`: a 400 naming the field at fault.
pub(super) fn parse(body: &Bytes) -> Result<OperatorPublish, Refused> {
    let fields = Fields::parse(body, FIELDS)?;
    let topic = TopicName::parse(fields.required_string("topic")?)
        .map_err(|why| field_error("topic", why))?;
    let text = fields.string("payload")?.unwrap_or("");
    let payload = match fields.string("payload_encoding")?.unwrap_or("utf8") {
        "utf8" => Bytes::copy_from_slice(text.as_bytes()),
        "base64" => match base64::decode(text) {
            Some(bytes) => Bytes::from(bytes),
            None => return Err(field_error("payload", "not valid base64")),
        },
        _ => {
            return Err(field_error(
                "payload_encoding",
                "must be \"utf8\" or \"base64\"",
            ));
        }
    };
    let qos = fields
        .integer("qos", 0, 2)?
        .and_then(|n| u8::try_from(n).ok())
        .and_then(QoS::from_u8)
        .unwrap_or(QoS::AtMostOnce);
    let message_expiry_interval = fields
        .integer("message_expiry_secs", 1, u64::from(u32::MAX))?
        .and_then(|secs| u32::try_from(secs).ok());
    let content_type = match fields.string("content_type")? {
        Some(text) => Some(mqtt_string("content_type", text)?),
        None => None,
    };
    let response_topic = match fields.string("response_topic")? {
        Some(text) => {
            Some(TopicName::parse(text).map_err(|why| field_error("response_topic", why))?)
        }
        None => None,
    };
    let correlation_data = match fields.string("correlation_data")? {
        Some(text) => match base64::decode(text) {
            Some(bytes) => Some(Bytes::from(bytes)),
            None => return Err(field_error("correlation_data", "not valid base64")),
        },
        None => None,
    };
    Ok(OperatorPublish {
        topic,
        payload,
        qos,
        retain: fields.boolean("retain")?.unwrap_or(false),
        properties: PublishProperties {
            message_expiry_interval,
            content_type,
            response_topic,
            correlation_data,
            user_properties: user_properties(fields.value("user_properties"))?,
            ..PublishProperties::default()
        },
    })
}

pub(super) async fn publish(State(state): State<HttpState>, body: Bytes) -> Response {
    let request = match parse(&body) {
        Ok(request) => request,
        Err(refused) => return refused.into_response(),
    };
    let Some(broker) = state.broker.clone() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the broker is not running");
    };
    // A retained message: the registry first, as for a client's retained PUBLISH.
    let committed = tokio::time::timeout(
        ADMIN_COMMIT_WAIT,
        state
            .cluster
            .operator_retain(&request, crate::runtime::now()),
    )
    .await;
    match committed {
        Ok(None | Some(Ok(()))) => {}
        Ok(Some(Err(failure))) => return operator_failed(failure),
        Err(_) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "the retained message did not commit within {ADMIN_COMMIT_WAIT:?}; it may still be retained"
                ),
            );
        }
    }
    let (topic, qos, retain) = (request.topic.clone(), request.qos, request.retain);
    let answer = match tokio::time::timeout(PUBLISH_WAIT, broker.operator_publish(request)).await {
        Ok(Some(answer)) => answer,
        Ok(None) => return error(StatusCode::SERVICE_UNAVAILABLE, "the broker is not running"),
        Err(_) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not confirmed stored within {PUBLISH_WAIT:?}; it may still be delivered"),
            );
        }
    };
    let outcome = match answer {
        Ok(outcome) => outcome,
        Err(refusal) => return error(StatusCode::BAD_REQUEST, &refusal.to_string()),
    };
    let (status, stored, published) = match outcome {
        PublishOutcome::Stored(published) => (StatusCode::OK, true, published),
        PublishOutcome::NotStored(published) => (StatusCode::SERVICE_UNAVAILABLE, false, published),
    };
    let mut body = json!({
        "topic": topic.as_str(),
        "qos": qos.as_u8(),
        "retain": retain,
        "matched": published.matched,
        "refused_by_full_queues": published.refused_by_full_queues,
        "stored": stored,
    });
    if !stored {
        body["error"] = json!(
            "an owner node of matched sessions did not store it (it answered neither the forward nor its retry): some subscribers may not get it"
        );
    }
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use berth_codec::PayloadFormat;

    use super::*;

    fn parse_text(text: &'static str) -> Result<OperatorPublish, Refused> {
        parse(&Bytes::from_static(text.as_bytes()))
    }

    fn refused_field(text: &'static str) -> String {
        let refused = parse_text(text).unwrap_err();
        assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{text}");
        refused.1
    }

    #[test]
    fn a_full_request_is_read() {
        let request = parse_text(
            r#"{"topic": "cmd/dev", "payload": "AAEC", "payload_encoding": "base64",
                "qos": 2, "retain": true, "message_expiry_secs": 60,
                "content_type": "application/octet-stream",
                "user_properties": [{"key": "by", "value": "ops"}, {"key": "by", "value": "me"}],
                "response_topic": "replies/ops", "correlation_data": "AQI="}"#,
        )
        .unwrap();
        assert_eq!(request.topic.as_str(), "cmd/dev");
        assert_eq!(&request.payload[..], [0, 1, 2]);
        assert_eq!(request.qos, QoS::ExactlyOnce);
        assert!(request.retain);
        let properties = &request.properties;
        assert_eq!(properties.message_expiry_interval, Some(60));
        assert_eq!(properties.user_properties.len(), 2);
        assert_eq!(properties.user_properties[1].value.as_str(), "me");
        assert_eq!(
            properties.response_topic.as_ref().unwrap().as_str(),
            "replies/ops"
        );
        assert_eq!(&properties.correlation_data.as_ref().unwrap()[..], [1, 2]);
        assert_eq!(properties.payload_format_indicator, None::<PayloadFormat>);

        let minimal = parse_text(r#"{"topic": "a"}"#).unwrap();
        assert_eq!((minimal.qos, minimal.retain), (QoS::AtMostOnce, false));
        assert!(minimal.payload.is_empty());
        let text =
            parse_text(r#"{"topic": "a", "payload": "héllo", "user_properties": {"k": "v"}}"#)
                .unwrap();
        assert_eq!(&text.payload[..], "héllo".as_bytes());
        assert_eq!(text.properties.user_properties[0].key.as_str(), "k");
    }

    #[test]
    fn a_bad_field_is_named() {
        for (body, field) in [
            (r#"{"payload": "x"}"#, "topic"),
            (r#"{"topic": "a/+"}"#, "topic"),
            (r#"{"topic": "a/#"}"#, "topic"),
            (r#"{"topic": ""}"#, "topic"),
            (r#"{"topic": "a", "qos": 3}"#, "qos"),
            (r#"{"topic": "a", "qos": "1"}"#, "qos"),
            (r#"{"topic": "a", "retain": 1}"#, "retain"),
            (
                r#"{"topic": "a", "payload_encoding": "hex"}"#,
                "payload_encoding",
            ),
            (
                r#"{"topic": "a", "payload": "!!", "payload_encoding": "base64"}"#,
                "payload",
            ),
            (
                r#"{"topic": "a", "message_expiry_secs": 0}"#,
                "message_expiry_secs",
            ),
            (
                r#"{"topic": "a", "user_properties": [{"key": "k"}]}"#,
                "user_properties",
            ),
            (r#"{"topic": "a", "user_properties": 3}"#, "user_properties"),
            (
                r#"{"topic": "a", "response_topic": "r/#"}"#,
                "response_topic",
            ),
            (r#"{"topic": "a", "colour": "red"}"#, "colour"),
        ] {
            let message = refused_field(body);
            assert!(
                message.starts_with(&format!("{field}: ")),
                "{body}: {message}"
            );
        }
    }
}
