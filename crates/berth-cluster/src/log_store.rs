//! The Raft log, vote and commit index in the node's RocksDB (`<data>/raft`).
//!
//! Column families: `log` (big-endian index → encoded `pb::Entry`), `meta` (vote, committed,
//! last purged). An append is durable (WAL fsync) before openraft is told it is flushed: a vote
//! or an acknowledged entry must survive power loss, or two leaders could share a term.
//!
//! openraft appends what each client write brings, often one entry, and waits for nothing but
//! the write before the next append: an fsync per append capped a node at one claim (one
//! CONNECT) per fsync, every one a VM exit on a virtual disk. So an append writes its entries
//! (readable at once, as openraft requires) and hands the flush to one task of its own
//! (`start_wal_sync`): each fsync there covers every append written before it began — group commit —
//! and only then is openraft told those entries are flushed.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

use berth_proto::v1 as pb;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use prost::Message as _;
use rocksdb::{ColumnFamily, DB, Direction, IteratorMode, WriteBatch};

use crate::convert::{
    entry_from_pb, entry_to_pb, log_id_from_pb, log_id_to_pb, vote_from_pb, vote_to_pb,
};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_META: &str = "meta";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// openraft's log storage over a shared RocksDB handle; clones share the database and the
/// flushing thread.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<DB>,
    wal_sync: UnboundedSender<LogFlushed<TypeConfig>>,
}

/// Starts the task that makes written appends durable, a group at a time: it takes every
/// append waiting, syncs the WAL once (on a blocking thread, which the runtime waits for when
/// it shuts down: never inside RocksDB when the process exits), then tells openraft of each, in
/// order. It ends with the last `LogStore` (its channel closes).
fn start_wal_sync(db: Arc<DB>) -> UnboundedSender<LogFlushed<TypeConfig>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<LogFlushed<TypeConfig>>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut written = vec![first];
            while let Ok(more) = rx.try_recv() {
                written.push(more);
            }
            let db = db.clone();
            let synced = match tokio::task::spawn_blocking(move || db.flush_wal(true)).await {
                Ok(synced) => synced.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            for callback in written {
                callback.log_io_completed(synced.clone().map_err(std::io::Error::other));
            }
        }
    });
    tx
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

fn corrupt(what: &str) -> StorageError {
    StorageIOError::read_logs(&std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("corrupt raft {what}"),
    ))
    .into()
}

impl LogStore {
    /// Needs a tokio runtime (the flushing task runs on it).
    pub fn new(db: Arc<DB>) -> LogStore {
        let wal_sync = start_wal_sync(db.clone());
        LogStore { db, wal_sync }
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, StorageError> {
        self.db.cf_handle(name).ok_or_else(|| corrupt(name))
    }

    fn get_meta<M: prost::Message + Default>(&self, key: &[u8]) -> Result<Option<M>, StorageError> {
        let Some(bytes) = self.db.get_cf(self.cf(CF_META)?, key).map_err(read_err)? else {
            return Ok(None);
        };
        M::decode(bytes.as_slice())
            .map(Some)
            .map_err(|_| corrupt("meta"))
    }

    fn put_meta(&self, key: &[u8], value: &impl prost::Message) -> Result<(), StorageError> {
        self.db
            .put_cf(self.cf(CF_META)?, key, value.encode_to_vec())
            .map_err(write_err)?;
        self.db.flush_wal(true).map_err(write_err)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut iter = self.db.iterator_cf(self.cf(CF_LOG)?, IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(read_err)?;
                let entry = pb::Entry::decode(value.as_ref()).map_err(|_| corrupt("entry"))?;
                let id = entry.log_id.ok_or_else(|| corrupt("entry log id"))?;
                Ok(Some(log_id_from_pb(&id)))
            }
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let cf = self.cf(CF_LOG)?;
        let from = index_key(start);
        let mut entries = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| corrupt("key"))?);
            if !range.contains(&index) {
                break;
            }
            let entry = pb::Entry::decode(value.as_ref()).map_err(|_| corrupt("entry"))?;
            entries.push(entry_from_pb(entry).map_err(|_| corrupt("entry"))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged = self
            .get_meta::<pb::LogId>(KEY_PURGED)?
            .map(|id| log_id_from_pb(&id));
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, &vote_to_pb(vote))
            .map_err(|_| StorageIOError::write_vote(&std::io::Error::other("vote")).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self
            .get_meta::<pb::Vote>(KEY_VOTE)?
            .map(|v| vote_from_pb(&v)))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        match committed {
            Some(id) => {
                // No fsync: a lost commit index is re-learned from the leader.
                self.db
                    .put_cf(
                        self.cf(CF_META)?,
                        KEY_COMMITTED,
                        log_id_to_pb(&id).encode_to_vec(),
                    )
                    .map_err(write_err)
            }
            None => Ok(()),
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_meta::<pb::LogId>(KEY_COMMITTED)?
            .map(|id| log_id_from_pb(&id)))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(
                cf,
                index_key(entry.log_id.index),
                entry_to_pb(&entry).encode_to_vec(),
            );
        }
        if let Err(error) = self.db.write(batch) {
            callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
            return Err(write_err(error));
        }
        // Durable once the flushing thread has synced the WAL past this write.
        if let Err(tokio::sync::mpsc::error::SendError(callback)) = self.wal_sync.send(callback) {
            // The task is gone (the runtime shuts down): sync here.
            let synced = self.db.flush_wal(true);
            let failed = synced.as_ref().err().map(|e| write_err(e.clone()));
            callback.log_io_completed(synced.map_err(|e| std::io::Error::other(e.to_string())));
            if let Some(error) = failed {
                return Err(error);
            }
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let cf = self.cf(CF_LOG)?;
        self.db
            .delete_range_cf(cf, index_key(log_id.index), index_key(u64::MAX))
            .map_err(write_err)?;
        // delete_range excludes its end; the entry at u64::MAX can never exist.
        self.db.flush_wal(true).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_meta(KEY_PURGED, &log_id_to_pb(&log_id))?;
        let cf = self.cf(CF_LOG)?;
        self.db
            .delete_range_cf(cf, index_key(0), index_key(log_id.index.saturating_add(1)))
            .map_err(write_err)
    }
}
