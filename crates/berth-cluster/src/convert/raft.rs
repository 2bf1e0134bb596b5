//! openraft's types ⇄ the protobuf messages that carry them between nodes.
//!
//! Decoding is strict: a message missing a field that Raft needs is a `Malformed` error, never a
//! default value that could make a node believe something it was not told.

use std::collections::{BTreeMap, BTreeSet};

use berth_proto::v1 as pb;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, EntryPayload};

use crate::types::{
    Entry, LogId, Membership, Node, NodeId, SnapshotMeta, StoredMembership, TypeConfig, Vote,
};

/// A protobuf message that lacks something Raft needs.
#[derive(Debug, thiserror::Error)]
#[error("malformed cluster message: {0} is missing")]
pub struct Malformed(pub &'static str);

fn need<T>(value: Option<T>, what: &'static str) -> Result<T, Malformed> {
    value.ok_or(Malformed(what))
}

pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        term: id.leader_id.term,
        node_id: id.leader_id.node_id,
        index: id.index,
    }
}

pub fn log_id_from_pb(id: &pb::LogId) -> LogId {
    LogId::new(CommittedLeaderId::new(id.term, id.node_id), id.index)
}

pub fn opt_log_id_to_pb(id: &Option<LogId>) -> Option<pb::LogId> {
    id.as_ref().map(log_id_to_pb)
}

pub fn opt_log_id_from_pb(id: &Option<pb::LogId>) -> Option<LogId> {
    id.as_ref().map(log_id_from_pb)
}

pub fn vote_to_pb(vote: &Vote) -> pb::Vote {
    pb::Vote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

pub fn vote_from_pb(vote: &pb::Vote) -> Vote {
    if vote.committed {
        Vote::new_committed(vote.term, vote.node_id)
    } else {
        Vote::new(vote.term, vote.node_id)
    }
}

pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|set| pb::NodeSet {
                ids: set.iter().copied().collect(),
            })
            .collect(),
        nodes: m
            .nodes()
            .map(|(id, node)| pb::Node {
                id: *id,
                addr: node.addr.clone(),
            })
            .collect(),
    }
}

pub fn membership_from_pb(m: &pb::Membership) -> Membership {
    let configs: Vec<BTreeSet<NodeId>> = m
        .configs
        .iter()
        .map(|set| set.ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<NodeId, Node> = m
        .nodes
        .iter()
        .map(|n| (n.id, Node::new(n.addr.clone())))
        .collect();
    Membership::new(configs, nodes)
}

pub fn stored_membership_to_pb(m: &StoredMembership) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: opt_log_id_to_pb(m.log_id()),
        membership: Some(membership_to_pb(m.membership())),
    }
}

pub fn stored_membership_from_pb(m: &pb::StoredMembership) -> StoredMembership {
    let membership = m
        .membership
        .as_ref()
        .map(membership_from_pb)
        .unwrap_or_default();
    StoredMembership::new(opt_log_id_from_pb(&m.log_id), membership)
}

pub fn entry_to_pb(entry: &Entry) -> pb::Entry {
    let payload = match &entry.payload {
        EntryPayload::Blank => pb::entry::Payload::Blank(pb::Blank {}),
        EntryPayload::Normal(command) => pb::entry::Payload::Command(command.clone()),
        EntryPayload::Membership(m) => pb::entry::Payload::Membership(membership_to_pb(m)),
    };
    pb::Entry {
        log_id: Some(log_id_to_pb(&entry.log_id)),
        payload: Some(payload),
    }
}

pub fn entry_from_pb(entry: pb::Entry) -> Result<Entry, Malformed> {
    let log_id = log_id_from_pb(&need(entry.log_id, "entry.log_id")?);
    let payload = match need(entry.payload, "entry.payload")? {
        pb::entry::Payload::Blank(_) => EntryPayload::Blank,
        pb::entry::Payload::Command(command) => EntryPayload::Normal(command),
        pb::entry::Payload::Membership(m) => EntryPayload::Membership(membership_from_pb(&m)),
    };
    Ok(Entry { log_id, payload })
}

pub fn append_request_to_pb(req: &AppendEntriesRequest<TypeConfig>) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(vote_to_pb(&req.vote)),
        prev_log_id: opt_log_id_to_pb(&req.prev_log_id),
        entries: req.entries.iter().map(entry_to_pb).collect(),
        leader_commit: opt_log_id_to_pb(&req.leader_commit),
    }
}

