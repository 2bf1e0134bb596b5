//! The HTTP side of a node: `GET /metrics` (Prometheus text format), `GET /health` (liveness),
//! `GET /ready` (readiness, what load balancers check) and the admin API under `/api/v1`
//! ([`admin`]).
//!
//! `/health` answers `200 ok` while the broker loop is alive, `503` otherwise. `/ready` answers
//! `200 ready` only when the node should get new clients: the broker loop is alive, the node is
//! not draining, and on a cluster node a Raft leader is known and everything committed is
//! applied here (a CONNECT's claim can commit and the registry it reads is current).

mod admin;
mod base64;
mod body;
mod cluster;
mod publish;
mod registry;
mod retained;
mod sessions;
mod subscriptions;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::cluster_port::ClusterPort;
use crate::drain::DrainState;
use crate::metrics::Metrics;

/// What the HTTP handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// True while the broker loop is alive.
    pub ready: Arc<AtomicBool>,
    /// Raft's health for `/ready` and the metrics (`SingleNode`: none).
    pub cluster: Arc<dyn ClusterPort>,
    pub drain: Arc<DrainState>,
    /// The admin API's bearer token; `None`: it answers loopback clients only.
    pub admin_token: Option<Arc<str>>,
    /// The broker thread, for the admin API's session operations when this node owns the
    /// session (or is not a cluster node); `None`: no broker runs (those answer 503).
    pub broker: Option<crate::BrokerHandle>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .nest("/api/v1", admin::router(state.clone()))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then lets requests in progress end.
pub async fn serve_http(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let health = state.cluster.health().await;
    if let Some(health) = &health {
        state.metrics.observe_cluster(health);
    }
    state.metrics.set_draining(state.drain.is_draining());
    state
        .metrics
        .set_ready(readiness_of(&state, health.as_ref()).is_ok());
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        state.metrics.render(),
    )
}

async fn health(State(state): State<HttpState>) -> impl IntoResponse {
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, headers, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, headers, "unavailable\n")
    }
}

async fn ready(State(state): State<HttpState>) -> impl IntoResponse {
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match readiness(&state).await {
        Ok(()) => (StatusCode::OK, headers, "ready\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, headers, format!("{why}\n")),
    }
}

/// Whether the node should get new clients; `Err`: why not.
pub(crate) async fn readiness(state: &HttpState) -> Result<(), String> {
    let health = state.cluster.health().await;
    readiness_of(state, health.as_ref())
}

fn readiness_of(
    state: &HttpState,
    health: Option<&crate::cluster_port::ClusterHealth>,
) -> Result<(), String> {
    if !state.ready.load(Ordering::Acquire) {
        return Err("the broker is not running".to_owned());
    }
    if state.drain.is_draining() {
        return Err("draining".to_owned());
    }
    match health {
        Some(health) => health.ready(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
