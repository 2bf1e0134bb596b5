//! Every protobuf ⇄ core conversion of the cluster, one conversion per type: Raft's own types
//! (`raft`), messages, deliveries, subscriptions and wills (`message`), a session's takeover
//! header (`session`), the registry's commands, outcomes and snapshot (`command`), and an
//! operator's session request relayed to its owner with the owner's answer (`admin`).
//!
//! Decoding validates as the MQTT codec would (a peer's message is input like any other), and a
//! message missing a field that Raft needs is an error, never a default value that could make a
//! node believe something it was not told.

pub mod admin;
pub mod command;
pub mod message;
pub mod raft;
pub mod session;

pub use admin::*;
pub use command::*;
pub use message::*;
pub use raft::*;
pub use session::*;
