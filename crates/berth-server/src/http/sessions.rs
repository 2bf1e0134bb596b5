//! The admin API's operations on one session, answered by the node that owns it: any node
//! takes the request, and the cluster port relays it to the owner the registry names
//! (`ClusterPort::session_admin`, a typed gRPC call) or, when the owner is this node or this
//! server is not a cluster node, the broker thread answers (`BrokerHandle::admin`). Every wait
//! is bounded by [`ADMIN_WAIT`]: an owner that cannot be asked or does not answer is a 503
//! with the reason, never a hung request.
//!
//! - `GET /api/v1/sessions/{client_id}`: the registry's view (any node) plus what only the
//!   owner knows (queue depth and bytes, in-flight count, connected since, client address,
//!   oldest queued message's age), or `"owner_unreachable": true` and why;
//! - `POST /api/v1/sessions/{client_id}/kick`: close the client's connection (MQTT 5:
//!   DISCONNECT 0x98 Administrative action); the session stays;
//! - `DELETE /api/v1/sessions/{client_id}`: end the session everywhere, as an expiry does;
//! - `GET /api/v1/sessions/{client_id}/queue?limit=N`: the owner-only fields and the first `N`
//!   (default 100, at most 1000) queued messages;
//! - `DELETE /api/v1/sessions/{client_id}/queue`: empty the queue; the session, its
//!   subscriptions and its in-flight messages stay.
//!
//! 404: no such session (the registry does not list it, or its owner does not hold it). 503:
//! the owner could not be reached, or the session is moving between nodes (ask again).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_codec::MqttString;
use berth_core::{AdminAnswer, AdminError, AdminRequest, ClientId, SessionView};
use serde_json::{Value, json};

use super::HttpState;
use super::admin::error;
use super::registry::{self, Params};
use crate::cluster_port::{ADMIN_WAIT, AdminFailure};

/// What the port may take beyond its bound (`ADMIN_WAIT`, `ADMIN_COMMIT_WAIT`) before the
/// request is answered as unreachable anyway.
const PORT_SLACK: std::time::Duration = std::time::Duration::from_secs(1);

/// The owner's answer to `request` about `client`, wherever the owner is.
async fn ask(
    state: &HttpState,
    client: ClientId,
    request: AdminRequest,
) -> Result<AdminAnswer, AdminFailure> {
    ask_owner(
        state,
        ADMIN_WAIT,
        state.cluster.session_admin(client.clone(), request),
        |broker| async move { broker.admin_within(client, request, ADMIN_WAIT).await },
    )
    .await
}

/// The answer of a session's owner, wherever it is: relayed by the cluster (`relayed` gives
/// `None` on a node that is not in one), bounded by `wait` (the port bounds its own calls by
/// it) plus a little slack, or else this broker's own (`local`).
pub(super) async fn ask_owner<T, Local>(
    state: &HttpState,
    wait: std::time::Duration,
    relayed: impl std::future::Future<Output = Option<Result<T, AdminFailure>>>,
    local: impl FnOnce(crate::BrokerHandle) -> Local,
) -> Result<T, AdminFailure>
where
    Local: std::future::Future<Output = Result<T, AdminFailure>>,
{
    match tokio::time::timeout(wait + PORT_SLACK, relayed).await {
        Ok(Some(answer)) => return answer,
        Ok(None) => {}
        Err(_) => {
            return Err(AdminFailure::Unreachable {
                node: None,
                reason: format!("the cluster did not answer within {wait:?}"),
            });
        }
    }
    // Not a cluster node: the session, if any, is this broker's.
    match &state.broker {
        Some(broker) => local(broker.clone()).await,
        None => Err(AdminFailure::Unreachable {
            node: None,
            reason: "the broker is not running".to_owned(),
        }),
    }
}

/// The answer to a request that got none from the owner.
pub(super) fn failed(failure: AdminFailure) -> Response {
    match failure {
        AdminFailure::Refused(AdminError::NoSession) => {
            error(StatusCode::NOT_FOUND, "no such session")
        }
        AdminFailure::Refused(moving @ AdminError::Moving) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &moving.to_string())
        }
        AdminFailure::Refused(AdminError::Storage(why)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the owner could not read the session: {why}"),
        ),
        AdminFailure::Unreachable { node, reason } => {
            let message = match node {
                Some(node) => format!(
                    "the session's owner, node {}, is unreachable: {reason}",
                    node.0
                ),
                None => format!("the session's owner is unreachable: {reason}"),
            };
            let body = json!({
                "error": message,
                "owner": node.map(|node| node.0),
                "owner_unreachable": true,
            });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Asks the owner of `client_id`'s session.
async fn ask_about(
    state: &HttpState,
    client_id: &str,
    request: AdminRequest,
) -> Result<AdminAnswer, AdminFailure> {
    match MqttString::new(client_id) {
        Ok(client) => ask(state, ClientId::new(client), request).await,
        // Not a valid MQTT client id: no session can have it.
        Err(_) => Err(AdminFailure::Refused(AdminError::NoSession)),
    }
}

/// Asks the owner of `client_id`'s session; `Err`: the response to send instead.
async fn operate(
    state: &HttpState,
    client_id: &str,
    request: AdminRequest,
) -> Result<AdminAnswer, Response> {
    ask_about(state, client_id, request).await.map_err(failed)
}

/// An answer of another kind than the request's (a peer at odds with this node).
fn mismatched(answer: &AdminAnswer) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("the owner answered another request: {answer:?}"),
    )
}

