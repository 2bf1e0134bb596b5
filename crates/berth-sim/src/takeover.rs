//! Takeover (`cluster_link.rs` / `endpoint.rs` of `berth-node`): the new owner's pull (header,
//! pages, release; the registry's subscriptions as fallback when the old owner does not answer;
//! the same pull for a stranded backlog), and the old owner's endpoint (wait for the claim,
//! export state and pages; forwards, releases and offers it serves).

use crate::NodeId;
use berth_cluster::convert::{delivery_from_pb, delivery_to_pb};
use berth_core::{ClientId, Delivery, Epoch, Event};

use crate::net::{NetBody, NetMsg, Purpose};
use crate::node::*;
use crate::sim::{Id, NodeEv, Sim, Timer};
use crate::wire::{client_id, export_over_wire, forwarded_from_pb};

impl Sim {
    pub(crate) fn start_pull(
        &mut self,
        n: NodeId,
        client: ClientId,
        from: NodeId,
        epoch: u64,
        log_index: u64,
        mode: PullMode,
    ) {
        if matches!(mode, PullMode::Takeover { .. }) {
            self.call(
                n,
                Event::ImportBegin {
                    client: client.clone(),
                },
            );
        }
        let pull = self.id();
        let body = NetBody::Takeover {
            client: client.as_str().to_string(),
            epoch,
            claim_log_index: log_index,
        };
        let rpc = self.start_rpc(n, from, Purpose::Pull { pull }, body, Some(PULL_TIMEOUT));
        self.at_node(
            n,
            TAKEOVER_HEADER_WAIT,
            NodeEv::Timer(Timer::PullHeader { rpc }),
        );
        self.node_mut(n).pulls.insert(
            pull,
            Pull {
                client,
                from,
                epoch,
                mode,
                rpc,
                header_seen: false,
                found: false,
                expected: 0,
                received: 0,
                late: Vec::new(),
                late_export: None,
            },
        );
    }

    pub(crate) fn pull_chunk(&mut self, n: NodeId, id: Id, result: Result<NetBody, String>) {
        let Some(pull) = self.node_mut(n).pulls.get_mut(&id) else {
            return;
        };
        let client = pull.client.clone();
        let takeover = matches!(pull.mode, PullMode::Takeover { .. });
        match result {
            Err(error) => self.finish_pull(n, id, Err(error)),
            Ok(NetBody::Header(None)) => self.finish_pull(n, id, Ok(false)),
            Ok(NetBody::Header(Some(export))) => {
                pull.header_seen = true;
                pull.found = true;
                pull.expected = export.queued;
                if takeover {
                    self.call(n, Event::ImportState { client, export });
                } else {
                    pull.late_export = Some(export);
                }
            }
            Ok(NetBody::Page(deliveries)) => {
                let page: Result<Vec<Delivery>, _> =
                    deliveries.into_iter().map(delivery_from_pb).collect();
                let Ok(page) = page else {
                    let rpc = pull.rpc;
                    self.node_mut(n).rpcs.remove(&rpc);
                    self.finish_pull(n, id, Err("bad delivery".into()));
                    return;
                };
                pull.received += page.len() as u64;
                if takeover {
                    self.call(n, Event::ImportQueue { client, page });
                } else {
                    pull.late.extend(page);
                }
            }
            Ok(NetBody::End) => {
                let (found, received, expected, from, epoch) = (
                    pull.found,
                    pull.received,
                    pull.expected,
                    pull.from,
                    pull.epoch,
                );
                if !found {
                    self.finish_pull(n, id, Ok(false));
                } else if received != expected {
                    let error = format!(
                        "takeover stream ended after {received} of {expected} queued messages"
                    );
                    self.finish_pull(n, id, Err(error));
                } else if takeover {
                    // Stored before the old copy goes, as `ClusterLink::pull` does.
                    self.call(
                        n,
                        Event::ImportComplete {
                            client: client.clone(),
                            epoch: Epoch(epoch),
                        },
                    );
                    self.release(n, client, from, epoch, Some(id));
                } else {
                    let page = std::mem::take(&mut pull.late);
                    if let Some(export) = pull.late_export.take() {
                        self.call(
                            n,
                            Event::ImportLate {
                                client: client.clone(),
                                epoch: Epoch(epoch),
                                holder: berth_core::NodeId(from),
                                export,
                                page,
                            },
                        );
                    }
                    let accepts = self
                        .node(n)
                        .broker
                        .as_ref()
                        .is_some_and(|b| b.accepts_late_backlog(&client, Epoch(epoch)));
                    if accepts {
                        self.release(n, client, from, epoch, Some(id));
                    } else {
                        self.finish_pull(n, id, Ok(false));
                    }
                }
            }
            Ok(other) => self.finish_pull(n, id, Err(format!("unexpected {}", other.name()))),
        }
    }

