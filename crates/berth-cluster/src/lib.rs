//! Berth's cluster: openraft with its log and state machine in the node's RocksDB, typed
//! protobuf RPCs over pooled tonic channels, and the replicated session registry (core's
//! `berth_core::Registry`, applied here to the log's protobuf commands through `convert`).
//!
//! ```text
//!  berth-node ── propose(&Command) ──▶ ClusterNode ──▶ openraft ──▶ LogStore (RocksDB)
//!        ▲                                                           │
//!        └──────── ClusterEvent (owner changed, routes…) ◀── StateMachine::apply (Registry)
//!  peers ──gRPC──▶ service.rs: Raft RPCs → openraft; Forward/Takeover/Release → LocalBroker
//! ```

// openraft's storage and network traits fix the error types (`StorageError`, `RPCError`, over 200
// bytes); the helpers that produce them return the same types rather than boxing and unboxing.
#![allow(clippy::result_large_err)]

mod batch;
pub mod convert;
pub mod leader;
pub mod log_store;
pub mod network;
pub mod node;
pub mod pool;
pub mod service;
pub mod state_machine;
pub mod types;

pub use berth_proto::v1 as pb;
pub use node::{ClusterConfig, ClusterError, ClusterNode, Proposed, RaftHealth, Submitted};
pub use service::{BoxFuture, BrokerSlot, LocalBroker, TakeoverStream, serve};