pub fn append_request_from_pb(
    req: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>, Malformed> {
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(&need(req.vote, "append_entries.vote")?),
        prev_log_id: opt_log_id_from_pb(&req.prev_log_id),
        entries: req
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_from_pb(&req.leader_commit),
    })
}

pub fn append_reply_to_pb(resp: &AppendEntriesResponse<NodeId>) -> pb::AppendEntriesReply {
    use pb::append_entries_reply::Result as R;
    let result = match resp {
        AppendEntriesResponse::Success => R::Success(pb::Blank {}),
        AppendEntriesResponse::PartialSuccess(matching) => R::PartialSuccess(pb::PartialSuccess {
            matching: opt_log_id_to_pb(matching),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Blank {}),
        AppendEntriesResponse::HigherVote(vote) => R::HigherVote(vote_to_pb(vote)),
    };
    pb::AppendEntriesReply {
        result: Some(result),
    }
}

pub fn append_reply_from_pb(
    resp: pb::AppendEntriesReply,
) -> Result<AppendEntriesResponse<NodeId>, Malformed> {
    use pb::append_entries_reply::Result as R;
    Ok(match need(resp.result, "append_entries_reply.result")? {
        R::Success(_) => AppendEntriesResponse::Success,
        R::PartialSuccess(p) => {
            AppendEntriesResponse::PartialSuccess(opt_log_id_from_pb(&p.matching))
        }
        R::Conflict(_) => AppendEntriesResponse::Conflict,
        R::HigherVote(vote) => AppendEntriesResponse::HigherVote(vote_from_pb(&vote)),
    })
}

pub fn vote_request_to_pb(req: &VoteRequest<NodeId>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&req.vote)),
        last_log_id: opt_log_id_to_pb(&req.last_log_id),
    }
}

pub fn vote_request_from_pb(req: pb::VoteRequest) -> Result<VoteRequest<NodeId>, Malformed> {
    Ok(VoteRequest {
        vote: vote_from_pb(&need(req.vote, "vote_request.vote")?),
        last_log_id: opt_log_id_from_pb(&req.last_log_id),
    })
}

pub fn vote_reply_to_pb(resp: &VoteResponse<NodeId>) -> pb::VoteReply {
    pb::VoteReply {
        vote: Some(vote_to_pb(&resp.vote)),
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_to_pb(&resp.last_log_id),
    }
}

pub fn vote_reply_from_pb(resp: pb::VoteReply) -> Result<VoteResponse<NodeId>, Malformed> {
    Ok(VoteResponse {
        vote: vote_from_pb(&need(resp.vote, "vote_reply.vote")?),
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_from_pb(&resp.last_log_id),
    })
}

pub fn snapshot_meta_to_pb(meta: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        last_log_id: opt_log_id_to_pb(&meta.last_log_id),
        last_membership: Some(stored_membership_to_pb(&meta.last_membership)),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

pub fn snapshot_meta_from_pb(meta: pb::SnapshotMeta) -> Result<SnapshotMeta, Malformed> {
    Ok(SnapshotMeta {
        last_log_id: opt_log_id_from_pb(&meta.last_log_id),
        last_membership: stored_membership_from_pb(&need(
            meta.last_membership,
            "snapshot_meta.last_membership",
        )?),
        snapshot_id: meta.snapshot_id,
    })
}

pub fn snapshot_request_to_pb(
    req: &InstallSnapshotRequest<TypeConfig>,
) -> pb::InstallSnapshotRequest {
    pb::InstallSnapshotRequest {
        vote: Some(vote_to_pb(&req.vote)),
        meta: Some(snapshot_meta_to_pb(&req.meta)),
        offset: req.offset,
        data: req.data.clone().into(),
        done: req.done,
    }
}

pub fn snapshot_request_from_pb(
    req: pb::InstallSnapshotRequest,
) -> Result<InstallSnapshotRequest<TypeConfig>, Malformed> {
    Ok(InstallSnapshotRequest {
        vote: vote_from_pb(&need(req.vote, "install_snapshot.vote")?),
        meta: snapshot_meta_from_pb(need(req.meta, "install_snapshot.meta")?)?,
        offset: req.offset,
        data: req.data.to_vec(),
        done: req.done,
    })
}

pub fn snapshot_reply_from_pb(
    resp: pb::InstallSnapshotReply,
) -> Result<InstallSnapshotResponse<NodeId>, Malformed> {
    Ok(InstallSnapshotResponse {
        vote: vote_from_pb(&need(resp.vote, "install_snapshot_reply.vote")?),
    })
}
