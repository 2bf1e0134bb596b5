//! A client connection on a node (`berth-server`'s connection task with `berth-node`'s
//! `admission.rs`): the CONNECT's claim through Raft, the wait until the broker has applied it,
//! the takeover it may start, `ConnectAs`; SUBSCRIBE committed before the broker sees it; a
//! connection's packets handled in order behind a commit.

use std::collections::VecDeque;

use crate::NodeId;
use berth_cluster::pb;
use berth_codec::{ConnAck, ConnectReasonCode, Packet, SubAck, SubAckReasonCode};
use berth_core::{
    BrokerConfig, CloseReason, ConnId, CopyRef, Epoch, Event, Qos2Doubt, SessionExport,
    SessionRecord,
};

use crate::node::*;
use crate::raft::ProposalFor;
use crate::sim::{FromClient, NodeEv, Sim, Timer, ToClient};
use crate::wire::{client_id, expiry_of, needs_commit, packet_command, subscriptions_from};

impl Sim {
    pub(crate) fn client_bytes(&mut self, n: NodeId, conn: ConnId, item: FromClient) {
        if let FromClient::Connect(connect) = item {
            if self.node(n).conns.contains_key(&conn) {
                return;
            }
            let protocol = connect.protocol;
            self.node_mut(n).conns.insert(
                conn,
                SConn {
                    protocol,
                    serving: false,
                    busy: false,
                    backlog: VecDeque::new(),
                    grant: None,
                },
            );
            self.start_claim(n, conn, connect);
            return;
        }
        let Some(sc) = self.node_mut(n).conns.get_mut(&conn) else {
            return;
        };
        if !sc.serving || sc.busy || !sc.backlog.is_empty() {
            sc.backlog.push_back(item);
            return;
        }
        self.serve_item(n, conn, item);
    }

    pub(crate) fn serve_item(&mut self, n: NodeId, conn: ConnId, item: FromClient) {
        match item {
            FromClient::Packet(packet) => {
                let grant = self.node(n).conns.get(&conn).and_then(|c| c.grant.clone());
                if needs_commit(&packet)
                    && let Some((client, epoch)) = grant
                    && let Some(command) = packet_command(&client, epoch, &packet)
                {
                    if let Some(sc) = self.node_mut(n).conns.get_mut(&conn) {
                        sc.busy = true;
                    }
                    self.propose(n, command, ProposalFor::Packet { conn, packet });
                    return;
                }
                self.call(n, Event::Packet { conn, packet });
            }
            FromClient::Fin => {
                self.node_mut(n).conns.remove(&conn);
                self.call(
                    n,
                    Event::Closed {
                        conn,
                        reason: CloseReason::ConnectionLost,
                    },
                );
            }
            FromClient::Connect(_) => {}
        }
    }

    pub(crate) fn drain_backlog(&mut self, n: NodeId, conn: ConnId) {
        loop {
            let Some(sc) = self.node_mut(n).conns.get_mut(&conn) else {
                return;
            };
            if !sc.serving || sc.busy {
                return;
            }
            let Some(item) = sc.backlog.pop_front() else {
                return;
            };
            self.serve_item(n, conn, item);
        }
    }

    pub(crate) fn start_claim(
        &mut self,
        n: NodeId,
        conn: ConnId,
        connect: Box<berth_codec::Connect>,
    ) {
        let session = BrokerConfig::default().session;
        // Simulated clients always name themselves: every CONNECT plans a claim.
        let Some(command) = crate::wire::claim_command(n, &connect, &session, self.unix().0) else {
            return;
        };
        self.node_mut(n).claims.insert(
            conn,
            Claim {
                connect,
                stage: ClaimStage::Proposing,
            },
        );
        self.propose(n, command, ProposalFor::Claim { conn });
    }

    pub fn proposal_done(
        &mut self,
        n: NodeId,
        purpose: ProposalFor,
        result: Option<pb::CommandResult>,
    ) {
        match purpose {
            ProposalFor::Claim { conn } => self.claim_committed(n, conn, result),
            ProposalFor::Packet { conn, packet } => self.packet_committed(n, conn, packet, result),
            ProposalFor::Replicate => {}
        }
    }

    pub(crate) fn claim_committed(
        &mut self,
        n: NodeId,
        conn: ConnId,
        result: Option<pb::CommandResult>,
    ) {
        let claimed = result.and_then(|r| match r.kind {
            Some(pb::command_result::Kind::Claim(claimed)) => Some((r.log_index, claimed)),
            _ => None,
        });
        let Some((index, claimed)) = claimed else {
            self.refuse_connect(n, conn, "the claim did not commit");
            return;
        };
        let applied = self.node(n).applied;
        let Some(claim) = self.node_mut(n).claims.get_mut(&conn) else {
            return;
        };
        claim.stage = ClaimStage::WaitApplied {
            index,
            claimed: Box::new(claimed),
        };
        if applied >= index {
            self.claim_applied(n, conn);
        } else {
            self.at_node(
                n,
                CAUGHT_UP_WAIT,
                NodeEv::Timer(Timer::ClaimApplied { conn }),
            );
        }
    }

    pub(crate) fn claim_timeout(&mut self, n: NodeId, conn: ConnId) {
        let waiting = self
            .node(n)
            .claims
            .get(&conn)
            .is_some_and(|c| matches!(c.stage, ClaimStage::WaitApplied { .. }));
        if waiting {
            self.refuse_connect(n, conn, "the broker did not apply the claim in time");
        }
    }

