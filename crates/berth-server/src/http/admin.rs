//! The admin API under `/api/v1` (JSON). Every request needs `Authorization: Bearer <token>`
//! when the node has a token (`admin.token_file`); without one, only clients on the loopback
//! address are answered, so that an unconfigured node never exposes it.
//!
//! - `GET /api/v1/node`: this node's readiness, drain state and Raft view.
//! - `POST /api/v1/drain`: drain this node and stop (as SIGTERM does; `berth ctl drain`).
//! - `GET /api/v1/sessions`, `/api/v1/sessions/{client_id}`, `/api/v1/retained`: the
//!   replicated registry, cluster-wide from any node ([`super::registry`]).
//! - `POST /api/v1/sessions/{client_id}/kick`, `DELETE /api/v1/sessions/{client_id}`,
//!   `GET|DELETE /api/v1/sessions/{client_id}/queue`: one session, acted on by its owner
//!   ([`super::sessions`]).
//! - `PUT|DELETE /api/v1/sessions/{client_id}/subscriptions/{filter}`: one subscription of a
//!   session, online or offline, committed to the registry and held by its owner
//!   ([`super::subscriptions`]).
//! - `GET|DELETE /api/v1/retained/{topic}`: one retained message; a delete clears it on every
//!   node ([`super::retained`]).
//! - `POST /api/v1/publish`: a message published by the operator, routed as a client's
//!   ([`super::publish`]).
//! - `GET /api/v1/cluster`, `POST /api/v1/cluster/members`, `DELETE
//!   /api/v1/cluster/members/{id}`: membership, through the leader ([`super::cluster`]).
//! - `GET /api/v1/openapi.yaml`: the API described (`docs/openapi.yaml`), answered without a
//!   token: it holds no data of the node, and tools fetch it to build their calls.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::HttpState;
use crate::cluster_port::OperatorFailure;

/// The API's description, as kept in the repository.
pub(super) const OPENAPI: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/openapi.yaml"
));

/// Every route that needs the token: method, path under `/api/v1`, handler. The router is built
/// from this list, and a test holds `docs/openapi.yaml` to it.
pub(super) fn endpoints() -> Vec<(&'static str, &'static str, MethodRouter<HttpState>)> {
    use super::{cluster, publish, registry, retained, sessions, subscriptions};
    vec![
        ("GET", "/node", get(node)),
        ("POST", "/drain", post(drain)),
        ("GET", "/sessions", get(registry::sessions)),
        ("GET", "/sessions/{client_id}", get(sessions::detail)),
        ("DELETE", "/sessions/{client_id}", delete(sessions::discard)),
        ("POST", "/sessions/{client_id}/kick", post(sessions::kick)),
        ("GET", "/sessions/{client_id}/queue", get(sessions::queue)),
        (
            "DELETE",
            "/sessions/{client_id}/queue",
            delete(sessions::purge),
        ),
        (
            "PUT",
            "/sessions/{client_id}/subscriptions/{filter}",
            put(subscriptions::subscribe),
        ),
        (
            "DELETE",
            "/sessions/{client_id}/subscriptions/{filter}",
            delete(subscriptions::unsubscribe),
        ),
        ("GET", "/retained", get(registry::retained)),
        ("GET", "/retained/{topic}", get(retained::get_one)),
        ("DELETE", "/retained/{topic}", delete(retained::delete)),
        ("POST", "/publish", post(publish::publish)),
        ("GET", "/cluster", get(cluster::cluster)),
        ("POST", "/cluster/members", post(cluster::add)),
        ("DELETE", "/cluster/members/{id}", delete(cluster::remove)),
    ]
}

pub(super) fn router(state: HttpState) -> Router<HttpState> {
    let mut router = Router::new();
    for (_, path, handler) in endpoints() {
        // Two methods on one path (GET and DELETE of a session) merge into one route.
        router = router.route(path, handler);
    }
    router
        .layer(middleware::from_fn_with_state(state, authorize))
        // Added after the layer, so it is not behind the token.
        .route("/openapi.yaml", get(openapi))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI)
}

pub(super) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The answer to an operator's request the cluster did not do.
pub(super) fn operator_failed(failure: OperatorFailure) -> Response {
    let status = match &failure {
        OperatorFailure::Invalid(_) => StatusCode::BAD_REQUEST,
        OperatorFailure::NotFound(_) => StatusCode::NOT_FOUND,
        OperatorFailure::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &failure.to_string())
}

async fn authorize(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    match &state.admin_token {
        Some(token) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "));
            if !presented.is_some_and(|p| same_secret(p.as_bytes(), token.as_bytes())) {
                let mut response =
                    error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                return response;
            }
        }
        None if !peer.ip().is_loopback() => {
            return error(
                StatusCode::FORBIDDEN,
                "this node has no admin token (admin.token_file): the admin API answers loopback clients only",
            );
        }
        None => {}
    }
    next.run(request).await
}

/// Compares two secrets in time that depends on their lengths only, not on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Raft figures `/node` and `/cluster` both show, as one JSON object to extend.
pub(super) fn raft_json(
    health: &crate::cluster_port::ClusterHealth,
) -> serde_json::Map<String, Value> {
    [
        ("leader", json!(health.leader.map(|node| node.0))),
        ("is_leader", json!(health.is_leader)),
        ("term", json!(health.term)),
        ("last_log_index", json!(health.last_log_index)),
        ("committed_index", json!(health.committed_index)),
        ("applied_index", json!(health.applied_index)),
        ("snapshot_index", json!(health.snapshot_index)),
        ("voters", json!(health.voters)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

async fn node(State(state): State<HttpState>) -> Json<Value> {
    let readiness = super::readiness(&state).await;
    let cluster = state.cluster.health().await.map(|health| {
        let lag: serde_json::Map<String, Value> = health
            .follower_lag
            .iter()
            .map(|(node, lag)| (node.0.to_string(), json!(lag)))
            .collect();
        let mut raft = raft_json(&health);
        raft.insert("follower_lag".to_owned(), Value::Object(lag));
        Value::Object(raft)
    });
    Json(json!({
        "node_id": state.cluster.node_id().map(|node| node.0),
        "ready": readiness.is_ok(),
        "not_ready_because": readiness.err(),
        "draining": state.drain.is_draining(),
        "cluster": cluster,
    }))
}

async fn drain(State(state): State<HttpState>) -> impl IntoResponse {
    let already = state.drain.is_draining();
    state.drain.ask();
    (
        StatusCode::ACCEPTED,
        Json(json!({ "draining": true, "already_draining": already })),
    )
}
