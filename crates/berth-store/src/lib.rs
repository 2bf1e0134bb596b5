//! RocksDB implementation of `berth-core`'s storage port ([`berth_core::Store`]): one RocksDB
//! per node holding the sessions it owns, their subscriptions, queues, in-flight windows and
//! QoS 2 receive state, and the retained messages.
//!
//! ```text
//!   broker ── Batch ──▶ RocksStore::write ──▶ one rocksdb::WriteBatch (WAL, no fsync)
//!   server ── once per group of events ────▶ RocksStore::sync ──▶ flush_wal(fsync)
//!   start-up ─────────▶ RocksStore::load ───▶ records + queue bounds (queue bodies stay on disk)
//! ```
//!
//! Durability (ARCHITECTURE §6): `write` returns once the batch is in RocksDB's write-ahead log,
//! which survives the process being killed. Power-loss durability is the caller's group commit:
//! `sync` fsyncs the WAL once for every write before it, so one fsync covers a whole group of
//! events instead of one per write. Byte layouts live in [`encoding`] alone.
//!
//! This crate depends on `berth-core` (the port) and `berth-codec` (messages are stored as
//! MQTT 5 PUBLISH packets); nothing depends on it but the binary that wires it in.

mod delete_session;
mod encoding;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use berth_codec::PacketId;
use berth_core::{
    Batch, ClientId, Delivery, InflightRecord, Loaded, LoadedSession, Op, QueueBounds, QueueSeq,
    Store, StoreError, StoreMemory,
};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
    DBRawIterator, Options, ReadOptions, WriteBatch, WriteOptions,
};

use delete_session::WrittenInBatch;
use encoding::Cf;

/// Block cache shared by all column families: queue reads are mostly sequential and recent, so
/// a modest cache suffices; the OS page cache does the rest.
const BLOCK_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Memory all memtables together may hold before the largest is flushed.
const MEMTABLE_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// Caps the write-ahead log: past this RocksDB flushes the column families that pin old logs,
/// which bounds both disk use and replay time after a crash.
const MAX_TOTAL_WAL_BYTES: u64 = 256 * 1024 * 1024;

/// Position in the loaded session list, by client key prefix (see [`encoding::client_prefix`]).
type SessionIndex = HashMap<Vec<u8>, usize>;

/// How a [`RocksStore`] is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RocksOptions {
    /// The configured `storage.sync` mode, carried for the server that drives group commit.
    /// The store itself never fsyncs in `write` (always `sync = false`, durable against a process
    /// kill through the WAL); when this is true the server must call [`Store::sync`] once per
    /// group of events before acknowledging any of them, which makes the group survive power loss.
    pub sync_writes: bool,
}

/// The RocksDB-backed [`Store`].
pub struct RocksStore {
    db: DB,
    /// The block cache every column family shares (for [`Store::memory`]).
    cache: Cache,
    write_options: WriteOptions,
    options: RocksOptions,
}

impl fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What `db` and `cache`, which its tables use, hold in memory: RocksDB's approximate usage,
/// zero if it cannot say (the figure is for the metrics only).
fn memory_of(db: &DB, cache: &Cache) -> StoreMemory {
    match rocksdb::perf::get_memory_usage_stats(Some(&[db]), Some(&[cache])) {
        Ok(stats) => StoreMemory {
            memtables: stats.mem_table_total,
            block_cache: stats.cache_total,
            table_readers: stats.mem_table_readers_total,
        },
        Err(_) => StoreMemory::default(),
    }
}

fn io(operation: &'static str) -> impl FnOnce(rocksdb::Error) -> StoreError {
    move |e| StoreError::Io {
        operation,
        message: e.into_string(),
    }
}

