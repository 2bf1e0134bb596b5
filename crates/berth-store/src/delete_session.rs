//! `Op::DeleteSession`: the session record and every row under the client's prefix, in each of
//! the session-row column families.
//!
//! A range tombstone per column family deletes any number of rows in one entry, but RocksDB
//! keeps the range tombstones of its mutable memtable as a list that each read after a new one
//! sorts again, all of them: a node that ended sessions by the thousand (a reconnect storm
//! through a load balancer, each session taken over here releasing its copy on its old node)
//! spent its reads re-sorting tombstones (`FragmentedRangeTombstoneList`, 5 % of the nodes'
//! samples in that storm). So the rows a session has in the database are deleted one by one when
//! they are few (an ended session usually has a handful), and by one range tombstone per column
//! family only when there are many, or when the same batch wrote rows of the client before the
//! delete (rows the database does not hold yet, which a scan of it cannot find).
//!
//! The scan reads the database as every earlier batch left it: `Store::write` applies batches
//! one at a time, in order, on the store's one thread. A row written later in the same batch (a
//! clean start's new session) gets a later sequence number than these tombstones, point or
//! range, and survives them.

use std::collections::HashSet;

use berth_core::{ClientId, Op, StoreError};
use rocksdb::WriteBatch;

use crate::RocksStore;
use crate::encoding::{self, Cf};

/// Rows of one column family a session delete removes one by one; more go as one range.
const POINT_DELETES_MAX: usize = 64;

/// The clients whose session rows the ops staged so far in a batch wrote.
#[derive(Debug, Default)]
pub(crate) struct WrittenInBatch {
    clients: HashSet<ClientId>,
}

impl WrittenInBatch {
    /// Notes the client `op` writes a session row for (before it is staged).
    pub(crate) fn note(&mut self, op: &Op) {
        if let Some(client) = writes_session_rows(op)
            && !self.clients.contains(client)
        {
            self.clients.insert(client.clone());
        }
    }

    fn contains(&self, client: &ClientId) -> bool {
        self.clients.contains(client)
    }
}

/// The client whose rows in a session-row column family `op` puts. Every variant is named:
/// a new op that writes such rows must be listed here, or a delete later in its batch would
/// miss them.
fn writes_session_rows(op: &Op) -> Option<&ClientId> {
    match op {
        Op::PutSubscription { client, .. }
        | Op::Enqueue { client, .. }
        | Op::DequeueThrough { client, .. }
        | Op::PutSentMark { client, .. }
        | Op::PutKeptIds { client, .. }
        | Op::PutInflight { client, .. }
        | Op::PutIncomingQos2 { client, .. }
        | Op::PutQos2Retry { client, .. }
        | Op::PutSeen { client, .. } => Some(client),
        // The session record is deleted by key; the rest only delete, or live elsewhere.
        Op::PutSession { .. }
        | Op::DeleteSession { .. }
        | Op::DeleteSubscription { .. }
        | Op::Dequeue { .. }
        | Op::PurgeQueue { .. }
        | Op::DeleteSentMark { .. }
        | Op::DeleteInflight { .. }
        | Op::DeleteIncomingQos2 { .. }
        | Op::DeleteSeen { .. }
        | Op::PutRetained { .. }
        | Op::PutHandoff { .. }
        | Op::DeleteHandoff { .. }
        | Op::DeleteRetained { .. } => None,
    }
}

impl RocksStore {
    /// Stages the delete of `client`'s session (see the module's comment).
    pub(crate) fn stage_delete_session(
        &self,
        wb: &mut WriteBatch,
        client: &ClientId,
        written: &WrittenInBatch,
    ) -> Result<(), StoreError> {
        let prefix = encoding::client_prefix(client);
        let end = encoding::prefix_end(&prefix).ok_or_else(|| StoreError::Io {
            operation: "delete session",
            message: format!("client {client:?} has no key range"),
        })?;
        wb.delete_cf(self.cf(Cf::Sessions)?, &prefix);
        let unseen_rows = written.contains(client);
        for cf in Cf::SESSION_ROWS {
            let handle = self.cf(cf)?;
            if unseen_rows {
                wb.delete_range_cf(handle, &prefix, &end);
                continue;
            }
            let mut keys = Vec::new();
            let mut many = false;
            self.scan(cf, &prefix, &prefix, |key, _| {
                many = keys.len() == POINT_DELETES_MAX;
                if !many {
                    keys.push(key.to_vec());
                }
                Ok(!many)
            })?;
            if many {
                wb.delete_range_cf(handle, &prefix, &end);
            } else {
                for key in keys {
                    wb.delete_cf(handle, key);
                }
            }
        }
        Ok(())
    }
}
