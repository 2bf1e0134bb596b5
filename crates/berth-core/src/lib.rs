//! Berth's broker rules, without IO: no tokio, no sockets, no RocksDB (CI checks this with
//! `scripts/check-deps.sh`).
//!
//! ```text
//!   server (tokio)                         berth-core
//!   ──────────────                         ──────────
//!   decoded packet ─▶ Event ─▶ Broker::handle(now, event) ─▶ Vec<Action>  (send, close)
//!   timer tick     ─▶ Event ─┘        │
//!                                     └─▶ Store port (trait) ─▶ berth-store (RocksDB) / MemStore
//! ```
//!
//! The broker is the single writer of all session and routing state. Time is injected with
//! every event as [`UnixMillis`], so unit tests drive expiry and will delays with a fake clock.
//!
//! The cluster's replicated registry is here too ([`registry`]): what a packet asks of it
//! (`registry::plan`), its commands and their pure [`Registry::apply`], which yields the
//! [`ClusterEvent`]s every node's broker applies. A cluster node (berth-node) proposes only what
//! `plan` returns, and Raft (berth-cluster) only carries the commands: every protocol rule, also
//! in a cluster, is decided in this crate.

pub mod acl;
pub mod broker;
pub mod cluster;
pub mod config;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod fast_map;
pub mod ids;
pub mod index;
pub mod lazy;
pub mod mem_store;
pub mod message;
pub mod registry;
pub mod stats;
pub mod store;
pub mod stranded_offers;
pub mod time;
pub mod vec_map;

pub use broker::{
    Action, AdminAnswer, AdminError, AdminRequest, Broker, CloseReason, Discarded, Event, Kicked,
    Purged, QueuedView, SessionView,
};
pub use cluster::{ClusterEvent, ExportError, Forwarded, RemoteSession, Replicate, SessionExport};
pub use config::{
    BrokerConfig, DropPolicy, HandoffLimits, Limit, ProtocolLimits, QueueConfig, SessionConfig,
    SubscribeRefusal,
};
pub use ids::{ClientId, ConnId, Epoch, MessageId, NodeId, QueueSeq};
pub use mem_store::MemStore;
pub use message::{Delivery, Message};
pub use registry::{Command, Outcome, Registry};
pub use stats::{CloseCause, DropReason, LimitReason, Stats};
pub use store::{
    Batch, CopyRef, HandoffRecord, InflightRecord, Loaded, LoadedSession, Op, Qos2Doubt,
    QueueBounds, SessionExpiry, SessionRecord, Store, StoreError, StoreMemory, SubscriptionRecord,
    WillRecord,
};
pub use time::UnixMillis;
