//! The old owner's side of a takeover and the other requests the cluster service hands this
//! node's broker (forwarded messages, releases, server-published wills, operators' session
//! requests).

use std::sync::Arc;

use berth_cluster::convert::{delivery_to_pb, message_from_pb};
use berth_cluster::pb;
use berth_core::{ClientId, Event, Forwarded};
use berth_server::{BrokerHandle, Exported};
use tonic::Status;

use berth_cluster::convert::{client_id, export_to_pb};

use crate::cluster_link::ClusterLink;

/// The old owner's half, served to the cluster service.
#[derive(Debug)]
pub struct BrokerEndpoint {
    pub(crate) broker: BrokerHandle,
    pub(crate) link: Arc<ClusterLink>,
}

/// How long an export waits for an import of the same session still under way here (or for
/// its QoS 2 PUBLISHes still out, see `Broker::export_waits`): below the
/// puller's own wait for the header (`TAKEOVER_HEADER_WAIT`, 20 s).
const IMPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

fn unavailable<E: std::fmt::Display>(e: E) -> Status {
    Status::unavailable(e.to_string())
}

impl berth_cluster::LocalBroker for BrokerEndpoint {
    fn forward(
        &self,
        batch: pb::ForwardBatch,
    ) -> berth_cluster::BoxFuture<Result<pb::ForwardAck, Status>> {
        let broker = self.broker.clone();
        Box::pin(async move {
            let mut messages = Vec::with_capacity(batch.messages.len());
            let mut accepted = 0;
            let retry = batch.retry;
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
                    retried: retry || forwarded.retried,
                });
            }
            let not_owned = broker
                .forwarded(messages)
                .await
                .ok_or_else(|| unavailable("the broker is gone"))?;
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
        let broker = self.broker.clone();
        let link = self.link.clone();
        Box::pin(async move {
            let client = client_id(&request.client_id)
                .ok_or_else(|| Status::invalid_argument("client id"))?;
            // The broker must have seen the claim (and stopped routing into its copy) before
            // the copy is read; otherwise it would not even know the session is moving.
            if !link.broker_caught_up(request.claim_log_index).await {
                return Err(Status::unavailable("the claim has not reached this broker"));
            }
            // A session still arriving here from the node before (a chained takeover) is
            // exported once complete, not answered as absent; one whose QoS 2 PUBLISHes still
            // wait for other nodes, once their outcome is known (`Broker::export_waits`). An
            // import still running when the wait ends refuses the export
            // (`ExportError::StillArriving`: unavailable, the puller goes on without it).
            let asked = Event::ExportWanted {
                client: client.clone(),
                epoch: berth_core::Epoch(request.epoch),
            };
            broker.notify(asked).await;
            let deadline = tokio::time::Instant::now() + IMPORT_WAIT;
            let exported = loop {
                let may_wait = tokio::time::Instant::now() < deadline;
                match broker
                    .export(client.clone(), berth_core::Epoch(request.epoch), may_wait)
                    .await
                    .ok_or_else(|| unavailable("the broker is gone"))?
                {
                    Exported::Waits => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    Exported::Ready(exported) => break exported.map_err(unavailable)?,
                }
            };
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                let Some((export, first)) = exported.map(|boxed| *boxed) else {
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
                let mut page = first;
                loop {
                    let (deliveries, next) = match page {
                        Ok(page) => page,
                        Err(error) => {
                            let _ = tx.send(Err(Status::internal(error.to_string()))).await;
                            return;
                        }
                    };
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
                    let Some(from) = next else {
                        return;
                    };
                    page = match broker.export_queue(client.clone(), Some(from)).await {
                        Some(page) => page,
                        None => return,
                    };
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
        publish_message(&self.broker, message)
    }

    fn session_admin(
        &self,
        request: pb::SessionAdminRequest,
    ) -> berth_cluster::BoxFuture<Result<pb::SessionAdminReply, Status>> {
        Box::pin(crate::admin::answer(self.link.clone(), request))
    }

    fn release(&self, request: pb::ReleaseRequest) -> berth_cluster::BoxFuture<Result<(), Status>> {
        let broker = self.broker.clone();
        Box::pin(async move {
            let client = client_id(&request.client_id)
                .ok_or_else(|| Status::invalid_argument("client id"))?;
            let event = Event::Release {
                client,
                epoch: berth_core::Epoch(request.epoch),
            };
            if broker.call(event).await {
                Ok(())
            } else {
                Err(unavailable("the broker is gone"))
            }
        })
    }
}

fn publish_message(
    broker: &BrokerHandle,
    message: pb::Message,
) -> berth_cluster::BoxFuture<Result<(), Status>> {
    let broker = broker.clone();
    Box::pin(async move {
        let message =
            message_from_pb(message).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let event = Event::PublishMessage {
            message: Box::new(message),
        };
        if broker.call(event).await {
            Ok(())
        } else {
            Err(unavailable("the broker is gone"))
        }
    })
}

fn chunk_header(header: pb::SessionHeader) -> pb::TakeoverChunk {
    pb::TakeoverChunk {
        part: Some(pb::takeover_chunk::Part::Header(header)),
    }
}
