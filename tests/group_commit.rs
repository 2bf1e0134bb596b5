//! `storage.sync = true`: no acknowledgement leaves the broker before the fsync of the writes
//! that made it true (one fsync per group of events, not per message).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_codec::{PacketId, ProtocolVersion, QoS};
use berth_core::{
    Batch, ClientId, Delivery, InflightRecord, Loaded, MemStore, QueueSeq, Store, StoreError,
};
use berth_e2e::client::TestClient;
use berth_e2e::server::TestServer;
use berth_server::ServerOptions;

/// Counts writes and syncs, and how many writes no sync has covered yet.
#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    syncs: AtomicU64,
    unsynced_writes: AtomicU64,
}

#[derive(Debug)]
struct CountingStore {
    inner: MemStore,
    counters: Arc<Counters>,
}

impl Store for CountingStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        self.inner.load()
    }
    fn write(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.counters.writes.fetch_add(1, Ordering::SeqCst);
        self.counters.unsynced_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write(batch)
    }
    fn read_queue(
        &self,
        client: &ClientId,
        from: QueueSeq,
        limit: usize,
    ) -> Result<Vec<(QueueSeq, Delivery)>, StoreError> {
        self.inner.read_queue(client, from, limit)
    }
    fn read_inflight(
        &self,
        client: &ClientId,
    ) -> Result<Vec<(PacketId, InflightRecord)>, StoreError> {
        self.inner.read_inflight(client)
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        self.counters.syncs.fetch_add(1, Ordering::SeqCst);
        self.counters.unsynced_writes.store(0, Ordering::SeqCst);
        self.inner.sync()
    }
}

async fn run(storage_sync: bool) -> Arc<Counters> {
    let counters = Arc::new(Counters::default());
    let store = CountingStore {
        inner: MemStore::new(),
        counters: counters.clone(),
    };
    let options = ServerOptions {
        storage_sync,
        ..Default::default()
    };
    let server = TestServer::start(options, store).await;
    let (mut device, _) =
        TestClient::connect(server.mqtt, ProtocolVersion::V3_1_1, "device", false).await;
    device.subscribe("cmd/#", QoS::AtLeastOnce).await;
    device.disconnect().await;
    let (mut ops, _) = TestClient::connect(server.mqtt, ProtocolVersion::V3_1_1, "ops", true).await;
    for n in 0..20 {
        // `publish` returns once the PUBACK is in: by then its enqueue must be synced.
        ops.publish("cmd/1", format!("m{n}").as_bytes(), QoS::AtLeastOnce)
            .await;
        if storage_sync {
            assert_eq!(
                counters.unsynced_writes.load(Ordering::SeqCst),
                0,
                "PUBACK {n} left before the fsync of its write"
            );
        }
    }
    ops.disconnect().await;
    server.stop().await;
    counters
}

#[tokio::test]
async fn with_storage_sync_every_puback_follows_an_fsync() {
    let counters = run(true).await;
    let (writes, syncs) = (
        counters.writes.load(Ordering::SeqCst),
        counters.syncs.load(Ordering::SeqCst),
    );
    assert!(
        syncs >= 20,
        "at least one fsync per acknowledged publish group: {syncs}"
    );
    assert!(writes >= 20, "{writes}");
}

#[tokio::test]
async fn without_storage_sync_nothing_is_fsynced() {
    let counters = run(false).await;
    assert_eq!(counters.syncs.load(Ordering::SeqCst), 0);
    assert!(counters.writes.load(Ordering::SeqCst) >= 20);
}
