//! The broker's session changes recorded in the registry (`Action::Replicate`), by one task.
//!
//! The broker thread hands each change over a channel and goes on; the task hands it to the
//! proposer (which batches it with whatever else is proposed) and reports its answer: the commit
//! time, or a warning when it failed (best effort: the owner's own state stays authoritative for
//! its sessions). One task for every change, not one each: a task per change held ~1.3 KB until
//! its commit, and when 10,000 clean sessions ended at once (a load balancer dropping a node's
//! connections) the heap rose 7.6 MB above what the connections had held before it fell; a
//! queued command is a few hundred bytes, and the heap now only falls
//! (`bench/results/2026-12-06-session34.md`). And the changes reach the proposer in the order the
//! broker made them, which racing tasks did not promise.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use berth_cluster::{ClusterNode, Submitted};
use berth_core::Command;
use berth_server::BrokerHandle;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Answers awaited that the recorder keeps room for between bursts.
const KEPT_CAPACITY: usize = 256;

/// Starts the recording task on the current runtime; returns the way to it.
pub(crate) fn start(node: ClusterNode, broker: BrokerHandle) -> UnboundedSender<Command> {
    let (changes, received) = unbounded_channel();
    tokio::spawn(record(node, broker, received));
    changes
}

/// Submits each change as it comes and reports the answers in the order submitted (the proposer
/// answers its batches in order, so a report waits for no one but the batch before). Ends when
/// the broker's side is gone and every answer is in.
async fn record(node: ClusterNode, broker: BrokerHandle, mut changes: UnboundedReceiver<Command>) {
    let mut waiting: VecDeque<(Instant, Submitted)> = VecDeque::new();
    let mut open = true;
    poll_fn(|cx| {
        while open {
            match changes.poll_recv(cx) {
                Poll::Ready(Some(command)) => {
                    waiting.push_back((Instant::now(), node.submit(&command)));
                }
                Poll::Ready(None) => open = false,
                Poll::Pending => break,
            }
        }
        while let Some((started, submitted)) = waiting.front_mut() {
            let Poll::Ready(answer) = Pin::new(submitted).poll(cx) else {
                break;
            };
            match answer {
                Ok(_) => broker.metrics().observe_raft_commit(started.elapsed()),
                Err(error) => {
                    tracing::warn!(%error, "could not record a session change in the cluster");
                }
            }
            waiting.pop_front();
        }
        if waiting.is_empty() && waiting.capacity() > KEPT_CAPACITY {
            // A burst's room goes back once its answers are in (a mass disconnect of 100,000
            // sessions would otherwise keep 2.4 MB here).
            waiting.shrink_to(KEPT_CAPACITY);
        }
        if open || !waiting.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
}
