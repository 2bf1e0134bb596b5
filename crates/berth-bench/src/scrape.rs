//! Reading a broker's Prometheus endpoint (`--metrics-url`): the memory its databases hold for
//! themselves (Berth's `berth_store_memory_bytes`: RocksDB's memtables, block cache and table
//! readers). Those are bounded by configuration, not by the number of sessions, so the sessions
//! scenario shows them and reports the RSS per session without them.

use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The series summed for a database's own memory.
const STORE_MEMORY: &str = "berth_store_memory_bytes";
/// Bound on one scrape (connect, request, response).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Every `berth_store_memory_bytes` series at `url`, summed, in bytes.
pub async fn store_memory(url: &str) -> anyhow::Result<u64> {
    let body = tokio::time::timeout(SCRAPE_TIMEOUT, get(url))
        .await
        .with_context(|| format!("{url}: no answer within {SCRAPE_TIMEOUT:?}"))??;
    sum_of(&body, STORE_MEMORY).with_context(|| format!("{url}: no {STORE_MEMORY} series"))
}

/// The body of `GET url` (plain HTTP/1.1, `Connection: close`; the endpoint answers with a
/// length, not in chunks).
async fn get(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--metrics-url {url}: only http:// URLs are read"))?;
    let (host, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(host)
        .await
        .with_context(|| format!("{url}: cannot connect"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{url}: not an HTTP response"))?;
    let status = head.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "{url}: {status}"
    );
    anyhow::ensure!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{url}: a chunked response, which this reader does not take apart"
    );
    Ok(body.to_owned())
}

/// The sum of every sample of metric `name` in Prometheus text `text`; `None` if it has none.
fn sum_of(text: &str, name: &str) -> Option<u64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if series.split('{').next() != Some(name) {
            continue;
        }
        if let Ok(value) = value.parse::<f64>() {
            found = true;
            sum += value;
        }
    }
    // Bytes: whole and far below 2^53, so the float sum is exact.
    found.then_some(sum as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot HTTP server on a free port answering `response`; the request it read.
    async fn answering(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 1024];
            let n = socket.read(&mut request).await.unwrap();
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        (format!("http://{addr}"), served)
    }

    #[tokio::test]
    async fn reads_the_sum_from_a_plain_answer_and_asks_for_the_path() {
        let (base, served) = answering(
            "HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\nberth_store_memory_bytes{kind=\"a\"} 4096\n",
        )
        .await;
        assert_eq!(
            store_memory(&format!("{base}/metrics")).await.unwrap(),
            4096
        );
        assert!(
            served
                .await
                .unwrap()
                .starts_with("GET /metrics HTTP/1.1\r\n")
        );
    }

    #[tokio::test]
    async fn a_url_without_a_path_asks_for_the_root() {
        let (base, served) = answering("HTTP/1.1 200 OK\r\n\r\nberth_store_memory_bytes 1\n").await;
        assert_eq!(store_memory(&base).await.unwrap(), 1);
        assert!(served.await.unwrap().starts_with("GET / HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn an_error_status_a_chunked_body_or_no_series_is_an_error_naming_the_url() {
        let (base, _) = answering("HTTP/1.1 404 Not Found\r\n\r\n").await;
        let error = format!("{:#}", store_memory(&base).await.unwrap_err());
        assert!(
            error.contains("404 Not Found") && error.contains(&base),
            "{error}"
        );
        let (base, _) = answering(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        let error = format!("{:#}", store_memory(&base).await.unwrap_err());
        assert!(error.contains("chunked"), "{error}");
        let (base, _) = answering("HTTP/1.1 200 OK\r\n\r\nberth_sessions 5\n").await;
        let error = format!("{:#}", store_memory(&base).await.unwrap_err());
        assert!(
            error.contains("no berth_store_memory_bytes series"),
            "{error}"
        );
        assert!(store_memory("https://example/metrics").await.is_err());
    }

    #[test]
    fn sums_every_series_of_the_metric_and_nothing_else() {
        let text = "# HELP berth_store_memory_bytes Memory.\n\
                    # TYPE berth_store_memory_bytes gauge\n\
                    berth_store_memory_bytes{kind=\"memtables\",store=\"sessions\"} 1000\n\
                    berth_store_memory_bytes{kind=\"block_cache\",store=\"raft\"} 24\n\
                    berth_store_memory_bytes_other 7\n\
                    berth_sessions 5\n";
        assert_eq!(sum_of(text, STORE_MEMORY), Some(1024));
        assert_eq!(sum_of("berth_sessions 5\n", STORE_MEMORY), None);
    }
}
