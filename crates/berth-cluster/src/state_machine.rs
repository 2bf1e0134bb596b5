//! openraft's state machine over core's [`Registry`]: applies committed commands, tells the
//! local broker what changed (its [`ClusterEvent`]s), and snapshots the registry into the node's RocksDB.
//!
//! The registry lives in memory (it is small: ids, epochs, filters); its durable form is the
//! last snapshot plus the log after it, which openraft re-applies at start.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use berth_proto::v1 as pb;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use prost::Message as _;
use rocksdb::DB;
use tokio::sync::mpsc::UnboundedSender;

use berth_core::{ClusterEvent, Registry};

use crate::convert::{
    log_id_to_pb, opt_log_id_from_pb, opt_log_id_to_pb, registry_from_pb, registry_to_pb,
    stored_membership_from_pb, stored_membership_to_pb,
};
use crate::log_store::CF_META;
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

const KEY_SNAPSHOT: &[u8] = b"snapshot";
const KEY_SNAPSHOT_ID: &[u8] = b"snapshot_id";

/// What the state machine holds, shared with readers (routing lookups, status).
#[derive(Debug, Default)]
pub struct Applied {
    pub registry: Registry,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// Shared read access to the applied state.
pub type SharedState = Arc<RwLock<Applied>>;

#[derive(Debug, Clone)]
pub struct StateMachine {
    state: SharedState,
    db: Arc<DB>,
    events: UnboundedSender<(u64, Vec<ClusterEvent>)>,
    snapshot_seq: u64,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

fn snap_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_snapshot(None, &e).into()
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

impl StateMachine {
    /// Loads the last snapshot, if any; openraft re-applies the log after it.
    pub fn open(
        db: Arc<DB>,
        events: UnboundedSender<(u64, Vec<ClusterEvent>)>,
    ) -> Result<StateMachine, StorageError> {
        let mut sm = StateMachine {
            state: SharedState::default(),
            db,
            events,
            snapshot_seq: 0,
        };
        if let Some(bytes) = sm.meta_get(KEY_SNAPSHOT)? {
            let snapshot = pb::StateSnapshot::decode(bytes.as_slice())
                .map_err(|_| snap_err(invalid("snapshot")))?;
            sm.install(snapshot)?;
        }
        Ok(sm)
    }

    pub fn shared(&self) -> SharedState {
        self.state.clone()
    }

    fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let cf = self
            .db
            .cf_handle(CF_META)
            .ok_or_else(|| snap_err(invalid("meta column family")))?;
        self.db.get_cf(cf, key).map_err(snap_err)
    }

    fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let cf = self
            .db
            .cf_handle(CF_META)
            .ok_or_else(|| snap_err(invalid("meta column family")))?;
        self.db.put_cf(cf, key, value).map_err(sm_err)?;
        self.db.flush_wal(true).map_err(sm_err)
    }

    fn install(&mut self, snapshot: pb::StateSnapshot) -> Result<(), StorageError> {
        let registry = registry_from_pb(&snapshot.sessions, &snapshot.retained);
        let reset = registry.reset_event();
        let membership = snapshot
            .membership
            .as_ref()
            .map(stored_membership_from_pb)
            .unwrap_or_default();
        {
            let mut state = self
                .state
                .write()
                .map_err(|_| sm_err(invalid("poisoned")))?;
            state.registry = registry;
            state.last_applied = opt_log_id_from_pb(&snapshot.last_applied);
            state.membership = membership;
        }
        let index = snapshot.last_applied.as_ref().map_or(0, |id| id.index);
        let _ = self.events.send((index, vec![reset]));
        Ok(())
    }

    fn encode_snapshot(
        &self,
    ) -> Result<(pb::StateSnapshot, Option<LogId>, StoredMembership), StorageError> {
        let state = self.state.read().map_err(|_| sm_err(invalid("poisoned")))?;
        let (sessions, retained) = registry_to_pb(&state.registry);
        Ok((
            pb::StateSnapshot {
                last_applied: opt_log_id_to_pb(&state.last_applied),
                membership: Some(stored_membership_to_pb(&state.membership)),
                sessions,
                retained,
            },
            state.last_applied,
            state.membership.clone(),
        ))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (snapshot, last_applied, membership) = self.encode_snapshot()?;
        let data = snapshot.encode_to_vec();
        self.snapshot_seq += 1;
        let snapshot_id = match &last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.snapshot_seq),
            None => format!("0-0-{}", self.snapshot_seq),
        };
        self.meta_put(KEY_SNAPSHOT, &data)?;
        self.meta_put(KEY_SNAPSHOT_ID, snapshot_id.as_bytes())?;
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership,
                snapshot_id,
            },
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.state.read().map_err(|_| sm_err(invalid("poisoned")))?;
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<pb::CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let mut events = Vec::new();
        let mut last_index = 0;
        {
            let mut state = self
                .state
                .write()
                .map_err(|_| sm_err(invalid("poisoned")))?;
            for entry in entries {
                state.last_applied = Some(entry.log_id);
                let mut result = match entry.payload {
                    EntryPayload::Blank => pb::CommandResult {
                        kind: Some(pb::command_result::Kind::Internal(pb::Blank {})),
                        log_index: 0,
                    },
                    EntryPayload::Normal(command) => {
                        crate::convert::apply(&mut state.registry, &command, &mut events)
                    }
                    EntryPayload::Membership(membership) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), membership);
                        pb::CommandResult {
                            kind: Some(pb::command_result::Kind::Internal(pb::Blank {})),
                            log_index: 0,
                        }
                    }
                };
                set_log_index(&mut result, entry.log_id.index);
                last_index = entry.log_id.index;
                results.push(result);
            }
        }
        // Sent even when empty: the server tracks how far the broker has been brought.
        let _ = self.events.send((last_index, events));
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let mut decoded = pb::StateSnapshot::decode(data.as_slice())
            .map_err(|_| snap_err(invalid("snapshot")))?;
        // The meta is authoritative for Raft's own fields.
        decoded.last_applied = meta.last_log_id.as_ref().map(log_id_to_pb);
        decoded.membership = Some(stored_membership_to_pb(&meta.last_membership));
        self.meta_put(KEY_SNAPSHOT, &decoded.encode_to_vec())?;
        self.meta_put(KEY_SNAPSHOT_ID, meta.snapshot_id.as_bytes())?;
        self.install(decoded)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(data) = self.meta_get(KEY_SNAPSHOT)? else {
            return Ok(None);
        };
        let snapshot = pb::StateSnapshot::decode(data.as_slice())
            .map_err(|_| snap_err(invalid("snapshot")))?;
        let snapshot_id = self
            .meta_get(KEY_SNAPSHOT_ID)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                last_log_id: opt_log_id_from_pb(&snapshot.last_applied),
                last_membership: snapshot
                    .membership
                    .as_ref()
                    .map(stored_membership_from_pb)
                    .unwrap_or_default(),
                snapshot_id,
            },
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Where a command sits in the log: a batch's commands all sit in its entry.
fn set_log_index(result: &mut pb::CommandResult, index: u64) {
    result.log_index = index;
    if let Some(pb::command_result::Kind::Batch(batch)) = &mut result.kind {
        for result in &mut batch.results {
            set_log_index(result, index);
        }
    }
}