    pub(crate) fn finish_pull(&mut self, n: NodeId, id: Id, result: Result<bool, String>) {
        let Some(pull) = self.node_mut(n).pulls.remove(&id) else {
            return;
        };
        self.node_mut(n).rpcs.remove(&pull.rpc);
        let client = pull.client;
        trace!(
            self,
            "n{n} pull of {client} from n{} done: {result:?}", pull.from
        );
        match pull.mode {
            PullMode::Takeover {
                conn,
                fallback,
                resume_if_absent,
            } => {
                if result.is_err() || (result == Ok(false) && resume_if_absent) {
                    // The old owner is unreachable, or holds nothing of a session in transit
                    // through another node: the registry's subscriptions; the backlog comes
                    // later as a stranded copy (`stranded.rs`). As `ClusterLink::take_over`.
                    self.report.fallbacks += 1;
                    self.call(
                        n,
                        Event::ImportState {
                            client: client.clone(),
                            export: fallback,
                        },
                    );
                }
                self.call(n, Event::ImportDone { client });
                if let Some(conn) = conn {
                    self.grant(n, conn, pull.epoch);
                }
            }
            PullMode::Late => {
                if result == Ok(true) {
                    self.report.stranded_recovered += 1;
                }
                self.node_mut(n).late_pulls.remove(&client);
            }
        }
    }

    pub(crate) fn release(
        &mut self,
        n: NodeId,
        client: ClientId,
        from: NodeId,
        epoch: u64,
        then: Option<Id>,
    ) {
        self.node_mut(n)
            .pulled
            .insert((client.clone(), epoch, from));
        let body = NetBody::Release {
            client: client.as_str().to_string(),
            epoch,
        };
        let purpose = Purpose::Release {
            client,
            from,
            epoch,
            then,
        };
        let p = self.cfg.release_loss_prob;
        if p > 0.0 && self.rng.chance(p) {
            self.report.releases_lost += 1;
            let after = self.rng.range(5, 2_000);
            self.lose_rpc(n, from, purpose, &body, after);
            return;
        }
        self.start_rpc(n, from, purpose, body, None);
    }

    pub(crate) fn serve_request(&mut self, n: NodeId, msg: NetMsg) {
        let NetMsg { from, rpc, body } = msg;
        match body {
            NetBody::Forward(batch, retry) => match forwarded_from_pb(&batch, retry) {
                Ok(messages) => {
                    let node = self.node_mut(n);
                    node.next_token += 1;
                    let token = node.next_token;
                    node.fwd_replies
                        .insert(token, ReplyTo::Remote { from, rpc });
                    self.call(n, Event::Forwarded { token, messages });
                }
                Err(error) => self.send(n, from, rpc, NetBody::Error(error)),
            },
            NetBody::Takeover {
                client,
                epoch,
                claim_log_index,
            } => {
                let Some(client) = client_id(&client) else {
                    self.send(n, from, rpc, NetBody::Error("client id".into()));
                    return;
                };
                self.node_mut(n).endpoint_waits.push(EndpointWait {
                    from,
                    rpc,
                    client,
                    epoch,
                    index: claim_log_index,
                    import_deadline: None,
                    import_armed: false,
                });
                if self.node(n).applied >= claim_log_index {
                    self.endpoint_export(n, from, rpc);
                } else {
                    self.at_node(
                        n,
                        CAUGHT_UP_WAIT,
                        NodeEv::Timer(Timer::EndpointApplied { from, rpc }),
                    );
                }
            }
            NetBody::Release { client, epoch } => {
                if let Some(client) = client_id(&client) {
                    self.call(
                        n,
                        Event::Release {
                            client,
                            epoch: Epoch(epoch),
                        },
                    );
                }
                self.send(n, from, rpc, NetBody::Released);
            }
            NetBody::Offer {
                client,
                epoch,
                holder,
            } => {
                let accepted = self.accept_offer(n, &client, epoch, holder);
                self.send(n, from, rpc, NetBody::OfferReply(accepted));
            }
            _ => {}
        }
    }

