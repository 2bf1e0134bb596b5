//! Cluster membership from any node, through the calls `berth cluster status|add|remove`
//! makes (the Cluster gRPC service of the leader, which the node asked forwards to):
//!
//! - `GET /api/v1/cluster`: the members (id, cluster address, voter or learner, whether it
//!   answers a status probe now, its Raft state and applied index as it reports them, and —
//!   asked of the leader — how many log entries it is behind), the leader, the term, this
//!   node's log indexes, and whether a membership change is under way;
//! - `POST /api/v1/cluster/members` with `{"id": N, "address": "host:port"}`: add a node (it
//!   must be running with that node id and cluster listener): a learner first, which catches
//!   up, then a voter;
//! - `DELETE /api/v1/cluster/members/{id}`: remove a voter (404 if it is not one). Its
//!   sessions' subscriptions stay in the registry; clients that reconnect elsewhere take their
//!   sessions over.
//!
//! A change answers with the membership as `GET` shows it, once the leader has committed it.
//! 503: no leader is known, or the change did not finish within the bound (it may still).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_core::NodeId;
use serde_json::{Value, json};

use super::HttpState;
use super::admin::{error, operator_failed};
use super::body::{Fields, field_error};
use super::registry::Refused;

/// What a membership change may take (the port bounds it at 20 s) before it is answered 503.
const CHANGE_WAIT: Duration = Duration::from_secs(25);
/// What the member probes may take (the port bounds each at 1 s).
const VIEW_WAIT: Duration = Duration::from_secs(5);

fn not_a_cluster_node() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this server is not a cluster node: it has no membership",
    )
}

/// The membership and this node's Raft view; `None`: not a cluster node.
async fn view(state: &HttpState) -> Result<Option<Value>, Response> {
    let members = match tokio::time::timeout(VIEW_WAIT, state.cluster.members()).await {
        Ok(Some(members)) => members,
        Ok(None) => return Ok(None),
        Err(_) => {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the members did not answer within {VIEW_WAIT:?}"),
            ));
        }
    };
    let health = state.cluster.health().await.unwrap_or_default();
    let listed: Vec<Value> = members
        .members
        .iter()
        .map(|member| {
            let lag = if health.is_leader && health.leader == Some(member.id) {
                Some(0)
            } else if health.is_leader {
                health
                    .follower_lag
                    .iter()
                    .find(|(node, _)| *node == member.id)
                    .map(|(_, lag)| *lag)
            } else {
                None
            };
            json!({
                "id": member.id.0,
                "address": member.address,
                "voter": member.voter,
                "online": member.online,
                "state": member.state,
                "applied_index": member.applied_index,
                "leader": health.leader == Some(member.id),
                "lag": lag,
            })
        })
        .collect();
    let mut view = super::admin::raft_json(&health);
    view.insert(
        "node_id".to_owned(),
        json!(state.cluster.node_id().map(|node| node.0)),
    );
    view.insert("joint".to_owned(), json!(members.joint));
    view.insert("members".to_owned(), Value::Array(listed));
    Ok(Some(Value::Object(view)))
}

async fn answer_view(state: &HttpState) -> Response {
    match view(state).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => not_a_cluster_node(),
        Err(response) => response,
    }
}

pub(super) async fn cluster(State(state): State<HttpState>) -> Response {
    answer_view(&state).await
}

/// `host:port` with a port from 1 to 65535 (a host name, an IPv4 address or `[IPv6]`).
fn address(text: &str) -> Result<String, Refused> {
    let valid = text.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|port| port > 0)
    });
    if valid {
        Ok(text.to_owned())
    } else {
        Err(field_error(
            "address",
            "must be host:port (the node's cluster listener)",
        ))
    }
}

/// Runs a membership change, then answers with the membership.
async fn change(
    state: &HttpState,
    change: impl std::future::Future<Output = Option<Result<(), crate::OperatorFailure>>>,
) -> Response {
    match tokio::time::timeout(CHANGE_WAIT, change).await {
        Ok(Some(Ok(()))) => answer_view(state).await,
        Ok(Some(Err(failure))) => operator_failed(failure),
        Ok(None) => not_a_cluster_node(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the change did not finish within {CHANGE_WAIT:?}; it may still complete"),
        ),
    }
}

pub(super) async fn add(State(state): State<HttpState>, body: Bytes) -> Response {
    let fields = match Fields::parse(&body, &["id", "address"]) {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let id = match fields.integer("id", 1, u64::MAX) {
        Ok(Some(id)) => NodeId(id),
        Ok(None) => return field_error("id", "required").into_response(),
        Err(refused) => return refused.into_response(),
    };
    let address = match fields.required_string("address").and_then(address) {
        Ok(address) => address,
        Err(refused) => return refused.into_response(),
    };
    change(&state, state.cluster.add_member(id, address)).await
}

pub(super) async fn remove(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    let id = match id.parse::<u64>() {
        Ok(id) if id > 0 => NodeId(id),
        _ => return field_error("id", "must be a node id (a positive integer)").into_response(),
    };
    change(&state, state.cluster.remove_member(id)).await
}
