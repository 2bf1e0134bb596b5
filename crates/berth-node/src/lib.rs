//! The cluster port of `berth-server` ([`berth_server::ClusterPort`]) implemented over the
//! Raft registry and the gRPC services of `berth-cluster`.
//!
//! ```text
//!  connection ─plan (core)─▶ ClusterLink ─propose─▶ Raft ─ClusterEvent─▶ pump ─▶ broker
//!  broker ─Action::Forward─▶ forwarding.rs ─batched Forward RPC─▶ owner's endpoint.rs ─▶ its broker
//!  CONNECT elsewhere ─claim─▶ admission.rs ─takeover pull─▶ old owner's endpoint.rs (export pages)
//!  a copy left on an unreachable node ─stranded.rs─▶ offered to the owner once back
//!  admin API on any node ─admin.rs─▶ the session's owner (SessionAdmin RPC) ─▶ its broker
//! ```
//!
//! Nothing here decides a protocol rule: core plans what a CONNECT, SUBSCRIBE, UNSUBSCRIBE or
//! retained PUBLISH asks of the registry (`berth_core::registry::plan`: the empty-id rule, the
//! expiry clamp, the will, the ACL, the retained message) before a proposal is built; core's
//! `Registry` applies it; and every pb ⇄ core conversion is in `berth_cluster::convert`.

mod admin;
mod admission;
mod cluster_link;
mod endpoint;
mod forwarding;
mod port;
mod recorder;
mod stranded;

use std::sync::Arc;

use berth_core::BrokerConfig;
use berth_server::{BrokerHandle, ClusterPort, StartCluster};

pub use endpoint::BrokerEndpoint;

/// What a server needs to run as a cluster node: the started node, the registry changes its
/// state machine reports, and the slot through which its gRPC service reaches this broker.
#[derive(Debug)]
pub struct ClusterParts {
    pub node: berth_cluster::ClusterNode,
    pub events: tokio::sync::mpsc::UnboundedReceiver<(u64, Vec<berth_core::ClusterEvent>)>,
    pub slot: berth_cluster::BrokerSlot,
    /// How long a node may leave a forward and a probe unanswered before messages for its
    /// sessions are kept here instead (hinted handoff, `cluster.handoff_after`).
    pub handoff_after: std::time::Duration,
}

/// The port for `berth_server::serve_node`: once the broker thread can be reached, the link
/// starts (registry events flow to the broker) and the gRPC service gets its endpoint.
pub fn port(parts: ClusterParts, rules: BrokerConfig) -> StartCluster {
    Box::new(move |broker: BrokerHandle| {
        let link = cluster_link::ClusterLink::start(
            parts.node,
            parts.events,
            broker.clone(),
            rules,
            parts.handoff_after,
        );
        // Started here rather than by the link, which stranded.rs builds on (no import circle).
        tokio::spawn(stranded::offer_stranded_copies(link.clone()));
        let endpoint: Arc<dyn berth_cluster::LocalBroker> = Arc::new(BrokerEndpoint {
            broker,
            link: link.clone(),
        });
        let _ = parts.slot.set(endpoint);
        let port: Arc<dyn ClusterPort> = Arc::new(port::RaftPort(link));
        port
    })
}
