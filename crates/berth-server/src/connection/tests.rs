use super::*;

/// Every connection that is not parked (busy, or quiet for less than `PARK_AFTER`) holds its
/// task's future: that future is the largest part of its memory, so its size is kept small
/// (rare, large steps such as a Raft commit are boxed and allocated only while they run).
#[tokio::test]
async fn an_idle_connection_task_stays_small() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = TcpStream::connect(addr).await.unwrap();
    let (stream, peer) = listener.accept().await.unwrap();
    let (commands, _rx) = tokio::sync::mpsc::channel(1);
    let connection = Connection {
        permit: None,
        conn: ConnId(1),
        stream,
        edge: Box::new(Edge {
            listener: Arc::from("tcp"),
            peer,
            proxy: crate::ProxySettings::default(),
            tls: None,
            ws_path: None,
            auth: Arc::new(
                crate::auth::Authenticator::load(crate::auth::AuthSettings::default()).unwrap(),
            ),
            metrics: Arc::new(crate::Metrics::new().unwrap()),
            cluster: Arc::new(crate::cluster_port::SingleNode),
            drain: Arc::default(),
        }),
        commands,
        max_packet_size: 1 << 20,
    };
    let task = connection.run();
    let size = std::mem::size_of_val(&task);
    eprintln!("connection task: {size} bytes");
    // 7,000 bytes before the handshake and the Raft commits were boxed; 896 before the
    // connected phase kept its state once and waited by polling (408 then). The bound is where
    // tokio's task cell steps: it is aligned to 128 bytes on x86-64 (header 32, trailer 48, the
    // scheduler handle and task id 16, the stage's tag 8, then this future), so up to 408 bytes
    // the cell is 512 bytes, and 8 more make it 640 for every connection.
    assert!(size <= 408, "connection task future is {size} bytes");
}

/// A parked connection holds this one allocation (with the `Arc`'s two counts) instead of its
/// task: the task's cell is 512 bytes (above), and this stays within mimalloc's size class of
/// 256 bytes.
#[test]
fn a_parked_connection_stays_small() {
    let size = std::mem::size_of::<park::Parked<serve::Serving<OwnedReadHalf, OwnedWriteHalf>>>()
        + 2 * std::mem::size_of::<usize>();
    eprintln!("parked connection: {size} bytes");
    assert!(size <= 256, "a parked connection is {size} bytes");
}
