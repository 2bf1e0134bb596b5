//! What the node's databases hold in memory for themselves (RocksDB's write buffers, block
//! cache and table readers): bounded by configuration, not by the number of sessions, and
//! shown apart so that a per-session memory figure can leave them out (`berth-bench sessions`
//! subtracts them from the broker's RSS).

use berth_core::StoreMemory;
use prometheus::{IntGaugeVec, Opts, Registry};

use super::MetricsError;

pub(crate) struct StoreGauges {
    bytes: IntGaugeVec,
}

/// Which database a figure is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Database {
    /// The session store (sessions, queues, retained messages).
    Sessions,
    /// The cluster's Raft log and registry.
    Raft,
}

impl Database {
    fn label(self) -> &'static str {
        match self {
            Database::Sessions => "sessions",
            Database::Raft => "raft",
        }
    }
}

impl StoreGauges {
    pub(crate) fn register(registry: &Registry) -> Result<StoreGauges, MetricsError> {
        let name = "berth_store_memory_bytes";
        let bytes = super::register(
            registry,
            name,
            IntGaugeVec::new(
                Opts::new(
                    name,
                    "Memory a database holds for itself: memtables (write buffers), block_cache, table_readers (RocksDB's approximate usage).",
                ),
                &["store", "kind"],
            ),
        )?;
        Ok(StoreGauges { bytes })
    }

    pub(crate) fn set(&self, database: Database, memory: StoreMemory) {
        let store = database.label();
        for (kind, value) in [
            ("memtables", memory.memtables),
            ("block_cache", memory.block_cache),
            ("table_readers", memory.table_readers),
        ] {
            self.bytes
                .with_label_values(&[store, kind])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }
}
