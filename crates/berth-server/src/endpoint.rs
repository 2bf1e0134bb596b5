//! The old owner's side of a takeover and the other requests the cluster service hands this
//! node's broker (forwarded messages, releases, server-published wills).

use std::sync::Arc;

use berth_cluster::message::{delivery_to_pb, message_from_pb};
use berth_cluster::pb;
use berth_core::{ClientId, Event, Forwarded};
use tokio::sync::mpsc::Sender;
use tokio::sync::oneshot;
use tonic::Status;

use berth_cluster::session_pb::{client_id, export_to_pb};

use crate::cluster_link::ClusterLink;
use crate::runtime::Command;

/// The old owner's half, served to the cluster service.
#[derive(Debug)]
pub struct BrokerEndpoint {
    pub(crate) commands: Sender<Command>,
    pub(crate) link: Arc<ClusterLink>,
}

fn unavailable<E: std::fmt::Display>(e: E) -> Status {
    Status::unavailable(e.to_string())
}

impl berth_cluster::LocalBroker for BrokerEndpoint {
    fn forward(
        &self,
        batch: pb::ForwardBatch,
    ) -> berth_cluster::BoxFuture<Result<pb::ForwardAck, Status>> {
        let commands = self.commands.clone();
        Box::pin(async move {
            let mut messages = Vec::with_capacity(batch.messages.len());
            let mut accepted = 0;
            for forwarded in batch.messages {
                let message = forwarded
                    .message
                    .ok_or_else(|| Status::invalid_argument("forwarded message is missing"))?;
                let message = message_from_pb(message)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                let clients: Vec<ClientId> = forwarded
                    .client_ids
                    .iter()
                    .filter_map(|c| client_id(c))
                    .collect();
                accepted += clients.len() as u64;
                messages.push(Forwarded {
                    message: Arc::new(message),
                    clients,
                    publisher: forwarded.publisher.as_deref().and_then(client_id),
                });
            }
            let (reply, wait) = oneshot::channel();
            commands
                .send(Command::Forwarded { messages, reply })
                .await
                .map_err(unavailable)?;
            let not_owned = wait.await.map_err(unavailable)?;
            Ok(pb::ForwardAck {
                accepted: accepted - not_owned.len() as u64,
                not_owned: not_owned.iter().map(|c| c.as_str().to_string()).collect(),
            })
        })
    }

    fn takeover(
        &self,
        request: pb::TakeoverRequest,
    ) -> berth_cluster::BoxFuture<Result<berth_cluster::TakeoverStream, Status>> {
        let commands = self.commands.clone();
        let link = self.link.clone();
        Box::pin(async move {
            let client = client_id(&request.client_id)
                .ok_or_else(|| Status::invalid_argument("client id"))?;
            // The broker must have seen the claim (and stopped routing into its copy) before
            // the copy is read; otherwise it would not even know the session is moving.
            if !link.broker_caught_up(request.claim_log_index).await {
                return Err(Status::unavailable("the claim has not reached this broker"));
            }
            let (reply, wait) = oneshot::channel();
            commands
                .send(Command::Export {
                    client: client.clone(),
                    epoch: berth_core::Epoch(request.epoch),
                    reply,
                })
                .await
                .map_err(unavailable)?;
            let export = wait.await.map_err(unavailable)?.map_err(unavailable)?;
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                let Some(export) = export else {
                    let header = pb::SessionHeader::default();
                    let _ = tx.send(Ok(chunk_header(header))).await;
                    return;
                };
                if tx
                    .send(Ok(chunk_header(export_to_pb(&export))))
                    .await
                    .is_err()
                {
                    return;
                }
                let mut from = None;
                loop {
                    let (reply, wait) = oneshot::channel();
                    let asked = Command::ExportQueue {
                        client: client.clone(),
                        from,
                        reply,
                    };
                    if commands.send(asked).await.is_err() {
                        return;
                    }
                    let page = match wait.await {
                        Ok(Ok(page)) => page,
                        Ok(Err(error)) => {
                            let _ = tx.send(Err(Status::internal(error.to_string()))).await;
                            return;
                        }
                        Err(_) => return,
                    };
                    let (deliveries, next) = page;
                    if !deliveries.is_empty() {
                        let chunk = pb::TakeoverChunk {
                            part: Some(pb::takeover_chunk::Part::Queued(pb::QueuedBatch {
                                deliveries: deliveries.iter().map(delivery_to_pb).collect(),
                            })),
                        };
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                    match next {
                        Some(seq) => from = Some(seq),
                        None => return,
                    }
                }
            });
            let stream: berth_cluster::TakeoverStream =
                Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
            Ok(stream)
        })
    }

    fn offer(
        &self,
        request: pb::OfferRequest,
    ) -> berth_cluster::BoxFuture<Result<pb::OfferReply, Status>> {
        let link = self.link.clone();
        Box::pin(async move {
            let accepted = crate::stranded::accept_offer(link, request).await;
            Ok(pb::OfferReply { accepted })
        })
    }

    fn publish(&self, message: pb::Message) -> berth_cluster::BoxFuture<Result<(), Status>> {
        publish_message(&self.commands, message)
    }

    fn release(&self, request: pb::ReleaseRequest) -> berth_cluster::BoxFuture<Result<(), Status>> {
        let commands = self.commands.clone();
        Box::pin(async move {
            let client = client_id(&request.client_id)
                .ok_or_else(|| Status::invalid_argument("client id"))?;
            let (done, wait) = oneshot::channel();
            commands
                .send(Command::Call {
                    event: Event::Release {
                        client,
                        epoch: berth_core::Epoch(request.epoch),
                    },
                    done: Some(done),
                })
                .await
                .map_err(unavailable)?;
            wait.await.map_err(unavailable)
        })
    }
}

fn publish_message(
    commands: &Sender<Command>,
    message: pb::Message,
) -> berth_cluster::BoxFuture<Result<(), Status>> {
    let commands = commands.clone();
    Box::pin(async move {
        let message =
            message_from_pb(message).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (done, wait) = oneshot::channel();
        commands
            .send(Command::Call {
                event: Event::PublishMessage {
                    message: Box::new(message),
                },
                done: Some(done),
            })
            .await
            .map_err(unavailable)?;
        wait.await.map_err(unavailable)
    })
}

fn chunk_header(header: pb::SessionHeader) -> pb::TakeoverChunk {
    pb::TakeoverChunk {
        part: Some(pb::takeover_chunk::Part::Header(header)),
    }
}
