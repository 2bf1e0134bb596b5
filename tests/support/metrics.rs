//! Reads the server's `/metrics` with a plain HTTP/1.1 request, as a scraper would.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::WAIT;

/// `GET /metrics`, returning the body (Prometheus text format).
pub async fn scrape(http: SocketAddr) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(http)
            .await
            .expect("connect to the HTTP listener");
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .expect("read response");
        String::from_utf8(response).expect("UTF-8 response")
    };
    let response = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("/metrics answers in time");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "unexpected response: {response}"
    );
    let (_, body) = response.split_once("\r\n\r\n").expect("headers end");
    body.to_owned()
}

/// The value of one series (`name` or `name{label="value"}`) in a scrape, if present.
pub fn value(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// Polls `/metrics` until `series` reaches at least `min` (metrics refresh every ≤ 500 ms);
/// panics after [`WAIT`]. Returns the value seen.
pub async fn wait_for(http: SocketAddr, series: &str, min: u64) -> u64 {
    wait_until(http, series, |v| v >= min).await
}

/// Polls `/metrics` until `series` satisfies `done`; panics after [`WAIT`]. Returns the value.
pub async fn wait_until(http: SocketAddr, series: &str, done: impl Fn(u64) -> bool) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = scrape(http).await;
        let seen = value(&text, series);
        if let Some(v) = seen
            && done(v)
        {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{series} did not reach the expected value within {WAIT:?} (last: {seen:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `berth_messages_dropped_total{reason="…"}`.
pub fn dropped(reason: &str) -> String {
    format!("berth_messages_dropped_total{{reason=\"{reason}\"}}")
}
