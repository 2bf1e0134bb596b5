//! The HTTP side of a node: `GET /metrics` (Prometheus text format) and `GET /health`; later the
//! admin API.
//!
//! `/health` answers `200 ok` while the broker loop is alive, `503` otherwise: the loop sets the
//! readiness flag once it serves and clears it when it stops, so a load balancer can take the
//! node out before its connections fail.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What the HTTP handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// True while the broker loop is alive.
    pub ready: Arc<AtomicBool>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then lets requests in progress end.
pub async fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(HttpState { metrics, ready }))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::SocketAddr;
    use std::time::Duration;

    use berth_core::{DropReason, Stats};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tokio::time::timeout;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    struct Response {
        status: u16,
        headers: String,
        body: String,
    }

    /// One HTTP/1.1 request over a plain socket; the server closes the connection after it.
    async fn get(addr: SocketAddr, path: &str) -> Response {
        let exchange = async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.unwrap();
            String::from_utf8(raw).unwrap()
        };
        let raw = timeout(WAIT, exchange)
            .await
            .expect("HTTP response in time");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
        let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        Response {
            status,
            headers: headers.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    struct Server {
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        stop: oneshot::Sender<()>,
        task: JoinHandle<std::io::Result<()>>,
    }

    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_http(
            listener,
            metrics.clone(),
            ready.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            metrics,
            ready,
            stop,
            task,
        }
    }

    impl Server {
        async fn shut_down(self) {
            self.stop.send(()).unwrap();
            timeout(WAIT, self.task)
                .await
                .expect("stops in time")
                .unwrap()
                .unwrap();
        }
    }

    #[tokio::test]
    async fn health_follows_the_readiness_flag() {
        let server = start().await;
        let response = get(server.addr, "/health").await;
        assert_eq!(response.status, 503);
        server.ready.store(true, Ordering::Release);
        let response = get(server.addr, "/health").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, "ok\n");
        assert!(
            response.headers.contains("content-type: text/plain"),
            "{}",
            response.headers
        );
        server.shut_down().await;
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_prometheus_text_format() {
        let server = start().await;
        let mut stats = Stats::default();
        stats.connections = 3;
        stats.connects_total = 8;
        stats.count_drop(DropReason::TooLargeForClient);
        server.metrics.observe(&stats);

        let response = get(server.addr, "/metrics").await;
        assert_eq!(response.status, 200);
        assert!(
            response
                .headers
                .contains("content-type: text/plain; version=0.0.4"),
            "{}",
            response.headers
        );
        let body = response.body;
        assert!(
            body.contains("# TYPE berth_connections gauge\nberth_connections 3\n"),
            "{body}"
        );
        assert!(
            body.contains("# TYPE berth_connects_total counter\nberth_connects_total 8\n"),
            "{body}"
        );
        assert!(body.contains("berth_messages_dropped_total{reason=\"too_large_for_client\"} 1\n"));
        assert!(body.contains("berth_messages_dropped_total{reason=\"queue_full\"} 0\n"));

        // The next scrape sees the counters advanced by the difference only.
        stats.connects_total = 11;
        server.metrics.observe(&stats);
        let body = get(server.addr, "/metrics").await.body;
        assert!(body.contains("berth_connects_total 11\n"), "{body}");
        server.shut_down().await;
    }

    #[tokio::test]
    async fn an_unknown_path_is_not_found() {
        let server = start().await;
        assert_eq!(get(server.addr, "/nope").await.status, 404);
        server.shut_down().await;
    }
}