/// The owner-only fields of a session.
fn owner_fields(view: &SessionView) -> serde_json::Map<String, Value> {
    let fields = json!({
        "queued_messages": view.queued,
        "queued_bytes": view.queued_bytes,
        "in_flight": view.in_flight,
        "connected_since_ms": view.connected_since.map(|at| at.0),
        "client_address": view.address.map(|address| address.to_string()),
        "oldest_message_age_ms": view.oldest_age_ms,
    });
    match fields {
        Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    }
}

pub(super) async fn detail(
    State(state): State<HttpState>,
    Path(client_id): Path<String>,
) -> Response {
    let cluster_node = registry::has_registry(&state);
    let mut detail = if cluster_node {
        match registry::session_detail(&state, &client_id) {
            Ok(Some(detail)) => detail,
            Ok(None) => return error(StatusCode::NOT_FOUND, "no such session"),
            Err(refused) => return refused.into_response(),
        }
    } else {
        json!({ "client_id": client_id })
    };
    match ask_about(&state, &client_id, AdminRequest::Inspect { limit: 0 }).await {
        Ok(AdminAnswer::Inspected(view)) => {
            if let Some(detail) = detail.as_object_mut() {
                detail.extend(owner_fields(&view));
            }
            detail["owner_unreachable"] = json!(false);
        }
        Ok(other) => return mismatched(&other),
        // Without a registry, the broker is the only place the session could be.
        Err(failure) if !cluster_node => return failed(failure),
        Err(failure) => {
            // The registry's view still stands; say why the owner's part is missing (an owner
            // that answered but no longer holds the session is reachable: it is moving).
            let unreachable = matches!(failure, AdminFailure::Unreachable { .. });
            detail["owner_unreachable"] = json!(unreachable);
            detail["owner_error"] = json!(failure.to_string());
        }
    }
    Json(detail).into_response()
}

pub(super) async fn kick(
    State(state): State<HttpState>,
    Path(client_id): Path<String>,
) -> Response {
    match operate(&state, &client_id, AdminRequest::Kick).await {
        Ok(AdminAnswer::Kicked(kicked)) => Json(json!({
            "client_id": client_id,
            "was_connected": kicked.was_connected,
            "session_kept": kicked.session_kept,
        }))
        .into_response(),
        Ok(other) => mismatched(&other),
        Err(response) => response,
    }
}

pub(super) async fn discard(
    State(state): State<HttpState>,
    Path(client_id): Path<String>,
) -> Response {
    match operate(&state, &client_id, AdminRequest::Discard).await {
        Ok(AdminAnswer::Discarded(discarded)) => Json(json!({
            "client_id": client_id,
            "discarded": true,
            "was_connected": discarded.was_connected,
            "queued_messages_dropped": discarded.messages,
        }))
        .into_response(),
        Ok(other) => mismatched(&other),
        Err(response) => response,
    }
}

pub(super) async fn queue(
    State(state): State<HttpState>,
    Path(client_id): Path<String>,
    Query(params): Params,
) -> Response {
    let limit = match registry::limit(&params) {
        Ok(limit) => limit,
        Err(refused) => return refused.into_response(),
    };
    match operate(&state, &client_id, AdminRequest::Inspect { limit }).await {
        Ok(AdminAnswer::Inspected(view)) => {
            let mut body = owner_fields(&view);
            body.insert("client_id".to_owned(), json!(client_id));
            let messages: Vec<Value> = view
                .messages
                .iter()
                .map(|queued| {
                    json!({
                        "topic": queued.topic.as_str(),
                        "qos": queued.qos.as_u8(),
                        "retain": queued.retain,
                        "bytes": queued.bytes,
                        "age_ms": queued.age_ms,
                        "expires_in_ms": queued.expires_in_ms,
                    })
                })
                .collect();
            body.insert("messages".to_owned(), Value::Array(messages));
            Json(Value::Object(body)).into_response()
        }
        Ok(other) => mismatched(&other),
        Err(response) => response,
    }
}

pub(super) async fn purge(
    State(state): State<HttpState>,
    Path(client_id): Path<String>,
) -> Response {
    match operate(&state, &client_id, AdminRequest::Purge).await {
        Ok(AdminAnswer::Purged(purged)) => Json(json!({
            "client_id": client_id,
            "purged_messages": purged.messages,
            "purged_bytes": purged.bytes,
        }))
        .into_response(),
        Ok(other) => mismatched(&other),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests;
