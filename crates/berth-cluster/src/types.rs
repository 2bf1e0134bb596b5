//! openraft's type configuration: the replicated command and its result are the typed protobuf
//! messages of `berth.cluster.v1`, so what goes into the log is exactly what goes on the wire.

use std::io::Cursor;

use berth_proto::v1 as pb;

openraft::declare_raft_types!(
    /// Berth's Raft: u64 node ids, `BasicNode { addr }` = the node's cluster (gRPC) address.
    pub TypeConfig:
        D = pb::Command,
        R = pb::CommandResult,
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Membership = openraft::Membership<NodeId, Node>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type StorageError = openraft::StorageError<NodeId>;