    /// The broker has applied the claim: take the session over if another node holds it.
    pub fn claim_applied(&mut self, n: NodeId, conn: ConnId) {
        let Some(claim) = self.node_mut(n).claims.get_mut(&conn) else {
            return;
        };
        let ClaimStage::WaitApplied { index, claimed } =
            std::mem::replace(&mut claim.stage, ClaimStage::TakingOver)
        else {
            return;
        };
        let connect = claim.connect.clone();
        let epoch = claimed.epoch;
        let Some(client) = client_id(connect.client_id.as_str()) else {
            self.refuse_connect(n, conn, "client id");
            return;
        };
        let from = claimed.previous_owner.filter(|p| *p != n);
        match from {
            Some(from) if claimed.session_present => {
                let session = BrokerConfig::default().session;
                let fallback = SessionExport {
                    record: SessionRecord {
                        epoch: Epoch(epoch),
                        protocol: connect.protocol,
                        expiry: expiry_of(&session, &connect),
                        expires_at: None,
                        will: None,
                        will_due_at: None,
                        qos2_state_elsewhere: true,
                        incoming_qos2_elsewhere: false,
                        qos2_doubt: Qos2Doubt {
                            lacking: Some(CopyRef {
                                node: berth_core::NodeId(from),
                                epoch: Epoch(claimed.previous_epoch),
                            }),
                            // As `berth-node`'s admission: where that owner took it from.
                            earlier: berth_cluster::convert::claimed_from_pb(&claimed)
                                .ok()
                                .and_then(|c| c.previous_from)
                                .into_iter()
                                .collect(),
                            released: Vec::new(),
                        },
                        landed: Epoch(epoch),
                    },
                    subscriptions: subscriptions_from(&claimed.subscriptions),
                    inflight: Vec::new(),
                    incoming_qos2: Vec::new(),
                    queued: 0,
                    seen: Vec::new(),
                    qos2_retry: Vec::new(),
                    served: None,
                };
                self.report.takeovers += 1;
                trace!(self, "n{n} takes {client} over from n{from} at e{epoch}");
                self.start_pull(
                    n,
                    client,
                    from,
                    epoch,
                    index,
                    PullMode::Takeover {
                        conn: Some(conn),
                        fallback: Box::new(fallback),
                        resume_if_absent: crate::wire::resumes_without_state(&claimed),
                    },
                );
            }
            _ => self.grant(n, conn, epoch),
        }
    }

    /// The claim is done: the broker gets the CONNECT as `ConnectAs` at `epoch`.
    pub(crate) fn grant(&mut self, n: NodeId, conn: ConnId, epoch: u64) {
        let Some(claim) = self.node_mut(n).claims.remove(&conn) else {
            return;
        };
        let Some(client) = client_id(claim.connect.client_id.as_str()) else {
            return;
        };
        let Some(sc) = self.node_mut(n).conns.get_mut(&conn) else {
            return;
        };
        sc.serving = true;
        sc.grant = Some((client.clone(), epoch));
        self.conn_epoch.insert(conn, epoch);
        trace!(self, "n{n} ConnectAs {client} e{epoch} conn {}", conn.0);
        self.call(
            n,
            Event::ConnectAs {
                conn,
                connect: claim.connect,
                epoch: Epoch(epoch),
                assigned: false,
                source: None,
                grants: None,
                principal: None,
            },
        );
        self.drain_backlog(n, conn);
    }

    /// The broker accepted `conn` (a successful CONNACK reached its client): the connection
    /// runs its session at the epoch it was granted.
    pub(crate) fn note_started(&mut self, conn: ConnId) {
        let Some(node) = self.conns.get(&conn).map(|c| c.node) else {
            return;
        };
        let Some((client, epoch)) = self
            .node(node)
            .conns
            .get(&conn)
            .and_then(|c| c.grant.clone())
        else {
            return;
        };
        self.ledger
            .note_connect_as(&mut self.report, &client, epoch, node, conn, self.now);
    }

    pub(crate) fn refuse_connect(&mut self, n: NodeId, conn: ConnId, why: &str) {
        self.node_mut(n).claims.remove(&conn);
        let Some(sc) = self.node_mut(n).conns.remove(&conn) else {
            return;
        };
        self.report.refused_connects += 1;
        trace!(self, "n{n} refuses conn {}: {why}", conn.0);
        let refused = Packet::ConnAck(Box::new(ConnAck::refused(
            ConnectReasonCode::ServerUnavailable,
        )));
        self.send_to_client(conn, &refused, sc.protocol);
        self.node_to_client(conn, ToClient::Close);
    }

    pub(crate) fn packet_committed(
        &mut self,
        n: NodeId,
        conn: ConnId,
        packet: Packet,
        result: Option<pb::CommandResult>,
    ) {
        let committed =
            result.is_some_and(|r| !matches!(r.kind, Some(pb::command_result::Kind::Fenced(_))));
        let Some(sc) = self.node_mut(n).conns.get_mut(&conn) else {
            return;
        };
        sc.busy = false;
        let protocol = sc.protocol;
        if committed {
            self.call(n, Event::Packet { conn, packet });
        } else if let Packet::Subscribe(subscribe) = &packet {
            let suback = Packet::SubAck(SubAck {
                packet_id: subscribe.packet_id,
                reason_codes: vec![
                    SubAckReasonCode::UnspecifiedError;
                    subscribe.subscriptions.len()
                ],
                properties: Default::default(),
            });
            self.send_to_client(conn, &suback, protocol);
        }
        self.drain_backlog(n, conn);
    }
}