impl RocksStore {
    /// Opens (or creates) the store in directory `path`, creating the directory and any missing
    /// column family.
    pub fn open(path: &Path, options: RocksOptions) -> Result<RocksStore, StoreError> {
        std::fs::create_dir_all(path).map_err(|e| StoreError::Io {
            operation: "create data directory",
            message: format!("{}: {e}", path.display()),
        })?;
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        let cf_options = || {
            let mut cf = Options::default();
            cf.set_compression_type(DBCompressionType::Lz4);
            cf.set_block_based_table_factory(&table);
            cf
        };
        let mut db_options = cf_options();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.increase_parallelism(2);
        db_options.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        // One memtable budget for all column families together: each would otherwise take up
        // to 2 × 64 MB of its own, and memory must not grow with the number of families in use.
        db_options.set_db_write_buffer_size(MEMTABLE_BUDGET_BYTES);
        let families = Cf::ALL.map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options()));
        let db =
            DB::open_cf_descriptors(&db_options, path, families).map_err(io("open database"))?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(false);
        Ok(RocksStore {
            db,
            cache,
            write_options,
            options,
        })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> RocksOptions {
        self.options
    }

    fn cf(&self, cf: Cf) -> Result<&ColumnFamily, StoreError> {
        self.db.cf_handle(cf.name()).ok_or_else(|| StoreError::Io {
            operation: "find column family",
            message: format!("column family {} is missing", cf.name()),
        })
    }

    /// A raw iterator over `cf` bounded to the keys starting with `prefix` (all keys if empty),
    /// positioned at `start`.
    fn iter_prefix(
        &self,
        cf: Cf,
        prefix: &[u8],
        start: &[u8],
    ) -> Result<DBRawIterator<'_>, StoreError> {
        let mut read = ReadOptions::default();
        if let Some(end) = encoding::prefix_end(prefix) {
            read.set_iterate_upper_bound(end);
        }
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(cf)?, read);
        iter.seek(start);
        Ok(iter)
    }

    /// Calls `row` for every key/value of `cf` whose key starts with `prefix`, from `start`,
    /// until it returns `false`.
    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        start: &[u8],
        mut row: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut iter = self.iter_prefix(cf, prefix, start)?;
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !key.starts_with(prefix) || !row(key, value)? {
                break;
            }
            iter.next();
        }
        iter.status().map_err(io("iterate"))
    }

    fn stage(
        &self,
        wb: &mut WriteBatch,
        op: Op,
        written: &WrittenInBatch,
    ) -> Result<(), StoreError> {
        use encoding as e;
        match op {
            Op::PutSession { client, record } => {
                wb.put_cf(
                    self.cf(Cf::Sessions)?,
                    e::client_prefix(&client),
                    e::encode_session(&record)?,
                );
            }
            Op::DeleteSession { client } => self.stage_delete_session(wb, &client, written)?,
            Op::PutSubscription {
                client,
                filter,
                record,
            } => {
                let key = e::subscription_key(&client, &filter);
                wb.put_cf(
                    self.cf(Cf::Subscriptions)?,
                    key,
                    e::encode_subscription(&record),
                );
            }
            Op::DeleteSubscription { client, filter } => {
                wb.delete_cf(
                    self.cf(Cf::Subscriptions)?,
                    e::subscription_key(&client, &filter),
                );
            }
            Op::Enqueue {
                client,
                seq,
                delivery,
            } => {
                wb.put_cf(
                    self.cf(Cf::Queues)?,
                    e::queue_key(&client, seq),
                    e::encode_delivery(&delivery)?,
                );
            }
            Op::Dequeue { client, seq } => {
                wb.delete_cf(self.cf(Cf::Queues)?, e::queue_key(&client, seq))
            }
            // The mark hides the rows at once (reads and loads skip what is at or below it);
            // the rows themselves go as one range tombstone now and then (`sweep`): a range
            // tombstone per PUBACK group made every read of the memtable re-sort them all.
            Op::DequeueThrough { client, seq, sweep } => {
                let queues = self.cf(Cf::Queues)?;
                wb.put_cf(queues, e::dequeued_mark_key(&client), seq.0.to_be_bytes());
                if sweep {
                    let end = e::queue_key_after(&client, seq).ok_or_else(|| StoreError::Io {
                        operation: "dequeue",
                        message: format!("client {client:?} has no key range"),
                    })?;
                    wb.delete_range_cf(queues, e::queue_key(&client, QueueSeq(0)), end);
                }
            }
            Op::PutSentMark { client, seq } => wb.put_cf(
                self.cf(Cf::Queues)?,
                e::sent_mark_key(&client),
                seq.0.to_be_bytes(),
            ),
            Op::DeleteSentMark { client } => {
                wb.delete_cf(self.cf(Cf::Queues)?, e::sent_mark_key(&client))
            }
            Op::PutKeptIds { client, ids } if ids.is_empty() => {
                wb.delete_cf(self.cf(Cf::Queues)?, e::kept_ids_key(&client))
            }
            Op::PutKeptIds { client, ids } => wb.put_cf(
                self.cf(Cf::Queues)?,
                e::kept_ids_key(&client),
                e::encode_kept_ids(&ids),
            ),
            // One range tombstone, however long the queue (`[client's seq 0, before)`); an
            // enqueue later in the batch gets a later sequence number and survives it.
            Op::PurgeQueue { client, before } => wb.delete_range_cf(
                self.cf(Cf::Queues)?,
                e::queue_key(&client, QueueSeq(0)),
                e::queue_key(&client, before),
            ),
            Op::PutInflight {
                client,
                packet_id,
                record,
            } => {
                let key = e::packet_key(&client, packet_id);
                wb.put_cf(self.cf(Cf::Inflight)?, key, e::encode_inflight(&record)?);
            }
            Op::DeleteInflight { client, packet_id } => {
                wb.delete_cf(self.cf(Cf::Inflight)?, e::packet_key(&client, packet_id));
            }
            Op::PutIncomingQos2 { client, packet_id } => {
                wb.put_cf(self.cf(Cf::Qos2In)?, e::packet_key(&client, packet_id), b"");
            }
            Op::PutQos2Retry {
                client,
                packet_id,
                id,
            } => {
                wb.put_cf(
                    self.cf(Cf::Qos2In)?,
                    e::packet_key(&client, packet_id),
                    e::encode_message_id(id),
                );
            }
            Op::DeleteIncomingQos2 { client, packet_id } => {
                wb.delete_cf(self.cf(Cf::Qos2In)?, e::packet_key(&client, packet_id));
            }
            Op::PutSeen { client, slot, id } => {
                wb.put_cf(
                    self.cf(Cf::Qos2Seen)?,
                    e::seen_key(&client, slot),
                    e::encode_message_id(id),
                );
            }
            Op::DeleteSeen { client, slot } => {
                wb.delete_cf(self.cf(Cf::Qos2Seen)?, e::seen_key(&client, slot));
            }
            Op::PutRetained { message } => {
                wb.put_cf(
                    self.cf(Cf::Retained)?,
                    e::retained_key(&message.topic),
                    e::encode_retained(&message)?,
                );
            }
            Op::DeleteRetained { topic } => {
                wb.delete_cf(self.cf(Cf::Retained)?, e::retained_key(&topic))
            }
            Op::PutHandoff { record } => {
                wb.put_cf(
                    self.cf(Cf::Handoff)?,
                    e::handoff_key(record.seq),
                    e::encode_handoff(&record)?,
                );
            }
            Op::DeleteHandoff { seq, .. } => {
                wb.delete_cf(self.cf(Cf::Handoff)?, e::handoff_key(seq))
            }
        }
        Ok(())
    }

    /// Session records, in key order, with an index from client prefix to position.
    fn load_sessions(&self) -> Result<(Vec<LoadedSession>, SessionIndex), StoreError> {
        let mut sessions = Vec::new();
        let mut index = HashMap::new();
        self.scan(Cf::Sessions, &[], &[], |key, value| {
            let (prefix, rest) = encoding::split_prefix(Cf::Sessions, key)?;
            if !rest.is_empty() {
                return Err(encoding::corrupt(
                    Cf::Sessions,
                    key,
                    "bytes after the client id",
                ));
            }
            index.insert(prefix.to_vec(), sessions.len());
            sessions.push(LoadedSession {
                client: encoding::prefix_client(Cf::Sessions, key, prefix)?,
                record: encoding::decode_session(key, value)?,
                subscriptions: Vec::new(),
                queue: QueueBounds::default(),
                sent_mark: None,
                dequeued_through: None,
                incoming_qos2: Vec::new(),
                kept_ids: Vec::new(),
                qos2_retry: Vec::new(),
                seen: Vec::new(),
            });
            Ok(true)
        })?;
        Ok((sessions, index))
    }

    /// Calls `row` with the session of every row of `cf` that belongs to a loaded session; rows
    /// of clients without a session record are skipped.
    fn attach(
        &self,
        cf: Cf,
        sessions: &mut [LoadedSession],
        index: &SessionIndex,
        mut row: impl FnMut(&mut LoadedSession, &[u8], &[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.scan(cf, &[], &[], |key, value| {
            let (prefix, rest) = encoding::split_prefix(cf, key)?;
            if let Some(session) = index.get(prefix).and_then(|&i| sessions.get_mut(i)) {
                row(session, key, rest, value)?;
            }
            Ok(true)
        })
    }
}

impl Store for RocksStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        let (mut sessions, index) = self.load_sessions()?;
        self.attach(
            Cf::Subscriptions,
            &mut sessions,
            &index,
            |session, key, rest, value| {
                let filter = encoding::filter_from_key(key, rest)?;
                let record = encoding::decode_subscription(key, value)?;
                session.subscriptions.push((filter, record));
                Ok(())
            },
        )?;
        // Keys arrive in sequence order per client, so the first row is `first`, the last `next - 1`.
        // The client's dequeued-through mark comes before its rows: those at or below it are
        // gone (`Op::DequeueThrough`).
        self.attach(
            Cf::Queues,
            &mut sessions,
            &index,
            |session, key, rest, value| {
                if rest.len() == 2 {
                    session.kept_ids = encoding::decode_kept_ids(key, value)?;
                    return Ok(());
                }
                if rest.len() == 1 {
                    // Sequences go on above it, as above the sent mark.
                    let mark = encoding::decode_dequeued_mark(key, value)?;
                    session.queue.next = session.queue.next.max(mark.next());
                    session.dequeued_through = Some(mark);
                    return Ok(());
                }
                if rest.is_empty() {
                    // The sent mark, before the rows: sequences go on above it (rows at or
                    // below it read back as redeliveries, and a new message must not).
                    let mark = encoding::decode_sent_mark(key, value)?;
                    session.queue.next = session.queue.next.max(mark.next());
                    session.sent_mark = Some(mark);
                    return Ok(());
                }
                let seq = encoding::seq_from_key(key, rest)?;
                if session.dequeued_through.is_some_and(|mark| seq <= mark) {
                    return Ok(());
                }
                let bounds = &mut session.queue;
                if bounds.count == 0 {
                    bounds.first = seq;
                }
                bounds.next = bounds.next.max(QueueSeq(seq.0.saturating_add(1)));
                bounds.count += 1;
                bounds.bytes += encoding::delivery_size(key, value)?;
                Ok(())
            },
        )?;
        self.attach(
            Cf::Qos2In,
            &mut sessions,
            &index,
            |session, key, rest, value| {
                let packet_id = encoding::packet_id_from_key(Cf::Qos2In, key, rest)?;
                // Empty: received. An identity: routed under it, in doubt (`PutQos2Retry`).
                if value.is_empty() {
                    session.incoming_qos2.push(packet_id);
                } else {
                    let id = encoding::decode_message_id(Cf::Qos2In, key, value)?;
                    session.qos2_retry.push((packet_id, id));
                }
                Ok(())
            },
        )?;
        self.attach(
            Cf::Qos2Seen,
            &mut sessions,
            &index,
            |session, key, rest, value| {
                let slot = encoding::slot_from_key(key, rest)?;
                session
                    .seen
                    .push((slot, encoding::decode_message_id(Cf::Qos2Seen, key, value)?));
                Ok(())
            },
        )?;
        let mut retained = Vec::new();
        self.scan(Cf::Retained, &[], &[], |key, value| {
            retained.push(encoding::decode_retained(key, value)?);
            Ok(true)
        })?;
        let mut handoff = Vec::new();
        self.scan(Cf::Handoff, &[], &[], |key, value| {
            handoff.push(encoding::decode_handoff(key, value)?);
            Ok(true)
        })?;
        Ok(Loaded {
            sessions,
            retained,
            handoff,
        })
    }

    fn write(&mut self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut wb = WriteBatch::default();
        let mut written = WrittenInBatch::default();
        for op in batch.ops {
            written.note(&op);
            self.stage(&mut wb, op, &written)?;
        }
        self.db
            .write_opt(wb, &self.write_options)
            .map_err(io("write batch"))
    }

    fn read_queue(
        &self,
        client: &ClientId,
        from: QueueSeq,
        limit: usize,
    ) -> Result<Vec<(QueueSeq, Delivery)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let prefix = encoding::client_prefix(client);
        let mark_key = encoding::sent_mark_key(client);
        let mark = match self
            .db
            .get_pinned_cf(self.cf(Cf::Queues)?, &mark_key)
            .map_err(io("read sent mark"))?
        {
            Some(value) => Some(encoding::decode_sent_mark(&mark_key, &value)?),
            None => None,
        };
        // Rows at or below the dequeued-through mark are gone (`Op::DequeueThrough`).
        let dequeued_key = encoding::dequeued_mark_key(client);
        let from = match self
            .db
            .get_pinned_cf(self.cf(Cf::Queues)?, &dequeued_key)
            .map_err(io("read dequeued mark"))?
        {
            Some(value) => from.max(encoding::decode_dequeued_mark(&dequeued_key, &value)?.next()),
            None => from,
        };
        let start = encoding::queue_key(client, from);
        self.scan(Cf::Queues, &prefix, &start, |key, value| {
            let seq = encoding::seq_from_key(key, &key[prefix.len()..])?;
            let mut delivery = encoding::decode_delivery(key, value)?;
            if mark.is_some_and(|mark| seq <= mark) {
                delivery.redelivery = true;
            }
            out.push((seq, delivery));
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    fn read_inflight(
        &self,
        client: &ClientId,
    ) -> Result<Vec<(PacketId, InflightRecord)>, StoreError> {
        let mut window = Vec::new();
        let prefix = encoding::client_prefix(client);
        self.scan(Cf::Inflight, &prefix, &prefix, |key, value| {
            let packet_id = encoding::packet_id_from_key(Cf::Inflight, key, &key[prefix.len()..])?;
            window.push((packet_id, encoding::decode_inflight(key, value)?));
            Ok(true)
        })?;
        window.sort_by_key(|(_, record)| record.order());
        Ok(window)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(io("sync write-ahead log"))
    }

    fn memory(&self) -> StoreMemory {
        memory_of(&self.db, &self.cache)
    }
}