    /// Where the pull `rpc` of node `from` waits on node `n`.
    fn endpoint_wait(&self, n: NodeId, from: NodeId, rpc: Id) -> Option<usize> {
        self.node(n)
            .endpoint_waits
            .iter()
            .position(|w| w.from == from && w.rpc == rpc)
    }

    /// The claim has reached this broker: the session's state, then its queue in pages.
    pub fn endpoint_export(&mut self, n: NodeId, from: NodeId, rpc: Id) {
        let Some(at) = self.endpoint_wait(n, from, rpc) else {
            return;
        };
        let wait = &self.node(n).endpoint_waits[at];
        if wait.import_deadline.is_none() {
            // First look at this pull (`BrokerEndpoint::takeover`): the broker hears who asks.
            let event = Event::ExportWanted {
                client: wait.client.clone(),
                epoch: Epoch(wait.epoch),
            };
            self.call(n, event);
        }
        let now = self.now;
        // (The call above may have changed the waits.)
        let Some(at) = self.endpoint_wait(n, from, rpc) else {
            return;
        };
        let node = self.node_mut(n);
        let pending = node
            .broker
            .as_ref()
            .is_some_and(|b| b.export_waits(&node.endpoint_waits[at].client));
        if pending {
            // Still arriving here from the node before, or QoS 2 PUBLISHes of it still out:
            // exported once settled (`Broker::export_waits`); an import still running at the
            // deadline refuses the export (`ExportError::StillArriving`).
            let wait = &mut node.endpoint_waits[at];
            let deadline = *wait.import_deadline.get_or_insert(now + IMPORT_WAIT);
            if now < deadline {
                if !wait.import_armed {
                    wait.import_armed = true;
                    self.at_node(n, 20, NodeEv::Timer(Timer::EndpointImport { from, rpc }));
                }
                return;
            }
        }
        let node = self.node_mut(n);
        let wait = node.endpoint_waits.remove(at);
        let Some(broker) = node.broker.as_mut() else {
            return;
        };
        let mut chunks = Vec::new();
        match broker.export_session(&wait.client, Epoch(wait.epoch)) {
            Err(error) => chunks.push(NetBody::Error(error.to_string())),
            Ok(None) => chunks.push(NetBody::Header(None)),
            Ok(Some(export)) => match export_over_wire(&export, wait.epoch) {
                Err(error) => chunks.push(NetBody::Error(error)),
                Ok(export) => {
                    chunks.push(NetBody::Header(Some(Box::new(export))));
                    let mut next = None;
                    loop {
                        match broker.export_queue(&wait.client, next, EXPORT_PAGE) {
                            Err(error) => {
                                chunks.push(NetBody::Error(error.to_string()));
                                break;
                            }
                            Ok((page, more)) => {
                                if !page.is_empty() {
                                    chunks.push(NetBody::Page(
                                        page.iter().map(delivery_to_pb).collect(),
                                    ));
                                }
                                match more {
                                    Some(seq) => next = Some(seq),
                                    None => {
                                        chunks.push(NetBody::End);
                                        break;
                                    }
                                }
                            }
                        }
                    }
                }
            },
        }
        trace!(
            self,
            "n{n} exports {} e{} to n{from}: {} chunks",
            wait.client,
            wait.epoch,
            chunks.len()
        );
        for chunk in chunks {
            self.send(n, from, rpc, chunk);
        }
    }

    pub(crate) fn endpoint_timeout(&mut self, n: NodeId, from: NodeId, rpc: Id) {
        let node = self.node_mut(n);
        let Some(at) = node
            .endpoint_waits
            .iter()
            .position(|w| w.from == from && w.rpc == rpc && w.import_deadline.is_none())
        else {
            return;
        };
        node.endpoint_waits.remove(at);
        self.send(
            n,
            from,
            rpc,
            NetBody::Error("the claim has not reached this broker".into()),
        );
    }
}
